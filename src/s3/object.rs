//! Object operations: Put, Copy, Get/Head, Delete, DeleteObjects, attributes, tagging.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use bytes::BytesMut;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use md5::{Digest, Md5};
use serde::Deserialize;

use crate::config::OBJECT_BYTES_MAX;
use crate::http::{Body, empty};
use crate::s3::body::{Expectations, receive_then};
use crate::s3::checksum::{self, Algorithm};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::router::check_key;
use crate::s3::xml::{Xml, timestamp};
use crate::s3::{Req, blocking, parse_xml, read_small_body, xml_response};
use crate::server::State;
use crate::store::{ObjectMeta, StoreError, now_ms};

/// Headers stored with an object and returned on GET/HEAD.
const STORED_HEADERS: [&str; 6] =
    ["content-type", "content-encoding", "content-disposition", "content-language", "cache-control", "expires"];
/// S3's default Content-Type for objects stored without one.
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";
/// Most tags on one object.
const OBJECT_TAGS_MAX: usize = 10;
/// Bytes per read when streaming an object out: what a download that stalls holds.
const READ_CHUNK_BYTES: usize = 256 * 1024;

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
            let value = value.to_str().map_err(|_| S3Error::invalid_argument("metadata values must be ASCII", name.as_str(), ""))?;
            meta.user.insert(user.to_owned(), value.to_owned());
        }
    }
    if let Some(tagging) = req.header("x-amz-tagging") {
        meta.tags = parse_tagging_header(tagging)?;
    }
    Ok(meta)
}

/// `aws-chunked` describes the transfer, not the object: S3 never stores it.
fn strip_aws_chunked(value: &str) -> String {
    value.split(',').map(str::trim).filter(|t| !t.eq_ignore_ascii_case("aws-chunked") && !t.is_empty()).collect::<Vec<_>>().join(",")
}

pub(crate) fn parse_tagging_header(value: &str) -> Result<Vec<(String, String)>> {
    let query = crate::s3::router::Query::parse(Some(value));
    let mut tags = Vec::new();
    for pair in value.split('&').filter(|p| !p.is_empty()) {
        let (k, _) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_encoding::percent_decode_str(k).decode_utf8_lossy().into_owned();
        let v = query.get(&k).unwrap_or_default().to_owned();
        tags.push((k, v));
    }
    validate_tags(&tags, OBJECT_TAGS_MAX)?;
    Ok(tags)
}

