//! Strict authentication (`--auth strict`): AWS Signature Version 4 verified for both
//! protocols — the `Authorization` header, presigned query strings, and (through
//! [`ChunkSigning`]) the chunk and trailer signatures of `aws-chunked` bodies.
//!
//! [`verify`] is pure: the caller passes the keys, the request head, the payload hash
//! when the protocol signs the body itself, and the clock. Each protocol turns an
//! [`AuthError`] into its own AWS error.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::http::{Credential, parse_credential};
use crate::sigv4;

/// Whether requests must be signed with a known key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum AuthMode {
    /// Any credentials, or none, are accepted (what local tools expect).
    #[default]
    Off,
    /// SigV4 signatures are verified against `--auth-keys`.
    Strict,
}

/// Access key id -> secret access key. `Debug` shows the ids only, so a logged
/// configuration never carries a secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Keys(HashMap<String, String>);

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&str> = self.0.keys().map(String::as_str).collect();
        ids.sort_unstable();
        f.debug_tuple("Keys").field(&ids).finish()
    }
}

impl Keys {
    /// Parses `ID:SECRET` entries separated by commas or new lines; blank lines and
    /// lines starting with `#` are skipped. Errors name the entry by position, never
    /// by content, since the content holds a secret.
    pub fn parse(text: &str) -> Result<Keys, String> {
        let mut keys = HashMap::new();
        let entries = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).flat_map(|l| l.split(','));
        for (n, entry) in entries.enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let Some((id, secret)) = entry.split_once(':') else {
                return Err(format!("access key entry {} is not ID:SECRET", n + 1));
            };
            let (id, secret) = (id.trim(), secret.trim());
            let id_ok = (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
            if !id_ok || secret.is_empty() {
                return Err(format!("access key entry {} is not ID:SECRET (the id is letters and digits, the secret not empty)", n + 1));
            }
            keys.insert(id.to_owned(), secret.to_owned());
        }
        Ok(Keys(keys))
    }

    pub fn extend(&mut self, other: Keys) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn secret(&self, access_key: &str) -> Option<&str> {
        self.0.get(access_key).map(String::as_str)
    }
}

/// The service a request is signed for; it decides the canonical path, the payload
/// hash and the allowed clock skew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    Firehose,
    Lambda,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Firehose => "firehose",
            Service::Lambda => "lambda",
        }
    }

    /// How far a header-signed request's time may be from the server's.
    pub fn skew(self) -> TimeDelta {
        match self {
            Service::S3 => TimeDelta::minutes(15),
            Service::Firehose | Service::Lambda => TimeDelta::minutes(5),
        }
    }
}

/// Why a request was refused. Each protocol renders it as its own AWS error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Neither an `Authorization` header nor a presigned query string.
    Missing,
    /// The `Authorization` header cannot be parsed.
    MalformedHeader(String),
    /// A presigned query string is incomplete or invalid.
    MalformedQuery(String),
    /// No `X-Amz-Date` or `Date` header to check the signature's time against.
    MissingDate,
    /// A header the protocol requires for signing is absent.
    MissingHeader(&'static str),
    /// The credential names a service other than the one serving the request.
    WrongService {
        expected: &'static str,
        got: String,
    },
    UnknownKey {
        access_key: String,
    },
    Mismatch {
        access_key: String,
        provided: String,
        string_to_sign: String,
        canonical_request: String,
    },
    /// The request's time is too far from the server's.
    Skewed {
        request_time: DateTime<Utc>,
        server_time: DateTime<Utc>,
        skew: TimeDelta,
    },
    /// A presigned URL past its expiry (`expires_secs` is SigV4's `X-Amz-Expires`).
    Expired {
        expires_secs: Option<i64>,
        expired_at: DateTime<Utc>,
        server_time: DateTime<Utc>,
    },
    /// An `Authorization` header of Signature Version 2 (`AWS id:signature`).
    UnsupportedMechanism,
    /// A presigned URL dated in the future.
    NotYetValid,
}

impl AuthError {
    /// The error type AWS's JSON services (Firehose, Lambda) answer with for this refusal.
    pub fn json_error_type(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::MalformedHeader(_)
            | AuthError::MalformedQuery(_)
            | AuthError::MissingDate
            | AuthError::MissingHeader(_)
            | AuthError::UnsupportedMechanism => "IncompleteSignatureException",
            AuthError::UnknownKey { .. } => "UnrecognizedClientException",
            AuthError::WrongService { .. }
            | AuthError::Mismatch { .. }
            | AuthError::Skewed { .. }
            | AuthError::Expired { .. }
            | AuthError::NotYetValid => "InvalidSignatureException",
        }
    }
}

