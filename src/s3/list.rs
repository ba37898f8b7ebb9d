//! ListObjects (v1), ListObjectsV2 and ListObjectVersions over the store's sorted keys.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::Response;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::http::{Body, RequestCtx};
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::common::{blocking, quoted, store_error, write_owner, xml_response};
use crate::s3::error::{Result, S3Error};
use crate::s3::xml::{Xml, timestamp};
use crate::store::ObjectMeta;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
    Versions,
}

/// What `encoding-type=url` leaves alone: unreserved characters and `/`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// One page of a listing: objects and common prefixes in key order.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// Indexes into the key list.
    pub objects: Vec<usize>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix on the page, where the next page starts after.
    pub last: Option<String>,
}

/// Cuts one page from `keys` (sorted, all starting with `prefix`): keys after `after`,
/// rolled up at `delimiter`, at most `max` entries. Pure, so it is tested alone.
pub fn paginate(keys: &[&str], prefix: &str, delimiter: Option<&str>, after: &str, max: usize) -> Page {
    let mut page = Page { objects: Vec::new(), prefixes: Vec::new(), truncated: false, last: None };
    for (i, key) in keys.iter().enumerate() {
        if key.as_bytes() <= after.as_bytes() || !key.starts_with(prefix) {
            continue;
        }
        let rolled =
            delimiter.filter(|d| !d.is_empty()).and_then(|d| key[prefix.len()..].find(d).map(|at| &key[..prefix.len() + at + d.len()]));
        match rolled {
            Some(common) => {
                // A prefix at or before the marker was on an earlier page.
                if common.as_bytes() <= after.as_bytes() || page.prefixes.last().is_some_and(|p| p == common) {
                    continue;
                }
                if page.objects.len() + page.prefixes.len() == max {
                    page.truncated = true;
                    break;
                }
                page.prefixes.push(common.to_owned());
                page.last = Some(common.to_owned());
            }
            None => {
                if page.objects.len() + page.prefixes.len() == max {
                    page.truncated = true;
                    break;
                }
                page.objects.push(i);
                page.last = Some((*key).to_owned());
            }
        }
    }
    page
}

