//! Preconditions, one implementation for every request that has them: a read's `If-*`
//! headers (GetObject, HeadObject), a copy's source conditions (`x-amz-copy-source-if-*`
//! on CopyObject and UploadPartCopy), and a write's conditions on the object it replaces
//! (`If-None-Match: *` and `If-Match` on PutObject, CopyObject and
//! CompleteMultipartUpload; `If-Match` on DeleteObject).
//!
//! Reads and copy sources follow RFC 7232's precedence, as S3 does: a true `If-Match`
//! makes `If-Unmodified-Since` irrelevant, and a present `If-None-Match` makes
//! `If-Modified-Since` irrelevant. A read answers 412 or 304; a copy source answers 412
//! for every failure. A write's conditions are checked before its body is read when that
//! saves the upload, and again under the bucket's lock at the commit, which is the check
//! that decides (see `store::objects`).

use std::sync::Arc;

use crate::s3::common::{blocking, store_error};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::{Req, S3State};
use crate::store::ObjectMeta;
use crate::store::objects::Condition;

/// The four conditions of RFC 7232 as a request states them.
#[derive(Debug, Default)]
struct Conditions {
    if_match: Option<String>,
    if_none_match: Option<String>,
    /// Seconds since the epoch; a date that does not parse is no condition (S3 ignores it).
    if_modified_since: Option<i64>,
    if_unmodified_since: Option<i64>,
}

/// The condition that did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    Match,
    NoneMatch,
    ModifiedSince,
    UnmodifiedSince,
}

impl Failed {
    fn header(self) -> &'static str {
        match self {
            Failed::Match => "If-Match",
            Failed::NoneMatch => "If-None-Match",
            Failed::ModifiedSince => "If-Modified-Since",
            Failed::UnmodifiedSince => "If-Unmodified-Since",
        }
    }
}

impl Conditions {
    /// The conditions of the headers named `<prefix>if-match` and so on.
    fn from_headers(req: &Req, prefix: &str) -> Conditions {
        let header = |name: &str| req.header(&format!("{prefix}{name}")).map(str::to_owned);
        Conditions {
            if_match: header("if-match"),
            if_none_match: header("if-none-match"),
            if_modified_since: header("if-modified-since").as_deref().and_then(http_date),
            if_unmodified_since: header("if-unmodified-since").as_deref().and_then(http_date),
        }
    }

    /// The first condition that does not hold for `meta`, in RFC 7232's order.
    fn failed(&self, meta: &ObjectMeta) -> Option<Failed> {
        let modified_s = meta.last_modified_ms.div_euclid(1000);
        match &self.if_match {
            Some(list) if !etag_matches(list, &meta.etag) => return Some(Failed::Match),
            Some(_) => {}
            None if self.if_unmodified_since.is_some_and(|since| modified_s > since) => return Some(Failed::UnmodifiedSince),
            None => {}
        }
        match &self.if_none_match {
            Some(list) if etag_matches(list, &meta.etag) => Some(Failed::NoneMatch),
            Some(_) => None,
            None if self.if_modified_since.is_some_and(|since| modified_s <= since) => Some(Failed::ModifiedSince),
            None => None,
        }
    }
}

/// Whether a list of entity tags (`"a", "b"`, `*`, weak or not, quoted, unquoted or
/// half-quoted as clients send them) names `etag`.
fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(|t| t.trim().trim_start_matches("W/").trim_matches('"')).any(|t| t == "*" || t == etag)
}

fn http_date(value: &str) -> Option<i64> {
    httpdate::parse_http_date(value.trim()).ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs() as i64)
}

/// GET/HEAD conditions (`If-*`): a failed If-Match or If-Unmodified-Since is a 412, a
/// failed If-None-Match or If-Modified-Since a 304.
pub fn check_read(req: &Req, meta: &ObjectMeta) -> Result<()> {
    match Conditions::from_headers(req, "").failed(meta) {
        None => Ok(()),
        Some(failed @ (Failed::Match | Failed::UnmodifiedSince)) => Err(S3Error::precondition_failed(failed.header())),
        Some(Failed::NoneMatch | Failed::ModifiedSince) => Err(S3Error::new(Code::NotModified, "Not Modified")),
    }
}

/// CopyObject / UploadPartCopy source conditions (`x-amz-copy-source-if-*`): the same
/// precedence as a read, and every failure is a 412.
pub fn check_copy_source(req: &Req, meta: &ObjectMeta) -> Result<()> {
    match Conditions::from_headers(req, "x-amz-copy-source-").failed(meta) {
        None => Ok(()),
        Some(failed) => Err(S3Error::precondition_failed(&format!("x-amz-copy-source-{}", failed.header()))),
    }
}