/// What a verified signature allows to go on: the account it acts for is read
/// elsewhere (from the credential); here is what the body checks need.
#[derive(Debug, Clone)]
pub struct Verified {
    pub access_key: String,
    /// Present for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` bodies.
    pub chunks: Option<ChunkSigning>,
    /// Signed in the query string (SigV4): its `x-amz-*` query parameters are signed and
    /// may stand for headers, as AWS allows.
    pub presigned: bool,
}

/// Why an S3 request was refused: its signature, or headers its signature does not cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Refusal {
    Auth(AuthError),
    /// Headers that change what the request does but are not signed (S3's
    /// `AccessDenied` "There were headers present in the request which were not signed").
    HeadersNotSigned(Vec<String>),
}

impl From<AuthError> for S3Refusal {
    fn from(err: AuthError) -> S3Refusal {
        S3Refusal::Auth(err)
    }
}

/// `x-amz-*` headers that need not be in SignedHeaders: the payload hash and the date are
/// signed anyway (the canonical request's last line, the string to sign), the SDKs leave
/// the user agent and checksum mode out of presigned URLs, and session tokens are not
/// checked. Every other `x-amz-*` header can change what a request does.
const UNSIGNED_ALLOWED: &[&str] =
    &["x-amz-content-sha256", "x-amz-date", "x-amz-user-agent", "x-amz-checksum-mode", "x-amz-security-token"];

/// The headers present in `headers` that a signature over `signed` does not cover but
/// must: `host` (it picks the bucket) and every `x-amz-*` header but [`UNSIGNED_ALLOWED`].
pub fn headers_not_signed(headers: &http::HeaderMap, signed: &[String]) -> Vec<String> {
    let is_signed = |name: &str| signed.iter().any(|s| s == name);
    let mut missing: Vec<String> = Vec::new();
    if !is_signed("host") {
        missing.push("host".to_owned());
    }
    for name in headers.keys().map(http::HeaderName::as_str) {
        if name.starts_with("x-amz-") && !UNSIGNED_ALLOWED.contains(&name) && !is_signed(name) && !missing.iter().any(|m| m == name) {
            missing.push(name.to_owned());
        }
    }
    missing
}

/// The chain of signatures of a signed `aws-chunked` body: each chunk's signature
/// covers its data and the previous signature, starting from the header's.
#[derive(Clone)]
pub struct ChunkSigning {
    key: Vec<u8>,
    amz_date: String,
    scope: String,
    previous: String,
    trailer_signed: bool,
}

impl fmt::Debug for ChunkSigning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkSigning").field("scope", &self.scope).field("trailer_signed", &self.trailer_signed).finish_non_exhaustive()
    }
}

impl ChunkSigning {
    /// Checks the next chunk's signature, given the hex SHA-256 of its data; on success
    /// it becomes the previous signature for the next chunk.
    pub fn next_chunk(&mut self, data_sha256: &str, provided: &str) -> bool {
        let expected = sigv4::signature(&self.key, &sigv4::chunk_string_to_sign(&self.amz_date, &self.scope, &self.previous, data_sha256));
        let ok = constant_time_eq(expected.as_bytes(), provided.as_bytes());
        if ok {
            self.previous = expected;
        }
        ok
    }

    /// Whether the body ends with an `x-amz-trailer-signature`.
    pub fn trailer_signed(&self) -> bool {
        self.trailer_signed
    }

    /// Checks the trailer signature over the trailer lines, each `name:value\n`.
    pub fn trailer(&self, canonical_trailers: &str, provided: &str) -> bool {
        let trailers_sha256 = sigv4::sha256_hex(canonical_trailers.as_bytes());
        let string_to_sign = sigv4::trailer_string_to_sign(&self.amz_date, &self.scope, &self.previous, &trailers_sha256);
        constant_time_eq(sigv4::signature(&self.key, &string_to_sign).as_bytes(), provided.as_bytes())
    }
}

/// `x-amz-content-sha256` values that announce a chunk-signed body.
const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// The longest a presigned URL may live: one week.
pub const PRESIGNED_EXPIRES_MAX_SECS: i64 = 604_800;
const AMZ_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// A time as SigV4 writes it: `20130524T000000Z`.
pub fn amz_date(time: DateTime<Utc>) -> String {
    time.format(AMZ_DATE_FORMAT).to_string()
}

/// A signature as the request presents it, from the header or the query string.
struct Presented {
    credential: Credential,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    /// Signed in the query string rather than the `Authorization` header.
    presigned: bool,
    /// `X-Amz-Expires` of a presigned URL; without it the date must be within the skew.
    expires_secs: Option<i64>,
}

