//! aws-sdk-s3 against a real firelake over a real socket: bytes, headers and the files on disk.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use common::{Server, md5_hex};

#[tokio::test]
async fn put_get_head_and_the_file_on_disk() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let body = b"hello firelake\n".to_vec();
    let put = s3
        .put_object()
        .bucket("bkt")
        .key("2026/11/27/21/stream-1-x")
        .body(ByteStream::from(body.clone()))
        .content_type("text/plain")
        .metadata("color", "blue")
        .send()
        .await
        .unwrap();
    assert_eq!(put.e_tag(), Some(format!("\"{}\"", md5_hex(&body)).as_str()));
    // The object is the plain file, byte for byte.
    assert_eq!(std::fs::read(server.data_dir.join("bkt/2026/11/27/21/stream-1-x")).unwrap(), body);

    let got = s3.get_object().bucket("bkt").key("2026/11/27/21/stream-1-x").send().await.unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(got.metadata().unwrap().get("color").map(String::as_str), Some("blue"));
    assert_eq!(got.e_tag(), put.e_tag());
    assert!(got.last_modified().is_some());
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), body.as_slice());

    let head = s3.head_object().bucket("bkt").key("2026/11/27/21/stream-1-x").send().await.unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64));

    let ranged = s3.get_object().bucket("bkt").key("2026/11/27/21/stream-1-x").range("bytes=6-13").send().await.unwrap();
    assert_eq!(ranged.content_range(), Some("bytes 6-13/15"));
    assert_eq!(ranged.body.collect().await.unwrap().into_bytes().as_ref(), b"firelake");
    assert!(server.stop());
}

#[tokio::test]
async fn streaming_upload_with_trailer_stores_only_the_payload() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payload.bin");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &payload).unwrap();
    // A streaming body makes the SDK send aws-chunked with a CRC32 trailer, even over http.
    let sent = SentHeaders::default();
    let put = s3
        .put_object()
        .bucket("bkt")
        .key("from-path.bin")
        .body(ByteStream::from_path(&path).await.unwrap())
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .customize()
        .interceptor(sent.clone())
        .send()
        .await
        .unwrap();
    let sent = sent.0.lock().unwrap().clone();
    let header = |name: &str| sent.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    // This SDK (aws-sdk-s3 1.157) signs every chunk and the trailer, even over http.
    assert_eq!(header("x-amz-content-sha256"), Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"), "{sent:?}");
    assert!(header("content-encoding").is_some_and(|e| e.split(',').any(|e| e.trim() == "aws-chunked")), "{sent:?}");
    assert_eq!(header("x-amz-trailer"), Some("x-amz-checksum-crc32"), "{sent:?}");
    assert_eq!(header("x-amz-decoded-content-length"), Some(payload.len().to_string().as_str()), "{sent:?}");
    // The framing is on the wire: the body sent is longer than the payload it carries.
    let wire_len: usize = header("content-length").expect("a content-length").parse().unwrap();
    assert!(wire_len > payload.len(), "{sent:?}");
    assert_eq!(put.e_tag(), Some(format!("\"{}\"", md5_hex(&payload)).as_str()));
    assert!(put.checksum_crc32().is_some());
    assert_eq!(std::fs::read(server.data_dir.join("bkt/from-path.bin")).unwrap(), payload);
    let head = s3.head_object().bucket("bkt").key("from-path.bin").send().await.unwrap();
    assert_eq!(head.content_encoding(), None, "aws-chunked must not be stored");
    let got =
        s3.get_object().bucket("bkt").key("from-path.bin").checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled).send().await.unwrap();
    assert_eq!(got.checksum_crc32(), put.checksum_crc32());
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), &payload[..]);
}

/// The headers of the last request the SDK transmitted (after signing, as they go on the wire).
#[derive(Debug, Clone, Default)]
struct SentHeaders(std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>);

