//! A delivery stream's journal: every record acknowledged by PutRecord/PutRecordBatch,
//! the seal of every batch before its object is written, and the mark that its object
//! was written. Replayed at start, so nothing acknowledged is lost and no batch is
//! delivered under two keys.
//!
//! Layout: `.firelake/journal/<stream uid>/<first seq>.seg`, segments of entries
//! `[len u32][crc32 u32][payload]`. A torn tail (a crash mid-write) fails its length or
//! CRC check and is cut off at replay. Appends share fsyncs (group commit): each appender
//! writes under a lock, then waits, without holding a thread, for one fsync that covers
//! its bytes; one fsync runs at a time, on a blocking thread, for everyone waiting.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use super::Durability;
use super::atomic::FolderSyncs;

/// A segment is closed once it holds this many bytes.
const SEGMENT_BYTES_MAX: u64 = 32 * 1024 * 1024;
/// Longest entry replay accepts (a 4 MiB batch is split into per-record entries).
const ENTRY_BYTES_MAX: u32 = 8 * 1024 * 1024;

const PUT: u8 = 1;
/// Entries of firelake before 0.2 (a seal and a delivered mark of Firehose's), read and
/// passed on as [`Entry::Legacy`].
const LEGACY_SEAL: u8 = 2;
const LEGACY_DELIVERED: u8 = 3;
const NOTE: u8 = 4;
const PUT_FLAGGED: u8 = 5;

/// One journal entry. The journal numbers records by seq and knows nothing else of them:
/// what its owner needs besides (seals, delivered marks) is an opaque [`Entry::Note`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An acknowledged record. `flags` are its owner's (for Firehose, decisions made when
    /// the record arrived that replay must repeat).
    Put { seq: u64, arrival_ms: i64, flags: u8, data: Bytes },
    /// The owner's own entry; `max_seq` is the highest seq it refers to, so that a
    /// segment is kept while any of its notes may still matter.
    Note { max_seq: u64, payload: Bytes },
    /// An entry an earlier firelake wrote, passed on as written (`kind` 2 or 3).
    Legacy { kind: u8, max_seq: u64, payload: Bytes },
}

