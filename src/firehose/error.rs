//! Firehose errors: each knows its `__type`, HTTP status and message, and
//! [`FirehoseError::to_response`] is the only place they become bytes.

use hyper::{Response, StatusCode};

use crate::auth::AuthError;
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
    /// A direct put into a stream whose records must come from CloudWatch Logs.
    InvalidSource(String),
    /// Throttled or out of capacity (HTTP 500, retried by the SDKs).
    ServiceUnavailable(String),
    Internal,
    /// `--auth strict` refused the request's signature.
    Auth(AuthError),
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
            FirehoseError::InvalidSource(_) => "InvalidSourceException",
            FirehoseError::ServiceUnavailable(_) => "ServiceUnavailableException",
            FirehoseError::Internal => "InternalFailure",
            FirehoseError::Auth(err) => err.json_error_type(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            FirehoseError::ServiceUnavailable(_) | FirehoseError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            FirehoseError::Auth(AuthError::Missing) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(&self) -> std::borrow::Cow<'_, str> {
        let text = match self {
            FirehoseError::Auth(err) => return auth_message(err).into(),
            FirehoseError::UnknownOperation => "",
            FirehoseError::Internal => "An internal error occurred; please try again.",
            FirehoseError::Serialization(m)
            | FirehoseError::Validation(m)
            | FirehoseError::InvalidArgument(m)
            | FirehoseError::ResourceNotFound(m)
            | FirehoseError::ResourceInUse(m)
            | FirehoseError::LimitExceeded(m)
            | FirehoseError::ConcurrentModification(m)
            | FirehoseError::InvalidSource(m)
            | FirehoseError::ServiceUnavailable(m) => m,
        };
        text.into()
    }

    pub fn to_response(&self, ctx: &RequestCtx) -> Response<Body> {
        if self.status().is_server_error() {
            tracing::warn!(error = self.error_type(), message = %self.message(), "firehose request failed");
        } else {
            tracing::debug!(error = self.error_type(), message = %self.message(), "firehose request refused");
        }
        let mut body = serde_json::json!({ "__type": self.error_type() });
        if !self.message().is_empty() {
            body["message"] = serde_json::Value::String(self.message().into_owned());
        }
        crate::http::response(
            self.status(),
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amzn-requestid", &ctx.request_id),
                ("x-amzn-errortype", self.error_type()),
            ],
            full(body.to_string()),
        )
    }
}

/// The messages of AWS's JSON services for refused signatures.
fn auth_message(err: &AuthError) -> String {
    let amz = crate::auth::amz_date;
    match err {
        AuthError::Missing => "Missing Authentication Token".to_owned(),
        AuthError::MissingDate => "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".to_owned(),
        AuthError::MalformedHeader(why) | AuthError::MalformedQuery(why) => why.clone(),
        AuthError::MissingHeader(name) => format!("Missing required header: {name}"),
        AuthError::WrongService { expected, .. } => format!("Credential should be scoped to correct service: '{expected}'. "),
        AuthError::UnknownKey { .. } => "The security token included in the request is invalid.".to_owned(),
        AuthError::Mismatch { string_to_sign, canonical_request, .. } => format!(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'{canonical_request}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
        ),
        AuthError::Skewed { request_time, server_time, skew } if request_time < server_time => format!(
            "Signature expired: {} is now earlier than {} ({} - {} min.)",
            amz(*request_time),
            amz(*server_time - *skew),
            amz(*server_time),
            skew.num_minutes()
        ),
        AuthError::Skewed { request_time, server_time, skew } => format!(
            "Signature not yet current: {} is still later than {} ({} + {} min.)",
            amz(*request_time),
            amz(*server_time + *skew),
            amz(*server_time),
            skew.num_minutes()
        ),
        AuthError::Expired { expired_at, server_time, .. } => {
            format!("Signature expired: {} is now earlier than {}", amz(*expired_at), amz(*server_time))
        }
        AuthError::NotYetValid => "Signature not yet current".to_owned(),
        AuthError::UnsupportedMechanism => "Only AWS4-HMAC-SHA256 signatures are supported.".to_owned(),
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