pub fn validate_tags(tags: &[(String, String)], max: usize) -> Result<()> {
    if tags.len() > max {
        let what =
            if max == OBJECT_TAGS_MAX { "Object tags cannot be greater than 10" } else { "Bucket tag count cannot be greater than 50" };
        return Err(S3Error::new(Code::InvalidTag, what));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(S3Error::new(Code::InvalidTag, "The TagKey you have provided is invalid"));
        }
        if v.chars().count() > 256 {
            return Err(S3Error::new(Code::InvalidTag, "The TagValue you have provided is invalid"));
        }
        if tags[..i].iter().any(|(other, _)| other == k) {
            return Err(S3Error::new(Code::InvalidTag, "Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(())
}

pub async fn require_bucket(state: &Arc<State>, bucket: &str) -> Result<()> {
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

pub async fn put_object(state: &Arc<State>, req: &Req, body: Incoming, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let expect = Expectations::from_request(req, OBJECT_BYTES_MAX)?;
    let mut meta = meta_from_headers(req)?;
    // Refuse before reading the body, so `Expect: 100-continue` clients send nothing;
    // without it the commit finds a missing bucket just the same, one step later.
    if req.header("expect").is_some() {
        require_bucket(state, bucket).await?;
    }
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let meta = receive_then(state, &expect, body, OBJECT_BYTES_MAX, move |store, received| {
        meta.etag = received.md5_hex.clone();
        meta.last_modified_ms = now_ms();
        if let Some((algorithm, value)) = &received.checksum {
            meta.checksums.insert(algorithm.name().to_owned(), value.clone());
            meta.checksum_type = Some("FULL_OBJECT".to_owned());
        }
        store.commit_object(&b, &k, received.staged, meta).map_err(|e| store_error(e, &b))
    })
    .await?;
    let mut response =
        Response::builder().status(StatusCode::OK).header("etag", quoted(&meta.etag)).header("x-amz-server-side-encryption", "AES256");
    response = checksum::add_headers(response, &meta.checksums);
    if let Some(kind) = &meta.checksum_type {
        response = response.header("x-amz-checksum-type", kind);
    }
    Ok(response.body(empty()).expect("valid response"))
}

pub fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(|t| t.trim().trim_start_matches("W/").trim_matches('"')).any(|t| t == "*" || t == etag)
}

fn http_date(value: &str) -> Option<i64> {
    httpdate::parse_http_date(value.trim()).ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs() as i64)
}

/// GET/HEAD conditions (`If-*`): 412 or 304 as RFC 7232 and S3 order them.
pub(crate) fn check_conditions(req: &Req, meta: &ObjectMeta) -> Result<()> {
    let modified_s = meta.last_modified_ms.div_euclid(1000);
    let if_match = req.header("if-match");
    let if_none_match = req.header("if-none-match");
    if let Some(list) = if_match
        && !etag_matches(list, &meta.etag)
    {
        return Err(S3Error::precondition_failed("If-Match"));
    }
    if if_match.is_none()
        && let Some(since) = req.header("if-unmodified-since").and_then(http_date)
        && modified_s > since
    {
        return Err(S3Error::precondition_failed("If-Unmodified-Since"));
    }
    if let Some(list) = if_none_match
        && etag_matches(list, &meta.etag)
    {
        return Err(S3Error::new(Code::NotModified, "Not Modified"));
    }
    if if_none_match.is_none()
        && let Some(since) = req.header("if-modified-since").and_then(http_date)
        && modified_s <= since
    {
        return Err(S3Error::new(Code::NotModified, "Not Modified"));
    }
    Ok(())
}

/// CopyObject / UploadPartCopy source conditions: every failure is a 412.
pub fn check_copy_conditions(req: &Req, meta: &ObjectMeta) -> Result<()> {
    let modified_s = meta.last_modified_ms.div_euclid(1000);
    if let Some(list) = req.header("x-amz-copy-source-if-match")
        && !etag_matches(list, &meta.etag)
    {
        return Err(S3Error::precondition_failed("x-amz-copy-source-If-Match"));
    }
    if let Some(list) = req.header("x-amz-copy-source-if-none-match")
        && etag_matches(list, &meta.etag)
    {
        return Err(S3Error::precondition_failed("x-amz-copy-source-If-None-Match"));
    }
    if let Some(since) = req.header("x-amz-copy-source-if-unmodified-since").and_then(http_date)
        && modified_s > since
    {
        return Err(S3Error::precondition_failed("x-amz-copy-source-If-Unmodified-Since"));
    }
    if let Some(since) = req.header("x-amz-copy-source-if-modified-since").and_then(http_date)
        && modified_s <= since
    {
        return Err(S3Error::precondition_failed("x-amz-copy-source-If-Modified-Since"));
    }
    Ok(())
}

/// Resolves `bytes=a-b`, `bytes=a-`, `bytes=-n` against `size`: `None` serves the whole
/// object (no header, or one S3 ignores), an error is a 416.
pub fn resolve_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(header) = header else { return Ok(None) };
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else { return Ok(None) };
    let (first, last) = (first.trim(), last.trim());
    let unsatisfiable = || {
        S3Error::new(Code::InvalidRange, "The requested range is not satisfiable")
            .with("RangeRequested", header.to_owned())
            .with("ActualObjectSize", size.to_string())
    };
    let range = if first.is_empty() {
        let Ok(n) = last.parse::<u64>() else { return Ok(None) };
        if n == 0 || size == 0 {
            return Err(unsatisfiable());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let Ok(start) = first.parse::<u64>() else { return Ok(None) };
        let end = if last.is_empty() {
            u64::MAX
        } else {
            match last.parse::<u64>() {
                Ok(end) if end >= start => end,
                _ => return Ok(None),
            }
        };
        if start >= size {
            return Err(unsatisfiable());
        }
        (start, end.min(size - 1))
    };
    Ok(Some(range))
}

pub async fn get_object(state: &Arc<State>, req: &Req, bucket: &str, key: &str, head: bool) -> Result<Response<Body>> {
    check_key(key)?;
    if let Some(version) = req.query.get("versionId")
        && version != "null"
    {
        return Err(S3Error::invalid_argument("Invalid version id specified", "versionId", version));
    }
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let opened = blocking(state, move |store| store.open_object(&b, &k)).await?.map_err(|e| store_error(e, bucket))?;
    let Some((file, meta)) = opened else { return Err(S3Error::no_such_key(key)) };
    check_conditions(req, &meta)?;
    let mut range = resolve_range(req.header("range"), meta.size)?;
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    if let Some(part) = req.query.get("partNumber") {
        let number: usize = part.parse().ok().filter(|n| (1..=10000).contains(n)).ok_or_else(|| {
            S3Error::invalid_argument("Part number must be an integer between 1 and 10000, inclusive", "partNumber", part)
        })?;
        let sizes = if meta.part_sizes.is_empty() { vec![meta.size] } else { meta.part_sizes.clone() };
        if number > sizes.len() {
            return Err(S3Error::new(Code::InvalidRange, "The requested partnumber is not satisfiable")
                .with("ActualPartCount", sizes.len().to_string()));
        }
        let start: u64 = sizes[..number - 1].iter().sum();
        let size = sizes[number - 1];
        range = (size > 0).then(|| (start, start + size - 1));
        builder = builder.header("x-amz-mp-parts-count", sizes.len().to_string());
    }
    let (start, len) = match range {
        Some((first, last)) => {
            status = StatusCode::PARTIAL_CONTENT;
            builder = builder.header("content-range", format!("bytes {first}-{last}/{}", meta.size));
            (first, last - first + 1)
        }
        None => (0, meta.size),
    };
    builder = object_headers(builder.status(status), &meta).header("content-length", len.to_string());
    let checksum_mode = req.header("x-amz-checksum-mode").is_some_and(|m| m.eq_ignore_ascii_case("enabled"));
    // A checksum describes the whole object, so a ranged read gets none.
    if checksum_mode && status == StatusCode::OK {
        builder = checksum::add_headers(builder, &meta.checksums);
        if let Some(kind) = &meta.checksum_type {
            builder = builder.header("x-amz-checksum-type", kind);
        }
    }
    for (param, header) in [
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ] {
        if let Some(value) = req.query.get(param)
            && let Some(headers) = builder.headers_mut()
        {
            headers.insert(header, value.parse().map_err(|_| S3Error::invalid_argument("invalid response header override", param, value))?);
        }
    }
    let body = if head { empty() } else { file_body(file, start, len) };
    Ok(builder.body(body).expect("valid response"))
}

/// An object's `Last-Modified` as an HTTP date.
fn last_modified(meta: &ObjectMeta) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(meta.last_modified_ms.max(0) as u64))
}

