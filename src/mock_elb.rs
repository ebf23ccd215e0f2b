//! A local stand-in for a load balancer with no instances behind it: it answers every request
//! with one fixed status (503 by default, like a Classic ELB) and reports each request it saw,
//! so the whole pipeline can run and be tested on one machine.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// One request as the load balancer saw it: what goes into its access log.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub received_at: SystemTime,
    pub client: SocketAddr,
    pub method: String,
    /// The request target exactly as sent (path and query string).
    pub target: Vec<u8>,
    pub version: Version,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub status: StatusCode,
}

pub struct MockElb {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl MockElb {
    /// Serves on `listener`, answering `status`; every request is sent to `records` (if given)
    /// before it is answered, so a request that got a response is always reported.
    pub fn serve(
        listener: TcpListener,
        status: StatusCode,
        records: Option<mpsc::Sender<RequestRecord>>,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (shutdown, stop) = watch::channel(false);
        let server = tokio::spawn(accept_loop(listener, status, records, stop));
        Ok(MockElb {
            local_addr,
            shutdown,
            server,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets open connections finish their current request, and returns once
    /// every connection is closed.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        let _ = self.server.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    status: StatusCode,
    records: Option<mpsc::Sender<RequestRecord>>,
    mut stop: watch::Receiver<bool>,
) {
    // Each connection holds a clone of `open`; when all are dropped, `closed` yields None.
    let (open, mut closed) = mpsc::channel::<()>(1);
    loop {
        let (stream, client) = tokio::select! {
            () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let records = records.clone();
        let mut stop = stop.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let records = records.clone();
                async move { Ok::<_, Infallible>(answer(request, client, status, records).await) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(open);
        });
    }
    drop(open);
    let _ = closed.recv().await;
}

async fn answer(
    request: Request<Incoming>,
    client: SocketAddr,
    status: StatusCode,
    records: Option<mpsc::Sender<RequestRecord>>,
) -> Response<Full<Bytes>> {
    if let Some(records) = records {
        let header_text = |name: header::HeaderName| {
            request
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let record = RequestRecord {
            received_at: SystemTime::now(),
            client,
            method: request.method().to_string(),
            target: request
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().as_bytes().to_vec())
                .unwrap_or_default(),
            version: request.version(),
            host: header_text(header::HOST),
            user_agent: header_text(header::USER_AGENT),
            status,
        };
        let _ = records.send(record).await;
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
