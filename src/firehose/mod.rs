//! The Firehose JSON protocol (AWS JSON 1.1, `X-Amz-Target: Firehose_20150804.<Op>`):
//! parse the body into the operation's input, apply it to the delivery streams, and
//! respond, with errors rendered only by [`error::FirehoseError::to_response`].

pub mod api;
pub mod buffer;
pub mod compress;
pub mod delivery;
pub mod error;
pub mod naming;
pub mod pipeline;
pub mod registry;
pub mod stream;
pub mod transform;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{Body, RequestCtx, full};
use api::{S3Destination, Tag, Violations, check_stream_name, check_tags, not_emulated, parse};
use error::{FirehoseError, Result};
use registry::{ChangeError, Refusal};
use stream::{DESTINATION_ID, Stream, StreamDef};

/// What the Firehose handlers reach: the delivery streams and the keys requests are
/// signed with, nothing of the other protocols.
pub struct FirehoseState {
    pub firehose: Arc<registry::Firehose>,
    /// With `--auth strict`, the keys a request must be signed with.
    pub auth_keys: Option<crate::auth::Keys>,
}

/// The `X-Amz-Target` prefix of every Firehose operation.
pub const TARGET_PREFIX: &str = "Firehose_20150804.";
/// Largest request body: a 4 MiB batch in base64, with room for the JSON around it.
const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
const RECORD_BYTES_MAX: usize = 1_024_000;
const BATCH_RECORDS_MAX: usize = 500;
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
const STREAMS_MAX: usize = 5_000;
const TAGS_MAX: usize = 50;

pub async fn handle(state: &Arc<FirehoseState>, ctx: &RequestCtx, parts: http::request::Parts, body: Incoming) -> Response<Body> {
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or(target).to_owned();
    let span = tracing::debug_span!("firehose", op = %operation, id = %ctx.request_id);
    let _enter = span.enter();
    let result = async {
        let body = crate::http::read_body_limited(body, BODY_BYTES_MAX).await.map_err(|err| match err {
            crate::http::BodyError::TooLarge => {
                FirehoseError::Serialization(format!("the request body is larger than {BODY_BYTES_MAX} bytes"))
            }
            crate::http::BodyError::Io(err) => FirehoseError::Serialization(format!("the request body could not be read: {err}")),
        })?;
        if let Some(keys) = &state.auth_keys {
            let body_sha256 = crate::sigv4::sha256_hex(&body);
            crate::auth::verify(keys, &parts, crate::auth::Service::Firehose, Some(&body_sha256), chrono::Utc::now())
                .map_err(FirehoseError::Auth)?;
        }
        dispatch(state, ctx, &operation, &body).await
    }
    .await;
    match result {
        Ok(reply) => crate::http::response(
            StatusCode::OK,
            &[("content-type", "application/x-amz-json-1.1"), ("x-amzn-requestid", &ctx.request_id)],
            full(match reply {
                Reply::Json(value) => value.to_string(),
                Reply::Text(text) => text,
            }),
        ),
        Err(err) => err.to_response(ctx),
    }
}

/// A response body: a JSON value, or JSON text written directly.
enum Reply {
    Json(Value),
    Text(String),
}

async fn dispatch(state: &Arc<FirehoseState>, ctx: &RequestCtx, operation: &str, body: &[u8]) -> Result<Reply> {
    if operation == "PutRecordBatch" {
        return put_record_batch(state, ctx, body).await.map(Reply::Text);
    }
    let value = match operation {
        "CreateDeliveryStream" => create(state, ctx, parse(body)?).await,
        "DescribeDeliveryStream" => describe(state, ctx, parse(body)?),
        "ListDeliveryStreams" => list(state, ctx, parse(body)?),
        "DeleteDeliveryStream" => delete(state, ctx, parse(body)?).await,
        "PutRecord" => put_record(state, ctx, body).await,
        "UpdateDestination" => update_destination(state, ctx, parse(body)?).await,
        "TagDeliveryStream" => tag(state, ctx, parse(body)?).await,
        "UntagDeliveryStream" => untag(state, ctx, parse(body)?).await,
        "ListTagsForDeliveryStream" => list_tags(state, ctx, parse(body)?),
        "StartDeliveryStreamEncryption" => encryption(state, ctx, parse(body)?, true).await,
        "StopDeliveryStreamEncryption" => encryption(state, ctx, parse(body)?, false).await,
        _ => Err(FirehoseError::UnknownOperation),
    };
    value.map(Reply::Json)
}

