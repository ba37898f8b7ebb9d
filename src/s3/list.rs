//! ListObjects (v1), ListObjectsV2 and ListObjectVersions: one page of the store's lazy walk.

use std::sync::Arc;

use hyper::Response;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::http::{Body, RequestCtx};
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::common::{blocking, continuation_after, continuation_token, quoted, store_error, write_owner, xml_response};
use crate::s3::error::{Result, S3Error};
use crate::s3::xml::{Xml, timestamp};
use crate::store::{ListQuery, ObjectMeta};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What `encoding-type=url` leaves alone: unreserved characters and `/`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// The parameters every listing takes.
struct Common {
    prefix: String,
    delimiter: Option<String>,
    encode: bool,
    max_keys: usize,
}

impl Common {
    fn of(req: &Req) -> Result<Common> {
        let q = &req.query;
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
        Ok(Common {
            prefix: q.get("prefix").unwrap_or_default().to_owned(),
            delimiter: q.get("delimiter").filter(|d| !d.is_empty()).map(str::to_owned),
            encode,
            max_keys,
        })
    }

    fn text(&self, s: &str) -> String {
        if self.encode { utf8_percent_encode(s, URL_ENCODE).to_string() } else { s.to_owned() }
    }
}

pub async fn list_objects(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req, bucket: &str, version: Version) -> Result<Response<Body>> {
    let q = &req.query;
    let Common { prefix, delimiter, encode, max_keys } = Common::of(req)?;
    let token = q.get("continuation-token");
    let after = match version {
        Version::V1 => q.get("marker").unwrap_or_default().to_owned(),
        Version::V2 => match token {
            Some(token) => continuation_after(token)?,
            None => q.get("start-after").unwrap_or_default().to_owned(),
        },
    };
    let (b, p, d, a) = (bucket.to_owned(), prefix.clone(), delimiter.clone(), after.clone());
    let page = blocking(state, move |store| store.list_page(&b, ListQuery { prefix: &p, delimiter: d.as_deref(), after: &a }, max_keys))
        .await?
        .map_err(|e| store_error(e, bucket))?;
    let chosen = page.objects;
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
    x.root("ListBucketResult");
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
                x.leaf("NextContinuationToken", &continuation_token(last));
            }
            x.leaf_opt("StartAfter", q.get("start-after").map(&text).as_deref());
        }
    }
    x.leaf("MaxKeys", &max_keys.to_string());
    x.leaf_opt("Delimiter", delimiter.as_deref().map(&text).as_deref());
    if encode {
        x.leaf("EncodingType", "url");
    }
    x.leaf("IsTruncated", if page.truncated { "true" } else { "false" });
    for meta in &metas {
        x.node("Contents", |x| {
            x.leaf("Key", &text(&meta.key));
            object_fields(x, meta, fetch_owner.then_some(ctx.account.as_str()));
        });
    }
    for common in &page.prefixes {
        x.node("CommonPrefixes", |x| x.leaf("Prefix", &text(common)));
    }
    x.close("ListBucketResult");
    Ok(xml_response(x.finish()))
}

/// The elements of an object in a listing after its key (and version).
fn object_fields(x: &mut Xml, meta: &ObjectMeta, owner: Option<&str>) {
    x.leaf("LastModified", &timestamp(meta.last_modified_ms));
    x.leaf("ETag", &quoted(&meta.etag));
    for name in meta.checksums.keys() {
        x.leaf("ChecksumAlgorithm", name);
    }
    x.leaf_opt("ChecksumType", meta.checksum_type.as_deref());
    x.leaf("Size", &meta.size.to_string());
    if let Some(account) = owner {
        write_owner(x, "Owner", account);
    }
    x.leaf("StorageClass", meta.headers.get("x-amz-storage-class").map(String::as_str).unwrap_or("STANDARD"));
}

/// A key or a common prefix: what a versions listing walks, in key order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Key(String),
    Prefix(String),
}

impl Unit {
    fn text(&self) -> &str {
        match self {
            Unit::Key(s) | Unit::Prefix(s) => s,
        }
    }
}

/// One page of ListObjectVersions.
#[derive(Default)]
struct VersionsPage {
    versions: Vec<(String, crate::store::Version)>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last key (with its version) or common prefix returned.
    last: Option<(String, Option<Option<String>>)>,
    /// Entries the page still has room for.
    budget: usize,
}

impl VersionsPage {
    /// Adds a key's versions while there is room; answers false once the page is full.
    fn take(&mut self, key: &str, versions: Vec<crate::store::Version>) -> bool {
        for version in versions {
            if self.budget == 0 {
                self.truncated = true;
                return false;
            }
            self.budget -= 1;
            self.last = Some((key.to_owned(), Some(version.version_id.clone())));
            self.versions.push((key.to_owned(), version));
        }
        true
    }

    fn take_prefix(&mut self, common: String) -> bool {
        if self.budget == 0 {
            self.truncated = true;
            return false;
        }
        self.budget -= 1;
        self.last = Some((common.clone(), None));
        self.prefixes.push(common);
        true
    }
}