impl aws_sdk_s3::config::Intercept for SentHeaders {
    fn name(&self) -> &'static str {
        "SentHeaders"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let headers = context.request().headers().iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
        *self.0.lock().unwrap() = headers;
        Ok(())
    }
}

#[tokio::test]
async fn virtual_hosted_addressing() {
    let server = Server::start();
    let s3 = server.s3_virtual_host().await;
    s3.create_bucket().bucket("vhost-bkt").send().await.unwrap();
    s3.put_object().bucket("vhost-bkt").key("_firelake/health").body(ByteStream::from_static(b"an object")).send().await.unwrap();
    let listed = s3.list_objects_v2().bucket("vhost-bkt").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["_firelake/health"]);
    let got = s3.get_object().bucket("vhost-bkt").key("_firelake/health").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"an object");
    assert!(server.data_dir.join("vhost-bkt/_firelake/health").is_file());
}

#[tokio::test]
async fn keys_that_cannot_be_plain_paths() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let long_segment = "s".repeat(700);
    let keys = [
        "a".to_owned(),
        "a/b".to_owned(),
        "a/".to_owned(),
        "a//b".to_owned(),
        "../../escape".to_owned(),
        "./x".to_owned(),
        "%41".to_owned(),
        format!("long/{long_segment}"),
        "k".repeat(1024),
    ];
    for key in &keys {
        s3.put_object().bucket("bkt").key(key).body(ByteStream::from(key.as_bytes().to_vec())).send().await.unwrap();
    }
    for key in &keys {
        let got = s3.get_object().bucket("bkt").key(key).send().await.unwrap();
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), key.as_bytes(), "{key}");
    }
    let mut listed = Vec::new();
    let mut pages = s3.list_objects_v2().bucket("bkt").max_keys(3).into_paginator().send();
    while let Some(page) = pages.next().await {
        listed.extend(page.unwrap().contents().iter().filter_map(|o| o.key().map(str::to_owned)));
    }
    let mut expected: Vec<String> = keys.to_vec();
    expected.sort();
    assert_eq!(listed, expected, "listing is in UTF-8 byte order");
    // Nothing was written outside the bucket's folder.
    assert!(!server.data_dir.join("escape").exists());
    assert!(!server.data_dir.parent().unwrap().join("escape").exists());
    assert!(server.data_dir.join("bkt/a/%%").is_file(), "`a` lives inside the folder of `a/b`");
    assert!(server.data_dir.join("bkt/a/b").is_file());
    assert!(server.data_dir.join("bkt/%../%../escape").is_file());
    // Deleting `a/b` and `a/` leaves `a` readable.
    s3.delete_object().bucket("bkt").key("a/b").send().await.unwrap();
    s3.delete_object().bucket("bkt").key("a/").send().await.unwrap();
    let got = s3.get_object().bucket("bkt").key("a").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"a");
    let err = s3.put_object().bucket("bkt").key("k".repeat(1025)).body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("KeyTooLongError"));
}

#[tokio::test]
async fn listing_with_delimiter_and_prefix() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    for key in ["a-b", "a/x", "a/y/z", "b", "c/d"] {
        s3.put_object().bucket("bkt").key(key).body(ByteStream::from_static(b"1")).send().await.unwrap();
    }
    let top = s3.list_objects_v2().bucket("bkt").delimiter("/").send().await.unwrap();
    let keys: Vec<&str> = top.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<&str> = top.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(keys, ["a-b", "b"]);
    assert_eq!(prefixes, ["a/", "c/"]);
    let under_a = s3.list_objects_v2().bucket("bkt").prefix("a/").delimiter("/").send().await.unwrap();
    let keys: Vec<&str> = under_a.contents().iter().filter_map(|o| o.key()).collect();
    let prefixes: Vec<&str> = under_a.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(keys, ["a/x"]);
    assert_eq!(prefixes, ["a/y/"]);
    let v1 = s3.list_objects().bucket("bkt").marker("a/x").send().await.unwrap();
    let keys: Vec<&str> = v1.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["a/y/z", "b", "c/d"]);
    let versions = s3.list_object_versions().bucket("bkt").prefix("b").send().await.unwrap();
    assert_eq!(versions.versions().len(), 1);
    assert_eq!(versions.versions()[0].version_id(), Some("null"));
}

