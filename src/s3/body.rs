//! Receiving an object's bytes: undo `aws-chunked`, write to a staged file off the
//! async threads, and validate Content-MD5, the flexible checksum (header or
//! trailer) and a signed payload hash along the way.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::auth::ChunkSigning;
use crate::http::FrameError;
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::checksum::{self, Algorithm};
use crate::s3::chunked::{Decoder, FramingError};
use crate::s3::error::{Code, Result, S3Error};
use crate::store::{Staged, Store};

/// An object or part written to a staged file and checked.
pub struct Received {
    pub staged: Staged,
    pub size: u64,
    /// Hex MD5 of the payload.
    pub md5_hex: String,
    /// The flexible checksum the client sent, verified: algorithm and base64 value.
    pub checksum: Option<(Algorithm, String)>,
}

/// How the client said it checks the payload.
#[derive(Debug, Default, Clone)]
pub struct Expectations {
    aws_chunked: bool,
    /// Payload length: `x-amz-decoded-content-length` for aws-chunked, else Content-Length.
    pub length: Option<u64>,
    content_md5: Option<Vec<u8>>,
    /// A checksum given in a header: algorithm and raw digest.
    header_checksum: Option<(Algorithm, Vec<u8>)>,
    /// A checksum announced in `x-amz-trailer`.
    trailer_checksum: Option<Algorithm>,
    /// The hex SHA-256 of the payload the signature covers, when the client sent one.
    payload_sha256: Option<String>,
    /// The chunk signatures to check (`--auth strict`).
    chunk_signing: Option<ChunkSigning>,
    /// The checksum to compute when the client sends none (a full-object upload's parts).
    computed: Option<Algorithm>,
}

impl Expectations {
    /// Reads and validates the headers that describe the body, before any of it is read.
    pub fn from_request(req: &Req, size_max: u64) -> Result<Expectations> {
        let content_sha256 = req.header("x-amz-content-sha256").unwrap_or("");
        let aws_chunked = content_sha256.starts_with("STREAMING-")
            || req.header("content-encoding").is_some_and(|e| e.split(',').any(|t| t.trim().eq_ignore_ascii_case("aws-chunked")));
        let number = |name: &str| -> Result<Option<u64>> {
            match req.header(name) {
                None => Ok(None),
                Some(v) => {
                    v.trim().parse::<u64>().map(Some).map_err(|_| S3Error::invalid_argument(format!("{name} is not a number"), name, v))
                }
            }
        };
        let content_length = number("content-length")?;
        let length = if aws_chunked { number("x-amz-decoded-content-length")? } else { content_length };
        let chunked_transfer = req.header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        if length.is_none() && !(aws_chunked && (chunked_transfer || content_length.is_some())) {
            return Err(S3Error::new(Code::MissingContentLength, "You must provide the Content-Length HTTP header."));
        }
        if let Some(length) = length
            && length > size_max
        {
            return Err(S3Error::new(Code::EntityTooLarge, "Your proposed upload exceeds the maximum allowed size")
                .with("ProposedSize", length.to_string())
                .with("MaxSizeAllowed", size_max.to_string()));
        }
        let content_md5 = match req.header("content-md5") {
            None => None,
            Some(v) => match base64::engine::general_purpose::STANDARD.decode(v.trim()) {
                Ok(raw) if raw.len() == 16 => Some(raw),
                _ => return Err(S3Error::new(Code::InvalidDigest, "The Content-MD5 you specified was invalid.")),
            },
        };
        let mut header_checksum = None;
        for algorithm in Algorithm::ALL {
            let name = algorithm.header();
            if let Some(value) = req.header(&name) {
                if header_checksum.is_some() {
                    return Err(S3Error::invalid_request(
                        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
                    ));
                }
                let raw = checksum::decode(algorithm, value)
                    .ok_or_else(|| S3Error::invalid_request(format!("Value for {name} header is invalid.")))?;
                header_checksum = Some((algorithm, raw));
            }
        }
        let trailer_checksum = match req.header("x-amz-trailer") {
            None => None,
            Some(trailer) => {
                let trailer = trailer.trim().to_ascii_lowercase();
                let algorithm = trailer.strip_prefix("x-amz-checksum-").and_then(Algorithm::parse).ok_or_else(|| {
                    S3Error::invalid_request(format!("The value specified in the x-amz-trailer header is not supported: {trailer}"))
                })?;
                if header_checksum.is_some() {
                    return Err(S3Error::invalid_request("Expecting a single x-amz-checksum- header"));
                }
                if !aws_chunked {
                    return Err(S3Error::invalid_request("x-amz-trailer is only supported with aws-chunked encoded bodies"));
                }
                Some(algorithm)
            }
        };
        if let Some(sdk) = req.header("x-amz-sdk-checksum-algorithm") {
            let declared = header_checksum.as_ref().map(|(a, _)| *a).or(trailer_checksum);
            match (Algorithm::parse(sdk), declared) {
                (_, None) => {
                    return Err(S3Error::invalid_request(
                        "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or x-amz-trailer headers were found.",
                    ));
                }
                (Some(a), Some(b)) if a == b => {}
                _ => return Err(S3Error::invalid_request("Value for x-amz-sdk-checksum-algorithm header is invalid.")),
            }
        }
        let payload_sha256 = (content_sha256.len() == 64 && content_sha256.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| content_sha256.to_ascii_lowercase());
        let chunk_signing = req.chunk_signing.clone();
        Ok(Expectations {
            aws_chunked,
            length,
            content_md5,
            header_checksum,
            trailer_checksum,
            payload_sha256,
            chunk_signing,
            computed: None,
        })
    }

