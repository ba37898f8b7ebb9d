//! `firelake::testing::Server`, the in-process server of a user's tests: its options,
//! flush, reset and stop, driven with aws-sdk-rust over a real socket.

mod common;

use std::time::Duration;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::{ExtendedS3DestinationConfiguration, Record};
use firelake::testing::Server;

async fn firehose(server: &Server, key: &str, secret: &str) -> aws_sdk_firehose::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_firehose::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_firehose::config::Credentials::new(key, secret, None, None, "tests"))
        .endpoint_url(server.endpoint())
        .load()
        .await;
    aws_sdk_firehose::Client::new(&shared)
}

async fn create_stream(firehose: &aws_sdk_firehose::Client, name: &str, bucket: &str) {
    let destination = ExtendedS3DestinationConfiguration::builder()
        .role_arn("arn:aws:iam::000000000000:role/firehose")
        .bucket_arn(format!("arn:aws:s3:::{bucket}"))
        .build()
        .unwrap();
    firehose.create_delivery_stream().delivery_stream_name(name).extended_s3_destination_configuration(destination).send().await.unwrap();
}

async fn put(firehose: &aws_sdk_firehose::Client, stream: &str, data: &str) {
    let record = Record::builder().data(Blob::new(data)).build().unwrap();
    firehose.put_record().delivery_stream_name(stream).record(record).send().await.unwrap();
}

fn delivered(server: &Server, bucket: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![server.data_dir().join(bucket)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type().unwrap().is_dir() {
                true => pending.push(entry.path()),
                false => found.push(std::fs::read_to_string(entry.path()).unwrap()),
            }
        }
    }
    found
}

#[tokio::test]
async fn flush_delivers_and_reset_empties() {
    let server = Server::start().unwrap();
    let s3 = common::s3_client(&server.endpoint(), true).await;
    let firehose = firehose(&server, "test", "test").await;
    s3.create_bucket().bucket("flushed").send().await.unwrap();
    create_stream(&firehose, "one", "flushed").await;
    put(&firehose, "one", "a\n").await;
    assert!(delivered(&server, "flushed").is_empty(), "nothing before the flush (300 s interval)");
    server.flush_stream("one").await.unwrap();
    assert_eq!(delivered(&server, "flushed"), ["a\n"]);
    let unknown = server.flush_stream("nope").await.unwrap_err().to_string();
    assert_eq!(unknown, "no delivery stream named nope");

    // A stream whose bucket is gone: the flush names it.
    create_stream(&firehose, "orphan", "missing-bucket").await;
    put(&firehose, "orphan", "b\n").await;
    let failed = server.flush().await.unwrap_err().to_string();
    assert_eq!(failed, "not delivered: 000000000000/us-east-1/orphan: bucket missing-bucket does not exist");

    server.reset().await.unwrap();
    assert!(s3.list_buckets().send().await.unwrap().buckets().is_empty());
    assert!(firehose.list_delivery_streams().send().await.unwrap().delivery_stream_names().is_empty());
}

#[tokio::test]
async fn options_reach_the_server() {
    let init = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(init.path(), r#"{"buckets": ["from-init"]}"#).unwrap();
    let server = Server::builder()
        .buffer_interval_cap(Duration::from_millis(200))
        .auth_key("AKIDTESTING", "testing-secret")
        .init_file(init.path())
        .lenient()
        .start()
        .unwrap();
    let s3 = common::s3_client_as(&server.endpoint(), true, "AKIDTESTING", "testing-secret").await;
    let names: Vec<_> = s3.list_buckets().send().await.unwrap().buckets().iter().filter_map(|b| b.name().map(str::to_owned)).collect();
    assert_eq!(names, ["from-init"]);
    let stranger = common::s3_client_as(&server.endpoint(), true, "AKIDOTHER", "other").await;
    let refused = stranger.list_buckets().send().await.unwrap_err();
    assert_eq!(refused.into_service_error().meta().code(), Some("InvalidAccessKeyId"));

    // The interval cap delivers without a flush.
    let firehose = firehose(&server, "AKIDTESTING", "testing-secret").await;
    create_stream(&firehose, "capped", "from-init").await;
    put(&firehose, "capped", "c\n").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while delivered(&server, "from-init").is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered(&server, "from-init"), ["c\n"]);

    let bad = Server::builder().configure(|args| args.account_id = "12".to_owned()).start().unwrap_err();
    assert_eq!(bad.to_string(), "--account-id must be 12 digits, not \"12\"");
}

#[tokio::test]
async fn drop_delivers_buffers_and_removes_a_throwaway_directory() {
    let kept = tempfile::tempdir().unwrap();
    let server = Server::builder().data_dir(kept.path().join("data")).start().unwrap();
    let s3 = common::s3_client(&server.endpoint(), true).await;
    let firehose = firehose(&server, "test", "test").await;
    s3.create_bucket().bucket("kept").send().await.unwrap();
    create_stream(&firehose, "kept", "kept").await;
    put(&firehose, "kept", "d\n").await;
    drop(server);
    // Stopping delivered the buffer, and the same directory opens again (its lock released).
    let again = Server::builder().data_dir(kept.path().join("data")).start().unwrap();
    assert_eq!(delivered(&again, "kept"), ["d\n"]);
    drop(again);

    let throwaway = Server::start().unwrap();
    let dir = throwaway.data_dir().to_path_buf();
    assert!(dir.is_dir());
    throwaway.stop();
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn a_plain_test_can_use_it() {
    let server = Server::start().unwrap();
    let answer = common::Conn::open_addr(server.addr()).request(b"GET /_firelake/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(answer.status, 200, "{}", answer.text());
}
