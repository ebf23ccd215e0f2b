//! `s3://bucket/prefix` inputs: listed as a directory tree (one delimited listing per level,
//! so `--since`/`--until` prune whole days), all the prefixes of one bucket walked together in
//! the local walk's time order (see `queue`), fetched a few objects at a time, and streamed
//! into the decoder in that order.
//!
//! The decoder is synchronous and runs on the calling thread; listing and fetching run on a
//! small tokio runtime. Each object streams through its own bounded channel of body chunks,
//! and at most `--jobs` objects are in flight, so memory stays flat however large the bucket.
//!
//! Over 400 lines because listing and fetching share the walk's order and its bounded
//! channels.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig,
};
use tokio::sync::{Semaphore, mpsc};

use super::follow::Seen;
use super::queue::ReadingQueue;
use super::s3_error::describe;
use super::walk::{is_aws_test_file, is_hidden};
use super::window::Range;
use crate::shutdown::Tasks;

/// Body chunks buffered per object in flight.
const CHUNKS_PER_OBJECT: usize = 16;
/// Transient failures (5xx, resets) are retried a few times, not for object_store's default
/// of minutes: a listing that cannot be done is reported and the next path is read.
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// `s3://bucket/prefix`: the prefix is a directory (or names one object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    /// `None` if `text` is not an `s3://` URL; an error if it is one without a bucket.
    pub(super) fn parse(text: &str) -> Option<Result<S3Url, String>> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(format!("{text}: no bucket name")));
        }
        Some(Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        }))
    }

    fn object_name(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// What a listing yields, in order.
pub(super) enum Listed {
    Object {
        name: String,
        body: Body,
    },
    /// A listing failed (`what`: "list s3://…"): reported, counted as unreadable, and the
    /// walk goes on.
    Failed {
        what: String,
        error: String,
    },
    /// The prefix holds nothing and names no object.
    Nothing {
        name: String,
    },
}

/// The S3 side: a runtime for the requests and one client per bucket.
pub(super) struct S3 {
    runtime: tokio::runtime::Runtime,
    endpoint: Option<String>,
    jobs: usize,
    stores: HashMap<String, Arc<AmazonS3>>,
}

impl S3 {
    pub(super) fn new(endpoint: Option<String>, jobs: usize) -> io::Result<Self> {
        // reqwest is built without a crypto provider of its own: it uses the process default.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("drifter-s3")
            .enable_all()
            .build()?;
        Ok(S3 {
            runtime,
            endpoint,
            jobs,
            stores: HashMap::new(),
        })
    }

    pub(super) fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Starts listing and fetching everything under `urls` (prefixes of one bucket) that
    /// `listing` admits and `seen` has not seen; the objects come out of the iterator in order.
    pub(super) fn objects(
        &mut self,
        urls: &[&S3Url],
        listing: Range,
        seen: Option<Seen>,
    ) -> Objects {
        let (sender, receiver) = mpsc::channel(self.jobs);
        let roots: Vec<S3Url> = urls.iter().map(|&url| url.clone()).collect();
        let store = match roots.first() {
            Some(url) => self.store(&url.bucket),
            None => Err("no prefix".to_string()),
        };
        let fetches = Tasks::default();
        let walk = Walk {
            roots,
            listing,
            seen,
            out: sender,
            jobs: Arc::new(Semaphore::new(self.jobs)),
            fetches: fetches.clone(),
        };
        let producer = match store {
            Ok(store) => self.runtime.spawn(walk.run(store)),
            Err(error) => self.runtime.spawn(async move {
                // Each prefix is reported and counted, as if listed alone.
                for url in &walk.roots {
                    let (what, error) = (format!("list {url}"), error.clone());
                    let _ = walk.out.send(Listed::Failed { what, error }).await;
                }
                walk.seen
            }),
        };
        Objects {
            receiver,
            producer: Some(producer),
            fetches,
            handle: self.runtime.handle().clone(),
        }
    }

    fn store(&mut self, bucket: &str) -> Result<Arc<AmazonS3>, String> {
        if let Some(store) = self.stores.get(bucket) {
            return Ok(store.clone());
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            });
        if let Some(endpoint) = &self.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        } else if !region_in_environment() {
            // The bucket says where it is; without this, S3 answers 301 for other regions.
            let region = self
                .runtime
                .block_on(object_store::aws::resolve_bucket_region(
                    bucket,
                    &ClientOptions::default(),
                ));
            match region {
                Ok(region) => builder = builder.with_region(region),
                Err(e) => return Err(describe(&e)),
            }
        }
        let store = Arc::new(builder.build().map_err(|e| describe(&e))?);
        self.stores.insert(bucket.to_string(), store.clone());
        Ok(store)
    }
}

