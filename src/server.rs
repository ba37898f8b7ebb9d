//! The accept loop, per-connection HTTP/1, graceful shutdown, and the choice of
//! protocol for each request.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::admin::AdminState;
use crate::config::{Config, DEFAULT_HOST, HEADER_BYTES_MAX, SHUTDOWN_DRAIN_MS};
use crate::firehose::FirehoseState;
use crate::firehose::registry::Firehose;
use crate::http::{Body, RequestCtx};
use crate::lambda::Lambda;
use crate::lambda::api::LambdaState;
use crate::s3::S3State;
use crate::store::Store;
use crate::{admin, firehose, s3};

/// What the server holds: its configuration, and each protocol's own narrow state
/// (a protocol sees only its own, so none of them depends on this module).
pub struct State {
    pub config: Config,
    pub s3: Arc<S3State>,
    pub firehose: Arc<FirehoseState>,
    pub lambda: Arc<LambdaState>,
    pub admin: AdminState,
}

/// Which protocol a request speaks.
#[derive(Debug, PartialEq, Eq)]
pub enum Protocol {
    Firehose,
    Lambda,
    Admin,
    S3,
}

impl Protocol {
    /// `X-Amz-Target: Firehose_20150804.*` is Firehose; a request signed for `lambda` (or
    /// an unsigned one to `/2015-03-31/functions`) is Lambda; a path-style `/_firelake/...`
    /// is firelake's own; everything else is S3.
    pub fn of(parts: &http::request::Parts, config: &Config) -> Protocol {
        let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok());
        if target.is_some_and(|t| t.starts_with(firehose::TARGET_PREFIX)) {
            return Protocol::Firehose;
        }
        if crate::lambda::api::is_lambda(parts) && s3::router::virtual_host_bucket(parts, &config.domains).is_none() {
            return Protocol::Lambda;
        }
        if parts.uri.path().starts_with("/_firelake/") && s3::router::virtual_host_bucket(parts, &config.domains).is_none() {
            return Protocol::Admin;
        }
        Protocol::S3
    }
}

/// Opens the data directory, binds, prints where it serves, and serves until `shutdown`.
pub async fn start(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let opened = Opened::open(config).await?;
    let also = opened.listeners.get(1).and_then(|l| l.local_addr().ok()).map(|a| format!(" and http://{a}")).unwrap_or_default();
    println!("firelake listening on http://{}{also}, data in {}", opened.addr, opened.store.root().display());
    opened.serve(shutdown).await;
    Ok(())
}

/// A server that is ready (data directory open, streams and functions loaded, the init
/// file applied, bound) but not yet accepting: the step between `start`'s start-up and
/// its serving, which [`crate::testing`] takes apart to learn the address first.
pub struct Opened {
    pub state: Arc<State>,
    pub store: Arc<Store>,
    pub firehose: Arc<Firehose>,
    pub lambda: Arc<Lambda>,
    /// The first listener's address (the one with `--port 0`'s port).
    pub addr: SocketAddr,
    listeners: Vec<TcpListener>,
    /// An `--ephemeral` data directory, removed when this is dropped, after serving.
    ephemeral: Option<tempfile::TempDir>,
}

impl Opened {
    pub async fn open(config: Config) -> Result<Opened, String> {
        let ephemeral = match config.ephemeral {
            true => Some(
                tempfile::Builder::new()
                    .prefix("firelake-")
                    .tempdir()
                    .map_err(|err| format!("cannot make a temporary data directory: {err}"))?,
            ),
            false => None,
        };
        let data_dir = ephemeral.as_ref().map_or_else(|| config.data_dir.clone(), |dir| dir.path().to_path_buf());
        let store = Store::open(&data_dir, config.durability)
            .map_err(|err| format!("cannot use the data directory {}: {err}", data_dir.display()))?;
        let store = Arc::new(store);
        let lambda = Arc::new(
            Lambda::start(store.clone(), config.lambda.clone())
                .map_err(|err| format!("cannot load the Lambda functions in {}: {err}", data_dir.display()))?,
        );
        let firehose = Arc::new(
            Firehose::start(store.clone(), config.firehose_settings(), lambda.clone())
                .map_err(|err| format!("cannot load the delivery streams in {}: {err}", data_dir.display()))?,
        );
        let listeners = bind(&config).await?;
        let keys = config.auth_keys.clone();
        let firehose_state = Arc::new(FirehoseState { firehose: firehose.clone(), auth_keys: keys.clone() });
        let state = Arc::new(State {
            s3: Arc::new(S3State {
                store: store.clone(),
                auth_keys: keys.clone(),
                domains: config.domains.clone(),
                region: config.region.clone(),
                lifecycle_day_ms: config.lifecycle_day_ms,
            }),
            lambda: Arc::new(LambdaState { lambda: lambda.clone(), store: store.clone(), auth_keys: keys }),
            firehose: firehose_state.clone(),
            admin: AdminState { firehose: firehose_state, store: store.clone(), started: Instant::now(), durability: config.durability },
            config,
        });
        if let Some(path) = state.config.init.clone() {
            crate::init::apply(&state.config, &store, &state.firehose, &state.lambda, &path).await?;
        }
        let addr = listeners[0].local_addr().map_err(|e| e.to_string())?;
        lambda.serving_at(addr);
        Ok(Opened { state, store, firehose, lambda, addr, listeners, ephemeral })
    }

