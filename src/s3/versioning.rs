//! Bucket versioning: Put/GetBucketVersioning, the `versionId` a request names, and the
//! version headers of answers. Where versions live is the store's (`store::versions`).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::Deserialize;

use crate::http::Body;
use crate::s3::common::{blocking, check_small_body_digest, no_body, parse_xml, read_small_body, store_error, xml_response};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::xml::Xml;
use crate::s3::{Req, S3State};
use crate::store::{Changed, Found, ObjectMeta, Versioning, valid_version_id};

#[derive(Debug, Deserialize)]
struct VersioningConfiguration {
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "MfaDelete")]
    mfa_delete: Option<String>,
}

pub async fn put_bucket_versioning(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    let bytes = read_small_body(req, body).await?;
    check_small_body_digest(req, &bytes, true)?;
    let config: VersioningConfiguration = parse_xml(&bytes)?;
    let Some(status) = config.status.filter(|s| s == "Enabled" || s == "Suspended") else { return Err(S3Error::malformed_xml()) };
    match config.mfa_delete.as_deref() {
        None | Some("Disabled") => {}
        // MFA delete needs a device's token on every versioned delete; nothing local has one.
        Some("Enabled") => return Err(S3Error::not_implemented("MFA delete (MfaDelete Enabled)")),
        Some(_) => return Err(S3Error::malformed_xml()),
    }
    let b = bucket.to_owned();
    blocking(state, move |store| store.set_versioning(&b, &status, config.mfa_delete.as_deref()))
        .await?
        .map_err(|e| store_error(e, bucket))?;
    Ok(no_body(StatusCode::OK))
}

pub async fn get_bucket_versioning(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    let b = bucket.to_owned();
    let info = blocking(state, move |store| store.bucket(&b)).await??.ok_or_else(|| S3Error::no_such_bucket(bucket))?;
    let mut x = Xml::document();
    x.root("VersioningConfiguration");
    x.leaf_opt("Status", info.versioning.as_deref());
    x.leaf_opt("MfaDelete", info.mfa_delete.as_deref());
    x.close("VersioningConfiguration");
    Ok(xml_response(x.finish()))
}

/// The version a request names with `?versionId=`: `None` for the current one,
/// `Some(None)` for the null version. Ids firelake cannot have minted are refused here.
pub fn requested(req: &Req) -> Result<Option<Option<String>>> {
    let Some(id) = req.query.get("versionId") else { return Ok(None) };
    parse_id(id, "versionId").map(Some)
}

/// What a read of the version `wanted` (see [`requested`]) of a key finds.
pub struct Lookup {
    pub versioning: Versioning,
    pub found: Option<Found>,
    /// When the current version was asked for and is a delete marker: the marker's id.
    pub current_marker: Option<Option<String>>,
}

/// Looks up the version `wanted` of a key (`None`: the current one). A non-null id in a
/// bucket never versioned finds nothing; the callers answer that as they must.
pub async fn lookup(state: &Arc<S3State>, bucket: &str, key: &str, wanted: Option<Option<String>>) -> Result<Lookup> {
    let (b, k) = (bucket.to_owned(), key.to_owned());
    blocking(state, move |store| -> crate::store::Result<Lookup> {
        let versioning = store.versioning(&b)?;
        let mut current_marker = None;
        let found = match &wanted {
            None => match store.open_object(&b, &k)? {
                Some((file, meta)) => Some(Found::Object(file, Box::new(meta))),
                None => {
                    if versioning != Versioning::Unversioned {
                        current_marker = store.current_marker(&b, &k)?.map(|(id, _)| id);
                    }
                    None
                }
            },
            Some(Some(_)) if versioning == Versioning::Unversioned => None,
            Some(id) => store.open_version(&b, &k, id.as_deref())?,
        };
        Ok(Lookup { versioning, found, current_marker })
    })
    .await?
    .map_err(|e| store_error(e, bucket))
}

/// A version id sent by a client (`null` is the null version).
pub fn parse_id(id: &str, argument: &str) -> Result<Option<String>> {
    if id.is_empty() {
        return Err(S3Error::invalid_argument("Version id cannot be the empty string", argument, id));
    }
    if !valid_version_id(id) {
        return Err(S3Error::invalid_argument("Invalid version id specified", argument, id));
    }
    Ok((id != "null").then(|| id.to_owned()))
}

