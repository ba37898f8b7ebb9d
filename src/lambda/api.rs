//! The Lambda control API (REST-JSON, `/2015-03-31/functions...`): a pure router, one
//! handler per operation, errors rendered by `LambdaError::to_response`.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use hyper::Response;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::LambdaError;
use super::{FUNCTIONS_MAX, Family, Function, FunctionRef, INVOKE_BYTES_MAX, InvokeOptions, Lambda, ZIP_BYTES_MAX};
use crate::http::{Body, BodyError, RequestCtx, full, read_body_limited};

/// What the Lambda API handlers reach: the functions, the store (for code read from S3)
/// and the keys requests are signed with, nothing of the other protocols.
pub struct LambdaState {
    pub lambda: Arc<Lambda>,
    pub store: Arc<crate::store::Store>,
    /// With `--auth strict`, the keys a request must be signed with.
    pub auth_keys: Option<crate::auth::Keys>,
}

/// Largest CreateFunction / UpdateFunctionCode request: a 50 MB zip in base64, as AWS counts.
const CODE_REQUEST_BYTES_MAX: usize = 69_905_067;
/// How long a code upload waits for others to be read before it is refused.
const UPLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest body of the other operations.
const SMALL_BODY_BYTES_MAX: usize = 1024 * 1024;
/// An Event invocation's payload limit (AWS: 1 MB).
const EVENT_BYTES_MAX: usize = 1024 * 1024;
/// What `X-Amz-Log-Result` carries: the last 4 KB of the log.
const LOG_TAIL_BYTES_MAX: usize = 4096;
/// The environment variables of one function, as JSON (AWS: 4 KB).
const ENVIRONMENT_BYTES_MAX: usize = 4096;

/// The API versions Lambda's paths start with; all of them are Lambda's when signed for it.
const VERSION_PREFIXES: &[&str] = &[
    "/2015-03-31/",
    "/2016-08-19/",
    "/2017-03-31/",
    "/2017-10-31/",
    "/2018-10-31/",
    "/2019-09-25/",
    "/2019-09-30/",
    "/2020-04-22/",
    "/2020-06-30/",
    "/2021-10-31/",
    "/2021-11-15/",
    "/2022-07-20/",
    "/2023-06-26/",
    "/2024-08-31/",
    "/2025-11-30/",
];

/// Whether a request is for Lambda: signed for the `lambda` service, or unsigned to
/// `/2015-03-31/functions` (where an S3 request would have a bucket named `2015-03-31`
/// and, from an SDK, an S3 signature).
pub fn is_lambda(parts: &http::request::Parts) -> bool {
    match crate::http::credential(parts) {
        Some(credential) => credential.service == "lambda",
        None => parts.uri.path().starts_with("/2015-03-31/functions"),
    }
}

/// A Lambda operation, parsed from the method and path alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Operation {
    CreateFunction,
    ListFunctions,
    GetFunction(String),
    GetFunctionConfiguration(String),
    UpdateFunctionCode(String),
    UpdateFunctionConfiguration(String),
    DeleteFunction(String),
    Invoke(String),
    /// firelake's download of a function's zip (GetFunction's `Code.Location`).
    GetCode(String),
    ListTags(String),
    /// A Lambda operation firelake does not emulate, by what it is about.
    NotEmulated(&'static str),
    Unknown,
}

