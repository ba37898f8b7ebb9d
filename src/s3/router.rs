//! From method + host + path + query (+ the copy-source header) to an [`Endpoint`].
//! Pure, and tested from a table.

use http::Method;
use percent_encoding::percent_decode_str;

use crate::s3::error::{Code, Result, S3Error};

/// Bucket sub-resources that a bucket nobody configured answers with a fixed document
/// or a `NoSuch...` error, so infrastructure tools can read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unconfigured {
    Website,
    Logging,
    RequestPayment,
    Replication,
    ObjectLock,
    Accelerate,
}

/// The settings of a bucket about access: ACL, Object Ownership, policy, Block Public
/// Access (stored and answered, not enforced; see `s3::acl` and `s3::policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessOp {
    GetBucketAcl,
    PutBucketAcl,
    GetBucketOwnershipControls,
    PutBucketOwnershipControls,
    DeleteBucketOwnershipControls,
    GetBucketPolicy,
    PutBucketPolicy,
    DeleteBucketPolicy,
    GetBucketPolicyStatus,
    GetPublicAccessBlock,
    PutPublicAccessBlock,
    DeletePublicAccessBlock,
}

impl AccessOp {
    fn reads_body(self) -> bool {
        use AccessOp::*;
        matches!(self, PutBucketAcl | PutBucketOwnershipControls | PutBucketPolicy | PutPublicAccessBlock)
    }
}

/// One S3 operation with its bucket and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    ListBuckets,
    CreateBucket {
        bucket: String,
    },
    DeleteBucket {
        bucket: String,
    },
    HeadBucket {
        bucket: String,
    },
    GetBucketLocation {
        bucket: String,
    },
    ListObjects {
        bucket: String,
    },
    ListObjectsV2 {
        bucket: String,
    },
    ListObjectVersions {
        bucket: String,
    },
    ListMultipartUploads {
        bucket: String,
    },
    DeleteObjects {
        bucket: String,
    },
    GetBucketCors {
        bucket: String,
    },
    PutBucketCors {
        bucket: String,
    },
    DeleteBucketCors {
        bucket: String,
    },
    GetBucketTagging {
        bucket: String,
    },
    PutBucketTagging {
        bucket: String,
    },
    DeleteBucketTagging {
        bucket: String,
    },
    GetBucketVersioning {
        bucket: String,
    },
    PutBucketVersioning {
        bucket: String,
    },
    GetBucketLifecycleConfiguration {
        bucket: String,
    },
    PutBucketLifecycleConfiguration {
        bucket: String,
    },
    DeleteBucketLifecycle {
        bucket: String,
    },
    GetBucketEncryption {
        bucket: String,
    },
    PutBucketEncryption {
        bucket: String,
    },
    DeleteBucketEncryption {
        bucket: String,
    },
    GetUnconfigured {
        bucket: String,
        what: Unconfigured,
    },
    BucketAccess {
        bucket: String,
        op: AccessOp,
    },
    GetObjectAcl {
        bucket: String,
        key: String,
    },
    PutObjectAcl {
        bucket: String,
        key: String,
    },
    PutObject {
        bucket: String,
        key: String,
    },
    CopyObject {
        bucket: String,
        key: String,
    },
    GetObject {
        bucket: String,
        key: String,
    },
    HeadObject {
        bucket: String,
        key: String,
    },
    DeleteObject {
        bucket: String,
        key: String,
    },
    GetObjectAttributes {
        bucket: String,
        key: String,
    },
    GetObjectTagging {
        bucket: String,
        key: String,
    },
    PutObjectTagging {
        bucket: String,
        key: String,
    },
    DeleteObjectTagging {
        bucket: String,
        key: String,
    },
    CreateMultipartUpload {
        bucket: String,
        key: String,
    },
    UploadPart {
        bucket: String,
        key: String,
        upload_id: String,
        part_number: String,
    },
    UploadPartCopy {
        bucket: String,
        key: String,
        upload_id: String,
        part_number: String,
    },
    CompleteMultipartUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    AbortMultipartUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    ListParts {
        bucket: String,
        key: String,
        upload_id: String,
    },
    /// A CORS preflight (`OPTIONS`) on a bucket or object.
    Preflight {
        bucket: String,
    },
    /// A real S3 operation firelake does not emulate: 501 NotImplemented.
    NotImplemented {
        operation: String,
    },
}

