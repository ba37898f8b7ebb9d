//! The findings of the red-team pass (issue #12), each as a regression test against a
//! real firelake: strict authentication that AWS would refuse, races that answered 500,
//! symbolic links in the data directory, and clients that stall.

mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use common::{Conn, RawResponse, Server};
use firelake::sigv4;

const KEY: &str = "AKIDHARDENING";
const SECRET: &str = "hardening/secret";

fn strict(extra: &[&str]) -> Server {
    let keys = format!("{KEY}:{SECRET}");
    let mut args = vec!["--auth", "strict", "--auth-keys", keys.as_str()];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

async fn strict_client(server: &Server) -> aws_sdk_s3::Client {
    common::s3_client_as(&server.endpoint(), true, KEY, SECRET).await
}

/// A raw request signed with SigV4 in the `Authorization` header. `headers` are sent as
/// given (plus Host and Content-Length); `signed` names the ones the signature covers,
/// and `payload_sha256` is the hash the signature claims for the body.
struct Signed<'a> {
    method: &'a str,
    host: String,
    path: &'a str,
    query: &'a str,
    headers: Vec<(String, String)>,
    signed: Vec<&'a str>,
    payload_sha256: String,
    service: &'a str,
}

fn amz_now() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// `a=1&b=2` sorted and encoded as SigV4 wants (the tests use plain names and values).
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| if p.contains('=') { p.to_owned() } else { format!("{p}=") })
        .filter(|p| !p.starts_with("X-Amz-Signature="))
        .collect();
    pairs.sort();
    pairs.join("&")
}

impl<'a> Signed<'a> {
    fn s3(method: &'a str, server: &Server, path: &'a str, query: &'a str, body: &[u8]) -> Signed<'a> {
        let date = amz_now();
        let hash = sigv4::sha256_hex(body);
        Signed {
            method,
            host: server.addr.to_string(),
            path,
            query,
            headers: vec![("x-amz-content-sha256".into(), hash.clone()), ("x-amz-date".into(), date)],
            signed: vec!["host", "x-amz-content-sha256", "x-amz-date"],
            payload_sha256: hash,
            service: "s3",
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    fn date(&self) -> String {
        self.headers.iter().find(|(n, _)| n == "x-amz-date").map(|(_, v)| v.clone()).unwrap_or_else(amz_now)
    }

    /// The request's bytes, with `body` (which may differ from what was signed).
    fn bytes(&self, body: &[u8]) -> Vec<u8> {
        let date = self.date();
        let mut all: Vec<(String, String)> = self.headers.clone();
        all.push(("host".into(), self.host.clone()));
        let mut canonical_headers = String::new();
        let mut signed: Vec<&str> = self.signed.clone();
        signed.sort_unstable();
        for name in &signed {
            let values: Vec<&str> = all.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
            canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        let signed_list = signed.join(";");
        let canonical = format!(
            "{}\n{}\n{}\n{canonical_headers}\n{signed_list}\n{}",
            self.method,
            self.path,
            canonical_query(self.query),
            self.payload_sha256
        );
        let scope = format!("{}/us-east-1/{}/aws4_request", &date[..8], self.service);
        let key = sigv4::signing_key(SECRET, &date[..8], "us-east-1", self.service);
        let signature = sigv4::signature(&key, &sigv4::string_to_sign(&date, &scope, &canonical));
        let target = if self.query.is_empty() { self.path.to_owned() } else { format!("{}?{}", self.path, self.query) };
        let mut head = format!("{} {target} HTTP/1.1\r\nHost: {}\r\n", self.method, self.host);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Authorization: AWS4-HMAC-SHA256 Credential={KEY}/{scope}, SignedHeaders={signed_list}, Signature={signature}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }
}

/// A SigV4 presigned URL's path and query, signed for `host` and the `headers` given
/// (which the request must then send); `extra` query parameters (plain names and values)
/// are signed with it. `payload` is the hash the signature claims for the body.
struct Presign<'a> {
    method: &'a str,
    host: &'a str,
    path: &'a str,
    extra: &'a str,
    service: &'a str,
    expires: Option<u32>,
    date: String,
    headers: &'a [(&'a str, &'a str)],
    payload: &'a str,
}

impl Presign<'_> {
    fn s3<'a>(method: &'a str, host: &'a str, path: &'a str, extra: &'a str) -> Presign<'a> {
        Presign { method, host, path, extra, service: "s3", expires: Some(300), date: amz_now(), headers: &[], payload: "UNSIGNED-PAYLOAD" }
    }

    fn url(&self) -> String {
        let date = &self.date;
        let scope = format!("{}/us-east-1/{}/aws4_request", &date[..8], self.service);
        let credential = format!("{KEY}%2F{}", scope.replace('/', "%2F"));
        let mut signed = vec!["host"];
        signed.extend(self.headers.iter().map(|(n, _)| *n));
        signed.sort_unstable();
        let signed_list = signed.join(";");
        let mut query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}&X-Amz-Date={date}&X-Amz-SignedHeaders={}",
            signed_list.replace(';', "%3B")
        );
        if let Some(expires) = self.expires {
            query.push_str(&format!("&X-Amz-Expires={expires}"));
        }
        if !self.extra.is_empty() {
            query.push('&');
            query.push_str(self.extra);
        }
        let mut canonical_headers = String::new();
        for name in &signed {
            let value =
                if *name == "host" { self.host } else { self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap_or("") };
            canonical_headers.push_str(&format!("{name}:{value}\n"));
        }
        let canonical =
            format!("{}\n{}\n{}\n{canonical_headers}\n{signed_list}\n{}", self.method, self.path, canonical_query(&query), self.payload);
        let key = sigv4::signing_key(SECRET, &date[..8], "us-east-1", self.service);
        let signature = sigv4::signature(&key, &sigv4::string_to_sign(date, &scope, &canonical));
        format!("{}?{query}&X-Amz-Signature={signature}", self.path)
    }
}