fn not_found(name: &str, ctx: &RequestCtx) -> FirehoseError {
    FirehoseError::ResourceNotFound(format!("Firehose {name} under account {} not found.", ctx.account))
}

fn find(state: &FirehoseState, ctx: &RequestCtx, name: &str) -> Result<Arc<Stream>> {
    state.firehose.get(&ctx.account, &ctx.region, name).ok_or_else(|| not_found(name, ctx))
}

/// Changes a stream's definition through the registry's one serialised path.
async fn change(
    state: &Arc<FirehoseState>,
    ctx: &RequestCtx,
    stream: Arc<Stream>,
    change: impl FnOnce(&StreamDef) -> Result<Option<StreamDef>> + Send + 'static,
) -> Result<()> {
    let state2 = state.clone();
    let name = stream.lock().def.name.clone();
    let gone = not_found(&name, ctx);
    blocking(move || match state2.firehose.change(&stream, change) {
        Ok(()) => Ok(()),
        Err(ChangeError::Refused(err)) => Err(err),
        Err(ChangeError::Deleted) => Err(gone),
        Err(ChangeError::Io(err)) => Err(err.into()),
    })
    .await
}

/// Runs blocking work (journal, store) off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|err| {
        tracing::error!(%err, "blocking task failed");
        FirehoseError::Internal
    })?
}