impl Endpoint {
    /// The bucket the endpoint addresses, if any.
    pub fn bucket(&self) -> Option<&str> {
        use Endpoint::*;
        match self {
            ListBuckets | NotImplemented { .. } => None,
            CreateBucket { bucket }
            | DeleteBucket { bucket }
            | HeadBucket { bucket }
            | GetBucketLocation { bucket }
            | ListObjects { bucket }
            | ListObjectsV2 { bucket }
            | ListObjectVersions { bucket }
            | ListMultipartUploads { bucket }
            | DeleteObjects { bucket }
            | GetBucketCors { bucket }
            | PutBucketCors { bucket }
            | DeleteBucketCors { bucket }
            | GetBucketTagging { bucket }
            | PutBucketTagging { bucket }
            | DeleteBucketTagging { bucket }
            | GetBucketVersioning { bucket }
            | PutBucketVersioning { bucket }
            | GetBucketLifecycleConfiguration { bucket }
            | PutBucketLifecycleConfiguration { bucket }
            | DeleteBucketLifecycle { bucket }
            | GetBucketEncryption { bucket }
            | PutBucketEncryption { bucket }
            | DeleteBucketEncryption { bucket }
            | GetUnconfigured { bucket, .. }
            | BucketAccess { bucket, .. }
            | GetObjectAcl { bucket, .. }
            | PutObjectAcl { bucket, .. }
            | PutObject { bucket, .. }
            | CopyObject { bucket, .. }
            | GetObject { bucket, .. }
            | HeadObject { bucket, .. }
            | DeleteObject { bucket, .. }
            | GetObjectAttributes { bucket, .. }
            | GetObjectTagging { bucket, .. }
            | PutObjectTagging { bucket, .. }
            | DeleteObjectTagging { bucket, .. }
            | CreateMultipartUpload { bucket, .. }
            | UploadPart { bucket, .. }
            | UploadPartCopy { bucket, .. }
            | CompleteMultipartUpload { bucket, .. }
            | AbortMultipartUpload { bucket, .. }
            | ListParts { bucket, .. }
            | Preflight { bucket } => Some(bucket),
        }
    }

    /// Whether the operation reads its request body (the others ignore it, and only check
    /// it against a signed payload hash).
    pub fn reads_body(&self) -> bool {
        use Endpoint::*;
        if let BucketAccess { op, .. } = self {
            return op.reads_body();
        }
        matches!(
            self,
            CreateBucket { .. }
                | PutBucketTagging { .. }
                | PutBucketCors { .. }
                | PutBucketVersioning { .. }
                | PutBucketLifecycleConfiguration { .. }
                | PutBucketEncryption { .. }
                | DeleteObjects { .. }
                | PutObject { .. }
                | PutObjectTagging { .. }
                | PutObjectAcl { .. }
                | UploadPart { .. }
                | CompleteMultipartUpload { .. }
        )
    }

    /// The operation's name, for logs.
    pub fn name(&self) -> String {
        match self {
            Endpoint::GetUnconfigured { what, .. } => format!("GetBucket{what:?}"),
            Endpoint::BucketAccess { op, .. } => format!("{op:?}"),
            Endpoint::NotImplemented { operation } => format!("NotImplemented({operation})"),
            other => format!("{other:?}").split([' ', '{']).next().unwrap_or_default().to_owned(),
        }
    }
}

/// Query parameters that are arguments, not sub-resources: they never change the operation.
const ARGUMENTS: &[&str] = &[
    "prefix",
    "delimiter",
    "marker",
    "max-keys",
    "encoding-type",
    "continuation-token",
    "fetch-owner",
    "start-after",
    "key-marker",
    "version-id-marker",
    "upload-id-marker",
    "max-uploads",
    "max-parts",
    "part-number-marker",
    "response-content-type",
    "response-content-language",
    "response-expires",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "x-id",
    "versionId",
    "partNumber",
    "uploadId",
    "list-type",
    "optional-object-attributes",
    "bucket-region",
    "max-buckets",
    // Presigned URLs signed with SigV2.
    "AWSAccessKeyId",
    "Signature",
    "Expires",
];

