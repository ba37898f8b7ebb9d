//! Delivery streams: their definitions, their runtime state, and one delivery task per
//! stream that seals due buffers in the journal and writes them through the store.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use crate::firehose::api::{S3Destination, Tag};
use crate::firehose::buffer::{Buffer, Hints, Records};
use crate::firehose::compress::Compression;
use crate::firehose::naming;
use crate::store::atomic::Staged;
use crate::store::journal::{Entry, Journal, Seal};
use crate::store::{Durability, ObjectMeta, Store, StoreError, now_ms};

/// The destination ID AWS gives the one destination of every stream.
pub const DESTINATION_ID: &str = "destinationId-000000000001";
/// Objects remembered per stream for `/_firelake/streams`.
const RECENT_OBJECTS_MAX: usize = 20;
/// Longest wait between retries of a failing delivery.
const RETRY_DELAY_MS_MAX: u64 = 5_000;

/// Delivery settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a new stream stays CREATING.
    pub create_delay_ms: i64,
    /// Caps every stream's IntervalInSeconds (for tests and workshops).
    pub interval_cap_ms: Option<i64>,
    /// Accept (and ignore) configuration firelake does not emulate.
    pub lenient: bool,
    /// Most bytes one stream may hold undelivered before puts are throttled.
    pub stream_bytes_max: u64,
    /// Most bytes all streams together may hold undelivered.
    pub total_bytes_max: u64,
}

/// What is saved of a delivery stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamDef {
    /// Names the journal; a re-created stream of the same name gets a new one.
    pub uid: String,
    pub account: String,
    pub region: String,
    pub name: String,
    pub stream_type: String,
    pub created_ms: i64,
    pub active_at_ms: i64,
    #[serde(default)]
    pub last_update_ms: Option<i64>,
    pub version: u64,
    pub destination: S3Destination,
    /// Destinations other than S3, kept only with --lenient.
    #[serde(default)]
    pub other_destinations: serde_json::Map<String, Value>,
    #[serde(default)]
    pub source: Option<Value>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// `DeliveryStreamEncryptionConfiguration` as described.
    #[serde(default)]
    pub encryption: Option<Value>,
    /// What --lenient accepted without emulating it.
    #[serde(default)]
    pub ignored: Vec<String>,
}

impl StreamDef {
    pub fn arn(&self) -> String {
        format!("arn:aws:firehose:{}:{}:deliverystream/{}", self.region, self.account, self.name)
    }

    pub fn active(&self, now_ms: i64) -> bool {
        now_ms >= self.active_at_ms
    }

    pub fn encrypted(&self) -> bool {
        self.encryption.as_ref().and_then(|e| e.get("Status")).and_then(Value::as_str) == Some("ENABLED")
    }
}

/// A sealed batch waiting for its object to be written. Cloned cheaply (the records are
/// shared), so the delivery task can work on it without holding the stream's lock.
#[derive(Debug, Clone)]
struct Pending {
    seal: Seal,
    records: Arc<Records>,
}

/// An object delivered, for status.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveredObject {
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
    pub records: u64,
    pub delivered_ms: i64,
}

pub struct StreamState {
    pub def: StreamDef,
    buffer: Buffer,
    pending: VecDeque<Pending>,
    next_seq: u64,
    delivered_seq: u64,
    /// Undelivered bytes: the buffer and the sealed batches.
    held_bytes: u64,
    /// Flush requests: answered once every record up to the seq is delivered.
    flushes: Vec<(u64, oneshot::Sender<Result<(), String>>)>,
    recent: VecDeque<DeliveredObject>,
    last_error: Option<String>,
    deleted: bool,
}

pub struct Stream {
    journal: Journal,
    state: Mutex<StreamState>,
    notify: Notify,
}

