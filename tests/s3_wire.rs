//! The S3 wire details real clients depend on, sent as raw bytes: aws-chunked in every
//! signing mode, 100-continue, error shapes and request ids, limits.

mod common;

use common::{Conn, Server, Signer};

const DATE: &str = "20261127T120000Z";
const SECRET: &str = "test-secret";

fn create_bucket(conn: &mut Conn, bucket: &str) {
    let response = conn.request(format!("PUT /{bucket} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
}

/// A `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` request with real signatures (which
/// firelake does not check without `--auth strict`).
fn signed_chunked_put(host: &str, path: &str, chunks: &[&[u8]], trailer: Option<(&str, String)>) -> Vec<u8> {
    let signer = Signer { access_key: "AKIDTEST".into(), secret: SECRET.into(), amz_date: DATE.into() };
    signer.chunked_put(host, path, chunks, trailer)
}

#[test]
fn signed_chunks_are_decoded_not_stored() {
    let server = Server::start();
    let mut conn = Conn::open(&server);
    create_bucket(&mut conn, "bkt");
    let host = server.addr.to_string();
    let first = vec![b'a'; 70_000];
    let request = signed_chunked_put(&host, "/bkt/signed", &[&first, b"tail"], None);
    let response = conn.request(&request);
    assert_eq!(response.status, 200, "{}", response.text());
    let mut expected = first.clone();
    expected.extend_from_slice(b"tail");
    assert_eq!(std::fs::read(server.data_dir.join("bkt/signed")).unwrap(), expected);
    assert_eq!(response.header("etag"), Some(format!("\"{}\"", common::md5_hex(&expected)).as_str()));

    let crc = firelake::s3::checksum::of(firelake::s3::checksum::Algorithm::Crc32c, b"hello world");
    let request = signed_chunked_put(&host, "/bkt/signed-trailer", &[b"hello ", b"world"], Some(("x-amz-checksum-crc32c", crc.clone())));
    let response = conn.request(&request);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-amz-checksum-crc32c"), Some(crc.as_str()));
    assert_eq!(std::fs::read(server.data_dir.join("bkt/signed-trailer")).unwrap(), b"hello world");
}

#[test]
fn unsigned_trailer_checksums_are_verified() {
    let server = Server::start();
    let mut conn = Conn::open(&server);
    create_bucket(&mut conn, "bkt");
    let put = |crc: &str| {
        let body = format!("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n");
        format!(
            "PUT /bkt/k HTTP/1.1\r\nHost: x\r\nContent-Encoding: aws-chunked\r\nX-Amz-Content-Sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\nX-Amz-Trailer: x-amz-checksum-crc32\r\nX-Amz-Decoded-Content-Length: 5\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let good = firelake::s3::checksum::of(firelake::s3::checksum::Algorithm::Crc32, b"hello");
    let response = conn.request(put(&good).as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    let response = conn.request(put("AAAAAA==").as_bytes());
    assert_eq!(response.status, 400);
    assert!(response.text().contains("<Code>BadDigest</Code>"), "{}", response.text());
    let response = conn.request(put("not-base64").as_bytes());
    assert!(response.text().contains("<Code>InvalidRequest</Code>"), "{}", response.text());
    // The failed uploads changed nothing.
    assert_eq!(std::fs::read(server.data_dir.join("bkt/k")).unwrap(), b"hello");
}

#[test]
fn header_checksums_and_content_md5() {
    let server = Server::start();
    let mut conn = Conn::open(&server);
    create_bucket(&mut conn, "bkt");
    use firelake::s3::checksum::{Algorithm, of};
    for algorithm in Algorithm::ALL {
        let value = of(algorithm, b"payload");
        let request = format!("PUT /bkt/k HTTP/1.1\r\nHost: x\r\n{}: {value}\r\nContent-Length: 7\r\n\r\npayload", algorithm.header());
        let response = conn.request(request.as_bytes());
        assert_eq!(response.status, 200, "{algorithm:?}: {}", response.text());
        let request = "GET /bkt/k HTTP/1.1\r\nHost: x\r\nx-amz-checksum-mode: ENABLED\r\n\r\n";
        let response = conn.request(request.as_bytes());
        assert_eq!(response.header(&algorithm.header()), Some(value.as_str()));
        let request = format!("PUT /bkt/k HTTP/1.1\r\nHost: x\r\n{}: {}\r\nContent-Length: 7\r\n\r\npayloaX", algorithm.header(), value);
        let response = conn.request(request.as_bytes());
        assert!(response.text().contains("<Code>BadDigest</Code>"), "{algorithm:?}: {}", response.text());
    }
    let response =
        conn.request(b"PUT /bkt/m HTTP/1.1\r\nHost: x\r\nContent-MD5: XUFAKrxLKna5cZ2REBfFkg==\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(response.status, 200, "{}", response.text());
    let response =
        conn.request(b"PUT /bkt/m HTTP/1.1\r\nHost: x\r\nContent-MD5: XUFAKrxLKna5cZ2REBfFkg==\r\nContent-Length: 5\r\n\r\nhellO");
    assert!(response.text().contains("<Code>BadDigest</Code>"));
    let response = conn.request(b"PUT /bkt/m HTTP/1.1\r\nHost: x\r\nContent-MD5: nope\r\nContent-Length: 5\r\n\r\nhello");
    assert!(response.text().contains("<Code>InvalidDigest</Code>"));
    // A ranged read never carries the whole object's checksum.
    let response = conn.request(b"GET /bkt/k HTTP/1.1\r\nHost: x\r\nx-amz-checksum-mode: ENABLED\r\nRange: bytes=0-1\r\n\r\n");
    assert_eq!(response.status, 206);
    assert!(response.headers.iter().all(|(n, _)| !n.starts_with("x-amz-checksum-")));
}

#[test]
fn expect_continue_gets_the_error_instead_of_100() {
    let server = Server::start();
    let mut conn = Conn::open(&server);
    conn.send(b"PUT /missing-bucket/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let response = common::read_response(&mut conn.reader, false);
    assert_eq!(response.status, 404);
    assert!(response.text().contains("<Code>NoSuchBucket</Code>"));
    // A well-behaved client now sends another request, on this connection if it is kept open.
    let mut conn = if response.header("connection") == Some("close") { Conn::open(&server) } else { conn };
    create_bucket(&mut conn, "bkt");
    conn.send(b"PUT /bkt/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = common::read_response(&mut conn.reader, false);
    assert_eq!(interim.status, 100);
    conn.send(b"hello");
    let response = common::read_response(&mut conn.reader, false);
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn errors_are_aws_shaped_with_matching_request_ids() {
    let server = Server::start();
    let mut conn = Conn::open(&server);
    let response = conn.request(b"GET /no-such-bucket/k HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 404);
    assert_eq!(response.header("content-type"), Some("application/xml"));
    let id = response.header("x-amz-request-id").unwrap().to_owned();
    assert!(response.header("x-amz-id-2").is_some());
    let text = response.text();
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>"), "{text}");
    assert!(text.contains(&format!("<RequestId>{id}</RequestId>")), "{text}");
    assert!(text.contains("<BucketName>no-such-bucket</BucketName>"));
    // HEAD errors have no body: the next response on the connection follows at once.
    let response = conn.request(b"HEAD /no-such-bucket/k HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 404);
    assert!(response.header("x-amz-request-id").is_some());
    create_bucket(&mut conn, "bkt");
    let response = conn.request(b"PUT /bkt/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(response.status, 411);
    assert!(response.text().contains("<Code>MissingContentLength</Code>"));
    let response =
        conn.request(b"POST /bkt?delete HTTP/1.1\r\nHost: x\r\nContent-MD5: 1B2M2Y8AsgTpgAmY7PhCfg==\r\nContent-Length: 0\r\n\r\n");
    assert!(response.text().contains("<Code>MalformedXML</Code>"), "{}", response.text());
    let xml = b"<Delete><Object><Key>a</Key></Object></Delete>";
    let response =
        conn.request(&[format!("POST /bkt?delete HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", xml.len()).as_bytes(), xml].concat());
    assert!(response.text().contains("Missing required header for this request: Content-MD5"), "{}", response.text());
    // Refused before its body is read, an oversized upload also ends its connection.
    let response = conn.request(b"PUT /bkt/k HTTP/1.1\r\nHost: x\r\nContent-Length: 6000000000\r\n\r\n");
    assert!(response.text().contains("<Code>EntityTooLarge</Code>"), "{}", response.text());
    let mut conn = Conn::open(&server);
    let response = conn.request(b"GET /bkt?list-type=2&max-keys=x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(response.text().contains("<Code>InvalidArgument</Code>"));
    let response = conn.request(b"GET /bkt?list-type=2&continuation-token=%%% HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(response.text().contains("<Code>InvalidArgument</Code>"));
    let response = conn.request(b"GET /bkt?notification HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 501);
    assert!(response.text().contains("<Code>NotImplemented</Code>"));
}

#[test]
fn firehose_targets_and_admin_endpoints_share_the_port() {
    let server = Server::start();
    let mut conn = Conn::open(&server);
    let body = b"{}";
    let request = [
        format!("POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Firehose_20150804.NoSuchThing\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
        body,
    ]
    .concat();
    let response = conn.request(&request);
    assert_eq!(response.status, 400);
    assert!(response.text().contains("\"__type\":\"UnknownOperationException\""), "{}", response.text());
    let response = conn.request(b"GET /_firelake/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(response.status, 200);
    let health: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["data_dir"], server.data_dir.display().to_string());
    // Addressed to a bucket host, the same path is an S3 key.
    let response = conn.request(b"GET /_firelake/health HTTP/1.1\r\nHost: bkt.localhost\r\n\r\n");
    assert!(response.text().contains("<Code>NoSuchBucket</Code>"), "{}", response.text());
}

#[test]
fn oversized_headers_are_refused() {
    let server = Server::start();
    let mut conn = Conn::open(&server);
    let big = "a".repeat(100 * 1024);
    let response = conn.request(format!("GET /bkt/k HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert_eq!(response.status, 431);
}

#[test]
fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let server = Server::start();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_firelake"))
        .args(["--port", "0", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use by another firelake"), "{stderr}");
}
