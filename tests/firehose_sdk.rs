//! aws-sdk-firehose and aws-sdk-s3 against a real firelake: delivery streams end to end.

mod common;

use aws_sdk_firehose::error::ProvideErrorMetadata;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::{
    BufferingHints, CompressionFormat, DeliveryStreamEncryptionConfigurationInput, ExtendedS3DestinationConfiguration,
    ExtendedS3DestinationUpdate, KeyType, Record, Tag,
};
use common::Server;

const ROLE: &str = "arn:aws:iam::000000000000:role/firehose";

fn destination(bucket: &str) -> aws_sdk_firehose::types::builders::ExtendedS3DestinationConfigurationBuilder {
    ExtendedS3DestinationConfiguration::builder().role_arn(ROLE).bucket_arn(format!("arn:aws:s3:::{bucket}"))
}

async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
}

#[tokio::test]
async fn put_record_batch_to_object_through_both_sdks() {
    let server = Server::start();
    let (fh, s3) = (server.firehose().await, server.s3().await);
    s3.create_bucket().bucket("fleet").send().await.unwrap();
    let created = fh
        .create_delivery_stream()
        .delivery_stream_name("telematics")
        .extended_s3_destination_configuration(destination("fleet").prefix("raw/").build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(created.delivery_stream_arn(), Some("arn:aws:firehose:us-east-1:000000000000:deliverystream/telematics"));
    let described = fh.describe_delivery_stream().delivery_stream_name("telematics").send().await.unwrap();
    let d = described.delivery_stream_description().unwrap();
    assert_eq!(d.version_id(), "1");
    assert_eq!(d.destinations()[0].destination_id(), "destinationId-000000000001");
    let records: Vec<Record> = (0..500).map(|i| Record::builder().data(Blob::new(format!("{i}\n"))).build().unwrap()).collect();
    let put = fh.put_record_batch().delivery_stream_name("telematics").set_records(Some(records)).send().await.unwrap();
    assert_eq!(put.failed_put_count(), 0);
    assert_eq!(put.request_responses().len(), 500);
    let one = fh
        .put_record()
        .delivery_stream_name("telematics")
        .record(Record::builder().data(Blob::new("last\n")).build().unwrap())
        .send()
        .await
        .unwrap();
    assert!(!one.record_id().is_empty());
    assert_eq!(server.flush(Some("telematics")).status, 200);
    let keys = keys(&s3, "fleet").await;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with("raw/") && keys[0].contains("/telematics-1-"), "{}", keys[0]);
    let body = s3.get_object().bucket("fleet").key(&keys[0]).send().await.unwrap().body.collect().await.unwrap().into_bytes();
    let expected: String = (0..500).map(|i| format!("{i}\n")).chain(std::iter::once("last\n".to_owned())).collect();
    assert_eq!(std::str::from_utf8(&body).unwrap(), expected);
    // The object is a plain file under the data directory.
    assert_eq!(std::fs::read(server.data_dir.join("fleet").join(&keys[0])).unwrap(), body.as_ref());
}