/// The headers every GET and HEAD of an object carries.
pub fn object_headers(mut builder: http::response::Builder, meta: &ObjectMeta) -> http::response::Builder {
    builder = builder
        .header("etag", quoted(&meta.etag))
        .header("last-modified", last_modified(meta))
        .header("accept-ranges", "bytes")
        .header("x-amz-server-side-encryption", "AES256");
    if !meta.headers.contains_key("content-type") {
        builder = builder.header("content-type", DEFAULT_CONTENT_TYPE);
    }
    for (name, value) in &meta.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    for (name, value) in &meta.user {
        builder = builder.header(format!("x-amz-meta-{name}"), value.as_str());
    }
    if !meta.tags.is_empty() {
        builder = builder.header("x-amz-tagging-count", meta.tags.len().to_string());
    }
    builder
}

/// Streams `len` bytes of `file` from `start`. Each piece is read on a blocking thread
/// only when the connection asks for it: a client that stops reading holds no thread and
/// at most one piece (plus hyper's write buffer), never the object.
pub fn file_body(file: File, start: u64, len: u64) -> Body {
    struct Reading {
        file: File,
        /// Where the next read starts.
        at: u64,
        left: u64,
    }
    let state = Some(Reading { file, at: start, left: len });
    let stream = futures_util::stream::unfold(state, |state| async move {
        let reading = state.filter(|r| r.left > 0)?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(READ_CHUNK_BYTES.min(reading.left as usize));
            let read = loop {
                match std::os::unix::fs::FileExt::read_at(&reading.file, &mut buf, reading.at) {
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            (reading, buf, read)
        })
        .await;
        match read {
            Ok((mut reading, mut buf, Ok(n))) if n > 0 => {
                buf.truncate(n);
                reading.at += n as u64;
                reading.left -= n as u64;
                Some((Ok(Frame::data(buf.freeze())), Some(reading)))
            }
            Ok((_, _, Ok(_))) => {
                Some((Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "object shrank while being read")), None))
            }
            Ok((_, _, Err(err))) => Some((Err(err), None)),
            Err(err) => Some((Err(std::io::Error::other(err)), None)),
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

pub async fn delete_object(state: &Arc<State>, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let (b, k) = (bucket.to_owned(), key.to_owned());
    blocking(state, move |store| store.delete_object(&b, &k)).await?.map_err(|e| store_error(e, bucket))?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).body(empty()).expect("valid response"))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Delete {
    #[serde(rename = "Object", default)]
    objects: Vec<DeleteEntry>,
    #[serde(rename = "Quiet", default)]
    quiet: bool,
}

#[derive(Debug, Deserialize)]
struct DeleteEntry {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "VersionId")]
    version_id: Option<String>,
}

