//! The README's aws-sdk-rust example (`examples/quickstart.rs`, which the README quotes
//! whole; `tests/python/test_readme.py` checks the quote) run against a real firelake, and
//! the README's quote of `examples/rust-tests`.

mod common;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

#[tokio::test]
async fn the_readme_rust_example_runs() {
    let server = common::Server::start();
    quickstart::run(&server.endpoint()).await.expect("the example runs");
    // Run again on the same data (as a user following the README may): the bucket and
    // the stream are found and used.
    quickstart::run(&server.endpoint()).await.expect("the example runs a second time");
    assert_eq!(std::fs::read(server.data_dir.join("sd-vehicle-data/notes/hello.txt")).unwrap(), b"hello");
    assert_eq!(server.flush(Some("quickstart-stream")).status, 200);
    let s3 = server.s3().await;
    let listed = s3.list_objects_v2().bucket("sd-vehicle-data").prefix("20").send().await.unwrap();
    let [object] = listed.contents() else { panic!("one delivered object, got {listed:?}") };
    let key = object.key().unwrap();
    assert!(key.contains("/quickstart-stream-1-"), "{key}");
    let body = s3.get_object().bucket("sd-vehicle-data").key(key).send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(body.into_bytes().as_ref(), b"939ed1d1 4:25:06.000 4FTEX4944AK844294 106.94 -6.33 25\n".repeat(2));
}

/// The README's "In Rust tests" quotes `examples/rust-tests` (a workspace member, whose
/// test `cargo test --workspace` runs) whole: its manifest, its code and its test.
#[test]
fn the_readme_quotes_the_rust_test_example_whole() {
    let readme = include_str!("../README.md");
    let files = [
        ("toml", "Cargo.toml", include_str!("../examples/rust-tests/Cargo.toml")),
        ("rust", "src/lib.rs", include_str!("../examples/rust-tests/src/lib.rs")),
        ("rust", "tests/archive.rs", include_str!("../examples/rust-tests/tests/archive.rs")),
    ];
    for (lang, file, text) in files {
        assert!(readme.contains(&format!("```{lang}\n{text}```\n")), "README.md does not quote examples/rust-tests/{file} as it is");
    }
}