impl Operation {
    pub fn route(method: &Method, path: &str) -> Operation {
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let Some(version) = VERSION_PREFIXES.iter().find(|p| path.starts_with(*p)) else { return Operation::Unknown };
        let rest = &path[version.len()..];
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        match (*version, method, segments.as_slice()) {
            ("/2015-03-31/", &Method::POST, ["functions"]) => Operation::CreateFunction,
            ("/2015-03-31/", &Method::GET, ["functions"]) => Operation::ListFunctions,
            ("/2015-03-31/", &Method::GET, ["functions", name]) => Operation::GetFunction(decode(name)),
            ("/2015-03-31/", &Method::DELETE, ["functions", name]) => Operation::DeleteFunction(decode(name)),
            ("/2015-03-31/", &Method::GET, ["functions", name, "configuration"]) => Operation::GetFunctionConfiguration(decode(name)),
            ("/2015-03-31/", &Method::PUT, ["functions", name, "configuration"]) => Operation::UpdateFunctionConfiguration(decode(name)),
            ("/2015-03-31/", &Method::PUT, ["functions", name, "code"]) => Operation::UpdateFunctionCode(decode(name)),
            ("/2015-03-31/", &Method::GET, ["functions", name, "code"]) => Operation::GetCode(decode(name)),
            ("/2015-03-31/", &Method::POST, ["functions", name, "invocations"]) => Operation::Invoke(decode(name)),
            ("/2017-03-31/", &Method::GET, ["tags", arn]) => Operation::ListTags(decode(arn)),
            ("/2015-03-31/", _, ["functions", _, "versions", ..]) => Operation::NotEmulated("published versions"),
            ("/2015-03-31/", _, ["functions", _, "aliases", ..]) => Operation::NotEmulated("aliases"),
            ("/2015-03-31/", _, ["functions", _, "policy", ..]) => Operation::NotEmulated("resource policies"),
            ("/2015-03-31/", _, ["event-source-mappings", ..]) => Operation::NotEmulated("event source mappings"),
            ("/2017-10-31/", _, _) | ("/2019-09-30/", _, _) => Operation::NotEmulated("concurrency settings"),
            ("/2018-10-31/", _, _) => Operation::NotEmulated("layers"),
            ("/2017-03-31/", _, _) => Operation::NotEmulated("tag changes"),
            ("/2019-09-25/", _, _) => Operation::NotEmulated("event invoke configs"),
            ("/2021-10-31/", _, _) => Operation::NotEmulated("function URLs"),
            ("/2016-08-19/", _, _) => Operation::NotEmulated("account settings"),
            ("/2020-04-22/", _, _) | ("/2020-06-30/", _, _) => Operation::NotEmulated("code signing"),
            _ => Operation::Unknown,
        }
    }

    fn body_limit(&self) -> usize {
        match self {
            Operation::CreateFunction | Operation::UpdateFunctionCode(_) => CODE_REQUEST_BYTES_MAX,
            Operation::Invoke(_) => INVOKE_BYTES_MAX,
            _ => SMALL_BODY_BYTES_MAX,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Operation::CreateFunction => "CreateFunction",
            Operation::ListFunctions => "ListFunctions",
            Operation::GetFunction(_) => "GetFunction",
            Operation::GetFunctionConfiguration(_) => "GetFunctionConfiguration",
            Operation::UpdateFunctionCode(_) => "UpdateFunctionCode",
            Operation::UpdateFunctionConfiguration(_) => "UpdateFunctionConfiguration",
            Operation::DeleteFunction(_) => "DeleteFunction",
            Operation::Invoke(_) => "Invoke",
            Operation::GetCode(_) => "GetCode",
            Operation::ListTags(_) => "ListTags",
            Operation::NotEmulated(_) => "NotEmulated",
            Operation::Unknown => "Unknown",
        }
    }
}

/// A successful answer.
struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Reply {
    fn json(status: StatusCode, value: Value) -> Reply {
        Reply { status, headers: vec![("content-type", "application/json".to_owned())], body: Bytes::from(value.to_string()) }
    }
}

pub async fn handle(state: &Arc<LambdaState>, ctx: &RequestCtx, parts: http::request::Parts, body: Incoming) -> Response<Body> {
    let operation = Operation::route(&parts.method, parts.uri.path());
    let span = tracing::debug_span!("lambda", op = operation.name(), id = %ctx.request_id);
    let _enter = span.enter();
    let result = async {
        let limit = operation.body_limit();
        let _upload = match limit == CODE_REQUEST_BYTES_MAX {
            true => match tokio::time::timeout(UPLOAD_WAIT, state.lambda.uploads.acquire()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => return Err(LambdaError::TooMany("Rate Exceeded.".to_owned())),
            },
            false => None,
        };
        let body = read_body_limited(body, limit).await.map_err(|err| match err {
            BodyError::TooLarge => {
                LambdaError::TooLarge(format!("Request must be smaller than {limit} bytes for the {} operation", operation.name()))
            }
            BodyError::Io(err) => LambdaError::InvalidContent(format!("the request body could not be read: {err}")),
        })?;
        if let Some(keys) = &state.auth_keys {
            let body_sha256 = crate::sigv4::sha256_hex(&body);
            crate::auth::verify(keys, &parts, crate::auth::Service::Lambda, Some(&body_sha256), chrono::Utc::now())
                .map_err(LambdaError::Auth)?;
        }
        tracing::debug!(?operation);
        apply(state, ctx, &parts, operation, body).await
    }
    .await;
    match result {
        Ok(reply) => {
            let mut builder = Response::builder().status(reply.status).header("x-amzn-requestid", &ctx.request_id);
            for (name, value) in &reply.headers {
                builder = builder.header(*name, value);
            }
            builder.body(full(reply.body)).unwrap_or_else(|_| LambdaError::Internal.to_response(ctx))
        }
        Err(err) => err.to_response(ctx),
    }
}

