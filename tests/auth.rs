//! `--auth strict` against aws-sdk-rust and raw signed-chunk requests: good signatures
//! pass, wrong secrets and tampered chunks are refused with AWS's errors and store nothing.
//! Signed chunks and trailers come from two signers: `common::Signer` and aws-sigv4 (the
//! signer inside aws-sdk-rust), so that a misreading of the documentation shared by the
//! server and `common::Signer` still fails a test.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::{Conn, Server, Signer};

const KEY: &str = "AKIDSTRICTTEST";
const SECRET: &str = "strict/secret+value";

fn strict() -> Server {
    Server::start_with(&["--auth", "strict", "--auth-keys", &format!("{KEY}:{SECRET},AKIDOTHER:other-secret")])
}

#[tokio::test]
async fn signed_sdk_requests_pass_and_wrong_secrets_are_refused() {
    let server = strict();
    let s3 = common::s3_client_as(&server.endpoint(), true, KEY, SECRET).await;
    s3.create_bucket().bucket("strict").send().await.unwrap();
    s3.put_object().bucket("strict").key("dir/a b+c.txt").body(ByteStream::from_static(b"hello")).send().await.unwrap();
    let got = s3.get_object().bucket("strict").key("dir/a b+c.txt").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"hello");
    let listed = s3.list_objects_v2().bucket("strict").prefix("dir/").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(1));
    // Virtual-hosted style signs another host and path.
    let vhost = common::s3_client_as(&format!("http://localhost:{}", server.port()), false, KEY, SECRET).await;
    vhost.head_object().bucket("strict").key("dir/a b+c.txt").send().await.unwrap();

    // A streaming body: the SDK signs its chunks and CRC32 trailer (see tests/s3_sdk.rs).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamed.bin");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &payload).unwrap();
    let body = ByteStream::from_path(&path).await.unwrap();
    let crc32 = aws_sdk_s3::types::ChecksumAlgorithm::Crc32;
    s3.put_object().bucket("strict").key("streamed.bin").body(body).checksum_algorithm(crc32).send().await.unwrap();
    assert_eq!(std::fs::read(server.data_dir.join("strict/streamed.bin")).unwrap(), payload);

    let wrong = common::s3_client_as(&server.endpoint(), true, KEY, "not-the-secret").await;
    let err = wrong.put_object().bucket("strict").key("forged").body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("SignatureDoesNotMatch"));
    assert!(!server.data_dir.join("strict/forged").exists());
    let unknown = common::s3_client_as(&server.endpoint(), true, "AKIDNOBODY", SECRET).await;
    let err = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("InvalidAccessKeyId"));

    let firehose = server.firehose_as(KEY, SECRET).await;
    let names = firehose.list_delivery_streams().send().await.unwrap();
    assert!(names.delivery_stream_names().is_empty());
    let err = server.firehose_as(KEY, "not-the-secret").await.list_delivery_streams().send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("InvalidSignatureException"));
    let err = server.firehose_as("AKIDNOBODY", SECRET).await.list_delivery_streams().send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("UnrecognizedClientException"));
}

