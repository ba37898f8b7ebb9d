//! S3 errors: a [`Code`] knows its wire name and HTTP status; an [`S3Error`] adds the
//! message and context elements; [`S3Error::to_response`] is the only renderer.

use hyper::{Response, StatusCode};

use crate::auth::{AuthError, S3Refusal};
use crate::http::{Body, RequestCtx, empty, full};
use crate::s3::xml::Xml;
use crate::store::StoreError;

macro_rules! codes {
    ($($variant:ident = $status:literal),* $(,)?) => {
        /// An S3 error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code { $($variant),* }

        impl Code {
            /// The `<Code>` of the error body.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => stringify!($variant)),* }
            }

            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::from_u16($status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)),* }
            }
        }
    };
}

codes! {
    AccessControlListNotSupported = 400,
    AccessDenied = 403,
    AuthorizationHeaderMalformed = 400,
    AuthorizationQueryParametersError = 400,
    BadDigest = 400,
    BucketAlreadyExists = 409,
    BucketAlreadyOwnedByYou = 409,
    BucketNotEmpty = 409,
    CORSResponse = 403,
    ConditionalRequestConflict = 409,
    EntityTooLarge = 400,
    EntityTooSmall = 400,
    IllegalLocationConstraintException = 400,
    IncompleteBody = 400,
    InternalError = 500,
    InvalidAccessKeyId = 403,
    InvalidArgument = 400,
    InvalidBucketAclWithBlockPublicAccessError = 400,
    InvalidBucketAclWithObjectOwnership = 400,
    InvalidBucketName = 400,
    InvalidDigest = 400,
    InvalidLocationConstraint = 400,
    InvalidPart = 400,
    InvalidPartNumber = 416,
    InvalidPartOrder = 400,
    InvalidRange = 416,
    InvalidRequest = 400,
    InvalidTag = 400,
    KeyTooLongError = 400,
    MalformedACLError = 400,
    MalformedPolicy = 400,
    MalformedTrailerError = 400,
    MalformedXML = 400,
    MaxMessageLengthExceeded = 400,
    MethodNotAllowed = 405,
    MissingContentLength = 411,
    MissingSecurityHeader = 400,
    NoSuchBucket = 404,
    NoSuchBucketPolicy = 404,
    NoSuchCORSConfiguration = 404,
    NoSuchKey = 404,
    NoSuchLifecycleConfiguration = 404,
    NoSuchPublicAccessBlockConfiguration = 404,
    NoSuchTagSet = 404,
    NoSuchUpload = 404,
    NoSuchVersion = 404,
    NoSuchWebsiteConfiguration = 404,
    NotImplemented = 501,
    NotModified = 304,
    ObjectLockConfigurationNotFoundError = 404,
    OwnershipControlsNotFoundError = 404,
    PreconditionFailed = 412,
    ReplicationConfigurationNotFoundError = 404,
    RequestTimeTooSkewed = 403,
    RequestTimeout = 400,
    ServiceUnavailable = 503,
    SignatureDoesNotMatch = 403,
    UnexpectedContent = 400,
    XAmzContentSHA256Mismatch = 400,
}

