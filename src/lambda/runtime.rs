//! Running a function: worker processes and the Lambda Runtime API (2018-06-01) each of
//! them polls, as AWS's sandbox serves it.
//!
//! A [`Pool`] holds one function's warm workers and lets at most `workers_max` of them
//! run at once. A [`Worker`] is one process (in its own process group, with a clean
//! environment and a memory limit) and its own Runtime API server on a loopback port.
//! An invocation hands the worker a job; the worker's `next` request takes it, its
//! `response` or `error` request answers it. A worker that passes its timeout, crashes
//! or fails its init is killed (the whole process group) and a new one is started for
//! the next invocation.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::Rng;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::http::{Body, BodyError, full, read_body_limited};

/// The largest response a function may return (Lambda's synchronous limit, 6 MB).
pub const RESPONSE_BYTES_MAX: usize = 6 * 1024 * 1024;
/// The largest error document a runtime may post.
const ERROR_BYTES_MAX: usize = 1024 * 1024;
/// How long a new worker may take to start and ask for its first event (AWS: 10 s).
const INIT_MAX: Duration = Duration::from_secs(10);
/// What one worker's log buffer keeps for the invocation's log tail.
const LOG_BYTES_MAX: usize = 64 * 1024;
/// A longer line from a worker is cut (and continued on the next line).
const LINE_BYTES_MAX: usize = 16 * 1024;
/// Connections one worker's Runtime API serves at once (a runtime uses one or two).
const RUNTIME_CONNECTIONS_MAX: usize = 8;

/// How to start a function's worker.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The function's name, which prefixes its workers' lines in firelake's log.
    pub function: String,
    pub arn: String,
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// The worker's whole environment, less `AWS_LAMBDA_RUNTIME_API`.
    pub env: Vec<(String, String)>,
    /// The unpacked code: the worker's working directory.
    pub cwd: PathBuf,
    /// `ulimit -v` for the worker, in KiB.
    pub address_space_kib_max: Option<u64>,
    pub timeout: Duration,
    /// The function's MemorySize, for the REPORT line.
    pub memory_mb: u32,
    /// What to say when `command[0]` cannot be found.
    pub missing: String,
}

/// What an invocation produced.
#[derive(Debug)]
pub struct Outcome {
    pub payload: Bytes,
    /// `Some("Unhandled")` when the function raised, timed out, crashed or failed its init.
    pub function_error: Option<String>,
    /// What the worker printed during the invocation, with START/END/REPORT lines.
    pub log: String,
}

/// Why an invocation did not run.
#[derive(Debug)]
pub enum RunError {
    /// Every worker stayed busy for longer than the function's timeout.
    Busy,
    /// The runtime cannot be started on this machine.
    Runtime(String),
    Internal(String),
}

/// One function's workers.
pub struct Pool {
    spec: Spec,
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
    /// Set when the function changed or was deleted: workers are not kept after their invocation.
    retired: AtomicBool,
}

impl Pool {
    pub fn new(spec: Spec, workers_max: usize) -> Pool {
        Pool { spec, idle: Mutex::new(Vec::new()), slots: Semaphore::new(workers_max.max(1)), retired: AtomicBool::new(false) }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Runs one invocation on a warm worker, or a new one.
    /// With `tail`, the outcome carries the invocation's log (which costs a few ms of waiting for the pipes).
    pub async fn invoke(&self, request_id: &str, payload: Bytes, client_context: Option<String>, tail: bool) -> Result<Outcome, RunError> {
        let Ok(Ok(_slot)) = tokio::time::timeout(self.spec.timeout + INIT_MAX, self.slots.acquire()).await else {
            return Err(RunError::Busy);
        };
        let warm = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let (mut worker, cold) = match warm {
            Some(worker) => (worker, false),
            None => (Worker::spawn(&self.spec).await?, true),
        };
        let started = Instant::now();
        let (reply, keep) = worker.run(&self.spec, request_id, payload, client_context, cold).await;
        let elapsed = started.elapsed();
        let log = match tail {
            true => worker.log_tail(request_id, elapsed, &reply).await,
            false => String::new(),
        };
        if keep && !self.retired.load(Ordering::SeqCst) {
            worker.last_used = Instant::now();
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
        }
        Ok(Outcome { payload: reply.payload, function_error: reply.function_error, log })
    }

    /// Stops keeping workers: the idle ones are killed now, the busy ones when they finish.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Kills the workers idle for longer than `idle_max`.
    pub fn reap(&self, idle_max: Duration) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).retain(|w| w.last_used.elapsed() < idle_max);
    }
}

