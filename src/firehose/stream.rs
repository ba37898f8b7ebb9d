//! One delivery stream: its definition, its buffers (one per partition, error-output
//! type and the backup), the put path with its backpressure, and recovery from the
//! journal.
//!
//! The journal holds the records as they were put (the only non-deterministic input),
//! and for each object a seal before it is written and a delivered mark after. A seal
//! names its destination (`Dest`), the seqs whose outputs for that destination it holds
//! and the routing configuration it was made with; since routing is a pure function
//! ([`Pipeline::route`]), recovery rebuilds a sealed object byte for byte from the raw
//! records, and buffers again exactly the outputs no seal holds.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

use crate::firehose::api::{S3Destination, Tag};
use crate::firehose::buffer::{Buffer, Hints, Records};
use crate::firehose::pipeline::{ACTIVE_PARTITIONS_MAX, Dest, Outcome, Pipeline};
use crate::store::journal::{Entry, Journal, Recovered};

/// The destination ID AWS gives the one destination of every stream.
pub const DESTINATION_ID: &str = "destinationId-000000000001";
/// Objects remembered per stream for `/_firelake/streams`.
pub const RECENT_OBJECTS_MAX: usize = 20;

/// A put record's flag: its data outputs went to error output, because they would have
/// opened a partition beyond [`ACTIVE_PARTITIONS_MAX`].
pub const FLAG_OVERFLOW: u8 = 1;

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

/// The part of a destination that decides where a record's outputs go: a seal carries
/// it, so recovery routes a sealed record as it was routed, whatever changed since.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Routing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_configuration: Option<crate::firehose::api::ProcessingConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_partitioning_configuration: Option<Value>,
}

impl Routing {
    pub fn of(destination: &S3Destination) -> Routing {
        Routing {
            prefix: destination.prefix.clone(),
            processing_configuration: destination.processing_configuration.clone(),
            dynamic_partitioning_configuration: destination.dynamic_partitioning_configuration.clone(),
        }
    }

    pub fn pipeline(&self) -> Result<Pipeline, String> {
        Pipeline::compile(&S3Destination {
            prefix: self.prefix.clone(),
            processing_configuration: self.processing_configuration.clone(),
            dynamic_partitioning_configuration: self.dynamic_partitioning_configuration.clone(),
            ..S3Destination::default()
        })
    }
}

/// What one object will be: journaled before it is written, so that replaying it writes
/// the same key with the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seal {
    pub id: u64,
    pub dest: Dest,
    /// The seqs whose outputs for `dest` the object holds, as inclusive ranges.
    pub seqs: Vec<(u64, u64)>,
    pub routing: Routing,
    pub bucket: String,
    pub key: String,
    pub compression: String,
    pub zip_entry: String,
    pub append_delimiter: bool,
    pub content_type: String,
    pub records: u64,
}

impl Seal {
    pub fn min_seq(&self) -> u64 {
        self.seqs.first().map_or(0, |r| r.0)
    }

    pub fn max_seq(&self) -> u64 {
        self.seqs.last().map_or(0, |r| r.1)
    }

    fn holds(&self, seq: u64) -> bool {
        let at = self.seqs.partition_point(|r| r.1 < seq);
        self.seqs.get(at).is_some_and(|r| r.0 <= seq)
    }
}

/// Firehose's entries in the journal (the journal sees them as opaque notes). Written
/// once per object, so the size of a seal inline does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Note {
    Seal(Seal),
    Delivered {
        seal: u64,
    },
    /// The Lambda processor's answers for every sub-record of these seqs, journaled
    /// before any of their outputs is buffered: the one input of routing that is not a
    /// function of the records.
    Processed {
        outcomes: Vec<(u64, Vec<Outcome>)>,
    },
}