fn code(response: &RawResponse) -> String {
    let text = response.text();
    text.split("<Code>").nth(1).and_then(|rest| rest.split("</Code>").next()).unwrap_or_default().to_owned()
}

#[track_caller]
fn assert_refused(response: &RawResponse, status: u16, expected: &str) {
    assert_eq!((response.status, code(response)), (status, expected.to_owned()), "{}", response.text());
}

// ---- strict authentication ----

#[tokio::test]
async fn every_signed_body_is_checked_against_its_hash() {
    let server = strict(&[]);
    let s3 = strict_client(&server).await;
    s3.create_bucket().bucket("bodies").send().await.unwrap();
    s3.put_object().bucket("bodies").key("k").body(ByteStream::from_static(b"object")).send().await.unwrap();
    let upload = s3.create_multipart_upload().bucket("bodies").key("mp").send().await.unwrap();
    let upload_id = upload.upload_id().unwrap().to_owned();
    let part = s3
        .upload_part()
        .bucket("bodies")
        .key("mp")
        .upload_id(&upload_id)
        .part_number(1)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await
        .unwrap();
    let etag = part.e_tag().unwrap().to_owned();

    let tags = |value: &str| format!("<Tagging><TagSet><Tag><Key>team</Key><Value>{value}</Value></Tag></TagSet></Tagging>");
    let cors = |method: &str| {
        format!(
            "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>{method}</AllowedMethod></CORSRule></CORSConfiguration>"
        )
    };
    let complete = |number: u32| {
        format!("<CompleteMultipartUpload><Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>")
    };
    let delete = |key: &str| format!("<Delete><Object><Key>{key}</Key></Object></Delete>");
    let location =
        |region: &str| format!("<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>");
    let upload_query = format!("uploadId={upload_id}");
    // (method, path, query, signed body, body sent): each tampered body is as long as the signed one.
    let cases: Vec<(&str, &str, &str, String, String)> = vec![
        ("PUT", "/bodies/k", "tagging", tags("blue"), tags("red!")),
        ("PUT", "/bodies", "tagging", tags("blue"), tags("red!")),
        ("PUT", "/bodies", "cors", cors("GET"), cors("PUT")),
        ("POST", "/bodies/mp", &upload_query, complete(1), complete(2)),
        ("POST", "/bodies", "delete", delete("x"), delete("k")),
        ("PUT", "/newbucket", "", location("eu-west-1"), location("eu-west-2")),
    ];
    for (method, path, query, signed_body, sent_body) in &cases {
        assert_eq!(signed_body.len(), sent_body.len());
        let mut request = Signed::s3(method, &server, path, query, signed_body.as_bytes());
        if *query == "delete" {
            use base64::Engine;
            let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(sent_body.as_bytes()));
            request = request.header("content-md5", &md5);
        }
        let response = Conn::open(&server).request(&request.bytes(sent_body.as_bytes()));
        assert_refused(&response, 400, "XAmzContentSHA256Mismatch");
    }
    // An operation that takes no body still refuses one that is not what was signed.
    let request = Signed::s3("DELETE", &server, "/bodies/k", "", b"signed");
    assert_refused(&Conn::open(&server).request(&request.bytes(b"sent!!")), 400, "XAmzContentSHA256Mismatch");
    // Nothing of the tampered bodies took effect.
    let object_tags = s3.get_object_tagging().bucket("bodies").key("k").send().await.unwrap();
    assert!(object_tags.tag_set().is_empty());
    assert!(s3.get_bucket_tagging().bucket("bodies").send().await.is_err());
    assert!(s3.get_bucket_cors().bucket("bodies").send().await.is_err());
    assert!(s3.head_object().bucket("bodies").key("k").send().await.is_ok());
    assert!(s3.head_object().bucket("bodies").key("mp").send().await.is_err());
    assert!(s3.head_bucket().bucket("newbucket").send().await.is_err());
    s3.list_parts().bucket("bodies").key("mp").upload_id(&upload_id).send().await.unwrap();

    // The same requests with the bodies they signed pass.
    for (method, path, query, signed_body, _) in &cases {
        let mut request = Signed::s3(method, &server, path, query, signed_body.as_bytes());
        if *query == "delete" {
            use base64::Engine;
            let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(signed_body.as_bytes()));
            request = request.header("content-md5", &md5);
        }
        let response = Conn::open(&server).request(&request.bytes(signed_body.as_bytes()));
        assert!(response.status < 300, "{method} {path}?{query}: {}", response.text());
    }
    let cors = s3.get_bucket_cors().bucket("bodies").send().await.unwrap();
    assert_eq!(cors.cors_rules()[0].allowed_methods(), ["GET"]);
}