async fn apply(
    state: &Arc<LambdaState>,
    ctx: &RequestCtx,
    parts: &http::request::Parts,
    operation: Operation,
    body: Bytes,
) -> Result<Reply, LambdaError> {
    let lambda = &state.lambda;
    let reference = |name: &str| FunctionRef::parse(&ctx.account, &ctx.region, name);
    match operation {
        Operation::CreateFunction => Ok(Reply::json(StatusCode::CREATED, create_from_json(state, ctx, &body, false).await?)),
        Operation::ListFunctions => list_functions(lambda, ctx, parts),
        Operation::GetFunction(name) => {
            let function = lambda.get(&reference(&name)?)?;
            let location = format!("{}/2015-03-31/functions/{}/code", lambda.endpoint(), function.name);
            let mut out = json!({
                "Configuration": configuration(&function),
                "Code": { "RepositoryType": "S3", "Location": location },
            });
            if !function.tags.is_empty() {
                out["Tags"] = json!(function.tags);
            }
            Ok(Reply::json(StatusCode::OK, out))
        }
        Operation::GetFunctionConfiguration(name) => Ok(Reply::json(StatusCode::OK, configuration(&lambda.get(&reference(&name)?)?))),
        Operation::UpdateFunctionCode(name) => update_function_code(state, &reference(&name)?, &body).await,
        Operation::UpdateFunctionConfiguration(name) => update_function_configuration(lambda, &reference(&name)?, &body).await,
        Operation::DeleteFunction(name) => {
            let mut reference = reference(&name)?;
            if let Some(q) = query_param(parts, "Qualifier") {
                reference.qualifier = Some(q);
            }
            lambda.delete(&reference).await?;
            Ok(Reply { status: StatusCode::NO_CONTENT, headers: Vec::new(), body: Bytes::new() })
        }
        Operation::Invoke(name) => invoke(lambda, ctx, parts, &name, body).await,
        Operation::GetCode(name) => {
            let zip = lambda.code_zip(&reference(&name)?).await?;
            Ok(Reply { status: StatusCode::OK, headers: vec![("content-type", "application/zip".to_owned())], body: Bytes::from(zip) })
        }
        Operation::ListTags(arn) => {
            let function = lambda.get(&reference(&arn)?)?;
            Ok(Reply::json(StatusCode::OK, json!({ "Tags": function.tags })))
        }
        Operation::NotEmulated(what) => {
            Err(LambdaError::NotImplemented(format!("firelake does not emulate Lambda {what}; only functions at $LATEST (see its README)")))
        }
        Operation::Unknown => Err(LambdaError::UnknownOperation),
    }
}

fn query_param(parts: &http::request::Parts, name: &str) -> Option<String> {
    parts
        .uri
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned())
}