#[tokio::test]
async fn multipart_upload_has_aws_etag() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let create = s3.create_multipart_upload().bucket("bkt").key("big").send().await.unwrap();
    let upload_id = create.upload_id().unwrap();
    // Not one repeated byte: a part stored out of place or twice would show.
    let part1: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect();
    let part2 = b"tail".to_vec();
    let mut completed = Vec::new();
    for (n, part) in [(1, &part1), (2, &part2)] {
        let up = s3
            .upload_part()
            .bucket("bkt")
            .key("big")
            .upload_id(upload_id)
            .part_number(n)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(up.e_tag(), Some(format!("\"{}\"", md5_hex(part)).as_str()));
        completed.push(CompletedPart::builder().part_number(n).e_tag(up.e_tag().unwrap()).build());
    }
    let parts = s3.list_parts().bucket("bkt").key("big").upload_id(upload_id).send().await.unwrap();
    assert_eq!(parts.parts().len(), 2);
    let uploads = s3.list_multipart_uploads().bucket("bkt").send().await.unwrap();
    assert_eq!(uploads.uploads().len(), 1);
    let done = s3
        .complete_multipart_upload()
        .bucket("bkt")
        .key("big")
        .upload_id(upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
        .send()
        .await
        .unwrap();
    let mut md5s = Vec::new();
    md5s.extend(hex::decode(md5_hex(&part1)).unwrap());
    md5s.extend(hex::decode(md5_hex(&part2)).unwrap());
    assert_eq!(done.e_tag(), Some(format!("\"{}-2\"", md5_hex(&md5s)).as_str()));
    let on_disk = std::fs::read(server.data_dir.join("bkt/big")).unwrap();
    let whole = [&part1[..], &part2[..]].concat();
    assert!(on_disk == whole, "the object is not part 1 then part 2 ({} bytes on disk)", on_disk.len());
    let got = s3.get_object().bucket("bkt").key("big").send().await.unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes() == whole, "GET does not answer part 1 then part 2");
    // The upload's parts are gone once it completes.
    let err = s3.list_parts().bucket("bkt").key("big").upload_id(upload_id).send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("NoSuchUpload"));
    let attrs = s3
        .get_object_attributes()
        .bucket("bkt")
        .key("big")
        .object_attributes(aws_sdk_s3::types::ObjectAttributes::ObjectParts)
        .object_attributes(aws_sdk_s3::types::ObjectAttributes::ObjectSize)
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.object_size(), Some(on_disk.len() as i64));
    assert_eq!(attrs.object_parts().and_then(|p| p.total_parts_count()), Some(2));
}