impl Note {
    pub fn entry(&self) -> Entry {
        let max_seq = match self {
            Note::Seal(seal) => seal.max_seq(),
            Note::Delivered { .. } => 0,
            Note::Processed { outcomes } => outcomes.iter().map(|(seq, _)| *seq).max().unwrap_or(0),
        };
        Entry::Note { max_seq, payload: Bytes::from(serde_json::to_vec(self).unwrap_or_default()) }
    }
}

/// A sealed batch waiting for its object to be written. Cloned cheaply (the records are
/// shared), so the delivery task can work on it without holding the stream's lock.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seal: Seal,
    pub records: Arc<Records>,
}

/// An object delivered, for status.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveredObject {
    pub kind: &'static str,
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
    pub records: u64,
    pub delivered_ms: i64,
}

pub struct StreamState {
    pub def: StreamDef,
    /// The processors of `def`, compiled.
    pub pipeline: Arc<Pipeline>,
    pub buffers: BTreeMap<Dest, Buffer>,
    pub pending: VecDeque<Pending>,
    pub next_seq: u64,
    pub next_seal: u64,
    /// Undelivered bytes: the buffers and the sealed batches.
    pub held_bytes: u64,
    /// Flush requests: answered once no buffer or sealed batch holds a seq up to theirs.
    pub flushes: Vec<(u64, oneshot::Sender<Result<(), String>>)>,
    pub recent: VecDeque<DeliveredObject>,
    pub last_error: Option<String>,
    pub deleted: bool,
    /// Objects delivered, by kind ("data", "error", "backup").
    pub delivered_objects: BTreeMap<&'static str, u64>,
    /// Records routed to error output, by error-output type.
    pub failed_records: BTreeMap<String, u64>,
    /// Lambda processor batches, by how they ended ("answered", "failed after retries").
    pub lambda_invocations: BTreeMap<&'static str, u64>,
    /// The first seq of each batch the Lambda stage holds (`firehose::transform`), out of
    /// every buffer until its outputs are buffered: still needed, so the journal keeps it
    /// and a flush waits for it.
    pub transforming: Vec<u64>,
}

impl StreamState {
    /// The lowest seq still needed: no buffer, sealed batch or batch in the Lambda
    /// stage holds one below it.
    pub fn needed_from(&self) -> u64 {
        let buffered = self.buffers.values().filter_map(Buffer::first_seq);
        let sealed = self.pending.iter().map(|p| p.seal.min_seq());
        buffered.chain(sealed).chain(self.transforming.iter().copied()).min().unwrap_or(self.next_seq)
    }

    /// The Lambda stage is done with the batch that begins at `first_seq`.
    pub fn transformed(&mut self, first_seq: Option<u64>) {
        if let Some(at) = first_seq.and_then(|seq| self.transforming.iter().position(|s| *s == seq)) {
            self.transforming.swap_remove(at);
        }
    }

    /// The data partitions that hold records (the active ones).
    pub fn active_partitions(&self) -> impl Iterator<Item = &Vec<String>> {
        self.buffers.iter().filter_map(|(dest, buffer)| match dest {
            Dest::Data(partition) if !buffer.is_empty() => Some(partition),
            _ => None,
        })
    }
}

pub struct Stream {
    pub journal: Journal,
    state: Mutex<StreamState>,
    /// Wakes the delivery task.
    pub notify: Notify,
    /// Wakes the Lambda stage's task.
    pub lambda_notify: Notify,
}

impl Stream {
    pub fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the stream's tasks (delivery and the Lambda stage) to look at it again.
    pub fn wake(&self) {
        self.notify.notify_one();
        self.lambda_notify.notify_one();
    }

