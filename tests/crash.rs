//! Kills a real firelake with SIGKILL at random moments while PutRecordBatch and
//! PutObject requests (also versioned PUTs and deletes) are in flight, restarts it on the same data directory, and checks
//! that every acknowledged record is delivered exactly once and that every object holds
//! exactly the bytes one PUT sent for its key, judged by what this test sent, never by
//! what the server reports (its ETag is derived from the bytes on disk when the metadata
//! does not match them, so "ETag == md5(body)" holds for a torn file too). Rounds
//! alternate `--durability fsync` and `none`: a killed process loses nothing with either,
//! because what is acknowledged has been written to the kernel (fsync only matters to a
//! power cut).
//!
//! That these checks can fail is shown with a test-only fault that publishes files before
//! all their bytes are written (`src/store/atomic.rs`):
//! `FIRELAKE_FAULT=torn-publish cargo test --features fault-injection --test crash` fails.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::{Conn, Server};
use rand::Rng;

const KILLS: usize = 20;
const STREAM: &str = "crash-stream";
const BUCKET: &str = "crash-bucket";
/// Keys listed per page: small, so that the check walks many pages.
const LIST_PAGE_KEYS: usize = 100;
/// Temp files a kill can leave: the one PutObject in flight and the stream's deliveries
/// in flight, each its data and, where xattrs are refused, its metadata file. Every other
/// staged file was renamed into place or deleted by its guard.
const TEMPS_AT_KILL_MAX: usize = 2 * (1 + firelake::firehose::delivery::WRITES_IN_FLIGHT_MAX);

#[derive(Default)]
struct Acked {
    records: Vec<String>,
    /// Key to the MD5 of the bytes acknowledged last for it.
    objects: BTreeMap<String, String>,
    /// Key to the MD5s of PUTs cut off by a kill after that acknowledgement: a PUT whose
    /// answer never arrived may or may not have replaced the object, never half-way.
    unanswered: BTreeMap<String, Vec<String>>,
    /// Key to the MD5 of every body a PUT sent for it, answered or not: an object may hold
    /// only one of these.
    sent: BTreeMap<String, BTreeSet<String>>,
    /// The bodies of the PUTs of this round that got no answer: what a temp file left by
    /// the kill may hold the beginning of.
    cut_off: Vec<Vec<u8>>,
    /// PUTs refused for a wrong checksum: each staged a temp file that its guard must delete.
    refused: usize,
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

/// Sends PutRecordBatch calls of `batch` records into `stream` until `stop` (or until
/// the server dies under one), every `pause`; record `i` of a call holds `data(i, id)`
/// for its id `<label>-<n>-<i>`. The ids acknowledged by each call go to `acked`.
fn put_until_stopped(
    addr: std::net::SocketAddr,
    stream: &str,
    label: &str,
    batch: usize,
    pause: Duration,
    stop: &AtomicBool,
    data: impl Fn(usize, &str) -> String,
    mut acked: impl FnMut(Vec<String>),
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<String> = (0..batch).map(|i| format!("{label}-{n}-{i}")).collect();
        n += 1;
        let records: Vec<serde_json::Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| serde_json::json!({"Data": base64::engine::general_purpose::STANDARD.encode(data(i, id))}))
            .collect();
        let body = serde_json::json!({"DeliveryStreamName": stream, "Records": records}).to_string();
        std::thread::sleep(pause);
        let Some(response) = try_request(addr, &firehose_request("PutRecordBatch", &body)) else { return };
        if response.status != 200 {
            continue;
        }
        let answer: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
        let results = answer["RequestResponses"].as_array().expect("responses");
        acked(ids.into_iter().zip(results).filter(|(_, result)| result.get("RecordId").is_some()).map(|(id, _)| id).collect());
    }
}