/// A job handed to a worker: one invocation.
struct Job {
    id: String,
    payload: Bytes,
    arn: String,
    timeout: Duration,
    client_context: Option<String>,
    reply: oneshot::Sender<Reply>,
    started: oneshot::Sender<()>,
}

/// What the runtime answered through its Runtime API.
enum Reply {
    Response(Bytes),
    Error(Bytes),
    InitError(Bytes),
    TooLarge,
}

/// The state a worker's Runtime API server shares with the worker.
struct Shared {
    jobs: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    /// The job the runtime took with `next` and has not answered yet.
    current: Mutex<Option<(String, oneshot::Sender<Reply>)>>,
    /// The document of `/init/error`, which answers the invocation whose worker failed.
    init_error: Mutex<Option<Bytes>>,
}

/// The answer to one invocation, and whether the worker can be kept.
struct Ran {
    payload: Bytes,
    function_error: Option<String>,
}

struct Worker {
    child: Child,
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    log: Arc<Mutex<LogBuffer>>,
    last_used: Instant,
    memory_mb: u32,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The whole group: a handler's own children die with it.
        if let Some(pid) = self.child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
        self.server.abort();
    }
}

/// Finds `program` as `PATH` would, or as a path when it has a `/`.
fn find_program(program: &Path, path: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.components().count() > 1 {
        return runnable(program).then(|| program.to_path_buf());
    }
    path.unwrap_or("/usr/local/bin:/usr/bin:/bin").split(':').map(|dir| Path::new(dir).join(program)).find(|p| runnable(p))
}

impl Worker {
    async fn spawn(spec: &Spec) -> Result<Worker, RunError> {
        let internal = |err: std::io::Error| RunError::Internal(err.to_string());
        let path = spec.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
        let Some(program) = spec.command.first().and_then(|p| find_program(Path::new(p), path)) else {
            return Err(RunError::Runtime(spec.missing.clone()));
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(internal)?;
        let port = listener.local_addr().map_err(internal)?.port();
        let (jobs, jobs_rx) = mpsc::channel(1);
        let shared = Arc::new(Shared { jobs: tokio::sync::Mutex::new(jobs_rx), current: Mutex::new(None), init_error: Mutex::new(None) });
        let server = tokio::spawn(serve_runtime_api(listener, shared.clone()));
        let shell = Path::new("/bin/sh");
        let mut command = match spec.address_space_kib_max {
            Some(kib) if shell.exists() => {
                let mut command = Command::new(shell);
                command.arg("-c").arg("ulimit -v \"$0\" 2>/dev/null; exec \"$@\"").arg(kib.to_string()).arg(&program);
                command
            }
            _ => Command::new(&program),
        };
        command
            .args(&spec.command[1..])
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                server.abort();
                return Err(RunError::Runtime(spec.missing.clone()));
            }
            Err(err) => {
                server.abort();
                return Err(RunError::Runtime(format!("cannot start {}: {err}", program.display())));
            }
        };
        tracing::debug!(function = %spec.function, pid = child.id(), port, "started a worker");
        let log = Arc::new(Mutex::new(LogBuffer::default()));
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(forward_lines(stdout, spec.function.clone(), log.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_lines(stderr, spec.function.clone(), log.clone()));
        }
        Ok(Worker { child, jobs, shared, server, log, last_used: Instant::now(), memory_mb: spec.memory_mb })
    }

    /// Runs one job; answers what to reply and whether the worker may be kept.
    async fn run(&mut self, spec: &Spec, id: &str, payload: Bytes, client_context: Option<String>, cold: bool) -> (Ran, bool) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let (reply_tx, mut reply_rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel();
        let job = Job {
            id: id.to_owned(),
            payload,
            arn: spec.arn.clone(),
            timeout: spec.timeout,
            client_context,
            reply: reply_tx,
            started: started_tx,
        };
        if self.jobs.send(job).await.is_err() {
            return (self.crashed(id, "the worker stopped"), false);
        }
        let mut deadline = tokio::time::Instant::now() + spec.timeout + if cold { INIT_MAX } else { Duration::ZERO };
        let mut started = Some(started_rx);
        loop {
            tokio::select! {
                biased;
                reply = &mut reply_rx => {
                    return match reply {
                        Ok(reply) => answered(reply),
                        Err(_) => (self.crashed(id, "the worker stopped"), false),
                    };
                }
                taken = async {
                    match started.as_mut() {
                        Some(started) => started.await,
                        None => std::future::pending().await,
                    }
                }, if started.is_some() => {
                    started = None;
                    if taken.is_ok() {
                        // The handler's own time starts when the runtime takes the event.
                        deadline = tokio::time::Instant::now() + spec.timeout;
                    }
                }
                status = self.child.wait() => {
                    if let Ok(reply) = reply_rx.try_recv() {
                        let (ran, _) = answered(reply);
                        return (ran, false);
                    }
                    let status = status.map(describe_exit).unwrap_or_else(|err| err.to_string());
                    return (self.crashed(id, &format!("Runtime exited with error: {status}")), false);
                }
                () = tokio::time::sleep_until(deadline) => {
                    let secs = spec.timeout.as_secs_f64();
                    let message = format!("RequestId: {id} Error: Task timed out after {secs:.2} seconds");
                    self.log.lock().unwrap_or_else(|p| p.into_inner()).push_line(&format!("{} {id} Task timed out after {secs:.2} seconds", log_time()));
                    tracing::info!(function = %spec.function, "[{}] {message}", spec.function);
                    let body = serde_json::json!({ "errorType": "Sandbox.Timedout", "errorMessage": message });
                    return (Ran { payload: Bytes::from(body.to_string()), function_error: Some("Unhandled".to_owned()) }, false);
                }
            }
        }
    }

    /// The answer for a worker that exited or failed its init.
    fn crashed(&self, id: &str, why: &str) -> Ran {
        if let Some(document) = self.shared.init_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Ran { payload: document, function_error: Some("Unhandled".to_owned()) };
        }
        let body = serde_json::json!({ "errorType": "Runtime.ExitError", "errorMessage": format!("RequestId: {id} Error: {why}") });
        Ran { payload: Bytes::from(body.to_string()), function_error: Some("Unhandled".to_owned()) }
    }

    /// The invocation's log, framed as Lambda frames it. Lines a worker wrote just before
    /// answering may still be in the pipe, so this waits (briefly) until they stop coming.
    async fn log_tail(&self, id: &str, elapsed: Duration, ran: &Ran) -> String {
        let mut seen = usize::MAX;
        for _ in 0..5 {
            let now = self.log.lock().unwrap_or_else(|p| p.into_inner()).written;
            if now == seen {
                break;
            }
            seen = now;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let lines = self.log.lock().unwrap_or_else(|p| p.into_inner()).text();
        let ms = elapsed.as_secs_f64() * 1000.0;
        let status = if ran.function_error.is_some() { "\tStatus: error" } else { "" };
        format!(
            "START RequestId: {id} Version: $LATEST\n{lines}END RequestId: {id}\nREPORT RequestId: {id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: 0 MB{status}\n",
            ms.ceil() as u64,
            self.memory_mb
        )
    }
}

