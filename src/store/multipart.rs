//! Multipart uploads: `.firelake/uploads/<id>/upload.json` and one file per part
//! (`<n>` with `<n>.json`), joined into one object on completion. A completed upload
//! leaves `completed.json` alone in its folder for a day, so a repeated
//! CompleteMultipartUpload gets the first one's answer.

use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ObjectMeta, Result, Staged, Store, StoreError, atomic, now_ms};

/// An upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upload {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub initiated_ms: i64,
    pub owner: String,
    /// Headers, user metadata and tags for the object the upload will become.
    pub meta: ObjectMeta,
    /// `x-amz-checksum-algorithm` of CreateMultipartUpload, if any.
    #[serde(default)]
    pub checksum_algorithm: Option<String>,
    /// `x-amz-checksum-type` (COMPOSITE or FULL_OBJECT), if any.
    #[serde(default)]
    pub checksum_type: Option<String>,
}

/// A stored part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    pub number: u32,
    pub size: u64,
    /// Hex MD5 of the part, without quotes.
    pub etag: String,
    pub last_modified_ms: i64,
    /// Algorithm name to base64 value.
    #[serde(default)]
    pub checksums: std::collections::BTreeMap<String, String>,
}

/// What a completion answered, kept for [`COMPLETED_KEPT_MS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completed {
    pub bucket: String,
    pub key: String,
    pub completed_ms: i64,
    /// The parts the completion named: number and ETag, in order.
    pub parts: Vec<(u32, String)>,
    /// The object's metadata as the completion wrote it (without the per-part lists).
    pub meta: ObjectMeta,
}

/// How long a completed upload's answer is kept: a day, as S3 is seen to.
pub const COMPLETED_KEPT_MS: i64 = 24 * 3600 * 1000;
/// A folder with neither record (a removal cut short by a crash) older than this is debris.
const DEBRIS_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

impl Store {
    fn upload_dir(&self, id: &str) -> PathBuf {
        self.sys.join("uploads").join(id)
    }