/// A FULL_OBJECT CRC32 upload: the SDK sends each part's CRC32, firelake answers the whole
/// object's CRC32 (no `-N`), and a GET with checksum mode on is validated by the SDK itself.
#[tokio::test]
async fn multipart_full_object_crc32() {
    use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
    use base64::Engine;
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let create = s3
        .create_multipart_upload()
        .bucket("bkt")
        .key("obj")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .checksum_type(ChecksumType::FullObject)
        .send()
        .await
        .unwrap();
    assert_eq!(create.checksum_type(), Some(&ChecksumType::FullObject));
    let id = create.upload_id().unwrap();
    let part1: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 253) as u8 ^ (i >> 12) as u8).collect();
    let part2 = b"the last part".to_vec();
    let b64 = |crc: u32| base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes());
    let mut completed = Vec::new();
    for (n, part) in [(1, &part1), (2, &part2)] {
        let up = s3
            .upload_part()
            .bucket("bkt")
            .key("obj")
            .upload_id(id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(up.checksum_crc32(), Some(b64(crc32fast::hash(part)).as_str()));
        completed
            .push(CompletedPart::builder().part_number(n).e_tag(up.e_tag().unwrap()).checksum_crc32(up.checksum_crc32().unwrap()).build());
    }
    let whole = [&part1[..], &part2[..]].concat();
    let done = s3
        .complete_multipart_upload()
        .bucket("bkt")
        .key("obj")
        .upload_id(id)
        .checksum_type(ChecksumType::FullObject)
        .mpu_object_size(whole.len() as i64)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
        .send()
        .await
        .unwrap();
    assert_eq!(done.checksum_crc32(), Some(b64(crc32fast::hash(&whole)).as_str()));
    assert_eq!(done.checksum_type(), Some(&ChecksumType::FullObject));
    let got = s3.get_object().bucket("bkt").key("obj").checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
    assert_eq!(got.checksum_crc32(), Some(b64(crc32fast::hash(&whole)).as_str()));
    assert!(got.body.collect().await.unwrap().into_bytes() == whole, "GET does not answer part 1 then part 2");
}

#[tokio::test]
async fn multipart_errors() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let create = s3.create_multipart_upload().bucket("bkt").key("k").send().await.unwrap();
    let id = create.upload_id().unwrap();
    let small =
        s3.upload_part().bucket("bkt").key("k").upload_id(id).part_number(1).body(ByteStream::from_static(b"small")).send().await.unwrap();
    let other =
        s3.upload_part().bucket("bkt").key("k").upload_id(id).part_number(2).body(ByteStream::from_static(b"other")).send().await.unwrap();
    let complete = |parts: Vec<CompletedPart>| {
        s3.complete_multipart_upload()
            .bucket("bkt")
            .key("k")
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
    };
    let part = |n: i32, etag: &str| CompletedPart::builder().part_number(n).e_tag(etag).build();
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let code = |e: aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError, _>| {
        e.code().map(str::to_owned)
    };
    let err = complete(vec![part(2, other.e_tag().unwrap()), part(1, small.e_tag().unwrap())]).await.unwrap_err();
    assert_eq!(code(err).as_deref(), Some("InvalidPartOrder"));
    let err = complete(vec![part(1, "\"0000\"")]).await.unwrap_err();
    assert_eq!(code(err).as_deref(), Some("InvalidPart"));
    let err = complete(vec![part(1, small.e_tag().unwrap()), part(2, other.e_tag().unwrap())]).await.unwrap_err();
    assert_eq!(code(err).as_deref(), Some("EntityTooSmall"));
    s3.abort_multipart_upload().bucket("bkt").key("k").upload_id(id).send().await.unwrap();
    let err =
        s3.upload_part().bucket("bkt").key("k").upload_id(id).part_number(1).body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("NoSuchUpload"));
}