use md5::Digest as _;

#[tokio::test]
async fn headers_the_signature_does_not_cover_are_refused() {
    let server = strict(&[]);
    let s3 = strict_client(&server).await;
    for bucket in ["mine", "other"] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    s3.put_object().bucket("other").key("secret").body(ByteStream::from_static(b"other's secret")).send().await.unwrap();
    let host = server.addr.to_string();

    // A presigned PUT signs only the host: nothing else may change what it does.
    for (name, value) in [("x-amz-copy-source", "/other/secret"), ("x-amz-meta-team", "red"), ("x-amz-tagging", "a=b")] {
        let url = Presign::s3("PUT", &host, "/mine/upload", "").url();
        let request = format!("PUT {url} HTTP/1.1\r\nHost: {host}\r\n{name}: {value}\r\nContent-Length: 3\r\n\r\nnew");
        let response = Conn::open(&server).request(request.as_bytes());
        assert_refused(&response, 403, "AccessDenied");
        assert!(response.text().contains(&format!("<HeadersNotSigned>{name}</HeadersNotSigned>")), "{}", response.text());
        assert!(!server.data_dir.join("mine/upload").exists());
    }
    // A header-signed PUT with an unsigned metadata header.
    let request = Signed::s3("PUT", &server, "/mine/header-signed", "", b"new").header("x-amz-meta-team", "red");
    let mut unsigned = request.bytes(b"new");
    let response = Conn::open(&server).request(&unsigned);
    assert_refused(&response, 403, "AccessDenied");
    // Signed, the same header is fine.
    let mut request = Signed::s3("PUT", &server, "/mine/header-signed", "", b"new").header("x-amz-meta-team", "red");
    request.signed.push("x-amz-meta-team");
    unsigned = request.bytes(b"new");
    assert_eq!(Conn::open(&server).request(&unsigned).status, 200);
    let head = s3.head_object().bucket("mine").key("header-signed").send().await.unwrap();
    assert_eq!(head.metadata().unwrap()["team"], "red");

    // The plain presigned PUT works, and a presigned URL may carry x-amz-* headers in its
    // (signed) query, where they act as the headers.
    let url = Presign::s3("PUT", &host, "/mine/upload", "").url();
    let response = Conn::open(&server).request(format!("PUT {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\n\r\nnew").as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    let url = Presign::s3("PUT", &host, "/mine/copied", "x-amz-copy-source=%2Fother%2Fsecret&x-amz-meta-team=blue").url();
    let response = Conn::open(&server).request(format!("PUT {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n").as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    let copied = s3.get_object().bucket("mine").key("copied").send().await.unwrap();
    assert_eq!(copied.body.collect().await.unwrap().into_bytes().as_ref(), b"other's secret");
}

#[tokio::test]
async fn host_must_be_signed() {
    let server = strict(&[]);
    let s3 = strict_client(&server).await;
    for bucket in ["mine", "other"] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        s3.put_object().bucket(bucket).key("k").body(ByteStream::from(bucket.as_bytes().to_vec())).send().await.unwrap();
    }
    let port = server.port();
    for signed in [vec!["x-amz-content-sha256", "x-amz-date"], vec![]] {
        let mut request = Signed::s3("GET", &server, "/k", "", b"");
        request.host = format!("mine.localhost:{port}");
        request.signed = signed;
        let bytes = String::from_utf8(request.bytes(b"")).unwrap();
        // Signed for `mine`, sent to `other`.
        let retargeted = bytes.replace(&format!("Host: mine.localhost:{port}"), &format!("Host: other.localhost:{port}"));
        let response = Conn::open(&server).request(retargeted.as_bytes());
        assert_refused(&response, 403, "AccessDenied");
        assert!(response.text().contains("<HeadersNotSigned>host</HeadersNotSigned>"), "{}", response.text());
        assert!(!response.text().contains("other"), "{}", response.text());
    }
    // With host signed, the request works where it was signed for.
    let mut request = Signed::s3("GET", &server, "/k", "", b"");
    request.host = format!("mine.localhost:{port}");
    let response = Conn::open(&server).request(&request.bytes(b""));
    assert_eq!((response.status, response.text()), (200, "mine".to_owned()));

    // Firehose: a signature without host is incomplete.
    let body = b"{}";
    let mut request = Signed::s3("POST", &server, "/", "", body).header("x-amz-target", "Firehose_20150804.ListDeliveryStreams");
    request.service = "firehose";
    request.headers.retain(|(n, _)| n != "x-amz-content-sha256");
    request.signed = vec!["x-amz-date", "x-amz-target"];
    let request = request.header("content-type", "application/x-amz-json-1.1");
    let response = Conn::open(&server).request(&request.bytes(body));
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.text().contains("IncompleteSignatureException"), "{}", response.text());
}