    fn valid_upload_id(id: &str) -> bool {
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    pub fn create_upload(&self, upload: &Upload) -> Result {
        let dir = self.upload_dir(&upload.id);
        fs::create_dir_all(&dir)?;
        let bytes = serde_json::to_vec(upload).map_err(io::Error::other)?;
        atomic::write_file(&self.sys.join("tmp"), &dir.join("upload.json"), &bytes, &self.syncs)?;
        // Written first, then checked under the bucket's lock: a DeleteBucket that comes
        // after the check finds the upload and aborts it, one that came before makes this
        // answer NoSuchBucket. No upload outlives its bucket.
        let exists = {
            let _guard = self.bucket_lock(&upload.bucket);
            self.bucket_exists(&upload.bucket)?
        };
        if !exists {
            // The DeleteBucket may have aborted it already.
            match self.abort_upload(&upload.id) {
                Ok(()) | Err(StoreError::NoSuchUpload) => {}
                Err(err) => return Err(err),
            }
            return Err(StoreError::NoSuchBucket);
        }
        Ok(())
    }

    /// The upload `id` of `bucket`/`key`, or NoSuchUpload.
    pub fn upload(&self, bucket: &str, key: &str, id: &str) -> Result<Upload> {
        if !Self::valid_upload_id(id) {
            return Err(StoreError::NoSuchUpload);
        }
        let upload: Upload = match fs::read(self.upload_dir(id).join("upload.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(StoreError::NoSuchUpload),
            Err(err) => return Err(err.into()),
        };
        if upload.bucket != bucket || upload.key != key {
            return Err(StoreError::NoSuchUpload);
        }
        Ok(upload)
    }

    /// Publishes a staged part, replacing an earlier part with the same number. Under the
    /// upload's lock: a part racing an abort or a completion lands before it or answers
    /// NoSuchUpload.
    pub fn commit_part(&self, upload: &Upload, mut staged: Staged, part: &Part) -> Result {
        let dir = self.upload_dir(&upload.id);
        staged.sync(self.durability)?;
        let bytes = serde_json::to_vec(part).map_err(io::Error::other)?;
        let _guard = self.uploads.lock(&upload.id);
        if !dir.join("upload.json").exists() {
            return Err(StoreError::NoSuchUpload);
        }
        // The part's record is written after its bytes, so a record always has its bytes.
        staged.rename_to(&dir.join(part.number.to_string()))?;
        atomic::write_file(&self.sys.join("tmp"), &dir.join(format!("{}.json", part.number)), &bytes, &self.syncs)?;
        Ok(())
    }

    /// Completes an upload: under its lock, with the parts as they are now, `assemble`
    /// writes the object; when it succeeds (the inner `Ok`) the upload is retired (only
    /// its answer stays) before the lock is released, so a racing abort or part finds no upload, and an abort that
    /// came first leaves nothing to complete (NoSuchUpload, and no object written).
    pub fn complete_upload<E>(
        &self,
        upload: &Upload,
        assemble: impl FnOnce(&[Part]) -> Result<std::result::Result<Completed, E>>,
    ) -> Result<std::result::Result<Completed, E>> {
        let _guard = self.uploads.lock(&upload.id);
        let parts = self.parts(upload)?;
        let done = assemble(&parts)?;
        if let Ok(completed) = &done {
            self.retire_upload(&upload.id, completed)?;
        }
        Ok(done)
    }

    /// Replaces a completed upload's folder by its `completed.json`; the caller holds its
    /// lock. Removing `upload.json` is the step that ends the upload; a crash before it
    /// leaves the upload to be completed again.
    fn retire_upload(&self, id: &str, completed: &Completed) -> Result {
        let dir = self.upload_dir(id);
        let bytes = serde_json::to_vec(completed).map_err(io::Error::other)?;
        atomic::write_file(&self.sys.join("tmp"), &dir.join("completed.json"), &bytes, &self.syncs)?;
        fs::remove_file(dir.join("upload.json"))?;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name() != "completed.json" {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// The answer of upload `id` of `bucket`/`key` if it was completed less than a day ago.
    pub fn completed_upload(&self, bucket: &str, key: &str, id: &str) -> Result<Option<Completed>> {
        if !Self::valid_upload_id(id) {
            return Ok(None);
        }
        let completed: Completed = match fs::read(self.upload_dir(id).join("completed.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let fresh = now_ms() - completed.completed_ms < COMPLETED_KEPT_MS;
        Ok((fresh && completed.bucket == bucket && completed.key == key).then_some(completed))
    }

    /// Removes the answers of uploads completed more than a day before `now`, and folders
    /// a crash left half removed.
    pub fn forget_completed_uploads(&self, now: i64) -> Result {
        for entry in fs::read_dir(self.sys.join("uploads"))? {
            let dir = entry?.path();
            let Some(id) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
            let _guard = self.uploads.lock(&id);
            if dir.join("upload.json").exists() {
                continue;
            }
            let stale = match fs::read(dir.join("completed.json")) {
                Ok(bytes) => serde_json::from_slice::<Completed>(&bytes).map_or(true, |c| now - c.completed_ms >= COMPLETED_KEPT_MS),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    fs::metadata(&dir).and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age > DEBRIS_AGE))
                }
                Err(err) => return Err(err.into()),
            };
            if stale {
                match fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err.into()),
                }
            }
        }
        Ok(())
    }

    /// The parts uploaded so far, by part number; NoSuchUpload once it is aborted or completed.
    pub fn parts(&self, upload: &Upload) -> Result<Vec<Part>> {
        let dir = self.upload_dir(&upload.id);
        let gone = |err: &io::Error| err.kind() == io::ErrorKind::NotFound;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if gone(&err) => return Err(StoreError::NoSuchUpload),
            Err(err) => return Err(err.into()),
        };
        if !dir.join("upload.json").exists() {
            return Err(StoreError::NoSuchUpload);
        }
        let mut parts = Vec::new();
        for entry in entries {
            let name = match entry {
                Ok(entry) => entry.file_name(),
                Err(err) if gone(&err) => return Err(StoreError::NoSuchUpload),
                Err(err) => return Err(err.into()),
            };
            let Some(name) = name.to_str() else { continue };
            let Some(number) = name.strip_suffix(".json").and_then(|n| n.parse::<u32>().ok()) else { continue };
            let bytes = match fs::read(dir.join(name)) {
                Ok(bytes) => bytes,
                // An abort racing this listing.
                Err(err) if gone(&err) => return Err(StoreError::NoSuchUpload),
                Err(err) => return Err(err.into()),
            };
            let part: Part = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            if part.number == number {
                parts.push(part);
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Opens a part's bytes.
    pub fn open_part(&self, upload: &Upload, number: u32) -> io::Result<File> {
        File::open(self.upload_dir(&upload.id).join(number.to_string()))
    }

    pub fn abort_upload(&self, id: &str) -> Result {
        if !Self::valid_upload_id(id) {
            return Err(StoreError::NoSuchUpload);
        }
        let _guard = self.uploads.lock(id);
        self.remove_upload(id)
    }

    /// Removes an upload's folder; the caller holds its lock. A completed one is not
    /// an upload any more: NoSuchUpload, and its answer stays.
    fn remove_upload(&self, id: &str) -> Result {
        let dir = self.upload_dir(id);
        if !dir.join("upload.json").exists() {
            return Err(StoreError::NoSuchUpload);
        }
        match fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(StoreError::NoSuchUpload),
            Err(err) => Err(err.into()),
        }
    }

    /// Uploads in progress in `bucket`, by key then initiation time.
    pub fn list_uploads(&self, bucket: &str) -> Result<Vec<Upload>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.sys.join("uploads"))? {
            let path = entry?.path().join("upload.json");
            let Ok(bytes) = fs::read(&path) else { continue };
            let Ok(upload) = serde_json::from_slice::<Upload>(&bytes) else { continue };
            if upload.bucket == bucket {
                out.push(upload);
            }
        }
        out.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()).then(a.initiated_ms.cmp(&b.initiated_ms)));
        Ok(out)
    }
}
