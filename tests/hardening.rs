//! The findings of the red-team pass (issue #12), each as a regression test against a
//! real firelake: strict authentication that AWS would refuse, races that answered 500,
//! symbolic links in the data directory, and clients that stall.

mod common;

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