impl Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        match self {
            Entry::Put { seq, arrival_ms, flags, data } => {
                // Unflagged records keep the format every firelake reads.
                out.push(if *flags == 0 { PUT } else { PUT_FLAGGED });
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&arrival_ms.to_le_bytes());
                if *flags != 0 {
                    out.push(*flags);
                }
                out.extend_from_slice(data);
            }
            Entry::Note { max_seq, payload } => {
                out.push(NOTE);
                out.extend_from_slice(&max_seq.to_le_bytes());
                out.extend_from_slice(payload);
            }
            Entry::Legacy { kind, payload, .. } => {
                out.push(*kind);
                out.extend_from_slice(payload);
            }
        }
        let payload_len = (out.len() - start - 8) as u32;
        let crc = crc32fast::hash(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(payload: &[u8]) -> Option<Entry> {
        let (&kind, rest) = payload.split_first()?;
        let u64_at = |b: &[u8]| b.get(..8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
        match kind {
            PUT => Some(Entry::Put {
                seq: u64_at(rest)?,
                arrival_ms: u64_at(rest.get(8..)?)? as i64,
                flags: 0,
                data: Bytes::copy_from_slice(rest.get(16..)?),
            }),
            PUT_FLAGGED => Some(Entry::Put {
                seq: u64_at(rest)?,
                arrival_ms: u64_at(rest.get(8..)?)? as i64,
                flags: *rest.get(16)?,
                data: Bytes::copy_from_slice(rest.get(17..)?),
            }),
            NOTE => Some(Entry::Note { max_seq: u64_at(rest)?, payload: Bytes::copy_from_slice(rest.get(8..)?) }),
            LEGACY_DELIVERED => Some(Entry::Legacy { kind, max_seq: u64_at(rest)?, payload: Bytes::copy_from_slice(rest) }),
            LEGACY_SEAL => {
                let seal: serde_json::Value = serde_json::from_slice(rest).ok()?;
                let max_seq = seal.get("last_seq")?.as_u64()?;
                Some(Entry::Legacy { kind, max_seq, payload: Bytes::copy_from_slice(rest) })
            }
            _ => None,
        }
    }

    /// The highest seq this entry refers to.
    fn max_seq(&self) -> u64 {
        match self {
            Entry::Put { seq, .. } => *seq,
            Entry::Note { max_seq, .. } | Entry::Legacy { max_seq, .. } => *max_seq,
        }
    }
}

/// What replay read: every valid entry, in the order written, and the next seq.
#[derive(Debug, Default)]
pub struct Recovered {
    pub entries: Vec<Entry>,
    /// The next seq to hand out: past every seq any entry refers to.
    pub next_seq: u64,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
    /// Highest seq any entry of the segment refers to.
    max_seq: u64,
}

struct Writer {
    file: Arc<File>,
    bytes: u64,
    /// Bytes appended since the journal opened: the group commit's positions.
    position: u64,
    segments: Vec<Segment>,
    /// Segments closed since the last fsync began: the next one syncs them and the
    /// folder (for the new segment's name) before it counts their positions durable.
    closed: Vec<Arc<File>>,
}

/// The group commit's state, watched by everyone waiting for an fsync.
#[derive(Debug, Default)]
struct Synced {
    /// Everything before this position is durable.
    position: u64,
    /// An fsync is running (one at a time).
    running: bool,
    /// The last fsync that failed: the positions it was to make durable, and why.
    failed: Option<(u64, u64, io::ErrorKind, String)>,
}

pub struct Journal {
    dir: PathBuf,
    durability: Durability,
    writer: Arc<Mutex<Writer>>,
    synced: Arc<watch::Sender<Synced>>,
}

impl Journal {
    /// Opens (creating) the journal in `dir` and replays it.
    pub fn open(dir: &Path, durability: Durability, syncs: &FolderSyncs) -> io::Result<(Journal, Recovered)> {
        fs::create_dir_all(dir)?;
        let mut paths: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if let Some(first) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok())
                && path.extension().is_some_and(|e| e == "seg")
            {
                paths.push((first, path));
            }
        }
        paths.sort();
        let mut entries: Vec<Entry> = Vec::new();
        let mut segments = Vec::new();
        let last = paths.len().saturating_sub(1);
        for (i, (first_seq, path)) in paths.into_iter().enumerate() {
            let (read, valid_len) = read_segment(&path)?;
            if i == last && valid_len < fs::metadata(&path)?.len() {
                tracing::warn!(path = %path.display(), valid_len, "cutting off a torn journal tail");
                OpenOptions::new().write(true).open(&path)?.set_len(valid_len)?;
            }
            let max_seq = read.iter().map(Entry::max_seq).max().unwrap_or(first_seq);
            segments.push(Segment { first_seq, path, max_seq });
            entries.extend(read);
        }
        let next_seq = entries.iter().map(Entry::max_seq).max().unwrap_or(0) + 1;
        let recovered = Recovered { entries, next_seq };
        // Appends always go to a new segment, so a segment is never reopened for writing.
        let first = recovered.next_seq;
        let path = dir.join(format!("{first}.seg"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        syncs.sync_parent(&path)?;
        segments.push(Segment { first_seq: first, path, max_seq: first });
        let journal = Journal {
            dir: dir.to_path_buf(),
            durability,
            writer: Arc::new(Mutex::new(Writer { file: Arc::new(file), bytes: 0, position: 0, segments, closed: Vec::new() })),
            synced: Arc::new(watch::Sender::new(Synced::default())),
        };
        Ok((journal, recovered))
    }

    /// Writes entries without waiting for them to be durable; returns the position to
    /// pass to [`Journal::sync`]. Entries of one call stay together and in order. A write
    /// to the page cache: brief enough for an async thread.
    pub fn write(&self, entries: &[Entry]) -> io::Result<u64> {
        let mut buf = Vec::new();
        for entry in entries {
            entry.encode(&mut buf);
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if writer.bytes >= SEGMENT_BYTES_MAX {
            self.rotate(&mut writer, entries.first().map(Entry::max_seq).unwrap_or(0))?;
        }
        if let Err(err) = (&*writer.file).write_all(&buf) {
            // A failed write (a full disk) must not leave half an entry for later entries
            // to follow: replay would stop there. Cut the segment back to where it was.
            if let Err(cut) = writer.file.set_len(writer.bytes) {
                tracing::error!(%cut, "could not cut back a failed journal write; the journal is now read up to it");
            }
            return Err(err);
        }
        writer.bytes += buf.len() as u64;
        writer.position += buf.len() as u64;
        let max = entries.iter().map(Entry::max_seq).max().unwrap_or(0);
        if let Some(segment) = writer.segments.last_mut() {
            segment.max_seq = segment.max_seq.max(max);
        }
        Ok(writer.position)
    }

    /// Waits until everything up to `position` is durable. One fsync runs at a time and
    /// covers every write made before it began; whoever finds none running starts one.
    pub async fn sync(&self, position: u64) -> io::Result<()> {
        if self.durability == Durability::None {
            return Ok(());
        }
        let mut watcher = self.synced.subscribe();
        loop {
            {
                let synced = watcher.borrow_and_update();
                if synced.position >= position {
                    return Ok(());
                }
                if let Some((from, to, kind, why)) = &synced.failed
                    && (*from..=*to).contains(&position)
                {
                    return Err(io::Error::new(*kind, why.clone()));
                }
            }
            let lead = self.synced.send_if_modified(|synced| !std::mem::replace(&mut synced.running, true));
            if lead {
                self.start_fsync();
            }
            // A change is never missed: `watcher` saw every value up to the check above.
            if watcher.changed().await.is_err() {
                return Err(io::Error::other("the journal was closed"));
            }
        }
    }

    /// Runs one group fsync on a blocking thread: first the segments closed since the
    /// last one and the folder, then the open segment. It completes and reports even if
    /// the request that started it goes away, so waiters are never left without a leader.
    fn start_fsync(&self) {
        let (file, closed, covered) = {
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            (writer.file.clone(), std::mem::take(&mut writer.closed), writer.position)
        };
        let (dir, writer, synced) = (self.dir.clone(), self.writer.clone(), self.synced.clone());
        tokio::task::spawn_blocking(move || {
            let result = (|| {
                if !closed.is_empty() {
                    for segment in &closed {
                        segment.sync_data()?;
                    }
                    File::open(&dir)?.sync_all()?;
                }
                file.sync_data()
            })();
            if result.is_err() {
                // Not durable: the next fsync tries these segments again.
                let mut writer = writer.lock().unwrap_or_else(|p| p.into_inner());
                writer.closed.splice(0..0, closed);
            }
            synced.send_modify(|synced| {
                synced.running = false;
                match result {
                    Ok(()) => synced.position = synced.position.max(covered),
                    Err(err) => synced.failed = Some((synced.position + 1, covered, err.kind(), err.to_string())),
                }
            });
        });
    }

    /// Writes and waits: the common case.
    pub async fn append(&self, entries: &[Entry]) -> io::Result<()> {
        let position = self.write(entries)?;
        self.sync(position).await
    }

    /// Starts a new segment. Called on a request's thread, so it makes nothing durable
    /// itself: the next fsync syncs the closed segment and the folder.
    fn rotate(&self, writer: &mut Writer, first_seq: u64) -> io::Result<()> {
        let path = self.dir.join(format!("{first_seq}.seg"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let closed = std::mem::replace(&mut writer.file, Arc::new(file));
        if self.durability == Durability::Fsync {
            writer.closed.push(closed);
        }
        writer.bytes = 0;
        writer.segments.push(Segment { first_seq, path, max_seq: first_seq });
        Ok(())
    }

    /// Deletes the oldest closed segments whose every entry refers to seqs below
    /// `needed_from` (the owner needs none of them again). The files are removed after
    /// the lock is released, so appends never wait on an unlink.
    pub fn truncate(&self, needed_from: u64) -> io::Result<()> {
        let removed: Vec<Segment> = {
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let open = writer.segments.len().saturating_sub(1);
            let done = writer.segments[..open].iter().take_while(|s| s.max_seq < needed_from).count();
            writer.segments.drain(..done).collect()
        };
        for segment in removed {
            fs::remove_file(&segment.path)?;
            tracing::debug!(first_seq = segment.first_seq, "journal segment delivered and removed");
        }
        Ok(())
    }
}

/// Reads a segment's valid entries and how many bytes they take.
fn read_segment(path: &Path) -> io::Result<(Vec<Entry>, u64)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut entries = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > ENTRY_BYTES_MAX || bytes.len() - at - 8 < len as usize {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len as usize];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(entry) = Entry::decode(payload) else { break };
        entries.push(entry);
        at += 8 + len as usize;
    }
    Ok((entries, at as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(seq: u64) -> Entry {
        Entry::Put { seq, arrival_ms: seq as i64 * 10, flags: (seq % 3) as u8, data: Bytes::from(format!("record {seq}")) }
    }

    fn note(max_seq: u64) -> Entry {
        Entry::Note { max_seq, payload: Bytes::from(format!("note {max_seq}")) }
    }

    fn seqs(recovered: &Recovered) -> Vec<u64> {
        recovered.entries.iter().filter_map(|e| if let Entry::Put { seq, .. } = e { Some(*seq) } else { None }).collect()
    }

    fn open(dir: &Path) -> (Journal, Recovered) {
        Journal::open(dir, Durability::Fsync, &FolderSyncs::new(Durability::Fsync)).unwrap()
    }

    #[tokio::test]
    async fn replays_every_entry_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let written = vec![put(1), put(2), put(3), note(2), note(0), put(4), note(4)];
        {
            let (journal, recovered) = open(dir.path());
            assert_eq!(recovered.next_seq, 1);
            journal.append(&written[..3]).await.unwrap();
            journal.append(&written[3..5]).await.unwrap();
            journal.append(&written[5..]).await.unwrap();
        }
        let (_, recovered) = open(dir.path());
        assert_eq!(recovered.entries, written);
        assert_eq!(recovered.next_seq, 5);
    }

    #[test]
    fn entries_of_earlier_versions_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        let legacy_seal = Entry::Legacy { kind: LEGACY_SEAL, max_seq: 7, payload: Bytes::from_static(br#"{"first_seq":1,"last_seq":7}"#) };
        let legacy_delivered = Entry::Legacy { kind: LEGACY_DELIVERED, max_seq: 7, payload: Bytes::copy_from_slice(&7u64.to_le_bytes()) };
        for entry in [&legacy_seal, &legacy_delivered] {
            entry.encode(&mut bytes);
        }
        fs::write(dir.path().join("1.seg"), bytes).unwrap();
        let (_, recovered) = open(dir.path());
        assert_eq!(recovered.entries, [legacy_seal, legacy_delivered]);
        assert_eq!(recovered.next_seq, 8);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (journal, _) = open(dir.path());
            journal.append(&[put(1), put(2)]).await.unwrap();
        }
        let segment = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).find(|p| fs::metadata(p).unwrap().len() > 0).unwrap();
        let len = fs::metadata(&segment).unwrap().len();
        OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 3).unwrap();
        let (journal, recovered) = open(dir.path());
        assert_eq!(seqs(&recovered), [1]);
        journal.append(&[put(2)]).await.unwrap();
        drop(journal);
        let (_, recovered) = open(dir.path());
        assert_eq!(seqs(&recovered), [1, 2]);
    }

    #[tokio::test]
    async fn delivered_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = open(dir.path());
        journal.append(&[put(1), note(1)]).await.unwrap();
        {
            let mut writer = journal.writer.lock().unwrap();
            journal.rotate(&mut writer, 2).unwrap();
        }
        journal.append(&[note(0), put(2)]).await.unwrap();
        journal.truncate(1).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "seq 1 is still needed");
        journal.truncate(2).unwrap();
        let names: Vec<String> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["2.seg"]);
        drop(journal);
        let (_, recovered) = open(dir.path());
        assert_eq!(seqs(&recovered), [2]);
    }

    /// Concurrent appenders across a segment rotation: every append returns (no lost
    /// wake-up leaves one waiting), and replay finds every record, in both segments.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_across_a_rotation_are_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = open(dir.path());
        let journal = Arc::new(journal);
        let record = Bytes::from(vec![b'j'; 256 * 1024]);
        let tasks: Vec<_> = (0..160u64)
            .map(|seq| {
                let (journal, data) = (journal.clone(), record.clone());
                tokio::spawn(async move { journal.append(&[Entry::Put { seq: seq + 1, arrival_ms: 0, flags: 0, data }]).await })
            })
            .collect();
        for task in tasks {
            tokio::time::timeout(std::time::Duration::from_secs(60), task).await.expect("an append never returned").unwrap().unwrap();
        }
        assert!(fs::read_dir(dir.path()).unwrap().count() >= 2, "40 MiB of appends rotate the 32 MiB segment");
        drop(journal);
        let (_, recovered) = open(dir.path());
        let mut seqs = seqs(&recovered);
        seqs.sort();
        assert_eq!(seqs, (1..=160).collect::<Vec<_>>());
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in [vec![255u8; 100], vec![0u8; 7], vec![8, 0, 0, 0, 0, 0, 0, 0, 1, 2], Vec::new()] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join("1.seg"), bytes).unwrap();
            let (_, recovered) = open(dir.path());
            assert!(recovered.entries.is_empty());
        }
    }
}
