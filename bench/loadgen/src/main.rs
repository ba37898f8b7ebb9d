//! A load generator for S3 and Firehose endpoints, so that the client is never the
//! bottleneck of firelake's benchmarks. Requests carry a placeholder signature (firelake
//! and moto_server do not check it by default), sent over kept-alive HTTP/1.1
//! connections, one per worker.
//!
//! Each scenario prints one JSON line with its figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    /// 4 KiB PutObject, `--workers` at once, for `--seconds`: ops/s and latency.
    PutSmall,
    /// 4 KiB GetObject of 1,000 objects written first.
    GetSmall,
    /// 64 MiB PutObject, one at a time, `--repeat` times: MB/s.
    PutLarge,
    /// 64 MiB GetObject, one at a time, `--repeat` times: MB/s.
    GetLarge,
    /// ListObjectsV2 of 10,000 keys in pages of 1,000, `--repeat` times.
    List,
    /// Firehose PutRecordBatch of `--batch` records of `--record-bytes`, `--workers` at once.
    PutRecordBatch,
}

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    endpoint: String,
    #[arg(long, value_enum)]
    scenario: Scenario,
    #[arg(long, default_value = "loadgen")]
    bucket: String,
    #[arg(long, default_value_t = 16)]
    workers: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// PutRecordBatch: the stream to send to.
    #[arg(long, default_value = "loadgen")]
    stream: String,
    #[arg(long, default_value_t = 500)]
    batch: usize,
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// PutRecordBatch: send JSON telematics records (`{"vin": ..., ...}`, padded to about
    /// `--record-bytes`) of this many vehicles, in turn, instead of opaque bytes.
    #[arg(long, default_value_t = 0)]
    vehicles: usize,
    /// PutRecordBatch: target calls per second across all workers (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    endpoint: String,
}

impl Conn {
    async fn open(endpoint: &str) -> Conn {
        let host = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let stream = tokio::net::TcpStream::connect(&host).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        Conn { sender, host, endpoint: endpoint.to_owned() }
    }

    /// Waits until the connection can take a request, reconnecting when the server closed
    /// it (moto_server closes after every response).
    async fn ready(&mut self) {
        if self.sender.ready().await.is_err() {
            *self = Conn::open(&self.endpoint).await;
        }
    }

    /// Sends one request and reads the whole response; returns status and body length.
    async fn send(&mut self, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> (u16, usize) {
        let mut builder = Request::builder().method(method).uri(path).header("content-length", body.len());
        builder = signed_headers(builder, &self.host, "s3");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.ready().await;
        let response = self.sender.send_request(builder.body(Full::new(body)).unwrap()).await.expect("response");
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("body").into_data() {
                len += data.len();
            }
        }
        (status, len)
    }

    /// Sends a PutRecordBatch; returns its FailedPutCount (records throttled or refused).
    async fn put_record_batch(&mut self, body: Bytes) -> usize {
        let builder = Request::builder()
            .method(Method::POST)
            .uri("/")
            .header("content-length", body.len())
            .header("x-amz-target", "Firehose_20150804.PutRecordBatch")
            .header("content-type", "application/x-amz-json-1.1");
        self.ready().await;
        let request = signed_headers(builder, &self.host, "firehose").body(Full::new(body)).unwrap();
        let response = self.sender.send_request(request).await.expect("response");
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(status, 200, "PutRecordBatch answered {status}: {}", String::from_utf8_lossy(&bytes));
        failed_put_count(&bytes).unwrap_or_else(|| panic!("no FailedPutCount in {}", String::from_utf8_lossy(&bytes)))
    }

