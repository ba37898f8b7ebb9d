//! The delivery task of one stream: take a due buffer (a partition, an error-output type
//! or the backup), seal it in the journal, write its object through the store, mark it
//! delivered; retry with backoff when the bucket is missing or a write fails; on
//! shutdown, deliver everything. The records waiting for a Lambda processor are the
//! Lambda stage's (`firehose::transform`), a task of its own that this one starts.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::sync::watch;
use tokio::task::{self, JoinSet};

use crate::firehose::buffer::Records;
use crate::firehose::compress::Compression;
use crate::firehose::naming::{self, Part};
use crate::firehose::pipeline::Dest;
use crate::firehose::stream::{DeliveredObject, Note, Pending, RECENT_OBJECTS_MAX, Routing, Seal, Settings, Stream, StreamState, hints_of};
use crate::firehose::transform;
use crate::lambda::Lambda;
use crate::store::atomic::Staged;
use crate::store::{Durability, ObjectMeta, Store, StoreError, now_ms};

/// Longest wait between retries of a failing delivery.
const RETRY_DELAY_MS_MAX: u64 = 5_000;

enum Step {
    Deliver(Box<Pending>),
    /// Seal these buffers (due ones, oldest first), one journal append for them all.
    Seal(Vec<Dest>),
    Wait(Option<i64>),
    Exit,
}

/// Objects of one stream written at once: enough to overlap their fsyncs (a flush of
/// many partitions seals a batch each), few enough to leave the disk to the others.
pub const WRITES_IN_FLIGHT_MAX: usize = 8;

/// Seals made by one journal append at most (a flush of many partitions seals them all).
const SEALS_PER_APPEND_MAX: usize = 64;

/// Picks what to do next, under the stream's lock: a sealed batch not yet being written
/// (in seal order, while fewer than [`WRITES_IN_FLIGHT_MAX`] are), then the due buffers,
/// oldest record first; otherwise answers the flushes that are done and sleeps until the
/// earliest deadline or the next finished write. The Lambda stage's buffer is not this
/// task's; at shutdown it exits once that stage is done too (`lambda_done`).
fn next_step(
    state: &mut StreamState,
    settings: &Settings,
    shutting_down: bool,
    writing: &HashMap<task::Id, u64>,
    lambda_done: bool,
) -> Step {
    if state.deleted {
        return Step::Exit;
    }
    if writing.len() < WRITES_IN_FLIGHT_MAX
        && let Some(next) = state.pending.iter().find(|p| !writing.values().any(|id| *id == p.seal.id))
    {
        return Step::Deliver(Box::new(next.clone()));
    }
    let now = now_ms();
    let destination = &state.def.destination;
    let flush_upto = state.flushes.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
    let mut due: Vec<(i64, &Dest)> = Vec::new();
    let mut deadline: Option<i64> = None;
    for (dest, buffer) in &state.buffers {
        if buffer.is_empty() || *dest == Dest::Lambda {
            continue;
        }
        let hints = hints_of(destination, &state.pipeline, dest, settings);
        let oldest = buffer.oldest_arrival_ms().unwrap_or(now);
        // A flush waits for every record up to its seq, wherever it is now: records that
        // reached a buffer after the flush (a Lambda's outputs) are due too.
        let flushed = buffer.first_seq().is_some_and(|seq| seq <= flush_upto);
        if shutting_down || flushed || buffer.due(now, hints) {
            due.push((oldest, dest));
        } else if let Some(at) = buffer.deadline_ms(hints) {
            deadline = Some(deadline.map_or(at, |d: i64| d.min(at)));
        }
    }
    due.sort_by_key(|(oldest, _)| *oldest);
    if !due.is_empty() {
        return Step::Seal(due.iter().map(|(_, dest)| *dest).take(SEALS_PER_APPEND_MAX).cloned().collect());
    }
    // Holding over half of what the stream may hold (many partitions, none full yet):
    // the largest buffer goes now, so puts are not throttled while every buffer waits
    // for its interval. AWS has no such cap; firelake's memory does.
    if state.held_bytes > settings.stream_bytes_max / 2
        && let Some((dest, _)) = state.buffers.iter().filter(|(_, b)| !b.is_empty()).max_by_key(|(_, b)| b.bytes())
        && *dest != Dest::Lambda
    {
        return Step::Seal(vec![dest.clone()]);
    }
    // Nothing sealed and nothing due: answer every flush whose records are delivered.
    let needed_from = state.needed_from();
    let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.flushes).into_iter().partition(|(seq, _)| *seq < needed_from);
    state.flushes = waiting;
    for (_, waiter) in done {
        let _ = waiter.send(Ok(()));
    }
    // Empty buffers of partitions that are no longer active are dropped.
    state.buffers.retain(|_, buffer| !buffer.is_empty() || buffer.forced);
    // At shutdown, records still with the Lambda stage come back as outputs to deliver.
    let lambda_idle = lambda_done || (state.buffers.get(&Dest::Lambda).is_none_or(|b| b.is_empty()) && state.transforming.is_empty());
    if shutting_down && lambda_idle { Step::Exit } else { Step::Wait(deadline) }
}

