//! Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts,
//! ListMultipartUploads, with AWS's ETags (`md5(part md5s)-N`) and checksums.

use std::io::Write;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use md5::{Digest, Md5};
use serde::Deserialize;

use crate::config::OBJECT_BYTES_MAX;
use crate::http::{Body, RequestCtx, empty};
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::body::{Expectations, receive_then};
use crate::s3::checksum::{self, Algorithm};
use crate::s3::common::{
    blocking, meta_from_headers, no_body, parse_xml, quoted, read_small_body, require_bucket, store_error, write_owner, xml_response,
};
use crate::s3::copy::{copy_range, parse_copy_source};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::preconditions::{WriteConditions, check_copy_source, check_early};
use crate::s3::router::check_key;
use crate::s3::xml::{Xml, timestamp};
use crate::store::multipart::{Completed, Part, Upload};
use crate::store::{ObjectMeta, StoreError, now_ms};

/// Every part but the last must be at least 5 MiB.
const PART_BYTES_MIN: u64 = 5 * 1024 * 1024;
const PARTS_MAX: u32 = 10_000;

fn upload_error(err: StoreError, bucket: &str, upload_id: &str) -> S3Error {
    match err {
        StoreError::NoSuchUpload => S3Error::no_such_upload(upload_id),
        other => store_error(other, bucket),
    }
}

async fn load_upload(state: &Arc<S3State>, bucket: &str, key: &str, upload_id: &str) -> Result<Upload> {
    let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
    blocking(state, move |store| store.upload(&b, &k, &u)).await?.map_err(|e| upload_error(e, bucket, upload_id))
}

fn part_number(value: &str) -> Result<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=PARTS_MAX).contains(n))
        .ok_or_else(|| S3Error::invalid_argument("Part number must be an integer between 1 and 10000, inclusive", "partNumber", value))
}

/// The checksum an upload declared at Create.
#[derive(Debug, Clone, Copy)]
struct Declared {
    algorithm: Algorithm,
    /// FULL_OBJECT: the object's value is the whole object's; else COMPOSITE.
    full_object: bool,
}

impl Declared {
    fn of(upload: &Upload) -> Option<Declared> {
        let algorithm = upload.checksum_algorithm.as_deref().and_then(Algorithm::parse)?;
        Some(Declared { algorithm, full_object: upload.checksum_type.as_deref() == Some("FULL_OBJECT") })
    }

    fn kind(self) -> &'static str {
        if self.full_object { "FULL_OBJECT" } else { "COMPOSITE" }
    }
}

/// The algorithm of the whole object's checksum: the declared one of a FULL_OBJECT
/// upload; S3's own CRC64NVME when the upload declared none; none for COMPOSITE.
fn full_object_algorithm(declared: Option<Declared>) -> Option<Algorithm> {
    match declared {
        Some(d) => d.full_object.then_some(d.algorithm),
        None => Some(Algorithm::Crc64Nvme),
    }
}

/// Parses `x-amz-checksum-type` (case-insensitive) as S3 spells it back.
fn checksum_type(value: &str) -> Result<&'static str> {
    ["COMPOSITE", "FULL_OBJECT"]
        .into_iter()
        .find(|t| t.eq_ignore_ascii_case(value))
        .ok_or_else(|| S3Error::invalid_request("Value for x-amz-checksum-type header is invalid."))
}

fn lower(algorithm: Option<Algorithm>) -> String {
    algorithm.map_or_else(|| "null".to_owned(), |a| a.name().to_ascii_lowercase())
}

