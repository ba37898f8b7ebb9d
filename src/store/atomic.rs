//! Atomic, durable file writes: a temp file in `.firelake/tmp` (the same file system
//! as every destination), written, fsynced, renamed into place, and the destination
//! folder fsynced. A temp file that is never committed is deleted when dropped, and
//! whatever a crash leaves in `.firelake/tmp` is swept at start.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Durability;

// The fault below must never reach a release build: it would publish torn files.
#[cfg(all(feature = "fault-injection", not(debug_assertions)))]
compile_error!("the `fault-injection` feature is for test builds only and cannot be enabled in a release build");

/// A temp file that will become an object, a part or a metadata file.
#[derive(Debug)]
pub struct Staged {
    file: File,
    path: PathBuf,
    committed: bool,
    /// Under the test-only fault: the bytes held back from the publish, and their offset.
    #[cfg(feature = "fault-injection")]
    held_back: Option<(u64, Vec<u8>)>,
}

impl Staged {
    pub(super) fn create(tmp_dir: &Path) -> io::Result<Staged> {
        let path = tmp_dir.join(uuid::Uuid::new_v4().simple().to_string());
        let file = OpenOptions::new().write(true).read(true).create_new(true).open(&path)?;
        Ok(Staged {
            file,
            path,
            committed: false,
            #[cfg(feature = "fault-injection")]
            held_back: None,
        })
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the bytes durable (when asked to) before the rename that publishes them.
    pub(super) fn sync(&mut self, durability: Durability) -> io::Result<()> {
        self.file.flush()?;
        if durability == Durability::Fsync {
            // fdatasync: the bytes and the length, which is all a reader of the file needs.
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Under the test-only fault: holds back the second half of an object's bytes, to be
    /// written only after the publish (see [`fault`]).
    #[cfg(feature = "fault-injection")]
    pub(super) fn tear_under_fault(&mut self) -> io::Result<()> {
        if fault::torn_publish() {
            self.held_back = Some(fault::hold_back_tail(&mut self.file)?);
        }
        Ok(())
    }

    /// Records that the caller renamed the temp file away, so drop leaves it alone.
    pub(super) fn mark_committed(&mut self) {
        self.committed = true;
        #[cfg(feature = "fault-injection")]
        if let Some((offset, tail)) = self.held_back.take() {
            fault::write_tail_late(&self.file, offset, tail);
        }
    }

    /// Renames the temp file to `dest`; the caller fsyncs `dest`'s folder.
    pub(super) fn rename_to(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.mark_committed();
        Ok(())
    }
}

/// A test-only fault that tears published files, so that the crash test can show it
/// notices a torn object. Compiled in only with the `fault-injection` feature, which
/// refuses to build without debug assertions (so never in a release build), and active
/// only when the process also has `FIRELAKE_FAULT=torn-publish` in its environment.
///
/// The fault publishes an object before all its bytes are written (only objects: the
/// crash test checks them, and firelake's own files would only stop it sooner):
/// [`Staged::tear_under_fault`] cuts the file to half its length and keeps the other half, the rename publishes that
/// half, and [`Staged::mark_committed`] has a thread write the rest through the file a
/// while later, while the request goes on (so the fault costs no throughput and holds no
/// lock). Without a crash every file ends complete (only its metadata goes stale, so the
/// ETag is derived from the bytes); a SIGKILL before the late write leaves every file
/// published in the last [`fault::TORN_MS`] torn, as a rename before the last write would.
#[cfg(feature = "fault-injection")]
mod fault {
    use std::fs::File;
    use std::io::{self, Read, Seek, SeekFrom};
    use std::os::unix::fs::FileExt;
    use std::sync::OnceLock;
    use std::time::Duration;

    /// How long a published file stays torn: longer than a round of the crash test (at
    /// most 600 ms from start to kill), so that a kill tears whatever its round published,
    /// however slow the machine.
    pub(super) const TORN_MS: u64 = 1000;

    pub(super) fn torn_publish() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| std::env::var("FIRELAKE_FAULT").is_ok_and(|v| v == "torn-publish"))
    }

    /// Cuts `file` to half its length; answers the offset and bytes cut off.
    pub(super) fn hold_back_tail(file: &mut File) -> io::Result<(u64, Vec<u8>)> {
        let half = file.metadata()?.len() / 2;
        file.seek(SeekFrom::Start(half))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        file.set_len(half)?;
        Ok((half, tail))
    }

    pub(super) fn write_tail_late(file: &File, offset: u64, tail: Vec<u8>) {
        let file = file.try_clone().expect("fault injection: a second handle on a staged file");
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(TORN_MS));
            file.write_all_at(&tail, offset).expect("fault injection: writing the held-back bytes");
        });
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Makes renames and unlinks durable by fsyncing their folder, with one fsync shared by
/// every change made in that folder before it started (group commit): concurrent writes
/// into one folder, the common case, cost one folder fsync between them.
#[derive(Debug)]
pub struct FolderSyncs {
    durability: Durability,
    folders: Mutex<HashMap<PathBuf, Arc<FolderSync>>>,
}

#[derive(Debug, Default)]
struct FolderSync {
    /// Tickets handed out: one per change waiting to be made durable.
    issued: AtomicU64,
    /// Every ticket up to this one is durable. The lock also serialises the fsyncs.
    durable: Mutex<u64>,
}

/// Folders remembered before the table is emptied; forgetting one only costs an fsync.
const FOLDERS_REMEMBERED_MAX: usize = 4096;

impl FolderSyncs {
    pub fn new(durability: Durability) -> FolderSyncs {
        FolderSyncs { durability, folders: Mutex::new(HashMap::new()) }
    }

    /// Makes a change already made in `path`'s folder durable.
    pub fn sync_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(parent) => self.sync_folder(parent),
            None => Ok(()),
        }
    }

    pub fn sync_folder(&self, folder: &Path) -> io::Result<()> {
        if self.durability == Durability::None {
            return Ok(());
        }
        let sync = {
            let mut folders = self.folders.lock().unwrap_or_else(|p| p.into_inner());
            if folders.len() >= FOLDERS_REMEMBERED_MAX && !folders.contains_key(folder) {
                folders.clear();
            }
            folders.entry(folder.to_path_buf()).or_default().clone()
        };
        let ticket = sync.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut durable = sync.durable.lock().unwrap_or_else(|p| p.into_inner());
        if *durable >= ticket {
            return Ok(());
        }
        // Every ticket issued so far belongs to a change made before this fsync starts.
        let covered = sync.issued.load(Ordering::SeqCst);
        match File::open(folder) {
            Ok(dir) => dir.sync_all()?,
            // The folder was removed since (a delete pruned it once it was empty): what was
            // renamed into it is gone too, and the removal is made durable by its remover.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        *durable = covered;
        Ok(())
    }
}

/// Writes `bytes` to `dest` atomically: readers see the old file or the new one.
pub(super) fn write_file(tmp_dir: &Path, dest: &Path, bytes: &[u8], syncs: &FolderSyncs) -> io::Result<()> {
    let mut staged = Staged::create(tmp_dir)?;
    staged.file().write_all(bytes)?;
    staged.sync(syncs.durability)?;
    staged.rename_to(dest)?;
    syncs.sync_parent(dest)
}

/// Deletes every temp file a previous run left behind; returns how many.
pub(super) fn sweep(tmp_dir: &Path) -> io::Result<usize> {
    let mut swept = 0;
    for entry in fs::read_dir(tmp_dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
        swept += 1;
    }
    Ok(swept)
}
