//! The command line and environment, validated once into [`Config`].

use std::net::IpAddr;
use std::path::PathBuf;

use crate::auth::{AuthMode, Keys};
use crate::store::Durability;

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 4573;
pub const DEFAULT_DATA_DIR: &str = "./firelake-data";
pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";
pub const DEFAULT_LOG: &str = "info";
pub const DEFAULT_LAMBDA_PYTHON: &str = "python3";
pub const DEFAULT_LAMBDA_NODE: &str = "node";
pub const DEFAULT_DOMAINS: &str = "localhost,s3.localhost,localhost.localstack.cloud,s3.localhost.localstack.cloud";
/// Most simultaneous connections; further ones wait to be accepted.
pub const DEFAULT_CONNECTIONS_MAX: usize = 1024;
/// Largest request head (request line and headers) hyper buffers.
pub const HEADER_BYTES_MAX: usize = 64 * 1024;
/// Largest XML or JSON request body read into memory.
pub const SMALL_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;
/// S3's limit for one PutObject: 5 GiB.
pub const OBJECT_BYTES_MAX: u64 = 5 * 1024 * 1024 * 1024;
/// Undelivered bytes one stream may hold: room for a full 128 MiB buffer and one in flight.
pub const DEFAULT_STREAM_BUFFER_MB: u64 = 256;
/// Undelivered bytes all streams may hold together.
pub const DEFAULT_TOTAL_BUFFER_MB: u64 = 1024;
/// Workers of one Lambda function running at once.
pub const DEFAULT_LAMBDA_WORKERS_MAX: usize = 4;
/// How long a graceful shutdown waits for requests in flight.
pub const SHUTDOWN_DRAIN_MS: u64 = 10_000;
/// How long a request body may send nothing before it is refused (S3 `RequestTimeout`,
/// after about 20 s on AWS).
pub const DEFAULT_BODY_TIMEOUT_SECS: f64 = 20.0;
/// How long a response may wait on a client that reads nothing before the connection
/// is cut.
pub const DEFAULT_SEND_TIMEOUT_SECS: f64 = 30.0;
/// Most threads for blocking file work (tokio's default).
pub const DEFAULT_BLOCKING_THREADS: usize = 512;
/// The length of a lifecycle "day": a real one.
pub const DEFAULT_LIFECYCLE_DAY_SECS: f64 = 86_400.0;

/// firelake: a local Amazon Data Firehose and Amazon S3 that keeps objects as plain files.
#[cfg(feature = "cli")]
#[derive(Debug, clap::Parser)]
#[command(name = "firelake", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[cfg(feature = "cli")]
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Send records to a delivery stream through the AWS SDK (a producer for workshops and load).
    #[cfg(feature = "produce")]
    Produce(crate::produce::ProduceArgs),
    /// Exit 0 when a firelake answers its health endpoint, 1 otherwise (for container health checks).
    Healthcheck {
        /// The server to ask.
        #[arg(long, env = "FIRELAKE_URL", default_value = "http://127.0.0.1:4573")]
        url: String,
    },
}