pub async fn create(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req, bucket: &str, key: &str) -> Result<Response<Body>> {
    check_key(key)?;
    let checksum_algorithm =
        match req.header("x-amz-checksum-algorithm") {
            None => None,
            Some(name) => Some(Algorithm::parse(name).ok_or_else(|| {
                S3Error::invalid_argument("Checksum algorithm provided is unsupported.", "x-amz-checksum-algorithm", name)
            })?),
        };
    let requested_type = req.header("x-amz-checksum-type").map(checksum_type).transpose()?;
    let checksum_type = match (checksum_algorithm, requested_type) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(S3Error::invalid_request(
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
            ));
        }
        (Some(a), None) => Some(if a.full_object_only() { "FULL_OBJECT" } else { "COMPOSITE" }),
        (Some(a), Some(kind)) => {
            // CRC64NVME is whole-object only; the SHAs cannot be combined into one.
            let allowed = match kind {
                "COMPOSITE" => !a.full_object_only(),
                _ => !matches!(a, Algorithm::Sha1 | Algorithm::Sha256),
            };
            if !allowed {
                return Err(S3Error::invalid_request(format!(
                    "The {kind} checksum type cannot be used with the {} checksum algorithm.",
                    lower(Some(a))
                )));
            }
            Some(kind)
        }
    };
    let mut meta = meta_from_headers(req)?;
    require_bucket(state, bucket).await?;
    let sse = crate::s3::encryption::for_object_write(state, req, bucket).await?;
    crate::s3::encryption::set_object_encryption(&mut meta.headers, sse);
    meta.acl = crate::s3::acl::for_object_write(state, req, bucket, &ctx.account).await?;
    let upload = Upload {
        id: format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        initiated_ms: now_ms(),
        owner: ctx.account.clone(),
        meta,
        checksum_algorithm: checksum_algorithm.map(|a| a.name().to_owned()),
        checksum_type: checksum_type.map(str::to_owned),
    };
    let stored = upload.clone();
    blocking(state, move |store| store.create_upload(&stored)).await?.map_err(|e| store_error(e, bucket))?;
    let mut x = Xml::document();
    x.root("InitiateMultipartUploadResult");
    x.leaf("Bucket", bucket);
    x.leaf("Key", key);
    x.leaf("UploadId", &upload.id);
    x.close("InitiateMultipartUploadResult");
    let mut response = xml_response(x.finish());
    let headers = response.headers_mut();
    crate::s3::encryption::insert_object_headers(headers, &upload.meta.headers);
    if let Some(a) = upload.checksum_algorithm.as_deref().and_then(|a| http::HeaderValue::from_str(a).ok()) {
        headers.insert("x-amz-checksum-algorithm", a);
    }
    if let Some(t) = upload.checksum_type.as_deref().and_then(|t| http::HeaderValue::from_str(t).ok()) {
        headers.insert("x-amz-checksum-type", t);
    }
    crate::s3::lifecycle::add_abort(state, bucket, key, upload.initiated_ms, response.headers_mut()).await;
    Ok(response)
}

pub async fn upload_part(
    state: &Arc<S3State>,
    req: &Req,
    body: Incoming,
    bucket: &str,
    key: &str,
    upload_id: &str,
    number: &str,
) -> Result<Response<Body>> {
    let number = part_number(number)?;
    let mut expect = Expectations::from_request(req, OBJECT_BYTES_MAX)?;
    let upload = load_upload(state, bucket, key, upload_id).await?;
    // A declared checksum is every part's (a full-object upload computes it when a part
    // comes without); an upload that declared none takes what its parts carry.
    if let Some(declared) = Declared::of(&upload) {
        match expect.algorithm() {
            Some(sent) if sent == declared.algorithm => {}
            None if declared.full_object => expect = expect.computing(declared.algorithm),
            sent => {
                return Err(S3Error::invalid_request(format!(
                    "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                    lower(Some(declared.algorithm)),
                    lower(sent)
                )));
            }
        }
    }
    let sse = upload.meta.headers.clone();
    let (b, u) = (bucket.to_owned(), upload_id.to_owned());
    let part = receive_then(state, &expect, body, OBJECT_BYTES_MAX, move |store, received| {
        let mut part =
            Part { number, size: received.size, etag: received.md5_hex.clone(), last_modified_ms: now_ms(), checksums: Default::default() };
        if let Some((algorithm, value)) = &received.checksum {
            part.checksums.insert(algorithm.name().to_owned(), value.clone());
        }
        store.commit_part(&upload, received.staged, &part).map_err(|e| upload_error(e, &b, &u))?;
        Ok(part)
    })
    .await?;
    let mut response = Response::builder().status(StatusCode::OK).header("etag", quoted(&part.etag));
    response = crate::s3::encryption::with_object_headers(response, &sse);
    response = checksum::add_headers(response, &part.checksums);
    response.body(empty()).map_err(S3Error::internal)
}