    /// Serves until `shutdown`, then delivers what the streams buffered (bounded).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Opened { state, store, firehose, lambda, listeners, ephemeral, .. } = self;
        let stop_sweep = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sweep = tokio::spawn(crate::s3::lifecycle::sweep::run(store, state.config.lifecycle_day_ms, stop_sweep.clone()));
        run(listeners, state, shutdown).await;
        // A sweep under way stops at its next object; none starts after this.
        stop_sweep.store(true, std::sync::atomic::Ordering::Relaxed);
        sweep.abort();
        tracing::info!("delivering what the delivery streams buffered");
        firehose.shutdown(Duration::from_millis(SHUTDOWN_DRAIN_MS)).await;
        lambda.shutdown().await;
        drop(ephemeral);
    }
}

/// Binds the configured address; with the default host, `[::1]` on the same port too,
/// since `*.localhost` names may resolve to either.
async fn bind(config: &Config) -> Result<Vec<TcpListener>, String> {
    let addr = SocketAddr::new(config.host, config.port);
    let first = TcpListener::bind(addr).await.map_err(|err| format!("cannot listen on {addr}: {err}"))?;
    let mut listeners = vec![first];
    if config.host == DEFAULT_HOST.parse::<IpAddr>().expect("valid default host") {
        let port = listeners[0].local_addr().map_err(|e| e.to_string())?.port();
        if let Ok(v6) = TcpListener::bind(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port)).await {
            listeners.push(v6);
        }
    }
    Ok(listeners)
}

/// Serves connections from `listeners` until `shutdown` completes, then lets requests in
/// flight finish within a bounded time.
pub async fn run(listeners: Vec<TcpListener>, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let (accepted_tx, mut accepted) = mpsc::channel::<(TcpStream, OwnedSemaphorePermit)>(64);
    let connections = Arc::new(Semaphore::new(state.config.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
    let mut acceptors = Vec::new();
    for listener in listeners {
        let accepted_tx = accepted_tx.clone();
        let (connections, refusals) = (connections.clone(), refusals.clone());
        acceptors.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    // A connection beyond the cap is answered at once rather than left
                    // waiting in the backlog behind connections that may never finish.
                    Ok((stream, _)) => match connections.clone().try_acquire_owned() {
                        Ok(permit) => {
                            if accepted_tx.send((stream, permit)).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => match refusals.clone().try_acquire_owned() {
                            Ok(permit) => {
                                tokio::spawn(refuse_connection(stream, permit));
                            }
                            // Refusing is bounded too: past that, the socket is just closed.
                            Err(_) => drop(stream),
                        },
                    },
                    Err(err) => {
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    drop(accepted_tx);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            stream = accepted.recv() => {
                let Some((stream, permit)) = stream else { break };
                let _ = stream.set_nodelay(true);
                let stream = SendTimeout::new(stream, Duration::from_millis(state.config.send_timeout_ms));
                let state = state.clone();
                let service = service_fn(move |req| handle(state.clone(), req));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .max_buf_size(HEADER_BYTES_MAX * 2)
                    .max_header_size(HEADER_BYTES_MAX)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(%err, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            () = &mut shutdown => break,
        }
    }
    for acceptor in acceptors {
        acceptor.abort();
    }
    tracing::info!("shutting down: finishing requests in flight");
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_DRAIN_MS), graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after {SHUTDOWN_DRAIN_MS} ms; closing them");
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let ctx = RequestCtx::new(&state.config, &parts);
    let idle = Duration::from_millis(state.config.body_timeout_ms);
    let response = crate::http::with_body_idle_limit(idle, async {
        match Protocol::of(&parts, &state.config) {
            Protocol::Firehose => firehose::handle(&state.firehose, &ctx, parts, body).await,
            Protocol::Lambda => crate::lambda::api::handle(&state.lambda, &ctx, parts, body).await,
            Protocol::Admin => admin::handle(&state.admin, &ctx, parts, body).await,
            Protocol::S3 => s3::handle(&state.s3, &ctx, parts, body).await,
        }
    })
    .await;
    Ok(response)
}

/// Raises the soft limit on open files to the hard one: every connection, delivery
/// stream journal and object being read holds a descriptor, and the common soft default
/// (1,024) is far below what `--max-connections` and thousands of streams need.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(err) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%err, "cannot raise the open-file limit to the hard limit");
        }
    }
}

/// Connections beyond `--max-connections` being answered at once; further ones are closed.
const REFUSALS_MAX: usize = 64;
/// How long a refused connection gets to take its answer.
const REFUSAL_MS: u64 = 1000;
/// What a connection beyond the cap is told: S3's SlowDown, which the SDKs retry.
const REFUSAL_BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate: all connections are in use.</Message></Error>";

/// Answers 503 SlowDown on a connection beyond the cap, then closes it. Its request is
/// read (and dropped) meanwhile, so that closing does not reset the connection before
/// the client has read the answer.
async fn refuse_connection(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_millis(REFUSAL_MS), async {
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            REFUSAL_BODY.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(REFUSAL_BODY.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < HEADER_BYTES_MAX {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        std::io::Result::Ok(())
    })
    .await;
}

/// A connection whose writes fail once they have made no progress for `limit`: a client
/// that stops reading its response is cut then, instead of holding the connection (and
/// what its response has buffered) for as long as it likes.
struct SendTimeout {
    stream: TcpStream,
    limit: Duration,
    /// Running while a write waits on the client.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SendTimeout {
    fn new(stream: TcpStream, limit: Duration) -> SendTimeout {
        SendTimeout { stream, limit, stalled: None }
    }

    /// Passes a write's outcome on; a write still waiting after `limit` becomes an error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} ms", limit.as_millis()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncRead for SendTimeout {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SendTimeout {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}