    async fn expect(&mut self, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> usize {
        let (status, len) = self.send(method.clone(), path, headers, body).await;
        assert!((200..300).contains(&status), "{method} {path} answered {status}");
        len
    }
}

/// The `FailedPutCount` of a PutRecordBatch reply, read without parsing the whole reply
/// (up to 500 entries): the load generator shares the machine's two cores with the
/// server, so its own work must stay small.
fn failed_put_count(reply: &[u8]) -> Option<usize> {
    let name = b"\"FailedPutCount\"";
    let at = reply.windows(name.len()).position(|w| w == name)? + name.len();
    let rest = reply[at..].iter().skip_while(|b| b.is_ascii_whitespace() || **b == b':');
    let digits: Vec<u8> = rest.take_while(|b| b.is_ascii_digit()).copied().collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    percentile(values, 0.5)
}

/// Runs `work(worker, i)` on `workers` connections for `seconds`; returns (calls, latencies in ms).
async fn timed<F, Fut>(args: &Args, work: F) -> (usize, Vec<f64>, f64)
where
    F: Fn(Conn, usize, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Vec<f64>> + Send + 'static,
{
    let (mut latencies, elapsed) = timed_calls(args, work).await;
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (latencies.len(), latencies, elapsed)
}

/// Runs `work(worker, i)` on `workers` connections for `seconds`; returns what every
/// worker's calls gave and the seconds elapsed.
async fn timed_calls<T, F, Fut>(args: &Args, work: F) -> (Vec<T>, f64)
where
    T: Send + 'static,
    F: Fn(Conn, usize, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Vec<T>> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for worker in 0..args.workers {
        let conn = Conn::open(&args.endpoint).await;
        handles.push(tokio::spawn(work(conn, worker, stop.clone())));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for handle in handles {
        calls.extend(handle.await.unwrap());
    }
    (calls, start.elapsed().as_secs_f64())
}

/// One PutRecordBatch call: how long it took and how many of its records were refused.
#[derive(Debug, Clone, Copy)]
struct BatchCall {
    ms: f64,
    failed_records: usize,
}

/// The figures of a PutRecordBatch run. Only accepted records count towards the rates, and
/// the latency percentiles cover only the calls whose every record was accepted: a call
/// throttled with "Slow down." answers at once, and would make the tail look better than
/// the puts that did the work. How many calls and records were throttled is reported.
fn put_record_batch_report(calls: &[BatchCall], batch: usize, record_bytes: usize, elapsed: f64) -> serde_json::Value {
    let failed: usize = calls.iter().map(|c| c.failed_records).sum();
    let mut accepted_ms: Vec<f64> = calls.iter().filter(|c| c.failed_records == 0).map(|c| c.ms).collect();
    accepted_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let throttled_calls = calls.len() - accepted_ms.len();
    let records_per_s = (calls.len() * batch - failed) as f64 / elapsed;
    serde_json::json!({
        "scenario": "put-record-batch", "calls_per_s": calls.len() as f64 / elapsed, "records_per_s": records_per_s,
        "calls": calls.len(), "throttled_calls": throttled_calls, "failed_records": failed,
        "accepted_records": calls.len() * batch - failed,
        "payload_mb_per_s": records_per_s * record_bytes as f64 / 1e6,
        "p50_ms": percentile(&accepted_ms, 0.5), "p99_ms": percentile(&accepted_ms, 0.99),
    })
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut admin = Conn::open(&args.endpoint).await;
    let bucket = args.bucket.clone();
    if !matches!(args.scenario, Scenario::PutRecordBatch) {
        let _ = admin.send(Method::PUT, &format!("/{bucket}"), &[], Bytes::new()).await;
    }
    let small = Bytes::from(vec![b'x'; 4096]);
    let large = Bytes::from(vec![b'y'; 64 * 1024 * 1024]);
    let report = match args.scenario {
        Scenario::PutSmall => {
            let (ops, lat, elapsed) = timed(&args, |mut conn, worker, stop| {
                let (bucket, body) = (bucket.clone(), small.clone());
                async move {
                    let mut lat = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        conn.expect(Method::PUT, &format!("/{bucket}/small/{worker}/{i}"), &[], body.clone()).await;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        i += 1;
                    }
                    lat
                }
            })
            .await;
            serde_json::json!({"scenario": "put-small", "ops_per_s": ops as f64 / elapsed, "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99), "workers": args.workers})
        }
        Scenario::GetSmall => {
            for i in 0..1000 {
                admin.expect(Method::PUT, &format!("/{bucket}/get/{i}"), &[], small.clone()).await;
            }
            let (ops, lat, elapsed) = timed(&args, |mut conn, worker, stop| {
                let bucket = bucket.clone();
                async move {
                    let mut lat = Vec::new();
                    let mut i = worker * 37;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let len = conn.expect(Method::GET, &format!("/{bucket}/get/{}", i % 1000), &[], Bytes::new()).await;
                        assert_eq!(len, 4096);
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        i += 1;
                    }
                    lat
                }
            })
            .await;
            serde_json::json!({"scenario": "get-small", "ops_per_s": ops as f64 / elapsed, "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99), "workers": args.workers})
        }
        Scenario::PutLarge => {
            let mut rates = Vec::new();
            for i in 0..args.repeat {
                let t = Instant::now();
                admin.expect(Method::PUT, &format!("/{bucket}/large/{i}"), &[], large.clone()).await;
                rates.push(large.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
            }
            serde_json::json!({"scenario": "put-large", "mb_per_s_median": median(&mut rates), "runs": rates})
        }
        Scenario::GetLarge => {
            admin.expect(Method::PUT, &format!("/{bucket}/large/get"), &[], large.clone()).await;
            let mut rates = Vec::new();
            for _ in 0..args.repeat {
                let t = Instant::now();
                let len = admin.expect(Method::GET, &format!("/{bucket}/large/get"), &[], Bytes::new()).await;
                assert_eq!(len, large.len());
                rates.push(large.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
            }
            serde_json::json!({"scenario": "get-large", "mb_per_s_median": median(&mut rates), "runs": rates})
        }
        Scenario::List => {
            let mut conns = Vec::new();
            for _ in 0..args.workers {
                conns.push(Conn::open(&args.endpoint).await);
            }
            let per = 10_000usize.div_ceil(args.workers);
            let mut handles = Vec::new();
            for (w, mut conn) in conns.into_iter().enumerate() {
                let bucket = bucket.clone();
                handles.push(tokio::spawn(async move {
                    for i in (w * per)..((w + 1) * per).min(10_000) {
                        conn.expect(Method::PUT, &format!("/{bucket}/list/{:02}/{i:05}", i % 100), &[], Bytes::from_static(b"k")).await;
                    }
                }));
            }
            for handle in handles {
                handle.await.unwrap();
            }
            let mut times = Vec::new();
            for _ in 0..args.repeat {
                let t = Instant::now();
                let mut token: Option<String> = None;
                let mut keys = 0;
                loop {
                    let mut path = format!("/{bucket}?list-type=2&prefix=list/&max-keys=1000");
                    if let Some(token) = &token {
                        path.push_str("&continuation-token=");
                        path.push_str(&encode(token));
                    }
                    let (status, text) = get_text(&mut admin, &path).await;
                    assert_eq!(status, 200);
                    keys += text.matches("<Key>").count();
                    token = between(&text, "<NextContinuationToken>", "</NextContinuationToken>");
                    if token.is_none() {
                        break;
                    }
                }
                assert_eq!(keys, 10_000);
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            serde_json::json!({"scenario": "list", "keys": 10_000, "ms_median": median(&mut times), "runs": times})
        }
        Scenario::PutRecordBatch => {
            let encode = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
            let records: Vec<serde_json::Value> = (0..args.batch)
                .map(|i| {
                    if args.vehicles == 0 {
                        return serde_json::json!({"Data": encode(&vec![b'r'; args.record_bytes])});
                    }
                    let mut record = format!(
                        r#"{{"vin":"VIN{:05}","ts":"2026-12-01T10:00:{:02}Z","lat":52.52,"lon":13.40,"speed":{}"#,
                        i % args.vehicles,
                        i % 60,
                        i % 130
                    );
                    let pad = args.record_bytes.saturating_sub(record.len() + 10);
                    record.push_str(&format!(r#","pad":"{}"}}"#, "x".repeat(pad)));
                    serde_json::json!({"Data": encode(record.as_bytes())})
                })
                .collect();
            let body = Bytes::from(serde_json::json!({"DeliveryStreamName": args.stream, "Records": records}).to_string());
            let per_worker_interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(args.workers as f64 / args.rate));
            let workers = args.workers as u32;
            let (calls, elapsed) = timed_calls(&args, |mut conn, worker, stop| {
                let body = body.clone();
                async move {
                    let mut calls = Vec::new();
                    // At a set rate the workers take turns, evenly spaced: a steady load,
                    // not bursts of `workers` calls at once.
                    let mut next = Instant::now() + per_worker_interval.map_or(Duration::ZERO, |i| i * worker as u32 / workers);
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(interval) = per_worker_interval {
                            tokio::time::sleep_until(next.into()).await;
                            next += interval;
                        }
                        let t = Instant::now();
                        let failed_records = conn.put_record_batch(body.clone()).await;
                        calls.push(BatchCall { ms: t.elapsed().as_secs_f64() * 1000.0, failed_records });
                    }
                    calls
                }
            })
            .await;
            let mut report = put_record_batch_report(&calls, args.batch, args.record_bytes, elapsed);
            report["workers"] = args.workers.into();
            report["rate"] = args.rate.into();
            report
        }
    };
    println!("{report}");
}

async fn get_text(conn: &mut Conn, path: &str) -> (u16, String) {
    let request = signed_headers(Request::builder().method(Method::GET).uri(path), &conn.host, "s3").body(Full::new(Bytes::new())).unwrap();
    conn.ready().await;
    let response = conn.sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Headers shaped like an SDK's signed request for `service`. The signature is a
/// placeholder: neither firelake (by default) nor moto_server checks it, but moto treats a
/// request without one as anonymous and picks the service from the credential scope.
fn signed_headers(builder: hyper::http::request::Builder, host: &str, service: &str) -> hyper::http::request::Builder {
    builder.header("host", host).header("x-amz-date", "20260101T000000Z").header("x-amz-content-sha256", "UNSIGNED-PAYLOAD").header(
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
            "0".repeat(64)
        ),
    )
}

fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(text[start..end].to_owned())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn failed_put_count_is_read_from_both_servers_replies() {
        assert_eq!(super::failed_put_count(br#"{"FailedPutCount":3,"Encrypted":false,"RequestResponses":[]}"#), Some(3));
        assert_eq!(super::failed_put_count(br#"{"FailedPutCount": 0, "Encrypted": false}"#), Some(0));
        assert_eq!(super::failed_put_count(b"<ListAllMyBucketsResult/>"), None);
    }

    #[test]
    fn throttled_calls_are_counted_and_left_out_of_the_percentiles() {
        use super::BatchCall;
        // Three accepted calls, and two throttled ones that answered at once.
        let calls = [(5.0, 0), (0.1, 500), (6.0, 0), (0.2, 3), (7.0, 0)].map(|(ms, failed_records)| BatchCall { ms, failed_records });
        let report = super::put_record_batch_report(&calls, 500, 100, 2.0);
        assert_eq!(report["calls"], 5);
        assert_eq!(report["throttled_calls"], 2);
        assert_eq!(report["failed_records"], 503);
        assert_eq!(report["records_per_s"], (5.0 * 500.0 - 503.0) / 2.0);
        assert_eq!(report["calls_per_s"], 2.5);
        assert_eq!(report["p50_ms"], 6.0);
        assert_eq!(report["p99_ms"], 7.0);
    }
}
