//! Helpers both protocols use: the response body type, bounded body reads, request
//! ids, and what a request's signature says about its caller.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use rand::Rng;

use crate::config::{Config, valid_account_id};

/// The body of every response.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed_unsync()
}

/// A response with `headers`. A value that cannot be a header (none of firelake's should
/// be) is left out and logged: a response is never a panic.
pub fn response(status: hyper::StatusCode, headers: &[(&'static str, &str)], body: Body) -> hyper::Response<Body> {
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        match hyper::header::HeaderValue::from_str(value) {
            Ok(value) => {
                response.headers_mut().append(*name, value);
            }
            Err(_) => tracing::warn!(header = name, "a response header value is not valid; left out"),
        }
    }
    response
}

pub fn empty() -> Body {
    Empty::new().map_err(|never: Infallible| match never {}).boxed_unsync()
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Io(String),
}

tokio::task_local! {
    /// How long a request body may send nothing before it is refused. `server` sets it
    /// around each request, so that every protocol's body reads share the limit.
    static BODY_IDLE: Duration;
}

/// Runs `request` (the handling of one request) with `idle` as its body's idle limit.
pub async fn with_body_idle_limit<F: Future>(idle: Duration, request: F) -> F::Output {
    BODY_IDLE.scope(idle, request).await
}

/// Why the next piece of a body could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The client sent nothing for this long (S3's `RequestTimeout`).
    Idle(Duration),
    Io(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Idle(idle) => write!(f, "the client sent no data for {} ms", idle.as_millis()),
            FrameError::Io(err) => f.write_str(err),
        }
    }
}

/// The body's next data, `None` at its end. A client that sends nothing within the
/// request's idle limit gets [`FrameError::Idle`], so a stalled upload never holds its
/// connection (and its slot under `--max-connections`) for longer than that.
pub async fn next_data(body: &mut Incoming) -> Option<Result<Bytes, FrameError>> {
    loop {
        let frame = match BODY_IDLE.try_with(|idle| *idle) {
            Ok(idle) => match tokio::time::timeout(idle, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => return Some(Err(FrameError::Idle(idle))),
            },
            Err(_) => body.frame().await,
        };
        match frame? {
            Ok(frame) => match frame.into_data() {
                Ok(data) => return Some(Ok(data)),
                // Trailers of a chunked transfer carry no data.
                Err(_) => continue,
            },
            Err(err) => return Some(Err(FrameError::Io(err.to_string()))),
        }
    }
}

/// Reads a whole body into memory, refusing one longer than `limit` bytes or one that
/// stalls past the request's idle limit.
pub async fn read_body_limited(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match read_limited(&mut body, limit).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(BodyError::TooLarge),
        Err(err) => Err(BodyError::Io(err.to_string())),
    }
}

/// Reads a whole body into memory: `None` when it is longer than `limit` bytes.
pub async fn read_limited(body: &mut Incoming, limit: usize) -> Result<Option<Bytes>, FrameError> {
    if body.size_hint().lower() > limit as u64 {
        return Ok(None);
    }
    // The announced length, up to 1 MiB: a client that announces much and sends nothing
    // holds little.
    let mut out = BytesMut::with_capacity(body.size_hint().lower().min(1 << 20) as usize);
    while let Some(data) = next_data(body).await {
        let data = data?;
        if out.len() + data.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&data);
    }
    Ok(Some(out.freeze()))
}

/// Per-request facts both protocols need.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The id in `x-amz-request-id` / `x-amzn-RequestId` and in error bodies.
    pub request_id: String,
    /// The account the request acts for.
    pub account: String,
    /// The region named by the request's signature, or the configured one.
    pub region: String,
}

impl RequestCtx {
    pub fn new(config: &Config, parts: &http::request::Parts) -> RequestCtx {
        let credential = credential(parts);
        let access_key = credential.as_ref().map(|c| c.access_key.as_str()).unwrap_or("");
        let account = if valid_account_id(access_key) { access_key.to_owned() } else { config.account_id.clone() };
        let region = credential.map(|c| c.region).filter(|r| !r.is_empty()).unwrap_or_else(|| config.region.clone());
        RequestCtx { request_id: request_id(), account, region }
    }
}

/// S3-style request id: 16 upper-case hex digits.
pub fn request_id() -> String {
    format!("{:016X}", rand::thread_rng().r#gen::<u64>())
}

/// S3's `x-amz-id-2`: an opaque base64 token.
pub fn host_id() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill(&mut bytes[..]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The credential scope of a SigV4 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
}

/// The credential of the `Authorization` header, or of a presigned URL's `X-Amz-Credential`.
pub fn credential(parts: &http::request::Parts) -> Option<Credential> {
    if let Some(auth) = parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let rest = auth.strip_prefix("AWS4-HMAC-SHA256")?;
        let scope = rest.split(',').find_map(|field| field.trim().strip_prefix("Credential="))?;
        return parse_credential(scope);
    }
    let query = parts.uri.query()?;
    let value = query.split('&').find_map(|pair| pair.strip_prefix("X-Amz-Credential="))?;
    let decoded = percent_encoding::percent_decode_str(value).decode_utf8().ok()?;
    parse_credential(&decoded)
}

/// Parses `AKID/20260101/us-east-1/s3/aws4_request`.
pub fn parse_credential(scope: &str) -> Option<Credential> {
    let mut fields = scope.trim().rsplitn(5, '/');
    let terminator = fields.next()?;
    let service = fields.next()?;
    let region = fields.next()?;
    let date = fields.next()?;
    let access_key = fields.next()?;
    if terminator != "aws4_request" || access_key.is_empty() || access_key.len() > 128 {
        return None;
    }
    Some(Credential { access_key: access_key.to_owned(), date: date.to_owned(), region: region.to_owned(), service: service.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials() {
        assert_eq!(
            parse_credential("AKIA/20260101/eu-west-1/s3/aws4_request"),
            Some(Credential { access_key: "AKIA".into(), date: "20260101".into(), region: "eu-west-1".into(), service: "s3".into() })
        );
        assert_eq!(parse_credential("AKIA/20260101/eu-west-1/s3"), None);
        assert_eq!(parse_credential("/20260101/eu-west-1/s3/aws4_request"), None);
        assert_eq!(parse_credential(""), None);
    }
}
