//! Bucket default encryption (Put/Get/DeleteBucketEncryption) and the server-side
//! encryption an object is written with (`x-amz-server-side-encryption*`, from the
//! request or the bucket's default). Recorded and answered as AWS does; firelake
//! encrypts nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::Deserialize;

use crate::http::Body;
use crate::s3::Req;
use crate::s3::S3State;
use crate::s3::common::{blocking, change_bucket, check_small_body_digest, parse_xml, read_small_body, xml_response};
use crate::s3::error::{Result, S3Error};
use crate::s3::xml::Xml;
use crate::store::Encryption;

/// The algorithms S3 accepts, for a bucket default and for an object.
const ALGORITHMS: [&str; 3] = ["AES256", "aws:kms", "aws:kms:dsse"];
/// What every bucket encrypts with unless configured otherwise (SSE-S3, since January 2023).
const DEFAULT_ALGORITHM: &str = "AES256";

/// The response headers that tell how an object is encrypted; an object's metadata
/// keeps them under these names.
pub const SSE_HEADER: &str = "x-amz-server-side-encryption";
pub const KMS_KEY_HEADER: &str = "x-amz-server-side-encryption-aws-kms-key-id";
pub const BUCKET_KEY_HEADER: &str = "x-amz-server-side-encryption-bucket-key-enabled";
pub const SSE_HEADERS: [&str; 3] = [SSE_HEADER, KMS_KEY_HEADER, BUCKET_KEY_HEADER];