/// A request's query as decoded pairs.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let Some(raw) = raw else { return Query::default() };
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(name), decode(value))
            })
            .collect();
        Query(pairs)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// Every name and value, in request order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Names that select a sub-resource (everything but arguments and presigning fields).
    fn sub_resources(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str()).filter(|n| !ARGUMENTS.contains(n) && !n.starts_with("X-Amz-") && !n.starts_with("x-amz-"))
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The bucket named by a virtual-hosted-style `Host` (`<bucket>.<domain>[:port]`).
pub fn virtual_host_bucket(parts: &http::request::Parts, domains: &[String]) -> Option<String> {
    let host = parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).or_else(|| parts.uri.host())?;
    let host = host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    let host = host.to_ascii_lowercase();
    if domains.contains(&host) {
        return None;
    }
    // The longest matching domain wins: `b.s3.localhost` is bucket `b`, not `b.s3`.
    domains
        .iter()
        .filter_map(|domain| host.strip_suffix(domain.as_str())?.strip_suffix('.').filter(|b| !b.is_empty()).map(|b| (domain.len(), b)))
        .max_by_key(|(len, _)| *len)
        .map(|(_, bucket)| bucket.to_owned())
}

impl Endpoint {
    pub fn from_request(parts: &http::request::Parts, domains: &[String]) -> Result<(Endpoint, Query)> {
        let query = Query::parse(parts.uri.query());
        let path = parts.uri.path();
        let (bucket, key) = match virtual_host_bucket(parts, domains) {
            Some(bucket) => (Some(bucket), path.strip_prefix('/').unwrap_or(path).to_owned()),
            None => {
                let rest = path.strip_prefix('/').unwrap_or(path);
                match rest.split_once('/') {
                    Some((bucket, key)) => (Some(bucket.to_owned()), key.to_owned()),
                    None if rest.is_empty() => (None, String::new()),
                    None => (Some(rest.to_owned()), String::new()),
                }
            }
        };
        let key = percent_decode_str(&key)
            .decode_utf8()
            .map_err(|_| S3Error::invalid_argument("the key is not valid UTF-8", "key", &key))?
            .into_owned();
        let bucket = bucket.map(|b| decode(&b));
        let copy = parts.headers.contains_key("x-amz-copy-source");
        let endpoint = match (bucket, key.is_empty()) {
            (None, _) => service(&parts.method, &query),
            (Some(bucket), true) => bucket_op(&parts.method, &query, bucket),
            (Some(bucket), false) => object_op(&parts.method, &query, bucket, key, copy),
        };
        Ok((endpoint, query))
    }
}

fn not_implemented(method: &Method, what: &str) -> Endpoint {
    Endpoint::NotImplemented { operation: format!("{method} {what}") }
}

fn service(method: &Method, query: &Query) -> Endpoint {
    match (method, query.sub_resources().next()) {
        (&Method::GET, None) => Endpoint::ListBuckets,
        (_, sub) => not_implemented(method, &format!("/{}", sub.map(|s| format!("?{s}")).unwrap_or_default())),
    }
}