#[tokio::test]
async fn copy_delete_and_tagging() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    s3.put_object()
        .bucket("bkt")
        .key("src")
        .body(ByteStream::from_static(b"copy me"))
        .content_type("text/x-src")
        .tagging("a=1&b=2")
        .send()
        .await
        .unwrap();
    let copied = s3.copy_object().bucket("bkt").key("dst").copy_source("bkt/src").send().await.unwrap();
    assert_eq!(copied.copy_object_result().and_then(|r| r.e_tag()), Some(format!("\"{}\"", md5_hex(b"copy me")).as_str()));
    let head = s3.head_object().bucket("bkt").key("dst").send().await.unwrap();
    assert_eq!(head.content_type(), Some("text/x-src"));
    let replaced = s3
        .copy_object()
        .bucket("bkt")
        .key("dst2")
        .copy_source("bkt/src")
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type("text/y")
        .send()
        .await;
    assert!(replaced.is_ok());
    assert_eq!(s3.head_object().bucket("bkt").key("dst2").send().await.unwrap().content_type(), Some("text/y"));
    let err = s3.copy_object().bucket("bkt").key("src").copy_source("bkt/src").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("InvalidRequest"));
    let err = s3.copy_object().bucket("bkt").key("x").copy_source("bkt/src").copy_source_if_match("\"nope\"").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("PreconditionFailed"));

    let tags = s3.get_object_tagging().bucket("bkt").key("src").send().await.unwrap();
    let mut pairs: Vec<(&str, &str)> = tags.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    pairs.sort();
    assert_eq!(pairs, [("a", "1"), ("b", "2")]);
    s3.delete_object_tagging().bucket("bkt").key("src").send().await.unwrap();
    assert!(s3.get_object_tagging().bucket("bkt").key("src").send().await.unwrap().tag_set().is_empty());

    let delete = Delete::builder()
        .objects(ObjectIdentifier::builder().key("src").build().unwrap())
        .objects(ObjectIdentifier::builder().key("dst").build().unwrap())
        .objects(ObjectIdentifier::builder().key("never-was").build().unwrap())
        .build()
        .unwrap();
    let deleted = s3.delete_objects().bucket("bkt").delete(delete).send().await.unwrap();
    assert_eq!(deleted.deleted().len(), 3);
    assert!(!server.data_dir.join("bkt/src").exists());
    let err = s3.get_object().bucket("bkt").key("src").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("NoSuchKey"));
}

#[tokio::test]
async fn bucket_lifecycle_and_errors() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    // Re-creating your own bucket in us-east-1 succeeds.
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let err = s3.create_bucket().bucket("Bad_Name").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("InvalidBucketName"));
    let listed = s3.list_buckets().send().await.unwrap();
    assert_eq!(listed.buckets().iter().filter_map(|b| b.name()).collect::<Vec<_>>(), ["bkt"]);
    let location = s3.get_bucket_location().bucket("bkt").send().await.unwrap();
    assert_eq!(location.location_constraint().map(|c| c.as_str()).unwrap_or_default(), "", "us-east-1 is the empty constraint");
    s3.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"x")).send().await.unwrap();
    let err = s3.delete_bucket().bucket("bkt").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("BucketNotEmpty"));
    s3.delete_object().bucket("bkt").key("k").send().await.unwrap();
    s3.delete_bucket().bucket("bkt").send().await.unwrap();
    assert!(!server.data_dir.join("bkt").exists());
    let err = s3.head_bucket().bucket("bkt").send().await.unwrap_err();
    assert!(err.into_service_error().is_not_found());
    let err = s3.get_object().bucket("bkt").key("k").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("NoSuchBucket"));
}

#[tokio::test]
async fn conditional_and_range_errors() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let put = s3.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"0123456789")).send().await.unwrap();
    let etag = put.e_tag().unwrap();
    let err = s3.get_object().bucket("bkt").key("k").if_match("\"other\"").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("PreconditionFailed"));
    let err = s3.get_object().bucket("bkt").key("k").if_none_match(etag).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(304));
    let err = s3.get_object().bucket("bkt").key("k").range("bytes=10-").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("InvalidRange"));
    let ok = s3.get_object().bucket("bkt").key("k").if_match(etag).range("bytes=-3").send().await.unwrap();
    assert_eq!(ok.body.collect().await.unwrap().into_bytes().as_ref(), b"789");
    let overridden = s3.get_object().bucket("bkt").key("k").response_content_type("text/csv").send().await.unwrap();
    assert_eq!(overridden.content_type(), Some("text/csv"));
}