fn put_batches(addr: std::net::SocketAddr, round: usize, worker: usize, stop: &AtomicBool, acked: &Mutex<Acked>) {
    let label = format!("r-{round}-{worker}");
    let line = |_: usize, id: &str| format!("{id}\n");
    put_until_stopped(addr, STREAM, &label, 50, Duration::ZERO, stop, line, |ids| acked.lock().unwrap().records.extend(ids));
}

fn put_objects(addr: std::net::SocketAddr, round: usize, stop: &AtomicBool, acked: &Mutex<Acked>) {
    let mut rng = rand::thread_rng();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        // A few keys are written again and again, so replacements are killed too.
        let key = if n % 3 == 0 { format!("shared/{}", n % 5) } else { format!("objects/{round}/{n}") };
        // Every fourth PUT carries a wrong checksum: refused, and never to be published.
        let refuse = n % 4 == 1;
        let key = if refuse { format!("refused/{round}/{n}") } else { key };
        n += 1;
        // Refused bodies are small: they are there to exercise the guard, not to load the disk.
        let len = rng.gen_range(0..if refuse { 16_384 } else { 300_000 });
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        let crc = firelake::s3::checksum::of(firelake::s3::checksum::Algorithm::Crc32, if refuse { b"other" } else { &bytes });
        let mut request =
            format!("PUT /{BUCKET}/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-amz-checksum-crc32: {crc}\r\nContent-Length: {len}\r\n\r\n")
                .into_bytes();
        request.extend_from_slice(&bytes);
        let md5 = common::md5_hex(&bytes);
        if !refuse {
            // Recorded before sending: the server may publish it and die before answering.
            acked.lock().unwrap().sent.entry(key.clone()).or_default().insert(md5.clone());
        }
        let Some(response) = try_request(addr, &request) else {
            let mut acked = acked.lock().unwrap();
            if !refuse {
                acked.unanswered.entry(key).or_default().push(md5);
            }
            acked.cut_off.push(bytes);
            return;
        };
        let mut acked = acked.lock().unwrap();
        if refuse {
            assert_eq!(response.status, 400, "a PUT with a wrong checksum was not refused: {}", response.text());
            acked.refused += 1;
        } else if response.status == 200 {
            acked.unanswered.remove(&key);
            acked.objects.insert(key, md5);
        }
    }
}

/// What the kill left in `.firelake/tmp`, checked before a restart sweeps it. A temp file
/// of a write the kill cut off legitimately remains; so each must be a staging file that
/// was never published: at most [`TEMPS_AT_KILL_MAX`] of them (what can be in flight;
/// the bound was 4 until deliveries overlapped, and a kill with 8 left was then seen),
/// each holding the beginning of a PUT cut off in this round, a gzip delivery, a
/// metadata document, or nothing yet. A temp file holding anything else (an acknowledged
/// or refused body) was staged by a write that finished and should have taken it away.
fn check_temps_at_kill(data: &Path, round: usize, cut_off: &[Vec<u8>]) -> Vec<PathBuf> {
    let tmp = data.join(".firelake/tmp");
    let mut temps = Vec::new();
    for entry in std::fs::read_dir(&tmp).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let cut_off_put = cut_off.iter().any(|body| body.starts_with(&bytes));
        let delivery = bytes.starts_with(&[0x1f, 0x8b, 0x08]) || [0x1f, 0x8b, 0x08].starts_with(&bytes);
        let metadata = bytes.starts_with(b"{\"") || b"{\"".starts_with(&bytes);
        assert!(
            bytes.is_empty() || cut_off_put || delivery || metadata,
            "round {round}: the temp file {} ({} bytes) belongs to no write the kill cut off",
            path.display(),
            bytes.len()
        );
        temps.push(path);
    }
    assert!(temps.len() <= TEMPS_AT_KILL_MAX, "round {round}: {} temp files left by one kill, more than could be in flight", temps.len());
    temps
}