#[test]
fn a_firehose_query_signature_without_expiry_is_held_to_the_clock_skew() {
    let server = strict(&[]);
    let host = server.addr.to_string();
    let body = "{}";
    let body_sha256 = sigv4::sha256_hex(body.as_bytes());
    let target = "Firehose_20150804.ListDeliveryStreams";
    let send = |date: String| {
        let headers = [("x-amz-target", target)];
        let presign = Presign {
            method: "POST",
            host: &host,
            path: "/",
            extra: "",
            service: "firehose",
            expires: None,
            date,
            headers: &headers,
            payload: &body_sha256,
        };
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
            presign.url(),
            body.len()
        );
        Conn::open(&server).request(request.as_bytes())
    };
    let response = send(amz_now());
    assert_eq!(response.status, 200, "{}", response.text());
    let old = (chrono::Utc::now() - chrono::TimeDelta::days(3)).format("%Y%m%dT%H%M%SZ").to_string();
    let response = send(old);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.text().contains("InvalidSignatureException") && response.text().contains("Signature expired"), "{}", response.text());
}

// ---- races on the same names ----

/// An S3 client that never retries, so that a 500 reaches the test instead of hiding
/// behind the SDK's retries.
async fn no_retries(server: &Server) -> aws_sdk_s3::Client {
    let client = server.s3().await;
    let config = client.config().to_builder().retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled()).build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The HTTP status and error code of an SDK call's outcome (200 for any success).
fn outcome<T, E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug>(
    result: &Result<T, aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>>,
) -> (u16, String) {
    match result {
        Ok(_) => (200, String::new()),
        Err(aws_sdk_s3::error::SdkError::ServiceError(err)) => {
            (err.raw().status().as_u16(), err.err().code().unwrap_or_default().to_owned())
        }
        Err(aws_sdk_s3::error::SdkError::ResponseError(err)) => (err.raw().status().as_u16(), String::new()),
        Err(other) => panic!("no answer: {other:?}"),
    }
}

#[tokio::test]
async fn complete_racing_abort_answers_one_or_the_other_and_means_it() {
    let server = Server::start();
    let s3 = no_retries(&server).await;
    s3.create_bucket().bucket("race").send().await.unwrap();
    let big = vec![b'p'; 5 * 1024 * 1024];
    for round in 0..16 {
        let key = format!("mp{round}");
        let id = s3.create_multipart_upload().bucket("race").key(&key).send().await.unwrap().upload_id().unwrap().to_owned();
        let mut parts = Vec::new();
        for (number, body) in [(1, big.clone()), (2, b"tail".to_vec())] {
            let part = s3
                .upload_part()
                .bucket("race")
                .key(&key)
                .upload_id(&id)
                .part_number(number)
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap();
            parts.push(aws_sdk_s3::types::CompletedPart::builder().part_number(number).e_tag(part.e_tag().unwrap()).build());
        }
        let done = aws_sdk_s3::types::CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let complete = s3.complete_multipart_upload().bucket("race").key(&key).upload_id(&id).multipart_upload(done).send();
        let abort = async {
            tokio::time::sleep(Duration::from_millis(round % 4)).await;
            s3.abort_multipart_upload().bucket("race").key(&key).upload_id(&id).send().await
        };
        let (completed, aborted) = tokio::join!(complete, abort);
        let (completed, aborted) = (outcome(&completed), outcome(&aborted));
        let exists = s3.head_object().bucket("race").key(&key).send().await.is_ok();
        match (&completed, &aborted) {
            ((200, _), (404, code)) if code == "NoSuchUpload" => assert!(exists, "round {round}: completed, yet no object"),
            ((404, code), (200, _)) if code == "NoSuchUpload" => assert!(!exists, "round {round}: aborted, yet an object"),
            other => panic!("round {round}: complete and abort answered {other:?}"),
        }
    }
}