#[tokio::test]
async fn update_destination_changes_compression_and_version() {
    let server = Server::start();
    let (fh, s3) = (server.firehose().await, server.s3().await);
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    fh.create_delivery_stream()
        .delivery_stream_name("s")
        .extended_s3_destination_configuration(
            destination("bkt").buffering_hints(BufferingHints::builder().size_in_mbs(1).interval_in_seconds(60).build()).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    let err = fh
        .update_destination()
        .delivery_stream_name("s")
        .current_delivery_stream_version_id("2")
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(ExtendedS3DestinationUpdate::builder().compression_format(CompressionFormat::Gzip).build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ConcurrentModificationException"));
    fh.update_destination()
        .delivery_stream_name("s")
        .current_delivery_stream_version_id("1")
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(ExtendedS3DestinationUpdate::builder().compression_format(CompressionFormat::Gzip).build())
        .send()
        .await
        .unwrap();
    let d = fh.describe_delivery_stream().delivery_stream_name("s").send().await.unwrap();
    let d = d.delivery_stream_description().unwrap();
    assert_eq!(d.version_id(), "2");
    assert!(d.last_update_timestamp().is_some());
    let ext = d.destinations()[0].extended_s3_destination_description().unwrap();
    assert_eq!(ext.compression_format(), &CompressionFormat::Gzip);
    assert_eq!(ext.buffering_hints().and_then(|h| h.size_in_mbs()), Some(1));
    fh.put_record().delivery_stream_name("s").record(Record::builder().data(Blob::new("z")).build().unwrap()).send().await.unwrap();
    assert_eq!(server.flush(None).status, 200);
    let keys = keys(&s3, "bkt").await;
    assert!(keys[0].contains("/s-2-") && keys[0].ends_with(".gz"), "{}", keys[0]);
    let head = s3.head_object().bucket("bkt").key(&keys[0]).send().await.unwrap();
    assert_eq!(head.content_encoding(), Some("gzip"));
    assert_eq!(head.content_type(), Some("application/octet-stream"));
}

#[tokio::test]
async fn tags_encryption_list_and_delete() {
    let server = Server::start();
    let fh = server.firehose().await;
    for name in ["b-stream", "a-stream"] {
        fh.create_delivery_stream()
            .delivery_stream_name(name)
            .extended_s3_destination_configuration(destination("x").build().unwrap())
            .tags(Tag::builder().key("team").value("fleet").build().unwrap())
            .send()
            .await
            .unwrap();
    }
    let listed = fh.list_delivery_streams().send().await.unwrap();
    assert_eq!(listed.delivery_stream_names(), ["a-stream", "b-stream"]);
    assert!(!listed.has_more_delivery_streams());
    fh.tag_delivery_stream()
        .delivery_stream_name("a-stream")
        .tags(Tag::builder().key("env").value("dev").build().unwrap())
        .send()
        .await
        .unwrap();
    let tags = fh.list_tags_for_delivery_stream().delivery_stream_name("a-stream").send().await.unwrap();
    assert_eq!(tags.tags().iter().map(|t| t.key()).collect::<Vec<_>>(), ["env", "team"]);
    fh.untag_delivery_stream().delivery_stream_name("a-stream").tag_keys("env").send().await.unwrap();
    fh.start_delivery_stream_encryption()
        .delivery_stream_name("a-stream")
        .delivery_stream_encryption_configuration_input(
            DeliveryStreamEncryptionConfigurationInput::builder().key_type(KeyType::AwsOwnedCmk).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    let put = fh
        .put_record()
        .delivery_stream_name("a-stream")
        .record(Record::builder().data(Blob::new("x")).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(put.encrypted(), Some(true));
    fh.stop_delivery_stream_encryption().delivery_stream_name("a-stream").send().await.unwrap();
    fh.delete_delivery_stream().delivery_stream_name("a-stream").send().await.unwrap();
    let err = fh.describe_delivery_stream().delivery_stream_name("a-stream").send().await.unwrap_err();
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
    assert_eq!(err.message(), Some("Firehose a-stream under account 000000000000 not found."));
    let err = fh
        .put_record_batch()
        .delivery_stream_name("b-stream")
        .set_records(Some(vec![Record::builder().data(Blob::new(vec![0u8; 1_024_001])).build().unwrap()]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    assert!(err.message().unwrap().contains("at 'records.1.member.data' failed to satisfy constraint"), "{:?}", err.message());
}

/// Dynamic partitioning by two jq keys through aws-sdk-firehose, read back through
/// aws-sdk-s3: one object per partition under its evaluated prefix, holding exactly its
/// records, and the records whose keys cannot be extracted as error documents.
#[tokio::test]
async fn dynamic_partitioning_through_the_rust_sdk() {
    use aws_sdk_firehose::types::{DynamicPartitioningConfiguration, ProcessingConfiguration, Processor, ProcessorParameter};
    use aws_sdk_firehose::types::{ProcessorParameterName, ProcessorType};

    let server = Server::start();
    let (fh, s3) = (server.firehose().await, server.s3().await);
    s3.create_bucket().bucket("fleet").send().await.unwrap();
    let parameter = |name, value: &str| ProcessorParameter::builder().parameter_name(name).parameter_value(value).build().unwrap();
    let extraction = Processor::builder()
        .r#type(ProcessorType::MetadataExtraction)
        .parameters(parameter(ProcessorParameterName::MetadataExtractionQuery, "{make: .car.make, day: .ts[0:10]}"))
        .parameters(parameter(ProcessorParameterName::JsonParsingEngine, "JQ-1.6"))
        .build()
        .unwrap();
    let delimiter = Processor::builder().r#type(ProcessorType::AppendDelimiterToRecord).build().unwrap();
    let config = destination("fleet")
        .prefix("make=!{partitionKeyFromQuery:make}/day=!{partitionKeyFromQuery:day}/")
        .error_output_prefix("errors/!{firehose:error-output-type}/")
        .buffering_hints(BufferingHints::builder().size_in_mbs(64).interval_in_seconds(60).build())
        .dynamic_partitioning_configuration(DynamicPartitioningConfiguration::builder().enabled(true).build())
        .processing_configuration(ProcessingConfiguration::builder().enabled(true).processors(extraction).processors(delimiter).build())
        .build()
        .unwrap();
    fh.create_delivery_stream().delivery_stream_name("parts").extended_s3_destination_configuration(config).send().await.unwrap();
    let records = [
        r#"{"car":{"make":"vw"},"ts":"2024-05-01T10:00:00Z","n":1}"#,
        r#"{"car":{"make":"bmw"},"ts":"2024-05-01T11:00:00Z","n":2}"#,
        r#"{"car":{"make":"vw"},"ts":"2024-05-02T10:00:00Z","n":3}"#,
        r#"{"car":{"make":"vw"},"ts":"2024-05-01T12:00:00Z","n":4}"#,
        r#"{"ts":"2024-05-01T12:00:00Z","n":5}"#,
    ];
    let batch: Vec<Record> = records.iter().map(|r| Record::builder().data(Blob::new(*r)).build().unwrap()).collect();
    let put = fh.put_record_batch().delivery_stream_name("parts").set_records(Some(batch)).send().await.unwrap();
    assert_eq!(put.failed_put_count(), 0);
    assert_eq!(server.flush(Some("parts")).status, 200);
    let mut by_partition = std::collections::BTreeMap::new();
    for key in keys(&s3, "fleet").await {
        let body = s3.get_object().bucket("fleet").key(&key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
        assert!(key.contains("/parts-1-"), "{key}");
        by_partition.insert(key[..key.rfind('/').unwrap()].to_owned(), String::from_utf8(body.to_vec()).unwrap());
    }
    let errors = by_partition.remove("errors/partitioning-failed").expect("an error object");
    let doc: serde_json::Value = serde_json::from_str(errors.trim_end()).unwrap();
    assert_eq!(doc["errorCode"], "DynamicPartitioning.MetadataExtractionFailed");
    let expected: std::collections::BTreeMap<String, String> = [
        ("make=bmw/day=2024-05-01", records[1].to_owned()),
        ("make=vw/day=2024-05-01", format!("{}\n{}", records[0], records[3])),
        ("make=vw/day=2024-05-02", records[2].to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(by_partition, expected);
    let error = fh
        .update_destination()
        .delivery_stream_name("parts")
        .current_delivery_stream_version_id("1")
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(
            ExtendedS3DestinationUpdate::builder()
                .dynamic_partitioning_configuration(DynamicPartitioningConfiguration::builder().enabled(false).build())
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("InvalidArgumentException"));
}