pub async fn upload_part_copy(
    state: &Arc<S3State>,
    req: &Req,
    bucket: &str,
    key: &str,
    upload_id: &str,
    number: &str,
) -> Result<Response<Body>> {
    let number = part_number(number)?;
    let upload = load_upload(state, bucket, key, upload_id).await?;
    let copy_source = parse_copy_source(req.header("x-amz-copy-source").unwrap_or_default())?;
    let (file, source, source_version) = crate::s3::copy::open_copy_source(state, &copy_source).await?;
    check_copy_source(req, &source)?;
    let (start, len) = match req.header("x-amz-copy-source-range") {
        None => (0, source.size),
        Some(range) => copy_source_range(range, source.size)?,
    };
    let algorithm = upload.checksum_algorithm.as_deref().and_then(Algorithm::parse);
    let part = blocking(state, move |store| -> crate::store::Result<Part> {
        let (staged, md5, checksum) = copy_range(store, file, start, len, algorithm)?;
        let mut part = Part { number, size: len, etag: md5, last_modified_ms: now_ms(), checksums: Default::default() };
        if let (Some(a), Some(v)) = (algorithm, checksum) {
            part.checksums.insert(a.name().to_owned(), v);
        }
        store.commit_part(&upload, staged, &part)?;
        Ok(part)
    })
    .await?
    .map_err(|e| upload_error(e, bucket, upload_id))?;
    let mut x = Xml::document();
    x.root("CopyPartResult");
    x.leaf("LastModified", &timestamp(part.last_modified_ms));
    x.leaf("ETag", &quoted(&part.etag));
    checksum::write_elements(&mut x, &part.checksums);
    x.close("CopyPartResult");
    let mut response = xml_response(x.finish());
    if let Some(value) = source_version.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert("x-amz-copy-source-version-id", value);
    }
    Ok(response)
}

/// What a CompleteMultipartUpload's headers expect of the object.
struct Expected {
    /// `x-amz-checksum-<alg>` for the object's algorithm (COMPOSITE values end in `-N`).
    checksum: Option<String>,
    /// `x-amz-mp-object-size`.
    size: Option<u64>,
}

impl Expected {
    fn from_request(req: &Req, upload: &Upload) -> Result<Expected> {
        let declared = Declared::of(upload);
        if let Some(kind) = req.header("x-amz-checksum-type").map(checksum_type).transpose()? {
            // An upload that declared nothing becomes a FULL_OBJECT CRC64NVME object.
            let created = declared.map_or("FULL_OBJECT", Declared::kind);
            if kind != created {
                return Err(S3Error::invalid_request(format!(
                    "The upload was created using the {created} checksum mode. The complete request must use the same checksum mode."
                )));
            }
        }
        let size = match req.header("x-amz-mp-object-size") {
            None => None,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n < 0 => {
                    return Err(S3Error::invalid_request(format!("Value for x-amz-mp-object-size header is less than zero: '{v}'")));
                }
                Ok(n) => Some(n as u64),
                Err(_) => return Err(S3Error::invalid_request(format!("Value for x-amz-mp-object-size header is invalid: '{v}'"))),
            },
        };
        let algorithm = declared.map(|d| d.algorithm).or(full_object_algorithm(declared));
        let checksum = algorithm.and_then(|a| req.header(&a.header())).map(|v| v.trim().to_owned());
        Ok(Expected { checksum, size })
    }
}

fn invalid_part(upload_id: &str, wanted: &CompletedPart) -> S3Error {
    S3Error::new(
        Code::InvalidPart,
        "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
    )
    .with("UploadId", upload_id)
    .with("PartNumber", wanted.number.to_string())
    .with("ETag", wanted.etag.clone())
}

/// `x-amz-copy-source-range`: unlike a GET's Range, only `bytes=first-last`, wholly
/// inside the source. Answers the start and the length.
fn copy_source_range(range: &str, size: u64) -> Result<(u64, u64)> {
    let bounds = range.trim().strip_prefix("bytes=").and_then(|r| r.split_once('-'));
    let Some((first, last)) = bounds
        .and_then(|(f, l)| Some((f.trim().parse::<u64>().ok()?, l.trim().parse::<u64>().ok()?)))
        .filter(|(first, last)| first <= last)
    else {
        return Err(S3Error::invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
            "x-amz-copy-source-range",
            range,
        ));
    };
    if last >= size {
        return Err(S3Error::invalid_argument(
            format!("Range specified is not valid for source object of size: {size}"),
            "x-amz-copy-source-range",
            range,
        ));
    }
    Ok((first, last - first + 1))
}