#[tokio::test]
async fn upload_part_racing_abort_answers_no_such_upload() {
    let server = Server::start();
    let s3 = no_retries(&server).await;
    s3.create_bucket().bucket("race").send().await.unwrap();
    let body = vec![b'q'; 2 * 1024 * 1024];
    for round in 0..16 {
        let id = s3.create_multipart_upload().bucket("race").key("k").send().await.unwrap().upload_id().unwrap().to_owned();
        let part = s3.upload_part().bucket("race").key("k").upload_id(&id).part_number(1).body(ByteStream::from(body.clone())).send();
        let abort = s3.abort_multipart_upload().bucket("race").key("k").upload_id(&id).send();
        let (part, abort) = tokio::join!(part, abort);
        let (part, abort) = (outcome(&part), outcome(&abort));
        assert!(part == (200, String::new()) || part == (404, "NoSuchUpload".to_owned()), "round {round}: UploadPart answered {part:?}");
        assert_eq!(abort, (200, String::new()), "round {round}");
    }
}

#[tokio::test]
async fn put_racing_delete_bucket_answers_no_such_bucket() {
    let server = Server::start();
    let s3 = no_retries(&server).await;
    for round in 0..16u64 {
        let bucket = format!("race-{round}");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let puts = (0..8).map(|i| {
            let (s3, bucket) = (s3.clone(), bucket.clone());
            let key = if i % 2 == 0 { format!("k{i}") } else { format!("a/b/k{i}") };
            tokio::spawn(async move {
                // Odd rounds let the delete start first.
                tokio::time::sleep(Duration::from_millis(round % 2)).await;
                let result = s3.put_object().bucket(&bucket).key(&key).body(ByteStream::from_static(b"x")).send().await;
                (key, outcome(&result))
            })
        });
        let puts: Vec<_> = puts.collect();
        let (s3c, bucketc) = (s3.clone(), bucket.clone());
        let upload = tokio::spawn(async move { outcome(&s3c.create_multipart_upload().bucket(&bucketc).key("mp").send().await) });
        if round % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(round % 6)).await;
        }
        let deleted = outcome(&s3.delete_bucket().bucket(&bucket).send().await);
        let upload = upload.await.unwrap();
        assert!(upload.0 == 200 || upload == (404, "NoSuchBucket".to_owned()), "round {round}: CreateMultipartUpload answered {upload:?}");
        let mut stored = Vec::new();
        for put in puts {
            let (key, answer) = put.await.unwrap();
            match answer.0 {
                200 => stored.push(key),
                404 => assert_eq!(answer.1, "NoSuchBucket", "round {round}"),
                _ => panic!("round {round}: PUT {key} answered {answer:?}"),
            }
        }
        match deleted {
            (200, _) => {
                assert!(stored.is_empty(), "round {round}: the bucket was deleted, yet {stored:?} were stored");
                assert!(s3.head_bucket().bucket(&bucket).send().await.is_err());
                // No upload outlives its bucket.
                s3.create_bucket().bucket(&bucket).send().await.unwrap();
                let uploads = s3.list_multipart_uploads().bucket(&bucket).send().await.unwrap();
                assert!(uploads.uploads().is_empty(), "round {round}: {:?}", uploads.uploads());
            }
            (409, code) if code == "BucketNotEmpty" => {
                for key in &stored {
                    s3.head_object().bucket(&bucket).key(key).send().await.unwrap_or_else(|err| panic!("round {round}: {key}: {err:?}"));
                }
            }
            other => panic!("round {round}: DeleteBucket answered {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_key_and_its_folder_race_without_errors() {
    let server = Server::start();
    let s3 = no_retries(&server).await;
    s3.create_bucket().bucket("tree").send().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let workers = (0..8).map(|worker| {
        let s3 = s3.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut n = 0u32;
            while tokio::time::Instant::now() < deadline {
                n += 1;
                let key = if (n + worker).is_multiple_of(2) { "k" } else { "k/child" };
                let answer = match (n + worker) % 5 {
                    0 => outcome(&s3.put_object().bucket("tree").key(key).body(ByteStream::from_static(b"v")).send().await),
                    1 => outcome(&s3.delete_object().bucket("tree").key(key).send().await),
                    2 => outcome(
                        &s3.copy_object()
                            .bucket("tree")
                            .key(key)
                            .copy_source(format!("tree/{}", if key == "k" { "k/child" } else { "k" }))
                            .send()
                            .await,
                    ),
                    3 => outcome(&s3.list_objects_v2().bucket("tree").send().await),
                    _ => outcome(&s3.get_object().bucket("tree").key(key).send().await),
                };
                answers.push(answer);
            }
            answers
        })
    });
    let mut counts = std::collections::BTreeMap::new();
    for worker in workers.collect::<Vec<_>>() {
        for answer in worker.await.unwrap() {
            *counts.entry(answer).or_insert(0) += 1;
        }
    }
    assert!(counts.keys().all(|(status, _)| *status < 500), "{counts:?}");
    assert!(counts.contains_key(&(200, String::new())), "{counts:?}");

    // A 204 for DELETE `a` means `a` is gone, even when PUT `a/b` moves it meanwhile.
    for round in 0..20 {
        s3.put_object().bucket("tree").key("a").body(ByteStream::from_static(b"a")).send().await.unwrap();
        let delete = s3.delete_object().bucket("tree").key("a").send();
        let put = s3.put_object().bucket("tree").key("a/b").body(ByteStream::from_static(b"b")).send();
        let (delete, put) = tokio::join!(delete, put);
        assert_eq!((outcome(&delete), outcome(&put)), ((200, String::new()), (200, String::new())), "round {round}");
        assert!(s3.head_object().bucket("tree").key("a").send().await.is_err(), "round {round}: `a` survived its DELETE");
        s3.delete_object().bucket("tree").key("a/b").send().await.unwrap();
    }
}

