//! Every delivery stream, by (account, region, name): create, change, delete, put,
//! flush, shutdown and status.
//!
//! Every change to a stream's definition (create, UpdateDestination, tags, encryption,
//! delete) runs through [`Firehose::change`] or [`Firehose::create`] /
//! [`Firehose::delete`], which hold one lock from reading the current definition to
//! saving the new one: two changes never both start from the same definition, and a
//! deleted stream is never saved again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::firehose::delivery::deliver;
use crate::firehose::pipeline::Dest;
use crate::firehose::stream::{Settings, Stream, StreamDef, hints_of};
use crate::lambda::Lambda;
use crate::store::{Store, now_ms};

type Key = (String, String, String);

fn key_of(def: &StreamDef) -> Key {
    (def.account.clone(), def.region.clone(), def.name.clone())
}

/// Why a definition change did not happen.
#[derive(Debug)]
pub enum ChangeError<E> {
    /// The change itself refused (its own error).
    Refused(E),
    /// The stream was deleted meanwhile.
    Deleted,
    Io(std::io::Error),
}

/// What `create` asks its caller to answer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A stream of that name exists.
    Exists,
    /// How many streams the account and region have (the caller's quota decides).
    Quota(usize),
    /// Every stream keeps its journal open: the open-file limit allows no more.
    OpenFiles { streams: usize, open_files: u64 },
}

/// File descriptors kept for connections, objects being written and the rest.
const OPEN_FILES_RESERVED: u64 = 512;

/// How many streams the open-file limit leaves room for (each keeps one journal file
/// open), and the limit itself.
fn open_stream_budget() -> (usize, u64) {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
    (soft.saturating_sub(OPEN_FILES_RESERVED) as usize, soft)
}

