//! The Lambda API through aws-sdk-lambda: create a Python function from a zip, invoke
//! it (result, handler error, log tail), update its code, delete it.

mod common;

use std::io::Write;
use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, LogType, Runtime};
use common::Server;

fn python_zip(source: &str) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer.start_file("app.py", zip::write::SimpleFileOptions::default()).unwrap();
    writer.write_all(source.as_bytes()).unwrap();
    writer.finish().unwrap().into_inner()
}

/// The interpreter of the Python tests' virtualenv when there is one (it has boto3), else python3.
fn python() -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    if std::path::Path::new(venv).exists() { venv.to_owned() } else { "python3".to_owned() }
}

async fn client(server: &Server) -> aws_sdk_lambda::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(server.endpoint())
        .load()
        .await;
    let config = aws_sdk_lambda::config::Builder::from(&shared)
        .timeout_config(aws_sdk_lambda::config::timeout::TimeoutConfig::builder().operation_timeout(Duration::from_secs(60)).build())
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

#[tokio::test]
async fn python_function_through_the_rust_sdk() {
    let server = Server::start_with(&["--lambda-python", &python()]);
    let lambda = client(&server).await;
    let zip = python_zip(
        "def handler(event, context):\n    print('seen', event['n'])\n    if event.get('fail'):\n        raise KeyError('nope')\n    return {'double': event['n'] * 2}\n",
    );
    let created = lambda
        .create_function()
        .function_name("doubler")
        .runtime(Runtime::Python312)
        .role("arn:aws:iam::000000000000:role/lambda-role")
        .handler("app.handler")
        .code(FunctionCode::builder().zip_file(Blob::new(zip.clone())).build())
        .send()
        .await
        .expect("create");
    assert_eq!(created.function_arn(), Some("arn:aws:lambda:us-east-1:000000000000:function:doubler"));
    assert_eq!(created.code_size(), zip.len() as i64);
    assert_eq!(created.timeout(), Some(3));
    assert_eq!(created.state().map(|s| s.as_str()), Some("Active"));

    let invoked =
        lambda.invoke().function_name("doubler").payload(Blob::new(r#"{"n": 21}"#)).log_type(LogType::Tail).send().await.expect("invoke");
    assert_eq!(invoked.status_code(), 200);
    assert_eq!(invoked.function_error(), None);
    let payload: serde_json::Value = serde_json::from_slice(invoked.payload().unwrap().as_ref()).unwrap();
    assert_eq!(payload, serde_json::json!({"double": 42}));
    use base64::Engine;
    let log = base64::engine::general_purpose::STANDARD.decode(invoked.log_result().unwrap()).unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("seen 21") && log.contains("START RequestId:") && log.contains("REPORT RequestId:"), "{log}");

    let failed = lambda.invoke().function_name("doubler").payload(Blob::new(r#"{"n": 1, "fail": true}"#)).send().await.expect("invoke");
    assert_eq!(failed.function_error(), Some("Unhandled"));
    let document: serde_json::Value = serde_json::from_slice(failed.payload().unwrap().as_ref()).unwrap();
    assert_eq!(document["errorType"], "KeyError");
    assert!(document["stackTrace"].is_array());

    lambda
        .update_function_code()
        .function_name("doubler")
        .zip_file(Blob::new(python_zip("def handler(event, context):\n    return 'v2'\n")))
        .send()
        .await
        .expect("update code");
    let invoked = lambda.invoke().function_name("doubler").payload(Blob::new("{}")).send().await.expect("invoke");
    assert_eq!(invoked.payload().unwrap().as_ref(), br#""v2""#);

    lambda.delete_function().function_name("doubler").send().await.expect("delete");
    let err = lambda.invoke().function_name("doubler").send().await.expect_err("deleted");
    assert!(err.into_service_error().is_resource_not_found_exception());
}

#[tokio::test]
async fn unknown_functions_and_bad_input() {
    let server = Server::start();
    let lambda = client(&server).await;
    let err = lambda.get_function().function_name("nothing").send().await.expect_err("missing");
    assert!(err.into_service_error().is_resource_not_found_exception());
    let err = lambda
        .create_function()
        .function_name("bad")
        .runtime(Runtime::Python312)
        .role("arn:aws:iam::000000000000:role/r")
        .handler("app.handler")
        .code(FunctionCode::builder().zip_file(Blob::new(b"not a zip".to_vec())).build())
        .send()
        .await
        .expect_err("not a zip");
    assert!(err.into_service_error().is_invalid_parameter_value_exception());
    let listed = lambda.list_functions().send().await.expect("list");
    assert!(listed.functions().is_empty());
}