#[tokio::test]
async fn hand_copied_files_are_objects() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    std::fs::create_dir_all(server.data_dir.join("bkt/by/hand")).unwrap();
    std::fs::write(server.data_dir.join("bkt/by/hand/file.csv"), b"a,b\n1,2\n").unwrap();
    let listed = s3.list_objects_v2().bucket("bkt").send().await.unwrap();
    let object = &listed.contents()[0];
    assert_eq!(object.key(), Some("by/hand/file.csv"));
    assert_eq!(object.e_tag(), Some(format!("\"{}\"", md5_hex(b"a,b\n1,2\n")).as_str()));
    let got = s3.get_object().bucket("bkt").key("by/hand/file.csv").send().await.unwrap();
    assert_eq!(got.content_type(), Some("binary/octet-stream"));
    // A file changed by hand is described by its new bytes, never by stale metadata.
    std::fs::write(server.data_dir.join("bkt/by/hand/file.csv"), b"changed").unwrap();
    let head = s3.head_object().bucket("bkt").key("by/hand/file.csv").send().await.unwrap();
    assert_eq!(head.e_tag(), Some(format!("\"{}\"", md5_hex(b"changed")).as_str()));
    assert_eq!(head.content_length(), Some(7));
}

#[tokio::test]
async fn unsupported_operations_answer_not_implemented() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let err = s3
        .put_bucket_website()
        .bucket("bkt")
        .website_configuration(
            aws_sdk_s3::types::WebsiteConfiguration::builder()
                .index_document(aws_sdk_s3::types::IndexDocument::builder().suffix("index.html").build().unwrap())
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    let raw_status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(raw_status, Some(501));
    assert_eq!(err.into_service_error().meta().code(), Some("NotImplemented"));
    // Reads of unconfigured sub-resources answer as AWS does for a fresh bucket.
    let versioning = s3.get_bucket_versioning().bucket("bkt").send().await.unwrap();
    assert!(versioning.status().is_none());
    let err = s3.get_bucket_policy().bucket("bkt").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("NoSuchBucketPolicy"));
    let encryption = s3.get_bucket_encryption().bucket("bkt").send().await.unwrap();
    assert!(encryption.server_side_encryption_configuration().is_some());
}

#[tokio::test]
async fn versions_with_the_rust_sdk() {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    s3.put_bucket_versioning().bucket("bkt").versioning_configuration(enabled).send().await.unwrap();
    let mut ids = Vec::new();
    for body in [&b"first"[..], b"second"] {
        let put = s3.put_object().bucket("bkt").key("k").body(ByteStream::from(body.to_vec())).send().await.unwrap();
        ids.push(put.version_id().unwrap().to_owned());
    }
    let old = s3.get_object().bucket("bkt").key("k").version_id(&ids[0]).send().await.unwrap();
    assert_eq!(old.version_id(), Some(ids[0].as_str()));
    assert_eq!(old.body.collect().await.unwrap().into_bytes().as_ref(), b"first");
    let deleted = s3.delete_object().bucket("bkt").key("k").send().await.unwrap();
    assert_eq!(deleted.delete_marker(), Some(true));
    let listed = s3.list_object_versions().bucket("bkt").send().await.unwrap();
    let listed_ids: Vec<&str> = listed.versions().iter().filter_map(|v| v.version_id()).collect();
    assert_eq!(listed_ids, [ids[1].as_str(), ids[0].as_str()]);
    let markers = listed.delete_markers();
    assert_eq!((markers.len(), markers[0].is_latest(), markers[0].version_id()), (1, Some(true), deleted.version_id()));
    let err = s3.get_object().bucket("bkt").key("k").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("NoSuchKey"));
}