#[test]
fn chunk_signatures_are_checked() {
    let server = strict();
    let mut conn = Conn::open(&server);
    let signer = Signer::now(KEY, SECRET);
    let host = server.addr.to_string();
    let create = |conn: &mut Conn| {
        // A signed empty PUT creates the bucket.
        let date = &signer.amz_date;
        let canonical = format!(
            "PUT\n/chunks\n\nhost:{host}\nx-amz-content-sha256:{}\nx-amz-date:{date}\n\nhost;x-amz-content-sha256;x-amz-date\n{}",
            firelake::sigv4::EMPTY_SHA256,
            firelake::sigv4::EMPTY_SHA256
        );
        let scope = format!("{}/us-east-1/s3/aws4_request", &date[..8]);
        let key = firelake::sigv4::signing_key(SECRET, &date[..8], "us-east-1", "s3");
        let signature = firelake::sigv4::signature(&key, &firelake::sigv4::string_to_sign(date, &scope, &canonical));
        conn.request(format!(
            "PUT /chunks HTTP/1.1\r\nHost: {host}\r\nX-Amz-Content-Sha256: {}\r\nX-Amz-Date: {date}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={KEY}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}\r\nContent-Length: 0\r\n\r\n",
            firelake::sigv4::EMPTY_SHA256
        ).as_bytes())
    };
    let response = create(&mut conn);
    assert_eq!(response.status, 200, "{}", response.text());

    let big = vec![b'a'; 70_000];
    let good = signer.chunked_put(&host, "/chunks/good", &[&big, b"tail"], None);
    let response = conn.request(&good);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(std::fs::read(server.data_dir.join("chunks/good")).unwrap().len(), 70_004);

    // One byte of the second chunk changed: that chunk's signature no longer holds.
    let mut tampered = signer.chunked_put(&host, "/chunks/tampered", &[&big, b"tail"], None);
    let at = tampered.windows(4).rposition(|w| w == b"tail").unwrap();
    tampered[at] = b'T';
    let response = Conn::open(&server).request(&tampered);
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(response.text().contains("<Code>SignatureDoesNotMatch</Code>"), "{}", response.text());
    assert!(!server.data_dir.join("chunks/tampered").exists());

    // A chunk without its signature.
    let mut unsigned = signer.chunked_put(&host, "/chunks/unsigned", &[b"hello"], None);
    let header = b"5;chunk-signature=";
    let at = unsigned.windows(header.len()).position(|w| w == header).unwrap();
    unsigned.splice(at + 1..at + 1 + 17 + 64, std::iter::empty());
    let content_length = unsigned.len() - unsigned.windows(4).position(|w| w == b"\r\n\r\n").unwrap() - 4;
    let text = String::from_utf8(unsigned).unwrap().replacen(
        &format!("Content-Length: {}", content_length + 81),
        &format!("Content-Length: {content_length}"),
        1,
    );
    let response = Conn::open(&server).request(text.as_bytes());
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(!server.data_dir.join("chunks/unsigned").exists());

    // A signed trailer: good, then with the checksum changed after signing, then with the
    // trailer signature itself changed.
    let crc = firelake::s3::checksum::of(firelake::s3::checksum::Algorithm::Crc32, b"hello world");
    let good = signer.chunked_put(&host, "/chunks/trailer", &[b"hello ", b"world"], Some(("x-amz-checksum-crc32", crc.clone())));
    let response = Conn::open(&server).request(&good);
    assert_eq!(response.status, 200, "{}", response.text());
    // Another valid CRC32 of the same length: were the trailer signature not checked, this
    // would be refused as BadDigest (it is not the body's checksum), not as a bad signature.
    let other_crc = firelake::s3::checksum::of(firelake::s3::checksum::Algorithm::Crc32, b"HELLO WORLD");
    assert_eq!(other_crc.len(), crc.len());
    let signed = signer.chunked_put(&host, "/chunks/changed-checksum", &[b"hello ", b"world"], Some(("x-amz-checksum-crc32", crc.clone())));
    let line = format!("x-amz-checksum-crc32:{crc}\r\n");
    let at = signed.windows(line.len()).rposition(|w| w == line.as_bytes()).expect("the trailer line");
    let mut changed = signed.clone();
    changed.splice(at..at + line.len(), format!("x-amz-checksum-crc32:{other_crc}\r\n").into_bytes());
    let response = Conn::open(&server).request(&changed);
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(response.text().contains("<Code>SignatureDoesNotMatch</Code>"), "{}", response.text());
    assert!(!server.data_dir.join("chunks/changed-checksum").exists());
    let mut forged =
        signer.chunked_put(&host, "/chunks/forged-trailer", &[b"hello ", b"world"], Some(("x-amz-checksum-crc32", crc.clone())));
    let sig = b"x-amz-trailer-signature:";
    let at = forged.windows(sig.len()).position(|w| w == sig).unwrap() + sig.len();
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    let response = Conn::open(&server).request(&forged);
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(!server.data_dir.join("chunks/forged-trailer").exists());

    // Another key's secret signs nothing for this key.
    let other = Signer { access_key: KEY.into(), secret: "other-secret".into(), amz_date: signer.amz_date.clone() };
    let response = Conn::open(&server).request(&other.chunked_put(&host, "/chunks/other", &[b"x"], None));
    assert_eq!(response.status, 403, "{}", response.text());
}

