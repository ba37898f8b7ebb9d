//! The Lambda stage of one stream: its own task, which takes due batches of the records
//! waiting for the Lambda processor and invokes the function on several of them at once
//! (at most `--lambda-workers-max`, the workers a function may run at once), then commits
//! each batch's answer **in the order the batches were taken**: the partition limit is
//! decided, a `Processed` note with every record's outcome is journaled, and only then are
//! the outputs buffered (transformed records into their partitions, failures as error
//! documents). Records therefore reach their buffers in seq order whatever order the
//! invocations end in, and nothing is buffered downstream before its outcome is durable.
//!
//! A taken batch is in no buffer until it is committed; `StreamState::transforming`
//! holds its first seq, so the journal keeps its records and a flush waits for it, and its
//! bytes stay counted in what the stream holds (the put path's backpressure).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::firehose::buffer::Records;
use crate::firehose::delivery::report_failure;
use crate::firehose::pipeline::lambda::{BatchFailure, EventRecord, PAYLOAD_BYTES_MAX};
use crate::firehose::pipeline::{self, ACTIVE_PARTITIONS_MAX, Dest, LambdaStage, Outcome, Pipeline};
use crate::firehose::stream::{Note, Settings, Stream, hints_of};
use crate::lambda::{InvokeError, Lambda};
use crate::store::now_ms;

/// Longest wait between two attempts of one Lambda invocation.
const LAMBDA_RETRY_DELAY_MS_MAX: u64 = 2_000;
/// Room kept in an invocation's 6 MB for the event around the records' base64.
const LAMBDA_EVENT_OVERHEAD_BYTES: u64 = 256 * 1024;
/// Longest wait between two attempts to journal a batch's answer.
const JOURNAL_RETRY_DELAY_MS_MAX: u64 = 5_000;

/// A batch handed to the function: its records, what it was taken with, and the task
/// that invokes the function (with its retries) and answers each record's outcome.
struct Batch {
    records: Arc<Records>,
    pipeline: Arc<Pipeline>,
    stage: LambdaStage,
    invocation: JoinHandle<(Vec<Outcome>, bool)>,
}

enum Next {
    Batch(Batch),
    /// Nothing due: look again at this time (or when woken).
    Wait(Option<i64>),
    Deleted,
}