pub async fn list_objects(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req, bucket: &str, version: Version) -> Result<Response<Body>> {
    let q = &req.query;
    let prefix = q.get("prefix").unwrap_or_default().to_owned();
    let delimiter = q.get("delimiter").filter(|d| !d.is_empty()).map(str::to_owned);
    let encode = match q.get("encoding-type") {
        None => false,
        Some("url") => true,
        Some(other) => return Err(S3Error::invalid_argument("Invalid Encoding Method specified in Request", "encoding-type", other)),
    };
    let max_keys = match q.get("max-keys") {
        None => 1000,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => n.min(1000) as usize,
            _ => return Err(S3Error::invalid_argument("Provided max-keys not an integer or within integer range", "max-keys", v)),
        },
    };
    let token = q.get("continuation-token");
    let after =
        match version {
            Version::V1 => q.get("marker").unwrap_or_default().to_owned(),
            Version::Versions => q.get("key-marker").unwrap_or_default().to_owned(),
            Version::V2 => match token {
                Some(token) => URL_SAFE_NO_PAD.decode(token).ok().and_then(|raw| String::from_utf8(raw).ok()).ok_or_else(|| {
                    S3Error::invalid_argument("The continuation token provided is incorrect", "continuation-token", token)
                })?,
                None => q.get("start-after").unwrap_or_default().to_owned(),
            },
        };
    let (b, p) = (bucket.to_owned(), prefix.clone());
    let listed = blocking(state, move |store| store.list_objects(&b, &p)).await?.map_err(|e| store_error(e, bucket))?;
    let keys: Vec<&str> = listed.iter().map(|l| l.key.as_str()).collect();
    let page = paginate(&keys, &prefix, delimiter.as_deref(), &after, max_keys);
    let chosen: Vec<crate::store::Listed> = page.objects.iter().map(|&i| listed[i].clone()).collect();
    let b = bucket.to_owned();
    let metas: Vec<ObjectMeta> = blocking(state, move |store| -> crate::store::Result<Vec<ObjectMeta>> {
        let mut out = Vec::with_capacity(chosen.len());
        for listed in &chosen {
            // An object deleted since the walk is simply left out.
            if let Some(meta) = store.listed_meta(&b, listed)? {
                out.push(meta);
            }
        }
        Ok(out)
    })
    .await??;

    let text = |s: &str| if encode { utf8_percent_encode(s, URL_ENCODE).to_string() } else { s.to_owned() };
    let fetch_owner = version != Version::V2 || q.get("fetch-owner") == Some("true");
    let mut x = Xml::document();
    let root = if version == Version::Versions { "ListVersionsResult" } else { "ListBucketResult" };
    x.root(root);
    x.leaf("Name", bucket);
    x.leaf("Prefix", &text(&prefix));
    match version {
        Version::V1 => {
            x.leaf("Marker", &text(&after));
            if page.truncated && delimiter.is_some() {
                x.leaf_opt("NextMarker", page.last.as_deref().map(&text).as_deref());
            }
        }
        Version::V2 => {
            x.leaf("KeyCount", &(metas.len() + page.prefixes.len()).to_string());
            x.leaf_opt("ContinuationToken", token);
            if page.truncated
                && let Some(last) = &page.last
            {
                x.leaf("NextContinuationToken", &URL_SAFE_NO_PAD.encode(last));
            }
            x.leaf_opt("StartAfter", q.get("start-after").map(&text).as_deref());
        }
        Version::Versions => {
            x.leaf("KeyMarker", &text(&after));
            x.leaf("VersionIdMarker", "");
            if page.truncated
                && let Some(last) = &page.last
            {
                x.leaf("NextKeyMarker", &text(last));
                x.leaf("NextVersionIdMarker", "null");
            }
        }
    }
    x.leaf("MaxKeys", &max_keys.to_string());
    x.leaf_opt("Delimiter", delimiter.as_deref().map(&text).as_deref());
    if encode {
        x.leaf("EncodingType", "url");
    }
    x.leaf("IsTruncated", if page.truncated { "true" } else { "false" });
    for meta in &metas {
        let element = if version == Version::Versions { "Version" } else { "Contents" };
        x.node(element, |x| {
            x.leaf("Key", &text(&meta.key));
            if version == Version::Versions {
                x.leaf("VersionId", "null");
                x.leaf("IsLatest", "true");
            }
            x.leaf("LastModified", &timestamp(meta.last_modified_ms));
            x.leaf("ETag", &quoted(&meta.etag));
            for name in meta.checksums.keys() {
                x.leaf("ChecksumAlgorithm", name);
            }
            x.leaf_opt("ChecksumType", meta.checksum_type.as_deref());
            x.leaf("Size", &meta.size.to_string());
            if fetch_owner {
                write_owner(x, "Owner", &ctx.account);
            }
            x.leaf("StorageClass", meta.headers.get("x-amz-storage-class").map(String::as_str).unwrap_or("STANDARD"));
        });
    }
    for common in &page.prefixes {
        x.node("CommonPrefixes", |x| x.leaf("Prefix", &text(common)));
    }
    x.close(root);
    Ok(xml_response(x.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(
        keys: &[&str],
        prefix: &str,
        delimiter: Option<&str>,
        after: &str,
        max: usize,
        objects: &[&str],
        prefixes: &[&str],
        truncated: bool,
    ) {
        let page = paginate(keys, prefix, delimiter, after, max);
        let got: Vec<&str> = page.objects.iter().map(|&i| keys[i]).collect();
        assert_eq!(got, objects);
        assert_eq!(page.prefixes, prefixes);
        assert_eq!(page.truncated, truncated);
    }

    const KEYS: &[&str] = &["a", "a-b", "a/x", "a/y", "b/c/d", "c"];

    #[test]
    fn flat() {
        check(KEYS, "", None, "", 1000, KEYS, &[], false);
        check(KEYS, "", None, "", 2, &["a", "a-b"], &[], true);
        check(KEYS, "", None, "a-b", 2, &["a/x", "a/y"], &[], true);
    }

    #[test]
    fn delimited() {
        check(KEYS, "", Some("/"), "", 1000, &["a", "a-b", "c"], &["a/", "b/"], false);
        check(KEYS, "", Some("/"), "", 3, &["a", "a-b"], &["a/"], true);
        // Resuming after a common prefix skips every key under it.
        check(KEYS, "", Some("/"), "a/", 1000, &["c"], &["b/"], false);
        check(KEYS, "a/", Some("/"), "", 1000, &["a/x", "a/y"], &[], false);
    }

    #[test]
    fn zero_max_keys() {
        check(KEYS, "", None, "", 0, &[], &[], true);
    }
}
