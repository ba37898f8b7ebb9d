//! `firelake produce`: a producer for workshops and load, sending PutRecordBatch through
//! the real AWS SDK, so it works against firelake and against AWS alike. Endpoint, region
//! and credentials are read the way the SDKs read them (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, profiles), or given as flags.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

/// Most records and bytes in one PutRecordBatch, as AWS allows.
const BATCH_RECORDS_MAX: usize = 500;
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Attempts for a throttled record before it counts as failed.
const ATTEMPTS_MAX: u32 = 10;

#[derive(Debug, Args, Clone)]
pub struct ProduceArgs {
    /// The delivery stream to send to.
    #[arg(long)]
    pub stream: String,
    /// Send each line of this file as one record, newline included (as the course does).
    #[arg(long, conflicts_with = "records")]
    pub file: Option<PathBuf>,
    /// Send this many generated telematics records (the default when no file is given: 1000).
    #[arg(long)]
    pub records: Option<u64>,
    /// Records per second, e.g. `100/s` or `100`; as fast as possible when absent.
    #[arg(long)]
    pub rate: Option<String>,
    /// Endpoint, e.g. http://127.0.0.1:4573; AWS_ENDPOINT_URL is read too.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Region; AWS_REGION and profiles are read too (us-east-1 when none is set).
    #[arg(long)]
    pub region: Option<String>,
    /// No progress bar (the summary is still printed).
    #[arg(long)]
    pub quiet: bool,
}

fn parse_rate(rate: &str) -> Result<f64, String> {
    let number = rate.trim().trim_end_matches("/s");
    match number.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(format!("--rate {rate:?} is not a number of records per second (like 100/s)")),
    }
}

/// Generated telematics in the course's format, for `--records N`.
fn generated(n: u64) -> Vec<Vec<u8>> {
    const VINS: [&str; 4] = ["4FTEX4944AK844294", "1HGCM82633A004352", "JH4KA7561PC008269", "5YJ3E1EA7KF317000"];
    (0..n)
        .map(|i| {
            let second = 4 * 3600 + 25 * 60 + 6 + i / VINS.len() as u64;
            let vin = VINS[(i % VINS.len() as u64) as usize];
            let lon = 106.82 + (i as f64 * 0.000_37).sin() * 0.1;
            let lat = -6.21 + (i as f64 * 0.000_29).cos() * 0.1;
            format!(
                "{} {}:{:02}:{:02}.000 {vin} {lon:.7} {lat:.16} {}\n",
                uuid::Uuid::new_v4(),
                second / 3600,
                second % 3600 / 60,
                second % 60,
                (i * 7) % 90
            )
            .into_bytes()
        })
        .collect()
}

