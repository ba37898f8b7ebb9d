//! The S3 REST-XML protocol: route (pure) -> handle (one function per operation) ->
//! respond (errors rendered once, in [`error::S3Error::to_response`]).

pub mod acl;
pub mod attributes;
pub mod body;
pub mod bucket;
pub mod checksum;
pub mod chunked;
pub mod common;
pub mod copy;
pub mod cors;
pub mod delete;
pub mod encryption;
pub mod error;
pub mod get;
pub mod lifecycle;
pub mod list;
pub mod multipart;
pub mod policy;
pub mod preconditions;
pub mod put;
pub mod router;
pub mod tagging;
pub mod versioning;
pub mod xml;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Response};

use crate::auth::{ChunkSigning, Keys};
use crate::http::{Body, RequestCtx};
use crate::store::Store;
use error::{Result, S3Error};
use router::{AccessOp, Endpoint, Query};

/// What the S3 handlers reach: the store and the few settings S3 reads, nothing of the
/// other protocols.
pub struct S3State {
    pub store: Arc<Store>,
    /// With `--auth strict`, the keys a request must be signed with.
    pub auth_keys: Option<Keys>,
    /// The domains under which a `Host` names a bucket (virtual-hosted style).
    pub domains: Vec<String>,
    /// The region a bucket made by hand (without settings) reports.
    pub region: String,
    /// The length of a lifecycle day (`--lifecycle-day-seconds`).
    pub lifecycle_day_ms: i64,
}

/// A parsed request: what the handlers read besides the body.
pub struct Req {
    pub parts: http::request::Parts,
    pub query: Query,
    /// With `--auth strict`, the signature chain a chunk-signed body must follow.
    pub chunk_signing: Option<ChunkSigning>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A request for unit tests: `uri` with `headers`, no query, no chunk signing.
    #[cfg(test)]
    pub fn for_test(uri: &str, headers: &[(&str, &str)]) -> Req {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        Req { parts, query: Query::parse(None), chunk_signing: None }
    }
}

pub async fn handle(state: &Arc<S3State>, ctx: &RequestCtx, mut parts: http::request::Parts, body: Incoming) -> Response<Body> {
    let head = parts.method == Method::HEAD;
    let origin = parts.headers.get("origin").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let method = parts.method.clone();
    let expects_continue = parts.headers.get("expect").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let routed = check_scope_region(state, ctx, &parts).and_then(|()| authenticate(state, &parts)).and_then(|chunk_signing| {
        lift_presigned_headers(&mut parts);
        Endpoint::from_request(&parts, &state.domains).map(|(e, q)| (chunk_signing, e, q))
    });
    let (mut response, bucket) = match routed {
        Ok((chunk_signing, endpoint, query)) => {
            let span = tracing::debug_span!("s3", op = %endpoint.name(), id = %ctx.request_id);
            let _enter = span.enter();
            tracing::debug!(?endpoint, "request");
            let bucket = endpoint.bucket().map(str::to_owned);
            let req = Req { parts, query, chunk_signing };
            let result = dispatch(state, ctx, endpoint, &req, body).await;
            (result.unwrap_or_else(|err| err.to_response(ctx, head)), bucket)
        }
        Err(err) => (err.to_response(ctx, head), None),
    };
    if let (Some(origin), Some(bucket)) = (origin, bucket)
        && method != Method::OPTIONS
    {
        cors::apply(state, &bucket, &origin, &method, &mut response).await;
    }
    let refused = !response.status().is_success();
    let headers = response.headers_mut();
    // A refusal sent instead of `100 Continue` leaves the unsent body undefined on the
    // connection, so it closes rather than mistake the next request for that body.
    if expects_continue && refused {
        headers.insert("connection", http::HeaderValue::from_static("close"));
    }
    headers.insert("x-amz-request-id", ctx.request_id.parse().expect("hex is a valid header"));
    headers.insert("x-amz-id-2", crate::http::host_id().parse().expect("base64 is a valid header"));
    headers.insert("server", http::HeaderValue::from_static("AmazonS3"));
    response
}

