//! Request and response helpers every family of S3 operations uses: blocking store
//! work, small XML bodies and their digests, the metadata a write sets from its
//! headers, owners, ETags, and the mapping of store errors.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use md5::{Digest, Md5};

use crate::http::{Body, full};
use crate::s3::S3State;
use crate::s3::checksum::{self, Algorithm};
use crate::s3::error::{self, Code, Result, S3Error};
use crate::s3::tagging::parse_tagging_header;
use crate::s3::{Req, body, xml};
use crate::store::{BucketInfo, ObjectMeta, Store, StoreError};

/// Headers stored with an object and returned on GET/HEAD.
const STORED_HEADERS: [&str; 6] =
    ["content-type", "content-encoding", "content-disposition", "content-language", "cache-control", "expires"];
/// S3's default Content-Type for objects stored without one.
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// Runs blocking store work off the async threads.
pub async fn blocking<T: Send + 'static>(state: &Arc<S3State>, work: impl FnOnce(&Store) -> T + Send + 'static) -> Result<T> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || work(&state.store)).await.map_err(S3Error::internal)
}

/// A 200 with an XML body.
pub fn xml_response(xml: String) -> Response<Body> {
    crate::http::response(StatusCode::OK, &[("content-type", "application/xml")], full(xml))
}

/// The opaque continuation token of a listing page that ended at `last`.
pub fn continuation_token(last: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

/// Where the page a `continuation-token` asks for starts after.
pub fn continuation_after(token: &str) -> Result<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or_else(|| S3Error::invalid_argument("The continuation token provided is incorrect", "continuation-token", token))
}

/// The canonical user id S3 shows for an account.
pub fn owner_id(account: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("firelake-owner:{account}")))
}

/// `<Owner><ID/><DisplayName/></Owner>` (or another element name).
pub fn write_owner(x: &mut xml::Xml, element: &str, account: &str) {
    x.node(element, |x| {
        x.leaf("ID", &owner_id(account));
        x.leaf("DisplayName", account);
    });
}

/// Reads a small XML request body, with S3's errors for bad ones; aws-chunked framing,
/// chunk signatures and a signed payload hash are checked ([`body::receive_small`]).
pub async fn read_small_body(req: &Req, body: Incoming) -> Result<bytes::Bytes> {
    match body::receive_small(req, body, crate::config::SMALL_BODY_BYTES_MAX).await? {
        Some(bytes) => Ok(bytes),
        None => Err(S3Error::new(error::Code::MalformedXML, "The XML you provided was larger than firelake accepts (2 MiB)")),
    }
}

/// Parses an XML request body into `T`, answering MalformedXML when it does not fit.
pub fn parse_xml<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let text = std::str::from_utf8(bytes).map_err(|_| S3Error::malformed_xml())?;
    quick_xml::de::from_str(text).map_err(|err| {
        tracing::debug!(%err, "malformed xml");
        S3Error::malformed_xml()
    })
}

/// The metadata a PutObject, CreateMultipartUpload or replacing CopyObject sets.
pub fn meta_from_headers(req: &Req) -> Result<ObjectMeta> {
    let mut meta = ObjectMeta::default();
    for name in STORED_HEADERS {
        if let Some(value) = req.header(name) {
            let value = if name == "content-encoding" { strip_aws_chunked(value) } else { value.to_owned() };
            if !value.is_empty() {
                meta.headers.insert(name.to_owned(), value);
            }
        }
    }
    if let Some(class) = req.header("x-amz-storage-class") {
        meta.headers.insert("x-amz-storage-class".to_owned(), class.to_owned());
    }
    for (name, value) in &req.parts.headers {
        if let Some(user) = name.as_str().strip_prefix("x-amz-meta-") {
            // Kept as received: raw UTF-8 (as s3-tests sends) and RFC 2047 encoded words
            // (as S3 itself answers non-ASCII) both come back byte for byte.
            let value = std::str::from_utf8(value.as_bytes())
                .map_err(|_| S3Error::invalid_argument("metadata values must be UTF-8", name.as_str(), ""))?;
            meta.user.insert(user.to_owned(), value.to_owned());
        }
    }
    if let Some(tagging) = req.header("x-amz-tagging") {
        meta.tags = parse_tagging_header(tagging)?;
    }
    Ok(meta)
}

