//! AWS Lambda, as much of it as Firehose's data transformation and the course need: the
//! control API (`api`), the functions firelake holds (this module: definitions, their
//! persistence through the store, and the one serialised path of changes), and running
//! them (`runtime`: worker processes and the Runtime API they poll).
//!
//! A function is code that firelake runs as its own user, so code is accepted only when
//! [`Settings::code_allowed`] (loopback, `--auth strict`, or `--lambda-allow-code`).

pub mod api;
pub mod error;
pub mod forward;
pub mod runtime;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::store::Store;
use crate::store::functions::CodeError;
use error::LambdaError;
use runtime::{Outcome, Pool, RunError, Spec};

/// The Python bootstrap, run as `python3 -c`.
const PYTHON_BOOTSTRAP: &str = include_str!("bootstrap/python.py");
/// The Node.js bootstrap, run as `node -e`.
const NODE_BOOTSTRAP: &str = include_str!("bootstrap/node.js");

/// Lambda's payload limit for a synchronous invocation, request and response: 6 MB.
pub const INVOKE_BYTES_MAX: usize = 6 * 1024 * 1024;
/// A zipped upload in the request (AWS: 50 MB).
pub const ZIP_BYTES_MAX: usize = 50 * 1024 * 1024;
/// The code unzipped (AWS: 250 MB).
pub const UNZIPPED_BYTES_MAX: u64 = 262_144_000;
/// Functions one firelake holds.
pub const FUNCTIONS_MAX: usize = 1_000;
/// Event (asynchronous) invocations queued or running at once; beyond, TooManyRequests.
const EVENTS_QUEUED_MAX: usize = 1_000;
/// CreateFunction / UpdateFunctionCode requests whose bodies are read at once.
const UPLOADS_MAX: usize = 4;
/// A worker idle for longer is stopped.
const WARM_IDLE_MAX: Duration = Duration::from_secs(600);
/// Room beyond MemorySize in a worker's address-space limit: interpreters reserve
/// address space they never touch.
const ADDRESS_SPACE_SLACK_MB: u64 = 512;

/// A synchronous (RequestResponse) invocation's answer.
#[derive(Debug, Clone)]
pub struct Invoked {
    /// What the handler returned, or its error document when `function_error` is set.
    pub payload: Bytes,
    /// `X-Amz-Function-Error`: `Some("Unhandled")` when the function failed (it raised,
    /// timed out or crashed); the payload then is `{"errorMessage", "errorType", ...}`.
    pub function_error: Option<String>,
}

/// Why an invocation did not reach the function's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// No such function (Lambda's ResourceNotFoundException).
    NotFound(String),
    /// The payload is over the invocation limit (RequestTooLargeException).
    TooLarge(String),
    /// Anything else that stopped the invocation (a runtime the machine lacks, ...).
    Failed(String),
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::NotFound(m) | InvokeError::TooLarge(m) | InvokeError::Failed(m) => f.write_str(m),
        }
    }
}

/// How functions are run, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Python interpreter for `python3.*` runtimes.
    pub python: String,
    /// The Node.js executable for `nodejs*` runtimes.
    pub node: String,
    /// Invocations of functions firelake does not hold go to this Lambda endpoint (`http://host:port`).
    pub forward_endpoint: Option<String>,
    /// Whether CreateFunction and UpdateFunctionCode are accepted (see the module doc).
    pub code_allowed: bool,
    /// Workers of one function running at once.
    pub workers_max: usize,
    /// The PATH workers get.
    pub path: String,
}

/// A function's definition, as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Function {
    pub account: String,
    pub region: String,
    pub name: String,
    pub runtime: String,
    #[serde(default)]
    pub handler: Option<String>,
    pub role: String,
    #[serde(default)]
    pub description: String,
    pub timeout_secs: u32,
    pub memory_mb: u32,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Which stored code is current (see `store::functions`).
    pub code_id: String,
    /// Base64 SHA-256 of the zip, as Lambda reports it.
    pub code_sha256: String,
    pub code_size: u64,
    /// `2024-05-01T13:07:09.000+0000`.
    pub last_modified: String,
    pub revision_id: String,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub ephemeral_storage_mb: u32,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Function {
    pub fn arn(&self) -> String {
        format!("arn:aws:lambda:{}:{}:function:{}", self.region, self.account, self.name)
    }

    fn family(&self) -> Family {
        Family::of(&self.runtime).unwrap_or(Family::Provided)
    }
}

