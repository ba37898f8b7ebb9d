//! GetObject and HeadObject: ranges, part numbers, conditions, response overrides,
//! and the streamed body.

use std::fs::File;
use std::sync::Arc;

use bytes::BytesMut;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};

use crate::http::{Body, empty};
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::checksum;
use crate::s3::common::{DEFAULT_CONTENT_TYPE, quoted};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::preconditions::check_read;
use crate::s3::router::check_key;
use crate::s3::versioning;
use crate::store::{Found, ObjectMeta, Versioning};

/// Bytes per read when streaming an object out: what a download that stalls holds.
const READ_CHUNK_BYTES: usize = 256 * 1024;

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

pub async fn get_object(state: &Arc<S3State>, req: &Req, bucket: &str, key: &str, head: bool) -> Result<Response<Body>> {
    check_key(key)?;
    let (versioning_state, file, meta) = open_requested(state, req, bucket, key, if head { "HEAD" } else { "GET" }).await?;
    check_read(req, &meta)?;
    let mut range = resolve_range(req.header("range"), meta.size)?;
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    let mut part_read = None;
    if let Some(part) = req.query.get("partNumber") {
        let number: usize = part.parse().ok().filter(|n| (1..=10000).contains(n)).ok_or_else(|| {
            S3Error::invalid_argument("Part number must be an integer between 1 and 10000, inclusive", "partNumber", part)
        })?;
        let sizes = if meta.part_sizes.is_empty() { vec![meta.size] } else { meta.part_sizes.clone() };
        if number > sizes.len() {
            return Err(S3Error::new(Code::InvalidPartNumber, "The requested partnumber is not satisfiable")
                .with("PartNumberRequested", number.to_string())
                .with("ActualPartCount", sizes.len().to_string()));
        }
        part_read = Some(number);
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
    if let Some(id) = versioning::header(versioning_state, meta.version_id.as_deref()) {
        builder = builder.header("x-amz-version-id", id);
    }
    let checksum_mode = req.header("x-amz-checksum-mode").is_some_and(|m| m.eq_ignore_ascii_case("enabled"));
    // A checksum describes the whole object, so a ranged read gets none; a read of one
    // part of a COMPOSITE object gets that part's.
    if checksum_mode && status == StatusCode::OK {
        builder = checksum::add_headers(builder, &meta.checksums);
        if let Some(kind) = &meta.checksum_type {
            builder = builder.header("x-amz-checksum-type", kind);
        }
    } else if checksum_mode
        && let Some(number) = part_read
        && meta.checksum_type.as_deref() == Some("COMPOSITE")
        && let Some((algorithm, value)) = checksum::of_part(&meta, number)
    {
        builder = builder.header(algorithm.header(), value).header("x-amz-checksum-type", "COMPOSITE");
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
    let mut response = builder.body(body).map_err(S3Error::internal)?;
    // The rules expire current versions: a read of one by id is not told.
    if req.query.get("versionId").is_none() {
        crate::s3::lifecycle::add_expiration(state, bucket, &meta, response.headers_mut()).await;
    }
    Ok(response)
}

/// Opens the object version a read names (`?versionId=`, else the current one), with the
/// bucket's versioning state; S3's errors for a missing key, version or a delete marker.
pub async fn open_requested(
    state: &Arc<S3State>,
    req: &Req,
    bucket: &str,
    key: &str,
    method: &'static str,
) -> Result<(Versioning, File, ObjectMeta)> {
    let requested = versioning::requested(req)?;
    let versioning::Lookup { versioning: state_now, found, current_marker } =
        versioning::lookup(state, bucket, key, requested.clone()).await?;
    versioning::check_unversioned(state_now, &requested)?;
    match (found, requested) {
        (Some(Found::Object(file, meta)), _) => Ok((state_now, file, *meta)),
        (Some(Found::Marker { last_modified_ms }), Some(id)) => {
            Err(versioning::marker_not_allowed(method, id.as_deref(), last_modified_ms))
        }
        (None, Some(id)) => Err(versioning::no_such_version(key, id.as_deref())),
        (_, None) => match current_marker {
            Some(id) => Err(versioning::deleted_key(key, id.as_deref())),
            None => Err(S3Error::no_such_key(key)),
        },
    }
}

/// An object's `Last-Modified` as an HTTP date.
pub fn last_modified(meta: &ObjectMeta) -> String {
    http_date(meta.last_modified_ms)
}

/// A time (ms since the epoch) as an HTTP date.
pub fn http_date(ms: i64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
}

/// The headers every GET and HEAD of an object carries.
pub fn object_headers(mut builder: http::response::Builder, meta: &ObjectMeta) -> http::response::Builder {
    builder = builder.header("etag", quoted(&meta.etag)).header("last-modified", last_modified(meta)).header("accept-ranges", "bytes");
    // Objects written before firelake recorded their encryption are SSE-S3.
    if !meta.headers.contains_key(crate::s3::encryption::SSE_HEADER) {
        builder = builder.header(crate::s3::encryption::SSE_HEADER, "AES256");
    }
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
}