/// A bucket never versioned has only null versions: another id names nothing there.
pub fn check_unversioned(state: Versioning, requested: &Option<Option<String>>) -> Result<()> {
    match requested {
        Some(Some(id)) if state == Versioning::Unversioned => {
            Err(S3Error::invalid_argument("Invalid version id specified", "versionId", id))
        }
        _ => Ok(()),
    }
}

/// The `x-amz-version-id` of an answer about a version: none in a bucket never versioned.
pub fn header(state: Versioning, version_id: Option<&str>) -> Option<String> {
    (state != Versioning::Unversioned).then(|| version_id.unwrap_or("null").to_owned())
}

/// Changes the metadata (tags, ACL) of the version a request names, or of the current
/// one; answers the changed metadata and the `x-amz-version-id` to send.
pub async fn change_meta(
    state: &Arc<S3State>,
    req: &Req,
    bucket: &str,
    key: &str,
    method: &'static str,
    change: impl FnOnce(&mut ObjectMeta) + Send + 'static,
) -> Result<(ObjectMeta, Option<String>)> {
    let requested = requested(req)?;
    let (b, k, wanted) = (bucket.to_owned(), key.to_owned(), requested.clone());
    let (state_now, changed) = blocking(state, move |store| -> crate::store::Result<_> {
        let state_now = store.versioning(&b)?;
        let changed = match &wanted {
            None => store.update_meta(&b, &k, change)?.map(|meta| Changed::Object(Box::new(meta))),
            Some(Some(_)) if state_now == Versioning::Unversioned => None,
            Some(id) => store.update_version_meta(&b, &k, id.as_deref(), change)?,
        };
        Ok((state_now, changed))
    })
    .await?
    .map_err(|e| store_error(e, bucket))?;
    check_unversioned(state_now, &requested)?;
    match (changed, requested) {
        (Some(Changed::Object(meta)), _) => {
            let id = header(state_now, meta.version_id.as_deref());
            Ok((*meta, id))
        }
        (Some(Changed::Marker { last_modified_ms }), Some(id)) => Err(marker_not_allowed(method, id.as_deref(), last_modified_ms)),
        (Some(Changed::Marker { .. }) | None, None) => Err(S3Error::no_such_key(key)),
        (None, Some(id)) => Err(no_such_version(key, id.as_deref())),
    }
}

/// `NoSuchVersion` for a well-formed id that names no version of the key.
pub fn no_such_version(key: &str, id: Option<&str>) -> S3Error {
    S3Error::new(Code::NoSuchVersion, "The specified version does not exist.").with("Key", key).with("VersionId", id.unwrap_or("null"))
}

/// The answer to a GET, HEAD or tagging request naming a delete marker by its id.
pub fn marker_not_allowed(method: &str, version_id: Option<&str>, last_modified_ms: i64) -> S3Error {
    S3Error::new(Code::MethodNotAllowed, "The specified method is not allowed against this resource.")
        .with("Method", method)
        .with("ResourceType", "DeleteMarker")
        .header("x-amz-delete-marker", "true")
        .header("x-amz-version-id", version_id.unwrap_or("null"))
        .header("last-modified", crate::s3::get::http_date(last_modified_ms))
        .header("allow", "DELETE")
}

/// NoSuchKey for a key whose current version is a delete marker.
pub fn deleted_key(key: &str, version_id: Option<&str>) -> S3Error {
    S3Error::no_such_key(key).header("x-amz-delete-marker", "true").header("x-amz-version-id", version_id.unwrap_or("null"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids() {
        assert_eq!(parse_id("null", "versionId").unwrap(), None);
        let minted = crate::store::new_version_id();
        assert_eq!(parse_id(&minted, "versionId").unwrap(), Some(minted.clone()));
        assert!(crate::store::new_version_id() > minted, "ids sort by age");
        for bad in ["", "v1", "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", &minted.to_uppercase()] {
            assert_eq!(parse_id(bad, "versionId").unwrap_err().code, Code::InvalidArgument, "{bad}");
        }
    }
}
