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
//! `account` and `region` default to `--account-id` and `--region`. A bucket or stream
//! that already exists is left as it is.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::http::RequestCtx;
use crate::server::State;
use crate::store::{BucketInfo, Created, now_ms, valid_bucket_name};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitFile {
    account: Option<String>,
    region: Option<String>,
    #[serde(default)]
    buckets: Vec<String>,
    #[serde(default)]
    delivery_streams: Vec<Value>,
}

/// Creates what `path` declares; an error is one line naming the file and the problem.
pub async fn apply(state: &Arc<State>, path: &Path) -> Result<(), String> {
    let fail = |what: String| format!("init file {}: {what}", path.display());
    let text = std::fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
    let init: InitFile = serde_json::from_str(&text).map_err(|err| fail(err.to_string()))?;
    let ctx = RequestCtx {
        request_id: "init".to_owned(),
        account: init.account.unwrap_or_else(|| state.config.account_id.clone()),
        region: init.region.unwrap_or_else(|| state.config.region.clone()),
    };
    if !crate::config::valid_account_id(&ctx.account) {
        return Err(fail(format!("account {:?} is not 12 digits", ctx.account)));
    }
    for bucket in &init.buckets {
        if !valid_bucket_name(bucket) {
            return Err(fail(format!("{bucket:?} is not a valid bucket name")));
        }
        let info = BucketInfo {
            name: bucket.clone(),
            created_ms: now_ms(),
            region: ctx.region.clone(),
            owner: ctx.account.clone(),
            cors: None,
            tags: None,
        };
        match state.store.create_bucket(&info) {
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
        if state.firehose.get(&ctx.account, &ctx.region, &name).is_some() {
            tracing::debug!(stream = %name, "init: delivery stream exists");
            continue;
        }
        match crate::firehose::create_from_json(state, &ctx, request).await {
            Ok(_) => tracing::info!(stream = %name, "init: created delivery stream"),
            Err(err) => return Err(fail(format!("delivery stream {name:?}: {}: {}", err.error_type(), err.message()))),
        }
    }
    Ok(())
}
