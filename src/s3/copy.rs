//! CopyObject, and the copy-source parsing and byte copy UploadPartCopy shares.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use hyper::Response;
use md5::{Digest, Md5};

use crate::config::OBJECT_BYTES_MAX;
use crate::http::{Body, RequestCtx};
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::checksum::{self, Algorithm};
use crate::s3::common::{blocking, meta_from_headers, quoted, require_bucket, store_error, xml_response};
use crate::s3::error::{Result, S3Error};
use crate::s3::preconditions::{WriteConditions, check_copy_source, check_early};
use crate::s3::router::check_key;
use crate::s3::tagging::parse_tagging_header;
use crate::s3::xml::{Xml, timestamp};
use crate::store::{Found, ObjectMeta, now_ms};

/// What `x-amz-copy-source` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    pub bucket: String,
    pub key: String,
    /// `None`: the current version; `Some(None)`: the null version.
    pub version: Option<Option<String>>,
}

/// `bucket/key` of `x-amz-copy-source` (URL-encoded, optional leading `/`, optional `?versionId=`).
pub fn parse_copy_source(value: &str) -> Result<CopySource> {
    let (path, version) = match value.split_once('?') {
        Some((path, query)) => (path, query.strip_prefix("versionId=")),
        None => (value, None),
    };
    let version = version.map(|id| crate::s3::versioning::parse_id(id, "x-amz-copy-source")).transpose()?;
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8().map_err(|_| bad_copy_source(value))?;
    let decoded = decoded.strip_prefix('/').unwrap_or(&decoded);
    match decoded.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
            Ok(CopySource { bucket: bucket.to_owned(), key: key.to_owned(), version })
        }
        _ => Err(bad_copy_source(value)),
    }
}

/// Opens the version a copy source names, with the `x-amz-copy-source-version-id` to
/// answer (none from a bucket never versioned, unless a version was named).
pub async fn open_copy_source(state: &Arc<S3State>, source: &CopySource) -> Result<(File, ObjectMeta, Option<String>)> {
    let looked_up = crate::s3::versioning::lookup(state, &source.bucket, &source.key, source.version.clone()).await?;
    let versioning = looked_up.versioning;
    match (looked_up.found, &source.version) {
        (Some(Found::Object(file, meta)), wanted) => {
            let header = match wanted {
                Some(id) => Some(id.as_deref().unwrap_or("null").to_owned()),
                None => crate::s3::versioning::header(versioning, meta.version_id.as_deref()),
            };
            Ok((file, *meta, header))
        }
        (Some(Found::Marker { .. }), _) => {
            Err(S3Error::invalid_request("The source of a copy request may not specifically refer to a delete marker by version id."))
        }
        (None, None) => Err(S3Error::no_such_key(&source.key)),
        (None, Some(id)) => Err(crate::s3::versioning::no_such_version(&source.key, id.as_deref())),
    }
}

fn bad_copy_source(value: &str) -> S3Error {
    S3Error::invalid_argument("Invalid copy source object key", "x-amz-copy-source", value)
}

/// Copies `len` bytes from `start` of `source` into a staged file, hashing as it goes.
pub fn copy_range(
    store: &crate::store::Store,
    mut source: File,
    start: u64,
    len: u64,
    algorithm: Option<Algorithm>,
) -> std::io::Result<(crate::store::Staged, String, Option<String>)> {
    let mut staged = store.stage()?;
    source.seek(SeekFrom::Start(start))?;
    let mut md5 = Md5::new();
    let mut hasher = algorithm.map(Algorithm::hasher);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = (buf.len() as u64).min(left) as usize;
        let n = source.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "source shrank while being copied"));
        }
        staged.file().write_all(&buf[..n])?;
        md5.update(&buf[..n]);
        if let Some(h) = hasher.as_mut() {
            h.update(&buf[..n]);
        }
        left -= n as u64;
    }
    Ok((staged, hex::encode(md5.finalize()), hasher.map(|h| checksum::to_base64(&h.finish()))))
}