    /// The algorithm of the checksum the client sent (in a header or a trailer).
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.header_checksum.as_ref().map(|(a, _)| *a).or(self.trailer_checksum)
    }

    /// Computes `algorithm`'s checksum of the body when the client sends no checksum.
    pub fn computing(mut self, algorithm: Algorithm) -> Expectations {
        self.computed = Some(algorithm);
        self
    }
}

/// What was received: size and digests.
struct Digests {
    size: u64,
    md5: Vec<u8>,
    checksum: Option<Vec<u8>>,
    sha256: Option<String>,
}

/// The digests computed while a body arrives.
struct Hashers {
    size: u64,
    md5: Md5,
    checksum: Option<crate::s3::checksum::Hasher>,
    sha256: Option<Sha256>,
}

impl Hashers {
    fn new(expect: &Expectations) -> Hashers {
        Hashers {
            size: 0,
            md5: Md5::new(),
            checksum: expect.algorithm().or(expect.computed).map(Algorithm::hasher),
            sha256: expect.payload_sha256.is_some().then(Sha256::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.md5.update(bytes);
        if let Some(h) = self.checksum.as_mut() {
            h.update(bytes);
        }
        if let Some(h) = self.sha256.as_mut() {
            h.update(bytes);
        }
    }

    fn finish(self) -> Digests {
        Digests {
            size: self.size,
            md5: self.md5.finalize().to_vec(),
            checksum: self.checksum.map(|h| h.finish()),
            sha256: self.sha256.map(|h| hex::encode(h.finalize())),
        }
    }
}

/// Bodies up to this size are read into memory, then written, checked and committed in
/// one blocking call.
const SMALL_BODY_BYTES_MAX: u64 = 1024 * 1024;
/// A large body is flushed to disk every this many bytes while it arrives, so the fsync
/// before the commit has little left to do.
const FLUSH_EVERY_BYTES: u64 = 8 * 1024 * 1024;

/// Receives the body into a staged file, checks it against `expect`, then runs `then`
/// (the commit) off the async threads.
pub async fn receive_then<T: Send + 'static>(
    state: &Arc<S3State>,
    expect: &Expectations,
    body: Incoming,
    size_max: u64,
    then: impl FnOnce(&Store, Received) -> Result<T> + Send + 'static,
) -> Result<T> {
    if !expect.aws_chunked
        && let Some(length) = expect.length
        && length <= SMALL_BODY_BYTES_MAX
    {
        let mut body = body;
        let bytes = crate::http::read_limited(&mut body, length as usize + 1).await.map_err(frame_error)?.ok_or_else(incomplete)?;
        let expect = expect.clone();
        return crate::s3::common::blocking(state, move |store| {
            let mut staged = store.stage()?;
            staged.file().write_all(&bytes)?;
            let mut hashers = Hashers::new(&expect);
            hashers.update(&bytes);
            let received = check(&expect, hashers.finish(), staged, None)?;
            then(store, received)
        })
        .await?;
    }
    let received = receive_streaming(state, expect, body, size_max).await?;
    crate::s3::common::blocking(state, move |store| then(store, received)).await?
}

/// S3's answers for a body that stalled or broke off.
pub fn frame_error(err: FrameError) -> S3Error {
    match err {
        FrameError::Idle(_) => S3Error::new(
            Code::RequestTimeout,
            "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.",
        ),
        FrameError::Io(err) => S3Error::new(Code::IncompleteBody, format!("the request body could not be read: {err}")),
    }
}

/// Reads a small request body (an XML document) into memory, as strictly as an object's
/// body is received: aws-chunked framing is undone with its chunk signatures checked, a
/// signed hex `x-amz-content-sha256` must match the bytes, and so must a trailing
/// checksum. `None` when the payload is longer than `limit`.
pub async fn receive_small(req: &Req, mut body: Incoming, limit: usize) -> Result<Option<Bytes>> {
    let content_sha256 = req.header("x-amz-content-sha256").unwrap_or("");
    let aws_chunked = content_sha256.starts_with("STREAMING-")
        || req.header("content-encoding").is_some_and(|e| e.split(',').any(|t| t.trim().eq_ignore_ascii_case("aws-chunked")));
    let bytes = if aws_chunked {
        let mut decoder = Decoder::new(req.chunk_signing.clone());
        let mut payload = bytes::BytesMut::new();
        let mut too_large = false;
        while let Some(data) = crate::http::next_data(&mut body).await {
            decoder
                .push(data.map_err(frame_error)?, &mut |b| {
                    too_large |= payload.len() + b.len() > limit;
                    if !too_large {
                        payload.extend_from_slice(&b);
                    }
                })
                .map_err(framing_error)?;
            if too_large {
                return Ok(None);
            }
        }
        decoder.finish().map_err(framing_error)?;
        let payload = payload.freeze();
        for (name, value) in &decoder.trailers {
            if let Some(algorithm) = name.strip_prefix("x-amz-checksum-").and_then(Algorithm::parse)
                && checksum::of(algorithm, &payload) != value.trim()
            {
                return Err(S3Error::new(
                    Code::BadDigest,
                    format!("The {} you specified did not match the calculated checksum.", algorithm.name()),
                ));
            }
        }
        payload
    } else {
        match crate::http::read_limited(&mut body, limit).await.map_err(frame_error)? {
            Some(bytes) => bytes,
            None => return Ok(None),
        }
    };
    if content_sha256.len() == 64 && content_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        let actual = crate::sigv4::sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(content_sha256) {
            return Err(sha256_mismatch(&content_sha256.to_ascii_lowercase(), &actual));
        }
    }
    Ok(Some(bytes))
}

