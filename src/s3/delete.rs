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
use crate::s3::xml::Xml;

pub async fn delete_object(state: &Arc<S3State>, req: &Req, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    // Without versioning there is only the current object, and the null version is it:
    // any other version id names nothing, and must not delete the current object.
    if let Some(version) = req.query.get("versionId")
        && version != "null"
    {
        return Err(S3Error::invalid_argument("Invalid version id specified", "versionId", version));
    }
    let conditions = WriteConditions::of_delete(req, key);
    let (b, k) = (bucket.to_owned(), key.to_owned());
    blocking(state, move |store| store.delete_object_if(&b, &k, conditions.as_ref())).await?.map_err(|e| store_error(e, bucket))??;
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
                    let conditions = entry.etag.as_deref().map(|etag| WriteConditions::if_match(&entry.key, etag));
                    match store.delete_object_if(&b, &entry.key, conditions.as_ref()) {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(refused)) => Err((refused.code.as_str(), refused.message)),
                        Err(err) => Err(("InternalError", err.to_string())),
                    }
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