/// The server's options as given, before [`Config::from_args`] validates them: the
/// command line's (with the `cli` feature), or [`ServeArgs::default`]'s for a server
/// started by [`crate::testing`].
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ServeArgs {
    /// Address to listen on. With the default, [::1] is served too (for `*.localhost` names).
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_HOST", default_value = DEFAULT_HOST))]
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_PORT", default_value_t = DEFAULT_PORT))]
    pub port: u16,
    /// Folder that holds the buckets (one folder each) and firelake's own `.firelake/`.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_DATA_DIR", default_value = DEFAULT_DATA_DIR))]
    pub data_dir: PathBuf,
    /// Region reported when a request does not name one in its signature.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_REGION", default_value = DEFAULT_REGION))]
    pub region: String,
    /// Account that owns what requests create; a 12-digit access key id acts for that account instead.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_ACCOUNT_ID", default_value = DEFAULT_ACCOUNT_ID))]
    pub account_id: String,
    /// Log filter (`info`, `debug`, `firelake=trace`, ...); RUST_LOG overrides it.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_LOG", default_value = DEFAULT_LOG))]
    pub log: String,
    /// Host names under which `<bucket>.<domain>` addresses a bucket (virtual-hosted style), comma-separated.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_DOMAINS", default_value = DEFAULT_DOMAINS, value_delimiter = ','))]
    pub domains: Vec<String>,
    /// `fsync` makes every acknowledged write durable; `none` makes no fsync calls (faster; a power cut may lose writes).
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_DURABILITY", value_enum, default_value = "fsync"))]
    pub durability: Durability,
    /// Most simultaneous connections; a connection beyond them is answered 503 SlowDown at once.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_MAX_CONNECTIONS", default_value_t = DEFAULT_CONNECTIONS_MAX))]
    pub max_connections: usize,
    /// Seconds a request body may send nothing before it is refused (S3 `RequestTimeout`).
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_BODY_TIMEOUT", default_value_t = DEFAULT_BODY_TIMEOUT_SECS))]
    pub body_timeout: f64,
    /// Seconds a response may wait on a client that reads nothing before the connection is cut.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_SEND_TIMEOUT", default_value_t = DEFAULT_SEND_TIMEOUT_SECS))]
    pub send_timeout: f64,
    /// Most threads doing blocking file work at once.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_BLOCKING_THREADS", default_value_t = DEFAULT_BLOCKING_THREADS, hide = true))]
    pub blocking_threads: usize,
    /// Keep new delivery streams CREATING this many seconds (to test waiters); 0 makes them ACTIVE at once.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_CREATE_DELAY", default_value_t = 0.0))]
    pub create_delay: f64,
    /// Cap every delivery stream's buffer interval at this many seconds (Describe still reports the configured one).
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_BUFFER_INTERVAL_CAP"))]
    pub buffer_interval_cap: Option<f64>,
    /// Accept delivery stream settings firelake does not emulate (data format conversion, other sources and destinations) and ignore them, instead of refusing.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_LENIENT"))]
    pub lenient: bool,
    /// Most undelivered MiB one delivery stream holds before puts are throttled ("Slow down."); a
    /// stream whose SizeInMBs is more than half of it flushes at half of it.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_STREAM_BUFFER_MAX_MB", default_value_t = DEFAULT_STREAM_BUFFER_MB))]
    pub stream_buffer_max_mb: u64,
    /// Run on a fresh temporary data directory, removed at exit (for test suites).
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_EPHEMERAL", conflicts_with = "data_dir"))]
    pub ephemeral: bool,
    /// A JSON file of buckets and delivery streams to create at start, before serving (see fixtures/workshop.json).
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_INIT"))]
    pub init: Option<PathBuf>,
    /// Most undelivered MiB all delivery streams hold together before puts are throttled ("Slow down.").
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_TOTAL_BUFFER_MAX_MB", default_value_t = DEFAULT_TOTAL_BUFFER_MB))]
    pub total_buffer_max_mb: u64,
    /// `off` accepts any credentials; `strict` verifies SigV4 signatures (headers, presigned URLs, chunks) against the access keys.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_AUTH", value_enum, default_value = "off"))]
    pub auth: AuthMode,
    /// Access keys for `--auth strict`, as `ID:SECRET,ID:SECRET`.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_AUTH_KEYS", hide_env_values = true))]
    pub auth_keys: Option<Secret>,
    /// A file of access keys for `--auth strict`, one `ID:SECRET` per line (`#` starts a comment).
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_AUTH_KEYS_FILE"))]
    pub auth_keys_file: Option<PathBuf>,
    /// The Python interpreter that runs `python3.*` Lambda functions.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_LAMBDA_PYTHON", default_value = DEFAULT_LAMBDA_PYTHON))]
    pub lambda_python: String,
    /// The Node.js executable that runs `nodejs*` Lambda functions.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_LAMBDA_NODE", default_value = DEFAULT_LAMBDA_NODE))]
    pub lambda_node: String,
    /// Send invocations of functions firelake does not hold to this Lambda endpoint (`http://host:port`; no https).
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_LAMBDA_ENDPOINT"))]
    pub lambda_endpoint: Option<String>,
    /// Accept Lambda function code while listening beyond loopback without `--auth strict` (anyone who reaches the port can then run code as firelake's user).
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_LAMBDA_ALLOW_CODE"))]
    pub lambda_allow_code: bool,
    /// Workers of one Lambda function that run at once.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_LAMBDA_WORKERS_MAX", default_value_t = DEFAULT_LAMBDA_WORKERS_MAX))]
    pub lambda_workers_max: usize,
    /// Seconds in a day of S3 lifecycle rules (expirations, noncurrent versions, aborted uploads); a small value makes "1 day" pass quickly in tests and workshops.
    #[cfg_attr(feature = "cli", arg(long, env = "FIRELAKE_LIFECYCLE_DAY_SECONDS", default_value_t = DEFAULT_LIFECYCLE_DAY_SECS))]
    pub lifecycle_day_seconds: f64,
}