/// Refuses a signature whose credential scope names something that cannot be a region
/// (upper case or `_`, such as the location constraints `US` and `EU`), as AWS does,
/// naming the region to sign for; clients that guess (s3cmd signs `mb` for `US`) retry
/// there. Any other name is taken as the region the request was sent to.
fn check_scope_region(state: &S3State, ctx: &RequestCtx, parts: &http::request::Parts) -> Result<()> {
    let region = ctx.region.as_str();
    if region == state.region || region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Ok(());
    }
    let why = format!("the region '{region}' is wrong; expecting '{}'", state.region);
    let err = match parts.headers.contains_key(http::header::AUTHORIZATION) {
        true => S3Error::new(error::Code::AuthorizationHeaderMalformed, format!("The authorization header is malformed; {why}")),
        false => {
            S3Error::new(error::Code::AuthorizationQueryParametersError, format!("Error parsing the X-Amz-Credential parameter; {why}"))
        }
    };
    Err(err.with("Region", state.region.clone()))
}

/// With `--auth strict`, verifies the request's signature; answers the chunk signatures
/// its body must then carry.
fn authenticate(state: &S3State, parts: &http::request::Parts) -> Result<Option<ChunkSigning>> {
    // A CORS preflight carries no credentials, on AWS too.
    let Some(keys) = state.auth_keys.as_ref().filter(|_| parts.method != Method::OPTIONS) else { return Ok(None) };
    let vhost_bucket = router::virtual_host_bucket(parts, &state.domains);
    Ok(crate::auth::verify_s3(keys, parts, vhost_bucket.as_deref(), chrono::Utc::now())?.chunks)
}

/// The parameters of a SigV4 presigned URL that are its signature, not request headers.
const PRESIGN_PARAMETERS: [&str; 7] = [
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
];

/// A presigned URL may carry `x-amz-*` headers as query parameters, which its signature
/// covers (AWS allows this for headers such as `x-amz-acl` and `x-amz-meta-*`, and boto3
/// puts them there when it presigns with SigV2): they act as the headers, unless a header
/// of that name was sent (and then it was signed, or the request was refused).
fn lift_presigned_headers(parts: &mut http::request::Parts) {
    let query = router::Query::parse(parts.uri.query());
    let v4 = query.has("X-Amz-Signature") && query.has("X-Amz-Credential");
    let v2 = query.has("AWSAccessKeyId") && query.has("Signature");
    if !(v4 || v2) {
        return;
    }
    for (name, value) in query.pairs() {
        let lower = name.to_ascii_lowercase();
        if !lower.starts_with("x-amz-") || PRESIGN_PARAMETERS.contains(&lower.as_str()) || parts.headers.contains_key(lower.as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(lower.as_bytes()), http::HeaderValue::from_str(value)) {
            parts.headers.insert(name, value);
        }
    }
}