/// Whether `url` names this machine (127.0.0.0/8, localhost, ::1).
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost" || host.ends_with(".localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub fn run(args: ProduceArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("firelake produce: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(produce(args)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("firelake produce: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Sends every record; answers how many failed after all retries.
async fn produce(args: ProduceArgs) -> Result<u64, String> {
    let rate = args.rate.as_deref().map(parse_rate).transpose()?;
    let records = match &args.file {
        Some(path) => {
            let text = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
            text.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
        }
        None => generated(args.records.unwrap_or(1000)),
    };
    if let Some(too_big) = records.iter().position(|r| r.len() > 1_024_000) {
        return Err(format!("record {} is larger than Firehose's 1,000 KiB", too_big + 1));
    }
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    // A local firelake checks no credentials unless run with `--auth strict` (then set
    // AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY): without any in the environment, use
    // dummy ones rather than let the SDK's chain go looking (up to the EC2 metadata service).
    let endpoint = args
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_FIREHOSE").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if endpoint.as_deref().is_some_and(is_loopback_url)
        && std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
        && std::env::var_os("AWS_PROFILE").is_none()
    {
        loader = loader.credentials_provider(aws_sdk_firehose::config::Credentials::new("test", "test", None, None, "firelake-local"));
    }
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let mut config = loader.load().await;
    if config.region().is_none() {
        config = config.into_builder().region(aws_config::Region::new("us-east-1")).build();
    }
    let client = aws_sdk_firehose::Client::new(&config);
    let total = records.len() as u64;
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut failed = 0u64;
    let mut sent = 0u64;
    let mut next = 0usize;
    while next < records.len() {
        // One batch: up to 500 records and 4 MiB.
        let mut end = next;
        let mut bytes = 0;
        while end < records.len() && end - next < BATCH_RECORDS_MAX && bytes + records[end].len() <= BATCH_BYTES_MAX {
            bytes += records[end].len();
            end += 1;
        }
        if let Some(rate) = rate {
            // Pace so that the records sent so far took `sent / rate` seconds.
            let due = started + Duration::from_secs_f64((sent + (end - next) as u64) as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let mut pending: Vec<&[u8]> = records[next..end].iter().map(Vec::as_slice).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let batch: Vec<Record> =
                pending.iter().map(|r| Record::builder().data(Blob::new(r.to_vec())).build().expect("data is set")).collect();
            let retry: Vec<&[u8]> = match client.put_record_batch().delivery_stream_name(&args.stream).set_records(Some(batch)).send().await
            {
                Ok(answer) => {
                    pending.iter().zip(answer.request_responses()).filter(|(_, r)| r.error_code().is_some()).map(|(d, _)| *d).collect()
                }
                Err(err) => {
                    // Only throttling and trouble reaching the server can pass by waiting;
                    // a missing stream or a refused request fails at once, in one line.
                    if let Some(code) = aws_sdk_firehose::error::ProvideErrorMetadata::code(&err)
                        && !RETRYABLE_CODES.contains(&code)
                    {
                        bar.abandon();
                        let message = aws_sdk_firehose::error::ProvideErrorMetadata::message(&err).unwrap_or_default();
                        return Err(format!("PutRecordBatch to {} failed: {code}: {message}", args.stream));
                    }
                    if attempt >= ATTEMPTS_MAX {
                        bar.abandon();
                        return Err(format!("PutRecordBatch to {} failed after {attempt} attempts: {}", args.stream, one_line(&err)));
                    }
                    bar.set_message(format!("retrying: {}", one_line(&err)));
                    pending.clone()
                }
            };
            sent += (pending.len() - retry.len()) as u64;
            bar.set_position(sent);
            if retry.is_empty() {
                break;
            }
            if attempt >= ATTEMPTS_MAX {
                failed += retry.len() as u64;
                bar.set_message(format!("{failed} failed"));
                break;
            }
            // Throttled: back off, then send only the records that failed.
            tokio::time::sleep(Duration::from_millis((100u64 << attempt.min(6)).min(5_000))).await;
            pending = retry;
        }
        next = end;
    }
    bar.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {sent} of {total} records to {} in {secs:.1} s ({:.0} records/s), {failed} failed",
        args.stream,
        sent as f64 / secs.max(1e-9)
    );
    Ok(failed)
}

/// Firehose errors that waiting can cure.
const RETRYABLE_CODES: [&str; 4] = ["ServiceUnavailableException", "ThrottlingException", "InternalFailure", "LimitExceededException"];

/// An SDK error as one readable line: its innermost cause, not the whole Debug structure.
fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string().lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints() {
        assert!(is_loopback_url("http://127.0.0.1:4573"));
        assert!(is_loopback_url("http://localhost:4573/"));
        assert!(is_loopback_url("http://[::1]:4573"));
        assert!(!is_loopback_url("https://firehose.us-east-1.amazonaws.com"));
        assert!(!is_loopback_url("http://10.0.0.1:4573"));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100/s"), Ok(100.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn generated_records_are_course_lines() {
        let records = generated(5);
        assert_eq!(records.len(), 5);
        let line = String::from_utf8(records[0].clone()).unwrap();
        assert!(line.ends_with('\n'));
        assert_eq!(line.split(' ').count(), 6);
    }
}
