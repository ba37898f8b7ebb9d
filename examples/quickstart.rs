//! aws-sdk-rust against firelake: a bucket, an object, a delivery stream and a record.
//! Run it with `cargo run --example quickstart` while firelake serves on port 4573; run
//! again, it uses the bucket and the stream it made before.

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::{ExtendedS3DestinationConfiguration, Record};
use aws_sdk_s3::primitives::ByteStream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run("http://127.0.0.1:4573").await
}

pub async fn run(endpoint: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "firelake"))
        .load()
        .await;
    // Path-style: `<bucket>.localhost` names do not resolve everywhere.
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    s3.create_bucket().bucket("sd-vehicle-data").send().await?;
    s3.put_object().bucket("sd-vehicle-data").key("notes/hello.txt").body(ByteStream::from_static(b"hello")).send().await?;

    let firehose = aws_sdk_firehose::Client::new(&config);
    let destination = ExtendedS3DestinationConfiguration::builder()
        .role_arn("arn:aws:iam::000000000000:role/firehose")
        .bucket_arn("arn:aws:s3:::sd-vehicle-data")
        .build()?;
    let created = firehose
        .create_delivery_stream()
        .delivery_stream_name("quickstart-stream")
        .extended_s3_destination_configuration(destination)
        .send()
        .await;
    // A second run finds the stream of the first (as it finds its bucket) and uses it.
    if let Err(err) = created
        && !err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception())
    {
        return Err(err.into());
    }
    let record = Record::builder().data(Blob::new("939ed1d1 4:25:06.000 4FTEX4944AK844294 106.94 -6.33 25\n")).build()?;
    firehose.put_record().delivery_stream_name("quickstart-stream").record(record).send().await?;
    Ok(())
}