async fn dispatch(state: &Arc<S3State>, ctx: &RequestCtx, endpoint: Endpoint, req: &Req, mut body: Incoming) -> Result<Response<Body>> {
    use Endpoint::*;
    if let Some(bucket) = endpoint.bucket()
        && !matches!(endpoint, CreateBucket { .. })
        && !crate::store::valid_bucket_name(bucket)
    {
        // No bucket with an invalid name can exist.
        return Err(S3Error::no_such_bucket(bucket));
    }
    if !endpoint.reads_body() {
        crate::s3::body::check_unused_body(req, &mut body).await?;
    }
    match endpoint {
        ListBuckets => bucket::list_buckets(state, ctx, req).await,
        CreateBucket { bucket } => bucket::create_bucket(state, ctx, req, body, &bucket).await,
        DeleteBucket { bucket } => bucket::delete_bucket(state, &bucket).await,
        HeadBucket { bucket } => bucket::head_bucket(state, ctx, &bucket).await,
        GetBucketLocation { bucket } => bucket::get_bucket_location(state, &bucket).await,
        GetBucketVersioning { bucket } => versioning::get_bucket_versioning(state, &bucket).await,
        PutBucketVersioning { bucket } => versioning::put_bucket_versioning(state, req, body, &bucket).await,
        GetBucketLifecycleConfiguration { bucket } => lifecycle::get_bucket_lifecycle(state, &bucket).await,
        PutBucketLifecycleConfiguration { bucket } => lifecycle::put_bucket_lifecycle(state, req, body, &bucket).await,
        DeleteBucketLifecycle { bucket } => lifecycle::delete_bucket_lifecycle(state, &bucket).await,
        GetBucketEncryption { bucket } => encryption::get_bucket_encryption(state, &bucket).await,
        PutBucketEncryption { bucket } => encryption::put_bucket_encryption(state, req, body, &bucket).await,
        DeleteBucketEncryption { bucket } => encryption::delete_bucket_encryption(state, &bucket).await,
        GetUnconfigured { bucket, what } => bucket::get_unconfigured(state, &bucket, what).await,
        BucketAccess { bucket, op } => access(state, ctx, req, body, &bucket, op).await,
        GetObjectAcl { bucket, key } => acl::get_object_acl(state, ctx, req, &bucket, &key).await,
        PutObjectAcl { bucket, key } => acl::put_object_acl(state, ctx, req, body, &bucket, &key).await,
        GetBucketTagging { bucket } => bucket::get_bucket_tagging(state, &bucket).await,
        PutBucketTagging { bucket } => bucket::put_bucket_tagging(state, req, body, &bucket).await,
        DeleteBucketTagging { bucket } => bucket::delete_bucket_tagging(state, &bucket).await,
        GetBucketCors { bucket } => cors::get_bucket_cors(state, &bucket).await,
        PutBucketCors { bucket } => cors::put_bucket_cors(state, req, body, &bucket).await,
        DeleteBucketCors { bucket } => cors::delete_bucket_cors(state, &bucket).await,
        Preflight { bucket } => cors::preflight(state, req, &bucket).await,
        ListObjects { bucket } => list::list_objects(state, ctx, req, &bucket, list::Version::V1).await,
        ListObjectsV2 { bucket } => list::list_objects(state, ctx, req, &bucket, list::Version::V2).await,
        ListObjectVersions { bucket } => list::list_object_versions(state, ctx, req, &bucket).await,
        DeleteObjects { bucket } => delete::delete_objects(state, req, body, &bucket).await,
        PutObject { bucket, key } => put::put_object(state, ctx, req, body, &bucket, &key).await,
        CopyObject { bucket, key } => copy::copy_object(state, ctx, req, &bucket, &key).await,
        GetObject { bucket, key } => get::get_object(state, req, &bucket, &key, false).await,
        HeadObject { bucket, key } => get::get_object(state, req, &bucket, &key, true).await,
        DeleteObject { bucket, key } => delete::delete_object(state, req, &bucket, &key).await,
        GetObjectAttributes { bucket, key } => attributes::get_object_attributes(state, req, &bucket, &key).await,
        GetObjectTagging { bucket, key } => tagging::get_object_tagging(state, req, &bucket, &key).await,
        PutObjectTagging { bucket, key } => tagging::put_object_tagging(state, req, body, &bucket, &key).await,
        DeleteObjectTagging { bucket, key } => tagging::delete_object_tagging(state, req, &bucket, &key).await,
        CreateMultipartUpload { bucket, key } => multipart::create(state, ctx, req, &bucket, &key).await,
        UploadPart { bucket, key, upload_id, part_number } => {
            multipart::upload_part(state, req, body, &bucket, &key, &upload_id, &part_number).await
        }
        UploadPartCopy { bucket, key, upload_id, part_number } => {
            multipart::upload_part_copy(state, req, &bucket, &key, &upload_id, &part_number).await
        }
        CompleteMultipartUpload { bucket, key, upload_id } => multipart::complete(state, req, body, &bucket, &key, &upload_id).await,
        AbortMultipartUpload { bucket, key, upload_id } => multipart::abort(state, &bucket, &key, &upload_id).await,
        ListParts { bucket, key, upload_id } => multipart::list_parts(state, ctx, req, &bucket, &key, &upload_id).await,
        ListMultipartUploads { bucket } => multipart::list_uploads(state, ctx, req, &bucket).await,
        NotImplemented { operation } => Err(S3Error::not_implemented(&operation)),
    }
}

async fn access(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req, body: Incoming, bucket: &str, op: AccessOp) -> Result<Response<Body>> {
    use AccessOp::*;
    match op {
        GetBucketAcl => acl::get_bucket_acl(state, ctx, bucket).await,
        PutBucketAcl => acl::put_bucket_acl(state, ctx, req, body, bucket).await,
        GetBucketOwnershipControls => acl::get_ownership_controls(state, bucket).await,
        PutBucketOwnershipControls => acl::put_ownership_controls(state, req, body, bucket).await,
        DeleteBucketOwnershipControls => acl::delete_ownership_controls(state, bucket).await,
        GetBucketPolicy => policy::get_bucket_policy(state, bucket).await,
        PutBucketPolicy => policy::put_bucket_policy(state, req, body, bucket).await,
        DeleteBucketPolicy => policy::delete_bucket_policy(state, bucket).await,
        GetBucketPolicyStatus => policy::get_bucket_policy_status(state, bucket).await,
        GetPublicAccessBlock => policy::get_public_access_block(state, bucket).await,
        PutPublicAccessBlock => policy::put_public_access_block(state, req, body, bucket).await,
        DeletePublicAccessBlock => policy::delete_public_access_block(state, bucket).await,
    }
}
