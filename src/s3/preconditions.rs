//! Preconditions: the `If-*` headers of GET and HEAD, and a copy's source conditions.

use crate::s3::Req;
use crate::s3::error::{Code, Result, S3Error};
use crate::store::ObjectMeta;

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