/// A `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` PUT signed by aws-sigv4, the signer of
/// aws-sdk-rust (seed with `sign`, chunks with `sign_chunk`, trailer with `sign_trailer`),
/// so the server is checked against an implementation other than `common::Signer`, whose
/// strings to sign are written from the same reading of the AWS documentation as the
/// server's. (Neither botocore nor awscrt's Python binding signs chunks or trailers:
/// botocore sends trailers only unsigned.)
fn independently_signed_put(host: &str, path: &str, chunks: &[&[u8]], trailer: (&str, &str)) -> Vec<u8> {
    use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    let identity: Identity = aws_sdk_s3::config::Credentials::new(KEY, SECRET, None, None, "test").into();
    let time = std::time::SystemTime::now();
    let decoded: usize = chunks.iter().map(|c| c.len()).sum();
    let decoded = decoded.to_string();
    let head = [
        ("host", host),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", decoded.as_str()),
        ("x-amz-trailer", trailer.0),
    ];
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params =
        v4::SigningParams::builder().identity(&identity).region("us-east-1").name("s3").time(time).settings(settings).build().unwrap();
    let request = SignableRequest::new("PUT", path, head.iter().copied(), SignableBody::StreamingSignedPayloadTrailer).unwrap();
    let (instructions, seed) = sign(request, &params.into()).unwrap().into_parts();
    let chunk_params =
        v4::SigningParams::builder().identity(&identity).region("us-east-1").name("s3").time(time).settings(()).build().unwrap();

    let mut body = Vec::new();
    let mut running = seed;
    for chunk in chunks.iter().copied().chain(std::iter::once(&b""[..])) {
        running = v4::sign_chunk(&bytes::Bytes::copy_from_slice(chunk), &running, &chunk_params).unwrap().into_parts().1;
        body.extend_from_slice(format!("{:x};chunk-signature={running}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        if !chunk.is_empty() {
            body.extend_from_slice(b"\r\n");
        }
    }
    let mut trailers = aws_smithy_runtime_api::http::Headers::new();
    trailers.insert(trailer.0.to_owned(), trailer.1.to_owned());
    let trailer_signature = v4::sign_trailer(&trailers, &running, &chunk_params).unwrap().into_parts().1;
    body.extend_from_slice(format!("{}:{}\r\nx-amz-trailer-signature:{trailer_signature}\r\n\r\n", trailer.0, trailer.1).as_bytes());

    let mut request = format!("PUT {path} HTTP/1.1\r\n");
    for (name, value) in head.iter().copied().chain(instructions.headers()) {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut request = request.into_bytes();
    request.extend_from_slice(&body);
    request
}

#[tokio::test]
async fn chunks_and_trailers_signed_by_aws_sigv4_are_accepted_and_checked() {
    let server = strict();
    let s3 = common::s3_client_as(&server.endpoint(), true, KEY, SECRET).await;
    s3.create_bucket().bucket("sigv4").send().await.unwrap();
    let host = server.addr.to_string();
    let big = vec![b'z'; 70_000];
    let payload = [&big[..], b"tail"].concat();
    let crc = firelake::s3::checksum::of(firelake::s3::checksum::Algorithm::Crc32, &payload);

    let good = independently_signed_put(&host, "/sigv4/good", &[&big, b"tail"], ("x-amz-checksum-crc32", &crc));
    let response = Conn::open(&server).request(&good);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(std::fs::read(server.data_dir.join("sigv4/good")).unwrap(), payload);

    // The checksum changed after signing: the trailer signature no longer holds.
    let other = firelake::s3::checksum::of(firelake::s3::checksum::Algorithm::Crc32, b"something else");
    let signed = independently_signed_put(&host, "/sigv4/changed", &[&big, b"tail"], ("x-amz-checksum-crc32", &crc));
    let text = String::from_utf8_lossy(&signed).replacen(
        &format!("x-amz-checksum-crc32:{crc}\r\n"),
        &format!("x-amz-checksum-crc32:{other}\r\n"),
        1,
    );
    assert_ne!(text.as_bytes(), &signed[..]);
    let response = Conn::open(&server).request(text.as_bytes());
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(response.text().contains("<Code>SignatureDoesNotMatch</Code>"), "{}", response.text());
    assert!(!server.data_dir.join("sigv4/changed").exists());
}