/// The parts a CompleteMultipartUpload names, checked against the stored ones (ETags and
/// checksums), and the object's metadata (ETag, composite checksum) before its bytes are
/// joined.
fn plan_completion(
    request: &CompleteMultipartUpload,
    stored: &[Part],
    upload: &Upload,
    upload_id: &str,
    expected: &Expected,
) -> Result<(Vec<Part>, ObjectMeta)> {
    let declared = Declared::of(upload);
    let mut chosen: Vec<Part> = Vec::with_capacity(request.parts.len());
    for wanted in &request.parts {
        let (number, etag) = wanted.id();
        let part = stored.iter().find(|p| p.number == number && p.etag == etag).ok_or_else(|| invalid_part(upload_id, wanted))?;
        if let Some(d) = declared {
            let stored_value = part.checksums.get(d.algorithm.name());
            match wanted.checksum(d.algorithm) {
                Some(value) if stored_value.is_some_and(|s| s == value.trim()) => {}
                Some(_) => return Err(invalid_part(upload_id, wanted)),
                // A full-object upload's parts need not name their checksums.
                None if d.full_object => {}
                None => {
                    return Err(S3Error::invalid_request(format!(
                        "The upload was created using a {} checksum. The complete request must include the checksum for each part. It was missing for part {} in the request.",
                        lower(Some(d.algorithm)),
                        wanted.number
                    )));
                }
            }
        }
        chosen.push(part.clone());
    }
    for part in &chosen[..chosen.len() - 1] {
        if part.size < PART_BYTES_MIN {
            return Err(S3Error::new(Code::EntityTooSmall, "Your proposed upload is smaller than the minimum allowed size")
                .with("ProposedSize", part.size.to_string())
                .with("MinSizeAllowed", PART_BYTES_MIN.to_string()));
        }
    }
    let total: u64 = chosen.iter().map(|p| p.size).sum();
    if total > 5 * 1024 * 1024 * 1024 * 1024 {
        return Err(S3Error::new(Code::EntityTooLarge, "Your proposed upload exceeds the maximum allowed size"));
    }
    if let Some(size) = expected.size
        && size != total
    {
        return Err(S3Error::invalid_request(format!(
            "The provided 'x-amz-mp-object-size' header value {size} does not match what was computed: {total}"
        )));
    }
    // The object's ETag: MD5 of the parts' binary MD5s, then `-<count>`.
    let mut md5s = Md5::new();
    for part in &chosen {
        md5s.update(hex::decode(&part.etag).map_err(S3Error::internal)?);
    }
    let etag = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
    let mut meta =
        ObjectMeta { etag, last_modified_ms: now_ms(), part_sizes: chosen.iter().map(|p| p.size).collect(), ..upload.meta.clone() };
    if let Some(d) = declared {
        let values: Option<Vec<String>> = chosen.iter().map(|p| p.checksums.get(d.algorithm.name()).cloned()).collect();
        meta.part_checksums = values.unwrap_or_default();
    }
    if let Some(d) = declared
        && !d.full_object
    {
        // base64(H(raw part checksums in order)) + `-N`; the check above made sure each is there.
        let mut composite = d.algorithm.hasher();
        for (wanted, value) in request.parts.iter().zip(&meta.part_checksums) {
            composite.update(&checksum::decode(d.algorithm, value).ok_or_else(|| invalid_part(upload_id, wanted))?);
        }
        let value = format!("{}-{}", checksum::to_base64(&composite.finish()), chosen.len());
        if expected.checksum.as_ref().is_some_and(|e| *e != value) {
            return Err(checksum_mismatch(d.algorithm));
        }
        meta.checksums.insert(d.algorithm.name().to_owned(), value);
        meta.checksum_type = Some("COMPOSITE".to_owned());
    }
    Ok((chosen, meta))
}

fn checksum_mismatch(algorithm: Algorithm) -> S3Error {
    S3Error::new(Code::BadDigest, format!("The {} you specified did not match the calculated checksum.", algorithm.name()))
}