// ---- the data directory is a user's folder ----

#[tokio::test]
async fn symbolic_links_in_the_data_directory_are_never_followed() {
    use std::os::unix::fs::symlink;
    let server = Server::start();
    let s3 = no_retries(&server).await;
    s3.create_bucket().bucket("links").send().await.unwrap();
    s3.put_object().bucket("links").key("real").body(ByteStream::from_static(b"real")).send().await.unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"outside").unwrap();
    let bucket_dir = server.data_dir.join("links");
    symlink(outside.path(), bucket_dir.join("out")).unwrap();
    symlink(outside.path().join("secret"), bucket_dir.join("file-link")).unwrap();
    symlink(outside.path(), server.data_dir.join("linked-bucket")).unwrap();

    // Nothing is read through a link: not a folder, not a file, not a bucket.
    assert_eq!(outcome(&s3.get_object().bucket("links").key("out/secret").send().await), (404, "NoSuchKey".into()));
    assert_eq!(outcome(&s3.get_object().bucket("links").key("file-link").send().await), (404, "NoSuchKey".into()));
    assert_eq!(outcome(&s3.get_object().bucket("linked-bucket").key("secret").send().await), (404, "NoSuchBucket".into()));
    let copy = s3.copy_object().bucket("links").key("copied").copy_source("links/out/secret").send().await;
    assert_eq!(outcome(&copy), (404, "NoSuchKey".into()));
    // Nothing is written through (or over) a link.
    for key in ["out/new", "file-link", "out/deeper/new"] {
        let put = s3.put_object().bucket("links").key(key).body(ByteStream::from_static(b"written")).send().await;
        assert_eq!(outcome(&put), (403, "AccessDenied".into()), "PUT {key}");
    }
    assert_eq!(outcome(&s3.put_object().bucket("linked-bucket").key("new").body(ByteStream::from_static(b"x")).send().await).0, 404);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"outside");
    // Nothing is deleted through a link, and the links themselves stay.
    for key in ["out/secret", "file-link"] {
        assert_eq!(outcome(&s3.delete_object().bucket("links").key(key).send().await), (200, String::new()));
    }
    let delete = s3
        .delete_objects()
        .bucket("links")
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .objects(aws_sdk_s3::types::ObjectIdentifier::builder().key("out/secret").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await;
    assert_eq!(outcome(&delete), (200, String::new()));
    assert!(outside.path().join("secret").exists());
    assert!(std::fs::symlink_metadata(bucket_dir.join("file-link")).unwrap().file_type().is_symlink());
    // Listings show the real objects only, and no linked bucket.
    let listed = s3.list_objects_v2().bucket("links").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["real"]);
    let listed = s3.list_objects_v2().bucket("links").prefix("out/").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0));
    let buckets = s3.list_buckets().send().await.unwrap();
    let names: Vec<&str> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["links"]);
    assert_eq!(outcome(&s3.create_bucket().bucket("linked-bucket").send().await), (409, "BucketAlreadyExists".into()));
}