/// Walks every page of a ListObjectsV2 of the whole bucket; answers the keys and the
/// number of pages.
fn list_all(conn: &mut Conn) -> (Vec<String>, usize) {
    let (mut keys, mut pages) = (Vec::new(), 0);
    let mut token: Option<String> = None;
    loop {
        let continuation = token.as_ref().map(|t| format!("&continuation-token={t}")).unwrap_or_default();
        let response = conn
            .request(format!("GET /{BUCKET}?list-type=2&max-keys={LIST_PAGE_KEYS}{continuation} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(response.status, 200, "{}", response.text());
        let page = response.text();
        let before = keys.len();
        keys.extend(page.split("<Key>").skip(1).map(|s| s[..s.find("</Key>").unwrap()].to_owned()));
        assert!(keys.len() - before <= LIST_PAGE_KEYS, "a page longer than max-keys");
        pages += 1;
        token = page.split("<NextContinuationToken>").nth(1).map(|s| s[..s.find("</NextContinuationToken>").unwrap()].to_owned());
        if page.contains("<IsTruncated>false</IsTruncated>") {
            assert!(token.is_none(), "the last page has a continuation token");
            break;
        }
        assert!(token.is_some(), "a truncated page without a continuation token");
    }
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "the pages are not in key order or repeat a key");
    (keys, pages)
}

/// The lines of every gzip object under `dir`; an object that does not decompress is
/// reported in `damaged` (torn, as by the fault of test.sh).
fn delivered_lines(dir: &Path, damaged: &mut Vec<String>) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, bytes) in files_under(dir) {
        if path.ends_with(".gz") {
            let mut text = String::new();
            match flate2::read::GzDecoder::new(bytes.as_slice()).read_to_string(&mut text) {
                Ok(_) => lines.extend(text.lines().map(str::to_owned)),
                Err(err) => damaged.push(format!("{path}: delivered, does not decompress ({err}): torn")),
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
    let (mut temps_at_kills, mut temps_at_last_kill) = (0, Vec::new());
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
        // Before the next start sweeps them.
        let cut_off = std::mem::take(&mut acked.lock().unwrap().cut_off);
        temps_at_last_kill = check_temps_at_kill(&data, round, &cut_off);
        temps_at_kills += temps_at_last_kill.len();
    }
    let acked = acked.lock().unwrap();
    // Objects that do not hold what they should; reported together at the end, so that a
    // failure shows every kind of damage at once.
    let mut damaged: Vec<String> = Vec::new();
    // Before start-up repairs anything: every acknowledged object is in place on disk with
    // the bytes of a PUT sent for it (its keys are plain paths, see README "How objects
    // are stored").
    for (key, md5) in &acked.objects {
        let Ok(bytes) = std::fs::read(data.join(BUCKET).join(key)) else {
            damaged.push(format!("{key}: acknowledged, missing on disk after the kills"));
            continue;
        };
        let held = common::md5_hex(&bytes);
        let unanswered = acked.unanswered.get(key).map(Vec::as_slice).unwrap_or_default();
        if &held != md5 && !unanswered.contains(&held) {
            damaged.push(format!("{key}: on disk after the kills, {} bytes that no PUT sent (acknowledged before)", bytes.len()));
        }
    }

    let server = Server::start_in(&data, &["--log", "error"]);
    // The sweep, right after start: a replayed delivery may already be staging a new temp
    // file, so what must be gone is what the last kill left.
    let unswept: Vec<_> = temps_at_last_kill.iter().filter(|path| path.exists()).collect();
    assert!(unswept.is_empty(), "start-up did not sweep the temp files {unswept:?}");
    let flushed = server.flush(Some(STREAM));
    assert_eq!(flushed.status, 200, "{}", flushed.text());

    let lines = delivered_lines(&server.data_dir.join(BUCKET).join("delivered"), &mut damaged);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in &lines {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    // Asserted after the damage, which a torn delivery also shows as lost records.
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let lost: Vec<&String> = acked.records.iter().filter(|id| !counts.contains_key(id.as_str())).collect();

    let mut conn = Conn::open(&server);
    let (listed, pages) = list_all(&mut conn);
    let listed_set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    for key in acked.objects.keys() {
        if !listed_set.contains(key.as_str()) {
            damaged.push(format!("{key}: acknowledged, not listed"));
        }
    }
    // Every listed object, acknowledged or not, holds exactly the bytes of one PUT sent for
    // its key: never a prefix, a mix, or bytes nobody sent (a refused PUT's, say).
    let (mut checked, mut never_acked) = (0, 0);
    for key in listed.iter().filter(|k| !k.starts_with("delivered/")) {
        checked += 1;
        let Some(sent) = acked.sent.get(key) else {
            damaged.push(format!("{key}: listed, but no PUT that may be published was sent for it"));
            continue;
        };
        let response = conn.request(format!("GET /{BUCKET}/{key} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        if response.status != 200 {
            damaged.push(format!("{key}: listed, GET answers {}", response.status));
            continue;
        }
        let held = common::md5_hex(&response.body);
        let acknowledged = acked.objects.get(key);
        never_acked += usize::from(acknowledged.is_none());
        if !sent.contains(&held) {
            let how = if acknowledged.is_some() { "acknowledged before" } else { "never acknowledged" };
            damaged.push(format!("{key}: served {} bytes that no PUT sent for it ({how}): torn", response.body.len()));
        } else if let Some(md5) = acknowledged {
            let unanswered = acked.unanswered.get(key).map(Vec::as_slice).unwrap_or_default();
            if &held != md5 && !unanswered.contains(&held) {
                damaged.push(format!("{key}: served the bytes of a PUT older than the last acknowledged one"));
            }
        }
        // Secondary: the ETag agrees (it would for a torn file too, hence the checks above).
        if response.header("etag") != Some(format!("\"{held}\"").as_str()) {
            damaged.push(format!("{key}: ETag {:?} disagrees with the bytes", response.header("etag")));
        }
    }
    // Nothing is in flight now (the flush delivered everything): no write left a temp file.
    let temps: Vec<_> = std::fs::read_dir(server.data_dir.join(".firelake/tmp")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(temps.is_empty(), "temp files remain with no write in flight: {temps:?}");
    assert!(damaged.is_empty(), "{} damaged objects:\n{}", damaged.len(), damaged.join("\n"));
    assert!(duplicated.is_empty(), "delivered more than once: {:?}", &duplicated[..duplicated.len().min(5)]);
    assert!(lost.is_empty(), "{} acknowledged records lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    eprintln!(
        "crash test: survived {KILLS} kills; {} acknowledged records delivered exactly once ({} lines delivered: the \
         rest are records of puts cut off by a kill after they were journaled, delivered once, never acknowledged); \
         {checked} objects listed over {pages} pages, each holding the bytes of a PUT sent for it ({} acknowledged, \
         {never_acked} from PUTs cut off before their answer); {} PUTs refused; {temps_at_kills} temp files left by the kills, \
         each a never-published staging file, swept at start",
        acked.records.len(),
        lines.len(),
        acked.objects.len(),
        acked.refused,
    );
    assert!(acked.records.len() > 1000 && acked.objects.len() > 20 && acked.refused > 5, "too little load to prove anything");
    assert!(pages > 1, "too few objects to walk more than one page");
}

const PIPELINE_STREAM: &str = "crash-partitioned";
const BACKUP_BUCKET: &str = "crash-backup";

/// Put records of two JSON sub-records each (de-aggregated, then partitioned by `k`),
/// one in ten not JSON (to error output); answers the ids acknowledged.
fn put_partitioned(addr: std::net::SocketAddr, round: usize, worker: usize, stop: &AtomicBool, acked: &Mutex<Vec<String>>) {
    let label = format!("p-{round}-{worker}");
    let record = |i: usize, id: &str| {
        if i % 10 == 9 {
            format!("bad {id}\n")
        } else {
            format!("{{\"k\":\"p{}\",\"id\":\"{id}-a\"}}{{\"k\":\"p{}\",\"id\":\"{id}-b\"}}\n", i % 17, (i + 5) % 17)
        }
    };
    put_until_stopped(addr, PIPELINE_STREAM, &label, 40, Duration::ZERO, stop, record, |ids| acked.lock().unwrap().extend(ids));
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
        "partitioned crash test: survived {} kills; {} acknowledged records: {} sub-records in {data_objects} data objects, {} error documents in {error_objects} error objects, {} backed up, each exactly once (counts above the acknowledged are records of puts cut off by a kill after they were journaled)",
        KILLS / 2,
        acked.len(),
        sub_records.len(),
        errors.len(),
        backed_up.len()
    );
    assert!(acked.len() > 1000 && data_objects > 17, "too little load to prove anything");
}

const LAMBDA_STREAM: &str = "crash-lambda";
/// Invocations of this firelake the handler must have begun before a round's kill comes:
/// its (cold-started) workers are then busy, several batches at a time.
const LAMBDA_INVOCATIONS_BEFORE_KILL: usize = 6;

/// Transforms or drops each record; first writes down, in a file of its own, which
/// firelake invoked it (its parent process) and which records it was given, so that the
/// test sees which invocations a kill cut off (their records are invoked again after the
/// restart); sleeps a random while, so that batches in flight together end out of order.
const TRANSFORM: &str = r#"
import base64, os, random, time, uuid

PARENT = os.getppid()

def handler(event, context):
    ids = [base64.b64decode(r["data"]).decode().rstrip() for r in event["records"]]
    path = os.path.join(os.environ["INVOCATIONS"], f"{PARENT}-{uuid.uuid4()}")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(ids))
    os.rename(path + ".tmp", path)
    time.sleep(random.uniform(0.0, 0.1))
    out = []
    for record, data in zip(event["records"], ids):
        if data.endswith("7"):
            out.append({"recordId": record["recordId"], "result": "Dropped"})
        else:
            out.append({"recordId": record["recordId"], "result": "Ok", "data": base64.b64encode(("T:" + data + "\n").encode()).decode()})
    return {"records": out}
"#;

fn put_for_lambda(addr: std::net::SocketAddr, round: usize, worker: usize, stop: &AtomicBool, acked: &Mutex<Vec<String>>) {
    let label = format!("l-{round}-{worker}");
    let line = |_: usize, id: &str| format!("{id}\n");
    // Paced: the function (a debug firelake feeding a Python process) is slower than puts.
    let pause = Duration::from_millis(5);
    put_until_stopped(addr, LAMBDA_STREAM, &label, 50, pause, stop, line, |ids| acked.lock().unwrap().extend(ids));
}

/// The invocations the handler wrote down: (the firelake that invoked it, its records).
fn invocations(dir: &Path) -> Vec<(u32, Vec<String>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            continue;
        }
        let parent: u32 = name.split('-').next().unwrap().parse().unwrap();
        let ids = std::fs::read_to_string(&path).unwrap().lines().map(str::to_owned).collect();
        out.push((parent, ids));
    }
    out
}

