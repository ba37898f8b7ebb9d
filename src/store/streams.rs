//! Delivery streams' files: their definitions and their journals.

use std::fs;
use std::io;

use super::{Store, atomic, journal};

impl Store {
    /// Saves a delivery stream's definition (atomically).
    pub fn save_stream(&self, uid: &str, definition: &[u8]) -> io::Result<()> {
        atomic::write_file(&self.sys.join("tmp"), &self.sys.join("streams").join(format!("{uid}.json")), definition, &self.syncs)
    }

    /// Every saved delivery stream definition.
    pub fn load_streams(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.sys.join("streams"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                out.push(fs::read(&path)?);
            }
        }
        Ok(out)
    }

    /// Removes a delivery stream's definition, then its journal (what it buffered).
    pub fn delete_stream(&self, uid: &str) -> io::Result<()> {
        let path = self.sys.join("streams").join(format!("{uid}.json"));
        match fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        self.syncs.sync_parent(&path)?;
        match fs::remove_dir_all(self.sys.join("journal").join(uid)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Opens a delivery stream's journal and replays it.
    pub fn open_journal(&self, uid: &str) -> io::Result<(journal::Journal, journal::Recovered)> {
        journal::Journal::open(&self.sys.join("journal").join(uid), self.durability, &self.syncs)
    }
}