impl Stream {
    pub fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why records were not accepted.
pub enum PutRefusal {
    /// The stream or all streams hold as much as they may: throttle.
    SlowDown,
}

/// Every delivery stream, by (account, region, name).
pub struct Firehose {
    pub settings: Settings,
    store: Arc<Store>,
    streams: Mutex<BTreeMap<(String, String, String), Arc<Stream>>>,
    held_total: Arc<AtomicU64>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

type Key = (String, String, String);

fn key_of(def: &StreamDef) -> Key {
    (def.account.clone(), def.region.clone(), def.name.clone())
}

impl Firehose {
    /// Loads every saved stream, replays its journal and starts its delivery task.
    pub fn start(store: Arc<Store>, settings: Settings) -> std::io::Result<Firehose> {
        let (shutdown, _) = watch::channel(false);
        let firehose = Firehose {
            settings,
            store: store.clone(),
            streams: Mutex::new(BTreeMap::new()),
            held_total: Arc::new(AtomicU64::new(0)),
            shutdown,
            tasks: Mutex::new(Vec::new()),
        };
        for bytes in store.load_streams()? {
            match serde_json::from_slice::<StreamDef>(&bytes) {
                Ok(def) => firehose.open(def)?,
                Err(err) => tracing::error!(%err, "skipping an unreadable delivery stream definition"),
            }
        }
        Ok(firehose)
    }

    fn open(&self, def: StreamDef) -> std::io::Result<()> {
        let (journal, recovered) = self.store.open_journal(&def.uid)?;
        let mut buffer = Buffer::default();
        let mut held = 0;
        let sealed_upto = recovered.seals.iter().map(|s| s.last_seq).max().unwrap_or(0);
        let mut pending = VecDeque::new();
        let mut records: BTreeMap<u64, (i64, Bytes)> = BTreeMap::new();
        for (seq, arrival_ms, data) in recovered.records {
            held += data.len() as u64;
            records.insert(seq, (arrival_ms, data));
        }
        for seal in recovered.seals {
            let mut batch = Records::default();
            for (seq, (arrival_ms, data)) in records.range(seal.first_seq..=seal.last_seq) {
                batch.push(*seq, *arrival_ms, data.clone());
            }
            pending.push_back(Pending { seal, records: Arc::new(batch) });
        }
        for (seq, (arrival_ms, data)) in records.range(sealed_upto + 1..) {
            buffer.push(*seq, *arrival_ms, data.clone());
        }
        if held > 0 {
            tracing::info!(stream = %def.name, records = records.len(), sealed = pending.len(), "replayed undelivered records from the journal");
        }
        self.held_total.fetch_add(held, Ordering::SeqCst);
        let key = key_of(&def);
        let stream = Arc::new(Stream {
            journal,
            state: Mutex::new(StreamState {
                def,
                buffer,
                pending,
                next_seq: recovered.next_seq,
                delivered_seq: recovered.delivered,
                held_bytes: held,
                flushes: Vec::new(),
                recent: VecDeque::new(),
                last_error: None,
                deleted: false,
            }),
            notify: Notify::new(),
        });
        let task = tokio::spawn(deliver(
            stream.clone(),
            self.store.clone(),
            self.settings.clone(),
            self.shutdown.subscribe(),
            self.held_total.clone(),
        ));
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).insert(key, stream);
        Ok(())
    }

