//! Lambda's errors: a wire code (the `x-amzn-ErrorType` header), an HTTP status and a
//! message, rendered only by [`LambdaError::to_response`].

use http::StatusCode;
use hyper::Response;

use crate::auth::AuthError;
use crate::http::{Body, RequestCtx, full};

/// One Lambda error, as the service names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LambdaError {
    /// 404 `ResourceNotFoundException`: no such function (or qualifier).
    NotFound(String),
    /// 409 `ResourceConflictException`: the function exists already.
    Conflict(String),
    /// 400 `InvalidParameterValueException`.
    InvalidParameter(String),
    /// 400 `ValidationException`: a value breaks the model's constraints.
    Validation(String),
    /// 400 `InvalidRequestContentException`: the body is not the JSON the operation takes.
    InvalidContent(String),
    /// 413 `RequestTooLargeException`.
    TooLarge(String),
    /// 429 `TooManyRequestsException`.
    TooMany(String),
    /// 403 `AccessDeniedException`: running code is not allowed here.
    AccessDenied(String),
    /// 502 `InvalidRuntimeException`: the machine cannot run the function's runtime.
    InvalidRuntime(String),
    /// 412 `PreconditionFailedException`: a RevisionId that is not the current one.
    PreconditionFailed(String),
    /// 502 `ServiceException`: the `--lambda-endpoint` an invocation went to failed.
    Upstream(String),
    /// 501: an operation or setting firelake does not emulate.
    NotImplemented(String),
    /// 404 `UnknownOperationException`: no Lambda operation at this path.
    UnknownOperation,
    Auth(AuthError),
    /// 500 `ServiceException`; the cause is logged where it happened.
    Internal,
}

impl LambdaError {
    pub fn code(&self) -> &'static str {
        match self {
            LambdaError::NotFound(_) => "ResourceNotFoundException",
            LambdaError::Conflict(_) => "ResourceConflictException",
            LambdaError::InvalidParameter(_) => "InvalidParameterValueException",
            LambdaError::Validation(_) => "ValidationException",
            LambdaError::InvalidContent(_) => "InvalidRequestContentException",
            LambdaError::TooLarge(_) => "RequestTooLargeException",
            LambdaError::TooMany(_) => "TooManyRequestsException",
            LambdaError::AccessDenied(_) => "AccessDeniedException",
            LambdaError::InvalidRuntime(_) => "InvalidRuntimeException",
            LambdaError::PreconditionFailed(_) => "PreconditionFailedException",
            LambdaError::NotImplemented(_) => "NotImplemented",
            LambdaError::Upstream(_) => "ServiceException",
            LambdaError::UnknownOperation => "UnknownOperationException",
            LambdaError::Internal => "ServiceException",
            LambdaError::Auth(err) => err.json_error_type(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            LambdaError::NotFound(_) | LambdaError::UnknownOperation => StatusCode::NOT_FOUND,
            LambdaError::Conflict(_) => StatusCode::CONFLICT,
            LambdaError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            LambdaError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            LambdaError::AccessDenied(_) | LambdaError::Auth(_) => StatusCode::FORBIDDEN,
            LambdaError::InvalidRuntime(_) | LambdaError::Upstream(_) => StatusCode::BAD_GATEWAY,
            LambdaError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            LambdaError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            LambdaError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(&self) -> String {
        match self {
            LambdaError::NotFound(m)
            | LambdaError::Conflict(m)
            | LambdaError::InvalidParameter(m)
            | LambdaError::Validation(m)
            | LambdaError::InvalidContent(m)
            | LambdaError::TooLarge(m)
            | LambdaError::TooMany(m)
            | LambdaError::AccessDenied(m)
            | LambdaError::InvalidRuntime(m)
            | LambdaError::PreconditionFailed(m)
            | LambdaError::Upstream(m)
            | LambdaError::NotImplemented(m) => m.clone(),
            LambdaError::UnknownOperation => "no Lambda operation has this method and path".to_owned(),
            LambdaError::Internal => "An internal error occurred; please try again.".to_owned(),
            LambdaError::Auth(err) => auth_message(err),
        }
    }

    /// Lambda's error shape: the code in `x-amzn-ErrorType`, and `{"Type", "message"}`.
    pub fn to_response(&self, ctx: &RequestCtx) -> Response<Body> {
        let status = self.status();
        match status.is_server_error() {
            true => tracing::warn!(code = self.code(), message = %self.message(), "lambda request failed"),
            false => tracing::debug!(code = self.code(), message = %self.message(), "lambda request refused"),
        }
        let kind = if status.is_server_error() { "Service" } else { "User" };
        let body = serde_json::json!({ "Type": kind, "message": self.message() });
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("x-amzn-errortype", self.code())
            .header("x-amzn-requestid", &ctx.request_id)
            .body(full(body.to_string()))
            .unwrap_or_else(|_| Response::new(full("")))
    }
}

fn auth_message(err: &AuthError) -> String {
    match err {
        AuthError::Missing => "Missing Authentication Token".to_owned(),
        AuthError::MalformedHeader(m) | AuthError::MalformedQuery(m) => m.clone(),
        AuthError::MissingDate => "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".to_owned(),
        AuthError::MissingHeader(h) => format!("the signed request lacks the header {h}"),
        AuthError::UnsupportedMechanism => "Signature Version 2 is not supported for Lambda".to_owned(),
        AuthError::UnknownKey { .. } => "The security token included in the request is invalid.".to_owned(),
        AuthError::WrongService { expected, got } => {
            format!("Credential should be scoped to correct service: '{expected}', not '{got}'.")
        }
        AuthError::Mismatch { .. } => "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".to_owned(),
        AuthError::Skewed { .. } => "Signature expired: the request time is too far from the server's time".to_owned(),
        AuthError::Expired { .. } => "Signature expired".to_owned(),
        AuthError::NotYetValid => "Signature not yet current".to_owned(),
    }
}