fn bucket_op(method: &Method, query: &Query, bucket: String) -> Endpoint {
    use Endpoint::*;
    let subs: Vec<&str> = query.sub_resources().collect();
    let sub = match subs.as_slice() {
        [] => None,
        [one] => Some(*one),
        many => return not_implemented(method, &format!("bucket ?{}", many.join("&"))),
    };
    let unconfigured = |what| GetUnconfigured { bucket: bucket.clone(), what };
    let access = |op| BucketAccess { bucket: bucket.clone(), op };
    match (method, sub) {
        (&Method::PUT, None) => CreateBucket { bucket },
        (&Method::DELETE, None) => DeleteBucket { bucket },
        (&Method::HEAD, None) => HeadBucket { bucket },
        (&Method::GET, None) if query.get("list-type") == Some("2") => ListObjectsV2 { bucket },
        (&Method::GET, None) => ListObjects { bucket },
        (&Method::GET, Some("location")) => GetBucketLocation { bucket },
        (&Method::GET, Some("versions")) => ListObjectVersions { bucket },
        (&Method::GET, Some("uploads")) => ListMultipartUploads { bucket },
        (&Method::POST, Some("delete")) => DeleteObjects { bucket },
        (&Method::GET, Some("cors")) => GetBucketCors { bucket },
        (&Method::PUT, Some("cors")) => PutBucketCors { bucket },
        (&Method::DELETE, Some("cors")) => DeleteBucketCors { bucket },
        (&Method::GET, Some("tagging")) => GetBucketTagging { bucket },
        (&Method::PUT, Some("tagging")) => PutBucketTagging { bucket },
        (&Method::DELETE, Some("tagging")) => DeleteBucketTagging { bucket },
        (&Method::GET, Some("versioning")) => GetBucketVersioning { bucket },
        (&Method::PUT, Some("versioning")) => PutBucketVersioning { bucket },
        (&Method::GET, Some("acl")) => access(AccessOp::GetBucketAcl),
        (&Method::PUT, Some("acl")) => access(AccessOp::PutBucketAcl),
        (&Method::GET, Some("ownershipControls")) => access(AccessOp::GetBucketOwnershipControls),
        (&Method::PUT, Some("ownershipControls")) => access(AccessOp::PutBucketOwnershipControls),
        (&Method::DELETE, Some("ownershipControls")) => access(AccessOp::DeleteBucketOwnershipControls),
        (&Method::GET, Some("policy")) => access(AccessOp::GetBucketPolicy),
        (&Method::PUT, Some("policy")) => access(AccessOp::PutBucketPolicy),
        (&Method::DELETE, Some("policy")) => access(AccessOp::DeleteBucketPolicy),
        (&Method::GET, Some("policyStatus")) => access(AccessOp::GetBucketPolicyStatus),
        (&Method::GET, Some("publicAccessBlock")) => access(AccessOp::GetPublicAccessBlock),
        (&Method::PUT, Some("publicAccessBlock")) => access(AccessOp::PutPublicAccessBlock),
        (&Method::DELETE, Some("publicAccessBlock")) => access(AccessOp::DeletePublicAccessBlock),
        (&Method::GET, Some("encryption")) => GetBucketEncryption { bucket },
        (&Method::PUT, Some("encryption")) => PutBucketEncryption { bucket },
        (&Method::DELETE, Some("encryption")) => DeleteBucketEncryption { bucket },
        (&Method::GET, Some("lifecycle")) => GetBucketLifecycleConfiguration { bucket },
        (&Method::PUT, Some("lifecycle")) => PutBucketLifecycleConfiguration { bucket },
        (&Method::DELETE, Some("lifecycle")) => DeleteBucketLifecycle { bucket },
        (&Method::GET, Some("website")) => unconfigured(Unconfigured::Website),
        (&Method::GET, Some("logging")) => unconfigured(Unconfigured::Logging),
        (&Method::GET, Some("requestPayment")) => unconfigured(Unconfigured::RequestPayment),
        (&Method::GET, Some("replication")) => unconfigured(Unconfigured::Replication),
        (&Method::GET, Some("object-lock")) => unconfigured(Unconfigured::ObjectLock),
        (&Method::GET, Some("accelerate")) => unconfigured(Unconfigured::Accelerate),
        (&Method::OPTIONS, _) => Preflight { bucket },
        (_, sub) => not_implemented(method, &format!("bucket{}", sub.map(|s| format!(" ?{s}")).unwrap_or_default())),
    }
}

fn object_op(method: &Method, query: &Query, bucket: String, key: String, copy: bool) -> Endpoint {
    use Endpoint::*;
    let subs: Vec<&str> = query.sub_resources().collect();
    let sub = match subs.as_slice() {
        [] => None,
        [one] => Some(*one),
        many => return not_implemented(method, &format!("object ?{}", many.join("&"))),
    };
    let upload_id = query.get("uploadId").map(str::to_owned);
    let part_number = query.get("partNumber").map(str::to_owned);
    match (method, sub, upload_id, part_number) {
        (&Method::PUT, None, Some(upload_id), Some(part_number)) if copy => UploadPartCopy { bucket, key, upload_id, part_number },
        (&Method::PUT, None, Some(upload_id), Some(part_number)) => UploadPart { bucket, key, upload_id, part_number },
        (&Method::PUT, None, None, _) if copy => CopyObject { bucket, key },
        (&Method::PUT, None, None, _) => PutObject { bucket, key },
        (&Method::GET, None, Some(upload_id), _) => ListParts { bucket, key, upload_id },
        (&Method::GET, None, None, _) => GetObject { bucket, key },
        (&Method::HEAD, None, None, _) => HeadObject { bucket, key },
        (&Method::DELETE, None, Some(upload_id), _) => AbortMultipartUpload { bucket, key, upload_id },
        (&Method::DELETE, None, None, _) => DeleteObject { bucket, key },
        (&Method::POST, Some("uploads"), None, _) => CreateMultipartUpload { bucket, key },
        (&Method::POST, None, Some(upload_id), _) => CompleteMultipartUpload { bucket, key, upload_id },
        (&Method::GET, Some("attributes"), None, _) => GetObjectAttributes { bucket, key },
        (&Method::GET, Some("tagging"), None, _) => GetObjectTagging { bucket, key },
        (&Method::PUT, Some("tagging"), None, _) => PutObjectTagging { bucket, key },
        (&Method::DELETE, Some("tagging"), None, _) => DeleteObjectTagging { bucket, key },
        (&Method::GET, Some("acl"), None, _) => GetObjectAcl { bucket, key },
        (&Method::PUT, Some("acl"), None, _) => PutObjectAcl { bucket, key },
        (&Method::OPTIONS, _, _, _) => Preflight { bucket },
        (_, sub, _, _) => not_implemented(method, &format!("object{}", sub.map(|s| format!(" ?{s}")).unwrap_or_default())),
    }
}