#[tokio::test]
async fn links_back_into_the_bucket_do_not_make_a_listing_loop() {
    use std::os::unix::fs::symlink;
    let server = Server::start();
    let s3 = no_retries(&server).await;
    s3.create_bucket().bucket("loop").send().await.unwrap();
    s3.put_object().bucket("loop").key("dir/x").body(ByteStream::from_static(b"x")).send().await.unwrap();
    let dir = server.data_dir.join("loop");
    symlink(".", dir.join("a")).unwrap();
    symlink(".", dir.join("b")).unwrap();
    symlink("..", dir.join("dir/up")).unwrap();
    for prefix in ["", "a/", "dir/"] {
        let Ok(listed) = tokio::time::timeout(Duration::from_secs(10), s3.list_objects_v2().bucket("loop").prefix(prefix).send()).await
        else {
            panic!("listing {prefix:?} did not answer within 10 s");
        };
        let listed = listed.unwrap();
        let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys, if prefix == "a/" { vec![] } else { vec!["dir/x"] }, "prefix {prefix:?}");
    }
}

// ---- clients that stall or never read ----

const BIG_BYTES: usize = 16 * 1024 * 1024;

/// The server's resident memory, in bytes.
fn rss_bytes(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// A bucket `big` with a 16 MiB object `object` and a 6-byte `small`, through raw PUTs.
fn big_and_small(server: &Server) {
    let mut conn = Conn::open(server);
    assert_eq!(conn.request(b"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").status, 200);
    let mut put = format!("PUT /big/object HTTP/1.1\r\nHost: x\r\nContent-Length: {BIG_BYTES}\r\n\r\n").into_bytes();
    put.resize(put.len() + BIG_BYTES, b'o');
    assert_eq!(conn.request(&put).status, 200);
    assert_eq!(conn.request(b"PUT /big/small HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsmall!").status, 200);
}

/// Connections that ask for the big object and never read a byte of the answer.
fn stalled_downloads(server: &Server, count: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    (0..count)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
            stream.write_all(b"GET /big/object HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            stream
        })
        .collect()
}

