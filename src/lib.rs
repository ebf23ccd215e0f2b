//! drifter-rsyslog: log lines as HTTP GET requests to an instance-less load balancer, whose
//! access logs in S3 are the log store.
//!
//! # Layout
//!
//! Dependencies point down, from the binary to the formats; no module imports one above it
//! (`tests/it/layers.rs` fails on a cycle among the top-level modules, or among the modules of
//! `send/` or `decode/`):
//!
//! ```text
//! binary     main.rs ─► cli.rs            clap; builds each command's typed Config
//!               │
//! commands   send/   decode/   mock_elb/   spool::status   manual
//!               │       (each takes its own Config; none knows clap's structs)
//! parts      spool/ (durable FIFO)   metrics (server)   key_file   shutdown
//!               │
//! formats    wire/ (message ⇄ request target)   access_log/ (entries)   lines, hex
//!
//!            exit: the statuses and the one error printer, for every layer
//! ```
//!
//! Inside `send/`, the delivery path from the read loop down to the HTTP request (each line
//! imports only lines below it):
//!
//! ```text
//! mod.rs       prepare (pure checks, then open), run, the drain
//! config.rs    the typed Config and its pure checks
//! session/     the read loop of every mode; omprog: rsyslog's replies
//! feeder.rs    --spool: spooled messages into the pipeline
//! spooling.rs  --spool: append before acknowledging, sync and reclaim
//! pipeline.rs  the bounded queue and the workers
//! settle.rs    how every message ends: delivered, handed back, dead-lettered, lost
//! retry/       every retry decision, the retrier and its circuit; classifies raw answers
//! client.rs    one HTTP request, its raw Answer (a status, or why there was none)
//! job.rs       Job, Ack, Returned, Ticket: what travels down and comes back (a leaf)
//! ```
//!
//! Each command's data flows through its folder left to right:
//!
//! ```text
//! send      stdin ─► input ─► session ─► outgoing ─► [spool] ─► pipeline ─► retry ─► client ─► load balancer
//!                   (bounded  (read loop, (id, seq,  (queue,     (every   (HTTP,
//!                    lines)    all modes)  fragments) workers)    retry,   proxy,
//!                                                                 circuit) tls)
//!                               │                        │        decision)
//!                               ▼                        ▼
//!                    omprog: OK / DEFER_COMMIT      settle: delivered, handed back,
//!                    replies to rsyslog             dead_letter, or lost (stats)
//!
//! decode    files, dirs, stdin ─► walk ─┐
//!           s3://bucket/prefix ─► s3 ───┴► decoder ─► reassembly ─► output ─► stdout
//!           (window: --since/--until    (access_log, wire)  (fragments, ids, gaps)
//!            prune by layout; follow: poll again, seen names)
//!
//! mock-elb  requests ─► server ─► log_files (access_log entries, S3 key layout)
//! ```
//!
//! | module | owns |
//! |---|---|
//! | `main.rs` | parsing the command line, running the command, the one error/exit path |
//! | [`cli`] | every flag and its `DRIFTER_*` variable, and their conversion into each command's `Config` |
//! | [`exit`] | exit statuses and the one error printer |
//! | [`manual`] | the `completions` and `man` commands, generated from [`cli`] |
//! | [`send`] | the `send` command: `config`, `input`, `stdio`, `session` (and its `omprog`), `job`, `outgoing`, `spooling`, `feeder`, `pipeline`, `retry` (and its `circuit`), `client`, `proxy`, `tls`, `settle`, `dead_letter`, `stats`, `metrics`, `dry_run` |
//! | [`spool`] | the durable spool (`record`, `state`, `store`) and the `spool` command (`status`) |
//! | [`wire`] | message ⇄ request target: encoding, extensions, MAC, parsing, strict percent-decoding |
//! | [`access_log`] | access-log entries written and parsed (Classic, ALB), `split_url` |
//! | [`decode`] | the `decode` command: `config`, `walk` (local), `s3`, `window` (`--since`/`--until`), `follow`, `decoder`, `reassembly`, `output` |
//! | [`mock_elb`] | the `mock-elb` command: `server`, `log_files` |
//! | [`key_file`] | reading and checking keys (send and decode) |
//! | `shutdown` | one `Shutdown` for every command: the stop signals, the phases (stop, abort, done), the join of every task of the run |
//! | `metrics` | the `--metrics-listen` server (`/metrics`, `/healthz`, `/readyz`) of `send` and `mock-elb` |
//! | `lines`, `hex` | byte-level helpers: bounded LF-split lines (stdin and access logs), hex digits |

// Items that tests and examples need are `pub`; everything else says `pub(crate)`.
#![warn(unreachable_pub)]

pub mod access_log;
pub mod cli;
pub mod decode;
pub mod exit;
mod hex;
pub mod key_file;
mod lines;
pub mod manual;
mod metrics;
pub mod mock_elb;
pub mod send;
mod shutdown;
pub mod spool;
pub mod wire;
