//! A firelake inside a test: [`Server::start`] runs one in this process, on a free port
//! of 127.0.0.1 with a throwaway data directory, and dropping it stops it (delivering
//! what its streams buffered) and removes the directory. Each test can have its own:
//! start-up takes milliseconds.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let firelake = firelake::testing::Server::builder().buffer_interval_cap(std::time::Duration::from_secs(1)).start()?;
//! let endpoint = firelake.endpoint(); // "http://127.0.0.1:<port>": give it to the SDK clients
//! // ... create a bucket and a delivery stream, put records ...
//! firelake.flush().await?; // every buffer delivered, as `POST /_firelake/flush` does
//! firelake.reset().await?; // no streams, no buckets, as `POST /_firelake/reset` does
//! # Ok(()) }
//! ```
//!
//! The server runs on a thread and a tokio runtime of its own, so it serves whatever
//! the test does with its own runtime (a `#[tokio::test]` on one thread included) and
//! a plain `#[test]` can use it too. It logs through `tracing` like the binary but sets
//! up no subscriber: a test that wants the logs installs one (for example
//! `tracing_subscriber::fmt().with_test_writer().try_init()`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Secret, ServeArgs};
use crate::firehose::registry::Firehose;
use crate::server::{Opened, State};
use crate::store::{Durability, Store};

/// How long stopping may wait for the server's runtime to wind down its blocking work,
/// after the (already bounded) drain of requests and buffers.
const RUNTIME_SHUTDOWN_MS: u64 = 10_000;

/// A firelake running in this process; stopped when dropped.
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    store: Arc<Store>,
    firehose: Arc<Firehose>,
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The options of a [`Server`] before it starts; [`Server::builder`] makes one with the
/// command line's defaults, port 0 and a throwaway data directory.
#[derive(Debug, Clone)]
pub struct Builder {
    args: ServeArgs,
    keys: Vec<String>,
}

/// Why a server did not start, or a flush or reset failed.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Server {
    /// Starts a server with the defaults (those of the command line, on port 0 and a
    /// throwaway data directory). Blocks for the milliseconds start-up takes.
    pub fn start() -> Result<Server, Error> {
        Server::builder().start()
    }

    /// Options for a server, then [`Builder::start`].
    pub fn builder() -> Builder {
        Builder { args: ServeArgs { port: 0, ephemeral: true, ..ServeArgs::default() }, keys: Vec::new() }
    }

    /// `http://127.0.0.1:<port>`, for the SDKs' `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on (IPv4 loopback; `[::1]` on the same port is served too).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The data directory: bucket `B`'s object `K` is the file `data_dir/B/K`.
    pub fn data_dir(&self) -> &Path {
        self.store.root()
    }

    /// Delivers every delivery stream's buffered records now and returns once they are
    /// written (`POST /_firelake/flush`). Fails naming each stream that could not deliver
    /// and why (a bucket that does not exist, say).
    pub async fn flush(&self) -> Result<(), Error> {
        self.flush_streams(None).await
    }

    /// Delivers one delivery stream's buffered records now (`POST /_firelake/flush?stream=NAME`).
    pub async fn flush_stream(&self, name: &str) -> Result<(), Error> {
        self.flush_streams(Some(name.to_owned())).await
    }

    async fn flush_streams(&self, name: Option<String>) -> Result<(), Error> {
        let firehose = self.firehose.clone();
        let wanted = name.clone();
        let outcomes = self
            .runtime
            .spawn(async move { firehose.flush(wanted.as_deref(), crate::admin::FLUSH_TIMEOUT).await })
            .await
            .map_err(|err| Error(format!("the flush did not finish: {err}")))?;
        if let Some(name) = name
            && outcomes.is_empty()
        {
            return Err(Error(format!("no delivery stream named {name}")));
        }
        let failed: Vec<String> =
            outcomes.into_iter().filter_map(|(stream, outcome)| outcome.err().map(|why| format!("{stream}: {why}"))).collect();
        match failed.is_empty() {
            true => Ok(()),
            false => Err(Error(format!("not delivered: {}", failed.join("; ")))),
        }
    }

    /// Deletes every delivery stream (discarding its buffer) and every bucket with its
    /// objects (`POST /_firelake/reset`), so that the next test starts clean on the same server.
    pub async fn reset(&self) -> Result<(), Error> {
        let state = self.state.clone();
        self.runtime
            .spawn(async move { crate::admin::reset(&state.admin) })
            .await
            .map_err(|err| Error(format!("the reset did not finish: {err}")))?
            .map_err(|err| Error(format!("cannot reset: {err}")))
    }

    /// Stops the server as Ctrl-C stops the binary: requests in flight finish, buffers
    /// are delivered (each bounded at 10 s), and a throwaway data directory is removed.
    /// Dropping the server does the same.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).field("data_dir", &self.data_dir()).finish()
    }
}