pub async fn copy_object(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let source = parse_copy_source(req.header("x-amz-copy-source").unwrap_or_default())?;
    let replace = match req.header("x-amz-metadata-directive") {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => return Err(S3Error::invalid_argument("Unknown metadata directive.", "x-amz-metadata-directive", other)),
    };
    let replace_tags = match req.header("x-amz-tagging-directive") {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => return Err(S3Error::invalid_argument("Unknown tagging directive.", "x-amz-tagging-directive", other)),
    };
    let algorithm = match req.header("x-amz-checksum-algorithm") {
        None => None,
        Some(name) => Some(Algorithm::parse(name).ok_or_else(|| S3Error::invalid_request("Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"))?),
    };
    if source.bucket == bucket
        && source.key == key
        && source.version.is_none()
        && !replace
        && algorithm.is_none()
        && req.header("x-amz-storage-class").is_none()
        && req.header(crate::s3::encryption::SSE_HEADER).is_none()
    {
        return Err(S3Error::invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let mut conditions = WriteConditions::of_write(req, key)?;
    require_bucket(state, bucket).await?;
    // The copy never takes the source's ACL: the destination's is what this request asks.
    let acl = crate::s3::acl::for_object_write(state, req, bucket, &ctx.account).await?;
    let new_meta = if replace { Some(meta_from_headers(req)?) } else { None };
    // The copy is encrypted as this request or the destination bucket says, never as the source was.
    let sse = crate::s3::encryption::for_object_write(state, req, bucket).await?;
    let new_tags =
        if replace_tags { Some(req.header("x-amz-tagging").map(parse_tagging_header).transpose()?.unwrap_or_default()) } else { None };
    let (file, source_meta, source_version) = open_copy_source(state, &source).await?;
    check_copy_source(req, &source_meta)?;
    if source_meta.size > OBJECT_BYTES_MAX {
        return Err(S3Error::invalid_request(
            "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120",
        ));
    }
    // Keep a whole-object checksum the source had, unless a new algorithm was asked for.
    let kept_checksum = source_meta.checksums.iter().find(|(_, v)| !v.contains('-')).map(|(k, _)| k.clone());
    let algorithm = algorithm.or_else(|| kept_checksum.as_deref().and_then(Algorithm::parse));
    let size = source_meta.size;
    check_early(state, bucket, key, &mut conditions).await?;
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let meta = blocking(state, move |store| -> crate::store::Result<Result<ObjectMeta>> {
        let (staged, md5, checksum) = copy_range(store, file, 0, size, algorithm)?;
        let mut meta = match new_meta {
            Some(mut meta) => {
                meta.tags = source_meta.tags.clone();
                meta
            }
            None => ObjectMeta {
                headers: source_meta.headers.clone(),
                user: source_meta.user.clone(),
                tags: source_meta.tags.clone(),
                ..ObjectMeta::default()
            },
        };
        if let Some(tags) = new_tags {
            meta.tags = tags;
        }
        meta.acl = acl;
        crate::s3::encryption::set_object_encryption(&mut meta.headers, sse);
        meta.etag = md5;
        meta.last_modified_ms = now_ms();
        if let (Some(algorithm), Some(value)) = (algorithm, checksum) {
            meta.checksums.insert(algorithm.name().to_owned(), value);
            meta.checksum_type = Some("FULL_OBJECT".to_owned());
        }
        store.commit_object_if(&b, &k, staged, meta, conditions.as_ref())
    })
    .await?
    .map_err(|e| store_error(e, bucket))??;
    let mut x = Xml::document();
    x.root("CopyObjectResult");
    x.leaf("LastModified", &timestamp(meta.last_modified_ms));
    x.leaf("ETag", &quoted(&meta.etag));
    checksum::write_elements(&mut x, &meta.checksums);
    x.leaf_opt("ChecksumType", meta.checksum_type.as_deref());
    x.close("CopyObjectResult");
    let mut response = xml_response(x.finish());
    crate::s3::lifecycle::add_expiration(state, bucket, &meta, response.headers_mut()).await;
    let headers = response.headers_mut();
    crate::s3::encryption::insert_object_headers(headers, &meta.headers);
    for (name, value) in [("x-amz-copy-source-version-id", source_version), ("x-amz-version-id", meta.version_id)] {
        if let Some(value) = value.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources() {
        let named = |b: &str, k: &str, version: Option<Option<String>>| CopySource { bucket: b.to_owned(), key: k.to_owned(), version };
        assert_eq!(parse_copy_source("/b/k%20x").unwrap(), named("b", "k x", None));
        assert_eq!(parse_copy_source("b/a/b?versionId=null").unwrap(), named("b", "a/b", Some(None)));
        let id = crate::store::new_version_id();
        assert_eq!(parse_copy_source(&format!("b/k?versionId={id}")).unwrap(), named("b", "k", Some(Some(id))));
        assert!(parse_copy_source("b").is_err());
        assert!(parse_copy_source("b/k?versionId=3").is_err());
    }
}