/// Verifies a request's signature. `body_sha256` is the hex SHA-256 of the body for
/// protocols that sign it (Firehose); S3 signs the `x-amz-content-sha256` header
/// instead, whose agreement with the body the S3 layer checks as the body arrives.
/// Headers the signature must cover but does not (see [`headers_not_signed`]) refuse the
/// request as an incomplete signature; S3 uses [`verify_s3`], which names them.
pub fn verify(
    keys: &Keys,
    parts: &http::request::Parts,
    service: Service,
    body_sha256: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Verified, AuthError> {
    match verify_sigv4(keys, parts, &query_pairs(parts.uri.query().unwrap_or("")), service, body_sha256, now) {
        Ok(verified) => Ok(verified),
        Err(S3Refusal::Auth(err)) => Err(err),
        Err(S3Refusal::HeadersNotSigned(names)) if names.iter().any(|n| n == "host") => {
            Err(AuthError::MalformedHeader("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_owned()))
        }
        Err(S3Refusal::HeadersNotSigned(names)) => {
            Err(AuthError::MalformedHeader(format!("The request signature does not cover the header(s) {}.", names.join(", "))))
        }
    }
}

/// [`verify`], given the request's query already parsed into `pairs`.
fn verify_sigv4(
    keys: &Keys,
    parts: &http::request::Parts,
    pairs: &[(String, String)],
    service: Service,
    body_sha256: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Verified, S3Refusal> {
    let presented = match parts.headers.get(http::header::AUTHORIZATION) {
        Some(value) => from_header(value.to_str().map_err(|_| AuthError::MalformedHeader("it is not ASCII".to_owned()))?, parts)?,
        None if pairs.iter().any(|(name, _)| name.starts_with("X-Amz-")) => from_query(pairs, service)?,
        None => return Err(AuthError::Missing.into()),
    };
    let credential = &presented.credential;
    if credential.service != service.name() {
        return Err(AuthError::WrongService { expected: service.name(), got: credential.service.clone() }.into());
    }
    let request_time = NaiveDateTime::parse_from_str(&presented.amz_date, AMZ_DATE_FORMAT)
        .map_err(|_| AuthError::MalformedHeader(format!("X-Amz-Date {:?} is not of the form 20130524T000000Z", presented.amz_date)))?
        .and_utc();
    if !presented.amz_date.starts_with(&credential.date) || credential.date.len() != 8 {
        return Err(AuthError::MalformedHeader(format!(
            "Invalid credential date \"{}\". This date is not the same as X-Amz-Date: \"{}\".",
            credential.date,
            &presented.amz_date[..8]
        ))
        .into());
    }
    let Some(secret) = keys.secret(&credential.access_key) else {
        return Err(AuthError::UnknownKey { access_key: credential.access_key.clone() }.into());
    };
    match presented.expires_secs {
        Some(expires_secs) => {
            let expired_at = request_time + TimeDelta::seconds(expires_secs);
            if now > expired_at {
                return Err(AuthError::Expired { expires_secs: Some(expires_secs), expired_at, server_time: now }.into());
            }
            if request_time > now + service.skew() {
                return Err(AuthError::NotYetValid.into());
            }
        }
        None => {
            if (request_time - now).abs() > service.skew() {
                return Err(AuthError::Skewed { request_time, server_time: now, skew: service.skew() }.into());
            }
        }
    }
    // Unsigned headers could change what a signed request does (a copy source, metadata,
    // another bucket's Host), so they refuse it before any signature is computed.
    let not_signed = headers_not_signed(&parts.headers, &presented.signed_headers);
    if !not_signed.is_empty() {
        return Err(S3Refusal::HeadersNotSigned(not_signed));
    }
    let content_sha256 = parts.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok());
    let payload_hash = match (service, body_sha256) {
        (_, Some(hash)) => hash.to_owned(),
        (Service::S3, None) => match (content_sha256, presented.presigned) {
            (Some(hash), _) => hash.to_owned(),
            (None, true) => "UNSIGNED-PAYLOAD".to_owned(),
            (None, false) => return Err(AuthError::MissingHeader("x-amz-content-sha256").into()),
        },
        (Service::Firehose | Service::Lambda, None) => sigv4::EMPTY_SHA256.to_owned(),
    };
    let key = sigv4::signing_key(secret, &credential.date, &credential.region, &credential.service);
    let scope = format!("{}/{}/{}/aws4_request", credential.date, credential.region, credential.service);
    let presigned = presented.presigned;
    let query = canonical_query(pairs, presigned);
    let headers = canonical_headers(&parts.headers, &presented.signed_headers);
    let signed_headers = presented.signed_headers.join(";");
    let raw_path = parts.uri.path();
    let attempt = |path: &str| {
        let canonical_request = format!("{}\n{path}\n{query}\n{headers}\n{signed_headers}\n{payload_hash}", parts.method);
        let string_to_sign = sigv4::string_to_sign(&presented.amz_date, &scope, &canonical_request);
        let expected = sigv4::signature(&key, &string_to_sign);
        match constant_time_eq(expected.as_bytes(), presented.signature.as_bytes()) {
            true => Ok(expected),
            false => Err((string_to_sign, canonical_request)),
        }
    };
    // Clients sign the path in its canonical encoding; a client that sent a path in
    // another valid encoding signed what it sent (S3 encodes once, as sent), so that
    // is tried second.
    let normalized = canonical_path(raw_path, service);
    let mismatch = |(string_to_sign, canonical_request)| AuthError::Mismatch {
        access_key: credential.access_key.clone(),
        provided: presented.signature.clone(),
        string_to_sign,
        canonical_request,
    };
    let seed = match attempt(&normalized) {
        Ok(seed) => seed,
        Err(first) if service == Service::S3 && normalized != raw_path => attempt(raw_path).map_err(|_| mismatch(first))?,
        Err(first) => return Err(mismatch(first).into()),
    };
    let chunks = match content_sha256 {
        Some(mode @ (STREAMING_SIGNED | STREAMING_SIGNED_TRAILER)) if service == Service::S3 => Some(ChunkSigning {
            key,
            amz_date: presented.amz_date.clone(),
            scope,
            previous: seed,
            trailer_signed: mode == STREAMING_SIGNED_TRAILER,
        }),
        _ => None,
    };
    Ok(Verified { access_key: credential.access_key.clone(), chunks, presigned })
}

/// Verifies an S3 request: SigV4 as [`verify`] does, and also the Signature Version 2
/// presigned URLs (`AWSAccessKeyId`, `Expires`, `Signature`) that boto3 and the AWS CLI
/// still make by default for S3. `vhost_bucket` is the bucket a virtual-hosted request
/// names in its host, which SigV2 signs as part of the path.
pub fn verify_s3(keys: &Keys, parts: &http::request::Parts, vhost_bucket: Option<&str>, now: DateTime<Utc>) -> Result<Verified, S3Refusal> {
    let pairs = query_pairs(parts.uri.query().unwrap_or(""));
    let has = |name: &str| param(&pairs, name).is_some();
    if !parts.headers.contains_key(http::header::AUTHORIZATION) && has("AWSAccessKeyId") && has("Signature") && !has("X-Amz-Signature") {
        // SigV2 signs every `x-amz-*` header, and the bucket of a virtual host in the path.
        return Ok(verify_v2_query(keys, parts, &pairs, vhost_bucket, now)?);
    }
    verify_sigv4(keys, parts, &pairs, Service::S3, None, now)
}

/// The query parameters SigV2 signs as part of the resource.
const V2_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

fn verify_v2_query(
    keys: &Keys,
    parts: &http::request::Parts,
    pairs: &[(String, String)],
    vhost_bucket: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Verified, AuthError> {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let get = |name: &str| param(pairs, name).unwrap_or("");
    let access_key = get("AWSAccessKeyId");
    let expires = get("Expires");
    let expires_at = expires
        .parse::<i64>()
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .ok_or_else(|| AuthError::MalformedQuery("Expires must be a number of seconds since 1970".to_owned()))?;
    let Some(secret) = keys.secret(access_key) else {
        return Err(AuthError::UnknownKey { access_key: access_key.to_owned() });
    };
    if now > expires_at {
        return Err(AuthError::Expired { expires_secs: None, expired_at: expires_at, server_time: now });
    }
    // A header may travel as a query parameter instead (botocore moves `x-amz-*`,
    // Content-Type and Content-MD5 there when it presigns); the signature covers it alike.
    let header = |name: &str| match parts.headers.get(name) {
        Some(value) => String::from_utf8_lossy(value.as_bytes()).trim().to_owned(),
        None => pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned()).unwrap_or_default(),
    };
    let mut amz: Vec<(String, String)> = Vec::new();
    for name in parts.headers.keys().filter(|n| n.as_str().starts_with("x-amz-")) {
        let values: Vec<String> =
            parts.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned()).collect();
        amz.push((name.as_str().to_owned(), values.join(",")));
    }
    for (name, value) in pairs {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("x-amz-") && !parts.headers.contains_key(lower.as_str()) && !amz.iter().any(|(n, _)| *n == lower) {
            amz.push((lower, value.trim().to_owned()));
        }
    }
    amz.sort();
    let mut resource = match vhost_bucket {
        Some(bucket) => format!("/{bucket}{}", parts.uri.path()),
        None => parts.uri.path().to_owned(),
    };
    let raw_query = parts.uri.query().unwrap_or("");
    let mut sub: Vec<(&str, Option<String>)> = raw_query
        .split('&')
        .filter_map(|pair| {
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (name, Some(percent_decode_str(value).decode_utf8_lossy().into_owned())),
                None => (pair, None),
            };
            V2_SUBRESOURCES.contains(&name).then_some((name, value))
        })
        .collect();
    sub.sort_by(|a, b| a.0.cmp(b.0));
    if !sub.is_empty() {
        let joined: Vec<String> = sub.iter().map(|(n, v)| v.as_ref().map_or_else(|| (*n).to_owned(), |v| format!("{n}={v}"))).collect();
        resource = format!("{resource}?{}", joined.join("&"));
    }
    let amz_lines: String = amz.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let string_to_sign =
        format!("{}\n{}\n{}\n{expires}\n{amz_lines}{resource}", parts.method, header("content-md5"), header("content-type"));
    // HMAC takes a key of any length; were one refused, no signature would match it.
    let expected = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).ok().map(|mut mac| {
        mac.update(string_to_sign.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    });
    let provided = get("Signature");
    if !expected.is_some_and(|expected| constant_time_eq(expected.as_bytes(), provided.as_bytes())) {
        return Err(AuthError::Mismatch {
            access_key: access_key.to_owned(),
            provided: provided.to_owned(),
            string_to_sign,
            canonical_request: String::new(),
        });
    }
    Ok(Verified { access_key: access_key.to_owned(), chunks: None, presigned: false })
}

/// Parses `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
fn from_header(value: &str, parts: &http::request::Parts) -> Result<Presented, AuthError> {
    let malformed = |what: &str| AuthError::MalformedHeader(what.to_owned());
    if value.starts_with("AWS ") {
        return Err(AuthError::UnsupportedMechanism);
    }
    let Some(fields) = value.strip_prefix("AWS4-HMAC-SHA256") else {
        return Err(malformed("the authorization mechanism is not AWS4-HMAC-SHA256 (only Signature Version 4 is supported)"));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',') {
        let field = field.trim();
        if let Some(v) = field.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = field.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = field.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| malformed("Authorization header requires 'Credential' parameter."))?;
    let credential = parse_credential(credential)
        .ok_or_else(|| malformed("the Credential is not of the form ID/YYYYMMDD/region/service/aws4_request"))?;
    let signed_headers = signed_headers.ok_or_else(|| malformed("Authorization header requires 'SignedHeaders' parameter."))?;
    let signature = signature.ok_or_else(|| malformed("Authorization header requires 'Signature' parameter."))?;
    let amz_date = match parts.headers.get("x-amz-date").and_then(|v| v.to_str().ok()) {
        Some(date) => date.trim().to_owned(),
        None => {
            let date = parts.headers.get(http::header::DATE).and_then(|v| v.to_str().ok()).ok_or(AuthError::MissingDate)?;
            let time = httpdate::parse_http_date(date).map_err(|_| AuthError::MissingDate)?;
            amz_date(DateTime::<Utc>::from(time))
        }
    };
    Ok(Presented {
        credential,
        signed_headers: split_signed_headers(signed_headers),
        signature: signature.trim().to_owned(),
        amz_date,
        presigned: false,
        expires_secs: None,
    })
}

/// Reads the `X-Amz-*` parameters of a presigned URL.
fn from_query(pairs: &[(String, String)], service: Service) -> Result<Presented, AuthError> {
    let get = |name: &str| param(pairs, name);
    let required = "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.";
    let (Some(algorithm), Some(credential), Some(signature), Some(amz_date), Some(signed_headers)) =
        (get("X-Amz-Algorithm"), get("X-Amz-Credential"), get("X-Amz-Signature"), get("X-Amz-Date"), get("X-Amz-SignedHeaders"))
    else {
        return Err(AuthError::MalformedQuery(required.to_owned()));
    };
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(AuthError::MalformedQuery("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"".to_owned()));
    }
    let credential = parse_credential(credential).ok_or_else(|| {
        AuthError::MalformedQuery("X-Amz-Credential is not of the form ID/YYYYMMDD/region/service/aws4_request".to_owned())
    })?;
    // Other services take a query signature without an expiry, and then hold its date to
    // the same skew as a header's: a signed URL does not live for a week by default.
    let expires_secs = match (get("X-Amz-Expires"), service) {
        (Some(v), _) => Some(v.parse::<i64>().map_err(|_| AuthError::MalformedQuery("X-Amz-Expires should be a number".to_owned()))?),
        (None, Service::S3) => return Err(AuthError::MalformedQuery(required.to_owned())),
        (None, Service::Firehose | Service::Lambda) => None,
    };
    if expires_secs.is_some_and(|secs| secs < 0) {
        return Err(AuthError::MalformedQuery("X-Amz-Expires must be non-negative".to_owned()));
    }
    if expires_secs.is_some_and(|secs| secs > PRESIGNED_EXPIRES_MAX_SECS) {
        return Err(AuthError::MalformedQuery("X-Amz-Expires must be less than a week (in seconds) that is; 604800".to_owned()));
    }
    Ok(Presented {
        credential,
        signed_headers: split_signed_headers(signed_headers),
        signature: signature.to_owned(),
        amz_date: amz_date.to_owned(),
        presigned: true,
        expires_secs,
    })
}

fn split_signed_headers(list: &str) -> Vec<String> {
    list.trim().split(';').filter(|h| !h.is_empty()).map(str::to_ascii_lowercase).collect()
}

/// The value of the query parameter `name`.
fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The query's name/value pairs, percent-decoded (a `+` stays a `+`, as SigV4 reads it).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (decode(name), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Everything but the unreserved characters `A-Z a-z 0-9 - _ . ~` is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// The same, keeping `/` between path segments.
const UNRESERVED_PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// The canonical URI: S3 encodes each segment once; other services encode the
/// already-encoded path again.
fn canonical_path(raw: &str, service: Service) -> String {
    let decoded = percent_decode_str(raw).collect::<Vec<u8>>();
    let once: String = percent_encoding::percent_encode(&decoded, UNRESERVED_PATH).collect();
    let once = if once.is_empty() { "/".to_owned() } else { once };
    match service {
        Service::S3 => once,
        Service::Firehose | Service::Lambda => utf8_percent_encode(&once, UNRESERVED_PATH).collect(),
    }
}

/// Pairs encoded, sorted by name then value, joined with `&`; a presigned URL's own
/// signature is left out.
fn canonical_query(pairs: &[(String, String)], presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = pairs
        .iter()
        .filter(|(name, _)| !(presigned && name == "X-Amz-Signature"))
        .map(|(name, value)| (utf8_percent_encode(name, UNRESERVED).collect(), utf8_percent_encode(value, UNRESERVED).collect()))
        .collect();
    pairs.sort();
    pairs.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("&")
}

/// `name:value\n` for each signed header: values of repeated headers joined by `,`,
/// trimmed, runs of spaces collapsed.
fn canonical_headers(headers: &http::HeaderMap, signed: &[String]) -> String {
    let mut out = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of the S3 API Reference, "Signature Calculations for the
    // Authorization Header" and "Authenticating Requests: Using Query Parameters".
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn keys() -> Keys {
        Keys::parse(&format!("AKIAIOSFODNN7EXAMPLE:{SECRET}")).unwrap()
    }

    fn at(date: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(date, AMZ_DATE_FORMAT).unwrap().and_utc()
    }

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn get_object(signature: &str) -> http::request::Parts {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature={signature}"
        );
        parts(
            "GET",
            "/test.txt",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", sigv4::EMPTY_SHA256),
                ("x-amz-date", "20130524T000000Z"),
                ("authorization", &auth),
            ],
        )
    }

    #[test]
    fn the_documented_get_object_signature_verifies() {
        let good = get_object("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
        let verified = verify(&keys(), &good, Service::S3, None, at("20130524T000500Z")).unwrap();
        assert_eq!(verified.access_key, "AKIAIOSFODNN7EXAMPLE");
        assert!(verified.chunks.is_none());
        let bad = get_object("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb42");
        match verify(&keys(), &bad, Service::S3, None, at("20130524T000500Z")) {
            Err(AuthError::Mismatch { canonical_request, .. }) => {
                assert!(canonical_request.starts_with("GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn time_and_keys_are_checked() {
        let good = get_object("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
        assert!(matches!(verify(&keys(), &good, Service::S3, None, at("20130524T001600Z")), Err(AuthError::Skewed { .. })));
        assert!(matches!(verify(&keys(), &good, Service::S3, None, at("20130523T234400Z")), Err(AuthError::Skewed { .. })));
        let other = Keys::parse("AKIDOTHER:secret").unwrap();
        assert_eq!(
            verify(&other, &good, Service::S3, None, at("20130524T000000Z")).unwrap_err(),
            AuthError::UnknownKey { access_key: "AKIAIOSFODNN7EXAMPLE".into() }
        );
        assert!(matches!(
            verify(&keys(), &good, Service::Firehose, None, at("20130524T000000Z")),
            Err(AuthError::WrongService { expected: "firehose", .. })
        ));
        assert_eq!(verify(&keys(), &parts("GET", "/", &[]), Service::S3, None, at("20130524T000000Z")).unwrap_err(), AuthError::Missing);
    }

    const PRESIGNED: &str = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    #[test]
    fn the_documented_presigned_url_verifies_until_it_expires() {
        let request = parts("GET", PRESIGNED, &[("host", "examplebucket.s3.amazonaws.com")]);
        verify(&keys(), &request, Service::S3, None, at("20130524T120000Z")).unwrap();
        match verify(&keys(), &request, Service::S3, None, at("20130525T000001Z")) {
            Err(AuthError::Expired { expires_secs: Some(86400), expired_at, .. }) => assert_eq!(expired_at, at("20130525T000000Z")),
            other => panic!("{other:?}"),
        }
        let tampered = parts("GET", &PRESIGNED.replace("test.txt", "test.txu"), &[("host", "examplebucket.s3.amazonaws.com")]);
        assert!(matches!(verify(&keys(), &tampered, Service::S3, None, at("20130524T120000Z")), Err(AuthError::Mismatch { .. })));
        let week = parts("GET", &PRESIGNED.replace("86400", "604801"), &[("host", "examplebucket.s3.amazonaws.com")]);
        assert!(matches!(verify(&keys(), &week, Service::S3, None, at("20130524T120000Z")), Err(AuthError::MalformedQuery(_))));
    }

    // The example of the S3 Developer Guide, "Signing and Authenticating REST Requests"
    // (Signature Version 2): query string request authentication.
    #[test]
    fn the_documented_v2_presigned_url_verifies() {
        let keys = Keys::parse("AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").unwrap();
        let uri = "/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620";
        let request = parts("GET", uri, &[("host", "johnsmith.s3.amazonaws.com")]);
        let before = DateTime::from_timestamp(1175139000, 0).unwrap();
        verify_s3(&keys, &request, Some("johnsmith"), before).unwrap();
        assert!(matches!(verify_s3(&keys, &request, None, before), Err(S3Refusal::Auth(AuthError::Mismatch { .. }))));
        let after = DateTime::from_timestamp(1175139621, 0).unwrap();
        assert!(matches!(
            verify_s3(&keys, &request, Some("johnsmith"), after),
            Err(S3Refusal::Auth(AuthError::Expired { expires_secs: None, .. }))
        ));
    }

    /// Signs `request` with SignedHeaders `signed` (header auth) as the documented key.
    fn sign(method: &str, uri: &str, headers: &[(&str, &str)], signed: &str) -> http::request::Parts {
        let mut request = parts(method, uri, headers);
        let signed_list = split_signed_headers(signed);
        let payload = request.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()).unwrap_or(sigv4::EMPTY_SHA256).to_owned();
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let canonical = format!(
            "{method}\n{}\n{}\n{}\n{signed}\n{payload}",
            canonical_path(path, Service::S3),
            canonical_query(&query_pairs(query), false),
            canonical_headers(&request.headers, &signed_list)
        );
        let key = sigv4::signing_key(SECRET, "20130524", "us-east-1", "s3");
        let signature =
            sigv4::signature(&key, &sigv4::string_to_sign("20130524T000000Z", "20130524/us-east-1/s3/aws4_request", &canonical));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed},Signature={signature}"
        );
        request.headers.insert("authorization", auth.parse().unwrap());
        request
    }

    #[test]
    fn host_and_every_amz_header_must_be_signed() {
        let now = at("20130524T000100Z");
        let base =
            [("host", "examplebucket.s3.amazonaws.com"), ("x-amz-content-sha256", sigv4::EMPTY_SHA256), ("x-amz-date", "20130524T000000Z")];
        let good = sign("GET", "/test.txt", &base, "host;x-amz-content-sha256;x-amz-date");
        assert!(verify_s3(&keys(), &good, None, now).is_ok());
        // The payload hash and the date are covered by the signature even when not listed.
        assert!(verify_s3(&keys(), &sign("GET", "/test.txt", &base, "host"), None, now).is_ok());
        for signed in ["x-amz-content-sha256;x-amz-date", ""] {
            let no_host = sign("GET", "/test.txt", &base, signed);
            assert_eq!(verify_s3(&keys(), &no_host, None, now).unwrap_err(), S3Refusal::HeadersNotSigned(vec!["host".into()]));
            assert!(
                matches!(verify(&keys(), &no_host, Service::S3, None, now), Err(AuthError::MalformedHeader(m)) if m.contains("'Host'"))
            );
        }
        let mut added = sign("PUT", "/test.txt", &base, "host;x-amz-content-sha256;x-amz-date");
        added.headers.insert("x-amz-copy-source", "/other/key".parse().unwrap());
        added.headers.insert("x-amz-meta-team", "red".parse().unwrap());
        added.headers.insert("x-amz-user-agent", "sdk".parse().unwrap());
        assert_eq!(
            verify_s3(&keys(), &added, None, now).unwrap_err(),
            S3Refusal::HeadersNotSigned(vec!["x-amz-copy-source".into(), "x-amz-meta-team".into()])
        );
        let mut headers = base.to_vec();
        headers.push(("x-amz-tagging", "a=b"));
        assert!(verify_s3(&keys(), &sign("PUT", "/test.txt", &headers, "host;x-amz-date;x-amz-tagging"), None, now).is_ok());
    }

    #[test]
    fn a_query_signature_without_expiry_is_held_to_the_skew() {
        let date = "20130524T000000Z";
        let query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Ffirehose%2Faws4_request&X-Amz-Date={date}&X-Amz-SignedHeaders=host"
        );
        let canonical = format!(
            "POST\n/\n{}\nhost:firehose.us-east-1.amazonaws.com\n\nhost\n{}",
            canonical_query(&query_pairs(&query), true),
            sigv4::EMPTY_SHA256
        );
        let key = sigv4::signing_key(SECRET, "20130524", "us-east-1", "firehose");
        let signature = sigv4::signature(&key, &sigv4::string_to_sign(date, "20130524/us-east-1/firehose/aws4_request", &canonical));
        let request = parts("POST", &format!("/?{query}&X-Amz-Signature={signature}"), &[("host", "firehose.us-east-1.amazonaws.com")]);
        verify(&keys(), &request, Service::Firehose, Some(sigv4::EMPTY_SHA256), at("20130524T000400Z")).unwrap();
        assert!(matches!(
            verify(&keys(), &request, Service::Firehose, Some(sigv4::EMPTY_SHA256), at("20130527T000000Z")),
            Err(AuthError::Skewed { .. })
        ));
    }

    // The example of "Signature Calculations for the Authorization Header: Transferring
    // Payload in Multiple Chunks": 64 KiB and 1 KiB of 'a', then the final chunk.
    #[test]
    fn the_documented_chunk_signatures_chain() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
        let request = parts(
            "PUT",
            "/examplebucket/chunkObject.txt",
            &[
                ("host", "s3.amazonaws.com"),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("authorization", auth),
                ("x-amz-content-sha256", STREAMING_SIGNED),
                ("content-encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", "66560"),
                ("content-length", "66824"),
            ],
        );
        let mut chunks = verify(&keys(), &request, Service::S3, None, at("20130524T000000Z")).unwrap().chunks.unwrap();
        assert!(!chunks.trailer_signed());
        let a64k = sigv4::sha256_hex(&[b'a'; 65536]);
        let a1k = sigv4::sha256_hex(&[b'a'; 1024]);
        assert!(!chunks.next_chunk(&a1k, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"));
        assert!(chunks.next_chunk(&a64k, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"));
        assert!(chunks.next_chunk(&a1k, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"));
        assert!(chunks.next_chunk(sigv4::EMPTY_SHA256, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"));
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_path("/b/a%20b/c~d%2A!", Service::S3), "/b/a%20b/c~d%2A%21");
        assert_eq!(canonical_path("", Service::Firehose), "/");
        assert_eq!(canonical_path("/a b", Service::Firehose), "/a%2520b");
        assert_eq!(canonical_query(&query_pairs("b=2&a=1&a=0&list-type&p=a+b%2Fc"), false), "a=0&a=1&b=2&list-type=&p=a%2Bb%2Fc");
        assert_eq!(canonical_query(&query_pairs("X-Amz-Signature=x&y=1"), true), "y=1");
    }

    #[test]
    fn keys_parse_without_echoing_secrets() {
        let keys = Keys::parse("A1:s1, A2:s:2\n# comment\n\nA3:s3").unwrap();
        assert_eq!(keys.secret("A2"), Some("s:2"));
        assert_eq!(format!("{keys:?}"), r#"Keys(["A1", "A2", "A3"])"#);
        let err = Keys::parse("A1:s1,topsecret").unwrap_err();
        assert!(!err.contains("topsecret"), "{err}");
        assert!(Keys::parse("A-1:s").is_err());
    }
}