fn header(parts: &http::request::Parts, name: &str) -> Option<String> {
    parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, LambdaError> {
    let body = if body.is_empty() { &b"{}"[..] } else { body };
    serde_json::from_slice(body).map_err(|err| LambdaError::InvalidContent(format!("Could not parse request body into json: {err}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CodeInput {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    s3_object_version: Option<String>,
    image_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnvironmentInput {
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StorageInput {
    size: i64,
}

/// What CreateFunction and UpdateFunctionConfiguration share, besides code.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SettingsInput {
    runtime: Option<String>,
    role: Option<String>,
    handler: Option<String>,
    description: Option<String>,
    timeout: Option<i64>,
    memory_size: Option<i64>,
    environment: Option<EnvironmentInput>,
    ephemeral_storage: Option<StorageInput>,
    revision_id: Option<String>,
    // Settings that are not emulated: refused when they ask for something.
    layers: Option<Vec<String>>,
    vpc_config: Option<Value>,
    file_system_configs: Option<Vec<Value>>,
    image_config: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateInput {
    function_name: String,
    #[serde(default)]
    code: CodeInput,
    #[serde(flatten)]
    settings: SettingsInput,
    package_type: Option<String>,
    publish: Option<bool>,
    architectures: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateCodeInput {
    #[serde(flatten)]
    code: CodeInput,
    publish: Option<bool>,
    dry_run: Option<bool>,
    revision_id: Option<String>,
    architectures: Option<Vec<String>>,
}

fn constraint(value: impl std::fmt::Display, member: &str, rule: &str) -> LambdaError {
    LambdaError::Validation(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must {rule}"
    ))
}

/// Checks the settings a request gives, and applies them to `function`.
fn apply_settings(function: &mut Function, input: SettingsInput, creating: bool) -> Result<(), LambdaError> {
    if input.layers.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(LambdaError::InvalidParameter(
            "firelake does not emulate Lambda layers; put the libraries in the function's zip".to_owned(),
        ));
    }
    let vpc_used = input.vpc_config.as_ref().is_some_and(|v| {
        ["SubnetIds", "SecurityGroupIds"].iter().any(|k| v.get(k).and_then(Value::as_array).is_some_and(|a| !a.is_empty()))
    });
    if vpc_used {
        return Err(LambdaError::InvalidParameter("firelake does not emulate VPC settings for functions".to_owned()));
    }
    if input.file_system_configs.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(LambdaError::InvalidParameter("firelake does not emulate file system configs for functions".to_owned()));
    }
    if input.image_config.as_ref().is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty())) {
        return Err(LambdaError::InvalidParameter("firelake does not run container images".to_owned()));
    }
    if let Some(runtime) = input.runtime {
        if Family::of(&runtime).is_none() {
            return Err(LambdaError::InvalidParameter(format!(
                "The runtime parameter of {runtime} is not supported by firelake, which runs python3.x, nodejs*.x, provided.al2023, provided.al2 and provided"
            )));
        }
        function.runtime = runtime;
    } else if creating {
        return Err(LambdaError::InvalidParameter("Runtime is required for .zip file deployment package".to_owned()));
    }
    if let Some(role) = input.role {
        if !valid_role(&role) {
            return Err(constraint(
                &role,
                "role",
                "satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
            ));
        }
        function.role = role;
    }
    if let Some(handler) = input.handler {
        if handler.is_empty() || handler.len() > 128 || handler.chars().any(char::is_whitespace) {
            return Err(constraint(&handler, "handler", "satisfy regular expression pattern: [^\\s]+"));
        }
        function.handler = Some(handler);
    }
    if function.handler.is_none() && function.family() != Family::Provided {
        return Err(LambdaError::InvalidParameter("Handler is required for .zip file deployment package".to_owned()));
    }
    if let Some(description) = input.description {
        if description.chars().count() > 256 {
            return Err(constraint(&description, "description", "have length less than or equal to 256"));
        }
        function.description = description;
    }
    if let Some(timeout) = input.timeout {
        match timeout {
            ..=0 => return Err(constraint(timeout, "timeout", "have value greater than or equal to 1")),
            901.. => return Err(constraint(timeout, "timeout", "have value less than or equal to 900")),
            _ => function.timeout_secs = timeout as u32,
        }
    }
    if let Some(memory) = input.memory_size {
        match memory {
            ..=127 => return Err(constraint(memory, "memorySize", "have value greater than or equal to 128")),
            10241.. => return Err(constraint(memory, "memorySize", "have value less than or equal to 10240")),
            _ => function.memory_mb = memory as u32,
        }
    }
    if let Some(storage) = input.ephemeral_storage {
        if !(512..=10240).contains(&storage.size) {
            return Err(constraint(storage.size, "ephemeralStorage.size", "have value between 512 and 10240"));
        }
        function.ephemeral_storage_mb = storage.size as u32;
    }
    if let Some(environment) = input.environment {
        check_environment(&environment.variables)?;
        function.environment = environment.variables;
    }
    Ok(())
}

/// The keys Lambda sets itself. Unlike AWS, firelake lets a function set its credentials,
/// so that it can sign with a key `--auth strict` knows.
const RESERVED_VARIABLES: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

fn check_environment(variables: &BTreeMap<String, String>) -> Result<(), LambdaError> {
    let reserved: Vec<&str> = variables.keys().map(String::as_str).filter(|k| RESERVED_VARIABLES.contains(k)).collect();
    if !reserved.is_empty() {
        return Err(LambdaError::InvalidParameter(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(", ")
        )));
    }
    for key in variables.keys() {
        let mut chars = key.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok || key.len() < 2 {
            return Err(constraint(key, "environment.variables", "satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+"));
        }
    }
    if serde_json::to_string(variables).map(|s| s.len()).unwrap_or(usize::MAX) > ENVIRONMENT_BYTES_MAX {
        return Err(LambdaError::InvalidParameter(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit.".to_owned(),
        ));
    }
    Ok(())
}

fn valid_role(role: &str) -> bool {
    let Some(rest) = role.strip_prefix("arn:") else { return false };
    let Some((partition, rest)) = rest.split_once(":iam::") else { return false };
    let Some((account, name)) = rest.split_once(":role/") else { return false };
    partition.starts_with("aws")
        && crate::config::valid_account_id(account)
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c))
}