/// Checks the body of an operation that takes none against a signed hex
/// `x-amz-content-sha256`: a body the operation ignores changes nothing, but a signature
/// that claims another body is refused all the same, as AWS does.
pub async fn check_unused_body(req: &Req, body: &mut Incoming) -> Result<()> {
    let content_sha256 = req.header("x-amz-content-sha256").unwrap_or("");
    if content_sha256.len() != 64 || !content_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let Some(bytes) = crate::http::read_limited(body, crate::config::SMALL_BODY_BYTES_MAX).await.map_err(frame_error)? else {
        return Err(S3Error::new(Code::MaxMessageLengthExceeded, "Your request was too big."));
    };
    let actual = crate::sigv4::sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(content_sha256) {
        return Err(sha256_mismatch(&content_sha256.to_ascii_lowercase(), &actual));
    }
    Ok(())
}

fn sha256_mismatch(expected: &str, actual: &str) -> S3Error {
    S3Error::new(Code::XAmzContentSHA256Mismatch, "The provided 'x-amz-content-sha256' header does not match what was computed.")
        .with("ClientComputedContentSHA256", expected)
        .with("S3ComputedContentSHA256", actual)
}

fn incomplete() -> S3Error {
    S3Error::new(Code::IncompleteBody, "You did not provide the number of bytes specified by the Content-Length HTTP header")
}