/// Runs the stream's Lambda stage until the stream is deleted or, at shutdown, until no
/// record waits for the function.
pub async fn run(
    stream: Arc<Stream>,
    settings: Settings,
    lambda: Arc<Lambda>,
    held_total: Arc<AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let most = lambda.settings().workers_max.max(1);
    let mut in_flight: VecDeque<Batch> = VecDeque::new();
    loop {
        let shutting_down = *shutdown.borrow();
        let mut deadline = None;
        while in_flight.len() < most {
            match next(&stream, &settings, &lambda, shutting_down) {
                Next::Batch(batch) => in_flight.push_back(batch),
                Next::Wait(at) => {
                    deadline = at;
                    break;
                }
                Next::Deleted => return,
            }
        }
        let room = in_flight.len() < most;
        let Some(front) = in_flight.front_mut() else {
            if shutting_down {
                // Nothing waits for the function: the delivery task may finish.
                stream.notify.notify_one();
                return;
            }
            let sleep = deadline.map(|d| Duration::from_millis((d - now_ms()).max(0) as u64)).unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                () = stream.lambda_notify.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        let sleep = deadline.map(|d| Duration::from_millis((d - now_ms()).max(0) as u64)).unwrap_or(Duration::from_secs(3600));
        // More may be taken while the oldest batch runs: wake for new records and deadlines too.
        let answered = tokio::select! {
            answered = &mut front.invocation => Some(answered),
            () = stream.lambda_notify.notified(), if room => None,
            () = tokio::time::sleep(sleep), if room => None,
            _ = shutdown.changed() => None,
        };
        let Some(answered) = answered else { continue };
        let Some(batch) = in_flight.pop_front() else { continue };
        let (outcomes, answered) = answered.unwrap_or_else(|err| {
            // The invocation's task ended without an answer (it panicked): the batch fails
            // as an invocation that could not be made, so its records still reach error output.
            let failure = BatchFailure { code: "Lambda.InvokeFailed", message: format!("the invocation did not complete: {err}") };
            (failed_all(batch.records.len(), &failure, 1), false)
        });
        if commit(&stream, &batch, outcomes, answered, &held_total, &mut shutdown).await.is_err() {
            // Shutting down with an answer that cannot be journaled: the records stay in the
            // journal, unprocessed, and go through the function again after the next start.
            return;
        }
    }
}

/// Takes the next due batch and starts its invocation, or says when one is due.
fn next(stream: &Arc<Stream>, settings: &Settings, lambda: &Arc<Lambda>, shutting_down: bool) -> Next {
    let mut state = stream.lock();
    if state.deleted {
        return Next::Deleted;
    }
    let pipeline = state.pipeline.clone();
    let hints = hints_of(&state.def.destination, &pipeline, &Dest::Lambda, settings);
    let flush_upto = state.flushes.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
    let largest = state.buffers.iter().filter(|(_, b)| !b.is_empty()).max_by_key(|(_, b)| b.bytes()).map(|(dest, _)| dest.clone());
    let pressed = state.held_bytes > settings.stream_bytes_max / 2 && largest == Some(Dest::Lambda);
    let Some(buffer) = state.buffers.get_mut(&Dest::Lambda).filter(|b| !b.is_empty()) else { return Next::Wait(None) };
    // A flush waits for every record up to its seq; holding over half of what the stream
    // may hold, the largest buffer goes now (as in the delivery task).
    let flushed = buffer.first_seq().is_some_and(|seq| seq <= flush_upto);
    if !(shutting_down || flushed || pressed || buffer.due(now_ms(), hints)) {
        return Next::Wait(buffer.deadline_ms(hints));
    }
    // The event carries base64 (4 bytes for 3): it must fit the 6 MB payload.
    let payload_room = (PAYLOAD_BYTES_MAX as u64 - LAMBDA_EVENT_OVERHEAD_BYTES) / 4 * 3;
    let records = buffer.take(hints.size_bytes.min(payload_room));
    let Some(stage) = pipeline.lambda.clone() else {
        // The processor was removed by an update: the records go on without it.
        for (seq, arrival_ms, data) in records.entries() {
            state.buffers.entry(Dest::Data(Vec::new())).or_default().push(seq, arrival_ms, data.clone());
        }
        drop(state);
        stream.notify.notify_one();
        return Next::Wait(Some(now_ms()));
    };
    let Some(first_seq) = records.first_seq() else { return Next::Wait(None) };
    state.transforming.push(first_seq);
    let (stream_arn, account, region) = (state.def.arn(), state.def.account.clone(), state.def.region.clone());
    drop(state);
    let records = Arc::new(records);
    let invocation = tokio::spawn(invoke(lambda.clone(), records.clone(), stage.clone(), stream_arn, account, region));
    Next::Batch(Batch { records, pipeline, stage, invocation })
}

/// Every record of a batch failed for the same reason.
fn failed_all(n: usize, failure: &BatchFailure, attempts: u32) -> Vec<Outcome> {
    let ending_ms = now_ms();
    (0..n).map(|_| Outcome::Failed { code: failure.code.to_owned(), message: failure.message.clone(), attempts, ending_ms }).collect()
}

/// Invokes the function on one batch (NumberOfRetries + 1 attempts in all, with backoff)
/// and answers each record's outcome, and whether the function answered.
async fn invoke(
    lambda: Arc<Lambda>,
    records: Arc<Records>,
    stage: LambdaStage,
    stream_arn: String,
    account: String,
    region: String,
) -> (Vec<Outcome>, bool) {
    let mut ids = Vec::with_capacity(records.len());
    let mut last: Option<u64> = None;
    let mut n = 0;
    for (seq, _, _) in records.entries() {
        n = if last == Some(seq) { n + 1 } else { 0 };
        last = Some(seq);
        ids.push(format!("{seq}.{n}"));
    }
    let event_records: Vec<EventRecord<'_>> =
        records.entries().zip(&ids).map(|((_, arrival_ms, data), id)| EventRecord { id: id.clone(), arrival_ms, data }).collect();
    let mut failure = BatchFailure { code: "Lambda.FunctionError", message: String::new() };
    let attempts = stage.retries + 1;
    for attempt in 1..=attempts {
        // Every attempt is a new invocation id with the same record ids, as on AWS.
        let event = pipeline::lambda::event(&uuid::Uuid::new_v4().to_string(), &stream_arn, &region, &event_records);
        let answered = lambda.invoke(&account, &region, &stage.arn, Bytes::from(event)).await;
        failure = match answered {
            Ok(invoked) if invoked.function_error.is_none() => {
                match pipeline::lambda::outcomes(&ids, &invoked.payload, attempt, now_ms()) {
                    Ok(outcomes) => return (outcomes, true),
                    Err(failure) => failure,
                }
            }
            Ok(invoked) => {
                let message = serde_json::from_slice::<serde_json::Value>(&invoked.payload)
                    .ok()
                    .and_then(|v| v.get("errorMessage").and_then(|m| m.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&invoked.payload).chars().take(1000).collect());
                BatchFailure { code: "Lambda.FunctionError", message }
            }
            Err(InvokeError::NotFound(message)) => BatchFailure { code: "Lambda.FunctionNotFound", message },
            Err(InvokeError::TooLarge(message)) => BatchFailure { code: "Lambda.FunctionError", message },
            Err(InvokeError::Failed(message)) => BatchFailure { code: "Lambda.InvokeFailed", message },
        };
        tracing::warn!(stream = %stream_arn, function = %stage.arn, attempt, code = failure.code, message = %failure.message, "Lambda processing failed");
        if attempt < attempts {
            tokio::time::sleep(Duration::from_millis((100u64 << attempt.min(5)).min(LAMBDA_RETRY_DELAY_MS_MAX))).await;
        }
    }
    (failed_all(records.len(), &failure, attempts), false)
}

/// Commits a batch's outcomes: decides the active-partition limit, journals them, then
/// buffers the outputs. A journal that refuses the note is retried with backoff (the
/// answer is kept, the function is not invoked again); `Err` only when shutting down.
async fn commit(
    stream: &Arc<Stream>,
    batch: &Batch,
    mut outcomes: Vec<Outcome>,
    answered: bool,
    held_total: &AtomicU64,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ()> {
    let Batch { records, pipeline, stage, .. } = batch;
    // The active-partition limit is decided now, and journaled with the outcome.
    if pipeline.has_partition_keys() {
        let mut active: std::collections::HashSet<Vec<String>> = stream.lock().active_partitions().cloned().collect();
        for outcome in &mut outcomes {
            if let Outcome::Ok { data, keys, overflow } = outcome
                && let Ok(partition) = pipeline.partition_of(data, keys)
                && !active.contains(&partition)
            {
                if active.len() >= ACTIVE_PARTITIONS_MAX {
                    *overflow = true;
                } else {
                    active.insert(partition);
                }
            }
        }
    }
    let mut by_seq: Vec<(u64, Vec<Outcome>)> = Vec::new();
    for ((seq, _, _), outcome) in records.entries().zip(&outcomes) {
        match by_seq.last_mut() {
            Some((last, list)) if *last == seq => list.push(outcome.clone()),
            _ => by_seq.push((seq, vec![outcome.clone()])),
        }
    }
    let entry = Note::Processed { outcomes: by_seq }.entry();
    let mut failures: u32 = 0;
    loop {
        if stream.lock().deleted {
            // DeleteDeliveryStream discarded what the stream held, these records included.
            stream.lock().transformed(records.first_seq());
            return Ok(());
        }
        match stream.journal.append(std::slice::from_ref(&entry)).await {
            Ok(()) => break,
            Err(err) => {
                failures += 1;
                report_failure(stream, format!("could not journal the Lambda processor's answer: {err}"));
                if *shutdown.borrow() {
                    return Err(());
                }
                let delay = (100u64 << failures.min(6)).min(JOURNAL_RETRY_DELAY_MS_MAX);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(delay)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    let mut state = stream.lock();
    state.transformed(records.first_seq());
    if state.deleted {
        return Ok(());
    }
    let mut added = 0u64;
    for ((seq, arrival_ms, data), outcome) in records.entries().zip(&outcomes) {
        if let Some((dest, bytes)) = pipeline.after_lambda(stage, data, outcome, arrival_ms) {
            if let Dest::Error(kind) = &dest {
                *state.failed_records.entry(kind.clone()).or_default() += 1;
            }
            added += bytes.len() as u64;
            state.buffers.entry(dest).or_default().push(seq, arrival_ms, bytes);
        }
    }
    *state.lambda_invocations.entry(if answered { "answered" } else { "failed after retries" }).or_default() += 1;
    let taken = records.bytes();
    state.held_bytes = (state.held_bytes + added).saturating_sub(taken);
    if added >= taken {
        held_total.fetch_add(added - taken, Ordering::SeqCst);
    } else {
        let _ = held_total.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| Some(h.saturating_sub(taken - added)));
    }
    drop(state);
    stream.notify.notify_one();
    Ok(())
}