/// A write's conditions on the current object of its key.
#[derive(Debug, Clone)]
pub struct WriteConditions {
    key: String,
    /// `If-Match`: the current object must exist, and (unless `*`) have this ETag.
    if_match: Option<String>,
    /// `If-None-Match: *`: there must be no current object.
    if_none_match: bool,
    /// Whether the early check found an object: one gone by the commit was deleted
    /// during the request (409 ConditionalRequestConflict, not 404).
    found_early: Option<bool>,
}

impl WriteConditions {
    /// The conditions of a PutObject, CopyObject or CompleteMultipartUpload; `None` when
    /// it has none. If-None-Match with an ETag instead of `*` is refused as AWS refuses it.
    pub fn of_write(req: &Req, key: &str) -> Result<Option<WriteConditions>> {
        let if_none_match = match req.header("if-none-match").map(str::trim) {
            None => false,
            Some("*") => true,
            Some(_) => {
                return Err(S3Error::new(Code::NotImplemented, "A header you provided implies functionality that is not implemented")
                    .with("Header", "If-None-Match"));
            }
        };
        Ok(Self::new(key, req.header("if-match"), if_none_match))
    }

    /// The conditions of a DeleteObject (If-Match only).
    pub fn of_delete(req: &Req, key: &str) -> Option<WriteConditions> {
        Self::new(key, req.header("if-match"), false)
    }

    /// The condition of a DeleteObjects entry with an `<ETag>`.
    pub fn if_match(key: &str, etag: &str) -> WriteConditions {
        WriteConditions { key: key.to_owned(), if_match: Some(etag.to_owned()), if_none_match: false, found_early: None }
    }

    fn new(key: &str, if_match: Option<&str>, if_none_match: bool) -> Option<WriteConditions> {
        (if_match.is_some() || if_none_match).then(|| WriteConditions {
            key: key.to_owned(),
            if_match: if_match.map(str::to_owned),
            if_none_match,
            found_early: None,
        })
    }

    /// Checks the conditions against the current object (`None`: there is none).
    /// If-Match with no object is NoSuchKey, `*` included; an object the early check
    /// found that has gone since is a conflict.
    pub fn check(&self, current: Option<&ObjectMeta>) -> Result<()> {
        match current {
            Some(_) if self.if_none_match => Err(S3Error::precondition_failed("If-None-Match")),
            Some(meta) => match &self.if_match {
                Some(list) if !etag_matches(list, &meta.etag) => Err(S3Error::precondition_failed("If-Match")),
                _ => Ok(()),
            },
            None if self.if_match.is_some() && self.found_early == Some(true) => Err(S3Error::new(
                Code::ConditionalRequestConflict,
                "A conflicting operation occurred. If using PutObject you can retry the request. If using multipart upload you should initiate another CreateMultipartUpload request and re-upload each part.",
            )
            .with("Key", self.key.clone())),
            None if self.if_match.is_some() => Err(S3Error::no_such_key(&self.key)),
            None => Ok(()),
        }
    }

    /// The check made before the work of the write (reading a body, copying, joining
    /// parts); remembers what it found for the check at the commit.
    pub fn check_early(&mut self, current: Option<&ObjectMeta>) -> Result<()> {
        self.check(current)?;
        self.found_early = Some(current.is_some());
        Ok(())
    }
}

/// The store checks a write's conditions under the bucket's lock, at the commit.
impl Condition for WriteConditions {
    type Refusal = S3Error;
    fn allows(&self, current: Option<&ObjectMeta>) -> Result<()> {
        self.check(current)
    }
}