/// Streams a body to disk: one thread writes (and flushes as it goes), another hashes,
/// while this task reads from the socket and undoes aws-chunked.
async fn receive_streaming(state: &Arc<S3State>, expect: &Expectations, mut body: Incoming, size_max: u64) -> Result<Received> {
    let mut staged = crate::s3::common::blocking(state, |store| store.stage()).await??;
    let durable = state.store.durability() == crate::store::Durability::Fsync;
    let (write_tx, mut write_rx) = mpsc::channel::<Bytes>(16);
    let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(16);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<Staged> {
        let mut unflushed = 0u64;
        while let Some(bytes) = write_rx.blocking_recv() {
            staged.file().write_all(&bytes)?;
            unflushed += bytes.len() as u64;
            if durable && unflushed >= FLUSH_EVERY_BYTES {
                staged.file().sync_data()?;
                unflushed = 0;
            }
        }
        Ok(staged)
    });
    let mut hashers = Hashers::new(expect);
    let hasher = tokio::task::spawn_blocking(move || {
        while let Some(bytes) = hash_rx.blocking_recv() {
            hashers.update(&bytes);
        }
        hashers.finish()
    });
    let mut decoder = expect.aws_chunked.then(|| Decoder::new(expect.chunk_signing.clone()));
    let mut received = 0u64;
    let mut failure: Option<S3Error> = None;
    'frames: while let Some(data) = crate::http::next_data(&mut body).await {
        let data = match data {
            Ok(data) => data,
            Err(err) => {
                failure = Some(frame_error(err));
                break;
            }
        };
        let mut payload = Vec::new();
        match decoder.as_mut() {
            Some(decoder) => {
                if let Err(err) = decoder.push(data, &mut |b| payload.push(b)) {
                    failure = Some(framing_error(err));
                    break;
                }
            }
            None => payload.push(data),
        }
        for bytes in payload {
            received += bytes.len() as u64;
            if received > size_max {
                failure = Some(
                    S3Error::new(Code::EntityTooLarge, "Your proposed upload exceeds the maximum allowed size")
                        .with("MaxSizeAllowed", size_max.to_string()),
                );
                break 'frames;
            }
            if hash_tx.send(bytes.clone()).await.is_err() || write_tx.send(bytes).await.is_err() {
                break 'frames;
            }
        }
    }
    drop((write_tx, hash_tx));
    let staged = writer.await.map_err(S3Error::internal)??;
    let digests = hasher.await.map_err(S3Error::internal)?;
    if let Some(err) = failure {
        return Err(err);
    }
    if let Some(decoder) = decoder.as_mut() {
        decoder.finish().map_err(framing_error)?;
    }
    check(expect, digests, staged, decoder.as_ref())
}

/// Compares what was received with what the client declared.
fn check(expect: &Expectations, digests: Digests, staged: Staged, decoder: Option<&Decoder>) -> Result<Received> {
    if let Some(length) = expect.length
        && length != digests.size
    {
        return Err(incomplete());
    }
    if let Some(expected) = &expect.content_md5
        && expected != &digests.md5
    {
        let b64 = checksum::to_base64;
        return Err(S3Error::new(Code::BadDigest, "The Content-MD5 you specified did not match what we received.")
            .with("ExpectedDigest", b64(expected))
            .with("CalculatedDigest", b64(&digests.md5)));
    }
    if let (Some(expected), Some(actual)) = (&expect.payload_sha256, &digests.sha256)
        && expected != actual
    {
        return Err(sha256_mismatch(expected, actual));
    }
    let checksum = match (expect.algorithm(), digests.checksum) {
        (Some(algorithm), Some(actual)) => {
            let expected = match &expect.header_checksum {
                Some((_, raw)) => raw.clone(),
                None => trailer_value(decoder, algorithm)?,
            };
            if expected != actual {
                return Err(S3Error::new(
                    Code::BadDigest,
                    format!("The {} you specified did not match the calculated checksum.", algorithm.name()),
                ));
            }
            Some((algorithm, checksum::to_base64(&actual)))
        }
        (None, Some(actual)) => expect.computed.map(|algorithm| (algorithm, checksum::to_base64(&actual))),
        _ => None,
    };
    Ok(Received { staged, size: digests.size, md5_hex: hex::encode(&digests.md5), checksum })
}

fn trailer_value(decoder: Option<&Decoder>, algorithm: Algorithm) -> Result<Vec<u8>> {
    let name = algorithm.header();
    let value = decoder.and_then(|d| d.trailers.iter().find(|(n, _)| *n == name)).map(|(_, v)| v.as_str()).ok_or_else(|| {
        S3Error::new(
            Code::MalformedTrailerError,
            "The request contained trailing data that was not well-formed or did not conform to our published schema.",
        )
    })?;
    checksum::decode(algorithm, value).ok_or_else(|| S3Error::invalid_request(format!("Value for {name} trailing header is invalid.")))
}

fn framing_error(err: FramingError) -> S3Error {
    match err {
        FramingError::Incomplete => {
            S3Error::new(Code::IncompleteBody, "You did not provide the number of bytes specified by the Content-Length HTTP header")
        }
        FramingError::Malformed(what) => S3Error::invalid_request(format!("the aws-chunked body is malformed: {what}")),
        FramingError::Signature => S3Error::signature_mismatch(),
    }
}