/// Joins the chosen parts into a staged file (hashing them for a full-object checksum,
/// checked against `expected` when the client sent one) and commits it as the object;
/// the caller holds the upload's lock.
fn assemble(
    store: &crate::store::Store,
    upload: &Upload,
    bucket: &str,
    key: &str,
    chosen: &[Part],
    mut meta: ObjectMeta,
    expected: Option<&str>,
    conditions: Option<&WriteConditions>,
) -> crate::store::Result<std::result::Result<ObjectMeta, S3Error>> {
    let full_object = full_object_algorithm(Declared::of(upload));
    let mut staged = store.stage()?;
    let mut hasher = full_object.map(Algorithm::hasher);
    for part in chosen {
        let mut file = store.open_part(upload, part.number)?;
        match hasher.as_mut() {
            None => {
                std::io::copy(&mut file, staged.file())?;
            }
            Some(h) => {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut file, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    staged.file().write_all(&buf[..n])?;
                }
            }
        }
    }
    if let (Some(algorithm), Some(h)) = (full_object, hasher) {
        let value = checksum::to_base64(&h.finish());
        if expected.is_some_and(|e| e != value) {
            return Ok(Err(checksum_mismatch(algorithm)));
        }
        meta.checksums.insert(algorithm.name().to_owned(), value);
        meta.checksum_type = Some("FULL_OBJECT".to_owned());
    }
    store.commit_object_if(bucket, key, staged, meta, conditions)
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompleteMultipartUpload {
    #[serde(rename = "Part", default)]
    parts: Vec<CompletedPart>,
}

#[derive(Debug, Deserialize)]
struct CompletedPart {
    #[serde(rename = "PartNumber")]
    number: u32,
    #[serde(rename = "ETag")]
    etag: String,
    #[serde(rename = "ChecksumCRC32")]
    crc32: Option<String>,
    #[serde(rename = "ChecksumCRC32C")]
    crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME")]
    crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA1")]
    sha1: Option<String>,
    #[serde(rename = "ChecksumSHA256")]
    sha256: Option<String>,
}

impl CompletedPart {
    fn checksum(&self, algorithm: Algorithm) -> Option<&str> {
        match algorithm {
            Algorithm::Crc32 => &self.crc32,
            Algorithm::Crc32c => &self.crc32c,
            Algorithm::Crc64Nvme => &self.crc64nvme,
            Algorithm::Sha1 => &self.sha1,
            Algorithm::Sha256 => &self.sha256,
        }
        .as_deref()
    }

    /// Number and ETag without quotes, as a completion record keeps them.
    fn id(&self) -> (u32, String) {
        (self.number, self.etag.trim().trim_matches('"').to_owned())
    }
}

async fn read_completion(req: &Req, body: Incoming, upload_id: &str) -> Result<CompleteMultipartUpload> {
    let bytes = read_small_body(req, body).await?;
    let request: CompleteMultipartUpload = parse_xml(&bytes)?;
    if request.parts.is_empty() {
        return Err(S3Error::malformed_xml());
    }
    if request.parts.windows(2).any(|w| w[0].number >= w[1].number) {
        return Err(S3Error::new(
            Code::InvalidPartOrder,
            "The list of parts was not in ascending order. Parts must be ordered by part number.",
        )
        .with("UploadId", upload_id));
    }
    Ok(request)
}