    /// A stream from its definition and its replayed journal: sealed, undelivered
    /// batches are rebuilt, and every output that no seal holds is buffered again.
    pub fn recover(def: StreamDef, journal: Journal, recovered: Recovered) -> std::io::Result<Stream> {
        let pipeline = Arc::new(Pipeline::compile(&def.destination).map_err(std::io::Error::other)?);
        let backup = def.destination.backup_enabled();
        let mut raw: BTreeMap<u64, (i64, u8, Bytes)> = BTreeMap::new();
        let mut seals: Vec<Seal> = Vec::new();
        let mut delivered: HashSet<u64> = HashSet::new();
        let mut processed: HashMap<u64, Vec<Outcome>> = HashMap::new();
        let mut legacy_delivered = 0u64;
        for entry in recovered.entries {
            match entry {
                Entry::Put { seq, arrival_ms, flags, data } => {
                    raw.insert(seq, (arrival_ms, flags, data));
                }
                Entry::Note { payload, .. } => match serde_json::from_slice::<Note>(&payload) {
                    Ok(Note::Seal(seal)) => seals.push(seal),
                    Ok(Note::Delivered { seal }) => {
                        delivered.insert(seal);
                    }
                    Ok(Note::Processed { outcomes }) => processed.extend(outcomes),
                    Err(err) => tracing::error!(stream = %def.name, %err, "skipping an unreadable journal note"),
                },
                Entry::Legacy { kind: 2, payload, .. } => match legacy_seal(&payload) {
                    Some(seal) => seals.push(seal),
                    None => tracing::error!(stream = %def.name, "skipping an unreadable journal seal"),
                },
                Entry::Legacy { max_seq, .. } => legacy_delivered = legacy_delivered.max(max_seq),
            }
        }
        for seal in &seals {
            if seal.id & LEGACY_SEAL_ID != 0 && seal.max_seq() <= legacy_delivered {
                delivered.insert(seal.id);
            }
        }
        let mut pipelines: HashMap<String, Arc<Pipeline>> = HashMap::new();
        let mut pipeline_of = |routing: &Routing| -> std::io::Result<Arc<Pipeline>> {
            let key = serde_json::to_string(routing).unwrap_or_default();
            if let Some(p) = pipelines.get(&key) {
                return Ok(p.clone());
            }
            let p = Arc::new(routing.pipeline().map_err(std::io::Error::other)?);
            pipelines.insert(key, p.clone());
            Ok(p)
        };
        let mut pending = VecDeque::new();
        let mut held = 0u64;
        // For each seq, the destinations a seal already holds and the routing it used.
        let mut covered: HashMap<u64, (Vec<Dest>, Option<Routing>)> = HashMap::new();
        for seal in &seals {
            for (&seq, _) in raw.range(seal.min_seq()..=seal.max_seq()).filter(|(seq, _)| seal.holds(**seq)) {
                let entry = covered.entry(seq).or_default();
                entry.0.push(seal.dest.clone());
                if seal.dest != Dest::Backup && entry.1.is_none() {
                    entry.1 = Some(seal.routing.clone());
                }
            }
            if delivered.contains(&seal.id) {
                continue;
            }
            let routed = pipeline_of(&seal.routing)?;
            let mut records = Records::default();
            for (&seq, (arrival_ms, flags, data)) in raw.range(seal.min_seq()..=seal.max_seq()).filter(|(seq, _)| seal.holds(**seq)) {
                if seal.dest == Dest::Backup {
                    records.push(seq, *arrival_ms, data.clone());
                    continue;
                }
                let outcomes = processed.get(&seq).map(Vec::as_slice);
                for (dest, bytes) in routed.route(data, *arrival_ms, flags & FLAG_OVERFLOW != 0, outcomes) {
                    if dest == seal.dest {
                        records.push(seq, *arrival_ms, bytes);
                    }
                }
            }
            held += records.bytes();
            pending.push_back(Pending { seal: seal.clone(), records: Arc::new(records) });
        }
        let mut buffers: BTreeMap<Dest, Buffer> = BTreeMap::new();
        for (&seq, (arrival_ms, flags, data)) in &raw {
            let (done, routing) = covered.remove(&seq).unwrap_or_default();
            let routed = match &routing {
                Some(routing) => pipeline_of(routing)?,
                None => pipeline.clone(),
            };
            let outcomes = processed.get(&seq).map(Vec::as_slice);
            for (dest, bytes) in routed.route(data, *arrival_ms, flags & FLAG_OVERFLOW != 0, outcomes) {
                if !done.contains(&dest) {
                    held += bytes.len() as u64;
                    buffers.entry(dest).or_default().push(seq, *arrival_ms, bytes);
                }
            }
            if backup && !done.contains(&Dest::Backup) {
                held += data.len() as u64;
                buffers.entry(Dest::Backup).or_default().push(seq, *arrival_ms, data.clone());
            }
        }
        let buffered: usize = buffers.values().map(Buffer::len).sum();
        if buffered > 0 || !pending.is_empty() {
            tracing::info!(stream = %def.name, buffered, sealed = pending.len(), "replayed undelivered records from the journal");
        }
        let next_seal = seals.iter().map(|s| s.id & !LEGACY_SEAL_ID).max().unwrap_or(0) + 1;
        let state = StreamState {
            def,
            pipeline,
            buffers,
            pending,
            next_seq: recovered.next_seq,
            next_seal,
            held_bytes: held,
            flushes: Vec::new(),
            recent: VecDeque::new(),
            last_error: None,
            deleted: false,
            delivered_objects: BTreeMap::new(),
            failed_records: BTreeMap::new(),
            lambda_invocations: BTreeMap::new(),
            transforming: Vec::new(),
        };
        let needed_from = state.needed_from();
        journal.truncate(needed_from)?;
        Ok(Stream { journal, state: Mutex::new(state), notify: Notify::new(), lambda_notify: Notify::new() })
    }