fn check_architectures(architectures: &Option<Vec<String>>) -> Result<Vec<String>, LambdaError> {
    match architectures.as_deref() {
        None | Some([]) => Ok(vec!["x86_64".to_owned()]),
        Some([one]) if one == "x86_64" || one == "arm64" => Ok(vec![one.clone()]),
        Some(other) => Err(constraint(format!("{other:?}"), "architectures", "have one item, x86_64 or arm64")),
    }
}

/// The code a request gives: inline, or an object in firelake's own S3.
/// `trusted` code comes from the operator (the init file), not from a request.
async fn code_bytes(state: &Arc<LambdaState>, code: CodeInput, trusted: bool) -> Result<Bytes, LambdaError> {
    if code.image_uri.is_some() {
        return Err(LambdaError::InvalidParameter("firelake does not run container images; give the code as a .zip".to_owned()));
    }
    if !trusted && !state.lambda.settings().code_allowed {
        return Err(LambdaError::AccessDenied(
            "firelake listens beyond loopback without --auth strict, so it does not accept function code, which it would run as its own user; start it with --auth strict, or add --lambda-allow-code if everyone who can reach it may run code as this user".to_owned(),
        ));
    }
    match (code.zip_file, code.s3_bucket, code.s3_key) {
        (Some(zip), None, None) => {
            let zip = base64::engine::general_purpose::STANDARD
                .decode(zip.as_bytes())
                .map_err(|_| LambdaError::InvalidContent("Could not parse request body into json: ZipFile is not base64".to_owned()))?;
            if zip.len() > ZIP_BYTES_MAX {
                return Err(LambdaError::TooLarge(format!("Zipped code must be smaller than {ZIP_BYTES_MAX} bytes")));
            }
            Ok(Bytes::from(zip))
        }
        (None, Some(bucket), Some(key)) => {
            if code.s3_object_version.is_some() {
                return Err(LambdaError::InvalidParameter("firelake's S3 keeps no object versions; leave S3ObjectVersion out".to_owned()));
            }
            read_s3_code(state, bucket, key).await
        }
        (None, None, None) => Err(LambdaError::InvalidParameter("Please provide a source for function code.".to_owned())),
        _ => Err(LambdaError::InvalidParameter(
            "Please do not provide other FunctionCode parameters when providing a ZipFile, and give S3Bucket with S3Key".to_owned(),
        )),
    }
}

async fn read_s3_code(state: &Arc<LambdaState>, bucket: String, key: String) -> Result<Bytes, LambdaError> {
    use std::io::Read;
    let store = state.store.clone();
    let limit = super::UNZIPPED_BYTES_MAX;
    let read = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, LambdaError> {
        let s3_error = |code: &str, message: &str| {
            LambdaError::InvalidParameter(format!("Error occurred while GetObject. S3 Error Code: {code}. S3 Error Message: {message}"))
        };
        let opened = match store.open_object(&bucket, &key) {
            Ok(Some((file, _))) => file,
            Ok(None) => return Err(s3_error("NoSuchKey", "The specified key does not exist.")),
            Err(crate::store::StoreError::NoSuchBucket) => return Err(s3_error("NoSuchBucket", "The specified bucket does not exist")),
            Err(err) => {
                tracing::error!(%err, "cannot read function code from S3");
                return Err(LambdaError::Internal);
            }
        };
        let mut bytes = Vec::new();
        opened.take(limit + 1).read_to_end(&mut bytes).map_err(|_| LambdaError::Internal)?;
        if bytes.len() as u64 > limit {
            return Err(LambdaError::InvalidParameter(format!("Unzipped size must be smaller than {limit} bytes")));
        }
        Ok(bytes)
    })
    .await
    .map_err(|_| LambdaError::Internal)?;
    read.map(Bytes::from)
}