/// The runtimes firelake runs, by how it starts their workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Python,
    Node,
    Provided,
}

impl Family {
    pub fn of(runtime: &str) -> Option<Family> {
        let minor = |rest: &str| rest.parse::<u32>().ok();
        if let Some(rest) = runtime.strip_prefix("python3.") {
            return minor(rest).filter(|m| (8..=20).contains(m)).map(|_| Family::Python);
        }
        if let Some(rest) = runtime.strip_prefix("nodejs").and_then(|r| r.strip_suffix(".x")) {
            return minor(rest).filter(|m| (12..=40).contains(m)).map(|_| Family::Node);
        }
        matches!(runtime, "provided" | "provided.al2" | "provided.al2023").then_some(Family::Provided)
    }
}

type Key = (String, String, String);

/// A function and, once it has run, its workers.
struct Entry {
    function: Function,
    pool: OnceLock<Arc<Pool>>,
}

/// Every Lambda function firelake holds.
pub struct Lambda {
    store: Arc<Store>,
    settings: Settings,
    functions: Arc<Mutex<HashMap<Key, Arc<Entry>>>>,
    /// Serialises create, update and delete, from reading a definition to saving its successor.
    changes: tokio::sync::Mutex<()>,
    /// firelake's own address, which workers' AWS SDKs are pointed at.
    endpoint: OnceLock<String>,
    events: Arc<Semaphore>,
    /// Code uploads (up to 70 MB each) read at once.
    pub uploads: Semaphore,
    reaper: Option<tokio::task::JoinHandle<()>>,
}

/// A function named by a request: by name, partial ARN or ARN, with an optional qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub account: String,
    pub region: String,
    pub name: String,
    pub qualifier: Option<String>,
}