    /// Routes, journals and buffers records; answers for each whether it was accepted
    /// (its seq) or throttled, and the bytes it added to what the stream holds. The
    /// caller waits for the journal position returned before answering. Routing (jq,
    /// de-aggregation, decompression) runs before the lock is taken.
    /// `held_total` counts what every stream holds; it grows here, under this stream's
    /// lock, so a delete (which subtracts what the stream holds, under the same lock)
    /// never misses a put's bytes.
    pub fn put(&self, records: Vec<Bytes>, now_ms: i64, settings: &Settings, held_total: &AtomicU64) -> std::io::Result<Put> {
        let pipeline = self.lock().pipeline.clone();
        // Each output names its destination by a slot of `dests`, interned here, outside
        // the lock: under it a record costs index operations, and each buffer one lookup
        // per put, however many records go to it.
        let mut dests = Dests::default();
        let routed: Option<Vec<Vec<(usize, Bytes)>>> = (!pipeline.is_identity())
            .then(|| records.iter().map(|data| dests.intern_all(pipeline.route(data, now_ms, false, None))).collect());
        let mut state = self.lock();
        if state.deleted {
            return Ok(Put { results: Vec::new(), position: None, wake: false, deleted: true });
        }
        if !Arc::ptr_eq(&pipeline, &state.pipeline) {
            // The destination changed while routing: route again, under the lock.
            drop(state);
            return self.put(records, now_ms, settings, held_total);
        }
        let backup = state.def.destination.backup_enabled();
        let was_idle = state.buffers.values().all(Buffer::is_empty);
        // The Lambda stage sleeps until its oldest record's deadline: a first record wakes it.
        let lambda_was_empty = pipeline.lambda.is_some() && state.buffers.get(&Dest::Lambda).is_none_or(Buffer::is_empty);
        let unpartitioned = dests.intern(Dest::Data(Vec::new()));
        let mut results = Vec::with_capacity(records.len());
        let mut entries = Vec::with_capacity(records.len());
        let mut outputs: Vec<Vec<(usize, Bytes)>> = Vec::with_capacity(records.len());
        let mut added = 0u64;
        let mut opened_partitions = false;
        let mut active = if pipeline.partitioned() { state.active_partitions().count() } else { 0 };
        let mut routed = routed.map(Vec::into_iter);
        for data in records {
            let mut out = match routed.as_mut().and_then(Iterator::next) {
                Some(out) => out,
                None => vec![(unpartitioned, data.clone())],
            };
            let mut flags = 0;
            if pipeline.partitioned() {
                // The data partitions this record would open (an output may repeat one).
                let mut opens: Vec<usize> = Vec::new();
                for (slot, _) in &out {
                    if dests.is_data(*slot) && !dests.is_open(*slot, &state.buffers) && !opens.contains(slot) {
                        opens.push(*slot);
                    }
                }
                if active + opens.len() > ACTIVE_PARTITIONS_MAX {
                    flags |= FLAG_OVERFLOW;
                    out = dests.intern_all(pipeline.route(&data, now_ms, true, None));
                } else {
                    active += opens.len();
                    opened_partitions |= !opens.is_empty();
                    for slot in opens {
                        dests.opened(slot);
                    }
                }
            }
            let len = out.iter().map(|(_, b)| b.len() as u64).sum::<u64>() + if backup { data.len() as u64 } else { 0 };
            let stream_full = state.held_bytes + added + len > settings.stream_bytes_max;
            let total_full = held_total.load(Ordering::SeqCst) + added + len > settings.total_bytes_max;
            if stream_full || total_full {
                results.push(None);
                continue;
            }
            let seq = state.next_seq + entries.len() as u64;
            results.push(Some(seq));
            added += len;
            entries.push(Entry::Put { seq, arrival_ms: now_ms, flags, data });
            outputs.push(out);
        }
        if entries.is_empty() {
            return Ok(Put { results, position: None, wake: false, deleted: false });
        }
        // Written under the stream's lock, so the journal holds puts in seq order.
        let position = self.journal.write(&entries)?;
        state.next_seq += entries.len() as u64;
        // Grouped by destination in seq order, so each buffer still receives its records in
        // seq order.
        let mut grouped: Vec<Vec<(u64, Bytes)>> = vec![Vec::new(); dests.len()];
        let mut backed_up = Vec::new();
        for (entry, out) in entries.into_iter().zip(outputs) {
            let Entry::Put { seq, data, .. } = entry else { continue };
            for (slot, bytes) in out {
                grouped[slot].push((seq, bytes));
            }
            if backup {
                backed_up.push((seq, data));
            }
        }
        if backup {
            grouped.push(backed_up);
        }
        let hints = hints_of(&state.def.destination, &pipeline, &Dest::Data(Vec::new()), settings);
        let lambda_hints = hints_of(&state.def.destination, &pipeline, &Dest::Lambda, settings);
        let mut full = false;
        let slots = dests.into_dests().into_iter().chain(backup.then_some(Dest::Backup));
        for (dest, records) in slots.zip(grouped).filter(|(_, records)| !records.is_empty()) {
            if let Dest::Error(kind) = &dest {
                *state.failed_records.entry(kind.clone()).or_default() += records.len() as u64;
            }
            let size = if dest == Dest::Lambda { lambda_hints.size_bytes } else { hints.size_bytes };
            let buffer = state.buffers.entry(dest).or_default();
            for (seq, bytes) in records {
                buffer.push(seq, now_ms, bytes);
            }
            full |= buffer.bytes() >= size;
        }
        state.held_bytes += added;
        held_total.fetch_add(added, Ordering::SeqCst);
        // The delivery task sleeps until the oldest record's deadline, so it needs waking
        // only for a new buffer (a new oldest record) or a full one, not for every put.
        let pressed = state.held_bytes > settings.stream_bytes_max / 2;
        let wake = was_idle || lambda_was_empty || full || pressed || opened_partitions;
        Ok(Put { results, position: Some(position), wake, deleted: false })
    }
}

