//! Bucket policies (Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus) and S3 Block
//! Public Access (Put/Get/DeletePublicAccessBlock), stored with the bucket.
//!
//! A policy is validated as AWS validates one (JSON, its statements' required fields,
//! resources of this bucket) and kept verbatim; it is not enforced. BlockPublicPolicy
//! refuses a public policy, as on AWS.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::http::{Body, full};
use crate::s3::acl::public_by_acl;
use crate::s3::common::{blocking, change_bucket, check_small_body_digest, parse_xml, read_small_body, xml_response};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::xml::Xml;
use crate::s3::{Req, S3State};
use crate::store::{BucketInfo, PublicAccessBlock};

/// AWS's limit on a bucket policy.
const POLICY_BYTES_MAX: usize = 20 * 1024;

async fn bucket_info(state: &Arc<S3State>, bucket: &str) -> Result<BucketInfo> {
    let name = bucket.to_owned();
    blocking(state, move |store| store.bucket(&name)).await??.ok_or_else(|| S3Error::no_such_bucket(bucket))
}

fn malformed(message: &str) -> S3Error {
    S3Error::new(Code::MalformedPolicy, message)
}

/// A JSON value that may be one string or a list of them, as policies write them.
fn strings(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// Whether `pattern` (with IAM's `*` and `?`) matches `text`.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&pattern[1..], text) || (!text.is_empty() && wildcard(pattern, &text[1..])),
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => wildcard(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// Validates a bucket policy as S3 does, with its messages; answers whether it is
/// public (an Allow for every principal, with no condition).
pub fn validate(bytes: &[u8], bucket: &str) -> Result<bool> {
    if bytes.first() != Some(&b'{') {
        return Err(malformed("Policies must be valid JSON and the first byte must be '{'"));
    }
    if bytes.len() > POLICY_BYTES_MAX {
        return Err(malformed("Policies must be less than 20 KB"));
    }
    let policy: Value = serde_json::from_slice(bytes).map_err(|_| malformed("This policy contains invalid Json"))?;
    let Some(object) = policy.as_object() else { return Err(malformed("This policy contains invalid Json")) };
    if let Some(version) = object.get("Version")
        && !matches!(version.as_str(), Some("2012-10-17" | "2008-10-17"))
    {
        return Err(malformed("The policy must contain a valid version string"));
    }
    let statements = match object.get("Statement") {
        Some(Value::Array(list)) if !list.is_empty() => list.iter().collect::<Vec<_>>(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return Err(malformed("Missing required field Statement")),
    };
    let mut public = false;
    for statement in statements {
        let Some(statement) = statement.as_object() else { return Err(malformed("This policy contains invalid Json")) };
        let allow = match statement.get("Effect").and_then(Value::as_str) {
            Some("Allow") => true,
            Some("Deny") => false,
            Some(other) => return Err(malformed(&format!("Invalid effect: {other}"))),
            None => return Err(malformed("Missing required field Effect")),
        };
        let principal = match (statement.get("Principal"), statement.get("NotPrincipal")) {
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => return Err(malformed("Missing required field Principal")),
        };
        let actions = match (statement.get("Action"), statement.get("NotAction")) {
            (Some(a), _) | (None, Some(a)) => strings(a).ok_or_else(|| malformed("Policy has invalid action"))?,
            (None, None) => return Err(malformed("Missing required field Action")),
        };
        if actions.iter().any(|a| *a != "*" && !a.to_ascii_lowercase().starts_with("s3:")) {
            return Err(malformed("Policy has invalid action"));
        }
        let resources = match (statement.get("Resource"), statement.get("NotResource")) {
            (Some(r), _) | (None, Some(r)) => strings(r).ok_or_else(|| malformed("Policy has invalid resource"))?,
            (None, None) => return Err(malformed("Missing required field Resource")),
        };
        for resource in resources {
            let Some(path) = resource.strip_prefix("arn:aws:s3:::") else { return Err(malformed("Policy has invalid resource")) };
            let named = path.split('/').next().unwrap_or_default();
            if !wildcard(named.as_bytes(), bucket.as_bytes()) {
                return Err(malformed("Policy has invalid resource"));
            }
        }
        let everyone = match principal {
            Value::String(p) => p == "*",
            Value::Object(map) => map.get("AWS").and_then(strings).is_some_and(|aws| aws.contains(&"*")),
            _ => false,
        };
        public |= allow && everyone && statement.get("Principal").is_some() && statement.get("Condition").is_none();
    }
    Ok(public)
}

pub async fn put_bucket_policy(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    let info = bucket_info(state, bucket).await?;
    let bytes = read_small_body(req, body).await?;
    check_small_body_digest(req, &bytes, true)?;
    let public = validate(&bytes, bucket)?;
    if public && info.public_access_block.is_some_and(|p| p.block_public_policy) {
        return Err(S3Error::new(Code::AccessDenied, "Access Denied"));
    }
    let policy = String::from_utf8(bytes.to_vec()).map_err(|_| malformed("This policy contains invalid Json"))?;
    change_bucket(state, bucket, StatusCode::NO_CONTENT, move |info| info.policy = Some(policy)).await
}

pub async fn get_bucket_policy(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    match bucket_info(state, bucket).await?.policy {
        Some(policy) => Ok(crate::http::response(StatusCode::OK, &[("content-type", "application/json")], full(policy))),
        None => Err(S3Error::new(Code::NoSuchBucketPolicy, "The bucket policy does not exist").with("BucketName", bucket)),
    }
}

pub async fn delete_bucket_policy(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    change_bucket(state, bucket, StatusCode::NO_CONTENT, |info| info.policy = None).await
}

pub async fn get_bucket_policy_status(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    let info = bucket_info(state, bucket).await?;
    let by_policy = info.policy.as_deref().is_some_and(|p| validate(p.as_bytes(), bucket).unwrap_or(false));
    let public = by_policy || public_by_acl(&info);
    let mut x = Xml::document();
    x.root("PolicyStatus");
    x.leaf("IsPublic", if public { "true" } else { "false" });
    x.close("PolicyStatus");
    Ok(xml_response(x.finish()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PublicAccessBlockConfiguration {
    #[serde(rename = "BlockPublicAcls", default)]
    block_public_acls: bool,
    #[serde(rename = "IgnorePublicAcls", default)]
    ignore_public_acls: bool,
    #[serde(rename = "BlockPublicPolicy", default)]
    block_public_policy: bool,
    #[serde(rename = "RestrictPublicBuckets", default)]
    restrict_public_buckets: bool,
}

pub async fn put_public_access_block(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    bucket_info(state, bucket).await?;
    let bytes = read_small_body(req, body).await?;
    check_small_body_digest(req, &bytes, true)?;
    let c: PublicAccessBlockConfiguration = parse_xml(&bytes)?;
    let block = PublicAccessBlock {
        block_public_acls: c.block_public_acls,
        ignore_public_acls: c.ignore_public_acls,
        block_public_policy: c.block_public_policy,
        restrict_public_buckets: c.restrict_public_buckets,
    };
    change_bucket(state, bucket, StatusCode::OK, move |info| info.public_access_block = Some(block)).await
}

pub async fn get_public_access_block(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    let Some(block) = bucket_info(state, bucket).await?.public_access_block else {
        return Err(S3Error::new(Code::NoSuchPublicAccessBlockConfiguration, "The public access block configuration was not found")
            .with("BucketName", bucket));
    };
    let flag = |on: bool| if on { "true" } else { "false" };
    let mut x = Xml::document();
    x.root("PublicAccessBlockConfiguration");
    x.leaf("BlockPublicAcls", flag(block.block_public_acls));
    x.leaf("IgnorePublicAcls", flag(block.ignore_public_acls));
    x.leaf("BlockPublicPolicy", flag(block.block_public_policy));
    x.leaf("RestrictPublicBuckets", flag(block.restrict_public_buckets));
    x.close("PublicAccessBlockConfiguration");
    Ok(xml_response(x.finish()))
}

pub async fn delete_public_access_block(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    change_bucket(state, bucket, StatusCode::NO_CONTENT, |info| info.public_access_block = None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(policy: &str, expected: std::result::Result<bool, &str>) {
        let got = validate(policy.as_bytes(), "bkt").map_err(|e| e.message);
        assert_eq!(got.as_ref().map_err(String::as_str), expected.as_ref().map_err(|m| *m));
    }

    #[test]
    fn policies() {
        let read = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/*"}]}"#;
        check(read, Ok(true));
        check(&read.replace("\"*\"", r#"{"AWS":"arn:aws:iam::111122223333:root"}"#), Ok(false));
        check(&read.replace(r#""Principal":"*""#, r#""Principal":{"AWS":["*"]}"#), Ok(true));
        check(&read.replace("Allow", "Deny"), Ok(false));
        check(&read.replace("arn:aws:s3:::bkt/*", "arn:aws:s3:::b*"), Ok(true));
        check(" {}", Err("Policies must be valid JSON and the first byte must be '{'"));
        check("{\"Statement\": [", Err("This policy contains invalid Json"));
        check(r#"{"Version":"2012-10-17"}"#, Err("Missing required field Statement"));
        check(&read.replace("2012-10-17", "2020-01-01"), Err("The policy must contain a valid version string"));
        check(&read.replace("Allow", "Maybe"), Err("Invalid effect: Maybe"));
        check(&read.replace(r#""Principal":"*","#, ""), Err("Missing required field Principal"));
        check(&read.replace("s3:GetObject", "ec2:RunInstances"), Err("Policy has invalid action"));
        check(&read.replace("arn:aws:s3:::bkt/*", "arn:aws:s3:::other/*"), Err("Policy has invalid resource"));
        check(&read.replace(r#","Resource":"arn:aws:s3:::bkt/*""#, ""), Err("Missing required field Resource"));
    }
}