impl FunctionRef {
    /// Parses `name`, `name:qualifier`, `account:function:name[:q]` or
    /// `arn:aws:lambda:region:account:function:name[:q]`.
    pub fn parse(account: &str, region: &str, reference: &str) -> Result<FunctionRef, LambdaError> {
        let invalid = || {
            LambdaError::Validation(format!(
                "1 validation error detected: Value '{reference}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{{2}}(-gov)?-[a-z]+-\\d{{1}}:)?(\\d{{12}}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?"
            ))
        };
        if reference.is_empty() || reference.len() > 170 {
            return Err(invalid());
        }
        let parts: Vec<&str> = reference.split(':').collect();
        let (account, region, name, qualifier) = match parts.as_slice() {
            [name] => (account, region, *name, None),
            [name, q] => (account, region, *name, Some(*q)),
            [acct, "function", name] => (*acct, region, *name, None),
            [acct, "function", name, q] => (*acct, region, *name, Some(*q)),
            ["arn", _, "lambda", reg, acct, "function", name] => (*acct, *reg, *name, None),
            ["arn", _, "lambda", reg, acct, "function", name, q] => (*acct, *reg, *name, Some(*q)),
            _ => return Err(invalid()),
        };
        let name_ok = (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let qualifier_ok = qualifier.is_none_or(|q| {
            q == "$LATEST" || ((1..=128).contains(&q.len()) && q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        });
        let region_ok = !region.is_empty() && region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !name_ok || !qualifier_ok || !region_ok || !crate::config::valid_account_id(account) {
            return Err(invalid());
        }
        Ok(FunctionRef {
            account: account.to_owned(),
            region: region.to_owned(),
            name: name.to_owned(),
            qualifier: qualifier.map(str::to_owned),
        })
    }

    fn key(&self) -> Key {
        (self.account.clone(), self.region.clone(), self.name.clone())
    }

    fn arn(&self) -> String {
        let qualifier = self.qualifier.as_deref().map(|q| format!(":{q}")).unwrap_or_default();
        format!("arn:aws:lambda:{}:{}:function:{}{qualifier}", self.region, self.account, self.name)
    }

    /// Lambda's message for a function it does not hold.
    pub fn not_found(&self) -> LambdaError {
        LambdaError::NotFound(format!("Function not found: {}", self.arn()))
    }
}

/// How an invocation was asked for, beyond its payload.
#[derive(Debug, Clone, Default)]
pub struct InvokeOptions {
    /// The decoded `X-Amz-Client-Context`.
    pub client_context: Option<String>,
    /// `X-Amz-Log-Type: Tail`: the outcome carries the invocation's log.
    pub tail: bool,
}

impl Lambda {
    /// Loads the saved functions. Their workers start at their first invocation.
    pub fn start(store: Arc<Store>, settings: Settings) -> std::io::Result<Lambda> {
        let mut functions = HashMap::new();
        for bytes in store.load_functions()? {
            match serde_json::from_slice::<Function>(&bytes) {
                Ok(function) => {
                    let key = (function.account.clone(), function.region.clone(), function.name.clone());
                    functions.insert(key, Arc::new(Entry { function, pool: OnceLock::new() }));
                }
                Err(err) => tracing::warn!(%err, "skipping a function definition that cannot be read"),
            }
        }
        if !functions.is_empty() {
            tracing::info!(functions = functions.len(), "loaded Lambda functions");
        }
        let functions = Arc::new(Mutex::new(functions));
        let reaper = tokio::runtime::Handle::try_current().ok().map(|handle| {
            let functions = Arc::downgrade(&functions);
            handle.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    let Some(functions) = functions.upgrade() else { return };
                    let entries: Vec<Arc<Entry>> = functions.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
                    for entry in entries {
                        if let Some(pool) = entry.pool.get() {
                            pool.reap(WARM_IDLE_MAX);
                        }
                    }
                }
            })
        });
        Ok(Lambda {
            store,
            settings,
            functions,
            changes: tokio::sync::Mutex::new(()),
            endpoint: OnceLock::new(),
            events: Arc::new(Semaphore::new(EVENTS_QUEUED_MAX)),
            uploads: Semaphore::new(UPLOADS_MAX),
            reaper,
        })
    }

    /// Tells where firelake listens, so that workers' SDKs call back to it.
    pub fn serving_at(&self, addr: SocketAddr) {
        let ip = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
            ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let _ = self.endpoint.set(format!("http://{}", SocketAddr::new(ip, addr.port())));
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// firelake's address as workers and Code.Location name it.
    pub fn endpoint(&self) -> String {
        self.endpoint.get().cloned().unwrap_or_else(|| "http://127.0.0.1:4573".to_owned())
    }

    /// Invokes `function` (a name or an ARN) of `account` and `region` synchronously.
    pub async fn invoke(&self, account: &str, region: &str, function: &str, payload: Bytes) -> Result<Invoked, InvokeError> {
        if payload.len() > INVOKE_BYTES_MAX {
            return Err(InvokeError::TooLarge(format!(
                "Request must be smaller than {INVOKE_BYTES_MAX} bytes for the InvokeFunction operation"
            )));
        }
        match self.run(account, region, function, payload, InvokeOptions::default()).await {
            Ok(outcome) => Ok(Invoked { payload: outcome.payload, function_error: outcome.function_error }),
            Err(LambdaError::NotFound(m)) => Err(InvokeError::NotFound(m)),
            Err(LambdaError::TooLarge(m)) => Err(InvokeError::TooLarge(m)),
            Err(err) => Err(InvokeError::Failed(format!("{}: {}", err.code(), err.message()))),
        }
    }

    /// The function a reference names, if firelake holds it (qualifier `$LATEST` or none).
    pub fn get(&self, reference: &FunctionRef) -> Result<Function, LambdaError> {
        if reference.qualifier.as_deref().is_some_and(|q| q != "$LATEST") {
            return Err(reference.not_found());
        }
        self.entry(reference).map(|e| e.function.clone()).ok_or_else(|| reference.not_found())
    }

    fn entry(&self, reference: &FunctionRef) -> Option<Arc<Entry>> {
        self.functions.lock().unwrap_or_else(|p| p.into_inner()).get(&reference.key()).cloned()
    }

    /// The functions of `account` in `region`, by name.
    pub fn list(&self, account: &str, region: &str) -> Vec<Function> {
        let functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Function> = functions
            .values()
            .filter(|e| e.function.account == account && e.function.region == region)
            .map(|e| e.function.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Runs an invocation and answers its outcome (with the log, for `X-Amz-Log-Type: Tail`).
    pub async fn run(
        &self,
        account: &str,
        region: &str,
        function: &str,
        payload: Bytes,
        options: InvokeOptions,
    ) -> Result<Outcome, LambdaError> {
        let reference = FunctionRef::parse(account, region, function)?;
        let entry = match self.entry(&reference) {
            Some(entry) if reference.qualifier.as_deref().is_none_or(|q| q == "$LATEST") => entry,
            Some(_) => return Err(reference.not_found()),
            None => match &self.settings.forward_endpoint {
                Some(endpoint) => return forward::invoke(endpoint, &reference, payload).await,
                None => return Err(reference.not_found()),
            },
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let function = &entry.function;
        let has_bootstrap =
            || self.store.function_has_file(&function.account, &function.region, &function.name, &function.code_id, "bootstrap");
        if function.family() == Family::Provided && !has_bootstrap() {
            let body = serde_json::json!({
                "errorType": "Runtime.InvalidEntrypoint",
                "errorMessage": format!("RequestId: {request_id} Error: Couldn't find valid bootstrap(s): [bootstrap at the root of the function's code]"),
            });
            return Ok(Outcome {
                payload: Bytes::from(body.to_string()),
                function_error: Some("Unhandled".to_owned()),
                log: String::new(),
            });
        }
        let pool = match entry.pool.get() {
            Some(pool) => pool.clone(),
            None => {
                let spec = self.spec(function).map_err(|err| {
                    tracing::error!(%err, function = %function.name, "cannot find the function's code");
                    LambdaError::Internal
                })?;
                entry.pool.get_or_init(|| Arc::new(Pool::new(spec, self.settings.workers_max))).clone()
            }
        };
        let payload = if payload.is_empty() { Bytes::from_static(b"{}") } else { payload };
        match pool.invoke(&request_id, payload, options.client_context, options.tail).await {
            Ok(outcome) => Ok(outcome),
            Err(RunError::Busy) => Err(LambdaError::TooMany("Rate Exceeded.".to_owned())),
            Err(RunError::Runtime(message)) => Err(LambdaError::InvalidRuntime(message)),
            Err(RunError::Internal(message)) => {
                tracing::error!(%message, function = %function.name, "cannot start a worker");
                Err(LambdaError::Internal)
            }
        }
    }

    /// Queues an Event invocation; its outcome goes to the log only.
    pub fn run_event(
        self: &Arc<Self>,
        account: &str,
        region: &str,
        function: &str,
        payload: Bytes,
        options: InvokeOptions,
    ) -> Result<(), LambdaError> {
        let reference = FunctionRef::parse(account, region, function)?;
        if self.settings.forward_endpoint.is_none() {
            self.get(&reference)?;
        }
        let Ok(permit) = self.events.clone().try_acquire_owned() else {
            return Err(LambdaError::TooMany("Rate Exceeded.".to_owned()));
        };
        let lambda = self.clone();
        let (account, region, function) = (account.to_owned(), region.to_owned(), function.to_owned());
        tokio::spawn(async move {
            match lambda.run(&account, &region, &function, payload, options).await {
                Ok(outcome) if outcome.function_error.is_some() => {
                    tracing::info!(function, error = %String::from_utf8_lossy(&outcome.payload), "event invocation failed");
                }
                Ok(_) => tracing::debug!(function, "event invocation done"),
                Err(err) => tracing::info!(function, code = err.code(), message = %err.message(), "event invocation not run"),
            }
            drop(permit);
        });
        Ok(())
    }

    fn code_dir(&self, function: &Function) -> std::io::Result<std::path::PathBuf> {
        self.store.function_code_dir(&function.account, &function.region, &function.name, &function.code_id)
    }

    /// How to start a worker of `function`: the sandbox's environment and the command.
    fn spec(&self, function: &Function) -> std::io::Result<Spec> {
        let cwd = self.code_dir(function)?;
        let task_root = cwd.to_string_lossy().into_owned();
        let memory_kib = (function.memory_mb as u64 + ADDRESS_SPACE_SLACK_MB) * 1024;
        let (command, missing, address_space_kib_max): (Vec<std::ffi::OsString>, String, Option<u64>) = match function.family() {
            Family::Python => (
                vec![self.settings.python.clone().into(), "-c".into(), PYTHON_BOOTSTRAP.into()],
                format!(
                    "The runtime {} needs Python 3, and {:?} was not found on this machine: install it (Debian: apt-get install python3) or name an interpreter with --lambda-python",
                    function.runtime, self.settings.python
                ),
                Some(memory_kib),
            ),
            Family::Node => (
                vec![
                    self.settings.node.clone().into(),
                    format!("--max-old-space-size={}", (function.memory_mb as u64 * 9 / 10).max(64)).into(),
                    "-e".into(),
                    NODE_BOOTSTRAP.into(),
                ],
                format!(
                    "The runtime {} needs Node.js, and {:?} was not found on this machine: install it (Debian: apt-get install nodejs) or name one with --lambda-node",
                    function.runtime, self.settings.node
                ),
                // V8 reserves far more address space than it uses; its heap limit is the memory limit instead.
                None,
            ),
            Family::Provided => (
                vec![cwd.join("bootstrap").into_os_string()],
                "The function's code has no executable file named bootstrap at its root".to_owned(),
                Some(memory_kib),
            ),
        };
        let stream = format!("{}/[$LATEST]{}", chrono::Utc::now().format("%Y/%m/%d"), uuid::Uuid::new_v4().simple());
        let mut env: BTreeMap<String, String> = [
            ("PATH", self.settings.path.as_str()),
            ("LANG", "C.UTF-8"),
            ("TZ", ":UTC"),
            ("LAMBDA_TASK_ROOT", &task_root),
            ("LAMBDA_RUNTIME_DIR", &task_root),
            ("_HANDLER", function.handler.as_deref().unwrap_or("")),
            ("AWS_LAMBDA_FUNCTION_NAME", &function.name),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &function.memory_mb.to_string()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", &format!("/aws/lambda/{}", function.name)),
            ("AWS_LAMBDA_LOG_STREAM_NAME", &stream),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
            ("AWS_EXECUTION_ENV", &format!("AWS_Lambda_{}", function.runtime)),
            ("AWS_REGION", &function.region),
            ("AWS_DEFAULT_REGION", &function.region),
            // A 12-digit access key acts for that account in firelake; the function's own
            // Environment may name other credentials (one `--auth strict` knows).
            ("AWS_ACCESS_KEY_ID", &function.account),
            ("AWS_SECRET_ACCESS_KEY", "firelake-lambda"),
            ("AWS_ENDPOINT_URL", &self.endpoint()),
            ("PYTHONDONTWRITEBYTECODE", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(function.environment.clone());
        Ok(Spec {
            function: function.name.clone(),
            arn: function.arn(),
            command,
            env: env.into_iter().collect(),
            cwd,
            address_space_kib_max,
            timeout: Duration::from_secs(function.timeout_secs.max(1) as u64),
            memory_mb: function.memory_mb,
            missing,
        })
    }

    /// Stores new code for a function; answers its code id.
    async fn store_code(&self, account: &str, region: &str, name: &str, zip: Bytes) -> Result<String, LambdaError> {
        let store = self.store.clone();
        let (account, region, name) = (account.to_owned(), region.to_owned(), name.to_owned());
        let saved = tokio::task::spawn_blocking(move || store.save_function_code(&account, &region, &name, &zip, UNZIPPED_BYTES_MAX))
            .await
            .map_err(|_| LambdaError::Internal)?;
        match saved {
            Ok((id, _)) => Ok(id),
            Err(CodeError::NotZip(why)) => {
                tracing::debug!(%why, "code is not a zip");
                Err(LambdaError::InvalidParameter(
                    "Could not unzip uploaded file. Please check your file, then try to upload again.".to_owned(),
                ))
            }
            Err(CodeError::TooLarge { limit }) => {
                Err(LambdaError::InvalidParameter(format!("Unzipped size must be smaller than {limit} bytes")))
            }
            Err(CodeError::Unsafe(why)) => Err(LambdaError::InvalidParameter(format!(
                "Could not unzip uploaded file: {why} (firelake refuses entries that would land outside the function's folder)"
            ))),
            Err(CodeError::Io(err)) => {
                tracing::error!(%err, "cannot store function code");
                Err(LambdaError::Internal)
            }
        }
    }

    async fn save(&self, function: &Function) -> Result<(), LambdaError> {
        let store = self.store.clone();
        let function = function.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let bytes = serde_json::to_vec_pretty(&function).map_err(std::io::Error::other)?;
            store.save_function(&function.account, &function.region, &function.name, &bytes)?;
            store.prune_function_code(&function.account, &function.region, &function.name, &function.code_id)
        })
        .await
        .map_err(|_| LambdaError::Internal)?;
        saved.map_err(|err| {
            tracing::error!(%err, "cannot save a function");
            LambdaError::Internal
        })
    }

    fn put_entry(&self, function: Function) {
        let key = (function.account.clone(), function.region.clone(), function.name.clone());
        let old = self.functions.lock().unwrap_or_else(|p| p.into_inner()).insert(key, Arc::new(Entry { function, pool: OnceLock::new() }));
        if let Some(pool) = old.and_then(|e| e.pool.get().cloned()) {
            pool.retire();
        }
    }

    /// Creates a function with `zip` as its code; `function`'s code fields are filled in.
    pub async fn create(&self, mut function: Function, zip: Bytes) -> Result<Function, LambdaError> {
        let _changes = self.changes.lock().await;
        let reference = FunctionRef {
            account: function.account.clone(),
            region: function.region.clone(),
            name: function.name.clone(),
            qualifier: None,
        };
        let count = self.functions.lock().unwrap_or_else(|p| p.into_inner()).len();
        if self.entry(&reference).is_some() {
            return Err(LambdaError::Conflict(format!("Function already exist: {}", function.name)));
        }
        if count >= FUNCTIONS_MAX {
            return Err(LambdaError::InvalidParameter(format!("firelake holds at most {FUNCTIONS_MAX} functions")));
        }
        set_code(&mut function, &zip);
        function.code_id = self.store_code(&function.account, &function.region, &function.name, zip).await?;
        self.save(&function).await?;
        self.put_entry(function.clone());
        Ok(function)
    }

    /// Changes a function's definition (not its code) through `change`.
    pub async fn update(
        &self,
        reference: &FunctionRef,
        revision_id: Option<&str>,
        change: impl FnOnce(&mut Function) -> Result<(), LambdaError>,
    ) -> Result<Function, LambdaError> {
        let _changes = self.changes.lock().await;
        let mut function = self.get(reference)?;
        check_revision(&function, revision_id)?;
        change(&mut function)?;
        touch(&mut function);
        self.save(&function).await?;
        self.put_entry(function.clone());
        Ok(function)
    }

    /// Replaces a function's code.
    pub async fn update_code(
        &self,
        reference: &FunctionRef,
        revision_id: Option<&str>,
        zip: Bytes,
        dry_run: bool,
    ) -> Result<Function, LambdaError> {
        let _changes = self.changes.lock().await;
        let mut function = self.get(reference)?;
        check_revision(&function, revision_id)?;
        if dry_run {
            return Ok(function);
        }
        set_code(&mut function, &zip);
        function.code_id = self.store_code(&function.account, &function.region, &function.name, zip).await?;
        touch(&mut function);
        self.save(&function).await?;
        self.put_entry(function.clone());
        Ok(function)
    }

    pub async fn delete(&self, reference: &FunctionRef) -> Result<(), LambdaError> {
        if reference.qualifier.as_deref().is_some_and(|q| q != "$LATEST") {
            return Err(LambdaError::NotImplemented("firelake has no published versions to delete; only $LATEST".to_owned()));
        }
        let _changes = self.changes.lock().await;
        let function = self.get(reference)?;
        let store = self.store.clone();
        let deleted = tokio::task::spawn_blocking(move || store.delete_function(&function.account, &function.region, &function.name))
            .await
            .map_err(|_| LambdaError::Internal)?;
        if let Err(err) = deleted {
            tracing::error!(%err, "cannot delete a function");
            return Err(LambdaError::Internal);
        }
        let old = self.functions.lock().unwrap_or_else(|p| p.into_inner()).remove(&reference.key());
        if let Some(pool) = old.and_then(|e| e.pool.get().cloned()) {
            pool.retire();
        }
        Ok(())
    }

    /// The zip of a function's current code.
    pub async fn code_zip(&self, reference: &FunctionRef) -> Result<Vec<u8>, LambdaError> {
        let function = self.get(reference)?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.read_function_zip(&function.account, &function.region, &function.name, &function.code_id))
            .await
            .map_err(|_| LambdaError::Internal)?
            .map_err(|err| {
                tracing::error!(%err, "cannot read a function's code");
                LambdaError::Internal
            })
    }

    /// Stops every worker.
    pub async fn shutdown(&self) {
        if let Some(reaper) = &self.reaper {
            reaper.abort();
        }
        let entries: Vec<Arc<Entry>> = self.functions.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for entry in entries {
            if let Some(pool) = entry.pool.get() {
                pool.retire();
            }
        }
    }
}

/// Zips a folder of code (files and folders below it, links followed), for the init file.
pub fn zip_folder(folder: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut pending = vec![folder.to_path_buf()];
    let mut total = 0u64;
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let meta = std::fs::metadata(&path)?;
            let name = path.strip_prefix(folder).map_err(std::io::Error::other)?.to_string_lossy().into_owned();
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            total += meta.len();
            if total > UNZIPPED_BYTES_MAX {
                return Err(std::io::Error::other(format!("the folder holds more than {UNZIPPED_BYTES_MAX} bytes")));
            }
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(meta.permissions().mode() & 0o777);
            writer.start_file(name, options).map_err(std::io::Error::other)?;
            writer.write_all(&std::fs::read(&path)?)?;
        }
    }
    Ok(writer.finish().map_err(std::io::Error::other)?.into_inner())
}