/// CreateFunction from its JSON body; `trusted` as for [`code_bytes`]. Answers the function's configuration.
pub async fn create_from_json(state: &Arc<LambdaState>, ctx: &RequestCtx, body: &[u8], trusted: bool) -> Result<Value, LambdaError> {
    let input: CreateInput = parse(body)?;
    let reference = FunctionRef::parse(&ctx.account, &ctx.region, &input.function_name)?;
    if reference.qualifier.is_some() {
        return Err(constraint(&input.function_name, "functionName", "not have a qualifier"));
    }
    if input.package_type.as_deref().is_some_and(|p| p != "Zip") {
        return Err(LambdaError::InvalidParameter("firelake does not run container images (PackageType Image); use Zip".to_owned()));
    }
    if input.publish == Some(true) {
        return Err(LambdaError::InvalidParameter("firelake does not publish versions (Publish); functions run at $LATEST".to_owned()));
    }
    if input.settings.role.is_none() {
        return Err(constraint("null", "role", "not be null"));
    }
    let mut function = Function {
        account: reference.account.clone(),
        region: reference.region.clone(),
        name: reference.name.clone(),
        runtime: String::new(),
        handler: None,
        role: String::new(),
        description: String::new(),
        timeout_secs: 3,
        memory_mb: 128,
        environment: BTreeMap::new(),
        code_id: String::new(),
        code_sha256: String::new(),
        code_size: 0,
        last_modified: super::last_modified_now(),
        revision_id: uuid::Uuid::new_v4().to_string(),
        architectures: check_architectures(&input.architectures)?,
        ephemeral_storage_mb: 512,
        tags: input.tags.unwrap_or_default(),
    };
    apply_settings(&mut function, input.settings, true)?;
    if state.lambda.get(&reference).is_ok() {
        return Err(LambdaError::Conflict(format!("Function already exist: {}", function.name)));
    }
    if state.lambda.list(&reference.account, &reference.region).len() >= FUNCTIONS_MAX {
        return Err(LambdaError::InvalidParameter(format!("firelake holds at most {FUNCTIONS_MAX} functions")));
    }
    let zip = code_bytes(state, input.code, trusted).await?;
    let function = state.lambda.create(function, zip).await?;
    tracing::info!(function = %function.name, runtime = %function.runtime, "created a function");
    Ok(configuration(&function))
}

async fn update_function_code(state: &Arc<LambdaState>, reference: &FunctionRef, body: &[u8]) -> Result<Reply, LambdaError> {
    let input: UpdateCodeInput = parse(body)?;
    if input.publish == Some(true) {
        return Err(LambdaError::InvalidParameter("firelake does not publish versions (Publish); functions run at $LATEST".to_owned()));
    }
    state.lambda.get(reference)?;
    check_architectures(&input.architectures)?;
    let zip = code_bytes(state, input.code, false).await?;
    let function = state.lambda.update_code(reference, input.revision_id.as_deref(), zip, input.dry_run == Some(true)).await?;
    Ok(Reply::json(StatusCode::OK, configuration(&function)))
}

async fn update_function_configuration(lambda: &Lambda, reference: &FunctionRef, body: &[u8]) -> Result<Reply, LambdaError> {
    let mut input: SettingsInput = parse(body)?;
    let revision_id = input.revision_id.take();
    let function = lambda.update(reference, revision_id.as_deref(), |function| apply_settings(function, input, false)).await?;
    Ok(Reply::json(StatusCode::OK, configuration(&function)))
}

