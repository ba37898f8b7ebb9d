//! The Firehose JSON protocol (AWS JSON 1.1, `X-Amz-Target: Firehose_20150804.<Op>`).
//!
//! Delivery streams are not emulated yet: every target answers
//! `UnknownOperationException`, in Firehose's error shape.

pub mod error;

use hyper::Response;
use hyper::body::Incoming;

use crate::http::{Body, RequestCtx};
use crate::server::State;
use error::FirehoseError;

/// The `X-Amz-Target` prefix of every Firehose operation.
pub const TARGET_PREFIX: &str = "Firehose_20150804.";

pub async fn handle(_state: &State, ctx: &RequestCtx, parts: http::request::Parts, _body: Incoming) -> Response<Body> {
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or(target);
    tracing::info!(operation, "firehose operation not emulated yet");
    FirehoseError::UnknownOperation.to_response(ctx)
}