fn set_code(function: &mut Function, zip: &[u8]) {
    use base64::Engine;
    use sha2::Digest;
    function.code_sha256 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(zip));
    function.code_size = zip.len() as u64;
}

fn touch(function: &mut Function) {
    function.last_modified = last_modified_now();
    function.revision_id = uuid::Uuid::new_v4().to_string();
}

pub fn last_modified_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn check_revision(function: &Function, revision_id: Option<&str>) -> Result<(), LambdaError> {
    match revision_id {
        Some(id) if id != function.revision_id => Err(LambdaError::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id".to_owned(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(reference: &str, expected: Option<(&str, &str, &str, Option<&str>)>) {
        let got = FunctionRef::parse("000000000000", "us-east-1", reference).ok();
        let expected = expected.map(|(a, r, n, q)| FunctionRef {
            account: a.to_owned(),
            region: r.to_owned(),
            name: n.to_owned(),
            qualifier: q.map(str::to_owned),
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn references() {
        check("f", Some(("000000000000", "us-east-1", "f", None)));
        check("my-func_1:$LATEST", Some(("000000000000", "us-east-1", "my-func_1", Some("$LATEST"))));
        check("123456789012:function:f", Some(("123456789012", "us-east-1", "f", None)));
        check("arn:aws:lambda:eu-west-1:123456789012:function:f", Some(("123456789012", "eu-west-1", "f", None)));
        check("arn:aws:lambda:eu-west-1:123456789012:function:f:prod", Some(("123456789012", "eu-west-1", "f", Some("prod"))));
        check("", None);
        check("a/b", None);
        check("../x", None);
        check("arn:aws:s3:::bucket", None);
        check(&"x".repeat(65), None);
        check("arn:aws:lambda:eu-west-1:12345:function:f", None);
    }

    #[test]
    fn families() {
        assert_eq!(Family::of("python3.12"), Some(Family::Python));
        assert_eq!(Family::of("nodejs20.x"), Some(Family::Node));
        assert_eq!(Family::of("provided.al2023"), Some(Family::Provided));
        assert_eq!(Family::of("java21"), None);
        assert_eq!(Family::of("python2.7"), None);
    }
}
