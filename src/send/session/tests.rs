//! The session over in-memory input and output, against a real HTTP server on 127.0.0.1 (the
//! stand-in load balancer, answering 503): what each mode reads, replies and delivers.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::BufReader;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::*;
use crate::mock_elb::{MockElb, ServerOptions};
use crate::send::client::{Client, ClientOptions};
use crate::send::pipeline::PipelineConfig;
use crate::send::retry::{Backoff, RetryPolicy};
use crate::send::tls::Trust;
use crate::wire::TargetFormat;

/// What one session came to.
struct Ran {
    /// What it wrote to rsyslog.
    replies: String,
    /// The request targets the server received, in no particular order.
    targets: Vec<String>,
    stats: Arc<Stats>,
    input_ok: bool,
    uncommitted: usize,
}

async fn session(mode: Mode, input: &[u8], max_line_bytes: usize) -> Ran {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let (requests, mut received) = mpsc::channel(1024);
    let answer = ServerOptions::plain(StatusCode::SERVICE_UNAVAILABLE);
    let server = MockElb::serve(listener, answer, Some(requests)).expect("the server runs");
    let endpoint = format!("http://{}/", server.local_addr())
        .parse()
        .expect("a valid URL");
    let stats = Arc::new(Stats::default());
    let options = ClientOptions {
        concurrency: 4,
        proxy: Some("none"),
        trust: Trust::Webpki,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ca_cert: None,
        insecure: false,
        http: crate::send::HttpVersion::Auto,
    };
    let client = Client::new(endpoint, &options, stats.clone()).expect("a client");
    let policy = RetryPolicy {
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
        },
        max_attempts: 3,
    };
    let accept = "503".parse().expect("a valid status list");
    let retrier = Arc::new(Retrier::new(client, accept, 4, policy, stats.clone()));
    let format = TargetFormat::new("/", 8192, None);
    let labeler = Labeler::new(format, None, false, max_line_bytes as u64, None);
    let labeler = Arc::new(labeler.expect("budget is enough"));
    let settler = Arc::new(Settler::new(stats.clone(), None));
    let queue = PipelineConfig {
        concurrency: 4,
        queue_messages: 16,
        queue_bytes: 1 << 20,
    };
    let pipeline = Pipeline::start(queue, retrier, labeler.clone(), settler.clone());
    let config = ProtocolConfig {
        mode,
        begin_mark: b"BEGIN".to_vec(),
        commit_mark: b"COMMIT".to_vec(),
        keepalive: Duration::from_secs(2),
        message_timeout: Duration::from_secs(30),
        commit_timeout: Duration::from_secs(30),
    };
    let mut reader = LineReader::new(BufReader::new(input), max_line_bytes);
    let mut out = Vec::new();
    let (_stop, stopped) = watch::channel(false);
    let ending = Session {
        reader: &mut reader,
        replies: Replies::new(&mut out, config.keepalive),
        pipeline: &pipeline,
        settler: &settler,
        labeler: &labeler,
        max_line_bytes,
        config: &config,
        spool: None,
    }
    .run(stopped)
    .await;
    pipeline.finish().await;
    server.shutdown().await;
    let mut targets = Vec::new();
    while let Ok(request) = received.try_recv() {
        let url = String::from_utf8_lossy(&request.url).into_owned();
        let target = url.splitn(4, '/').nth(3).unwrap_or_default();
        targets.push(format!("/{target}"));
    }
    targets.sort();
    Ran {
        replies: String::from_utf8_lossy(&out).into_owned(),
        targets,
        stats,
        input_ok: ending.input_ok,
        uncommitted: ending.uncommitted.len(),
    }
}

fn count(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn plain_mode_sends_every_line_and_counts_the_rest() {
    let long = format!("{}\n", "x".repeat(100));
    let input = format!("one\n\ntwo\r\n{long}three");
    let ran = session(Mode::Plain, input.as_bytes(), 64).await;
    assert_eq!(ran.replies, "", "plain mode writes nothing");
    assert_eq!(ran.targets, ["/?one", "/?three", "/?two"]);
    assert!(ran.input_ok);
    let stats = &ran.stats;
    assert_eq!(count(&stats.delivered), 3);
    assert_eq!(count(&stats.empty), 1);
    assert_eq!(stats.lost_by(Loss::TooLong), 1);
}

#[tokio::test]
async fn confirm_mode_answers_ok_when_ready_and_after_each_line() {
    let ran = session(Mode::Confirm, b"one\n\ntwo\n", 1024).await;
    // Ready, then one per line: the empty line too, so rsyslog does not send it again.
    assert_eq!(ran.replies, "OK\nOK\nOK\nOK\n");
    assert_eq!(ran.targets, ["/?one", "/?two"]);
    assert_eq!(count(&ran.stats.delivered), 2);
}

#[tokio::test]
async fn transactions_defer_each_message_to_the_commit() {
    let input = b"BEGIN\none\ntwo\nCOMMIT\nBEGIN\nthree\n";
    let ran = session(Mode::Transactions, input, 1024).await;
    assert_eq!(
        ran.replies,
        "OK\nOK\nDEFER_COMMIT\nDEFER_COMMIT\nOK\nOK\nDEFER_COMMIT\n"
    );
    // The last batch was never committed: it is the caller's to settle.
    assert_eq!(ran.uncommitted, 1);
    assert_eq!(ran.targets, ["/?one", "/?three", "/?two"]);
}
