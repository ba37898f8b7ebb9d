//! Kills a real firelake with SIGKILL at random moments while PutRecordBatch and
//! PutObject requests are in flight, restarts it on the same data directory, and checks
//! that every acknowledged record is delivered exactly once and every acknowledged
//! object is intact, with no temp file left behind. Rounds alternate `--durability fsync`
//! and `none`: a killed process loses nothing with either, because what is acknowledged
//! has been written to the kernel (fsync only matters to a power cut).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::{Conn, Server};
use rand::Rng;

const KILLS: usize = 20;
const STREAM: &str = "crash-stream";
const BUCKET: &str = "crash-bucket";

#[derive(Default)]
struct Acked {
    records: Vec<String>,
    /// Key to the MD5 of the bytes acknowledged last for it.
    objects: BTreeMap<String, String>,
    /// Key to the MD5s of PUTs cut off by a kill after that acknowledgement: a PUT whose
    /// answer never arrived may or may not have replaced the object, never half-way.
    unanswered: BTreeMap<String, Vec<String>>,
}

fn firehose_request(target: &str, body: &str) -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: Firehose_20150804.{target}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends one request; `None` when the server died under it.
fn try_request(server_addr: std::net::SocketAddr, request: &[u8]) -> Option<common::RawResponse> {
    let stream = std::net::TcpStream::connect(server_addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = std::io::BufReader::new(stream);
    std::io::Write::write_all(reader.get_mut(), request).ok()?;
    common::try_read_response(&mut reader, false).ok()
}

fn put_batches(addr: std::net::SocketAddr, round: usize, worker: usize, stop: &AtomicBool, acked: &Mutex<Acked>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<String> = (0..50).map(|i| format!("r-{round}-{worker}-{n}-{i}")).collect();
        n += 1;
        let records: Vec<serde_json::Value> =
            ids.iter().map(|id| serde_json::json!({"Data": base64::engine::general_purpose::STANDARD.encode(format!("{id}\n"))})).collect();
        let body = serde_json::json!({"DeliveryStreamName": STREAM, "Records": records}).to_string();
        let Some(response) = try_request(addr, &firehose_request("PutRecordBatch", &body)) else { return };
        if response.status != 200 {
            continue;
        }
        let answer: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
        let results = answer["RequestResponses"].as_array().expect("responses");
        let mut acked = acked.lock().unwrap();
        for (id, result) in ids.into_iter().zip(results) {
            if result.get("RecordId").is_some() {
                acked.records.push(id);
            }
        }
    }
}

fn put_objects(addr: std::net::SocketAddr, round: usize, stop: &AtomicBool, acked: &Mutex<Acked>) {
    let mut rng = rand::thread_rng();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        // A few keys are written again and again, so replacements are killed too.
        let key = if n % 3 == 0 { format!("shared/{}", n % 5) } else { format!("objects/{round}/{n}") };
        n += 1;
        let len = rng.gen_range(0..300_000);
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        let crc = firelake::s3::checksum::of(firelake::s3::checksum::Algorithm::Crc32, &bytes);
        let mut request =
            format!("PUT /{BUCKET}/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-amz-checksum-crc32: {crc}\r\nContent-Length: {len}\r\n\r\n")
                .into_bytes();
        request.extend_from_slice(&bytes);
        let Some(response) = try_request(addr, &request) else {
            acked.lock().unwrap().unanswered.entry(key).or_default().push(common::md5_hex(&bytes));
            return;
        };
        if response.status == 200 {
            let mut acked = acked.lock().unwrap();
            acked.unanswered.remove(&key);
            acked.objects.insert(key, common::md5_hex(&bytes));
        }
    }
}

fn delivered_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "gz") {
                let mut text = String::new();
                flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_string(&mut text).unwrap();
                lines.extend(text.lines().map(str::to_owned));
            }
        }
    }
    lines
}

