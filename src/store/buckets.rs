//! Buckets: a bucket is a real folder `<root>/<B>` (never a symbolic link); creating,
//! listing and deleting them under the bucket's lock.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{BucketInfo, Result, Store, StoreError, valid_bucket_name};

/// What CreateBucket found.
pub enum Created {
    New,
    Existing(Box<BucketInfo>),
    /// Something that is not a bucket (a file, a symbolic link) has the bucket's name in
    /// the data directory.
    Blocked,
}

impl Store {
    pub(super) fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    /// Whether the bucket exists: one `stat`, for the paths that need nothing else.
    pub fn bucket_exists(&self, name: &str) -> io::Result<bool> {
        if !valid_bucket_name(name) {
            return Ok(false);
        }
        match fs::symlink_metadata(self.bucket_dir(name)) {
            Ok(meta) => Ok(meta.is_dir()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }

    pub fn create_bucket(&self, info: &BucketInfo) -> io::Result<Created> {
        let _guard = self.bucket_lock(&info.name);
        if let Some(existing) = self.bucket(&info.name)? {
            return Ok(Created::Existing(Box::new(existing)));
        }
        let dir = self.bucket_dir(&info.name);
        if fs::symlink_metadata(&dir).is_ok() {
            return Ok(Created::Blocked);
        }
        self.write_bucket(info)?;
        fs::create_dir(&dir)?;
        self.syncs.sync_parent(&dir)?;
        Ok(Created::New)
    }

    /// Every bucket, sorted by name.
    pub fn list_buckets(&self) -> io::Result<Vec<BucketInfo>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if let Some(info) = self.bucket(&name)? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes an empty bucket. Under the bucket's lock, so that a write racing the delete
    /// either lands first (and the bucket is not empty) or finds no bucket.
    pub fn delete_bucket(&self, name: &str) -> Result {
        let dir = self.bucket_dir(name);
        {
            let _guard = self.bucket_lock(name);
            if self.bucket(name)?.is_none() {
                return Err(StoreError::NoSuchBucket);
            }
            if has_file(&dir)? || self.has_versions(name)? {
                return Err(StoreError::BucketNotEmpty);
            }
            match remove_empty_tree(&dir) {
                // Something appeared that firelake did not put there.
                Err(err) if err.kind() == io::ErrorKind::DirectoryNotEmpty => return Err(StoreError::BucketNotEmpty),
                other => other?,
            }
            let _ = fs::remove_dir_all(self.sys.join("meta").join(name));
            self.remove_versions(Some(name))?;
            self.forget_settings(Some(name));
            match fs::remove_file(self.bucket_file(name)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err.into()),
                _ => {}
            }
        }
        self.syncs.sync_parent(&dir)?;
        // Outside the bucket's lock: a completion holds its upload's lock, then the bucket's.
        for upload in self.list_uploads(name)? {
            match self.abort_upload(&upload.id) {
                Ok(()) | Err(StoreError::NoSuchUpload) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// Whether `dir` holds a file anywhere below it.
fn has_file(dir: &Path) -> io::Result<bool> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Removes a tree of empty folders.
fn remove_empty_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_empty_tree(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}
