//! Atomic, durable file writes: a temp file in `.firelake/tmp` (the same file system
//! as every destination), written, fsynced, renamed into place, and the destination
//! folder fsynced. A temp file that is never committed is deleted when dropped, and
//! whatever a crash leaves in `.firelake/tmp` is swept at start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
            self.file.sync_all()?;
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

/// Writes `bytes` to `dest` atomically: readers see the old file or the new one.
pub(super) fn write_file(tmp_dir: &Path, dest: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let mut staged = Staged::create(tmp_dir)?;
    staged.file().write_all(bytes)?;
    staged.sync(durability)?;
    staged.rename_to(dest)?;
    sync_parent(dest, durability)
}

/// Makes a rename or unlink in `path`'s folder durable.
pub(super) fn sync_parent(path: &Path, durability: Durability) -> io::Result<()> {
    if durability == Durability::Fsync
        && let Some(parent) = path.parent()
    {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
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