/// The command line's defaults, without the command line: what a server started by
/// [`crate::testing`] begins from. A test (`defaults_are_the_command_lines`) keeps the two equal.
impl Default for ServeArgs {
    fn default() -> ServeArgs {
        ServeArgs {
            host: DEFAULT_HOST.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            port: DEFAULT_PORT,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            region: DEFAULT_REGION.to_owned(),
            account_id: DEFAULT_ACCOUNT_ID.to_owned(),
            log: DEFAULT_LOG.to_owned(),
            domains: DEFAULT_DOMAINS.split(',').map(str::to_owned).collect(),
            durability: Durability::Fsync,
            max_connections: DEFAULT_CONNECTIONS_MAX,
            body_timeout: DEFAULT_BODY_TIMEOUT_SECS,
            send_timeout: DEFAULT_SEND_TIMEOUT_SECS,
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            create_delay: 0.0,
            buffer_interval_cap: None,
            lenient: false,
            stream_buffer_max_mb: DEFAULT_STREAM_BUFFER_MB,
            ephemeral: false,
            init: None,
            total_buffer_max_mb: DEFAULT_TOTAL_BUFFER_MB,
            auth: AuthMode::Off,
            auth_keys: None,
            auth_keys_file: None,
            lambda_python: DEFAULT_LAMBDA_PYTHON.to_owned(),
            lambda_node: DEFAULT_LAMBDA_NODE.to_owned(),
            lambda_endpoint: None,
            lambda_allow_code: false,
            lambda_workers_max: DEFAULT_LAMBDA_WORKERS_MAX,
            lifecycle_day_seconds: DEFAULT_LIFECYCLE_DAY_SECS,
        }
    }
}

/// Text that holds secrets: parsed after clap, so that neither clap's errors nor a
/// `Debug` of the arguments ever shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(text.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Validated server settings; passed explicitly, never global.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    /// Default region when a request's signature names none.
    pub region: String,
    /// Default account for requests whose access key id is not 12 digits.
    pub account_id: String,
    pub log: String,
    /// Virtual-hosted-style domains, lower case, without a leading dot.
    pub domains: Vec<String>,
    pub durability: Durability,
    pub connections_max: usize,
    /// How long a request body may send nothing.
    pub body_timeout_ms: u64,
    /// How long a response may wait on a client that reads nothing.
    pub send_timeout_ms: u64,
    pub blocking_threads_max: usize,
    pub create_delay_ms: i64,
    pub buffer_interval_cap_ms: Option<i64>,
    pub lenient: bool,
    pub stream_buffer_bytes_max: u64,
    pub total_buffer_bytes_max: u64,
    /// Use a temporary data directory, removed at exit.
    pub ephemeral: bool,
    /// Buckets and streams to create at start.
    pub init: Option<PathBuf>,
    /// With `Some`, every request must be signed with one of these keys (`--auth strict`).
    pub auth_keys: Option<Keys>,
    /// How Lambda functions are run.
    pub lambda: crate::lambda::Settings,
    /// The length of a lifecycle day.
    pub lifecycle_day_ms: i64,
}

