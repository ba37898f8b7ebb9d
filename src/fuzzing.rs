//! Entry points for the fuzz targets in `fuzz/` and the property tests: every parser of
//! untrusted input, reachable without a server. Each must never panic and never
//! allocate without bound, whatever the bytes.

use bytes::Bytes;

use crate::firehose::api::{S3Destination, Violations};
use crate::s3::chunked::Decoder;
use crate::store::keypath;

/// Firehose JSON bodies: the inputs of CreateDeliveryStream, PutRecordBatch and
/// UpdateDestination, with record decoding and destination validation.
pub fn firehose_json(body: &[u8]) {
    if let Ok(input) = crate::firehose::api::parse::<crate::firehose::CreateInput>(body) {
        for dest in [&input.extended_s3_destination_configuration, &input.s3_destination_configuration].into_iter().flatten() {
            check_destination(dest);
        }
    }
    if let Ok(input) = crate::firehose::parse_borrowed::<crate::firehose::PutRecordBatchInput<'_>>(body) {
        let _ = crate::firehose::decode_records(input.records.as_deref().unwrap_or_default());
    }
    if let Ok(input) = crate::firehose::api::parse::<crate::firehose::UpdateInput>(body)
        && let Some(update) = input.extended_s3_destination_update
    {
        let mut merged = S3Destination::default();
        merged.merge(update);
        check_destination(&merged);
    }
}

fn check_destination(dest: &S3Destination) {
    let mut v = Violations::default();
    dest.check_model(&mut v, "d", true);
    let _ = v.finish();
    let _ = dest.check_semantics(false, "d");
    let _ = dest.describe_extended();
    let _ = (dest.extension(), dest.zone(), dest.bucket(), dest.size_bytes());
}

/// S3 XML request bodies.
pub fn s3_xml(body: &[u8]) {
    use crate::s3::common::parse_xml;
    let _ = parse_xml::<crate::s3::delete::Delete>(body);
    let _ = parse_xml::<crate::s3::multipart::CompleteMultipartUpload>(body);
    let _ = parse_xml::<crate::s3::bucket::CreateBucketConfiguration>(body);
    let _ = parse_xml::<crate::s3::cors::CorsConfiguration>(body);
    let _ = crate::s3::tagging::parse_tagging(body, 50);
    let _ = crate::s3::acl::parse_policy(body, "000000000000");
    let _ = parse_xml::<crate::s3::acl::OwnershipControls>(body);
    let _ = parse_xml::<crate::s3::policy::PublicAccessBlockConfiguration>(body);
    // Bucket policies are JSON, but arrive as S3 request bodies.
    let _ = crate::s3::policy::validate(body, "bkt");
}

/// An aws-chunked body, fed in pieces of `piece` bytes, without and with chunk
/// signatures to check.
pub fn aws_chunked(body: &[u8], piece: usize) {
    for signing in [None, Some(chunk_signing())] {
        let mut decoder = Decoder::new(signing);
        let mut out = 0usize;
        let mut failed = false;
        for chunk in body.chunks(piece.max(1)) {
            if decoder.push(Bytes::copy_from_slice(chunk), &mut |b| out += b.len()).is_err() {
                failed = true;
                break;
            }
        }
        if !failed {
            let _ = decoder.finish();
        }
        assert!(out <= body.len(), "the payload is never longer than its encoding");
    }
}

const FUZZ_SECRET: &str = "fuzz-secret";

/// The one access key the fuzzed requests are checked against.
fn fuzz_keys() -> crate::auth::Keys {
    crate::auth::Keys::parse(&format!("AKIDFUZZ:{FUZZ_SECRET}")).expect("valid keys")
}

/// The clock of the fuzzed requests: 2026-01-01T00:00:00Z, the date they are signed with.
fn fuzz_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("valid time")
}

const FUZZ_DATE: &str = "20260101T000000Z";
const FUZZ_SCOPE: &str = "20260101/us-east-1/s3/aws4_request";

