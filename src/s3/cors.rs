//! Bucket CORS: Put/Get/DeleteBucketCors, the OPTIONS preflight, and the CORS headers
//! added to responses for requests that carry an `Origin`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::http::{Body, empty};
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::common::{blocking, change_bucket, parse_xml, read_small_body, require_bucket, xml_response};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::xml::Xml;

const RULES_MAX: usize = 100;
const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct CorsConfiguration {
    #[serde(rename = "CORSRule", default)]
    pub rules: Vec<CorsRule>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct CorsRule {
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "AllowedOrigin", default)]
    pub allowed_origins: Vec<String>,
    #[serde(rename = "AllowedMethod", default)]
    pub allowed_methods: Vec<String>,
    #[serde(rename = "AllowedHeader", default)]
    pub allowed_headers: Vec<String>,
    #[serde(rename = "ExposeHeader", default)]
    pub expose_headers: Vec<String>,
    #[serde(rename = "MaxAgeSeconds", default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i64>,
}

/// `*` matches any run of characters, at most once per pattern, as S3 allows.
fn wildcard(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(value),
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value[..head.len()].eq_ignore_ascii_case(head)
                && value[value.len() - tail.len()..].eq_ignore_ascii_case(tail)
        }
    }
}

impl CorsRule {
    fn allows(&self, origin: &str, method: &str, headers: &[&str]) -> bool {
        self.allowed_origins.iter().any(|o| wildcard(o, origin))
            && self.allowed_methods.iter().any(|m| m == method)
            && headers.iter().all(|h| self.allowed_headers.iter().any(|p| wildcard(p, h)))
    }
}

async fn configuration(state: &Arc<S3State>, bucket: &str) -> Result<Option<CorsConfiguration>> {
    let name = bucket.to_owned();
    let info = blocking(state, move |store| store.bucket(&name)).await??.ok_or_else(|| S3Error::no_such_bucket(bucket))?;
    Ok(info.cors.and_then(|v| serde_json::from_value(v).ok()))
}

pub async fn get_bucket_cors(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    let Some(config) = configuration(state, bucket).await? else {
        return Err(S3Error::new(Code::NoSuchCORSConfiguration, "The CORS configuration does not exist").with("BucketName", bucket));
    };
    let mut x = Xml::document();
    x.root("CORSConfiguration");
    for rule in &config.rules {
        x.node("CORSRule", |x| {
            x.leaf_opt("ID", rule.id.as_deref());
            for v in &rule.allowed_headers {
                x.leaf("AllowedHeader", v);
            }
            for v in &rule.allowed_methods {
                x.leaf("AllowedMethod", v);
            }
            for v in &rule.allowed_origins {
                x.leaf("AllowedOrigin", v);
            }
            for v in &rule.expose_headers {
                x.leaf("ExposeHeader", v);
            }
            x.leaf_opt("MaxAgeSeconds", rule.max_age_seconds.map(|s| s.to_string()).as_deref());
        });
    }
    x.close("CORSConfiguration");
    Ok(xml_response(x.finish()))
}

pub async fn put_bucket_cors(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    require_bucket(state, bucket).await?;
    let bytes = read_small_body(req, body).await?;
    let config: CorsConfiguration = parse_xml(&bytes)?;
    if config.rules.is_empty() || config.rules.len() > RULES_MAX {
        return Err(S3Error::malformed_xml());
    }
    for rule in &config.rules {
        if rule.allowed_origins.is_empty() || rule.allowed_methods.is_empty() {
            return Err(S3Error::malformed_xml());
        }
        if let Some(method) = rule.allowed_methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
            return Err(S3Error::invalid_request(format!("Found unsupported HTTP method in CORS config. Unsupported method is {method}")));
        }
        if let Some(origin) = rule.allowed_origins.iter().find(|o| o.matches('*').count() > 1) {
            return Err(S3Error::invalid_request(format!("AllowedOrigin \"{origin}\" can not have more than one wildcard.")));
        }
        // ExposeHeader values are sent back as a response header: one that cannot be
        // (a control character, a line break) is refused here, not at every request.
        if let Some(header) = rule.expose_headers.iter().find(|h| http::HeaderValue::from_str(h).is_err()) {
            return Err(S3Error::invalid_request(format!(
                "ExposeHeader \"{}\" contains characters not allowed in an HTTP header",
                header.escape_debug()
            )));
        }
    }
    let value = serde_json::to_value(&config).map_err(S3Error::internal)?;
    change_bucket(state, bucket, StatusCode::OK, |info| info.cors = Some(value)).await
}

pub async fn delete_bucket_cors(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    change_bucket(state, bucket, StatusCode::NO_CONTENT, |info| info.cors = None).await
}

pub async fn preflight(state: &Arc<S3State>, req: &Req, bucket: &str) -> Result<Response<Body>> {
    let Some(origin) = req.header("origin") else {
        return Err(S3Error::new(Code::InvalidRequest, "Insufficient information. Origin request header needed."));
    };
    let Some(method) = req.header("access-control-request-method") else {
        return Err(S3Error::new(Code::InvalidRequest, "Invalid Access-Control-Request-Method: null"));
    };
    let requested: Vec<String> = req
        .header("access-control-request-headers")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let headers: Vec<&str> = requested.iter().map(String::as_str).collect();
    let Some(config) = configuration(state, bucket).await? else {
        return Err(S3Error::new(Code::CORSResponse, "CORS is not enabled for this bucket."));
    };
    let Some(rule) = config.rules.iter().find(|r| r.allows(origin, method, &headers)) else {
        return Err(S3Error::new(
            Code::CORSResponse,
            "This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        ));
    };
    let mut builder = Response::builder().status(StatusCode::OK);
    builder = allow_headers(builder, rule, origin);
    if !requested.is_empty() {
        builder = builder.header("access-control-allow-headers", requested.join(", "));
    }
    if let Some(age) = rule.max_age_seconds {
        builder = builder.header("access-control-max-age", age.to_string());
    }
    // A configuration stored before its values were checked may still hold a bad one.
    builder.body(empty()).map_err(S3Error::internal)
}

fn allow_headers(mut builder: http::response::Builder, rule: &CorsRule, origin: &str) -> http::response::Builder {
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    builder = builder
        .header("access-control-allow-origin", if any { "*" } else { origin })
        .header("access-control-allow-methods", rule.allowed_methods.join(", "))
        .header("vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method");
    if !any {
        builder = builder.header("access-control-allow-credentials", "true");
    }
    if !rule.expose_headers.is_empty() {
        builder = builder.header("access-control-expose-headers", rule.expose_headers.join(", "));
    }
    builder
}

/// Adds CORS headers to a response for a request with an `Origin`, when a rule allows it.
pub async fn apply(state: &Arc<S3State>, bucket: &str, origin: &str, method: &Method, response: &mut Response<Body>) {
    if !crate::store::valid_bucket_name(bucket) {
        return;
    }
    let Ok(Some(config)) = configuration(state, bucket).await else { return };
    let Some(rule) = config.rules.iter().find(|r| r.allows(origin, method.as_str(), &[])) else { return };
    let mut builder = Response::builder();
    builder = allow_headers(builder, rule, origin);
    if let Some(headers) = builder.headers_ref() {
        for (name, value) in headers {
            response.headers_mut().insert(name, value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*", "http://a.example"));
        assert!(wildcard("http://*.example", "http://a.example"));
        assert!(!wildcard("http://*.example", "http://a.other"));
        assert!(wildcard("http://a.example", "HTTP://A.EXAMPLE"));
        assert!(!wildcard("ab*ba", "aba"));
    }
}
