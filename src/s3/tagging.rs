//! Tags: the `<Tagging>` document and the `x-amz-tagging` header, their limits, and
//! Get/Put/DeleteObjectTagging (bucket tagging is in `bucket`).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::Deserialize;

use crate::http::{Body, empty};
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::common::{parse_xml, read_small_body, xml_response};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::router::check_key;
use crate::s3::versioning;
use crate::s3::xml::Xml;

/// Most tags on one object.
pub const OBJECT_TAGS_MAX: usize = 10;

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

pub async fn get_object_tagging(state: &Arc<S3State>, req: &Req, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let (versioning_state, _, meta) = crate::s3::get::open_requested(state, req, bucket, key, "GET").await?;
    let mut response = xml_response(tagging_xml(&meta.tags));
    if let Some(id) =
        versioning::header(versioning_state, meta.version_id.as_deref()).and_then(|v| http::HeaderValue::from_str(v.as_str()).ok())
    {
        response.headers_mut().insert("x-amz-version-id", id);
    }
    Ok(response)
}

/// Sets the tags of the version the request names (or the current one).
async fn set_object_tags(
    state: &Arc<S3State>,
    req: &Req,
    bucket: &str,
    key: &str,
    method: &'static str,
    tags: Vec<(String, String)>,
    status: StatusCode,
) -> Result<Response<Body>> {
    let (_, version) = versioning::change_meta(state, req, bucket, key, method, move |meta| meta.tags = tags).await?;
    let mut response = Response::builder().status(status);
    if let Some(id) = version {
        response = response.header("x-amz-version-id", id);
    }
    response.body(empty()).map_err(S3Error::internal)
}

pub async fn put_object_tagging(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let bytes = read_small_body(req, body).await?;
    let tags = parse_tagging(&bytes, OBJECT_TAGS_MAX)?;
    set_object_tags(state, req, bucket, key, "PUT", tags, StatusCode::OK).await
}

pub async fn delete_object_tagging(state: &Arc<S3State>, req: &Req, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    set_object_tags(state, req, bucket, key, "DELETE", Vec::new(), StatusCode::NO_CONTENT).await
}