#[test]
fn kill_at_random_moments_loses_and_duplicates_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut rng = rand::thread_rng();
    for round in 0..KILLS {
        let durability = if round % 2 == 0 { "fsync" } else { "none" };
        let server = Server::start_in(&data, &["--log", "error", "--durability", durability]);
        if round == 0 {
            let mut conn = Conn::open(&server);
            assert_eq!(conn.request(format!("PUT /{BUCKET} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes()).status, 200);
            let create = serde_json::json!({
                "DeliveryStreamName": STREAM,
                "ExtendedS3DestinationConfiguration": {
                    "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": format!("arn:aws:s3:::{BUCKET}"),
                    "CompressionFormat": "GZIP", "Prefix": "delivered/", "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}
                }
            });
            assert_eq!(conn.request(&firehose_request("CreateDeliveryStream", &create.to_string())).status, 200);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for worker in 0..2 {
            let (stop, acked, addr) = (stop.clone(), acked.clone(), server.addr);
            workers.push(std::thread::spawn(move || put_batches(addr, round, worker, &stop, &acked)));
        }
        let (stop2, acked2, addr) = (stop.clone(), acked.clone(), server.addr);
        workers.push(std::thread::spawn(move || put_objects(addr, round, &stop2, &acked2)));
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..600)));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().unwrap();
        }
    }
    let server = Server::start_in(&data, &["--log", "error"]);
    assert_eq!(std::fs::read_dir(server.data_dir.join(".firelake/tmp")).unwrap().count(), 0, "temp files were left behind");
    let flushed = server.flush(Some(STREAM));
    assert_eq!(flushed.status, 200, "{}", flushed.text());
    let acked = acked.lock().unwrap();

    let lines = delivered_lines(&server.data_dir.join(BUCKET).join("delivered"));
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in &lines {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "delivered more than once: {:?}", &duplicated[..duplicated.len().min(5)]);
    let lost: Vec<&String> = acked.records.iter().filter(|id| !counts.contains_key(id.as_str())).collect();
    assert!(lost.is_empty(), "{} acknowledged records lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);

    let mut conn = Conn::open(&server);
    for (key, md5) in &acked.objects {
        let response = conn.request(format!("GET /{BUCKET}/{key} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(response.status, 200, "acknowledged object {key} is missing");
        let held = common::md5_hex(&response.body);
        let unanswered = acked.unanswered.get(key).map(Vec::as_slice).unwrap_or_default();
        assert!(
            &held == md5 || unanswered.contains(&held),
            "{key} holds neither the bytes last acknowledged nor those of a PUT cut off since"
        );
        assert_eq!(response.header("etag"), Some(format!("\"{held}\"").as_str()), "{key}: ETag disagrees with the bytes");
    }
    // Every object, acknowledged or not, has bytes that agree with its ETag.
    let listing = conn.request(format!("GET /{BUCKET}?list-type=2&prefix=objects/ HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).text();
    let mut checked = 0;
    for key in listing.split("<Key>").skip(1).map(|s| &s[..s.find("</Key>").unwrap()]) {
        let response = conn.request(format!("GET /{BUCKET}/{key} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(response.header("etag"), Some(format!("\"{}\"", common::md5_hex(&response.body)).as_str()), "{key} is torn");
        checked += 1;
    }
    eprintln!(
        "crash test: survived {KILLS} kills; {} acknowledged records delivered exactly once ({} lines delivered); {} acknowledged objects and {checked} listed objects intact",
        acked.records.len(),
        lines.len(),
        acked.objects.len()
    );
    assert!(acked.records.len() > 1000 && acked.objects.len() > 20, "too little load to prove anything");
}

const PIPELINE_STREAM: &str = "crash-partitioned";
const BACKUP_BUCKET: &str = "crash-backup";

/// Put records of two JSON sub-records each (de-aggregated, then partitioned by `k`),
/// one in ten not JSON (to error output); answers the ids acknowledged.
fn put_partitioned(addr: std::net::SocketAddr, round: usize, worker: usize, stop: &AtomicBool, acked: &Mutex<Vec<String>>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<String> = (0..40).map(|i| format!("p-{round}-{worker}-{n}-{i}")).collect();
        n += 1;
        let records: Vec<serde_json::Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let data = if i % 10 == 9 {
                    format!("bad {id}\n")
                } else {
                    format!("{{\"k\":\"p{}\",\"id\":\"{id}-a\"}}{{\"k\":\"p{}\",\"id\":\"{id}-b\"}}\n", i % 17, (i + 5) % 17)
                };
                serde_json::json!({"Data": base64::engine::general_purpose::STANDARD.encode(data)})
            })
            .collect();
        let body = serde_json::json!({"DeliveryStreamName": PIPELINE_STREAM, "Records": records}).to_string();
        let Some(response) = try_request(addr, &firehose_request("PutRecordBatch", &body)) else { return };
        if response.status != 200 {
            continue;
        }
        let answer: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
        let results = answer["RequestResponses"].as_array().expect("responses");
        let mut acked = acked.lock().unwrap();
        for (id, result) in ids.into_iter().zip(results) {
            if result.get("RecordId").is_some() {
                acked.push(id);
            }
        }
    }
}

/// Every file under `dir`, with its path relative to `dir`.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                files.push((relative, std::fs::read(&path).unwrap()));
            }
        }
    }
    files
}