fn list_functions(lambda: &Lambda, ctx: &RequestCtx, parts: &http::request::Parts) -> Result<Reply, LambdaError> {
    let max_items = match query_param(parts, "MaxItems") {
        Some(text) => match text.parse::<usize>() {
            Ok(n @ 1..=10_000) => n.min(50),
            _ => return Err(constraint(text, "maxItems", "have value between 1 and 10000")),
        },
        None => 50,
    };
    let marker = match query_param(parts, "Marker") {
        Some(marker) => Some(
            base64_text(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &marker)
                .ok_or_else(|| LambdaError::InvalidParameter("Invalid marker".to_owned()))?,
        ),
        None => None,
    };
    let functions: Vec<Function> = lambda
        .list(&ctx.account, &ctx.region)
        .into_iter()
        .filter(|f| marker.as_ref().is_none_or(|m| f.name.as_str() > m.as_str()))
        .collect();
    let page: Vec<Value> = functions.iter().take(max_items).map(configuration).collect();
    let mut out = json!({ "Functions": page });
    if functions.len() > max_items {
        out["NextMarker"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(functions[max_items - 1].name.as_bytes()));
    }
    Ok(Reply::json(StatusCode::OK, out))
}

/// `text` decoded from base64 by `engine`, when that gives UTF-8.
fn base64_text(engine: &impl base64::Engine, text: &str) -> Option<String> {
    engine.decode(text.as_bytes()).ok().and_then(|bytes| String::from_utf8(bytes).ok())
}

async fn invoke(
    lambda: &Arc<Lambda>,
    ctx: &RequestCtx,
    parts: &http::request::Parts,
    name: &str,
    payload: Bytes,
) -> Result<Reply, LambdaError> {
    let invocation_type = header(parts, "x-amz-invocation-type").unwrap_or_else(|| "RequestResponse".to_owned());
    let tail = match header(parts, "x-amz-log-type").as_deref() {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => return Err(constraint(other, "logType", "satisfy enum value set: [None, Tail]")),
    };
    let client_context = match header(parts, "x-amz-client-context") {
        Some(encoded) if encoded.len() > 3583 => return Err(constraint("...", "clientContext", "have length less than or equal to 3583")),
        Some(encoded) => Some(
            base64_text(&base64::engine::general_purpose::STANDARD, &encoded)
                .ok_or_else(|| LambdaError::InvalidParameter("Client context must be a valid Base64-encoded JSON object.".to_owned()))?,
        ),
        None => None,
    };
    let mut function = name.to_owned();
    if let Some(qualifier) = query_param(parts, "Qualifier") {
        function = format!("{function}:{qualifier}");
    }
    if !payload.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return Err(LambdaError::InvalidContent("Could not parse request body into json: the payload is not JSON".to_owned()));
    }
    let options = InvokeOptions { client_context, tail };
    match invocation_type.as_str() {
        "RequestResponse" => {
            let outcome = lambda.run(&ctx.account, &ctx.region, &function, payload, options).await?;
            let mut headers = vec![("content-type", "application/json".to_owned()), ("x-amz-executed-version", "$LATEST".to_owned())];
            if let Some(error) = outcome.function_error {
                headers.push(("x-amz-function-error", error));
            }
            if tail {
                headers.push(("x-amz-log-result", base64::engine::general_purpose::STANDARD.encode(log_tail(&outcome.log))));
            }
            Ok(Reply { status: StatusCode::OK, headers, body: outcome.payload })
        }
        "Event" => {
            if payload.len() > EVENT_BYTES_MAX {
                return Err(LambdaError::TooLarge(format!(
                    "Request must be smaller than {EVENT_BYTES_MAX} bytes for the InvokeAsync operation"
                )));
            }
            lambda.run_event(&ctx.account, &ctx.region, &function, payload, options)?;
            Ok(Reply { status: StatusCode::ACCEPTED, headers: Vec::new(), body: Bytes::new() })
        }
        "DryRun" => {
            lambda.get(&FunctionRef::parse(&ctx.account, &ctx.region, &function)?)?;
            Ok(Reply { status: StatusCode::NO_CONTENT, headers: Vec::new(), body: Bytes::new() })
        }
        other => Err(constraint(other, "invocationType", "satisfy enum value set: [Event, RequestResponse, DryRun]")),
    }
}