#[tokio::test]
async fn lifecycle_with_the_rust_sdk() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
        NoncurrentVersionExpiration,
    };
    // A day of 1 s, so the sweep's work shows within the test.
    let server = Server::start_with(&["--lifecycle-day-seconds", "1"]);
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let rules = vec![
        LifecycleRule::builder()
            .id("tmp")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
            .expiration(LifecycleExpiration::builder().days(1).build())
            .build()
            .unwrap(),
        LifecycleRule::builder()
            .id("versions")
            .status(ExpirationStatus::Disabled)
            .filter(LifecycleRuleFilter::builder().build())
            .noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(30).newer_noncurrent_versions(2).build())
            .build()
            .unwrap(),
    ];
    let config = BucketLifecycleConfiguration::builder().set_rules(Some(rules.clone())).build().unwrap();
    s3.put_bucket_lifecycle_configuration().bucket("bkt").lifecycle_configuration(config).send().await.unwrap();
    let got = s3.get_bucket_lifecycle_configuration().bucket("bkt").send().await.unwrap();
    assert_eq!(got.rules(), rules.as_slice());
    let put = s3.put_object().bucket("bkt").key("tmp/a").body(ByteStream::from_static(b"a")).send().await.unwrap();
    assert!(put.expiration().is_some_and(|e| e.ends_with("rule-id=\"tmp\"")), "{:?}", put.expiration());
    s3.put_object().bucket("bkt").key("kept").body(ByteStream::from_static(b"k")).send().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while std::fs::exists(server.data_dir.join("bkt/tmp/a")).unwrap() {
        assert!(std::time::Instant::now() < deadline, "tmp/a did not expire");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let listed = s3.list_objects_v2().bucket("bkt").send().await.unwrap();
    assert_eq!(listed.contents().iter().filter_map(|o| o.key()).collect::<Vec<_>>(), ["kept"]);
    s3.delete_bucket_lifecycle().bucket("bkt").send().await.unwrap();
    let err = s3.get_bucket_lifecycle_configuration().bucket("bkt").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("NoSuchLifecycleConfiguration"));
}

#[tokio::test]
async fn conditional_writes_and_access_settings() {
    let server = Server::start();
    let s3 = server.s3().await;
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let first = s3.put_object().bucket("bkt").key("lock").if_none_match("*").body(ByteStream::from_static(b"a")).send().await.unwrap();
    let err = s3.put_object().bucket("bkt").key("lock").if_none_match("*").body(ByteStream::from_static(b"b")).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(412));
    assert_eq!(err.into_service_error().meta().code(), Some("PreconditionFailed"));
    let err = s3.put_object().bucket("bkt").key("lock").if_match("\"ffff\"").body(ByteStream::from_static(b"b")).send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("PreconditionFailed"));
    s3.put_object().bucket("bkt").key("lock").if_match(first.e_tag().unwrap()).body(ByteStream::from_static(b"c")).send().await.unwrap();
    assert_eq!(std::fs::read(server.data_dir.join("bkt/lock")).unwrap(), b"c");
    let err = s3.delete_object().bucket("bkt").key("lock").if_match("\"ffff\"").send().await.unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("PreconditionFailed"));
    assert!(server.data_dir.join("bkt/lock").exists());

    // A new bucket's access settings, as AWS gives them since 2023.
    let controls = s3.get_bucket_ownership_controls().bucket("bkt").send().await.unwrap();
    let rule = &controls.ownership_controls().unwrap().rules()[0];
    assert_eq!(rule.object_ownership(), &aws_sdk_s3::types::ObjectOwnership::BucketOwnerEnforced);
    let block = s3.get_public_access_block().bucket("bkt").send().await.unwrap();
    assert_eq!(block.public_access_block_configuration().unwrap().block_public_policy(), Some(true));
    let err = s3
        .put_object()
        .bucket("bkt")
        .key("k")
        .acl(aws_sdk_s3::types::ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.into_service_error().meta().code(), Some("AccessControlListNotSupported"));
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"s3:*","Resource":["arn:aws:s3:::bkt","arn:aws:s3:::bkt/*"]}]}"#;
    s3.put_bucket_policy().bucket("bkt").policy(policy).send().await.unwrap();
    assert_eq!(s3.get_bucket_policy().bucket("bkt").send().await.unwrap().policy(), Some(policy));
    let status = s3.get_bucket_policy_status().bucket("bkt").send().await.unwrap();
    assert_eq!(status.policy_status().and_then(|s| s.is_public()), Some(false));
}