impl Builder {
    /// No delivery stream waits longer than `cap` to deliver (`--buffer-interval-cap`);
    /// Describe still reports the configured interval. Rounded to milliseconds.
    pub fn buffer_interval_cap(mut self, cap: Duration) -> Builder {
        self.args.buffer_interval_cap = Some(cap.as_secs_f64());
        self
    }

    /// Accept delivery stream settings firelake does not emulate, and ignore them (`--lenient`).
    pub fn lenient(mut self) -> Builder {
        self.args.lenient = true;
        self
    }

    /// Verify every request's signature (`--auth strict`), accepting this key among others
    /// given the same way.
    pub fn auth_key(mut self, access_key_id: &str, secret_access_key: &str) -> Builder {
        self.keys.push(format!("{access_key_id}:{secret_access_key}"));
        self
    }

    /// Create the buckets, delivery streams and functions of this file before serving (`--init`).
    pub fn init_file(mut self, path: impl Into<PathBuf>) -> Builder {
        self.args.init = Some(path.into());
        self
    }

    /// Keep the data in `dir` (made if missing, kept after the server stops) instead of a
    /// throwaway directory: for tests of what a restart finds.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.args.data_dir = dir.into();
        self.args.ephemeral = false;
        self
    }

    /// `Durability::None` makes no fsync calls (`--durability none`): faster, and nothing
    /// is lost unless the machine itself goes down, which a test does not survive anyway.
    pub fn durability(mut self, durability: Durability) -> Builder {
        self.args.durability = durability;
        self
    }

    /// Any other option, as the command line's field (`--create-delay` is `create_delay`, ...).
    pub fn configure(mut self, change: impl FnOnce(&mut ServeArgs)) -> Builder {
        change(&mut self.args);
        self
    }

    /// Starts the server and returns once it accepts requests (the options validated as the
    /// command line's are, and the init file applied).
    pub fn start(self) -> Result<Server, Error> {
        let Builder { mut args, keys } = self;
        if !keys.is_empty() {
            args.auth = crate::auth::AuthMode::Strict;
            args.auth_keys = Some(Secret::new(keys.join(",")));
        }
        let config = Config::from_args(args).map_err(Error)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("firelake".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("firelake-worker")
                    .max_blocking_threads(config.blocking_threads_max)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(format!("cannot start the runtime: {err}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Opened::open(config).await {
                        Ok(opened) => {
                            let ready = (
                                opened.addr,
                                opened.state.clone(),
                                opened.store.clone(),
                                opened.firehose.clone(),
                                tokio::runtime::Handle::current(),
                            );
                            let _ = ready_tx.send(Ok(ready));
                            opened
                                .serve(async {
                                    let _ = stopped.await;
                                })
                                .await;
                        }
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                        }
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(RUNTIME_SHUTDOWN_MS));
            })
            .map_err(|err| Error(format!("cannot start the server's thread: {err}")))?;
        match ready_rx.recv() {
            Ok(Ok((addr, state, store, firehose, runtime))) => {
                Ok(Server { addr, state, store, firehose, runtime, stop: Some(stop), thread: Some(thread) })
            }
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(Error(err))
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error("the server's thread ended before it was ready".to_owned()))
            }
        }
    }
}
