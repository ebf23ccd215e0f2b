//! Command-line and environment definitions, and their conversion into each command's typed
//! configuration (`send::Config`, `decode::Config`, `mock_elb::Config`). Parsing only: no
//! behaviour lives here. This is the edge: only `main.rs` imports it, and it imports only value
//! types from below.
//!
//! Over 400 lines because every flag's help text is here, which is what `--help`, the manual
//! pages and the completions are generated from.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::decode::{Order, TimeSpec, Timestamp, parse_time_spec};
use crate::send::StatusSet;

// The typed configuration of each command, built from these structs.
mod config;
mod parse;

pub use parse::{parse_byte_size, parse_duration};

/// Ship log lines as HTTP GET requests to a load balancer whose access logs are the log store.
///
/// Each line read on stdin becomes one `GET /?<percent-encoded line>` request. A load balancer
/// with no instances behind it answers 503 and writes the request, query string included, into
/// its access logs in S3. No server of your own runs.
#[derive(Debug, Parser)]
#[command(name = "drifter-rsyslog", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Diagnostics level on stderr (error, warn, info, debug, trace). RUST_LOG overrides it.
    #[arg(long, global = true, env = "DRIFTER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Diagnostics format on stderr.
    #[arg(long, global = true, env = "DRIFTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read lines on stdin and send each one as a GET request to URL.
    ///
    /// Exit status: 0 when every line was accepted by the load balancer (or written to the
    /// dead-letter file, or left in the --spool for the next run), 1 when some were lost (the
    /// count is on stderr), 2 for bad usage or configuration.
    Send(SendArgs),

    /// Run a local stand-in for the load balancer that writes real access logs.
    ///
    /// It answers every request with one status (503, as a Classic ELB with no instances) and
    /// writes one access-log entry per request, in the Classic or ALB format, into files laid
    /// out as in S3 under --log-dir. Runs until SIGTERM or SIGINT, then completes its files.
    MockElb(MockElbArgs),

    /// Turn load-balancer access logs back into the messages that were sent.
    ///
    /// Reads files, directories (recursively; gzip by content), s3://bucket/prefix URLs (AWS
    /// credentials from the environment, web identity, the container or instance metadata)
    /// or stdin, and prints the messages one per line on stdout: fragments joined, copies sent
    /// again dropped by id. Counts and reports everything else on stderr. Exit status: 0 when
    /// the input was read, 1 when messages are known to be missing (fragments that never
    /// arrived, sequence gaps), 2 when a path, an object or the key could not be read.
    Decode(DecodeArgs),

    /// Show what each spool under DIR holds (`send --spool DIR`): entries not yet delivered,
    /// bytes on disk, the oldest entry's age, and whether its owner process is alive.
    Spool(SpoolArgs),

    /// Print the shell completion script for SHELL on stdout.
    ///
    /// For example: `drifter-rsyslog completions bash > /etc/bash_completion.d/drifter-rsyslog`.
    Completions(CompletionsArgs),

    /// Write the manual pages: the program's on stdout, or every command's into --dir.
    Man(ManArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write drifter-rsyslog.1 and one drifter-rsyslog-COMMAND.1 per command here instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SpoolArgs {
    /// The directory given to `send --spool`.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct MockElbArgs {
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// Where the AWSLogs/... tree of access-log files goes.
    #[arg(long)]
    pub log_dir: PathBuf,

    /// Access-log format: classic (plain .log) or alb (gzip .log.gz).
    #[arg(long, value_enum, default_value_t = crate::access_log::Format::Classic)]
    pub format: crate::access_log::Format,

    /// Status to answer every request with (an ALB fixed-response rule would be e.g. 200).
    #[arg(long, default_value_t = 503, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub status: u16,

    /// Start a new log file every this many seconds (AWS: 300 or 3600).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub rotate_secs: u64,

    /// Longest request line accepted; longer ones get 414, as ALB does above 16 K.
    #[arg(long, default_value = "16K", value_parser = parse_byte_size)]
    pub max_request_line: u64,

    /// PEM certificate chain: serve HTTPS (and HTTP/2 by ALPN). Needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Load-balancer name written in the entries and file names.
    #[arg(long, default_value = "drifter-mock")]
    pub name: String,

    /// AWS account id in the file layout.
    #[arg(long, default_value = "123456789012")]
    pub account: String,

    /// AWS region in the file layout.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,

    /// Serve /metrics (requests answered, entries logged), /healthz and /readyz here.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Access-log files, directories or s3://bucket/prefix URLs; none (or -) reads stdin.
    pub paths: Vec<PathBuf>,

    /// Keep requests whose URL path starts with PREFIX, instead of selecting by drifter's
    /// User-Agent.
    #[arg(long, value_name = "PREFIX")]
    pub path: Option<String>,

    /// One JSON object per message, with time, load balancer, client, status and source file.
    #[arg(long)]
    pub json: bool,

    /// sequence: each sender's messages by sequence number (send --sequence), the rest by
    /// request time, senders interleaved by time. arrival: as read, file by file.
    #[arg(long, value_name = "ORDER", default_value = "sequence", value_parser = parse_order)]
    pub order: Order,

    /// How long a message waits for those that come before it, by log time (with --follow,
    /// also by the clock). Default by format: 10m for ALB, 75m for Classic.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub reorder_window: Option<Duration>,

    /// Messages held for their order at most (K, M, G suffixes); over it, the earliest are
    /// written first.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_byte_size)]
    pub reorder_bytes: u64,

    /// Deprecated: decode orders by default (--order).
    #[arg(long, hide = true, conflicts_with = "order")]
    pub sort: bool,

    /// Keep only messages signed with the key in FILE (send --sign-key); count the rest as
    /// forged. The file must not be readable or writable by every user.
    #[arg(long, value_name = "FILE")]
    pub verify_key: Option<PathBuf>,

    /// How many recent message ids are remembered to drop duplicates (a message sent again
    /// after a failed confirm or commit). Memory: about 100 bytes per id.
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub dedup_window: u64,

    /// Fragments waiting for the rest of their message at most (K, M, G suffixes). Over this,
    /// the oldest unfinished message is given up and reported as incomplete.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_byte_size)]
    pub max_pending_bytes: u64,

    /// Only entries logged at or after TIME: RFC 3339 (2026-12-01T12:00:00Z), a UTC date
    /// (2026-12-01) or a time ago (30m, 2h, 1d). Only files whose date and name can hold such
    /// entries are listed and read.
    #[arg(long, value_name = "TIME", value_parser = parse_time_spec)]
    pub since: Option<TimeSpec>,

    /// Only entries logged before TIME (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time_spec)]
    pub until: Option<TimeSpec>,

    /// Take this RFC 3339 time as "now" at start, for --since/--until's times ago and
    /// --follow's listings (tests pin the clock with it).
    #[arg(long, value_name = "TIME", hide = true, value_parser = parse_now)]
    pub now: Option<Timestamp>,

    /// After reading everything, look for new files every --poll-interval and decode them as
    /// they land, until SIGINT or SIGTERM.
    #[arg(long, conflicts_with = "until")]
    pub follow: bool,

    /// How often --follow looks for new files.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// With --follow, a sequence gap is reported once the clock is this far past the entries
    /// around it, when every file that can fill it has landed. Default by format, from AWS's
    /// delivery: 10m for ALB (a file per node every 5 minutes), 75m for Classic (every 5 or 60
    /// minutes, delivered up to 15 minutes later).
    #[arg(long, value_name = "DURATION", requires = "follow", value_parser = parse_duration)]
    pub gap_grace: Option<Duration>,

    /// Sequence gaps next to an entry logged within this of --since or --until are not counted
    /// as missing: their messages may have been logged just outside the window.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub edge_slack: Duration,

    /// With --follow, serve /metrics (Prometheus: messages, losses by kind, missing per active
    /// sender, the newest entry's time and the lag) and /healthz on ADDR, e.g. 127.0.0.1:9465.
    #[arg(long, value_name = "ADDR", requires = "follow")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// S3 objects fetched at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// An S3-compatible endpoint instead of AWS's (http:// is allowed here).
    #[arg(long, value_name = "URL", env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
}

fn parse_order(text: &str) -> Result<Order, String> {
    match text {
        "sequence" => Ok(Order::Sequence),
        "arrival" => Ok(Order::Arrival),
        _ => Err("expected sequence or arrival".into()),
    }
}

fn parse_now(text: &str) -> Result<Timestamp, String> {
    match parse_time_spec(text)? {
        TimeSpec::At(at) => Ok(at),
        TimeSpec::Ago { .. } => Err(format!("`{text}` is not an RFC 3339 time")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// The load balancer, e.g. http://my-elb-123.eu-west-1.elb.amazonaws.com/ . Its path is
    /// kept (so /app1 tells applications apart in the logs); it must have no query string.
    #[arg(env = "DRIFTER_URL")]
    pub url: String,

    /// Requests in flight at once, each on a keep-alive connection of its own.
    #[arg(long, env = "DRIFTER_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,

    /// Response statuses that mean "delivered": a comma-separated list of codes and ranges.
    /// Use e.g. 204 for an ALB fixed-response rule.
    #[arg(long, env = "DRIFTER_ACCEPT", default_value = "503,200-299", value_parser = parse_status_set)]
    pub accept: StatusSet,

    /// Longest line read whole (K, M, G suffixes). A longer line is skipped without being
    /// buffered, reported with its line number and counted as lost. Default 16M, or with
    /// --spool the longest line a record of it holds, when that is less; a value above that
    /// is refused at start.
    #[arg(long, env = "DRIFTER_MAX_LINE_BYTES", value_parser = parse_byte_size)]
    pub max_line_bytes: Option<u64>,

    /// Longest request target (path and query string) ever sent. A message that would not
    /// fit is split into fragments that each fit, and `decode` joins them again.
    #[arg(long, env = "DRIFTER_MAX_URL_BYTES", default_value = "8192", value_parser = parse_byte_size)]
    pub max_url_bytes: u64,

    /// Messages waiting or in flight at most; when full, stdin is not read (backpressure).
    #[arg(long, env = "DRIFTER_QUEUE_MESSAGES", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_messages: u32,

    /// Message bytes waiting or in flight in memory at most (K, M, G suffixes). Default 64M,
    /// or 4M with --spool, where the backlog is on disk.
    #[arg(long, env = "DRIFTER_QUEUE_BYTES", value_parser = parse_byte_size)]
    pub queue_bytes: Option<u64>,

    /// Write every message to a spool under DIR before acknowledging it (before the next read
    /// in plain mode, before its OK or DEFER_COMMIT under rsyslog), and deliver from there: a
    /// killed process loses nothing it read, and the next one started on DIR delivers it.
    #[arg(long, env = "DRIFTER_SPOOL", value_name = "DIR")]
    pub spool: Option<PathBuf>,

    /// Read this file (a glob also matches later files) instead of stdin; repeatable; needs --spool.
    #[arg(long, env = "DRIFTER_FILE", value_name = "PATH", value_delimiter = ',')]
    pub file: Vec<String>,

    /// Where --file starts in a file without a position at start-up (later files: beginning).
    #[arg(long, env = "DRIFTER_FILE_START", value_enum, default_value_t = crate::send::FileStart::Beginning)]
    pub file_start: crate::send::FileStart,

    /// How often --file looks for new, rotated and truncated files once all is read.
    #[arg(long, env = "DRIFTER_FILE_POLL_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    pub file_poll_interval: Duration,

    /// When spooled messages are made durable against a host crash: every
    /// --spool-sync-interval, before every acknowledgement (strict), or never (off).
    #[arg(long, env = "DRIFTER_SPOOL_SYNC", value_enum, default_value_t = crate::spool::SyncPolicy::Interval)]
    pub spool_sync: crate::spool::SyncPolicy,

    /// --spool-sync interval: how often the spool is synced.
    #[arg(long, env = "DRIFTER_SPOOL_SYNC_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub spool_sync_interval: Duration,

    /// Largest the spool directory may grow, every spool under it and aside/ included (K, M,
    /// G suffixes); when it is full, input is not read (backpressure), as when the disk is full.
    #[arg(long, env = "DRIFTER_SPOOL_MAX_BYTES", default_value = "1G", value_parser = parse_byte_size)]
    pub spool_max_bytes: u64,

    /// Time allowed to open a connection (TCP and TLS), e.g. 500ms, 5s, 1m.
    #[arg(long, env = "DRIFTER_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Time allowed for one request, from sending to the end of the response.
    #[arg(long, env = "DRIFTER_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// First retry delay; it doubles on every retry, with full jitter. While the load
    /// balancer fails, messages wait and only a probe request (`GET <path>`) is retried.
    #[arg(long, env = "DRIFTER_RETRY_INITIAL", default_value = "200ms", value_parser = parse_duration)]
    pub retry_initial: Duration,

    /// Longest retry delay. While the load balancer fails, the probe that tells when it is
    /// back goes at least every 3 s, whatever this is.
    #[arg(long, env = "DRIFTER_RETRY_MAX", default_value = "30s", value_parser = parse_duration)]
    pub retry_max: Duration,

    /// A message whose request fails this many times while the load balancer accepts other
    /// requests (a 5xx, 408 or 429 of its own) is given up: written to --dead-letter, or
    /// counted as lost. Failures during an outage, or while others fail as often, do not
    /// count.
    #[arg(long, env = "DRIFTER_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// After end of input or SIGTERM, time allowed to deliver what is queued and in flight.
    /// What is left then stays in the --spool, or else goes to --dead-letter, or is lost and
    /// counted. The default fits
    /// inside `docker stop`'s 10 s grace period.
    #[arg(long, env = "DRIFTER_DRAIN_TIMEOUT", default_value = "8s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Append messages that could not be delivered to FILE, one raw line each, so that
    /// `drifter-rsyslog send URL < FILE` replays them. Flushed and fsynced before exit.
    #[arg(long, env = "DRIFTER_DEAD_LETTER", value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,

    /// Send through this HTTP proxy (credentials in the URL), or `none` to ignore the proxy
    /// environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), which is read otherwise.
    #[arg(long, env = "DRIFTER_PROXY", value_name = "URL|none")]
    pub proxy: Option<String>,

    /// Root certificates to trust for HTTPS: Mozilla's (webpki), the operating system's
    /// store (system; SSL_CERT_FILE and SSL_CERT_DIR are honoured), or both.
    #[arg(long, env = "DRIFTER_TRUST", value_enum, default_value_t = crate::send::Trust::Both)]
    pub trust: crate::send::Trust,

    /// Also trust the CA certificates in this PEM file for HTTPS.
    #[arg(long, env = "DRIFTER_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Do not verify the load balancer's TLS certificate. For testing only.
    #[arg(long, env = "DRIFTER_INSECURE")]
    pub insecure: bool,

    /// HTTP version to an https:// endpoint: auto (HTTP/2 when the load balancer offers it by
    /// ALPN, else HTTP/1.1), 1.1, or 2 (an endpoint without HTTP/2 is an error). http:// URLs
    /// always use HTTP/1.1.
    #[arg(long, env = "DRIFTER_HTTP", value_enum, default_value_t = crate::send::HttpVersion::Auto)]
    pub http: crate::send::HttpVersion,

    /// rsyslog omprog confirmMessages="on": write OK when ready, then OK or an error line per
    /// message once its fate is known.
    #[arg(long, env = "DRIFTER_CONFIRM")]
    pub confirm: bool,

    /// rsyslog omprog useTransactions="on" with confirmMessages="on": OK to the begin mark,
    /// DEFER_COMMIT to each message (sent at once, concurrently), OK to the commit mark only
    /// when the whole batch was accepted. Implies --confirm.
    #[arg(long, env = "DRIFTER_TRANSACTIONS")]
    pub transactions: bool,

    /// The line rsyslog sends to begin a transaction (omprog beginTransactionMark).
    #[arg(long, env = "DRIFTER_BEGIN_MARK", default_value = "BEGIN TRANSACTION")]
    pub begin_mark: String,

    /// The line rsyslog sends to commit a transaction (omprog commitTransactionMark).
    #[arg(
        long,
        env = "DRIFTER_COMMIT_MARK",
        default_value = "COMMIT TRANSACTION"
    )]
    pub commit_mark: String,

    /// While a reply is pending this long, write a keep-alive dot, which restarts rsyslog's
    /// confirmTimeout (10 s by default).
    #[arg(long, env = "DRIFTER_KEEPALIVE_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,

    /// --confirm: how long one message is retried before it is handed back to rsyslog with an
    /// error line (rsyslog keeps it and resends it after action.resumeInterval).
    #[arg(long, env = "DRIFTER_MESSAGE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub message_timeout: Duration,

    /// --transactions: how long a commit waits for its batch, retrying inside the program,
    /// before answering an error (rsyslog then resends the whole batch).
    #[arg(long, env = "DRIFTER_COMMIT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub commit_timeout: Duration,

    /// Before reading stdin (and before the first `OK` under rsyslog), send one request to the
    /// URL and wait until it gets an accepted status, writing keep-alive dots meanwhile. A
    /// permanent answer such as 404 is a configuration error (exit 2).
    #[arg(long, env = "DRIFTER_PROBE")]
    pub probe: bool,

    /// Serve /metrics (Prometheus), /healthz and /readyz on this address, e.g.
    /// 127.0.0.1:9464. Off by default.
    #[arg(long, env = "DRIFTER_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Log a one-line summary of the counters at this interval (e.g. 60s). Off by default.
    #[arg(long, env = "DRIFTER_STATS_INTERVAL", value_parser = parse_duration)]
    pub stats_interval: Option<Duration>,

    /// Give every message an id, so `decode` drops copies sent again: `prefix` takes it from
    /// the line, written as `<id> <message>` (rsyslog: `%uuid% %msg%`); `content` hashes the
    /// whole line (identical lines then count as one).
    #[arg(long, env = "DRIFTER_IDS", value_enum, value_name = "MODE")]
    pub ids: Option<crate::send::outgoing::IdMode>,

    /// Number the messages of this process under a random sender name, so `decode` reports
    /// messages missing from the logs.
    #[arg(long, env = "DRIFTER_SEQUENCE")]
    pub sequence: bool,

    /// Sign every request with HMAC-SHA256 and the key in FILE, for `decode --verify-key`.
    /// The file must not be readable or writable by every user.
    #[arg(long, env = "DRIFTER_SIGN_KEY", value_name = "FILE")]
    pub sign_key: Option<PathBuf>,

    /// Send nothing: print the requests each line would become, one per output line: the
    /// input line number, the target's length and the target, separated by tabs.
    #[arg(long, conflicts_with_all = ["confirm", "transactions", "probe"])]
    pub dry_run: bool,
}

fn parse_status_set(text: &str) -> Result<StatusSet, String> {
    text.parse()
        .map_err(|e: crate::send::StatusSetError| e.to_string())
}