#[derive(Debug, Deserialize)]
struct ServerSideEncryptionConfiguration {
    #[serde(rename = "Rule", default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    #[serde(rename = "ApplyServerSideEncryptionByDefault")]
    default: Option<ByDefault>,
    #[serde(rename = "BucketKeyEnabled")]
    bucket_key_enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ByDefault {
    #[serde(rename = "SSEAlgorithm")]
    sse_algorithm: String,
    #[serde(rename = "KMSMasterKeyID")]
    kms_master_key_id: Option<String>,
}

fn is_kms(algorithm: &str) -> bool {
    algorithm.starts_with("aws:kms")
}

/// Validates a PutBucketEncryption body as S3 does.
fn parse_configuration(bytes: &[u8]) -> Result<Encryption> {
    let config: ServerSideEncryptionConfiguration = parse_xml(bytes)?;
    // S3 takes exactly one rule, and the rule must say what to apply.
    let [rule] = config.rules.as_slice() else { return Err(S3Error::malformed_xml()) };
    let Some(default) = &rule.default else { return Err(S3Error::malformed_xml()) };
    // An algorithm outside the schema's enumeration does not validate against it.
    if !ALGORITHMS.contains(&default.sse_algorithm.as_str()) {
        return Err(S3Error::malformed_xml());
    }
    let key = default.kms_master_key_id.as_deref().map(str::trim).filter(|k| !k.is_empty());
    // The key id is sent back as a header of every object written under it.
    if let Some(key) = key.filter(|k| http::HeaderValue::from_str(k).is_err()) {
        return Err(S3Error::invalid_argument("The KMSMasterKeyID is not valid", "KMSMasterKeyID", key));
    }
    if key.is_some() && !is_kms(&default.sse_algorithm) {
        return Err(S3Error::invalid_argument(
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse",
            "ApplyServerSideEncryptionByDefault",
            "",
        ));
    }
    Ok(Encryption {
        sse_algorithm: default.sse_algorithm.clone(),
        kms_master_key_id: key.map(str::to_owned),
        bucket_key_enabled: rule.bucket_key_enabled.unwrap_or(false),
    })
}

fn configuration_xml(encryption: Option<&Encryption>) -> String {
    let mut x = Xml::document();
    x.root("ServerSideEncryptionConfiguration");
    x.node("Rule", |x| {
        x.node("ApplyServerSideEncryptionByDefault", |x| {
            x.leaf("SSEAlgorithm", encryption.map_or(DEFAULT_ALGORITHM, |e| e.sse_algorithm.as_str()));
            x.leaf_opt("KMSMasterKeyID", encryption.and_then(|e| e.kms_master_key_id.as_deref()));
        });
        x.leaf("BucketKeyEnabled", if encryption.is_some_and(|e| e.bucket_key_enabled) { "true" } else { "false" });
    });
    x.close("ServerSideEncryptionConfiguration");
    x.finish()
}

async fn bucket_encryption(state: &Arc<S3State>, bucket: &str) -> Result<Option<Encryption>> {
    let name = bucket.to_owned();
    let info = blocking(state, move |store| store.bucket(&name)).await??.ok_or_else(|| S3Error::no_such_bucket(bucket))?;
    Ok(info.encryption)
}

/// The bucket's default for an object write; a missing bucket is left for the commit to
/// find, so that the request body is read before the refusal (as every write does).
async fn default_for_write(state: &Arc<S3State>, bucket: &str) -> Result<Option<Encryption>> {
    // Every object write asks: the settings the store remembers, not the settings file.
    Ok(crate::s3::common::remembered_settings(state, bucket).await?.and_then(|info| info.encryption.clone()))
}

pub async fn get_bucket_encryption(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    let encryption = bucket_encryption(state, bucket).await?;
    Ok(xml_response(configuration_xml(encryption.as_ref())))
}

pub async fn put_bucket_encryption(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    bucket_encryption(state, bucket).await?;
    let bytes = read_small_body(req, body).await?;
    check_small_body_digest(req, &bytes, true)?;
    let encryption = parse_configuration(&bytes)?;
    change_bucket(state, bucket, StatusCode::OK, |info| info.encryption = Some(encryption)).await
}

/// Returns the bucket to the default every bucket has (SSE-S3).
pub async fn delete_bucket_encryption(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    change_bucket(state, bucket, StatusCode::NO_CONTENT, |info| info.encryption = None).await
}

/// The encryption a new object gets, as the headers its metadata keeps: what the request
/// asks (`x-amz-server-side-encryption` and its KMS headers), else the bucket's default.
pub async fn for_object_write(state: &Arc<S3State>, req: &Req, bucket: &str) -> Result<BTreeMap<String, String>> {
    let requested = from_request(req)?;
    let encryption = match requested {
        Some(encryption) => encryption,
        None => default_for_write(state, bucket).await?.unwrap_or_else(|| Encryption {
            sse_algorithm: DEFAULT_ALGORITHM.to_owned(),
            kms_master_key_id: None,
            bucket_key_enabled: false,
        }),
    };
    let mut headers = BTreeMap::from([(SSE_HEADER.to_owned(), encryption.sse_algorithm.clone())]);
    if is_kms(&encryption.sse_algorithm) {
        if let Some(key) = encryption.kms_master_key_id {
            headers.insert(KMS_KEY_HEADER.to_owned(), key);
        }
        // S3 Bucket Keys exist for KMS only; S3 reports them only when in use.
        if encryption.bucket_key_enabled {
            headers.insert(BUCKET_KEY_HEADER.to_owned(), "true".to_owned());
        }
    }
    Ok(headers)
}

/// The encryption a write's headers ask for, validated as S3 does; `None`: not said.
fn from_request(req: &Req) -> Result<Option<Encryption>> {
    let key = req.header(KMS_KEY_HEADER).map(str::trim).filter(|k| !k.is_empty());
    let bucket_key = match req.header(BUCKET_KEY_HEADER) {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
        Some(v) => return Err(S3Error::invalid_argument("Invalid value for header", BUCKET_KEY_HEADER, v)),
    };
    let Some(algorithm) = req.header(SSE_HEADER) else {
        if key.is_some() {
            return Err(S3Error::invalid_argument(
                "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
                SSE_HEADER,
                "",
            ));
        }
        return Ok(None);
    };
    if !ALGORITHMS.contains(&algorithm) {
        return Err(S3Error::invalid_argument("The encryption method specified is not supported", SSE_HEADER, algorithm));
    }
    if key.is_some() && !is_kms(algorithm) {
        return Err(S3Error::invalid_argument(
            "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
            SSE_HEADER,
            algorithm,
        ));
    }
    Ok(Some(Encryption {
        sse_algorithm: algorithm.to_owned(),
        kms_master_key_id: key.map(str::to_owned),
        bucket_key_enabled: bucket_key.unwrap_or(false),
    }))
}

/// Replaces the encryption headers of `headers` (an object's stored headers) with `sse`.
pub fn set_object_encryption(headers: &mut BTreeMap<String, String>, sse: BTreeMap<String, String>) {
    headers.retain(|name, _| !SSE_HEADERS.contains(&name.as_str()));
    headers.extend(sse);
}

/// Adds the encryption headers of an object (from its stored headers) to a response; an
/// object written before firelake recorded them is SSE-S3, as every object since 2023.
pub fn insert_object_headers(target: &mut http::HeaderMap, stored: &BTreeMap<String, String>) {
    if !stored.contains_key(SSE_HEADER) {
        target.insert(SSE_HEADER, http::HeaderValue::from_static(DEFAULT_ALGORITHM));
        return;
    }
    for name in SSE_HEADERS {
        // Every value came from a request header or was checked to be one.
        if let Some(value) = stored.get(name).and_then(|v| http::HeaderValue::from_str(v).ok()) {
            target.insert(name, value);
        }
    }
}

/// [`insert_object_headers`] on a response being built.
pub fn with_object_headers(mut builder: http::response::Builder, stored: &BTreeMap<String, String>) -> http::response::Builder {
    if let Some(headers) = builder.headers_mut() {
        insert_object_headers(headers, stored);
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(body: &str, expected: std::result::Result<(&str, Option<&str>, bool), &str>) {
        let got = parse_configuration(body.as_bytes())
            .map(|e| (e.sse_algorithm.clone(), e.kms_master_key_id.clone(), e.bucket_key_enabled))
            .map_err(|e| e.code.as_str());
        let expected = expected.map(|(a, k, b)| (a.to_owned(), k.map(str::to_owned), b));
        assert_eq!(got, expected);
    }

    fn rule(inner: &str) -> String {
        format!("<ServerSideEncryptionConfiguration><Rule>{inner}</Rule></ServerSideEncryptionConfiguration>")
    }

    #[test]
    fn configurations() {
        let by_default = |alg: &str, key: &str| {
            format!("<ApplyServerSideEncryptionByDefault><SSEAlgorithm>{alg}</SSEAlgorithm>{key}</ApplyServerSideEncryptionByDefault>")
        };
        check(&rule(&by_default("AES256", "")), Ok(("AES256", None, false)));
        check(&rule(&format!("{}<BucketKeyEnabled>true</BucketKeyEnabled>", by_default("aws:kms", ""))), Ok(("aws:kms", None, true)));
        check(&rule(&by_default("aws:kms", "<KMSMasterKeyID>arn:k</KMSMasterKeyID>")), Ok(("aws:kms", Some("arn:k"), false)));
        check(&rule(&by_default("aws:kms:dsse", "<KMSMasterKeyID>k</KMSMasterKeyID>")), Ok(("aws:kms:dsse", Some("k"), false)));
        check(&rule(&by_default("AES256", "<KMSMasterKeyID>k</KMSMasterKeyID>")), Err("InvalidArgument"));
        check(&rule(&by_default("DES", "")), Err("MalformedXML"));
        check(&rule(&by_default("aes256", "")), Err("MalformedXML"));
        check(&rule("<BucketKeyEnabled>true</BucketKeyEnabled>"), Err("MalformedXML"));
        check(&rule(&format!("{}<BucketKeyEnabled>maybe</BucketKeyEnabled>", by_default("AES256", ""))), Err("MalformedXML"));
        check("<ServerSideEncryptionConfiguration></ServerSideEncryptionConfiguration>", Err("MalformedXML"));
        check("<ServerSideEncryptionConfiguration><Rule>", Err("MalformedXML"));
        check("not xml", Err("MalformedXML"));
        let two = by_default("AES256", "");
        check(
            &format!("<ServerSideEncryptionConfiguration><Rule>{two}</Rule><Rule>{two}</Rule></ServerSideEncryptionConfiguration>"),
            Err("MalformedXML"),
        );
    }

    #[test]
    fn documents() {
        assert_eq!(
            configuration_xml(None),
            concat!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                r#"<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ApplyServerSideEncryptionByDefault>"#,
                "<SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault><BucketKeyEnabled>false</BucketKeyEnabled></Rule>",
                "</ServerSideEncryptionConfiguration>"
            )
        );
    }
}
