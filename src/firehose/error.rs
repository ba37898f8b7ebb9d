//! Firehose errors: each knows its `__type`, HTTP status and message, and
//! [`FirehoseError::to_response`] is the only place they become bytes.

use hyper::{Response, StatusCode};

use crate::http::{Body, RequestCtx, full};

#[derive(Debug)]
pub enum FirehoseError {
    UnknownOperation,
}

impl FirehoseError {
    pub fn error_type(&self) -> &'static str {
        match self {
            FirehoseError::UnknownOperation => "UnknownOperationException",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            FirehoseError::UnknownOperation => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(&self) -> String {
        match self {
            FirehoseError::UnknownOperation => String::new(),
        }
    }

    pub fn to_response(&self, ctx: &RequestCtx) -> Response<Body> {
        let mut body = serde_json::json!({ "__type": self.error_type() });
        let message = self.message();
        if !message.is_empty() {
            body["message"] = serde_json::Value::String(message);
        }
        Response::builder()
            .status(self.status())
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amzn-requestid", &ctx.request_id)
            .header("x-amzn-errortype", self.error_type())
            .body(full(body.to_string()))
            .expect("static headers are valid")
    }
}