/// Creates a stream from a CreateDeliveryStream request body (for init files).
pub async fn create_from_json(state: &Arc<FirehoseState>, ctx: &RequestCtx, request: Value) -> Result<Value> {
    let input: CreateInput = serde_json::from_value(request).map_err(|err| FirehoseError::Serialization(err.to_string()))?;
    create(state, ctx, input).await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateInput {
    delivery_stream_name: Option<String>,
    delivery_stream_type: Option<String>,
    direct_put_source_configuration: Option<Value>,
    delivery_stream_encryption_configuration_input: Option<Value>,
    #[serde(rename = "S3DestinationConfiguration")]
    pub(crate) s3_destination_configuration: Option<S3Destination>,
    #[serde(rename = "ExtendedS3DestinationConfiguration")]
    pub(crate) extended_s3_destination_configuration: Option<S3Destination>,
    tags: Option<Vec<Tag>>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

const STREAM_TYPES: [&str; 4] = ["DirectPut", "KinesisStreamAsSource", "MSKAsSource", "DatabaseAsSource"];

async fn create(state: &Arc<FirehoseState>, ctx: &RequestCtx, input: CreateInput) -> Result<Value> {
    let mut v = Violations::default();
    check_stream_name(&mut v, &input.delivery_stream_name);
    v.one_of("deliveryStreamType", input.delivery_stream_type.as_deref(), &STREAM_TYPES);
    if let Some(dest) = &input.extended_s3_destination_configuration {
        dest.check_model(&mut v, "extendedS3DestinationConfiguration", true);
    }
    if let Some(dest) = &input.s3_destination_configuration {
        dest.check_model(&mut v, "s3DestinationConfiguration", true);
    }
    if let Some(tags) = &input.tags {
        v.list_length("tags", tags.len(), 1, TAGS_MAX);
        check_tags(&mut v, "tags", tags);
    }
    v.finish()?;
    let name = input.delivery_stream_name.unwrap_or_default();
    let lenient = state.firehose.settings.lenient;
    let others: serde_json::Map<String, Value> =
        input.other.into_iter().filter(|(k, v)| k.ends_with("DestinationConfiguration") && !v.is_null()).collect();
    let destinations = others.len()
        + input.s3_destination_configuration.is_some() as usize
        + input.extended_s3_destination_configuration.is_some() as usize;
    if destinations != 1 {
        return Err(FirehoseError::InvalidArgument("Exactly one destination configuration is supported for a Firehose".to_owned()));
    }
    let mut ignored = Vec::new();
    let stream_type = input.delivery_stream_type.unwrap_or_else(|| "DirectPut".to_owned());
    if stream_type != "DirectPut" {
        if !lenient {
            return Err(not_emulated(&format!("DeliveryStreamType {stream_type}")));
        }
        ignored.push(format!("DeliveryStreamType={stream_type}"));
    }
    for key in others.keys() {
        if !lenient {
            return Err(not_emulated(key));
        }
        ignored.push(key.clone());
    }
    let (destination, path) = match (input.extended_s3_destination_configuration, input.s3_destination_configuration) {
        (Some(dest), _) => (dest, "ExtendedS3DestinationConfiguration"),
        (None, Some(dest)) => (dest, "S3DestinationConfiguration"),
        (None, None) => (S3Destination::default(), ""),
    };
    if !path.is_empty() {
        ignored.extend(destination.check_semantics(lenient, path)?);
    }
    for member in &ignored {
        tracing::warn!(stream = %name, member = %member, "--lenient: accepted but not emulated");
    }
    let encryption = match input.delivery_stream_encryption_configuration_input {
        Some(config) => Some(encryption_description(&config, true)?),
        None if stream_type == "DirectPut" => Some(json!({"Status": "DISABLED"})),
        None => None,
    };
    let now = crate::store::now_ms();
    let def = StreamDef {
        uid: uuid::Uuid::new_v4().simple().to_string(),
        account: ctx.account.clone(),
        region: ctx.region.clone(),
        name: name.clone(),
        stream_type,
        created_ms: now,
        active_at_ms: now + state.firehose.settings.create_delay_ms,
        last_update_ms: None,
        version: 1,
        destination,
        other_destinations: others,
        source: input.direct_put_source_configuration,
        tags: input.tags.unwrap_or_default(),
        encryption,
        ignored,
    };
    let arn = def.arn();
    let state2 = state.clone();
    let account = ctx.account.clone();
    blocking(move || {
        let name = def.name.clone();
        // Checked under the registry's change lock, so concurrent creates of one name
        // cannot both succeed.
        let refuse = |refusal: Refusal| match refusal {
            Refusal::Exists => Some(FirehoseError::ResourceInUse(format!("Firehose {name} under accountId {account} already exists"))),
            Refusal::Quota(n) if n >= STREAMS_MAX => {
                Some(FirehoseError::LimitExceeded(format!("You have already consumed your firehose quota of {STREAMS_MAX} hoses.")))
            }
            Refusal::Quota(_) => None,
            Refusal::OpenFiles { streams, open_files } => Some(FirehoseError::LimitExceeded(format!(
                "firelake holds at most {streams} delivery streams under its open-file limit of {open_files}; raise it (ulimit -n) to create more"
            ))),
        };
        match state2.firehose.create(def, refuse) {
            Ok(()) => Ok(()),
            Err(ChangeError::Refused(err)) => Err(err),
            Err(ChangeError::Deleted) => Err(FirehoseError::Internal),
            Err(ChangeError::Io(err)) => Err(err.into()),
        }
    })
    .await?;
    Ok(json!({ "DeliveryStreamARN": arn }))
}

fn encryption_description(config: &Value, enabled: bool) -> Result<Value> {
    let key_type = config.get("KeyType").and_then(Value::as_str);
    let mut v = Violations::default();
    v.required("deliveryStreamEncryptionConfigurationInput.keyType", &key_type);
    v.one_of("deliveryStreamEncryptionConfigurationInput.keyType", key_type, &["AWS_OWNED_CMK", "CUSTOMER_MANAGED_CMK"]);
    v.finish()?;
    let key_arn = config.get("KeyARN").and_then(Value::as_str);
    if key_type == Some("CUSTOMER_MANAGED_CMK") && key_arn.is_none() {
        return Err(FirehoseError::InvalidArgument("KeyARN is required when KeyType is CUSTOMER_MANAGED_CMK".to_owned()));
    }
    let mut out = json!({ "KeyType": key_type, "Status": if enabled { "ENABLED" } else { "DISABLED" } });
    if let Some(arn) = key_arn {
        out["KeyARN"] = Value::String(arn.to_owned());
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NameInput {
    delivery_stream_name: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    exclusive_start_destination_id: Option<String>,
}

fn describe(state: &Arc<FirehoseState>, ctx: &RequestCtx, input: NameInput) -> Result<Value> {
    let mut v = Violations::default();
    check_stream_name(&mut v, &input.delivery_stream_name);
    v.range("limit", input.limit, 1, 10_000);
    v.length("exclusiveStartDestinationId", input.exclusive_start_destination_id.as_deref(), 1, 100);
    v.finish()?;
    let name = input.delivery_stream_name.unwrap_or_default();
    let stream = find(state, ctx, &name)?;
    let s = stream.lock();
    let def = &s.def;
    let now = crate::store::now_ms();
    let mut destination = json!({ "DestinationId": DESTINATION_ID });
    if !def.destination.bucket().is_empty() || def.other_destinations.is_empty() {
        destination["S3DestinationDescription"] = def.destination.describe_basic();
        destination["ExtendedS3DestinationDescription"] = def.destination.describe_extended();
    }
    for (key, value) in &def.other_destinations {
        destination[key.replace("Configuration", "Description")] = value.clone();
    }
    // Past ExclusiveStartDestinationId there is no other destination.
    let destinations = if input.exclusive_start_destination_id.as_deref() == Some(DESTINATION_ID) { vec![] } else { vec![destination] };
    let mut description = json!({
        "DeliveryStreamName": def.name,
        "DeliveryStreamARN": def.arn(),
        "DeliveryStreamStatus": if def.active(now) { "ACTIVE" } else { "CREATING" },
        "DeliveryStreamType": def.stream_type,
        "VersionId": def.version.to_string(),
        "CreateTimestamp": def.created_ms as f64 / 1000.0,
        "Destinations": destinations,
        "HasMoreDestinations": false,
    });
    if let Some(encryption) = &def.encryption {
        description["DeliveryStreamEncryptionConfiguration"] = encryption.clone();
    }
    if let Some(updated) = def.last_update_ms {
        description["LastUpdateTimestamp"] = json!(updated as f64 / 1000.0);
    }
    if let Some(hint) = def.source.as_ref().and_then(|s| s.get("ThroughputHintInMBs")) {
        description["Source"] = json!({ "DirectPutSourceDescription": { "ThroughputHintInMBs": hint } });
    }
    Ok(json!({ "DeliveryStreamDescription": description }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    limit: Option<i64>,
    delivery_stream_type: Option<String>,
    exclusive_start_delivery_stream_name: Option<String>,
}

fn list(state: &Arc<FirehoseState>, ctx: &RequestCtx, input: ListInput) -> Result<Value> {
    let mut v = Violations::default();
    v.range("limit", input.limit, 1, 10_000);
    v.one_of("deliveryStreamType", input.delivery_stream_type.as_deref(), &STREAM_TYPES);
    v.length("exclusiveStartDeliveryStreamName", input.exclusive_start_delivery_stream_name.as_deref(), 1, 64);
    v.finish()?;
    let limit = input.limit.unwrap_or(10) as usize;
    let start = input.exclusive_start_delivery_stream_name.unwrap_or_default();
    let names: Vec<String> = state
        .firehose
        .list(&ctx.account, &ctx.region)
        .iter()
        .map(|s| {
            let s = s.lock();
            (s.def.name.clone(), s.def.stream_type.clone())
        })
        .filter(|(name, kind)| name.as_str() > start.as_str() && input.delivery_stream_type.as_deref().is_none_or(|t| t == kind))
        .map(|(name, _)| name)
        .collect();
    let more = names.len() > limit;
    Ok(json!({ "DeliveryStreamNames": names.into_iter().take(limit).collect::<Vec<_>>(), "HasMoreDeliveryStreams": more }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteInput {
    delivery_stream_name: Option<String>,
    #[allow(dead_code)]
    allow_force_delete: Option<bool>,
}

async fn delete(state: &Arc<FirehoseState>, ctx: &RequestCtx, input: DeleteInput) -> Result<Value> {
    let mut v = Violations::default();
    check_stream_name(&mut v, &input.delivery_stream_name);
    v.finish()?;
    let name = input.delivery_stream_name.unwrap_or_default();
    let stream = find(state, ctx, &name)?;
    if !stream.lock().def.active(crate::store::now_ms()) {
        return Err(FirehoseError::ResourceInUse(format!("Firehose {name} is in CREATING state and cannot be deleted.")));
    }
    let state2 = state.clone();
    blocking(move || Ok(state2.firehose.delete(&stream)?)).await?;
    Ok(json!({}))
}

/// A record as sent: base64 text, borrowed from the request body where it can be.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RecordInput<'a> {
    #[serde(borrow)]
    data: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordInput<'a> {
    delivery_stream_name: Option<String>,
    #[serde(borrow)]
    record: Option<RecordInput<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PutRecordBatchInput<'a> {
    delivery_stream_name: Option<String>,
    #[serde(borrow)]
    pub(crate) records: Option<Vec<RecordInput<'a>>>,
}

/// Parses a body whose input borrows from it.
pub(crate) fn parse_borrowed<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|err| FirehoseError::Serialization(format!("failed to parse the request: {err}")))
}

/// Decodes every record's base64 `Data` into one buffer; a record without data is `None`.
/// Bad base64 is a SerializationException.
pub(crate) fn decode_records(records: &[RecordInput<'_>]) -> Result<Vec<Option<Bytes>>> {
    let capacity: usize = records.iter().map(|r| r.data.as_ref().map_or(0, |d| d.len() / 4 * 3 + 3)).sum();
    let mut buffer = bytes::BytesMut::zeroed(capacity);
    let mut spans = Vec::with_capacity(records.len());
    let mut at = 0;
    for record in records {
        match &record.data {
            None => spans.push(None),
            Some(data) => {
                let n = base64_simd::STANDARD
                    .decode(data.as_bytes(), base64_simd::Out::from_slice(&mut buffer[at..]))
                    .map_err(|_| FirehoseError::Serialization("Base64 encoded data is invalid".to_owned()))?
                    .len();
                spans.push(Some((at, n)));
                at += n;
            }
        }
    }
    let buffer = buffer.freeze();
    Ok(spans.into_iter().map(|span| span.map(|(start, n)| buffer.slice(start..start + n))).collect())
}

/// RecordIds in the style of AWS's: opaque 224-character base64 tokens (168 bytes), unique
/// because each embeds the batch's random part and the record's position.
struct RecordIds {
    /// The base64 of the first 159 random bytes (a multiple of 3, so it encodes on its
    /// own): shared by every id of the batch, so it is encoded once, not once per record.
    prefix: String,
    /// The last random byte, then the record's index.
    tail: [u8; 9],
}

impl RecordIds {
    fn new() -> RecordIds {
        let mut seed = [0u8; 160];
        rand::thread_rng().fill_bytes(&mut seed);
        let mut tail = [0u8; 9];
        tail[0] = seed[159];
        RecordIds { prefix: BASE64.encode(&seed[..159]), tail }
    }

    fn write(&mut self, index: usize, out: &mut String) {
        self.tail[1..].copy_from_slice(&(index as u64).to_be_bytes());
        out.push_str(&self.prefix);
        BASE64.encode_string(self.tail, out);
    }
}

/// Where records come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// PutRecord and PutRecordBatch.
    DirectPut,
    /// A CloudWatch Logs subscription (firelake's `/_firelake/cloudwatch-logs`).
    CloudWatchLogs,
}

/// Finds the stream for a put and checks that it takes records from `source`.
fn stream_for_put(state: &Arc<FirehoseState>, ctx: &RequestCtx, name: &str, source: Source) -> Result<(Arc<Stream>, bool)> {
    let stream = find(state, ctx, name)?;
    let s = stream.lock();
    // AWS lets only CloudWatch Logs put into a stream that decompresses its records.
    if source == Source::DirectPut && s.def.destination.has_processor("Decompression") {
        return Err(FirehoseError::InvalidSource(format!(
            "Put to Firehose failed for AccountId: {}, FirehoseName: {name} because the request is not originating from CloudWatch.",
            ctx.account
        )));
    }
    if !s.def.active(crate::store::now_ms()) {
        return Err(FirehoseError::ResourceNotFound(format!("Firehose {name} is not active in {} account.", ctx.account)));
    }
    if s.def.stream_type != "DirectPut" {
        return Err(FirehoseError::InvalidArgument(format!(
            "This operation is not permitted on {} delivery stream type.",
            s.def.stream_type
        )));
    }
    let encrypted = s.def.encrypted();
    drop(s);
    Ok((stream, encrypted))
}

async fn put_record(state: &Arc<FirehoseState>, ctx: &RequestCtx, body: &[u8]) -> Result<Value> {
    let input: PutRecordInput<'_> = parse_borrowed(body)?;
    let mut v = Violations::default();
    check_stream_name(&mut v, &input.delivery_stream_name);
    v.required("record", &input.record);
    let data = match &input.record {
        Some(record) => {
            let data = decode_records(std::slice::from_ref(record))?.pop().flatten();
            v.required("record.data", &data);
            if let Some(data) = &data {
                v.blob_length("record.data", data.len(), RECORD_BYTES_MAX);
            }
            data
        }
        None => None,
    };
    v.finish()?;
    let name = input.delivery_stream_name.unwrap_or_default();
    let (stream, encrypted) = stream_for_put(state, ctx, &name, Source::DirectPut)?;
    let results = state.firehose.put(&stream, vec![data.unwrap_or_default()]).await?.ok_or_else(|| not_found(&name, ctx))?;
    match results.first() {
        Some(Some(_)) => {
            let mut id = String::new();
            RecordIds::new().write(0, &mut id);
            Ok(json!({ "RecordId": id, "Encrypted": encrypted }))
        }
        _ => Err(FirehoseError::ServiceUnavailable("Slow down.".to_owned())),
    }
}

/// PutRecordBatch answers with a body written directly: it is the hot path.
async fn put_record_batch(state: &Arc<FirehoseState>, ctx: &RequestCtx, body: &[u8]) -> Result<String> {
    let input: PutRecordBatchInput<'_> = parse_borrowed(body)?;
    let mut v = Violations::default();
    check_stream_name(&mut v, &input.delivery_stream_name);
    v.required("records", &input.records);
    let records = input.records.unwrap_or_default();
    if input.delivery_stream_name.is_some() {
        v.list_length("records", records.len(), 1, BATCH_RECORDS_MAX);
    }
    let decoded = decode_records(&records)?;
    let mut data = Vec::with_capacity(decoded.len());
    for (i, record) in decoded.into_iter().enumerate() {
        // The member's path is only built for a record that breaks a constraint: this is the hot path.
        if record.as_ref().is_none_or(|bytes| bytes.len() > RECORD_BYTES_MAX) {
            let path = format!("records.{}.member.data", i + 1);
            v.required(&path, &record);
            if let Some(bytes) = &record {
                v.blob_length(&path, bytes.len(), RECORD_BYTES_MAX);
            }
        }
        data.push(record.unwrap_or_default());
    }
    v.finish()?;
    if data.iter().map(Bytes::len).sum::<usize>() > BATCH_BYTES_MAX {
        return Err(FirehoseError::InvalidArgument("Records size exceeds 4 MB limit".to_owned()));
    }
    let name = input.delivery_stream_name.unwrap_or_default();
    let (stream, encrypted) = stream_for_put(state, ctx, &name, Source::DirectPut)?;
    let results = state.firehose.put(&stream, data).await?.ok_or_else(|| not_found(&name, ctx))?;
    let failed = results.iter().filter(|r| r.is_none()).count();
    let mut ids = RecordIds::new();
    let mut out = String::with_capacity(64 + results.len() * 240);
    out.push_str(&format!("{{\"FailedPutCount\":{failed},\"Encrypted\":{encrypted},\"RequestResponses\":["));
    for (i, result) in results.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match result {
            Some(_) => {
                out.push_str("{\"RecordId\":\"");
                ids.write(i, &mut out);
                out.push_str("\"}");
            }
            None => out.push_str("{\"ErrorCode\":\"ServiceUnavailableException\",\"ErrorMessage\":\"Slow down.\"}"),
        }
    }
    out.push_str("]}");
    Ok(out)
}

/// Delivers one record as a CloudWatch Logs subscription would (the gzipped envelope
/// as it is), for streams with Decompression, which refuse direct puts as AWS does.
pub async fn put_from_cloudwatch_logs(state: &Arc<FirehoseState>, ctx: &RequestCtx, name: &str, data: Bytes) -> Result<()> {
    if data.len() > RECORD_BYTES_MAX {
        return Err(FirehoseError::Validation(format!(
            "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim={0} cap={0}]' at 'record.data' failed to satisfy constraint: Member must have length less than or equal to {RECORD_BYTES_MAX}",
            data.len()
        )));
    }
    let (stream, _) = stream_for_put(state, ctx, name, Source::CloudWatchLogs)?;
    let results = state.firehose.put(&stream, vec![data]).await?.ok_or_else(|| not_found(name, ctx))?;
    match results.first() {
        Some(Some(_)) => Ok(()),
        _ => Err(FirehoseError::ServiceUnavailable("Slow down.".to_owned())),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UpdateInput {
    delivery_stream_name: Option<String>,
    current_delivery_stream_version_id: Option<String>,
    destination_id: Option<String>,
    #[serde(rename = "S3DestinationUpdate")]
    s3_destination_update: Option<S3Destination>,
    #[serde(rename = "ExtendedS3DestinationUpdate")]
    pub(crate) extended_s3_destination_update: Option<S3Destination>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

async fn update_destination(state: &Arc<FirehoseState>, ctx: &RequestCtx, input: UpdateInput) -> Result<Value> {
    let mut v = Violations::default();
    check_stream_name(&mut v, &input.delivery_stream_name);
    v.required("currentDeliveryStreamVersionId", &input.current_delivery_stream_version_id);
    v.length("currentDeliveryStreamVersionId", input.current_delivery_stream_version_id.as_deref(), 1, 50);
    v.pattern(
        "currentDeliveryStreamVersionId",
        input.current_delivery_stream_version_id.as_deref(),
        |s| s.bytes().all(|b| b.is_ascii_digit()),
        "[0-9]+",
    );
    v.required("destinationId", &input.destination_id);
    v.length("destinationId", input.destination_id.as_deref(), 1, 100);
    if let Some(update) = &input.extended_s3_destination_update {
        update.check_model(&mut v, "extendedS3DestinationUpdate", false);
    }
    if let Some(update) = &input.s3_destination_update {
        update.check_model(&mut v, "s3DestinationUpdate", false);
    }
    v.finish()?;
    let name = input.delivery_stream_name.unwrap_or_default();
    let stream = find(state, ctx, &name)?;
    if let Some(other) = input.other.keys().find(|k| k.ends_with("DestinationUpdate")) {
        return Err(not_emulated(other));
    }
    let update = match (input.extended_s3_destination_update, input.s3_destination_update) {
        (Some(update), None) => update,
        (None, Some(update)) => update,
        (None, None) => S3Destination::default(),
        (Some(_), Some(_)) => {
            return Err(FirehoseError::InvalidArgument("Exactly one destination update is supported for a Firehose".to_owned()));
        }
    };
    let lenient = state.firehose.settings.lenient;
    let destination_id = input.destination_id.unwrap_or_default();
    let given = input.current_delivery_stream_version_id.unwrap_or_default();
    change(state, ctx, stream, move |current| {
        if !current.active(crate::store::now_ms()) {
            return Err(FirehoseError::ResourceInUse(format!("Firehose {name} is not in the ACTIVE state.")));
        }
        if destination_id != DESTINATION_ID {
            return Err(FirehoseError::InvalidArgument(format!("Destination Id {destination_id} was not found for Firehose {name}.")));
        }
        let version = current.version.to_string();
        if given != version {
            return Err(FirehoseError::ConcurrentModification(format!(
                "Cannot update firehose: {name} since the current version id: {version} and specified version id: {given} do not match"
            )));
        }
        let mut def = current.clone();
        def.destination.merge(update);
        S3Destination::check_update(&current.destination, &def.destination)?;
        let ignored = def.destination.check_semantics(lenient, "ExtendedS3DestinationUpdate")?;
        if def.destination == current.destination {
            // An update that changes nothing leaves the version and timestamp alone.
            return Ok(None);
        }
        def.version += 1;
        def.last_update_ms = Some(crate::store::now_ms());
        def.ignored.extend(ignored.into_iter().filter(|i| !current.ignored.contains(i)));
        Ok(Some(def))
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagInput {
    delivery_stream_name: Option<String>,
    tags: Option<Vec<Tag>>,
    tag_keys: Option<Vec<String>>,
    exclusive_start_tag_key: Option<String>,
    limit: Option<i64>,
}

async fn tag(state: &Arc<FirehoseState>, ctx: &RequestCtx, input: TagInput) -> Result<Value> {
    let mut v = Violations::default();
    check_stream_name(&mut v, &input.delivery_stream_name);
    v.required("tags", &input.tags);
    let tags = input.tags.unwrap_or_default();
    if input.delivery_stream_name.is_some() {
        v.list_length("tags", tags.len(), 1, TAGS_MAX);
    }
    check_tags(&mut v, "tags", &tags);
    v.finish()?;
    let name = input.delivery_stream_name.unwrap_or_default();
    let stream = find(state, ctx, &name)?;
    change(state, ctx, stream, move |current| {
        let mut def = current.clone();
        for tag in tags {
            match def.tags.iter_mut().find(|t| t.key == tag.key) {
                Some(existing) => existing.value = tag.value,
                None => def.tags.push(tag),
            }
        }
        if def.tags.len() > TAGS_MAX {
            return Err(FirehoseError::LimitExceeded(format!("A delivery stream cannot have more than {TAGS_MAX} tags.")));
        }
        Ok(Some(def))
    })
    .await?;
    Ok(json!({}))
}

async fn untag(state: &Arc<FirehoseState>, ctx: &RequestCtx, input: TagInput) -> Result<Value> {
    let mut v = Violations::default();
    check_stream_name(&mut v, &input.delivery_stream_name);
    v.required("tagKeys", &input.tag_keys);
    let keys = input.tag_keys.unwrap_or_default();
    if input.delivery_stream_name.is_some() {
        v.list_length("tagKeys", keys.len(), 1, TAGS_MAX);
    }
    for (i, key) in keys.iter().enumerate() {
        v.length(&format!("tagKeys.{}.member", i + 1), Some(key), 1, 128);
    }
    v.finish()?;
    let name = input.delivery_stream_name.unwrap_or_default();
    let stream = find(state, ctx, &name)?;
    change(state, ctx, stream, move |current| {
        let mut def = current.clone();
        def.tags.retain(|t| !keys.iter().any(|k| Some(k) == t.key.as_ref()));
        Ok(Some(def))
    })
    .await?;
    Ok(json!({}))
}

fn list_tags(state: &Arc<FirehoseState>, ctx: &RequestCtx, input: TagInput) -> Result<Value> {
    let mut v = Violations::default();
    check_stream_name(&mut v, &input.delivery_stream_name);
    v.range("limit", input.limit, 1, 50);
    v.length("exclusiveStartTagKey", input.exclusive_start_tag_key.as_deref(), 1, 128);
    v.finish()?;
    let name = input.delivery_stream_name.unwrap_or_default();
    let stream = find(state, ctx, &name)?;
    let mut tags = stream.lock().def.tags.clone();
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    let start = input.exclusive_start_tag_key.unwrap_or_default();
    let after: Vec<&Tag> = tags.iter().filter(|t| t.key.as_deref().unwrap_or_default() > start.as_str()).collect();
    let limit = input.limit.unwrap_or(50) as usize;
    let page: Vec<Value> = after.iter().take(limit).map(|t| json!({"Key": t.key, "Value": t.value.clone().unwrap_or_default()})).collect();
    Ok(json!({ "Tags": page, "HasMoreTags": after.len() > limit }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptionInput {
    delivery_stream_name: Option<String>,
    delivery_stream_encryption_configuration_input: Option<Value>,
}

async fn encryption(state: &Arc<FirehoseState>, ctx: &RequestCtx, input: EncryptionInput, enable: bool) -> Result<Value> {
    let mut v = Violations::default();
    check_stream_name(&mut v, &input.delivery_stream_name);
    v.finish()?;
    let name = input.delivery_stream_name.unwrap_or_default();
    let stream = find(state, ctx, &name)?;
    let config = input.delivery_stream_encryption_configuration_input;
    change(state, ctx, stream, move |current| {
        let mut def = current.clone();
        if def.stream_type != "DirectPut" {
            return Err(FirehoseError::InvalidArgument(format!(
                "Encryption is supported only for DirectPut delivery streams, not {}.",
                def.stream_type
            )));
        }
        def.encryption = Some(if enable {
            encryption_description(&config.unwrap_or_else(|| json!({"KeyType": "AWS_OWNED_CMK"})), true)?
        } else {
            let mut current = def.encryption.clone().unwrap_or_else(|| json!({}));
            current["Status"] = json!("DISABLED");
            current
        });
        Ok(Some(def))
    })
    .await?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// Record data is decoded (by base64-simd) exactly as strictly as the base64
        /// crate's standard engine decodes: same bytes, same refusals.
        #[test]
        fn record_data_decodes_like_the_base64_crate(data in "[A-Za-z0-9+/=_ -]{0,40}") {
            let decoded = decode_records(&[RecordInput { data: Some(data.as_str().into()) }]);
            let expected = BASE64.decode(&data).ok();
            prop_assert_eq!(decoded.ok().map(|mut r| r.pop().flatten().unwrap_or_default().to_vec()), expected);
        }
    }

    #[test]
    fn record_ids_are_224_base64_characters_unique_per_record_and_batch() {
        let mut ids = RecordIds::new();
        let (mut a, mut b) = (String::new(), String::new());
        ids.write(0, &mut a);
        ids.write(1, &mut b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 224);
            let raw = BASE64.decode(id).unwrap();
            assert_eq!(raw.len(), 168);
        }
        assert_ne!(a, b);
        assert_eq!(BASE64.decode(&b).unwrap()[160..], 1u64.to_be_bytes());
        let mut other = String::new();
        RecordIds::new().write(0, &mut other);
        assert_ne!(a, other);
    }
}