#[test]
fn stalled_downloads_hold_no_thread_and_a_new_client_is_answered() {
    let server = Server::start_with(&["--blocking-threads", "4"]);
    big_and_small(&server);
    let stalled = stalled_downloads(&server, 16);
    std::thread::sleep(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let mut conn = Conn::open(&server);
    let response = common::try_read_response(
        &mut {
            conn.send(b"GET /big/small HTTP/1.1\r\nHost: x\r\n\r\n");
            conn.reader
        },
        false,
    );
    let response = response.unwrap_or_else(|err| panic!("no answer after {:?} beside 16 stalled downloads: {err}", started.elapsed()));
    assert_eq!((response.status, response.text()), (200, "small!".to_owned()));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    drop(stalled);
}

#[test]
fn stalled_downloads_keep_memory_bounded() {
    let server = Server::start();
    big_and_small(&server);
    let before = rss_bytes(&server);
    let stalled = stalled_downloads(&server, 32);
    std::thread::sleep(Duration::from_secs(2));
    let grown = rss_bytes(&server).saturating_sub(before);
    assert!(grown < 40 * 1024 * 1024, "32 stalled downloads grew the server by {} MiB", grown / 1024 / 1024);
    drop(stalled);
}

#[test]
fn a_client_that_never_reads_is_cut_after_the_send_timeout() {
    use std::io::Read;
    let server = Server::start_with(&["--send-timeout", "1"]);
    big_and_small(&server);
    let mut stalled = stalled_downloads(&server, 1).remove(0);
    std::thread::sleep(Duration::from_secs(3));
    stalled.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = loop {
        match stalled.read(&mut buf) {
            Ok(0) => break "closed",
            Ok(n) => received += n,
            Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break "still open",
            Err(_) => break "reset",
        }
    };
    assert_ne!(ended, "still open", "received {received} bytes");
    assert!(received < BIG_BYTES, "the whole object arrived ({received} bytes) after 3 s of not reading");
    // The server goes on serving.
    let response = Conn::open(&server).request(b"GET /big/small HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 200);
}

#[test]
fn a_stalled_upload_is_refused_with_request_timeout() {
    let server = Server::start_with(&["--body-timeout", "1"]);
    let mut conn = Conn::open(&server);
    assert_eq!(conn.request(b"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").status, 200);
    let started = std::time::Instant::now();
    let response = Conn::open(&server).request(b"PUT /slow/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nten bytes!");
    assert_refused(&response, 400, "RequestTimeout");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert!(!server.data_dir.join("slow/k").exists());
    // A large streamed body and an XML body stall the same way.
    let response = Conn::open(&server).request(b"PUT /slow/k HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\nten bytes!");
    assert_refused(&response, 400, "RequestTimeout");
    let response = Conn::open(&server).request(b"PUT /slow?tagging HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<Tagging>");
    assert_refused(&response, 400, "RequestTimeout");
    // Firehose bodies too.
    let response = Conn::open(&server).request(
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Firehose_20150804.ListDeliveryStreams\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 100\r\n\r\n{",
    );
    assert_eq!(response.status, 400, "{}", response.text());
}

#[test]
fn connections_beyond_the_cap_are_answered_at_once() {
    use std::io::Write;
    let server = Server::start_with(&["--max-connections", "4", "--body-timeout", "30"]);
    big_and_small(&server);
    // Let the setup's connection end and give back its slot.
    std::thread::sleep(Duration::from_millis(300));
    // Four uploads that send their headers and one byte, then wait.
    let mut slow: Vec<std::net::TcpStream> = (0..4)
        .map(|i| {
            let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
            stream.write_all(format!("PUT /big/slow{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\na").as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    stream.write_all(b"GET /big/small HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let response = common::try_read_response(&mut std::io::BufReader::new(stream), false)
        .unwrap_or_else(|err| panic!("no answer beyond the cap after {:?}: {err}", started.elapsed()));
    assert_refused(&response, 503, "SlowDown");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // Once the uploads finish, new clients are served again.
    for (i, stream) in slow.iter_mut().enumerate() {
        stream.write_all(b"b").unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let response = common::read_response(&mut std::io::BufReader::new(stream.try_clone().unwrap()), false);
        assert_eq!(response.status, 200, "upload {i}");
    }
    drop(slow);
    std::thread::sleep(Duration::from_millis(200));
    let response = Conn::open(&server).request(b"GET /big/small HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((response.status, response.text()), (200, "small!".to_owned()));
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    use std::io::BufRead;
    let hard = std::process::Command::new("sh").args(["-c", "ulimit -Hn"]).output().unwrap();
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_owned();
    if hard == "unlimited" || hard.parse::<u64>().is_ok_and(|h| h <= 256) {
        return; // Nothing to raise, or nothing to lower first.
    }
    // The shell lowers the soft limit, then becomes firelake.
    let script = format!("ulimit -Sn 256 && exec {} --port 0 --ephemeral", env!("CARGO_BIN_EXE_firelake"));
    let mut child = std::process::Command::new("sh").args(["-c", &script]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let row = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((fields[3], fields[4]), (hard.as_str(), hard.as_str()), "{row}");
}

#[tokio::test]
async fn sdk_presigned_requests_still_verify() {
    use aws_sdk_s3::presigning::PresigningConfig;
    let server = strict(&[]);
    let s3 = strict_client(&server).await;
    s3.create_bucket().bucket("presigned").send().await.unwrap();
    let config = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let put = s3
        .put_object()
        .bucket("presigned")
        .key("k")
        .metadata("team", "red")
        .content_type("text/plain")
        .presigned(config.clone())
        .await
        .unwrap();
    let uri: http::Uri = put.uri().parse().unwrap();
    let mut request = format!("PUT {} HTTP/1.1\r\nHost: {}\r\n", uri.path_and_query().unwrap(), server.addr);
    for (name, value) in put.headers() {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 5\r\n\r\nhello");
    let response = Conn::open(&server).request(request.as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    let get = s3.get_object().bucket("presigned").key("k").presigned(config).await.unwrap();
    let uri: http::Uri = get.uri().parse().unwrap();
    let mut request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n", uri.path_and_query().unwrap(), server.addr);
    for (name, value) in get.headers() {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let response = Conn::open(&server).request(request.as_bytes());
    assert_eq!((response.status, response.text()), (200, "hello".to_owned()));
    assert_eq!(response.header("x-amz-meta-team"), Some("red"));
}
