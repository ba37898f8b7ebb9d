//! GetObjectAttributes.

use std::sync::Arc;

use hyper::Response;

use crate::http::Body;
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::checksum;
use crate::s3::common::xml_response;
use crate::s3::error::{Result, S3Error};
use crate::s3::get::last_modified;
use crate::s3::router::check_key;
use crate::s3::xml::Xml;

pub async fn get_object_attributes(state: &Arc<S3State>, req: &Req, bucket: &str, key: &str) -> Result<Response<Body>> {
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
    let number = |name: &str, default: u32, max: u32| -> Result<u32> {
        match req.header(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| S3Error::invalid_argument(format!("Provided {name} not an integer or within integer range"), name, v)),
        }
    };
    let max_parts = number("x-amz-max-parts", 1000, u32::MAX)?.min(1000);
    let marker = number("x-amz-part-number-marker", 0, 10_000)?;
    let (versioning_state, _, meta) = crate::s3::get::open_requested(state, req, bucket, key, "GET").await?;
    let has = |name: &str| wanted.iter().any(|w| w == name);
    let mut x = Xml::document();
    x.root("GetObjectAttributesResponse");
    if has("ETag") {
        x.leaf("ETag", &meta.etag);
    }
    if has("Checksum") && !meta.checksums.is_empty() {
        // S3 shows a COMPOSITE value here without its `-N`.
        let values: std::collections::BTreeMap<String, String> =
            meta.checksums.iter().map(|(name, value)| (name.clone(), value.split('-').next().unwrap_or(value).to_owned())).collect();
        x.node("Checksum", |x| {
            checksum::write_elements(x, &values);
            x.leaf_opt("ChecksumType", meta.checksum_type.as_deref());
        });
    }
    if has("ObjectParts") && !meta.part_sizes.is_empty() {
        let count = meta.part_sizes.len();
        let (page, truncated) =
            (marker as usize..count.min(marker as usize + max_parts as usize), marker as usize + (max_parts as usize) < count);
        // As the model says of general purpose buckets: the parts are listed only when
        // the upload used a checksum algorithm.
        let listed = !meta.part_checksums.is_empty();
        x.node("ObjectParts", |x| {
            x.leaf("PartsCount", &count.to_string());
            x.leaf("PartNumberMarker", &marker.to_string());
            x.leaf("NextPartNumberMarker", &page.end.max(marker as usize).to_string());
            x.leaf("MaxParts", &max_parts.to_string());
            x.leaf("IsTruncated", if truncated { "true" } else { "false" });
            if listed {
                for i in page.clone() {
                    x.node("Part", |x| {
                        x.leaf("PartNumber", &(i + 1).to_string());
                        x.leaf("Size", &meta.part_sizes[i].to_string());
                        if let Some((algorithm, value)) = checksum::of_part(&meta, i + 1) {
                            x.leaf(&algorithm.element(), value);
                        }
                    });
                }
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
    let headers = response.headers_mut();
    if let Ok(date) = last_modified(&meta).parse() {
        headers.insert("last-modified", date);
    }
    if let Some(id) = crate::s3::versioning::header(versioning_state, meta.version_id.as_deref()).and_then(|v| v.parse().ok()) {
        headers.insert("x-amz-version-id", id);
    }
    Ok(response)
}