/// An error answer: code, message and the context elements AWS adds (`BucketName`, `Key`, ...).
#[derive(Debug, Clone)]
pub struct S3Error {
    pub code: Code,
    pub message: String,
    pub fields: Vec<(&'static str, String)>,
    /// Response headers the error carries (`x-amz-delete-marker`, `Allow`, ...).
    pub headers: Vec<(&'static str, String)>,
}

pub type Result<T, E = S3Error> = std::result::Result<T, E>;

impl S3Error {
    pub fn new(code: Code, message: impl Into<String>) -> S3Error {
        S3Error { code, message: message.into(), fields: Vec::new(), headers: Vec::new() }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        self.fields.push((name, value.into()));
        self
    }

    pub fn no_such_bucket(bucket: &str) -> S3Error {
        S3Error::new(Code::NoSuchBucket, "The specified bucket does not exist").with("BucketName", bucket)
    }

    pub fn no_such_key(key: &str) -> S3Error {
        S3Error::new(Code::NoSuchKey, "The specified key does not exist.").with("Key", key)
    }

    pub fn no_such_upload(upload_id: &str) -> S3Error {
        S3Error::new(
            Code::NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        )
        .with("UploadId", upload_id)
    }

    pub fn malformed_xml() -> S3Error {
        S3Error::new(Code::MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema")
    }

    pub fn not_implemented(what: &str) -> S3Error {
        S3Error::new(
            Code::NotImplemented,
            format!("A header you provided implies functionality that is not implemented: {what} is not supported by firelake"),
        )
    }

    pub fn invalid_argument(message: impl Into<String>, name: &str, value: &str) -> S3Error {
        S3Error::new(Code::InvalidArgument, message).with("ArgumentName", name).with("ArgumentValue", value)
    }

    pub fn invalid_request(message: impl Into<String>) -> S3Error {
        S3Error::new(Code::InvalidRequest, message)
    }

    pub fn signature_mismatch() -> S3Error {
        S3Error::new(
            Code::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        )
    }

    pub fn precondition_failed(condition: &str) -> S3Error {
        S3Error::new(Code::PreconditionFailed, "At least one of the pre-conditions you specified did not hold").with("Condition", condition)
    }

    pub fn internal(source: impl std::fmt::Display) -> S3Error {
        tracing::error!(%source, "internal error");
        S3Error::new(Code::InternalError, "We encountered an internal error. Please try again.")
    }

    /// Renders the error; a HEAD request, and a 304, get no body.
    pub fn to_response(&self, ctx: &RequestCtx, head: bool) -> Response<Body> {
        let status = self.code.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code.as_str(), message = %self.message, "request failed");
        } else {
            tracing::debug!(code = self.code.as_str(), message = %self.message, "request refused");
        }
        let mut headers: Vec<(&'static str, &str)> = self.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if head || self.code == Code::NotModified {
            return crate::http::response(status, &headers, empty());
        }
        let mut xml = Xml::document();
        xml.open("Error");
        xml.leaf("Code", self.code.as_str());
        xml.leaf("Message", &self.message);
        for (name, value) in &self.fields {
            xml.leaf(name, value);
        }
        xml.leaf("RequestId", &ctx.request_id);
        xml.leaf("HostId", &crate::http::host_id());
        xml.close("Error");
        headers.push(("content-type", "application/xml"));
        crate::http::response(status, &headers, full(xml.finish()))
    }
}

impl From<S3Refusal> for S3Error {
    fn from(refusal: S3Refusal) -> S3Error {
        match refusal {
            S3Refusal::Auth(err) => S3Error::from(err),
            S3Refusal::HeadersNotSigned(names) => {
                S3Error::new(Code::AccessDenied, "There were headers present in the request which were not signed")
                    .with("HeadersNotSigned", names.join(", "))
            }
        }
    }
}

impl From<AuthError> for S3Error {
    fn from(err: AuthError) -> S3Error {
        let iso = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        match err {
            AuthError::Missing => S3Error::new(Code::AccessDenied, "Access Denied"),
            AuthError::MissingDate => S3Error::new(Code::AccessDenied, "AWS authentication requires a valid Date or x-amz-date header"),
            AuthError::MalformedHeader(why) => {
                S3Error::new(Code::AuthorizationHeaderMalformed, format!("The authorization header is malformed; {why}"))
            }
            AuthError::MalformedQuery(why) => S3Error::new(Code::AuthorizationQueryParametersError, why),
            AuthError::MissingHeader(name) => S3Error::invalid_request(format!("Missing required header for this request: {name}")),
            AuthError::WrongService { expected, got } => S3Error::new(
                Code::AuthorizationHeaderMalformed,
                format!("The authorization header is malformed; incorrect service \"{got}\". This endpoint belongs to \"{expected}\"."),
            ),
            AuthError::UnknownKey { access_key } => {
                S3Error::new(Code::InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records.")
                    .with("AWSAccessKeyId", access_key)
            }
            AuthError::Mismatch { access_key, provided, string_to_sign, canonical_request } => {
                let err = S3Error::signature_mismatch()
                    .with("AWSAccessKeyId", access_key)
                    .with("StringToSign", string_to_sign)
                    .with("SignatureProvided", provided);
                // Signature Version 2 has no canonical request.
                match canonical_request.is_empty() {
                    true => err,
                    false => err.with("CanonicalRequest", canonical_request),
                }
            }
            AuthError::Skewed { request_time, server_time, skew } => {
                S3Error::new(Code::RequestTimeTooSkewed, "The difference between the request time and the current time is too large.")
                    .with("RequestTime", crate::auth::amz_date(request_time))
                    .with("ServerTime", iso(server_time))
                    .with("MaxAllowedSkewMilliseconds", skew.num_milliseconds().to_string())
            }
            AuthError::Expired { expires_secs, expired_at, server_time } => {
                let mut err = S3Error::new(Code::AccessDenied, "Request has expired");
                if let Some(secs) = expires_secs {
                    err = err.with("X-Amz-Expires", secs.to_string());
                }
                err.with("Expires", iso(expired_at)).with("ServerTime", iso(server_time))
            }
            AuthError::UnsupportedMechanism => {
                S3Error::invalid_request("The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.")
            }
            AuthError::NotYetValid => S3Error::new(Code::AccessDenied, "Request is not valid yet"),
        }
    }
}

impl From<StoreError> for S3Error {
    #[track_caller]
    fn from(err: StoreError) -> S3Error {
        match err {
            StoreError::NoSuchBucket => S3Error::new(Code::NoSuchBucket, "The specified bucket does not exist"),
            StoreError::BucketNotEmpty => S3Error::new(Code::BucketNotEmpty, "The bucket you tried to delete is not empty"),
            StoreError::NoSuchUpload => S3Error::no_such_upload(""),
            StoreError::KeyTooLong => S3Error::new(Code::KeyTooLongError, "Your key is too long"),
            StoreError::Link(path) => S3Error::new(
                Code::AccessDenied,
                format!("firelake does not write through or over the symbolic link {} in its data directory", path.display()),
            ),
            StoreError::Io(err) => S3Error::from(err),
        }
    }
}

impl From<std::io::Error> for S3Error {
    #[track_caller]
    fn from(err: std::io::Error) -> S3Error {
        if err.kind() == std::io::ErrorKind::StorageFull || err.kind() == std::io::ErrorKind::QuotaExceeded {
            tracing::error!(%err, location = %std::panic::Location::caller(), "disk full");
            return S3Error::new(Code::ServiceUnavailable, "firelake's data directory is out of space; the write was not stored");
        }
        tracing::error!(%err, location = %std::panic::Location::caller(), "io error");
        S3Error::new(Code::InternalError, "We encountered an internal error. Please try again.")
    }
}