fn region_in_environment() -> bool {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// The objects under one URL, in order; dropping it stops the listing and the fetches.
pub(super) struct Objects {
    receiver: mpsc::Receiver<Listed>,
    producer: Option<tokio::task::JoinHandle<Option<Seen>>>,
    /// Each object's fetch: over once its body was read, aborted if it was not.
    fetches: Tasks,
    handle: tokio::runtime::Handle,
}

impl Iterator for Objects {
    type Item = Listed;

    fn next(&mut self) -> Option<Listed> {
        self.receiver.blocking_recv()
    }
}

impl Objects {
    /// Waits for the listing to end and gives back the keys it has seen.
    pub(super) fn finish(mut self) -> Option<Seen> {
        self.receiver.close();
        // Bodies left unread (a stop): dropping them ends their fetches, which frees the
        // permits the listing may be waiting for.
        while self.receiver.try_recv().is_ok() {}
        let producer = self.producer.take()?;
        self.handle.block_on(async {
            // A fetch still waiting for its object (a stop) holds a permit the listing may
            // wait for: aborted first, and again for any the listing started meanwhile.
            self.fetches.close().await;
            let seen = producer.await.ok().flatten();
            self.fetches.close().await;
            seen
        })
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        if let Some(producer) = self.producer.take() {
            producer.abort();
        }
    }
}

/// One object's bytes, read on the decoder's thread as they arrive.
pub(super) struct Body {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl BufRead for Body {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amount: usize) {
        self.current.advance(amount.min(self.current.len()));
    }
}

struct Walk {
    /// Prefixes of one bucket.
    roots: Vec<S3Url>,
    listing: Range,
    seen: Option<Seen>,
    out: mpsc::Sender<Listed>,
    jobs: Arc<Semaphore>,
    fetches: Tasks,
}

enum Pending {
    /// A prefix named on the command line: if it holds nothing, perhaps it names an object.
    Root(ObjectPath),
    Dir(ObjectPath),
    Object(ObjectMeta),
}

impl Walk {
    /// Best first by time over all the roots: the order `decode` reads local trees in.
    async fn run(mut self, store: Arc<AmazonS3>) -> Option<Seen> {
        let mut queue = ReadingQueue::default();
        // A prefix under another is walked as named (reported if it holds nothing), not also
        // as part of the other: each object once. Of one named twice, the first is walked.
        let named: HashSet<ObjectPath> = self
            .roots
            .iter()
            .map(|url| ObjectPath::from(url.prefix.as_str()))
            .collect();
        for (input, url) in self.roots.iter().enumerate() {
            if self.roots[..input].iter().any(|u| u.prefix == url.prefix) {
                continue;
            }
            let root = Pending::Root(ObjectPath::from(url.prefix.as_str()));
            queue.push_dir(input, url.prefix.split('/'), root);
        }
        while let Some((input, next)) = queue.pop() {
            let (dir, is_root) = match next {
                Pending::Object(meta) => {
                    if !self.fetch(&store, meta).await {
                        break;
                    }
                    continue;
                }
                Pending::Dir(dir) => (dir, false),
                Pending::Root(dir) => (dir, true),
            };
            let prefix = (!dir.as_ref().is_empty()).then_some(&dir);
            // A stop (the reader gone) ends the walk mid-listing, not at the next object.
            let listing = tokio::select! {
                listed = store.list_with_delimiter(prefix) => listed,
                () = self.out.closed() => break,
            };
            let listed = match listing {
                Ok(listed) => listed,
                Err(e) => {
                    let shown = if dir.as_ref().is_empty() {
                        String::new()
                    } else {
                        format!("{dir}/")
                    };
                    let name = self.object_name(&shown);
                    let failed = Listed::Failed {
                        what: format!("list {name}"),
                        error: describe(&e),
                    };
                    // A failed root has been reported: not also as empty.
                    if self.out.send(failed).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            if is_root && listed.objects.is_empty() && listed.common_prefixes.is_empty() {
                if let Some(meta) = self.root_object(&store, input, &dir).await {
                    let path = meta.location.clone();
                    queue.push_file(input, parts(&path), Pending::Object(meta));
                }
                continue;
            }
            for sub in listed.common_prefixes {
                let name = sub.filename().unwrap_or_default().to_string();
                if !is_hidden(&name)
                    && !named.contains(&sub)
                    && self.listing.admits_dir(parts(&sub))
                {
                    queue.push_dir(input, parts(&sub), Pending::Dir(sub.clone()));
                }
            }
            for meta in listed.objects {
                let name = meta.location.filename().unwrap_or_default().to_string();
                if !is_hidden(&name)
                    && !named.contains(&meta.location)
                    && !is_aws_test_file(&name)
                    && self.listing.admits_file(&name)
                {
                    let path = meta.location.clone();
                    queue.push_file(input, parts(&path), Pending::Object(meta));
                }
            }
        }
        self.seen
    }

    /// A root that holds nothing: the one object it names, or reported as nothing.
    async fn root_object(
        &self,
        store: &Arc<AmazonS3>,
        input: usize,
        root: &ObjectPath,
    ) -> Option<ObjectMeta> {
        let url = &self.roots[input];
        let report = if root.as_ref().is_empty() {
            Listed::Nothing {
                name: url.to_string(),
            }
        } else {
            match store.head(root).await {
                Ok(meta) => return Some(meta),
                Err(object_store::Error::NotFound { .. }) => Listed::Nothing {
                    name: url.to_string(),
                },
                Err(e) => Listed::Failed {
                    what: format!("read {url}"),
                    error: describe(&e),
                },
            }
        };
        let _ = self.out.send(report).await;
        None
    }

    fn object_name(&self, key: &str) -> String {
        self.roots
            .first()
            .map_or_else(String::new, |url| url.object_name(key))
    }

    /// Starts fetching one object and hands its body to the decoder; false once the decoder
    /// has gone.
    async fn fetch(&mut self, store: &Arc<AmazonS3>, meta: ObjectMeta) -> bool {
        let name = self.object_name(meta.location.as_ref());
        if let Some(seen) = &mut self.seen
            && !seen.insert(&name)
        {
            return true;
        }
        let Ok(permit) = self.jobs.clone().acquire_owned().await else {
            return false;
        };
        let (chunks, receiver) = mpsc::channel(CHUNKS_PER_OBJECT);
        let store = store.clone();
        self.fetches.spawn(async move {
            let _permit = permit;
            let location = meta.location;
            let mut stream = match store.get(&location).await {
                Ok(result) => result.into_stream(),
                Err(e) => {
                    let _ = chunks.send(Err(io::Error::other(describe(&e)))).await;
                    return;
                }
            };
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                let chunk = chunk.map_err(|e| io::Error::other(describe(&e)));
                if chunks.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        let body = Body {
            chunks: receiver,
            current: Bytes::new(),
        };
        self.out.send(Listed::Object { name, body }).await.is_ok()
    }
}

fn parts(path: &ObjectPath) -> impl DoubleEndedIterator<Item = &str> + Clone {
    path.as_ref().split('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let parsed = |text| S3Url::parse(text).map(|r| r.map(|u| (u.bucket, u.prefix)));
        assert_eq!(parsed("/tmp/x"), None);
        assert_eq!(parsed("s3://b"), Some(Ok(("b".into(), "".into()))));
        assert_eq!(parsed("s3://b/"), Some(Ok(("b".into(), "".into()))));
        assert_eq!(
            parsed("s3://b/AWSLogs/1/"),
            Some(Ok(("b".into(), "AWSLogs/1".into())))
        );
        assert!(matches!(parsed("s3:///x"), Some(Err(_))));
    }
}