/// The error for a key S3 would refuse, checked before anything touches the store.
pub fn check_key(key: &str) -> Result<()> {
    if key.len() > crate::store::keypath::KEY_BYTES_MAX {
        return Err(S3Error::new(Code::KeyTooLongError, "Your key is too long")
            .with("MaxSizeAllowed", "1024")
            .with("Size", key.len().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["localhost".to_owned(), "s3.localhost".to_owned()]
    }

    #[track_caller]
    fn check(method: &str, host: &str, uri: &str, copy: bool, expected: Endpoint) {
        let mut builder = http::Request::builder().method(method).uri(uri).header("host", host);
        if copy {
            builder = builder.header("x-amz-copy-source", "/src/key");
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let (endpoint, _) = Endpoint::from_request(&parts, &domains()).unwrap();
        assert_eq!(endpoint, expected);
    }

    fn b(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn service_and_buckets() {
        use Endpoint::*;
        check("GET", "127.0.0.1:4573", "/", false, ListBuckets);
        check("PUT", "127.0.0.1:4573", "/bkt", false, CreateBucket { bucket: b("bkt") });
        check("PUT", "127.0.0.1:4573", "/bkt/", false, CreateBucket { bucket: b("bkt") });
        check("HEAD", "127.0.0.1", "/bkt", false, HeadBucket { bucket: b("bkt") });
        check("DELETE", "127.0.0.1", "/bkt", false, DeleteBucket { bucket: b("bkt") });
        check("GET", "127.0.0.1", "/bkt?list-type=2&prefix=a%2F&encoding-type=url", false, ListObjectsV2 { bucket: b("bkt") });
        check("GET", "127.0.0.1", "/bkt?prefix=a", false, ListObjects { bucket: b("bkt") });
        check("GET", "127.0.0.1", "/bkt?location", false, GetBucketLocation { bucket: b("bkt") });
        check("GET", "127.0.0.1", "/bkt?versions", false, ListObjectVersions { bucket: b("bkt") });
        check("GET", "127.0.0.1", "/bkt?uploads", false, ListMultipartUploads { bucket: b("bkt") });
        check("POST", "127.0.0.1", "/bkt?delete", false, DeleteObjects { bucket: b("bkt") });
        check("PUT", "127.0.0.1", "/bkt?cors", false, PutBucketCors { bucket: b("bkt") });
        check("GET", "127.0.0.1", "/bkt?versioning", false, GetBucketVersioning { bucket: b("bkt") });
        check("PUT", "127.0.0.1", "/bkt?versioning", false, PutBucketVersioning { bucket: b("bkt") });
        check("GET", "127.0.0.1", "/bkt?encryption", false, GetBucketEncryption { bucket: b("bkt") });
        check("PUT", "127.0.0.1", "/bkt?encryption", false, PutBucketEncryption { bucket: b("bkt") });
        check("DELETE", "127.0.0.1", "/bkt?encryption", false, DeleteBucketEncryption { bucket: b("bkt") });
        check("GET", "127.0.0.1", "/bkt?object-lock", false, GetUnconfigured { bucket: b("bkt"), what: Unconfigured::ObjectLock });
        check("OPTIONS", "127.0.0.1", "/bkt", false, Preflight { bucket: b("bkt") });
    }

    #[test]
    fn objects() {
        use Endpoint::*;
        let (bk, k) = (b("bkt"), b("a/b c"));
        check("PUT", "127.0.0.1", "/bkt/a/b%20c", false, PutObject { bucket: bk.clone(), key: k.clone() });
        check("PUT", "127.0.0.1", "/bkt/a/b%20c", true, CopyObject { bucket: bk.clone(), key: k.clone() });
        check("GET", "127.0.0.1", "/bkt/a/b%20c?x-id=GetObject", false, GetObject { bucket: bk.clone(), key: k.clone() });
        check(
            "GET",
            "127.0.0.1",
            "/bkt/a/b%20c?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x",
            false,
            GetObject { bucket: bk.clone(), key: k.clone() },
        );
        check("HEAD", "127.0.0.1", "/bkt/a/b%20c", false, HeadObject { bucket: bk.clone(), key: k.clone() });
        check("DELETE", "127.0.0.1", "/bkt/a/b%20c", false, DeleteObject { bucket: bk.clone(), key: k.clone() });
        check("POST", "127.0.0.1", "/bkt/a/b%20c?uploads", false, CreateMultipartUpload { bucket: bk.clone(), key: k.clone() });
        check(
            "PUT",
            "127.0.0.1",
            "/bkt/a/b%20c?partNumber=2&uploadId=u1",
            false,
            UploadPart { bucket: bk.clone(), key: k.clone(), upload_id: b("u1"), part_number: b("2") },
        );
        check(
            "PUT",
            "127.0.0.1",
            "/bkt/a/b%20c?partNumber=2&uploadId=u1",
            true,
            UploadPartCopy { bucket: bk.clone(), key: k.clone(), upload_id: b("u1"), part_number: b("2") },
        );
        check(
            "POST",
            "127.0.0.1",
            "/bkt/a/b%20c?uploadId=u1",
            false,
            CompleteMultipartUpload { bucket: bk.clone(), key: k.clone(), upload_id: b("u1") },
        );
        check(
            "DELETE",
            "127.0.0.1",
            "/bkt/a/b%20c?uploadId=u1",
            false,
            AbortMultipartUpload { bucket: bk.clone(), key: k.clone(), upload_id: b("u1") },
        );
        check("GET", "127.0.0.1", "/bkt/a/b%20c?uploadId=u1", false, ListParts { bucket: bk.clone(), key: k.clone(), upload_id: b("u1") });
        check("GET", "127.0.0.1", "/bkt/a/b%20c?attributes", false, GetObjectAttributes { bucket: bk.clone(), key: k.clone() });
        check("PUT", "127.0.0.1", "/bkt/a/b%20c?tagging", false, PutObjectTagging { bucket: bk.clone(), key: k.clone() });
        check("GET", "127.0.0.1", "/bkt/_firelake/health", false, GetObject { bucket: bk.clone(), key: b("_firelake/health") });
        check("GET", "127.0.0.1", "/bkt//x/", false, GetObject { bucket: bk, key: b("/x/") });
    }

    #[test]
    fn virtual_hosted() {
        use Endpoint::*;
        check("GET", "bkt.localhost:4573", "/", false, ListObjects { bucket: b("bkt") });
        check("GET", "bkt.s3.localhost:4573", "/?list-type=2", false, ListObjectsV2 { bucket: b("bkt") });
        check("PUT", "bkt.localhost", "/k", false, PutObject { bucket: b("bkt"), key: b("k") });
        check("GET", "bkt.localhost", "/_firelake/health", false, GetObject { bucket: b("bkt"), key: b("_firelake/health") });
        check("GET", "localhost:4573", "/bkt/k", false, GetObject { bucket: b("bkt"), key: b("k") });
        check("GET", "s3.localhost:4573", "/", false, ListBuckets);
    }

    #[test]
    fn unsupported_is_not_implemented() {
        for (method, uri) in [
            ("GET", "/bkt?notification"),
            ("PUT", "/bkt?website"),
            ("GET", "/bkt/k?retention"),
            ("POST", "/bkt/k?restore"),
            ("POST", "/bkt"),
            ("GET", "/bkt?analytics&id=1"),
            ("POST", "/"),
        ] {
            let (parts, ()) = http::Request::builder().method(method).uri(uri).header("host", "127.0.0.1").body(()).unwrap().into_parts();
            let (endpoint, _) = Endpoint::from_request(&parts, &domains()).unwrap();
            assert!(matches!(endpoint, Endpoint::NotImplemented { .. }), "{method} {uri} gave {endpoint:?}");
        }
    }
}