    pub fn get(&self, account: &str, region: &str, name: &str) -> Option<Arc<Stream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).get(&(account.to_owned(), region.to_owned(), name.to_owned())).cloned()
    }

    /// The streams of one account and region, by name.
    pub fn list(&self, account: &str, region: &str) -> Vec<Arc<Stream>> {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.iter().filter(|((a, r, _), _)| a == account && r == region).map(|(_, s)| s.clone()).collect()
    }

    pub fn count(&self, account: &str, region: &str) -> usize {
        self.list(account, region).len()
    }

    /// Saves and starts a new stream (blocking IO: call from a blocking thread).
    pub fn create(&self, def: StreamDef) -> std::io::Result<()> {
        self.save(&def)?;
        // Any journal under this uid is stale; a fresh uid never has one.
        self.open(def)
    }

    pub fn save(&self, def: &StreamDef) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(def).map_err(std::io::Error::other)?;
        self.store.save_stream(&def.uid, &bytes)
    }

    /// Makes `def` the stream's definition; its delivery task looks again at what is
    /// due, since the buffering hints may have changed.
    pub fn redefine(&self, stream: &Stream, def: StreamDef) {
        stream.lock().def = def;
        stream.notify.notify_one();
    }

    /// Deletes a stream and discards what it buffered, as AWS does.
    pub fn delete(&self, stream: &Arc<Stream>) -> std::io::Result<()> {
        let (key, uid, held) = {
            let mut state = stream.lock();
            state.deleted = true;
            state.buffer.clear();
            state.pending.clear();
            for (_, waiter) in state.flushes.drain(..) {
                let _ = waiter.send(Err("the delivery stream was deleted".to_owned()));
            }
            (key_of(&state.def), state.def.uid.clone(), std::mem::take(&mut state.held_bytes))
        };
        self.held_total.fetch_sub(held, Ordering::SeqCst);
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        stream.notify.notify_one();
        self.store.delete_stream(&uid)
    }

    /// Deletes every stream and what it buffered (POST /_firelake/reset). Blocking.
    pub fn reset(&self) -> std::io::Result<()> {
        let streams: Vec<Arc<Stream>> = self.streams.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for stream in streams {
            self.delete(&stream)?;
        }
        Ok(())
    }

    /// Journals and buffers records; answers for each whether it was accepted, once they
    /// are durable. The journal write is a copy into the page cache, made on the calling
    /// thread; the wait for the fsync holds no thread.
    pub async fn put(&self, stream: &Stream, records: Vec<Bytes>) -> std::io::Result<Vec<Result<u64, PutRefusal>>> {
        let now = now_ms();
        let mut results = Vec::with_capacity(records.len());
        let (position, wake) = {
            let mut state = stream.lock();
            let was_empty = state.buffer.is_empty();
            let mut entries = Vec::with_capacity(records.len());
            let mut added = 0u64;
            for data in records {
                let len = data.len() as u64;
                let stream_full = state.held_bytes + added + len > self.settings.stream_bytes_max;
                let total_full = self.held_total.load(Ordering::SeqCst) + added + len > self.settings.total_bytes_max;
                if stream_full || total_full {
                    results.push(Err(PutRefusal::SlowDown));
                    continue;
                }
                let seq = state.next_seq + entries.len() as u64;
                entries.push(Entry::Put { seq, arrival_ms: now, data });
                results.push(Ok(seq));
                added += len;
            }
            if entries.is_empty() {
                return Ok(results);
            }
            // Written under the stream's lock, so the journal holds puts in seq order.
            let position = stream.journal.write(&entries)?;
            state.next_seq += entries.len() as u64;
            for entry in entries {
                if let Entry::Put { seq, arrival_ms, data } = entry {
                    state.buffer.push(seq, arrival_ms, data);
                }
            }
            state.held_bytes += added;
            self.held_total.fetch_add(added, Ordering::SeqCst);
            // The delivery task sleeps until the oldest record's deadline, so it needs
            // waking only for a new oldest record or a full buffer, not for every put.
            let full = state.buffer.bytes() >= hints_of(&state.def.destination, &self.settings).size_bytes;
            (position, was_empty || full)
        };
        stream.journal.sync(position).await?;
        if wake {
            stream.notify.notify_one();
        }
        Ok(results)
    }

    /// Asks the streams named `name` (all when `None`) to deliver everything buffered now,
    /// and waits for it; answers each stream's outcome.
    pub async fn flush(&self, name: Option<&str>, timeout: Duration) -> Vec<(String, Result<(), String>)> {
        let streams: Vec<Arc<Stream>> = {
            let all = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            all.iter().filter(|((_, _, n), _)| name.is_none_or(|want| want == n)).map(|(_, s)| s.clone()).collect()
        };
        let mut waits = Vec::new();
        for stream in streams {
            let (tx, rx) = oneshot::channel();
            let label = {
                let mut state = stream.lock();
                let target = state.next_seq - 1;
                state.flushes.push((target, tx));
                format!("{}/{}/{}", state.def.account, state.def.region, state.def.name)
            };
            stream.notify.notify_one();
            waits.push((label, rx));
        }
        let mut out = Vec::new();
        for (label, rx) in waits {
            let outcome = match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err("the delivery task ended".to_owned()),
                Err(_) => Err(format!("not delivered within {} s", timeout.as_secs())),
            };
            out.push((label, outcome));
        }
        out
    }

    /// Delivers every buffer, within `timeout`; what is left stays in the journal.
    pub async fn shutdown(&self, timeout: Duration) {
        let _ = self.shutdown.send(true);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            let held = self.held_total.load(Ordering::SeqCst);
            tracing::warn!(held_bytes = held, "delivery not finished in time; the journal keeps the rest for the next start");
        }
    }

    /// Per-stream status for `/_firelake/streams`.
    pub fn status(&self) -> Value {
        let streams: Vec<Arc<Stream>> = self.streams.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let now = now_ms();
        let list: Vec<Value> = streams
            .iter()
            .map(|stream| {
                let state = stream.lock();
                let hints = hints_of(&state.def.destination, &self.settings);
                serde_json::json!({
                    "name": state.def.name,
                    "account": state.def.account,
                    "region": state.def.region,
                    "status": if state.def.active(now) { "ACTIVE" } else { "CREATING" },
                    "version": state.def.version,
                    "bucket": state.def.destination.bucket(),
                    "buffered_records": state.buffer.len(),
                    "buffered_bytes": state.buffer.bytes(),
                    "sealed_batches": state.pending.len(),
                    "oldest_arrival": state.buffer.oldest_arrival_ms().map(crate::s3::xml::timestamp),
                    "next_flush_due": state.buffer.deadline_ms(hints).map(crate::s3::xml::timestamp),
                    "effective_interval_seconds": hints.interval_ms as f64 / 1000.0,
                    "size_hint_bytes": hints.size_bytes,
                    "recent_objects": state.recent,
                    "last_error": state.last_error,
                    "ignored": state.def.ignored,
                })
            })
            .collect();
        serde_json::json!({ "streams": list, "held_bytes_total": self.held_total.load(Ordering::SeqCst) })
    }
}