fn answered(reply: Reply) -> (Ran, bool) {
    let unhandled = Some("Unhandled".to_owned());
    match reply {
        Reply::Response(body) => (Ran { payload: body, function_error: None }, true),
        Reply::Error(body) => (Ran { payload: body, function_error: unhandled }, true),
        Reply::InitError(body) => (Ran { payload: body, function_error: unhandled }, false),
        Reply::TooLarge => {
            let body = serde_json::json!({
                "errorMessage": format!("Response payload size exceeded maximum allowed payload size ({RESPONSE_BYTES_MAX} bytes)."),
                "errorType": "Function.ResponseSizeTooLarge",
            });
            (Ran { payload: Bytes::from(body.to_string()), function_error: unhandled }, true)
        }
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "signal: killed".to_owned(),
        (None, Some(signal)) => format!("signal: {signal}"),
        (None, None) => "exited".to_owned(),
    }
}

fn log_time() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The lines one worker printed since its invocation started, bounded.
#[derive(Default)]
struct LogBuffer {
    lines: VecDeque<String>,
    bytes: usize,
    /// Bytes ever written, to tell when the pipes went quiet.
    written: usize,
}

impl LogBuffer {
    fn clear(&mut self) {
        self.lines.clear();
        self.bytes = 0;
    }

