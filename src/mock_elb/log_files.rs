//! The stand-in's access-log files, laid out as the load balancers lay them out in S3:
//!
//! `AWSLogs/<account>/elasticloadbalancing/<region>/yyyy/mm/dd/<account>_elasticloadbalancing_<region>_<name>_<end>_<node-ip>_<random>.log`
//!
//! (ALB: `..._app.<name>.<id>_...log.gz`). A file is written under `.incoming/` and renamed into
//! place only once complete (gzip finished, flushed, synced), so whatever is under `AWSLogs/`
//! is always readable, as an S3 object is. A new file starts every rotation interval.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::access_log::{self, Balancer, Format, Request};

const INCOMING: &str = ".incoming";

enum Sink {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(out) => out.write_all(bytes),
            Sink::Gzip(out) => out.write_all(bytes),
        }
    }

    fn finish(self) -> io::Result<()> {
        let out = match self {
            Sink::Plain(out) => out,
            Sink::Gzip(gzip) => gzip.finish()?,
        };
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

struct OpenFile {
    sink: Sink,
    incoming: PathBuf,
    destination: PathBuf,
    rotate_at: Instant,
}

pub(super) struct LogFiles {
    dir: PathBuf,
    format: Format,
    balancer: Balancer,
    interval: Duration,
    current: Option<OpenFile>,
    line: Vec<u8>,
}

impl LogFiles {
    pub(super) fn new(
        dir: &Path,
        format: Format,
        balancer: Balancer,
        interval: Duration,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join(INCOMING))?;
        Ok(LogFiles {
            dir: dir.to_path_buf(),
            format,
            balancer,
            interval,
            current: None,
            line: Vec::new(),
        })
    }

    /// Appends one entry, opening a file for the current interval if none is open.
    pub(super) fn write(&mut self, request: &Request) -> io::Result<()> {
        self.line.clear();
        access_log::write_entry(self.format, &self.balancer, request, &mut self.line);
        let current = match &mut self.current {
            Some(current) => current,
            None => self.current.insert(self.open()?),
        };
        current.sink.write_all(&self.line)
    }

    /// When the open file is due to be closed, if one is open.
    pub(super) fn rotate_at(&self) -> Option<Instant> {
        self.current.as_ref().map(|current| current.rotate_at)
    }

    /// Completes the open file and moves it into place; returns where it went.
    pub(super) fn close(&mut self) -> io::Result<Option<PathBuf>> {
        let Some(current) = self.current.take() else {
            return Ok(None);
        };
        current.sink.finish()?;
        if let Some(parent) = current.destination.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&current.incoming, &current.destination)?;
        Ok(Some(current.destination))
    }

    fn open(&self) -> io::Result<OpenFile> {
        // Named, as AWS does, after the end of the interval it covers.
        let end = OffsetDateTime::now_utc() + self.interval;
        let key = object_key(self.format, &self.balancer, end, &crate::hex::random(8));
        let name = key.file_name().unwrap_or_default();
        let incoming = self.dir.join(INCOMING).join(name);
        let file = File::create(&incoming)?;
        let out = BufWriter::with_capacity(64 * 1024, file);
        let sink = match self.format {
            Format::Classic => Sink::Plain(out),
            Format::Alb => Sink::Gzip(GzEncoder::new(out, Compression::default())),
        };
        Ok(OpenFile {
            sink,
            incoming,
            destination: self.dir.join(key),
            rotate_at: Instant::now() + self.interval,
        })
    }
}

/// The S3 key of a log file whose interval ends at `end`.
pub(super) fn object_key(
    format: Format,
    balancer: &Balancer,
    end: OffsetDateTime,
    random: &str,
) -> PathBuf {
    let date = end
        .format(format_description!("[year]/[month]/[day]"))
        .unwrap_or_default();
    let stamp = end
        .format(format_description!("[year][month][day]T[hour][minute]Z"))
        .unwrap_or_default();
    let (account, region) = (&balancer.account, &balancer.region);
    let (name, extension) = match format {
        Format::Classic => (balancer.name.clone(), "log"),
        Format::Alb => (format!("app.{}.{}", balancer.name, balancer.id), "log.gz"),
    };
    PathBuf::from(format!(
        "AWSLogs/{account}/elasticloadbalancing/{region}/{date}/{account}_elasticloadbalancing_{region}_{name}_{stamp}_{}_{random}.{extension}",
        balancer.node_ip
    ))
}

/// Writes every request received into `files`, rotating on time, until the channel closes
/// (every sender dropped: the server has stopped), then completes the last file.
pub(super) async fn write_until_closed(
    mut files: LogFiles,
    mut requests: mpsc::Receiver<Request>,
    logged: Arc<AtomicU64>,
) -> io::Result<u64> {
    let mut written = 0;
    loop {
        let rotate_at = files.rotate_at();
        tokio::select! {
            request = requests.recv() => match request {
                Some(request) => {
                    files.write(&request)?;
                    written += 1;
                    logged.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            },
            () = async {
                match rotate_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(path) = files.close()? {
                    tracing::info!("access log written: {}", path.display());
                }
            }
        }
    }
    if let Some(path) = files.close()? {
        tracing::info!("access log written: {}", path.display());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_s3_layout() {
        let balancer = Balancer {
            name: "my-loadbalancer".into(),
            id: "50dc6c495c0c9188".into(),
            account: "123456789012".into(),
            region: "us-west-2".into(),
            node_ip: "172.160.001.192".into(),
        };
        let end = OffsetDateTime::from_unix_timestamp(1_392_507_600).expect("valid time");
        assert_eq!(
            object_key(Format::Classic, &balancer, end, "20sg8hgm"),
            PathBuf::from(
                "AWSLogs/123456789012/elasticloadbalancing/us-west-2/2014/02/15/123456789012_elasticloadbalancing_us-west-2_my-loadbalancer_20140215T2340Z_172.160.001.192_20sg8hgm.log"
            )
        );
        assert_eq!(
            object_key(Format::Alb, &balancer, end, "20sg8hgm"),
            PathBuf::from(
                "AWSLogs/123456789012/elasticloadbalancing/us-west-2/2014/02/15/123456789012_elasticloadbalancing_us-west-2_app.my-loadbalancer.50dc6c495c0c9188_20140215T2340Z_172.160.001.192_20sg8hgm.log.gz"
            )
        );
    }
}