/// The hints a stream's buffer works with, with --buffer-interval-cap applied, and a size
/// that fits under the stream's byte cap (so a small cap still lets size flushes happen).
fn hints_of(destination: &S3Destination, settings: &Settings) -> Hints {
    let mut interval_ms = destination.interval_s() * 1000;
    if let Some(cap) = settings.interval_cap_ms {
        interval_ms = interval_ms.min(cap);
    }
    Hints { size_bytes: destination.size_bytes().min(settings.stream_bytes_max / 2).max(1), interval_ms }
}

enum Step {
    Deliver(Pending),
    Seal,
    Wait(Option<i64>),
    Exit,
}

/// The delivery task of one stream: seal what is due, write it, repeat; retry with
/// backoff when the bucket is missing or a write fails; on shutdown, deliver everything.
async fn deliver(
    stream: Arc<Stream>,
    store: Arc<Store>,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
    held_total: Arc<AtomicU64>,
) {
    let mut failures: u32 = 0;
    loop {
        let shutting_down = *shutdown.borrow();
        let step = {
            let mut state = stream.lock();
            let hints = hints_of(&state.def.destination, &settings);
            let now = now_ms();
            if state.deleted {
                Step::Exit
            } else if let Some(front) = state.pending.front() {
                Step::Deliver(front.clone())
            } else if !state.buffer.is_empty() && (shutting_down || !state.flushes.is_empty() || state.buffer.due(now, hints)) {
                Step::Seal
            } else {
                // Nothing sealed and nothing due: every record a flush waits for is delivered.
                for (_, waiter) in state.flushes.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
                if shutting_down { Step::Exit } else { Step::Wait(state.buffer.deadline_ms(hints)) }
            }
        };
        let outcome: Result<(), String> = match step {
            Step::Exit => return,
            Step::Wait(deadline) => {
                let sleep = deadline.map(|d| Duration::from_millis((d - now_ms()).max(0) as u64)).unwrap_or(Duration::from_secs(3600));
                tokio::select! {
                    () = stream.notify.notified() => {}
                    () = tokio::time::sleep(sleep) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            Step::Seal => seal(&stream, &store, &settings).await,
            Step::Deliver(pending) => write_object(&stream, &store, pending, &held_total).await,
        };
        match outcome {
            Ok(()) => failures = 0,
            Err(reason) => {
                failures += 1;
                {
                    let mut state = stream.lock();
                    if state.last_error.as_deref() != Some(reason.as_str()) {
                        tracing::warn!(stream = %state.def.name, %reason, "delivery failed; records stay buffered and delivery is retried");
                    }
                    state.last_error = Some(reason.clone());
                    for (_, waiter) in state.flushes.drain(..) {
                        let _ = waiter.send(Err(reason.clone()));
                    }
                }
                if *shutdown.borrow() {
                    return;
                }
                let delay = (100u64 << failures.min(6)).min(RETRY_DELAY_MS_MAX);
                tokio::select! {
                    () = stream.notify.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(delay)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// Seals the next batch: checks the bucket, takes the records, journals the seal.
async fn seal(stream: &Arc<Stream>, store: &Arc<Store>, settings: &Settings) -> Result<(), String> {
    let bucket = stream.lock().def.destination.bucket().to_owned();
    if bucket.is_empty() {
        return Err("the stream has no S3 destination firelake can deliver to".to_owned());
    }
    let check = store.clone();
    let b = bucket.clone();
    match tokio::task::spawn_blocking(move || check.bucket_exists(&b)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Err(format!("bucket {bucket} does not exist")),
        Ok(Err(err)) => return Err(format!("cannot check bucket {bucket}: {err}")),
        Err(err) => return Err(err.to_string()),
    }
    let (seal, records) = {
        let mut state = stream.lock();
        let hints = hints_of(&state.def.destination, settings);
        let records = state.buffer.take(hints.size_bytes);
        let (Some(first_seq), Some(last_seq), Some(oldest_arrival_ms)) =
            (records.first_seq(), records.last_seq(), records.oldest_arrival_ms())
        else {
            return Ok(());
        };
        let destination = &state.def.destination;
        let compression = destination.compression();
        let uuid = uuid::Uuid::new_v4().to_string();
        let prefix = naming::parse_prefix(destination.prefix.as_deref().unwrap_or_default()).unwrap_or_default();
        let inputs = naming::KeyInputs {
            stream: &state.def.name,
            version: state.def.version,
            oldest_arrival_ms,
            zone: destination.zone(),
            uuid: &uuid,
            extension: &destination.extension(),
        };
        let key = naming::object_key(&prefix, &inputs, None, naming::random_string);
        let seal = Seal {
            first_seq,
            last_seq,
            bucket,
            key,
            compression: compression_name(compression).to_owned(),
            zip_entry: uuid::Uuid::new_v4().to_string(),
            append_delimiter: destination.append_delimiter(),
            content_type: "application/octet-stream".to_owned(),
            oldest_arrival_ms,
            records: records.len() as u64,
        };
        (seal, records)
    };
    // A batch whose seal is not durable is not written: after a crash it would be sealed
    // again under another key. Its records go back to the buffer and sealing is retried.
    let journaled = stream.journal.append(&[Entry::Seal(seal.clone())]).await;
    let mut state = stream.lock();
    if let Err(err) = journaled {
        state.buffer.restore(records);
        return Err(format!("could not journal the seal of {}: {err}", seal.key));
    }
    state.pending.push_back(Pending { seal, records: Arc::new(records) });
    Ok(())
}

fn compression_name(compression: Compression) -> &'static str {
    match compression {
        Compression::Uncompressed => "UNCOMPRESSED",
        Compression::Gzip => "GZIP",
        Compression::Zip => "ZIP",
        Compression::Snappy => "Snappy",
        Compression::HadoopSnappy => "HADOOP_SNAPPY",
    }
}

/// Bytes of a delivered object written between flushes, with `--durability fsync`. A
/// journal fsync (a put waiting for its answer) that reaches the disk while an object is
/// being written queues behind the object's bytes: flushing as the object is written
/// keeps that queue short (measured beside a writer of 64 MiB files: journal fsync p99
/// ~6 ms when each file is flushed at its end, ~1.7 ms when flushed every 2 MiB).
const OBJECT_FLUSH_BYTES: u64 = 2 * 1024 * 1024;

/// A delivered object on its way into a staged file: hashed for its ETag as it is
/// written, and flushed every [`OBJECT_FLUSH_BYTES`] when durable.
struct ObjectWriter {
    staged: Staged,
    md5: Md5,
    size: u64,
    unflushed: u64,
    durable: bool,
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.staged.file().write(buf)?;
        self.md5.update(&buf[..n]);
        self.size += n as u64;
        self.unflushed += n as u64;
        if self.durable && self.unflushed >= OBJECT_FLUSH_BYTES {
            self.staged.file().sync_data()?;
            self.unflushed = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.staged.file().flush()
    }
}

/// Writes the object's bytes: the records concatenated (joined by `\n` with
/// AppendDelimiterToRecord), then compressed. A pure function of the seal and records,
/// so a replayed seal writes the same bytes.
fn write_object_bytes(seal: &Seal, records: &Records, out: &mut impl Write) -> std::io::Result<()> {
    let concatenate = |out: &mut dyn Write| -> std::io::Result<()> {
        for (i, data) in records.iter().enumerate() {
            if seal.append_delimiter && i > 0 {
                out.write_all(b"\n")?;
            }
            out.write_all(data)?;
        }
        Ok(())
    };
    match Compression::parse(&seal.compression).unwrap_or(Compression::Uncompressed) {
        // Streamed through a small buffer: no copy of an object that may be 128 MiB.
        Compression::Uncompressed => {
            let mut buffered = std::io::BufWriter::with_capacity(1024 * 1024, out);
            concatenate(&mut buffered)?;
            buffered.flush()
        }
        compression => {
            let mut payload = Vec::with_capacity(records.bytes() as usize + records.len());
            concatenate(&mut payload)?;
            out.write_all(&compression.compress(&payload, &seal.zip_entry)?)
        }
    }
}

/// Writes a sealed batch's object, then journals that it is delivered.
async fn write_object(stream: &Arc<Stream>, store: &Arc<Store>, pending: Pending, held_total: &Arc<AtomicU64>) -> Result<(), String> {
    let store = store.clone();
    let seal = pending.seal.clone();
    let written = tokio::task::spawn_blocking(move || -> Result<u64, String> {
        let Pending { seal, records } = pending;
        let failed = |err: StoreError| match err {
            StoreError::NoSuchBucket => format!("bucket {} does not exist", seal.bucket),
            err => format!("writing s3://{}/{} failed: {err}", seal.bucket, seal.key),
        };
        let staged = store.stage().map_err(|err| failed(err.into()))?;
        let durable = store.durability() == Durability::Fsync;
        let mut writer = ObjectWriter { staged, md5: Md5::new(), size: 0, unflushed: 0, durable };
        write_object_bytes(&seal, &records, &mut writer).map_err(|err| failed(err.into()))?;
        let ObjectWriter { staged, md5, size, .. } = writer;
        let compression = Compression::parse(&seal.compression).unwrap_or(Compression::Uncompressed);
        let mut meta = ObjectMeta { etag: hex::encode(md5.finalize()), last_modified_ms: now_ms(), ..ObjectMeta::default() };
        meta.headers.insert("content-type".into(), seal.content_type.clone());
        if let Some(encoding) = compression.content_encoding() {
            meta.headers.insert("content-encoding".into(), encoding.into());
        }
        store.commit_object(&seal.bucket, &seal.key, staged, meta).map_err(failed)?;
        Ok(size)
    })
    .await
    .map_err(|e| e.to_string())??;
    stream.journal.append(&[Entry::Delivered { last_seq: seal.last_seq }]).await.map_err(|e| e.to_string())?;
    let (delivered, done) = {
        let mut state = stream.lock();
        let Some(done) = state.pending.pop_front() else { return Ok(()) };
        let bytes = done.records.bytes();
        state.held_bytes = state.held_bytes.saturating_sub(bytes);
        held_total.fetch_sub(bytes.min(held_total.load(Ordering::SeqCst)), Ordering::SeqCst);
        state.delivered_seq = seal.last_seq;
        state.last_error = None;
        state.recent.push_back(DeliveredObject {
            bucket: seal.bucket.clone(),
            key: seal.key.clone(),
            bytes: written,
            records: seal.records,
            delivered_ms: now_ms(),
        });
        while state.recent.len() > RECENT_OBJECTS_MAX {
            state.recent.pop_front();
        }
        tracing::info!(stream = %state.def.name, key = %seal.key, records = seal.records, bytes = written, "delivered");
        (state.delivered_seq, done)
    };
    let stream = stream.clone();
    // Freeing a batch of a million records takes milliseconds: not under the lock, and
    // not on an async thread.
    let _ = tokio::task::spawn_blocking(move || {
        drop(done);
        stream.journal.truncate(delivered)
    })
    .await;
    Ok(())
}