/// The last 4 KB of a log, cut at a character boundary.
fn log_tail(log: &str) -> &str {
    let mut start = log.len().saturating_sub(LOG_TAIL_BYTES_MAX);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

/// Lambda's `FunctionConfiguration`.
pub fn configuration(function: &Function) -> Value {
    let mut out = json!({
        "FunctionName": function.name,
        "FunctionArn": function.arn(),
        "Runtime": function.runtime,
        "Role": function.role,
        "Handler": function.handler,
        "CodeSize": function.code_size,
        "Description": function.description,
        "Timeout": function.timeout_secs,
        "MemorySize": function.memory_mb,
        "LastModified": function.last_modified,
        "CodeSha256": function.code_sha256,
        "Version": "$LATEST",
        "TracingConfig": { "Mode": "PassThrough" },
        "RevisionId": function.revision_id,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": function.architectures,
        "EphemeralStorage": { "Size": function.ephemeral_storage_mb.max(512) },
        "SnapStart": { "ApplyOn": "None", "OptimizationStatus": "Off" },
        "LoggingConfig": { "LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", function.name) },
    });
    if let (None, Some(map)) = (&function.handler, out.as_object_mut()) {
        map.remove("Handler");
    }
    if !function.environment.is_empty() {
        out["Environment"] = json!({ "Variables": function.environment });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(method: Method, path: &str, expected: Operation) {
        assert_eq!(Operation::route(&method, path), expected);
    }

    #[test]
    fn routes() {
        check(Method::POST, "/2015-03-31/functions", Operation::CreateFunction);
        check(Method::GET, "/2015-03-31/functions/", Operation::ListFunctions);
        check(Method::GET, "/2015-03-31/functions/f", Operation::GetFunction("f".into()));
        check(
            Method::GET,
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af",
            Operation::GetFunction("arn:aws:lambda:us-east-1:000000000000:function:f".into()),
        );
        check(Method::DELETE, "/2015-03-31/functions/f", Operation::DeleteFunction("f".into()));
        check(Method::GET, "/2015-03-31/functions/f/configuration", Operation::GetFunctionConfiguration("f".into()));
        check(Method::PUT, "/2015-03-31/functions/f/configuration", Operation::UpdateFunctionConfiguration("f".into()));
        check(Method::PUT, "/2015-03-31/functions/f/code", Operation::UpdateFunctionCode("f".into()));
        check(Method::POST, "/2015-03-31/functions/f/invocations", Operation::Invoke("f".into()));
        check(Method::GET, "/2017-03-31/tags/arn%3Ax", Operation::ListTags("arn:x".into()));
        check(Method::POST, "/2015-03-31/functions/f/aliases", Operation::NotEmulated("aliases"));
        check(Method::POST, "/2015-03-31/functions/f/versions", Operation::NotEmulated("published versions"));
        check(Method::PUT, "/2017-10-31/functions/f/concurrency", Operation::NotEmulated("concurrency settings"));
        check(Method::POST, "/2018-10-31/layers/l/versions", Operation::NotEmulated("layers"));
        check(Method::POST, "/2015-03-31/event-source-mappings/", Operation::NotEmulated("event source mappings"));
        check(Method::PATCH, "/2015-03-31/functions/f", Operation::Unknown);
        check(Method::GET, "/bucket/key", Operation::Unknown);
    }

    #[test]
    fn roles() {
        assert!(valid_role("arn:aws:iam::000000000000:role/lambda-role"));
        assert!(valid_role("arn:aws:iam::123456789012:role/service-role/x.y@z"));
        assert!(!valid_role("arn:aws:iam::0:role/x"));
        assert!(!valid_role("role"));
    }

    #[test]
    fn environments() {
        let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        assert!(check_environment(&env(&[("STAGE", "dev"), ("AWS_ENDPOINT_URL", "x")])).is_ok());
        assert!(matches!(check_environment(&env(&[("AWS_REGION", "x")])), Err(LambdaError::InvalidParameter(_))));
        assert!(matches!(check_environment(&env(&[("1X", "x")])), Err(LambdaError::Validation(_))));
        assert!(check_environment(&env(&[("BIG", &"x".repeat(5000))])).is_err());
    }

    #[test]
    fn log_tails_cut_at_characters() {
        let log = format!("é{}", "x".repeat(4095));
        assert_eq!(log_tail(&log).len(), 4095);
        assert_eq!(log_tail("short"), "short");
    }
}