/// Checks a write's conditions (if any) against the object as it is now, before the work
/// of the write; the commit checks them again.
pub async fn check_early(state: &Arc<S3State>, bucket: &str, key: &str, conditions: &mut Option<WriteConditions>) -> Result<()> {
    let Some(conditions) = conditions.as_mut() else { return Ok(()) };
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let current = blocking(state, move |store| store.open_object(&b, &k).map(|o| o.map(|(_, meta)| meta)))
        .await?
        .map_err(|e| store_error(e, bucket))?;
    conditions.check_early(current.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Req {
        Req::for_test("/b/k", headers)
    }

    fn meta() -> ObjectMeta {
        // Modified 2023-11-14T22:13:20Z.
        ObjectMeta { etag: "abc".into(), last_modified_ms: 1_700_000_000_000, ..ObjectMeta::default() }
    }

    const BEFORE: &str = "Tue, 14 Nov 2023 22:00:00 GMT";
    const AFTER: &str = "Wed, 15 Nov 2023 00:00:00 GMT";

    #[track_caller]
    fn check_read_answer(headers: &[(&str, &str)], expected: Option<Code>) {
        assert_eq!(check_read(&req(headers), &meta()).err().map(|e| e.code), expected);
    }

    #[track_caller]
    fn check_copy_answer(headers: &[(&str, &str)], expected: Option<&str>) {
        let condition = check_copy_source(&req(headers), &meta()).err().map(|e| e.fields[0].1.clone());
        assert_eq!(condition.as_deref(), expected);
    }

    #[test]
    fn reads() {
        check_read_answer(&[], None);
        check_read_answer(&[("if-match", "\"abc\"")], None);
        check_read_answer(&[("if-match", "abc")], None);
        check_read_answer(&[("if-match", "\"other\", \"abc\"")], None);
        check_read_answer(&[("if-match", "other")], Some(Code::PreconditionFailed));
        check_read_answer(&[("if-unmodified-since", BEFORE)], Some(Code::PreconditionFailed));
        check_read_answer(&[("if-unmodified-since", AFTER)], None);
        // A true If-Match overrides a false If-Unmodified-Since.
        check_read_answer(&[("if-match", "abc"), ("if-unmodified-since", BEFORE)], None);
        check_read_answer(&[("if-none-match", "abc")], Some(Code::NotModified));
        check_read_answer(&[("if-none-match", "*")], Some(Code::NotModified));
        check_read_answer(&[("if-none-match", "other")], None);
        check_read_answer(&[("if-modified-since", AFTER)], Some(Code::NotModified));
        check_read_answer(&[("if-modified-since", BEFORE)], None);
        // A present If-None-Match makes If-Modified-Since irrelevant.
        check_read_answer(&[("if-none-match", "other"), ("if-modified-since", AFTER)], None);
        check_read_answer(&[("if-modified-since", "not a date")], None);
    }

    #[test]
    fn copy_sources() {
        check_copy_answer(&[("x-amz-copy-source-if-match", "abc")], None);
        check_copy_answer(&[("x-amz-copy-source-if-match", "other")], Some("x-amz-copy-source-If-Match"));
        // AWS copies when if-match holds and if-unmodified-since does not.
        check_copy_answer(&[("x-amz-copy-source-if-match", "abc"), ("x-amz-copy-source-if-unmodified-since", BEFORE)], None);
        check_copy_answer(&[("x-amz-copy-source-if-unmodified-since", BEFORE)], Some("x-amz-copy-source-If-Unmodified-Since"));
        check_copy_answer(&[("x-amz-copy-source-if-none-match", "abc")], Some("x-amz-copy-source-If-None-Match"));
        check_copy_answer(
            &[("x-amz-copy-source-if-none-match", "abc"), ("x-amz-copy-source-if-modified-since", BEFORE)],
            Some("x-amz-copy-source-If-None-Match"),
        );
        check_copy_answer(&[("x-amz-copy-source-if-modified-since", AFTER)], Some("x-amz-copy-source-If-Modified-Since"));
        // The destination's If-Match is not a source condition.
        check_copy_answer(&[("if-match", "other")], None);
    }

    #[track_caller]
    fn check_write(headers: &[(&str, &str)], current: Option<&ObjectMeta>, expected: Option<Code>) {
        let conditions = WriteConditions::of_write(&req(headers), "k").unwrap().unwrap();
        assert_eq!(conditions.check(current).err().map(|e| e.code), expected);
    }

    #[test]
    fn writes() {
        let meta = meta();
        check_write(&[("if-none-match", "*")], None, None);
        check_write(&[("if-none-match", "*")], Some(&meta), Some(Code::PreconditionFailed));
        check_write(&[("if-match", "abc")], Some(&meta), None);
        check_write(&[("if-match", "\"abc")], Some(&meta), None);
        check_write(&[("if-match", "*")], Some(&meta), None);
        check_write(&[("if-match", "other")], Some(&meta), Some(Code::PreconditionFailed));
        check_write(&[("if-match", "abc")], None, Some(Code::NoSuchKey));
        check_write(&[("if-match", "*")], None, Some(Code::NoSuchKey));
        assert!(WriteConditions::of_write(&req(&[]), "k").unwrap().is_none());
        let refused = WriteConditions::of_write(&req(&[("if-none-match", "\"abc\"")]), "k").unwrap_err();
        assert_eq!(refused.code, Code::NotImplemented);
        // Found by the early check, gone at the commit: deleted during the request.
        let mut conditions = WriteConditions::of_write(&req(&[("if-match", "abc")]), "k").unwrap().unwrap();
        conditions.check_early(Some(&meta)).unwrap();
        assert_eq!(conditions.check(None).unwrap_err().code, Code::ConditionalRequestConflict);
    }
}