/// The seed signature of the request [`chunk_signing`] verifies: the first link of the
/// chain its chunks are signed along.
fn fuzz_seed_signature() -> String {
    let (date, scope) = (FUZZ_DATE, FUZZ_SCOPE);
    let mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
    let canonical =
        format!("PUT\n/b/k\n\nhost:h\nx-amz-content-sha256:{mode}\nx-amz-date:{date}\n\nhost;x-amz-content-sha256;x-amz-date\n{mode}");
    crate::sigv4::signature(&fuzz_signing_key(), &crate::sigv4::string_to_sign(date, scope, &canonical))
}

fn fuzz_signing_key() -> Vec<u8> {
    crate::sigv4::signing_key(FUZZ_SECRET, "20260101", "us-east-1", "s3")
}

/// A signature chain from a request signed with [`FUZZ_SECRET`] in 2026.
fn chunk_signing() -> crate::auth::ChunkSigning {
    let (date, scope, mode) = (FUZZ_DATE, FUZZ_SCOPE, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER");
    let signature = fuzz_seed_signature();
    let auth =
        format!("AWS4-HMAC-SHA256 Credential=AKIDFUZZ/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}");
    let request = http::Request::builder()
        .method("PUT")
        .uri("/b/k")
        .header("host", "h")
        .header("x-amz-content-sha256", mode)
        .header("x-amz-date", date)
        .header("authorization", auth)
        .body(())
        .expect("valid request");
    let verified =
        crate::auth::verify(&fuzz_keys(), &request.into_parts().0, crate::auth::Service::S3, None, fuzz_now()).expect("signed above");
    verified.chunks.expect("a streaming signed request")
}

/// SigV4 and SigV2 signatures: `Authorization` headers, presigned query strings and
/// dates, through the credential parser and the verifier of both protocols.
pub fn sigv4(text: &str) {
    let _ = crate::http::parse_credential(text);
    let encoded = percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string();
    let (keys, now) = (fuzz_keys(), fuzz_now());
    for request in [
        http::Request::builder().uri("/b/k").header("authorization", text).header("x-amz-date", "20260101T000000Z"),
        http::Request::builder().uri("/b/k").header("authorization", text).header("date", text),
        http::Request::builder()
            .uri("/b/k")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
            .header("x-amz-date", text),
        http::Request::builder().uri(format!("/b/k?X-Amz-Credential={encoded}")),
        http::Request::builder().uri(format!(
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDFUZZ%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={encoded}&X-Amz-Expires={encoded}&X-Amz-SignedHeaders={encoded}&X-Amz-Signature=00"
        )),
        http::Request::builder().uri(format!("/b/k?AWSAccessKeyId=AKIDFUZZ&Expires={encoded}&Signature={encoded}&{encoded}")),
        http::Request::builder().uri(format!("/{encoded}?{text}")),
    ] {
        if let Ok(request) = request.body(()) {
            let (parts, ()) = request.into_parts();
            let _ = crate::http::credential(&parts);
            let _ = crate::auth::verify_s3(&keys, &parts, Some("b"), now);
            let _ = crate::auth::verify(&keys, &parts, crate::auth::Service::Firehose, Some(crate::sigv4::EMPTY_SHA256), now);
        }
    }
}

/// Range and conditional headers against an object of `size` bytes.
pub fn range_and_conditions(header: &str, size: u64) {
    if let Ok(Some((first, last))) = crate::s3::get::resolve_range(Some(header), size) {
        assert!(first <= last && last < size, "a resolved range lies inside the object");
    }
    let meta = crate::store::ObjectMeta { etag: "abc".into(), size, last_modified_ms: 1_700_000_000_000, ..Default::default() };
    for name in ["if-match", "if-none-match", "if-modified-since", "if-unmodified-since"] {
        if let Ok(request) = http::Request::builder().uri("/b/k").header(name, header).body(()) {
            let (parts, ()) = request.into_parts();
            let req = crate::s3::Req { parts, query: crate::s3::router::Query::parse(None), chunk_signing: None };
            let _ = crate::s3::preconditions::check_read(&req, &meta);
            let _ = crate::s3::preconditions::check_copy_source(&req, &meta);
            if let Ok(Some(conditions)) = crate::s3::preconditions::WriteConditions::of_write(&req, "k") {
                let _ = conditions.check(Some(&meta));
                let _ = conditions.check(None);
            }
        }
    }
    let _ = crate::s3::tagging::parse_tagging_header(header);
}

/// Prefix expressions, evaluated as a delivery would.
pub fn prefix(text: &str) {
    let _ = crate::firehose::api::check_prefixes(Some(text), Some(text));
    if let Ok(parts) = crate::firehose::naming::parse_prefix(text) {
        let inputs = crate::firehose::naming::KeyInputs {
            stream: "s",
            version: 1,
            oldest_arrival_ms: 0,
            zone: None,
            uuid: "u",
            extension: "",
            partition: (&[], &[]),
        };
        let _ = crate::firehose::naming::object_key(&parts, &inputs, None, || "r".to_owned());
    }
}

/// Key -> path -> key: every key round-trips and no component can leave the bucket.
pub fn key_mapping(key: &str) {
    if key.is_empty() || key.len() > keypath::KEY_BYTES_MAX {
        return;
    }
    let components = keypath::components(key);
    for c in &components {
        assert!(!c.is_empty() && c != "." && c != ".." && !c.contains('/') && !c.contains('\0'), "component {c:?} of {key:?}");
    }
    let parts: Vec<&str> = components.iter().map(String::as_str).collect();
    assert_eq!(keypath::key_of(&parts).as_deref(), Some(key));
    // Arbitrary names found on disk decode to a key or to nothing, never panic.
    let _ = keypath::key_of(&key.split('/').collect::<Vec<_>>());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn firehose_json_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            firehose_json(&body);
        }

        #[test]
        fn firehose_json_shaped(name in "[a-z]{0,70}", data in "[A-Za-z0-9+/=@]{0,40}", n in 0usize..3) {
            let records: Vec<String> = (0..n).map(|_| format!("{{\"Data\":\"{data}\"}}")).collect();
            firehose_json(format!("{{\"DeliveryStreamName\":\"{name}\",\"Records\":[{}]}}", records.join(",")).as_bytes());
            firehose_json(format!("{{\"DeliveryStreamName\":\"{name}\",\"ExtendedS3DestinationConfiguration\":{{\"BucketARN\":\"{data}\",\"Prefix\":\"{data}\"}}}}").as_bytes());
        }

        #[test]
        fn s3_xml_never_panics(body in "(<[A-Za-z]{1,12}>|</[A-Za-z]{1,12}>|[a-z0-9&;]{0,8}){0,30}") {
            s3_xml(body.as_bytes());
        }

        #[test]
        fn sigv4_never_panics(text in "\\PC{0,120}|([A-Za-z0-9]{0,8}/){0,6}[a-z0-9_]{0,12}") {
            sigv4(&text);
        }

        #[test]
        fn ranges_never_panic(header in "(bytes=)?[0-9]{0,20}-?[0-9]{0,20}(,[0-9]{0,3}-[0-9]{0,3})?|\\PC{0,40}", size in 0u64..u64::MAX) {
            range_and_conditions(&header, size);
        }

        #[test]
        fn prefixes_never_panic(text in "(!\\{|\\}|timestamp:|firehose:|random-string|error-output-type|'|[yMdHhmsSaEDY]{1,5}|[a-z/=]{0,5}){0,12}") {
            prefix(&text);
        }

        #[test]
        fn keys_round_trip(key in "\\PC{1,200}|[./%+a]{1,30}") {
            key_mapping(&key);
        }

        #[test]
        fn aws_chunked_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600), piece in 0usize..80) {
            aws_chunked(&body, piece);
        }

        #[test]
        fn aws_chunked_framing_shaped(
            body in "([0-9a-fA-F]{1,5}(;chunk-signature=[0-9a-f]{0,64})?\r?\n[a-z]{0,12}\r?\n?|0\r\n|x-amz-[a-z-]{1,20}:[A-Za-z0-9+/=]{0,12}\r\n|\r\n){0,8}",
            piece in 1usize..40,
        ) {
            aws_chunked(body.as_bytes(), piece);
        }

        /// Correctly signed bodies (chunk signatures and a signed trailer along the chain
        /// that [`aws_chunked`] checks), fed whole or with one byte changed: the entry point
        /// reaches the trailer signature check, and a changed data byte is refused.
        #[test]
        fn aws_chunked_signed_bodies(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..4),
            crc in "[A-Za-z0-9+/]{6}==",
            piece in 1usize..80,
            flip in proptest::option::of((any::<proptest::sample::Index>(), 1u8..=255)),
        ) {
            let (mut body, data_ranges) = signed_body(&chunks, &crc);
            let payload: Vec<u8> = chunks.concat();
            match flip {
                None => {
                    let (decoded, result) = decode_signed(&body, piece);
                    prop_assert_eq!(result, Ok(()), "a correctly signed body is refused");
                    prop_assert_eq!(decoded, payload);
                }
                Some((at, change)) => {
                    let at = at.index(body.len());
                    body[at] ^= change;
                    if data_ranges.iter().any(|r| r.contains(&at)) {
                        let (_, result) = decode_signed(&body, piece);
                        prop_assert!(result.is_err(), "a changed data byte at {} passed the chunk signatures", at);
                    }
                }
            }
            aws_chunked(&body, piece);
        }
    }

    /// `chunks` as an aws-chunked body signed as [`chunk_signing`] expects, with the
    /// trailer `x-amz-checksum-crc32:<crc>` and its signature; answers the body and where
    /// each chunk's data lies in it.
    fn signed_body(chunks: &[Vec<u8>], crc: &str) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        use crate::sigv4;
        let key = fuzz_signing_key();
        let mut previous = fuzz_seed_signature();
        let (mut body, mut data) = (Vec::new(), Vec::new());
        for chunk in chunks.iter().map(Vec::as_slice).chain(std::iter::once(&b""[..])) {
            let sts = sigv4::chunk_string_to_sign(FUZZ_DATE, FUZZ_SCOPE, &previous, &sigv4::sha256_hex(chunk));
            previous = sigv4::signature(&key, &sts);
            body.extend_from_slice(format!("{:x};chunk-signature={previous}\r\n", chunk.len()).as_bytes());
            data.push(body.len()..body.len() + chunk.len());
            body.extend_from_slice(chunk);
            if !chunk.is_empty() {
                body.extend_from_slice(b"\r\n");
            }
        }
        let trailer = format!("x-amz-checksum-crc32:{crc}\n");
        let sts = sigv4::trailer_string_to_sign(FUZZ_DATE, FUZZ_SCOPE, &previous, &sigv4::sha256_hex(trailer.as_bytes()));
        let signature = sigv4::signature(&key, &sts);
        body.extend_from_slice(format!("x-amz-checksum-crc32:{crc}\r\nx-amz-trailer-signature:{signature}\r\n\r\n").as_bytes());
        (body, data)
    }

    /// Decodes `body` in pieces, checking signatures; answers the payload and the outcome.
    fn decode_signed(body: &[u8], piece: usize) -> (Vec<u8>, Result<(), String>) {
        let mut decoder = Decoder::new(Some(chunk_signing()));
        let mut out = Vec::new();
        for chunk in body.chunks(piece) {
            if let Err(err) = decoder.push(Bytes::copy_from_slice(chunk), &mut |b| out.extend_from_slice(&b)) {
                return (out, Err(format!("{err:?}")));
            }
        }
        let result = decoder.finish().map_err(|err| format!("{err:?}"));
        (out, result)
    }
}
