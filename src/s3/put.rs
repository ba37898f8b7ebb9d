//! PutObject.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};

use crate::config::OBJECT_BYTES_MAX;
use crate::http::{Body, RequestCtx, empty};
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::body::{Expectations, receive_then};
use crate::s3::checksum;
use crate::s3::common::{meta_from_headers, quoted, require_bucket, store_error};
use crate::s3::error::{Result, S3Error};
use crate::s3::preconditions::{WriteConditions, check_early};
use crate::s3::router::check_key;
use crate::store::now_ms;

pub async fn put_object(
    state: &Arc<S3State>,
    ctx: &RequestCtx,
    req: &Req,
    body: Incoming,
    bucket: &str,
    key: &str,
) -> Result<Response<Body>> {
    check_key(key)?;
    let expect = Expectations::from_request(req, OBJECT_BYTES_MAX)?;
    let mut meta = meta_from_headers(req)?;
    let sse = crate::s3::encryption::for_object_write(state, req, bucket).await?;
    crate::s3::encryption::set_object_encryption(&mut meta.headers, sse);
    let mut conditions = WriteConditions::of_write(req, key)?;
    meta.acl = crate::s3::acl::for_object_write(state, req, bucket, &ctx.account).await?;
    // Refuse before reading the body, so `Expect: 100-continue` clients send nothing;
    // without it the commit finds a missing bucket (or a failed condition) just the same,
    // one step later.
    if req.header("expect").is_some() {
        require_bucket(state, bucket).await?;
        check_early(state, bucket, key, &mut conditions).await?;
    }
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let meta = receive_then(state, &expect, body, OBJECT_BYTES_MAX, move |store, received| {
        meta.etag = received.md5_hex.clone();
        meta.last_modified_ms = now_ms();
        if let Some((algorithm, value)) = &received.checksum {
            meta.checksums.insert(algorithm.name().to_owned(), value.clone());
            meta.checksum_type = Some("FULL_OBJECT".to_owned());
        }
        store.commit_object_if(&b, &k, received.staged, meta, conditions.as_ref()).map_err(|e| store_error(e, &b))?
    })
    .await?;
    let mut response = Response::builder().status(StatusCode::OK).header("etag", quoted(&meta.etag));
    response = crate::s3::encryption::with_object_headers(response, &meta.headers);
    response = checksum::add_headers(response, &meta.checksums);
    if let Some(kind) = &meta.checksum_type {
        response = response.header("x-amz-checksum-type", kind);
    }
    // Only a bucket with versioning enabled gives new objects an id (suspended: null, unsaid).
    if let Some(id) = &meta.version_id {
        response = response.header("x-amz-version-id", id);
    }
    let mut response = response.body(empty()).map_err(S3Error::internal)?;
    crate::s3::lifecycle::add_expiration(state, bucket, &meta, response.headers_mut()).await;
    Ok(response)
}