pub struct Firehose {
    pub settings: Settings,
    store: Arc<Store>,
    /// Runs the Lambda processors' functions.
    lambda: Arc<Lambda>,
    streams: Mutex<BTreeMap<Key, Arc<Stream>>>,
    /// Held from reading a definition to saving its successor (blocking threads only).
    changes: Mutex<()>,
    held_total: Arc<AtomicU64>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Firehose {
    /// Loads every saved stream, replays its journal and starts its delivery task.
    pub fn start(store: Arc<Store>, settings: Settings, lambda: Arc<Lambda>) -> std::io::Result<Firehose> {
        let (shutdown, _) = watch::channel(false);
        let firehose = Firehose {
            settings,
            store: store.clone(),
            lambda,
            streams: Mutex::new(BTreeMap::new()),
            changes: Mutex::new(()),
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
        let key = key_of(&def);
        let stream = Arc::new(Stream::recover(def, journal, recovered)?);
        self.held_total.fetch_add(stream.lock().held_bytes, Ordering::SeqCst);
        let task = tokio::spawn(deliver(
            stream.clone(),
            self.store.clone(),
            self.settings.clone(),
            self.shutdown.subscribe(),
            self.held_total.clone(),
            self.lambda.clone(),
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

    /// Saves and starts a new stream unless one of its name exists or the quota is
    /// reached (`refuse` says which error then). Blocking: call from a blocking thread.
    pub fn create<E>(&self, def: StreamDef, refuse: impl FnOnce(Refusal) -> Option<E>) -> Result<(), ChangeError<E>> {
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let exists = self.get(&def.account, &def.region, &def.name).is_some();
        let all = self.streams.lock().unwrap_or_else(|p| p.into_inner()).len();
        let (budget, soft) = open_stream_budget();
        let refusal = if exists {
            Refusal::Exists
        } else if all >= budget {
            Refusal::OpenFiles { streams: budget, open_files: soft }
        } else {
            Refusal::Quota(self.count(&def.account, &def.region))
        };
        if let Some(err) = refuse(refusal) {
            return Err(ChangeError::Refused(err));
        }
        let uid = def.uid.clone();
        let created = self.save(&def).and_then(|()| self.open(def));
        if let Err(err) = created {
            // A stream that could not start leaves nothing behind to come back at restart.
            if let Err(cleanup) = self.store.delete_stream(&uid) {
                tracing::error!(%cleanup, "could not remove the definition of a stream that failed to start");
            }
            return Err(ChangeError::Io(err));
        }
        Ok(())
    }

    fn save(&self, def: &StreamDef) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(def).map_err(std::io::Error::other)?;
        self.store.save_stream(&def.uid, &bytes)
    }

    /// Changes a stream's definition: `change` gets the current one and answers the new
    /// one (or `None` for no change), which is saved, then made the stream's. Serialised
    /// with every other change. Blocking: call from a blocking thread.
    pub fn change<E>(
        &self,
        stream: &Stream,
        change: impl FnOnce(&StreamDef) -> Result<Option<StreamDef>, E>,
    ) -> Result<(), ChangeError<E>> {
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let current = {
            let state = stream.lock();
            if state.deleted {
                return Err(ChangeError::Deleted);
            }
            state.def.clone()
        };
        let Some(def) = change(&current).map_err(ChangeError::Refused)? else { return Ok(()) };
        let pipeline =
            crate::firehose::pipeline::Pipeline::compile(&def.destination).map_err(|why| ChangeError::Io(std::io::Error::other(why)))?;
        self.save(&def).map_err(ChangeError::Io)?;
        let mut state = stream.lock();
        if def.destination != current.destination {
            state.pipeline = Arc::new(pipeline);
        }
        state.def = def;
        drop(state);
        // The buffering hints may have changed: the delivery task looks again.
        stream.wake();
        Ok(())
    }

    /// Deletes a stream and discards what it buffered, as AWS does. Blocking.
    pub fn delete(&self, stream: &Arc<Stream>) -> std::io::Result<()> {
        let _changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let (key, uid, held) = {
            let mut state = stream.lock();
            if state.deleted {
                return Ok(());
            }
            state.deleted = true;
            state.buffers.clear();
            state.pending.clear();
            for (_, waiter) in state.flushes.drain(..) {
                let _ = waiter.send(Err("the delivery stream was deleted".to_owned()));
            }
            (key_of(&state.def), state.def.uid.clone(), std::mem::take(&mut state.held_bytes))
        };
        let _ = self.held_total.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |total| Some(total.saturating_sub(held)));
        self.streams.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        stream.wake();
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

    /// Journals and buffers records; answers for each whether it was accepted (`Some`)
    /// or throttled (`None`), once they are durable; `None` for all when the stream was
    /// deleted under the put. The journal write is a copy into the page cache, made on
    /// the calling thread; the wait for the fsync holds no thread.
    pub async fn put(&self, stream: &Stream, records: Vec<Bytes>) -> std::io::Result<Option<Vec<Option<u64>>>> {
        let put = stream.put(records, now_ms(), &self.settings, &self.held_total)?;
        if put.deleted {
            return Ok(None);
        }
        if let Some(position) = put.position {
            stream.journal.sync(position).await?;
        }
        if put.wake {
            stream.wake();
        }
        Ok(Some(put.results))
    }

    /// Asks the streams named `name` (all when `None`) to deliver everything buffered now
    /// (every partition, error output and backup), and waits for it; answers each
    /// stream's outcome.
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
                for buffer in state.buffers.values_mut().filter(|b| !b.is_empty()) {
                    buffer.forced = true;
                }
                format!("{}/{}/{}", state.def.account, state.def.region, state.def.name)
            };
            stream.wake();
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

    /// Per-stream status for `/_firelake/streams`: each buffer (data partition, error
    /// output type, backup) with what it holds and when it flushes.
    pub fn status(&self) -> Value {
        let streams: Vec<Arc<Stream>> = self.streams.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let now = now_ms();
        let list: Vec<Value> = streams
            .iter()
            .map(|stream| {
                let state = stream.lock();
                let destination = &state.def.destination;
                let data_hints = hints_of(destination, &state.pipeline, &Dest::Data(Vec::new()), &self.settings);
                let buffers: Vec<Value> = state
                    .buffers
                    .iter()
                    .filter(|(_, b)| !b.is_empty())
                    .map(|(dest, buffer)| {
                        let hints = hints_of(destination, &state.pipeline, dest, &self.settings);
                        let (kind, name) = match dest {
                            Dest::Data(values) => ("data", values.join("/")),
                            Dest::Error(kind) => ("error", kind.clone()),
                            Dest::Backup => ("backup", String::new()),
                            Dest::Lambda => ("lambda", String::new()),
                        };
                        serde_json::json!({
                            "kind": kind,
                            "partition": name,
                            "records": buffer.len(),
                            "bytes": buffer.bytes(),
                            "oldest_arrival": buffer.oldest_arrival_ms().map(crate::s3::xml::timestamp),
                            "next_flush_due": buffer.deadline_ms(hints).map(crate::s3::xml::timestamp),
                        })
                    })
                    .collect();
                let data: Vec<&crate::firehose::buffer::Buffer> =
                    state.buffers.iter().filter(|(d, _)| matches!(d, Dest::Data(_))).map(|(_, b)| b).collect();
                serde_json::json!({
                    "name": state.def.name,
                    "account": state.def.account,
                    "region": state.def.region,
                    "status": if state.def.active(now) { "ACTIVE" } else { "CREATING" },
                    "version": state.def.version,
                    "bucket": destination.bucket(),
                    "buffered_records": data.iter().map(|b| b.len()).sum::<usize>(),
                    "buffered_bytes": data.iter().map(|b| b.bytes()).sum::<u64>(),
                    "active_partitions": state.active_partitions().count(),
                    "buffers": buffers,
                    "sealed_batches": state.pending.len(),
                    "oldest_arrival": data.iter().filter_map(|b| b.oldest_arrival_ms()).min().map(crate::s3::xml::timestamp),
                    "next_flush_due": data.iter().filter_map(|b| b.deadline_ms(data_hints)).min().map(crate::s3::xml::timestamp),
                    "effective_interval_seconds": data_hints.interval_ms as f64 / 1000.0,
                    "size_hint_bytes": data_hints.size_bytes,
                    "delivered_objects": state.delivered_objects,
                    "failed_records": state.failed_records,
                    "lambda_invocations": state.lambda_invocations,
                    "lambda_batches_in_flight": state.transforming.len(),
                    "recent_objects": state.recent,
                    "last_error": state.last_error,
                    "ignored": state.def.ignored,
                })
            })
            .collect();
        serde_json::json!({ "streams": list, "held_bytes_total": self.held_total.load(Ordering::SeqCst) })
    }
}