pub async fn complete(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str, key: &str, upload_id: &str) -> Result<Response<Body>> {
    let upload = match load_upload(state, bucket, key, upload_id).await {
        Ok(upload) => upload,
        Err(err) if err.code == Code::NoSuchUpload => return complete_again(state, req, body, bucket, key, upload_id, err).await,
        Err(err) => return Err(err),
    };
    let mut conditions = WriteConditions::of_write(req, key)?;
    let expected = Expected::from_request(req, &upload)?;
    // Before the parts are joined, which can take long; the commit checks again.
    check_early(state, bucket, key, &mut conditions).await?;
    let request = read_completion(req, body, upload_id).await?;
    let (b, k) = (bucket.to_owned(), key.to_owned());
    let up = upload.clone();
    let id = upload_id.to_owned();
    // Validated and assembled under the upload's lock, with its parts as they are then:
    // an abort or a part racing the completion comes wholly before or after it.
    let outcome = blocking(state, move |store| {
        store.complete_upload(&up, |stored| -> crate::store::Result<std::result::Result<Completed, S3Error>> {
            let (chosen, meta) = match plan_completion(&request, stored, &up, &id, &expected) {
                Ok(plan) => plan,
                Err(err) => return Ok(Err(err)),
            };
            Ok(assemble(store, &up, &b, &k, &chosen, meta, expected.checksum.as_deref(), conditions.as_ref())?.map(|meta| Completed {
                bucket: b.clone(),
                key: k.clone(),
                completed_ms: now_ms(),
                parts: request.parts.iter().map(CompletedPart::id).collect(),
                meta: ObjectMeta { part_sizes: Vec::new(), part_checksums: Vec::new(), ..meta },
            }))
        })
    })
    .await?
    .map_err(|e| upload_error(e, bucket, upload_id))?;
    let completed = match outcome {
        Ok(completed) => completed,
        // After a conflict AWS drops the upload: the client starts again. (After a 412
        // it stays, to be completed without the condition or aborted.)
        Err(err) if err.code == Code::ConditionalRequestConflict => {
            let id = upload_id.to_owned();
            match blocking(state, move |store| store.abort_upload(&id)).await? {
                Ok(()) | Err(StoreError::NoSuchUpload) => {}
                Err(other) => tracing::warn!(upload_id, %other, "cannot remove the upload after a conflict"),
            }
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    completion_response(state, req, bucket, key, &completed.meta).await
}

/// A CompleteMultipartUpload of an upload already completed: S3 answers it again, the
/// same way, while it remembers the upload and when the request names the same parts.
async fn complete_again(
    state: &Arc<S3State>,
    req: &Req,
    body: Incoming,
    bucket: &str,
    key: &str,
    upload_id: &str,
    gone: S3Error,
) -> Result<Response<Body>> {
    require_bucket(state, bucket).await?;
    let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
    let Some(completed) = blocking(state, move |store| store.completed_upload(&b, &k, &u)).await?.map_err(|e| store_error(e, bucket))?
    else {
        return Err(gone);
    };
    let request = read_completion(req, body, upload_id).await?;
    if request.parts.iter().map(CompletedPart::id).ne(completed.parts.iter().cloned()) {
        return Err(gone);
    }
    completion_response(state, req, bucket, key, &completed.meta).await
}

async fn completion_response(state: &Arc<S3State>, req: &Req, bucket: &str, key: &str, meta: &ObjectMeta) -> Result<Response<Body>> {
    let mut x = Xml::document();
    x.root("CompleteMultipartUploadResult");
    x.leaf("Location", &format!("http://{}/{bucket}/{key}", req.header("host").unwrap_or("localhost")));
    x.leaf("Bucket", bucket);
    x.leaf("Key", key);
    x.leaf("ETag", &quoted(&meta.etag));
    checksum::write_elements(&mut x, &meta.checksums);
    x.leaf_opt("ChecksumType", meta.checksum_type.as_deref());
    x.close("CompleteMultipartUploadResult");
    let mut response = xml_response(x.finish());
    crate::s3::lifecycle::add_expiration(state, bucket, meta, response.headers_mut()).await;
    crate::s3::encryption::insert_object_headers(response.headers_mut(), &meta.headers);
    if let Some(value) = meta.version_id.as_deref().and_then(|v| http::HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert("x-amz-version-id", value);
    }
    Ok(response)
}

pub async fn abort(state: &Arc<S3State>, bucket: &str, key: &str, upload_id: &str) -> Result<Response<Body>> {
    load_upload(state, bucket, key, upload_id).await?;
    let id = upload_id.to_owned();
    blocking(state, move |store| store.abort_upload(&id)).await?.map_err(|e| upload_error(e, bucket, upload_id))?;
    Ok(no_body(StatusCode::NO_CONTENT))
}

fn number_arg(req: &Req, name: &str, default: u32) -> Result<u32> {
    match req.query.get(name) {
        None => Ok(default),
        Some(v) => {
            v.parse().map_err(|_| S3Error::invalid_argument(format!("Provided {name} not an integer or within integer range"), name, v))
        }
    }
}

pub async fn list_parts(
    state: &Arc<S3State>,
    ctx: &RequestCtx,
    req: &Req,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<Response<Body>> {
    let upload = load_upload(state, bucket, key, upload_id).await?;
    let max_parts = number_arg(req, "max-parts", 1000)?.min(1000) as usize;
    let marker = number_arg(req, "part-number-marker", 0)?;
    let up = upload.clone();
    let parts = blocking(state, move |store| store.parts(&up)).await?.map_err(|e| upload_error(e, bucket, upload_id))?;
    let after: Vec<&Part> = parts.iter().filter(|p| p.number > marker).collect();
    let page = &after[..after.len().min(max_parts)];
    let truncated = after.len() > page.len();
    let mut x = Xml::document();
    x.root("ListPartsResult");
    x.leaf("Bucket", bucket);
    x.leaf("Key", key);
    x.leaf("UploadId", upload_id);
    x.leaf("PartNumberMarker", &marker.to_string());
    x.leaf("NextPartNumberMarker", &page.last().map_or(marker, |p| p.number).to_string());
    x.leaf("MaxParts", &max_parts.to_string());
    x.leaf("IsTruncated", if truncated { "true" } else { "false" });
    for part in page {
        x.node("Part", |x| {
            x.leaf("PartNumber", &part.number.to_string());
            x.leaf("LastModified", &timestamp(part.last_modified_ms));
            x.leaf("ETag", &quoted(&part.etag));
            x.leaf("Size", &part.size.to_string());
            checksum::write_elements(x, &part.checksums);
        });
    }
    write_owner(&mut x, "Initiator", &upload.owner);
    write_owner(&mut x, "Owner", if upload.owner.is_empty() { &ctx.account } else { &upload.owner });
    x.leaf("StorageClass", "STANDARD");
    x.leaf_opt("ChecksumAlgorithm", upload.checksum_algorithm.as_deref());
    x.leaf_opt("ChecksumType", upload.checksum_type.as_deref());
    x.close("ListPartsResult");
    Ok(xml_response(x.finish()))
}

pub async fn list_uploads(state: &Arc<S3State>, ctx: &RequestCtx, req: &Req, bucket: &str) -> Result<Response<Body>> {
    require_bucket(state, bucket).await?;
    let prefix = req.query.get("prefix").unwrap_or_default().to_owned();
    let key_marker = req.query.get("key-marker").unwrap_or_default().to_owned();
    let max_uploads = number_arg(req, "max-uploads", 1000)?.min(1000) as usize;
    let b = bucket.to_owned();
    let uploads = blocking(state, move |store| store.list_uploads(&b)).await?.map_err(|e| store_error(e, bucket))?;
    let after: Vec<&Upload> = uploads.iter().filter(|u| u.key.starts_with(&prefix) && u.key.as_bytes() > key_marker.as_bytes()).collect();
    let page = &after[..after.len().min(max_uploads)];
    let truncated = after.len() > page.len();
    let mut x = Xml::document();
    x.root("ListMultipartUploadsResult");
    x.leaf("Bucket", bucket);
    x.leaf("KeyMarker", &key_marker);
    x.leaf("UploadIdMarker", req.query.get("upload-id-marker").unwrap_or_default());
    if truncated && let Some(last) = page.last() {
        x.leaf("NextKeyMarker", &last.key);
        x.leaf("NextUploadIdMarker", &last.id);
    }
    x.leaf("Prefix", &prefix);
    x.leaf("MaxUploads", &max_uploads.to_string());
    x.leaf("IsTruncated", if truncated { "true" } else { "false" });
    for upload in page {
        x.node("Upload", |x| {
            x.leaf("Key", &upload.key);
            x.leaf("UploadId", &upload.id);
            let owner = if upload.owner.is_empty() { ctx.account.as_str() } else { upload.owner.as_str() };
            write_owner(x, "Initiator", owner);
            write_owner(x, "Owner", owner);
            x.leaf("StorageClass", "STANDARD");
            x.leaf("Initiated", &timestamp(upload.initiated_ms));
            x.leaf_opt("ChecksumAlgorithm", upload.checksum_algorithm.as_deref());
            x.leaf_opt("ChecksumType", upload.checksum_type.as_deref());
        });
    }
    x.close("ListMultipartUploadsResult");
    Ok(xml_response(x.finish()))
}
