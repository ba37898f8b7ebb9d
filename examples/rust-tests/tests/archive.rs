//! The archive against a firelake started by the test: no Docker, no port to pick, a
//! fresh data directory removed when `firelake` is dropped.

use aws_sdk_firehose::types::ExtendedS3DestinationConfiguration;

#[tokio::test]
async fn positions_arrive_in_one_object() -> Result<(), Box<dyn std::error::Error>> {
    let firelake = firelake::testing::Server::start()?;
    let credentials = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "firelake");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(firelake.endpoint())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(credentials.clone())
            .force_path_style(true)
            .build(),
    );
    let firehose = aws_sdk_firehose::Client::from_conf(
        aws_sdk_firehose::Config::builder()
            .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
            .endpoint_url(firelake.endpoint())
            .region(aws_sdk_firehose::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .build(),
    );
    s3.create_bucket().bucket("positions").send().await?;
    let destination = ExtendedS3DestinationConfiguration::builder()
        .role_arn("arn:aws:iam::000000000000:role/firehose")
        .bucket_arn("arn:aws:s3:::positions")
        .prefix("raw/")
        .build()?;
    firehose.create_delivery_stream().delivery_stream_name("positions").extended_s3_destination_configuration(destination).send().await?;

    fleet_archive::archive(&firehose, "positions", &["4FTEX4944AK844294 106.94 -6.33", "1FTFW1ET5DFC10312 106.82 -6.17"]).await?;
    firelake.flush().await?; // deliver now rather than after the stream's 300 s interval

    let listed = s3.list_objects_v2().bucket("positions").prefix("raw/").send().await?;
    let [object] = listed.contents() else { panic!("one object, got {listed:?}") };
    let body = s3.get_object().bucket("positions").key(object.key().unwrap_or_default()).send().await?.body.collect().await?;
    assert_eq!(body.into_bytes().as_ref(), b"4FTEX4944AK844294 106.94 -6.33\n1FTFW1ET5DFC10312 106.82 -6.17\n");
    Ok(())
}
