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

/// A temp file that will become an object, a part or a metadata file.
#[derive(Debug)]
pub struct Staged {
    file: File,
    path: PathBuf,
    committed: bool,
}

impl Staged {
    pub(super) fn create(tmp_dir: &Path) -> io::Result<Staged> {
        let path = tmp_dir.join(uuid::Uuid::new_v4().simple().to_string());
        let file = OpenOptions::new().write(true).read(true).create_new(true).open(&path)?;
        Ok(Staged { file, path, committed: false })
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

    /// Records that the caller renamed the temp file away, so drop leaves it alone.
    pub(super) fn mark_committed(&mut self) {
        self.committed = true;
    }

    /// Renames the temp file to `dest`; the caller fsyncs `dest`'s folder.
    pub(super) fn rename_to(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.committed = true;
        Ok(())
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