/// The destinations of one put's outputs, each given a slot number once.
#[derive(Default)]
struct Dests {
    slots: HashMap<Dest, usize>,
    /// By slot: the destination, and whether it is a data partition this put opened.
    dests: Vec<(Dest, bool)>,
    /// By slot, once asked: whether its buffer held records before this put.
    open: Vec<Option<bool>>,
}

impl Dests {
    fn intern(&mut self, dest: Dest) -> usize {
        if let Some(slot) = self.slots.get(&dest) {
            return *slot;
        }
        let slot = self.dests.len();
        self.slots.insert(dest.clone(), slot);
        self.dests.push((dest, false));
        self.open.push(None);
        slot
    }

    fn intern_all(&mut self, outputs: Vec<(Dest, Bytes)>) -> Vec<(usize, Bytes)> {
        outputs.into_iter().map(|(dest, bytes)| (self.intern(dest), bytes)).collect()
    }

    fn len(&self) -> usize {
        self.dests.len()
    }

    fn is_data(&self, slot: usize) -> bool {
        matches!(self.dests[slot].0, Dest::Data(_))
    }

    /// Whether the slot's partition holds records, before this put or opened by it.
    fn is_open(&mut self, slot: usize, buffers: &BTreeMap<Dest, Buffer>) -> bool {
        let (dest, opened) = &self.dests[slot];
        *opened || *self.open[slot].get_or_insert_with(|| buffers.get(dest).is_some_and(|b| !b.is_empty()))
    }