    fn push_line(&mut self, line: &str) {
        self.bytes += line.len() + 1;
        self.written += line.len() + 1;
        self.lines.push_back(line.to_owned());
        while self.bytes > LOG_BYTES_MAX {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// Copies a worker's output to firelake's log, prefixed with the function's name, and to
/// the invocation's log buffer.
async fn forward_lines(mut pipe: impl tokio::io::AsyncRead + Unpin, function: String, log: Arc<Mutex<LogBuffer>>) {
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        loop {
            let cut = match pending.iter().position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if pending.len() >= LINE_BYTES_MAX => LINE_BYTES_MAX,
                None => break,
            };
            let line: Vec<u8> = pending.drain(..cut).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            tracing::info!(target: "firelake::lambda::worker", "[{function}] {text}");
            log.lock().unwrap_or_else(|p| p.into_inner()).push_line(text);
        }
    }
    if !pending.is_empty() {
        let text = String::from_utf8_lossy(&pending).into_owned();
        tracing::info!(target: "firelake::lambda::worker", "[{function}] {text}");
        log.lock().unwrap_or_else(|p| p.into_inner()).push_line(&text);
    }
}

/// Serves one worker's Runtime API until the worker is dropped (which aborts this task).
async fn serve_runtime_api(listener: TcpListener, shared: Arc<Shared>) {
    let connections = Arc::new(Semaphore::new(RUNTIME_CONNECTIONS_MAX));
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else { return };
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        let service = service_fn(move |req| runtime_api(shared.clone(), req));
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
}

fn runtime_reply(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    runtime_reply(status, serde_json::json!({ "errorType": error_type, "errorMessage": message }))
}

async fn runtime_api(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().strip_prefix("/2018-06-01/runtime").unwrap_or("");
    let accepted = || runtime_reply(StatusCode::ACCEPTED, serde_json::json!({ "status": "OK" }));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let response = match (&parts.method, segments.as_slice()) {
        (&http::Method::GET, ["invocation", "next"]) => next(&shared).await,
        (&http::Method::POST, ["invocation", id, kind @ ("response" | "error")]) => {
            let limit = if *kind == "response" { RESPONSE_BYTES_MAX } else { ERROR_BYTES_MAX };
            let read = read_body_limited(body, limit).await;
            let current = {
                let mut current = shared.current.lock().unwrap_or_else(|p| p.into_inner());
                match current.as_ref() {
                    Some((current_id, _)) if current_id == id => current.take(),
                    _ => None,
                }
            };
            match (current, read) {
                (None, _) => runtime_error(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID"),
                (Some((_, reply)), Err(BodyError::TooLarge)) => {
                    let _ = reply.send(Reply::TooLarge);
                    runtime_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        &format!("Exceeded maximum allowed payload size ({limit} bytes)."),
                    )
                }
                (Some((_, reply)), Err(BodyError::Io(err))) => {
                    let _ = reply.send(Reply::Error(Bytes::from(
                        serde_json::json!({ "errorType": "Runtime.Unknown", "errorMessage": err }).to_string(),
                    )));
                    runtime_error(StatusCode::BAD_REQUEST, "InvalidRequest", "the body could not be read")
                }
                (Some((_, reply)), Ok(bytes)) => {
                    let _ = reply.send(if *kind == "response" { Reply::Response(bytes) } else { Reply::Error(bytes) });
                    accepted()
                }
            }
        }
        (&http::Method::POST, ["init", "error"]) => {
            let document = match read_body_limited(body, ERROR_BYTES_MAX).await {
                Ok(bytes) if !bytes.is_empty() => bytes,
                _ => Bytes::from(serde_json::json!({ "errorType": "Runtime.Unknown", "errorMessage": "init failed" }).to_string()),
            };
            *shared.init_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(document.clone());
            // The invocation that started this worker is waiting for a `next` that will not come.
            if let Ok(job) = shared.jobs.lock().await.try_recv() {
                let _ = job.reply.send(Reply::InitError(document));
            }
            accepted()
        }
        _ => runtime_error(StatusCode::NOT_FOUND, "InvalidRequest", "no such Runtime API resource"),
    };
    Ok(response)
}

/// `GET /invocation/next`: waits for the next job and hands it to the runtime.
async fn next(shared: &Shared) -> Response<Body> {
    let job = shared.jobs.lock().await.recv().await;
    let Some(job) = job else {
        return runtime_error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "the worker is stopping");
    };
    let deadline_ms = crate::store::now_ms() + job.timeout.as_millis() as i64;
    let trace = {
        let mut rng = rand::thread_rng();
        let secs = chrono::Utc::now().timestamp();
        format!("Root=1-{secs:08x}-{:024x};Parent={:016x};Sampled=0", rng.r#gen::<u128>() >> 32, rng.r#gen::<u64>())
    };
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &job.id)
        .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
        .header("lambda-runtime-invoked-function-arn", &job.arn)
        .header("lambda-runtime-trace-id", trace);
    if let Some(context) = &job.client_context {
        builder = builder.header("lambda-runtime-client-context", context);
    }
    let response = builder.body(full(job.payload.clone()));
    *shared.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((job.id.clone(), job.reply));
    let _ = job.started.send(());
    response.unwrap_or_else(|_| runtime_error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "bad headers"))
}