impl Config {
    pub fn from_args(args: ServeArgs) -> Result<Config, String> {
        if !valid_account_id(&args.account_id) {
            return Err(format!("--account-id must be 12 digits, not {:?}", args.account_id));
        }
        if args.region.is_empty() || !args.region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("--region {:?} is not a region name", args.region));
        }
        if args.max_connections == 0 {
            return Err("--max-connections must be at least 1".to_owned());
        }
        for (flag, secs) in [("--body-timeout", args.body_timeout), ("--send-timeout", args.send_timeout)] {
            if !(secs > 0.0 && secs <= 86_400.0) {
                return Err(format!("{flag} must be a number of seconds above 0 and at most a day, not {secs}"));
            }
        }
        if !(args.lifecycle_day_seconds >= 0.001 && args.lifecycle_day_seconds <= DEFAULT_LIFECYCLE_DAY_SECS) {
            return Err(format!(
                "--lifecycle-day-seconds must be a number of seconds from 0.001 to 86400, not {}",
                args.lifecycle_day_seconds
            ));
        }
        if args.blocking_threads == 0 {
            return Err("--blocking-threads must be at least 1".to_owned());
        }
        let auth_keys = auth_keys(&args)?;
        if args.lambda_workers_max == 0 {
            return Err("--lambda-workers-max must be at least 1".to_owned());
        }
        let lambda = crate::lambda::Settings {
            python: args.lambda_python.clone(),
            node: args.lambda_node.clone(),
            forward_endpoint: args.lambda_endpoint.as_deref().map(crate::lambda::forward::parse_endpoint).transpose()?,
            code_allowed: args.host.is_loopback() || auth_keys.is_some() || args.lambda_allow_code,
            workers_max: args.lambda_workers_max,
            path: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
        };
        let domains =
            args.domains.iter().map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase()).filter(|d| !d.is_empty()).collect();
        Ok(Config {
            host: args.host,
            port: args.port,
            data_dir: args.data_dir,
            region: args.region,
            account_id: args.account_id,
            log: args.log,
            domains,
            durability: args.durability,
            connections_max: args.max_connections,
            body_timeout_ms: (args.body_timeout * 1000.0).ceil() as u64,
            send_timeout_ms: (args.send_timeout * 1000.0).ceil() as u64,
            blocking_threads_max: args.blocking_threads,
            create_delay_ms: (args.create_delay * 1000.0) as i64,
            buffer_interval_cap_ms: args.buffer_interval_cap.map(|c| (c * 1000.0) as i64),
            lenient: args.lenient,
            stream_buffer_bytes_max: args.stream_buffer_max_mb * 1024 * 1024,
            total_buffer_bytes_max: args.total_buffer_max_mb * 1024 * 1024,
            ephemeral: args.ephemeral,
            init: args.init,
            auth_keys,
            lambda,
            lifecycle_day_ms: (args.lifecycle_day_seconds * 1000.0).round() as i64,
        })
    }
}

/// The keys of `--auth strict`, from the flag and the file together.
fn auth_keys(args: &ServeArgs) -> Result<Option<Keys>, String> {
    let mut keys = match &args.auth_keys {
        Some(Secret(text)) => Keys::parse(text).map_err(|err| format!("--auth-keys: {err}"))?,
        None => Keys::default(),
    };
    if let Some(path) = &args.auth_keys_file {
        let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read --auth-keys-file {}: {err}", path.display()))?;
        keys.extend(Keys::parse(&text).map_err(|err| format!("--auth-keys-file {}: {err}", path.display()))?);
    }
    match args.auth {
        AuthMode::Strict if keys.is_empty() => {
            Err("--auth strict needs at least one access key (--auth-keys ID:SECRET or --auth-keys-file)".to_owned())
        }
        AuthMode::Strict => Ok(Some(keys)),
        AuthMode::Off if !keys.is_empty() => Err("access keys were given but --auth is off; add --auth strict to check them".to_owned()),
        AuthMode::Off => Ok(None),
    }
}

impl Config {
    pub fn firehose_settings(&self) -> crate::firehose::stream::Settings {
        crate::firehose::stream::Settings {
            create_delay_ms: self.create_delay_ms,
            interval_cap_ms: self.buffer_interval_cap_ms,
            lenient: self.lenient,
            stream_bytes_max: self.stream_buffer_bytes_max,
            total_bytes_max: self.total_buffer_bytes_max,
        }
    }
}

pub fn valid_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    use clap::Parser;

    use super::{Cli, ServeArgs};

    #[test]
    fn defaults_are_the_command_lines() {
        let parsed = Cli::try_parse_from(["firelake"]).map(|cli| cli.serve);
        assert_eq!(format!("{:?}", parsed.ok()), format!("{:?}", Some(ServeArgs::default())));
    }
}