/// A partitioned stream with de-aggregation, error output and S3 backup, killed while
/// buffering and delivering: every acknowledged record's outputs are delivered exactly
/// once, each sub-record in the object of its own partition, each bad record once as an
/// error document, each record once in the backup.
#[test]
fn kills_during_partitioned_delivery_lose_and_duplicate_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut rng = rand::thread_rng();
    for round in 0..KILLS / 2 {
        let durability = if round % 2 == 0 { "fsync" } else { "none" };
        let server = Server::start_in(&data, &["--log", "error", "--durability", durability, "--buffer-interval-cap", "0.1"]);
        if round == 0 {
            let mut conn = Conn::open(&server);
            for bucket in [BUCKET, BACKUP_BUCKET] {
                assert_eq!(conn.request(format!("PUT /{bucket} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes()).status, 200);
            }
            let processors = serde_json::json!([
                {"Type": "RecordDeAggregation", "Parameters": [{"ParameterName": "SubRecordType", "ParameterValue": "JSON"}]},
                {"Type": "MetadataExtraction", "Parameters": [
                    {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{k: .k}"},
                    {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
                {"Type": "AppendDelimiterToRecord"}
            ]);
            let create = serde_json::json!({
                "DeliveryStreamName": PIPELINE_STREAM,
                "ExtendedS3DestinationConfiguration": {
                    "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": format!("arn:aws:s3:::{BUCKET}"),
                    "Prefix": "parts/k=!{partitionKeyFromQuery:k}/", "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
                    "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
                    "DynamicPartitioningConfiguration": {"Enabled": true},
                    "ProcessingConfiguration": {"Enabled": true, "Processors": processors},
                    "S3BackupMode": "Enabled",
                    "S3BackupConfiguration": {"RoleARN": "arn:aws:iam::000000000000:role/firehose",
                        "BucketARN": format!("arn:aws:s3:::{BACKUP_BUCKET}"), "Prefix": "raw/"}
                }
            });
            let created = conn.request(&firehose_request("CreateDeliveryStream", &create.to_string()));
            assert_eq!(created.status, 200, "{}", created.text());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                let (stop, acked, addr) = (stop.clone(), acked.clone(), server.addr);
                std::thread::spawn(move || put_partitioned(addr, round, worker, &stop, &acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..700)));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().unwrap();
        }
    }
    let server = Server::start_in(&data, &["--log", "error"]);
    let flushed = server.flush(Some(PIPELINE_STREAM));
    assert_eq!(flushed.status, 200, "{}", flushed.text());
    let acked = acked.lock().unwrap();

    let mut sub_records: HashMap<String, usize> = HashMap::new();
    let mut errors: HashMap<String, usize> = HashMap::new();
    let (mut data_objects, mut error_objects) = (0, 0);
    for (key, bytes) in files_under(&server.data_dir.join(BUCKET)) {
        let text = String::from_utf8(bytes).expect("delivered text");
        if let Some(rest) = key.strip_prefix("parts/k=") {
            data_objects += 1;
            let partition = &rest[..rest.find('/').unwrap()];
            for line in text.lines() {
                let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("{key} is torn: {line:?}"));
                assert_eq!(value["k"], partition, "{key} holds a record of another partition");
                *sub_records.entry(value["id"].as_str().unwrap().to_owned()).or_default() += 1;
            }
        } else if key.starts_with("errors/processing-failed/") {
            error_objects += 1;
            for line in text.lines() {
                let doc: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("{key} is torn: {line:?}"));
                let raw = base64::engine::general_purpose::STANDARD.decode(doc["rawData"].as_str().unwrap()).unwrap();
                let raw = String::from_utf8(raw).unwrap();
                *errors.entry(raw.trim_end().trim_start_matches("bad ").to_owned()).or_default() += 1;
            }
        } else {
            panic!("unexpected object {key}");
        }
    }
    let mut backed_up: HashMap<String, usize> = HashMap::new();
    for (key, bytes) in files_under(&server.data_dir.join(BACKUP_BUCKET)) {
        assert!(key.starts_with("raw/"), "{key}");
        for line in String::from_utf8(bytes).unwrap().lines() {
            let id = if let Some(bad) = line.strip_prefix("bad ") {
                bad.to_owned()
            } else {
                let first: serde_json::Value =
                    serde_json::Deserializer::from_str(line).into_iter().next().unwrap().unwrap_or_else(|_| panic!("{key} is torn"));
                first["id"].as_str().unwrap().trim_end_matches("-a").to_owned()
            };
            *backed_up.entry(id).or_default() += 1;
        }
    }
    let many = |counts: &HashMap<String, usize>| counts.values().filter(|n| **n > 1).count();
    assert_eq!((many(&sub_records), many(&errors), many(&backed_up)), (0, 0, 0), "something was delivered twice");
    for id in acked.iter() {
        let bad = id.ends_with("-9") || id.ends_with("-19") || id.ends_with("-29") || id.ends_with("-39");
        if bad {
            assert!(errors.contains_key(id), "the error document of acknowledged {id} is lost");
        } else {
            for half in ["a", "b"] {
                assert!(sub_records.contains_key(&format!("{id}-{half}")), "acknowledged sub-record {id}-{half} is lost");
            }
        }
        assert!(backed_up.contains_key(id), "the backup of acknowledged {id} is lost");
    }
    eprintln!(
        "partitioned crash test: survived {} kills; {} acknowledged records: {} sub-records in {data_objects} data objects, {} error documents in {error_objects} error objects, {} backed up, each exactly once",
        KILLS / 2,
        acked.len(),
        sub_records.len(),
        errors.len(),
        backed_up.len()
    );
    assert!(acked.len() > 1000 && data_objects > 17, "too little load to prove anything");
}