/// Checks a small body against its Content-MD5 or flexible checksum header, one of which
/// DeleteObjects (and the other `httpChecksumRequired` operations) must carry.
fn check_small_body_digest(req: &Req, bytes: &[u8], required: bool) -> Result<()> {
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

pub async fn delete_objects(state: &Arc<State>, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    require_bucket(state, bucket).await?;
    let bytes = read_small_body(req, body).await?;
    check_small_body_digest(req, &bytes, true)?;
    let delete: Delete = parse_xml(&bytes)?;
    if delete.objects.is_empty() || delete.objects.len() > 1000 {
        return Err(S3Error::malformed_xml());
    }
    let b = bucket.to_owned();
    let outcomes = blocking(state, move |store| {
        delete
            .objects
            .into_iter()
            .map(|entry| {
                let outcome = if entry.version_id.as_deref().is_some_and(|v| v != "null") {
                    Err(("NoSuchVersion", "The specified version does not exist.".to_owned()))
                } else if entry.key.len() > crate::store::keypath::KEY_BYTES_MAX {
                    Err(("KeyTooLongError", "Your key is too long".to_owned()))
                } else {
                    store.delete_object(&b, &entry.key).map(|_| ()).map_err(|err| ("InternalError", err.to_string()))
                };
                (entry, outcome)
            })
            .collect::<Vec<_>>()
    })
    .await?;
    let mut x = Xml::document();
    x.root("DeleteResult");
    for (entry, outcome) in outcomes {
        match outcome {
            Ok(()) if delete.quiet => {}
            Ok(()) => x.node("Deleted", |x| {
                x.leaf("Key", &entry.key);
                x.leaf_opt("VersionId", entry.version_id.as_deref());
            }),
            Err((code, message)) => x.node("Error", |x| {
                x.leaf("Key", &entry.key);
                x.leaf_opt("VersionId", entry.version_id.as_deref());
                x.leaf("Code", code);
                x.leaf("Message", &message);
            }),
        }
    }
    x.close("DeleteResult");
    Ok(xml_response(x.finish()))
}

/// `bucket/key` of `x-amz-copy-source` (URL-encoded, optional leading `/`, optional `?versionId=`).
pub fn parse_copy_source(value: &str) -> Result<(String, String)> {
    let (path, version) = match value.split_once('?') {
        Some((path, query)) => (path, query.strip_prefix("versionId=")),
        None => (value, None),
    };
    if version.is_some_and(|v| v != "null") {
        return Err(S3Error::new(Code::NoSuchVersion, "The specified version does not exist."));
    }
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8().map_err(|_| bad_copy_source(value))?;
    let decoded = decoded.strip_prefix('/').unwrap_or(&decoded);
    match decoded.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok((bucket.to_owned(), key.to_owned())),
        _ => Err(bad_copy_source(value)),
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

pub async fn copy_object(state: &Arc<State>, req: &Req, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let (src_bucket, src_key) = parse_copy_source(req.header("x-amz-copy-source").unwrap_or_default())?;
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
    if src_bucket == bucket && src_key == key && !replace && algorithm.is_none() && req.header("x-amz-storage-class").is_none() {
        return Err(S3Error::invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    require_bucket(state, bucket).await?;
    let new_meta = if replace { Some(meta_from_headers(req)?) } else { None };
    let new_tags =
        if replace_tags { Some(req.header("x-amz-tagging").map(parse_tagging_header).transpose()?.unwrap_or_default()) } else { None };
    let (sb, sk) = (src_bucket.clone(), src_key.clone());
    let opened = blocking(state, move |store| store.open_object(&sb, &sk)).await?.map_err(|e| store_error(e, &src_bucket))?;
    let Some((file, source_meta)) = opened else { return Err(S3Error::no_such_key(&src_key)) };
    check_copy_conditions(req, &source_meta)?;
    if source_meta.size > OBJECT_BYTES_MAX {
        return Err(S3Error::invalid_request(
            "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120",
        ));
    }
    // Keep a whole-object checksum the source had, unless a new algorithm was asked for.
    let kept_checksum = source_meta.checksums.iter().find(|(_, v)| !v.contains('-')).map(|(k, _)| k.clone());
    let algorithm = algorithm.or_else(|| kept_checksum.as_deref().and_then(Algorithm::parse));
    let size = source_meta.size;
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let meta = blocking(state, move |store| -> crate::store::Result<ObjectMeta> {
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
        meta.etag = md5;
        meta.last_modified_ms = now_ms();
        if let (Some(algorithm), Some(value)) = (algorithm, checksum) {
            meta.checksums.insert(algorithm.name().to_owned(), value);
            meta.checksum_type = Some("FULL_OBJECT".to_owned());
        }
        store.commit_object(&b, &k, staged, meta)
    })
    .await?
    .map_err(|e| store_error(e, bucket))?;
    let mut x = Xml::document();
    x.root("CopyObjectResult");
    x.leaf("LastModified", &timestamp(meta.last_modified_ms));
    x.leaf("ETag", &quoted(&meta.etag));
    checksum::write_elements(&mut x, &meta.checksums);
    x.leaf_opt("ChecksumType", meta.checksum_type.as_deref());
    x.close("CopyObjectResult");
    let mut response = xml_response(x.finish());
    response.headers_mut().insert("x-amz-server-side-encryption", http::HeaderValue::from_static("AES256"));
    Ok(response)
}

pub async fn get_object_attributes(state: &Arc<State>, req: &Req, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    // Clients send the list as one comma-separated value or as repeated headers.
    let wanted: Vec<String> = req
        .parts
        .headers
        .get_all("x-amz-object-attributes")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if wanted.is_empty() {
        return Err(S3Error::invalid_argument("Invalid attribute name specified.", "x-amz-object-attributes", ""));
    }
    for name in &wanted {
        if !["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"].contains(&name.as_str()) {
            return Err(S3Error::invalid_argument("Invalid attribute name specified.", "x-amz-object-attributes", name));
        }
    }
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let opened = blocking(state, move |store| store.open_object(&b, &k)).await?.map_err(|e| store_error(e, bucket))?;
    let Some((_, meta)) = opened else { return Err(S3Error::no_such_key(key)) };
    let has = |name: &str| wanted.iter().any(|w| w == name);
    let mut x = Xml::document();
    x.root("GetObjectAttributesResponse");
    if has("ETag") {
        x.leaf("ETag", &meta.etag);
    }
    if has("Checksum") && !meta.checksums.is_empty() {
        x.node("Checksum", |x| {
            checksum::write_elements(x, &meta.checksums);
            x.leaf_opt("ChecksumType", meta.checksum_type.as_deref());
        });
    }
    if has("ObjectParts") && !meta.part_sizes.is_empty() {
        x.node("ObjectParts", |x| {
            x.leaf("PartsCount", &meta.part_sizes.len().to_string());
            x.leaf("PartNumberMarker", "0");
            x.leaf("NextPartNumberMarker", &meta.part_sizes.len().to_string());
            x.leaf("MaxParts", "1000");
            x.leaf("IsTruncated", "false");
            for (i, size) in meta.part_sizes.iter().enumerate() {
                x.node("Part", |x| {
                    x.leaf("PartNumber", &(i + 1).to_string());
                    x.leaf("Size", &size.to_string());
                });
            }
        });
    }
    if has("StorageClass") {
        x.leaf("StorageClass", meta.headers.get("x-amz-storage-class").map(String::as_str).unwrap_or("STANDARD"));
    }
    if has("ObjectSize") {
        x.leaf("ObjectSize", &meta.size.to_string());
    }
    x.close("GetObjectAttributesResponse");
    let mut response = xml_response(x.finish());
    response.headers_mut().insert("last-modified", last_modified(&meta).parse().expect("dates are valid headers"));
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct Tagging {
    #[serde(rename = "TagSet")]
    tag_set: TagSet,
}

#[derive(Debug, Deserialize, Default)]
struct TagSet {
    #[serde(rename = "Tag", default)]
    tags: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
struct Tag {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

/// Parses a `<Tagging>` body and checks it against `max` tags.
pub fn parse_tagging(bytes: &[u8], max: usize) -> Result<Vec<(String, String)>> {
    let tagging: Tagging = parse_xml(bytes)?;
    let tags: Vec<(String, String)> = tagging.tag_set.tags.into_iter().map(|t| (t.key, t.value)).collect();
    validate_tags(&tags, max)?;
    Ok(tags)
}

pub fn tagging_xml(tags: &[(String, String)]) -> String {
    let mut x = Xml::document();
    x.root("Tagging");
    x.node("TagSet", |x| {
        for (k, v) in tags {
            x.node("Tag", |x| {
                x.leaf("Key", k);
                x.leaf("Value", v);
            });
        }
    });
    x.close("Tagging");
    x.finish()
}

pub async fn get_object_tagging(state: &Arc<State>, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let opened = blocking(state, move |store| store.open_object(&b, &k)).await?.map_err(|e| store_error(e, bucket))?;
    let Some((_, meta)) = opened else { return Err(S3Error::no_such_key(key)) };
    Ok(xml_response(tagging_xml(&meta.tags)))
}

async fn set_object_tags(state: &Arc<State>, bucket: &str, key: &str, tags: Vec<(String, String)>) -> Result<()> {
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let updated =
        blocking(state, move |store| store.update_meta(&b, &k, |meta| meta.tags = tags)).await?.map_err(|e| store_error(e, bucket))?;
    match updated {
        Some(_) => Ok(()),
        None => Err(S3Error::no_such_key(key)),
    }
}

pub async fn put_object_tagging(state: &Arc<State>, req: &Req, body: Incoming, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let bytes = read_small_body(req, body).await?;
    let tags = parse_tagging(&bytes, OBJECT_TAGS_MAX)?;
    set_object_tags(state, bucket, key, tags).await?;
    Ok(Response::builder().status(StatusCode::OK).body(empty()).expect("valid response"))
}

pub async fn delete_object_tagging(state: &Arc<State>, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    set_object_tags(state, bucket, key, Vec::new()).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).body(empty()).expect("valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_range(header: &str, size: u64, expected: Option<(u64, u64)>) {
        assert_eq!(resolve_range(Some(header), size).unwrap(), expected);
    }

    #[test]
    fn ranges() {
        check_range("bytes=0-9", 100, Some((0, 9)));
        check_range("bytes=90-200", 100, Some((90, 99)));
        check_range("bytes=10-", 100, Some((10, 99)));
        check_range("bytes=-10", 100, Some((90, 99)));
        check_range("bytes=-200", 100, Some((0, 99)));
        check_range("bytes=5-1", 100, None);
        check_range("bytes=a-b", 100, None);
        check_range("items=0-1", 100, None);
        check_range("bytes=0-1,5-6", 100, None);
        assert!(resolve_range(Some("bytes=100-"), 100).is_err());
        assert!(resolve_range(Some("bytes=0-"), 0).is_err());
        assert!(resolve_range(Some("bytes=-0"), 100).is_err());
    }

    #[test]
    fn copy_sources() {
        assert_eq!(parse_copy_source("/b/k%20x").unwrap(), ("b".to_owned(), "k x".to_owned()));
        assert_eq!(parse_copy_source("b/a/b?versionId=null").unwrap(), ("b".to_owned(), "a/b".to_owned()));
        assert!(parse_copy_source("b").is_err());
        assert!(parse_copy_source("b/k?versionId=3").is_err());
    }

    #[test]
    fn aws_chunked_is_not_stored() {
        assert_eq!(strip_aws_chunked("aws-chunked"), "");
        assert_eq!(strip_aws_chunked("gzip,aws-chunked"), "gzip");
        assert_eq!(strip_aws_chunked("aws-chunked, gzip"), "gzip");
    }
}
