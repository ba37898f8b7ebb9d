//! firelake's own endpoints, under `/_firelake/` on path-style requests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};

use crate::http::{Body, RequestCtx, full};

/// What firelake's own endpoints reach: the delivery streams (flush, status, reset), the
/// store (reset, health) and what the health answer reports.
pub struct AdminState {
    /// The Firehose protocol's state: `/_firelake/cloudwatch-logs` puts through it.
    pub firehose: Arc<crate::firehose::FirehoseState>,
    pub store: Arc<crate::store::Store>,
    pub started: std::time::Instant,
    pub durability: crate::store::Durability,
}

/// How long `POST /_firelake/flush` waits for delivery.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest body of `POST /_firelake/cloudwatch-logs` read; the record limit itself
/// (1,024,000 bytes) is Firehose's, checked as PutRecord checks it.
const CLOUDWATCH_RECORD_BYTES_MAX: usize = 2 * 1024 * 1024;

pub async fn handle(state: &AdminState, ctx: &RequestCtx, parts: http::request::Parts, body: Incoming) -> Response<Body> {
    match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/_firelake/cloudwatch-logs") => {
            let query = crate::s3::router::Query::parse(parts.uri.query());
            let Some(name) = query.get("stream") else {
                return json(StatusCode::BAD_REQUEST, ctx, serde_json::json!({ "error": "name the delivery stream: ?stream=NAME" }));
            };
            let data = match crate::http::read_body_limited(body, CLOUDWATCH_RECORD_BYTES_MAX).await {
                Ok(data) => data,
                Err(err) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        ctx,
                        serde_json::json!({ "error": format!("the record could not be read: {err:?}") }),
                    );
                }
            };
            match crate::firehose::put_from_cloudwatch_logs(&state.firehose, ctx, name, data).await {
                Ok(()) => json(StatusCode::OK, ctx, serde_json::json!({ "accepted": 1 })),
                Err(err) => err.to_response(ctx),
            }
        }
        (method, path @ ("/_firelake/flush" | "/_firelake/reset" | "/_firelake/cloudwatch-logs")) if method != Method::POST => {
            method_not_allowed(ctx, "POST", method, path)
        }
        (method, path @ ("/_firelake/streams" | "/_firelake/health")) if method != Method::GET => {
            method_not_allowed(ctx, "GET", method, path)
        }
        (&Method::POST, "/_firelake/flush") => {
            let query = crate::s3::router::Query::parse(parts.uri.query());
            let name = query.get("stream");
            let outcomes = state.firehose.firehose.flush(name, FLUSH_TIMEOUT).await;
            if let Some(name) = name
                && outcomes.is_empty()
            {
                return json(StatusCode::NOT_FOUND, ctx, serde_json::json!({ "error": format!("no delivery stream named {name}") }));
            }
            let failed: Vec<serde_json::Value> = outcomes
                .iter()
                .filter_map(|(stream, outcome)| outcome.as_ref().err().map(|why| serde_json::json!({ "stream": stream, "error": why })))
                .collect();
            let flushed: Vec<&String> = outcomes.iter().filter(|(_, o)| o.is_ok()).map(|(s, _)| s).collect();
            let status = if failed.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            json(status, ctx, serde_json::json!({ "flushed": flushed, "failed": failed }))
        }
        (&Method::GET, "/_firelake/streams") => json(StatusCode::OK, ctx, state.firehose.firehose.status()),
        (&Method::POST, "/_firelake/reset") => match reset(state) {
            Ok(()) => json(StatusCode::OK, ctx, serde_json::json!({ "reset": true })),
            Err(err) => json(StatusCode::INTERNAL_SERVER_ERROR, ctx, serde_json::json!({ "error": err.to_string() })),
        },
        (&Method::GET, "/_firelake/health") => json(
            StatusCode::OK,
            ctx,
            serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": state.started.elapsed().as_secs_f64(),
                "data_dir": state.store.root().display().to_string(),
                "durability": state.durability,
            }),
        ),
        (_, path) => {
            json(StatusCode::NOT_FOUND, ctx, serde_json::json!({ "error": format!("no firelake endpoint {} {path}", parts.method) }))
        }
    }
}

fn method_not_allowed(ctx: &RequestCtx, allow: &str, method: &Method, path: &str) -> Response<Body> {
    let mut response =
        json(StatusCode::METHOD_NOT_ALLOWED, ctx, serde_json::json!({ "error": format!("{path} takes {allow}, not {method}") }));
    response.headers_mut().insert("allow", http::HeaderValue::from_static(if allow == "POST" { "POST" } else { "GET" }));
    response
}

/// Deletes every delivery stream (discarding its buffer), then every bucket.
pub fn reset(state: &AdminState) -> std::io::Result<()> {
    tokio::task::block_in_place(|| {
        state.firehose.firehose.reset()?;
        state.store.reset()
    })
}

fn json(status: StatusCode, ctx: &RequestCtx, value: serde_json::Value) -> Response<Body> {
    crate::http::response(status, &[("content-type", "application/json"), ("x-amz-request-id", &ctx.request_id)], full(value.to_string()))
}

/// `firelake healthcheck`: exit 0 when `url` answers `/_firelake/health` with 200.
/// Plain HTTP over a socket, so a distroless image needs no curl.
pub fn healthcheck(url: &str) -> ExitCode {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let ask = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(authority)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET /_firelake/health HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.take(64 * 1024).read_to_string(&mut response)?;
        Ok(response.starts_with("HTTP/1.1 200"))
    };
    match ask() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("firelake healthcheck: {url} answered, but not healthy");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("firelake healthcheck: {url}: {err}");
            ExitCode::FAILURE
        }
    }
}
