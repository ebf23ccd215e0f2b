//! The whole job on one machine: starts the local load-balancer stand-in, pipes sample lines
//! through the real `drifter-rsyslog send`, and shows what the load balancer received.
//!
//!     cargo build --release && cargo run --release --example demo

mod support;

use std::process::Stdio;

use anyhow::Context;
use drifter_rsyslog::mock_elb::MockElb;
use http::StatusCode;
use tokio::io::AsyncWriteExt;

const SAMPLE: &[&str] = &[
    "<13>Nov 23 11:00:00 web-1 nginx: GET /index.html 200",
    "user=alice action=login result=ok & more",
    "multi-byte: café ☃ 日本語",
    "quotes \"double\" 'single' and \\ backslash",
    "it's (all) ~fine~! 100% sure?",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = support::binary()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (records, mut received) = tokio::sync::mpsc::channel(64);
    let elb = MockElb::serve(listener, StatusCode::SERVICE_UNAVAILABLE, Some(records))?;
    let url = format!("http://{}/", elb.local_addr());
    println!("load balancer stand-in on {url} (answers 503, like an ELB with no instances)\n");

    let mut child = tokio::process::Command::new(&binary)
        .args(["send", &url])
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    for line in SAMPLE {
        println!("sent:     {line}");
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
    }
    drop(stdin);
    let status = child.wait().await?;
    elb.shutdown().await;

    println!();
    let mut decoded = Vec::new();
    while let Ok(record) = received.try_recv() {
        let target = String::from_utf8_lossy(&record.target).into_owned();
        println!(
            "received: {} {target} {:?} -> {}",
            record.method, record.version, record.status
        );
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        decoded.push(
            String::from_utf8_lossy(&drifter_rsyslog::wire::decode_query(query.as_bytes()))
                .into_owned(),
        );
    }
    decoded.sort();
    let mut sent: Vec<String> = SAMPLE.iter().map(|s| s.to_string()).collect();
    sent.sort();
    println!();
    if status.success() && decoded == sent {
        println!(
            "round trip OK: {} of {} lines came back byte for byte",
            decoded.len(),
            sent.len()
        );
        Ok(())
    } else {
        anyhow::bail!("round trip FAILED: send exited with {status}; decoded {decoded:?}")
    }
}