/// ListObjectVersions: the keys of the folder walk and the keys that have versions in
/// the store's versions folders, merged in key order; each key's versions newest first.
/// A page reads at most `max-keys + 1` keys of the walk, as a plain listing does.
pub async fn list_object_versions(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req, bucket: &str) -> Result<Response<Body>> {
    let common = Common::of(req)?;
    let q = &req.query;
    let key_marker = q.get("key-marker").unwrap_or_default().to_owned();
    let version_marker = match q.get("version-id-marker") {
        None => None,
        Some(_) if key_marker.is_empty() => {
            return Err(S3Error::invalid_argument(
                "A version-id marker cannot be specified without a key marker.",
                "version-id-marker",
                q.get("version-id-marker").unwrap_or_default(),
            ));
        }
        Some(id) => Some(crate::s3::versioning::parse_id(id, "version-id-marker")?),
    };
    let (b, prefix, delimiter, marker, max) =
        (bucket.to_owned(), common.prefix.clone(), common.delimiter.clone(), key_marker.clone(), common.max_keys);
    let vm = version_marker.clone();
    let page = blocking(state, move |store| -> crate::store::Result<VersionsPage> {
        let mut page = VersionsPage { budget: max, ..VersionsPage::default() };
        // The rest of the marker key's versions, after the marker's version.
        if let Some(wanted) = &vm {
            let versions = store.versions_of(&b, &marker)?;
            let rest = versions.iter().position(|v| &v.version_id == wanted).map_or(Vec::new(), |at| versions[at + 1..].to_vec());
            if !page.take(&marker, rest) {
                return Ok(page);
            }
        }
        let walk = store.list_page(&b, ListQuery { prefix: &prefix, delimiter: delimiter.as_deref(), after: &marker }, max + 1)?;
        let mut units: Vec<Unit> =
            walk.objects.iter().map(|o| Unit::Key(o.key.clone())).chain(walk.prefixes.iter().cloned().map(Unit::Prefix)).collect();
        for key in store.versioned_keys(&b, &prefix)? {
            let rolled =
                delimiter.as_deref().and_then(|d| key[prefix.len()..].find(d).map(|at| key[..prefix.len() + at + d.len()].to_owned()));
            match rolled {
                Some(common) if common.as_str() > marker.as_str() => units.push(Unit::Prefix(common)),
                Some(_) => {}
                None if key.as_str() > marker.as_str() => units.push(Unit::Key(key)),
                None => {}
            }
        }
        units.sort_by(|a, b| a.text().cmp(b.text()).then_with(|| a.cmp(b)));
        units.dedup();
        for unit in units {
            match unit {
                Unit::Prefix(common) => {
                    if !page.take_prefix(common) {
                        break;
                    }
                }
                Unit::Key(key) => {
                    let versions = store.versions_of(&b, &key)?;
                    if !page.take(&key, versions) {
                        break;
                    }
                }
            }
        }
        page.truncated |= walk.truncated;
        Ok(page)
    })
    .await?
    .map_err(|e| store_error(e, bucket))?;

    let mut x = Xml::document();
    x.root("ListVersionsResult");
    x.leaf("Name", bucket);
    x.leaf("Prefix", &common.text(&common.prefix));
    x.leaf("KeyMarker", &common.text(&key_marker));
    x.leaf("VersionIdMarker", q.get("version-id-marker").unwrap_or_default());
    if page.truncated
        && let Some((last, version)) = &page.last
    {
        x.leaf("NextKeyMarker", &common.text(last));
        if let Some(id) = version {
            x.leaf("NextVersionIdMarker", id.as_deref().unwrap_or("null"));
        }
    }
    x.leaf("MaxKeys", &common.max_keys.to_string());
    x.leaf_opt("Delimiter", common.delimiter.as_deref().map(|d| common.text(d)).as_deref());
    if common.encode {
        x.leaf("EncodingType", "url");
    }
    x.leaf("IsTruncated", if page.truncated { "true" } else { "false" });
    for (key, version) in &page.versions {
        let element = if version.meta.is_some() { "Version" } else { "DeleteMarker" };
        x.node(element, |x| {
            x.leaf("Key", &common.text(key));
            x.leaf("VersionId", version.version_id.as_deref().unwrap_or("null"));
            x.leaf("IsLatest", if version.latest { "true" } else { "false" });
            match &version.meta {
                Some(meta) => object_fields(x, meta, Some(&ctx.account)),
                None => {
                    x.leaf("LastModified", &timestamp(version.last_modified_ms));
                    write_owner(x, "Owner", &ctx.account);
                }
            }
        });
    }
    for common_prefix in &page.prefixes {
        x.node("CommonPrefixes", |x| x.leaf("Prefix", &common.text(common_prefix)));
    }
    x.close("ListVersionsResult");
    Ok(xml_response(x.finish()))
}