/// The Content-Encoding an object keeps: as sent, byte for byte, less the `aws-chunked`
/// that only described the request's framing (S3 never stores it).
fn strip_aws_chunked(value: &str) -> String {
    if !value.split(',').any(|t| t.trim().eq_ignore_ascii_case("aws-chunked")) {
        return value.to_owned();
    }
    value.split(',').map(str::trim).filter(|t| !t.eq_ignore_ascii_case("aws-chunked") && !t.is_empty()).collect::<Vec<_>>().join(",")
}

/// The bucket's settings, from what the store remembers (read off the async threads when
/// it has forgotten them); `None` when there is no such bucket. For the settings every
/// object request consults (default encryption, lifecycle rules).
pub async fn remembered_settings(state: &Arc<S3State>, bucket: &str) -> Result<Option<Arc<BucketInfo>>> {
    if let Some(info) = state.store.remembered_settings(bucket) {
        return Ok(Some(info));
    }
    let b = bucket.to_owned();
    match blocking(state, move |store| store.bucket_settings(&b)).await? {
        Ok(info) => Ok(Some(info)),
        Err(StoreError::NoSuchBucket) => Ok(None),
        Err(err) => Err(store_error(err, bucket)),
    }
}

pub async fn require_bucket(state: &Arc<S3State>, bucket: &str) -> Result<()> {
    let name = bucket.to_owned();
    match blocking(state, move |store| store.bucket_exists(&name)).await?? {
        true => Ok(()),
        false => Err(S3Error::no_such_bucket(bucket)),
    }
}

/// Maps a store error to S3's, naming the bucket.
pub fn store_error(err: StoreError, bucket: &str) -> S3Error {
    match err {
        StoreError::NoSuchBucket => S3Error::no_such_bucket(bucket),
        other => S3Error::from(other),
    }
}

pub fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// Checks a small body against its Content-MD5 or flexible checksum header, one of which
/// DeleteObjects (and the other `httpChecksumRequired` operations) must carry.
pub fn check_small_body_digest(req: &Req, bytes: &[u8], required: bool) -> Result<()> {
    if let Some(md5) = req.header("content-md5") {
        let expected = md5.trim();
        let actual = checksum::to_base64(&Md5::digest(bytes));
        if expected != actual {
            return Err(S3Error::new(Code::BadDigest, "The Content-MD5 you specified did not match what we received."));
        }
        return Ok(());
    }
    for algorithm in Algorithm::ALL {
        if let Some(value) = req.header(&algorithm.header()) {
            if checksum::of(algorithm, bytes) != value.trim() {
                return Err(S3Error::new(
                    Code::BadDigest,
                    format!("The {} you specified did not match the calculated checksum.", algorithm.name()),
                ));
            }
            return Ok(());
        }
    }
    if required {
        return Err(S3Error::invalid_request("Missing required header for this request: Content-MD5"));
    }
    Ok(())
}

/// An answer with a status and nothing else: the 200 or 204 of a write with nothing to say.
pub fn no_body(status: hyper::StatusCode) -> hyper::Response<Body> {
    crate::http::response(status, &[], crate::http::empty())
}

/// Changes one of a bucket's settings through the store's serialised read-modify-write
/// and answers `status` with no body, as each Put and Delete of a bucket setting does.
pub async fn change_bucket(
    state: &Arc<S3State>,
    bucket: &str,
    status: hyper::StatusCode,
    change: impl FnOnce(&mut BucketInfo) + Send + 'static,
) -> Result<hyper::Response<Body>> {
    let name = bucket.to_owned();
    blocking(state, move |store| store.update_bucket(&name, change)).await?.map_err(|e| store_error(e, bucket))?;
    Ok(no_body(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_is_not_stored() {
        assert_eq!(strip_aws_chunked("aws-chunked"), "");
        assert_eq!(strip_aws_chunked("gzip,aws-chunked"), "gzip");
        assert_eq!(strip_aws_chunked("aws-chunked, gzip"), "gzip");
    }
}