/// A stream whose records a real Python Lambda (run by firelake, up to 4 batches at once)
/// transforms or drops, killed while batches are being invoked, journaled and delivered:
/// every acknowledged record is delivered exactly once, transformed, unless the function
/// dropped it; each object holds its records in the order they were put; and some kill
/// cut off several invocations at once (batches in flight together).
#[test]
fn kills_while_a_lambda_transforms_lose_and_duplicate_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let code = temp.path().join("transform");
    let seen = temp.path().join("invocations");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::create_dir_all(&seen).unwrap();
    std::fs::write(code.join("transform.py"), TRANSFORM).unwrap();
    let init = temp.path().join("init.json");
    let init_json = serde_json::json!({
        "buckets": [BUCKET],
        "functions": [{"name": "transform", "runtime": "python3.12", "handler": "transform.handler", "code": "transform",
                       "timeout": 30, "environment": {"INVOCATIONS": seen.to_string_lossy()}}],
        "delivery_streams": [{
            "DeliveryStreamName": LAMBDA_STREAM,
            "ExtendedS3DestinationConfiguration": {
                "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": format!("arn:aws:s3:::{BUCKET}"),
                // Interval 0: every Lambda batch's output is sealed and written at once, so
                // kills land among seals, object writes (several at a time) and invocations.
                "Prefix": "lambda/", "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
                "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:us-east-1:000000000000:function:transform"},
                    {"ParameterName": "BufferSizeInMBs", "ParameterValue": "0.2"},
                    {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "0"}]}]}
            }
        }]
    });
    std::fs::write(&init, init_json.to_string()).unwrap();
    let init = init.to_string_lossy().into_owned();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut rng = rand::thread_rng();
    // The firelakes in the order they ran.
    let mut pids = Vec::new();
    for round in 0..KILLS / 2 {
        let durability = if round % 2 == 0 { "fsync" } else { "none" };
        let server = Server::start_in(
            &data,
            &["--log", "error", "--durability", durability, "--buffer-interval-cap", "0.1", "--lambda-workers-max", "4", "--init", &init],
        );
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                let (stop, acked, addr) = (stop.clone(), acked.clone(), server.addr);
                std::thread::spawn(move || put_for_lambda(addr, round, worker, &stop, &acked))
            })
            .collect();
        // Workers start cold (a Python process each): the kill waits until they are at work.
        let pid = server.pid();
        pids.push(pid);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while invocations(&seen).iter().filter(|(parent, _)| *parent == pid).count() < LAMBDA_INVOCATIONS_BEFORE_KILL
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().unwrap();
        }
    }
    let server = Server::start_in(&data, &["--log", "error", "--init", &init]);
    pids.push(server.pid());
    // The backlog of every round goes through the function now: a flush may take a while.
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let flush = format!("POST /_firelake/flush?stream={LAMBDA_STREAM} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    std::io::Write::write_all(reader.get_mut(), flush.as_bytes()).unwrap();
    let flushed = common::try_read_response(&mut reader, false).expect("the flush answers");
    assert_eq!(flushed.status, 200, "{}", flushed.text());
    let acked = acked.lock().unwrap();
    let mut delivered: HashMap<String, usize> = HashMap::new();
    let mut objects = 0;
    for (key, bytes) in files_under(&server.data_dir.join(BUCKET).join("lambda")) {
        objects += 1;
        // The records of one writer were put in order (`l-<round>-<worker>-<call>-<i>`).
        let mut last: HashMap<String, (u64, u64)> = HashMap::new();
        for line in String::from_utf8(bytes).unwrap().lines() {
            let id = line.strip_prefix("T:").unwrap_or_else(|| panic!("{key} holds a line the Lambda did not make: {line:?}"));
            *delivered.entry(id.to_owned()).or_default() += 1;
            let parts: Vec<&str> = id.split('-').collect();
            let (writer, at) = (parts[..3].join("-"), (parts[3].parse().unwrap(), parts[4].parse().unwrap()));
            if let Some(before) = last.insert(writer, at) {
                assert!(before < at, "{key} holds {id} after a record put later ({before:?})");
            }
        }
    }
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(!delivered.keys().any(|id| id.ends_with('7')), "a record the Lambda dropped was delivered");
    let lost: Vec<&String> = acked.iter().filter(|id| !id.ends_with('7') && !delivered.contains_key(*id)).take(5).collect();
    assert!(lost.is_empty(), "acknowledged records lost: {lost:?}");
    let kept = acked.iter().filter(|id| !id.ends_with('7')).count();
    // An invocation whose records a later firelake invoked again was cut off by its
    // firelake's kill before its answer was journaled; count them per kill.
    let run_of = |pid: u32| pids.iter().position(|p| *p == pid).unwrap_or_else(|| panic!("an invocation by an unknown parent {pid}"));
    let invoked: Vec<(usize, Vec<String>)> = invocations(&seen).into_iter().map(|(parent, ids)| (run_of(parent), ids)).collect();
    let mut last_invoked: HashMap<&str, usize> = HashMap::new();
    for (run, ids) in &invoked {
        for id in ids {
            let last = last_invoked.entry(id.as_str()).or_default();
            *last = (*last).max(*run);
        }
    }
    let mut cut_off: BTreeMap<usize, usize> = BTreeMap::new();
    for (run, ids) in &invoked {
        if ids.iter().any(|id| last_invoked[id.as_str()] > *run) {
            *cut_off.entry(*run).or_default() += 1;
        }
    }
    let most_at_once = cut_off.values().copied().max().unwrap_or(0);
    eprintln!(
        "lambda crash test: survived {} kills; {} acknowledged records, {kept} delivered transformed exactly once in {objects} objects, the rest dropped by the function; {} invocations, cut off by the kills: {:?} (at most {most_at_once} by one kill)",
        KILLS / 2,
        acked.len(),
        invoked.len(),
        cut_off.values().collect::<Vec<_>>()
    );
    // Objects sealed during the rounds are few when the machine is loaded (the function
    // answers slowly, and the final flush seals the backlog in 1 MiB objects): more than
    // two still shows seals from several moments.
    assert!(acked.len() > 1000 && objects > 2, "too little load to prove anything");
    assert!(most_at_once >= 2, "no kill caught two Lambda batches in flight: {cut_off:?}");
    assert!(most_at_once <= 4, "more Lambda batches in flight than --lambda-workers-max: {cut_off:?}");
}

