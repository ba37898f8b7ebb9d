//! The init file: buckets and delivery streams created at start, idempotently, before
//! firelake reports ready (`--init fixtures/workshop.json`).
//!
//! ```json
//! {
//!   "account": "000000000000", "region": "us-east-1",
//!   "buckets": ["sd-vehicle-data"],
//!   "delivery_streams": [ { <a CreateDeliveryStream request body> } ]
//! }
//! ```
//!
//! `account` and `region` default to `--account-id` and `--region`. A bucket, stream or
//! function that already exists is left as it is.
//!
//! `"functions": [{"name", "runtime", "handler", "code": "<folder or .zip>", "timeout",
//! "memory_size", "environment": {..}, "role", "description"}]` declares Lambda functions;
//! `code` is relative to the init file's folder. The init file is the operator's, so its
//! code is accepted even where requests' code is not.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::firehose::FirehoseState;
use crate::http::RequestCtx;
use crate::lambda::api::LambdaState;
use crate::store::{BucketInfo, Created, Store, now_ms, valid_bucket_name};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitFile {
    account: Option<String>,
    region: Option<String>,
    #[serde(default)]
    buckets: Vec<String>,
    #[serde(default)]
    delivery_streams: Vec<Value>,
    #[serde(default)]
    functions: Vec<InitFunction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitFunction {
    name: String,
    runtime: String,
    handler: Option<String>,
    /// A folder of code, or a .zip of it.
    code: std::path::PathBuf,
    timeout: Option<u32>,
    memory_size: Option<u32>,
    #[serde(default)]
    environment: std::collections::BTreeMap<String, String>,
    role: Option<String>,
    description: Option<String>,
}

/// Creates what `path` declares; an error is one line naming the file and the problem.
pub async fn apply(
    config: &Config,
    store: &Store,
    firehose: &Arc<FirehoseState>,
    lambda: &Arc<LambdaState>,
    path: &Path,
) -> Result<(), String> {
    let fail = |what: String| format!("init file {}: {what}", path.display());
    let text = std::fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
    let init: InitFile = serde_json::from_str(&text).map_err(|err| fail(err.to_string()))?;
    let ctx = RequestCtx {
        request_id: "init".to_owned(),
        account: init.account.unwrap_or_else(|| config.account_id.clone()),
        region: init.region.unwrap_or_else(|| config.region.clone()),
    };
    if !crate::config::valid_account_id(&ctx.account) {
        return Err(fail(format!("account {:?} is not 12 digits", ctx.account)));
    }
    for bucket in &init.buckets {
        if !valid_bucket_name(bucket) {
            return Err(fail(format!("{bucket:?} is not a valid bucket name")));
        }
        let info = BucketInfo::new(bucket, now_ms(), &ctx.region, &ctx.account);
        match store.create_bucket(&info) {
            Ok(Created::New) => tracing::info!(bucket, "init: created bucket"),
            Ok(Created::Existing(_)) => tracing::debug!(bucket, "init: bucket exists"),
            Ok(Created::Blocked) => {
                return Err(fail(format!(
                    "cannot create bucket {bucket}: something that is not a folder has its name in the data directory"
                )));
            }
            Err(err) => return Err(fail(format!("cannot create bucket {bucket}: {err}"))),
        }
    }
    for request in init.delivery_streams {
        let name = request.get("DeliveryStreamName").and_then(Value::as_str).unwrap_or_default().to_owned();
        if firehose.firehose.get(&ctx.account, &ctx.region, &name).is_some() {
            tracing::debug!(stream = %name, "init: delivery stream exists");
            continue;
        }
        match crate::firehose::create_from_json(firehose, &ctx, request).await {
            Ok(_) => tracing::info!(stream = %name, "init: created delivery stream"),
            Err(err) => return Err(fail(format!("delivery stream {name:?}: {}: {}", err.error_type(), err.message()))),
        }
    }
    for function in init.functions {
        create_function(lambda, &ctx, path, function).await.map_err(fail)?;
    }
    Ok(())
}

/// Creates a function the init file declares, unless it exists.
async fn create_function(lambda: &Arc<LambdaState>, ctx: &RequestCtx, init_path: &Path, function: InitFunction) -> Result<(), String> {
    use base64::Engine;
    let name = function.name.clone();
    let reference = crate::lambda::FunctionRef::parse(&ctx.account, &ctx.region, &name)
        .map_err(|err| format!("function {name:?}: {}", err.message()))?;
    if lambda.lambda.get(&reference).is_ok() {
        tracing::debug!(function = %name, "init: function exists");
        return Ok(());
    }
    let code = init_path.parent().unwrap_or(Path::new(".")).join(&function.code);
    let zip = match code.is_dir() {
        true => crate::lambda::zip_folder(&code),
        false => std::fs::read(&code),
    }
    .map_err(|err| format!("function {name:?}: cannot read its code {}: {err}", code.display()))?;
    let mut request = serde_json::json!({
        "FunctionName": name,
        "Runtime": function.runtime,
        "Role": function.role.unwrap_or_else(|| format!("arn:aws:iam::{}:role/lambda-role", ctx.account)),
        "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(&zip) },
        "Environment": { "Variables": function.environment },
    });
    for (key, value) in [
        ("Handler", function.handler.map(Value::from)),
        ("Timeout", function.timeout.map(Value::from)),
        ("MemorySize", function.memory_size.map(Value::from)),
        ("Description", function.description.map(Value::from)),
    ] {
        if let Some(value) = value {
            request[key] = value;
        }
    }
    let body = request.to_string();
    match crate::lambda::api::create_from_json(lambda, ctx, body.as_bytes(), true).await {
        Ok(_) => {
            tracing::info!(function = %name, "init: created function");
            Ok(())
        }
        Err(err) => Err(format!("function {name:?}: {}: {}", err.code(), err.message())),
    }
}