    fn opened(&mut self, slot: usize) {
        self.dests[slot].1 = true;
    }

    fn into_dests(self) -> Vec<Dest> {
        self.dests.into_iter().map(|(dest, _)| dest).collect()
    }
}

/// What a put did.
pub struct Put {
    /// Per record: its seq, or `None` when it was throttled.
    pub results: Vec<Option<u64>>,
    /// The journal position to wait for, when anything was written.
    pub position: Option<u64>,
    pub wake: bool,
    /// The stream was deleted under the put.
    pub deleted: bool,
}

/// Seal ids given to seals an earlier firelake wrote (their first seq, with this bit).
const LEGACY_SEAL_ID: u64 = 1 << 63;

/// A seal an earlier firelake wrote: one contiguous range of an unpartitioned stream.
fn legacy_seal(payload: &[u8]) -> Option<Seal> {
    #[derive(Deserialize)]
    struct Legacy {
        first_seq: u64,
        last_seq: u64,
        bucket: String,
        key: String,
        compression: String,
        zip_entry: String,
        append_delimiter: bool,
        content_type: String,
        records: u64,
    }
    let legacy: Legacy = serde_json::from_slice(payload).ok()?;
    Some(Seal {
        id: LEGACY_SEAL_ID | legacy.first_seq,
        dest: Dest::Data(Vec::new()),
        seqs: vec![(legacy.first_seq, legacy.last_seq)],
        routing: Routing::default(),
        bucket: legacy.bucket,
        key: legacy.key,
        compression: legacy.compression,
        zip_entry: legacy.zip_entry,
        append_delimiter: legacy.append_delimiter,
        content_type: legacy.content_type,
        records: legacy.records,
    })
}

/// The hints a buffer works with: the backup's own for the backup, the Lambda
/// processor's for records waiting for it, else the destination's; with --buffer-interval-cap applied, and a size that fits under the
/// stream's byte cap (so a small cap still lets size flushes happen).
pub fn hints_of(destination: &S3Destination, pipeline: &Pipeline, dest: &Dest, settings: &Settings) -> Hints {
    let mut hints = match dest {
        Dest::Backup => destination.backup().map(|b| b.hints()).unwrap_or_else(|| destination.hints()),
        Dest::Lambda => match &pipeline.lambda {
            Some(stage) => Hints { size_bytes: stage.size_bytes, interval_ms: stage.interval_ms },
            None => destination.hints(),
        },
        _ => destination.hints(),
    };
    if let Some(cap) = settings.interval_cap_ms {
        hints.interval_ms = hints.interval_ms.min(cap);
    }
    hints.size_bytes = hints.size_bytes.min(settings.stream_bytes_max / 2).max(1);
    hints
}