const VERSIONED_BUCKET: &str = "crash-versions";

/// What the versioned round's PUTs and deletes were answered.
#[derive(Default)]
struct AckedVersions {
    /// (key, version id) to the MD5 of the bytes an answered PUT stored as that version.
    versions: BTreeMap<(String, String), String>,
    /// (key, version id) of the delete markers answered deletes added.
    markers: BTreeSet<(String, String)>,
    /// Key to the MD5 of every body a PUT sent for it: any version may hold only one.
    sent: BTreeMap<String, BTreeSet<String>>,
}

/// PUTs and deletes of a few keys of a versioned bucket until the server dies.
fn put_versions(addr: std::net::SocketAddr, stop: &AtomicBool, acked: &Mutex<AckedVersions>) {
    let mut rng = rand::thread_rng();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("v/{}", n % 4);
        n += 1;
        if n.is_multiple_of(5) {
            let Some(response) = try_request(addr, format!("DELETE /{VERSIONED_BUCKET}/{key} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            else {
                return;
            };
            assert_eq!(response.status, 204, "{}", response.text());
            let id = response.header("x-amz-version-id").expect("a delete marker's id").to_owned();
            acked.lock().unwrap().markers.insert((key, id));
            continue;
        }
        let mut bytes = vec![0u8; rng.gen_range(0..200_000)];
        rng.fill(&mut bytes[..]);
        let md5 = common::md5_hex(&bytes);
        acked.lock().unwrap().sent.entry(key.clone()).or_default().insert(md5.clone());
        let mut request =
            format!("PUT /{VERSIONED_BUCKET}/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", bytes.len()).into_bytes();
        request.extend_from_slice(&bytes);
        let Some(response) = try_request(addr, &request) else { return };
        assert_eq!(response.status, 200, "{}", response.text());
        let id = response.header("x-amz-version-id").expect("a version id").to_owned();
        acked.lock().unwrap().versions.insert((key, id), md5);
    }
}