/// Records why delivery (or the Lambda stage) failed, for status, and fails the flushes
/// waiting: they would otherwise wait for their timeout.
pub fn report_failure(stream: &Stream, reason: String) {
    let mut state = stream.lock();
    if state.last_error.as_deref() != Some(reason.as_str()) {
        tracing::warn!(stream = %state.def.name, %reason, "delivery failed; records stay buffered and delivery is retried");
    }
    for (_, waiter) in state.flushes.drain(..) {
        let _ = waiter.send(Err(reason.clone()));
    }
    state.last_error = Some(reason);
}

/// Aborts a task when dropped: the Lambda stage ends with its delivery task.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs until the stream is deleted or, at shutdown, has delivered everything.
pub async fn deliver(
    stream: Arc<Stream>,
    store: Arc<Store>,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
    held_total: Arc<AtomicU64>,
    lambda: Arc<Lambda>,
) {
    let stage = AbortOnDrop(tokio::spawn(transform::run(stream.clone(), settings.clone(), lambda, held_total.clone(), shutdown.clone())));
    let mut failures: u32 = 0;
    // The seal ids of the objects being written, by their tasks.
    let mut writing: HashMap<task::Id, u64> = HashMap::new();
    let mut writes: JoinSet<Result<(), String>> = JoinSet::new();
    loop {
        let mut outcome: Result<(), String> = Ok(());
        while let Some(done) = writes.try_join_next_with_id() {
            outcome = outcome.and(finished(done, &mut writing));
        }
        if outcome.is_ok() {
            let shutting_down = *shutdown.borrow();
            let step = next_step(&mut stream.lock(), &settings, shutting_down, &writing, stage.0.is_finished());
            outcome = match step {
                // Deleted, or at shutdown with nothing left: the writes under way end first.
                Step::Exit if writes.is_empty() => return,
                Step::Exit => match writes.join_next_with_id().await {
                    Some(done) => finished(done, &mut writing),
                    None => Ok(()),
                },
                Step::Wait(deadline) => {
                    let sleep = deadline.map(|d| Duration::from_millis((d - now_ms()).max(0) as u64)).unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        () = stream.notify.notified() => Ok(()),
                        () = tokio::time::sleep(sleep) => Ok(()),
                        _ = shutdown.changed() => Ok(()),
                        Some(done) = writes.join_next_with_id(), if !writes.is_empty() => finished(done, &mut writing),
                    }
                }
                Step::Seal(dests) => seal(&stream, &store, &settings, dests).await,
                Step::Deliver(pending) => {
                    let id = pending.seal.id;
                    let (stream, store, held_total) = (stream.clone(), store.clone(), held_total.clone());
                    let task = writes.spawn(async move { write_object(&stream, &store, *pending, &held_total).await });
                    writing.insert(task.id(), id);
                    Ok(())
                }
            };
        }
        match outcome {
            Ok(()) => failures = 0,
            Err(reason) => {
                failures += 1;
                report_failure(&stream, reason);
                if *shutdown.borrow() {
                    while writes.join_next().await.is_some() {}
                    let state = stream.lock();
                    tracing::warn!(stream = %state.def.name, "undelivered records stay in the journal and are delivered after the next start");
                    return;
                }
                let delay = (100u64 << failures.min(6)).min(RETRY_DELAY_MS_MAX);
                tokio::select! {
                    () = stream.notify.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(delay)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        }
    }
}

/// Takes a finished write off the writes under way; answers its outcome. A write that
/// failed (or panicked) leaves its batch sealed, to be written again.
fn finished(done: Result<(task::Id, Result<(), String>), task::JoinError>, writing: &mut HashMap<task::Id, u64>) -> Result<(), String> {
    match done {
        Ok((task, outcome)) => {
            writing.remove(&task);
            outcome
        }
        Err(err) => {
            writing.remove(&err.id());
            Err(format!("an object write failed: {err}"))
        }
    }
}

/// The bucket a destination's objects go to.
fn bucket_of(state: &StreamState, dest: &Dest) -> String {
    match dest {
        Dest::Backup => state.def.destination.backup().map(|b| b.bucket().to_owned()).unwrap_or_default(),
        _ => state.def.destination.bucket().to_owned(),
    }
}

/// Seals `dests`: takes an object's worth of records from each buffer, and journals
/// every seal in one append before any is written. A buffer whose bucket is missing stays
/// due (it is sealed as soon as the bucket exists) and the answer says why.
async fn seal(stream: &Arc<Stream>, store: &Arc<Store>, settings: &Settings, dests: Vec<Dest>) -> Result<(), String> {
    let buckets: Vec<String> = {
        let state = stream.lock();
        dests.iter().map(|dest| bucket_of(&state, dest)).collect()
    };
    if buckets.iter().any(String::is_empty) {
        return Err("the stream has no S3 destination firelake can deliver to".to_owned());
    }
    let mut distinct = buckets.clone();
    distinct.sort();
    distinct.dedup();
    let check = store.clone();
    let checked = tokio::task::spawn_blocking(move || {
        distinct
            .into_iter()
            .map(|bucket| match check.bucket_exists(&bucket) {
                Ok(true) => Ok(bucket),
                Ok(false) => Err(format!("bucket {bucket} does not exist")),
                Err(err) => Err(format!("cannot check bucket {bucket}: {err}")),
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|err| err.to_string())?;
    let present: Vec<&String> = checked.iter().filter_map(|c| c.as_ref().ok()).collect();
    let missing = checked.iter().find_map(|c| c.as_ref().err()).cloned();
    let mut sealed = Vec::with_capacity(dests.len());
    {
        let mut state = stream.lock();
        for (dest, bucket) in dests.into_iter().zip(buckets) {
            if !present.contains(&&bucket) {
                // A due or flushed batch stays due: it is delivered as soon as the bucket exists.
                if let Some(buffer) = state.buffers.get_mut(&dest) {
                    buffer.forced = true;
                }
                continue;
            }
            let hints = hints_of(&state.def.destination, &state.pipeline, &dest, settings);
            let Some(buffer) = state.buffers.get_mut(&dest) else { continue };
            let records = buffer.take(hints.size_bytes);
            let Some(oldest_arrival_ms) = records.oldest_arrival_ms() else { continue };
            let id = state.next_seal;
            state.next_seal += 1;
            sealed.push((seal_for(&state, id, dest, bucket, &records, oldest_arrival_ms), records));
        }
    }
    if !sealed.is_empty() {
        // A batch whose seal is not durable is not written: after a crash it would be
        // sealed again under another key. Its records go back to the buffer and sealing
        // is retried.
        let notes: Vec<_> = sealed.iter().map(|(seal, _)| Note::Seal(seal.clone()).entry()).collect();
        let journaled = stream.journal.append(&notes).await;
        let mut state = stream.lock();
        if let Err(err) = journaled {
            for (seal, records) in sealed {
                let buffer = state.buffers.entry(seal.dest).or_default();
                buffer.restore(records);
                buffer.forced = true;
            }
            return Err(format!("could not journal a seal: {err}"));
        }
        for (seal, records) in sealed {
            state.pending.push_back(Pending { seal, records: Arc::new(records) });
        }
    }
    missing.map_or(Ok(()), Err)
}

/// The seal of an object of `dest` holding `records`: its key, compression and framing.
fn seal_for(state: &StreamState, id: u64, dest: Dest, bucket: String, records: &Records, oldest_arrival_ms: i64) -> Seal {
    let destination = &state.def.destination;
    let backup = destination.backup();
    let (config, append_delimiter) = match &dest {
        Dest::Backup => (backup.as_ref().unwrap_or(destination), false),
        Dest::Error(_) => (destination, false),
        Dest::Data(_) | Dest::Lambda => (destination, destination.append_delimiter()),
    };
    let compression = config.compression();
    let extension = match dest {
        Dest::Backup => compression.extension().to_owned(),
        _ => destination.extension(),
    };
    let parts = match &dest {
        Dest::Error(kind) => match destination.error_output_prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(prefix) => naming::parse_prefix(prefix).unwrap_or_default(),
            // No ErrorOutputPrefix: `<Prefix><error-output-type>/` and the time path.
            None => vec![Part::Literal(format!("{}{kind}/", destination.prefix.as_deref().unwrap_or_default()))],
        },
        _ => naming::parse_prefix(config.prefix.as_deref().unwrap_or_default()).unwrap_or_default(),
    };
    let uuid = uuid::Uuid::new_v4().to_string();
    let partition_names: Vec<String> = parts
        .iter()
        .filter_map(|p| if let Part::PartitionKey { name, .. } = p { Some(name.clone()) } else { None })
        .fold(Vec::new(), |mut names, name| {
            if !names.contains(&name) {
                names.push(name);
            }
            names
        });
    let no_values = Vec::new();
    let values = if let Dest::Data(values) = &dest { values } else { &no_values };
    let inputs = naming::KeyInputs {
        stream: &state.def.name,
        version: state.def.version,
        oldest_arrival_ms,
        zone: destination.zone(),
        uuid: &uuid,
        extension: &extension,
        partition: (&partition_names, values),
    };
    let error_type = if let Dest::Error(kind) = &dest { Some(kind.as_str()) } else { None };
    let key = naming::object_key(&parts, &inputs, error_type, naming::random_string);
    Seal {
        id,
        seqs: records.seq_ranges(),
        routing: Routing::of(destination),
        dest,
        bucket,
        key,
        compression: compression_name(compression).to_owned(),
        zip_entry: uuid::Uuid::new_v4().to_string(),
        append_delimiter,
        content_type: "application/octet-stream".to_owned(),
        records: records.len() as u64,
    }
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

fn kind_of(dest: &Dest) -> &'static str {
    match dest {
        Dest::Data(_) => "data",
        Dest::Error(_) => "error",
        Dest::Backup => "backup",
        Dest::Lambda => "lambda",
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
    stream.journal.append(&[Note::Delivered { seal: seal.id }.entry()]).await.map_err(|e| e.to_string())?;
    let (needed_from, done) = {
        let mut state = stream.lock();
        // Writes end in any order; a batch discarded meanwhile (the stream deleted) is gone.
        let Some(done) = state.pending.iter().position(|p| p.seal.id == seal.id).and_then(|at| state.pending.remove(at)) else {
            return Ok(());
        };
        let bytes = done.records.bytes();
        state.held_bytes = state.held_bytes.saturating_sub(bytes);
        let _ = held_total.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| Some(held.saturating_sub(bytes)));
        state.last_error = None;
        let kind = kind_of(&seal.dest);
        *state.delivered_objects.entry(kind).or_default() += 1;
        state.recent.push_back(DeliveredObject {
            kind,
            bucket: seal.bucket.clone(),
            key: seal.key.clone(),
            bytes: written,
            records: seal.records,
            delivered_ms: now_ms(),
        });
        while state.recent.len() > RECENT_OBJECTS_MAX {
            state.recent.pop_front();
        }
        tracing::info!(stream = %state.def.name, kind, key = %seal.key, records = seal.records, bytes = written, "delivered");
        (state.needed_from(), done)
    };
    let stream = stream.clone();
    // Freeing a batch of a million records takes milliseconds: not under the lock, and
    // not on an async thread.
    let _ = tokio::task::spawn_blocking(move || {
        drop(done);
        stream.journal.truncate(needed_from)
    })
    .await;
    Ok(())
}
