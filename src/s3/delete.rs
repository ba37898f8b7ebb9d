//! DeleteObject and DeleteObjects.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::Deserialize;

use crate::http::{Body, empty};
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::common::{blocking, check_small_body_digest, parse_xml, read_small_body, require_bucket, store_error, xml_response};
use crate::s3::error::{Result, S3Error};
use crate::s3::preconditions::WriteConditions;
use crate::s3::router::check_key;
use crate::s3::versioning;
use crate::s3::xml::Xml;
use crate::store::Versioning;

pub async fn delete_object(state: &Arc<S3State>, req: &Req, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let requested = versioning::requested(req)?;
    let conditions = WriteConditions::of_delete(req, key);
    let (b, k, wanted) = (bucket.to_owned(), key.to_owned(), requested.clone());
    let deleted = blocking(state, move |store| -> crate::store::Result<_> {
        let state_now = store.versioning(&b)?;
        // Without versioning only the null version exists: another id names nothing, and
        // must never delete the current object.
        if let Err(refused) = versioning::check_unversioned(state_now, &wanted) {
            return Ok(Err(refused));
        }
        Ok(match wanted {
            None => store.delete_object_if(&b, &k, conditions.as_ref())?,
            Some(id) => Ok(store.delete_version(&b, &k, id.as_deref())?),
        })
    })
    .await?
    .map_err(|e| store_error(e, bucket))??;
    let mut response = Response::builder().status(StatusCode::NO_CONTENT);
    if deleted.delete_marker {
        response = response.header("x-amz-delete-marker", "true");
    }
    // A delete by id echoes it; a delete marker added names its own.
    let id = match &requested {
        Some(id) => Some(id.as_deref().unwrap_or("null").to_owned()),
        None if deleted.delete_marker => Some(deleted.version_id.as_deref().unwrap_or("null").to_owned()),
        None => None,
    };
    if let Some(id) = id {
        response = response.header("x-amz-version-id", id);
    }
    response.body(empty()).map_err(S3Error::internal)
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
    /// Delete only if the current object has this ETag (a conditional delete).
    #[serde(rename = "ETag")]
    etag: Option<String>,
}

pub async fn delete_objects(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    require_bucket(state, bucket).await?;
    let bytes = read_small_body(req, body).await?;
    check_small_body_digest(req, &bytes, true)?;
    let delete: Delete = parse_xml(&bytes)?;
    if delete.objects.is_empty() || delete.objects.len() > 1000 {
        return Err(S3Error::malformed_xml());
    }
    let b = bucket.to_owned();
    let outcomes = blocking(state, move |store| -> crate::store::Result<_> {
        let state_now = store.versioning(&b)?;
        Ok(delete
            .objects
            .into_iter()
            .map(|entry| {
                let version = entry.version_id.as_deref().map(|id| versioning::parse_id(id, "versionId"));
                let outcome = match version {
                    Some(Err(_)) => Err(("NoSuchVersion", "The specified version does not exist.".to_owned())),
                    Some(Ok(Some(_))) if state_now == Versioning::Unversioned => {
                        Err(("NoSuchVersion", "The specified version does not exist.".to_owned()))
                    }
                    _ if entry.key.len() > crate::store::keypath::KEY_BYTES_MAX => {
                        Err(("KeyTooLongError", "Your key is too long".to_owned()))
                    }
                    Some(Ok(id)) => store.delete_version(&b, &entry.key, id.as_deref()).map_err(|err| ("InternalError", err.to_string())),
                    None => {
                        let conditions = entry.etag.as_deref().map(|etag| WriteConditions::if_match(&entry.key, etag));
                        match store.delete_object_if(&b, &entry.key, conditions.as_ref()) {
                            Ok(Ok(deleted)) => Ok(deleted),
                            Ok(Err(refused)) => Err((refused.code.as_str(), refused.message)),
                            Err(err) => Err(("InternalError", err.to_string())),
                        }
                    }
                };
                (entry, outcome)
            })
            .collect::<Vec<_>>())
    })
    .await?
    .map_err(|e: crate::store::StoreError| store_error(e, bucket))?;
    let mut x = Xml::document();
    x.root("DeleteResult");
    for (entry, outcome) in outcomes {
        match outcome {
            Ok(_) if delete.quiet => {}
            Ok(deleted) => x.node("Deleted", |x| {
                x.leaf("Key", &entry.key);
                x.leaf_opt("VersionId", entry.version_id.as_deref());
                if deleted.delete_marker {
                    x.leaf("DeleteMarker", "true");
                    // A marker added names its own id; a marker deleted by id, that id.
                    let marker_id =
                        entry.version_id.clone().or_else(|| Some(deleted.version_id.clone().unwrap_or_else(|| "null".to_owned())));
                    x.leaf_opt("DeleteMarkerVersionId", marker_id.as_deref());
                }
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