/// Every (key, version id, is a marker) ListObjectVersions shows, walked page by page.
fn list_versions(conn: &mut Conn) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let mut markers = String::new();
    loop {
        let response =
            conn.request(format!("GET /{VERSIONED_BUCKET}?versions&max-keys=50{markers} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(response.status, 200, "{}", response.text());
        let page = response.text();
        let field = |entry: &str, name: &str| entry.split(&format!("<{name}>")).nth(1).map(|s| s[..s.find('<').unwrap()].to_owned());
        for (element, marker) in [("<Version>", false), ("<DeleteMarker>", true)] {
            for entry in page.split(element).skip(1) {
                out.push((field(entry, "Key").unwrap(), field(entry, "VersionId").unwrap(), marker));
            }
        }
        if page.contains("<IsTruncated>false</IsTruncated>") {
            break;
        }
        let (key, id) = (field(&page, "NextKeyMarker").unwrap(), field(&page, "NextVersionIdMarker").unwrap());
        markers = format!("&key-marker={key}&version-id-marker={id}");
    }
    out
}

#[test]
fn kills_during_versioned_puts_and_deletes_lose_no_version() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let acked = Arc::new(Mutex::new(AckedVersions::default()));
    let mut rng = rand::thread_rng();
    for round in 0..10 {
        let durability = if round % 2 == 0 { "fsync" } else { "none" };
        let server = Server::start_in(&data, &["--log", "error", "--durability", durability]);
        if round == 0 {
            let mut conn = Conn::open(&server);
            assert_eq!(
                conn.request(format!("PUT /{VERSIONED_BUCKET} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes()).status,
                200
            );
            let body = "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
            let md5 = base64::engine::general_purpose::STANDARD.encode(<md5::Md5 as md5::Digest>::digest(body));
            let request = format!(
                "PUT /{VERSIONED_BUCKET}?versioning HTTP/1.1\r\nHost: x\r\nContent-MD5: {md5}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            assert_eq!(conn.request(request.as_bytes()).status, 200);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (stop, acked, addr) = (stop.clone(), acked.clone(), server.addr);
                std::thread::spawn(move || put_versions(addr, &stop, &acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..500)));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().unwrap();
        }
    }
    let server = Server::start_in(&data, &["--log", "error"]);
    let mut conn = Conn::open(&server);
    let acked = acked.lock().unwrap();
    let listed = list_versions(&mut conn);
    let mut damaged = Vec::new();
    // Every acknowledged version is listed and holds exactly its bytes; every marker is listed.
    let listed_set: BTreeSet<(String, String, bool)> = listed.iter().cloned().collect();
    for ((key, id), md5) in &acked.versions {
        if !listed_set.contains(&(key.clone(), id.clone(), false)) {
            damaged.push(format!("{key} version {id}: acknowledged, not listed"));
            continue;
        }
        let response = conn.request(format!("GET /{VERSIONED_BUCKET}/{key}?versionId={id} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        if response.status != 200 || &common::md5_hex(&response.body) != md5 {
            damaged.push(format!(
                "{key} version {id}: {} with {} bytes that are not the acknowledged ones",
                response.status,
                response.body.len()
            ));
        }
    }
    for (key, id) in &acked.markers {
        if !listed_set.contains(&(key.clone(), id.clone(), true)) {
            damaged.push(format!("{key} delete marker {id}: acknowledged, not listed"));
        }
    }
    // What is listed beyond them (PUTs cut off by a kill after they published) holds a body sent for its key.
    for (key, id, marker) in &listed {
        if *marker || acked.versions.contains_key(&(key.clone(), id.clone())) {
            continue;
        }
        let response = conn.request(format!("GET /{VERSIONED_BUCKET}/{key}?versionId={id} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        if response.status != 200 || !acked.sent.get(key).is_some_and(|sent| sent.contains(&common::md5_hex(&response.body))) {
            damaged.push(format!("{key} version {id}: listed, unanswered, holding bytes no PUT sent"));
        }
    }
    assert!(damaged.is_empty(), "{} damaged versions: {damaged:#?}", damaged.len());
    assert!(acked.versions.len() > 20 && !acked.markers.is_empty(), "too little load to show anything: {} versions", acked.versions.len());
    println!(
        "versioned crash test: survived 10 kills; {} acknowledged versions and {} delete markers all listed ({} entries), each version holding its bytes",
        acked.versions.len(),
        acked.markers.len(),
        listed.len()
    );
}
