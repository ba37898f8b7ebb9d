//! Firehose errors: each knows its `__type`, HTTP status and message, and
//! [`FirehoseError::to_response`] is the only place they become bytes.

use hyper::{Response, StatusCode};

use crate::http::{Body, RequestCtx, full};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirehoseError {
    UnknownOperation,
    /// The body is not JSON of the right types.
    Serialization(String),
    /// A model constraint failed; the message is the Coral text.
    Validation(String),
    InvalidArgument(String),
    ResourceNotFound(String),
    ResourceInUse(String),
    LimitExceeded(String),
    ConcurrentModification(String),
    /// Throttled or out of capacity (HTTP 500, retried by the SDKs).
    ServiceUnavailable(String),
    Internal,
}

pub type Result<T, E = FirehoseError> = std::result::Result<T, E>;

impl FirehoseError {
    pub fn error_type(&self) -> &'static str {
        match self {
            FirehoseError::UnknownOperation => "UnknownOperationException",
            FirehoseError::Serialization(_) => "SerializationException",
            FirehoseError::Validation(_) => "ValidationException",
            FirehoseError::InvalidArgument(_) => "InvalidArgumentException",
            FirehoseError::ResourceNotFound(_) => "ResourceNotFoundException",
            FirehoseError::ResourceInUse(_) => "ResourceInUseException",
            FirehoseError::LimitExceeded(_) => "LimitExceededException",
            FirehoseError::ConcurrentModification(_) => "ConcurrentModificationException",
            FirehoseError::ServiceUnavailable(_) => "ServiceUnavailableException",
            FirehoseError::Internal => "InternalFailure",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            FirehoseError::ServiceUnavailable(_) | FirehoseError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            FirehoseError::UnknownOperation => "",
            FirehoseError::Internal => "An internal error occurred; please try again.",
            FirehoseError::Serialization(m)
            | FirehoseError::Validation(m)
            | FirehoseError::InvalidArgument(m)
            | FirehoseError::ResourceNotFound(m)
            | FirehoseError::ResourceInUse(m)
            | FirehoseError::LimitExceeded(m)
            | FirehoseError::ConcurrentModification(m)
            | FirehoseError::ServiceUnavailable(m) => m,
        }
    }

    pub fn to_response(&self, ctx: &RequestCtx) -> Response<Body> {
        if self.status().is_server_error() {
            tracing::warn!(error = self.error_type(), message = self.message(), "firehose request failed");
        } else {
            tracing::debug!(error = self.error_type(), message = self.message(), "firehose request refused");
        }
        let mut body = serde_json::json!({ "__type": self.error_type() });
        if !self.message().is_empty() {
            body["message"] = serde_json::Value::String(self.message().to_owned());
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

impl From<std::io::Error> for FirehoseError {
    #[track_caller]
    fn from(err: std::io::Error) -> FirehoseError {
        if err.kind() == std::io::ErrorKind::StorageFull {
            tracing::error!(%err, location = %std::panic::Location::caller(), "disk full");
            return FirehoseError::ServiceUnavailable(
                "firelake's data directory is out of space; the records were not accepted".to_owned(),
            );
        }
        tracing::error!(%err, location = %std::panic::Location::caller(), "io error");
        FirehoseError::Internal
    }
}
