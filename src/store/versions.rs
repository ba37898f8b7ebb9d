//! Object versions: a bucket's versioning state, and where the versions of a key live.
//!
//! The current version of a key stays the plain file at `<root>/<B>/<path of K>`, so a
//! listing of the folder still shows what a plain listing shows. Every other version of
//! the key (noncurrent objects and all delete markers) lives in the key's versions folder
//! `.firelake/versions/<B>/<sha256 of K>/`, which also holds the key itself (`key`):
//!
//! ```text
//! <seq>.<id>        a noncurrent object: the former current file, renamed (its inode,
//!                   so its metadata attribute, moves with it)
//! <seq>.<id>.meta   its metadata, when it had a metadata file rather than the attribute
//! <seq>.<id>.m      a delete marker (JSON: key, time)
//! ```
//!
//! `<seq>` (20 digits) orders the versions of a key, oldest first; `<id>` is the version
//! id, `null` for the null version. The invariant: when the key's newest version is an
//! object it is the plain file, and every entry of the versions folder is older; when
//! the newest is a delete marker there is no plain file. At most one version is `null`.
//!
//! Every change happens under the bucket's lock, in an order that a crash at any point
//! leaves recognisable and repaired at the next start ([`Store::finish_versions`]):
//! a PUT moves the current file aside and then publishes the new one (a crash between
//! the two leaves no plain file and an object as the newest entry: it is moved back); a
//! delete marker is added after the current file is moved aside; the null version a
//! suspended bucket replaces is removed last (a crash before leaves two: the older goes).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xattr::FileExt;

use super::objects::Condition;
use super::{BucketInfo, ObjectMeta, Result, Store, StoreError, gone, open_no_follow};

/// A bucket's versioning state; once versioned, a bucket is never unversioned again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    Unversioned,
    Enabled,
    Suspended,
}

impl Versioning {
    pub fn of(info: &BucketInfo) -> Versioning {
        match info.versioning.as_deref() {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            _ => Versioning::Unversioned,
        }
    }
}

/// One version of a key, as ListObjectVersions shows it.
#[derive(Debug, Clone)]
pub struct Version {
    /// `None`: the null version.
    pub version_id: Option<String>,
    pub last_modified_ms: i64,
    /// The object's metadata; `None` for a delete marker.
    pub meta: Option<ObjectMeta>,
    pub latest: bool,
}

/// A version found by its id.
pub enum Found {
    Object(File, Box<ObjectMeta>),
    Marker { last_modified_ms: i64 },
}

/// A version whose metadata was changed.
pub enum Changed {
    Object(Box<ObjectMeta>),
    /// The version is a delete marker, which has no metadata to change.
    Marker {
        last_modified_ms: i64,
    },
}

/// What a delete did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Whether there was an object (or, deleting by version id, that version) to delete.
    pub existed: bool,
    /// The version deleted or the delete marker added; `None`: the null version, or none.
    pub version_id: Option<String>,
    /// A delete marker was added, or the version deleted was one.
    pub delete_marker: bool,
}

/// A delete marker's file.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    key: String,
    last_modified_ms: i64,
}

/// An entry of a key's versions folder.
#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    version_id: Option<String>,
    marker: bool,
    path: PathBuf,
}

impl Entry {
    fn name(seq: u64, version_id: Option<&str>, marker: bool) -> String {
        format!("{seq:020}.{}{}", version_id.unwrap_or("null"), if marker { ".m" } else { "" })
    }

    fn parse(dir: &Path, name: &str) -> Option<Entry> {
        let mut parts = name.split('.');
        let seq = parts.next().filter(|s| s.len() == 20)?.parse().ok()?;
        let id = parts.next()?;
        let marker = match parts.next() {
            None => false,
            Some("m") => true,
            Some(_) => return None,
        };
        if parts.next().is_some() || !valid_version_id(id) {
            return None;
        }
        Some(Entry { seq, version_id: (id != "null").then(|| id.to_owned()), marker, path: dir.join(name) })
    }

    fn meta_file(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".meta");
        PathBuf::from(name)
    }
}

/// Whether `id` is `null` or an id firelake mints: anything else names no version here.
pub fn valid_version_id(id: &str) -> bool {
    id == "null" || (id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// A new version id: 32 hex digits, the first 16 a strictly increasing clock (in ns), so
/// that ids sort by age across restarts; the rest random.
pub fn new_version_id() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    };
    format!("{stamp:016x}{:016x}", uuid::Uuid::new_v4().as_u64_pair().0)
}

fn missing_ok(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Store {
    fn bucket_versions_dir(&self, bucket: &str) -> PathBuf {
        self.sys.join("versions").join(bucket)
    }

    fn key_versions_dir(&self, bucket: &str, key: &str) -> PathBuf {
        self.bucket_versions_dir(bucket).join(hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// The bucket's versioning state.
    pub fn versioning(&self, bucket: &str) -> Result<Versioning> {
        Ok(Versioning::of(&*self.bucket_settings(bucket)?))
    }

    /// Sets the bucket's versioning status (`Enabled` or `Suspended`) and MFA delete setting.
    pub fn set_versioning(&self, bucket: &str, status: &str, mfa_delete: Option<&str>) -> Result<BucketInfo> {
        self.update_bucket(bucket, |info| {
            info.versioning = Some(status.to_owned());
            if let Some(mfa) = mfa_delete {
                info.mfa_delete = Some(mfa.to_owned());
            }
        })
    }

    /// Whether any version or delete marker is kept for the bucket (beside its files).
    pub(super) fn has_versions(&self, bucket: &str) -> io::Result<bool> {
        match fs::read_dir(self.bucket_versions_dir(bucket)) {
            Ok(mut entries) => Ok(entries.next().is_some()),
            Err(err) if gone(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    pub(super) fn remove_versions(&self, bucket: Option<&str>) -> io::Result<()> {
        let dir = match bucket {
            Some(bucket) => self.bucket_versions_dir(bucket),
            None => self.sys.join("versions"),
        };
        missing_ok(fs::remove_dir_all(&dir))?;
        if bucket.is_none() {
            fs::create_dir_all(&dir)?;
        }
        Ok(())
    }

    /// The entries of a versions folder, oldest first.
    fn entries(dir: &Path) -> io::Result<Vec<Entry>> {
        let read = match fs::read_dir(dir) {
            Ok(read) => read,
            Err(err) if gone(&err) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut out = Vec::new();
        for entry in read {
            let entry = entry?;
            if let Some(parsed) = entry.file_name().to_str().and_then(|name| Entry::parse(dir, name)) {
                out.push(parsed);
            }
        }
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    /// The path of the key's current file (the plain path or the folder object), if any.
    pub(super) fn current_file(&self, bucket: &str, plain: &Path, folder_object: &Path) -> io::Result<Option<PathBuf>> {
        for path in [plain, folder_object] {
            if self.link_above(bucket, path)?.is_some() {
                continue;
            }
            match fs::symlink_metadata(path) {
                Ok(meta) if meta.is_file() => return Ok(Some(path.to_path_buf())),
                Ok(_) => {}
                Err(err) if gone(&err) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// The metadata of the file at `path`, the current version of `key`. Under the bucket's lock.
    fn current_meta(&self, bucket: &str, key: &str, path: &Path) -> Result<Option<ObjectMeta>> {
        Ok(self.open_with_meta(bucket, key, path, true)?.map(|(_, meta)| meta))
    }

    /// Makes the key's versions folder (with its `key` file) if it is not there yet.
    fn ensure_versions_dir(&self, bucket: &str, key: &str) -> io::Result<PathBuf> {
        let dir = self.key_versions_dir(bucket, key);
        let key_file = dir.join("key");
        if !key_file.exists() {
            fs::create_dir_all(&dir)?;
            // Written without an fsync under the lock: its entries name the key too, and
            // a lost or torn `key` is rewritten from them at start.
            fs::write(&key_file, key.as_bytes())?;
        }
        Ok(dir)
    }

    /// Moves the current file at `current` into the key's versions folder, as its newest
    /// entry. Answers the folders whose fsync makes the move durable. Under the bucket's lock.
    fn move_aside(&self, bucket: &str, key: &str, current: &Path, version_id: Option<&str>) -> io::Result<Vec<PathBuf>> {
        let dir = self.ensure_versions_dir(bucket, key)?;
        let seq = Self::entries(&dir)?.last().map_or(1, |e| e.seq + 1);
        let entry =
            Entry { seq, version_id: version_id.map(str::to_owned), marker: false, path: dir.join(Entry::name(seq, version_id, false)) };
        fs::rename(current, &entry.path)?;
        // A metadata file moves after its data: until it does, a reader of the entry finds
        // it by fingerprint at the key's metadata path, and the start repairs the rest.
        match fs::rename(self.meta_path(bucket, key), entry.meta_file()) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let mut folders = vec![dir];
        folders.extend(current.parent().map(Path::to_path_buf));
        Ok(folders)
    }

    /// Before a new current version of `key` is published into a versioned bucket: moves
    /// the current one aside (in a suspended bucket, only a non-null one, which the new
    /// null version does not replace). Under the bucket's lock; answers folders to fsync.
    pub(super) fn before_publish(
        &self,
        bucket: &str,
        key: &str,
        state: Versioning,
        plain: &Path,
        folder_object: &Path,
    ) -> Result<Vec<PathBuf>> {
        if state == Versioning::Unversioned {
            return Ok(Vec::new());
        }
        let Some(current) = self.current_file(bucket, plain, folder_object)? else { return Ok(Vec::new()) };
        let Some(meta) = self.current_meta(bucket, key, &current)? else { return Ok(Vec::new()) };
        if state == Versioning::Suspended && meta.version_id.is_none() {
            return Ok(Vec::new());
        }
        Ok(self.move_aside(bucket, key, &current, meta.version_id.as_deref())?)
    }

    /// After a null version was published (suspended bucket): drops the older null
    /// versions from the versions folder. Under the bucket's lock.
    pub(super) fn after_publish(&self, bucket: &str, key: &str, state: Versioning) -> Result<Vec<PathBuf>> {
        if state != Versioning::Suspended {
            return Ok(Vec::new());
        }
        let dir = self.key_versions_dir(bucket, key);
        let mut removed = false;
        for entry in Self::entries(&dir)?.into_iter().filter(|e| e.version_id.is_none()) {
            self.remove_entry(&entry)?;
            removed = true;
        }
        Ok(if removed { self.prune_versions_dir(&dir)?.into_iter().collect() } else { Vec::new() })
    }

    fn remove_entry(&self, entry: &Entry) -> io::Result<()> {
        missing_ok(fs::remove_file(&entry.path))?;
        missing_ok(fs::remove_file(entry.meta_file()))
    }

    /// Removes a versions folder left with no version; answers the folder to fsync.
    fn prune_versions_dir(&self, dir: &Path) -> io::Result<Option<PathBuf>> {
        if !Self::entries(dir)?.is_empty() {
            return Ok(Some(dir.to_path_buf()));
        }
        missing_ok(fs::remove_file(dir.join("key")))?;
        match fs::remove_dir(dir) {
            Ok(()) => Ok(dir.parent().map(Path::to_path_buf)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// A delete without a version id in a versioned bucket: the current version moves
    /// aside and a delete marker becomes the current version (`null` in a suspended
    /// bucket, replacing the null version).
    pub(super) fn delete_versioned<C: Condition>(
        &self,
        bucket: &str,
        key: &str,
        state: Versioning,
        condition: Option<&C>,
    ) -> Result<std::result::Result<Deleted, C::Refusal>> {
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        let version_id = (state == Versioning::Enabled).then(new_version_id);
        let now = super::now_ms();
        let mut marker = self.stage()?;
        std::io::Write::write_all(
            marker.file(),
            &serde_json::to_vec(&Marker { key: key.to_owned(), last_modified_ms: now }).map_err(io::Error::other)?,
        )?;
        marker.sync(self.durability)?;
        let (folders, existed) = {
            let _guard = self.bucket_lock(bucket);
            if let Err(refused) = self.check_current(bucket, key, condition)? {
                return Ok(Err(refused));
            }
            if !self.bucket_exists(bucket)? {
                return Err(StoreError::NoSuchBucket);
            }
            let mut folders = Vec::new();
            let mut existed = false;
            if let Some(current) = self.current_file(bucket, &plain, &folder_object)?
                && let Some(meta) = self.current_meta(bucket, key, &current)?
            {
                folders.extend(self.move_aside(bucket, key, &current, meta.version_id.as_deref())?);
                folders.push(self.prune_folders(bucket, &current));
                existed = true;
            }
            let dir = self.ensure_versions_dir(bucket, key)?;
            let entries = Self::entries(&dir)?;
            let seq = entries.last().map_or(1, |e| e.seq + 1);
            marker.rename_to(&dir.join(Entry::name(seq, version_id.as_deref(), true)))?;
            if state == Versioning::Suspended {
                for entry in entries.iter().filter(|e| e.version_id.is_none()) {
                    self.remove_entry(entry)?;
                }
            }
            folders.push(dir);
            (folders, existed)
        };
        for folder in &folders {
            self.syncs.sync_folder(folder)?;
        }
        Ok(Ok(Deleted { existed, version_id, delete_marker: true }))
    }

    /// Permanently deletes one version (`None`: the null version). Deleting the current
    /// version makes the next newest current. Answers what was deleted (`existed` false:
    /// no such version, which S3 answers as a success).
    pub fn delete_version(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Deleted> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        let dir = self.key_versions_dir(bucket, key);
        let mut deleted = Deleted { existed: false, version_id: version_id.map(str::to_owned), delete_marker: false };
        let folders = {
            let _guard = self.bucket_lock(bucket);
            let mut folders = Vec::new();
            let current = self.current_file(bucket, &plain, &folder_object)?;
            let current_meta = match &current {
                Some(path) => self.current_meta(bucket, key, path)?,
                None => None,
            };
            if let (Some(path), Some(meta)) = (&current, &current_meta)
                && meta.version_id.as_deref() == version_id
            {
                fs::remove_file(path)?;
                missing_ok(fs::remove_file(self.meta_path(bucket, key)))?;
                deleted.existed = true;
                folders.push(self.prune_folders(bucket, path));
                folders.extend(self.promote_newest(bucket, key, &plain, &folder_object)?);
            } else if let Some(entry) = Self::entries(&dir)?.into_iter().find(|e| e.version_id.as_deref() == version_id) {
                self.remove_entry(&entry)?;
                deleted.existed = true;
                deleted.delete_marker = entry.marker;
                // A marker that was the current version leaves the next newest current.
                if entry.marker && current.is_none() {
                    folders.extend(self.promote_newest(bucket, key, &plain, &folder_object)?);
                }
            }
            if deleted.existed {
                folders.extend(self.prune_versions_dir(&dir)?);
            }
            folders
        };
        for folder in &folders {
            self.syncs.sync_folder(folder)?;
        }
        Ok(deleted)
    }

    /// Permanently deletes a version that lifecycle found expired, if it still is what
    /// was found: `lone_marker` true, a delete marker that is the key's only version; false,
    /// a noncurrent version. Checked under the bucket's lock, so a write that makes the
    /// version current meanwhile (a suspended bucket's PUT replaces the null version) keeps
    /// it. Answers whether it was deleted.
    pub fn expire_version(&self, bucket: &str, key: &str, version_id: Option<&str>, lone_marker: bool) -> Result<bool> {
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        let dir = self.key_versions_dir(bucket, key);
        let folder = {
            let _guard = self.bucket_lock(bucket);
            let current = self.current_file(bucket, &plain, &folder_object)?;
            let entries = Self::entries(&dir)?;
            let Some(position) = entries.iter().position(|e| e.version_id.as_deref() == version_id) else { return Ok(false) };
            let entry = &entries[position];
            let newest = position + 1 == entries.len();
            let expired = match lone_marker {
                true => current.is_none() && entries.len() == 1 && entry.marker,
                // With no current file, the newest entry is the current version.
                false => !(newest && current.is_none()),
            };
            if !expired {
                return Ok(false);
            }
            self.remove_entry(entry)?;
            self.prune_versions_dir(&dir)?
        };
        if let Some(folder) = folder {
            self.syncs.sync_folder(&folder)?;
        }
        Ok(true)
    }

    /// When the key has no current file and its newest entry is an object, moves that
    /// entry back as the current file. Under the bucket's lock; answers folders to fsync.
    fn promote_newest(&self, bucket: &str, key: &str, plain: &Path, folder_object: &Path) -> Result<Vec<PathBuf>> {
        let dir = self.key_versions_dir(bucket, key);
        let Some(newest) = Self::entries(&dir)?.pop() else { return Ok(Vec::new()) };
        if newest.marker {
            return Ok(Vec::new());
        }
        let meta_file = newest.meta_file();
        let dest = self.place_file(bucket, plain, folder_object, &newest.path)?;
        let mut folders = vec![dir.clone()];
        if meta_file.exists() {
            let meta_path = self.meta_path(bucket, key);
            if let Some(parent) = meta_path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&meta_file, &meta_path)?;
            folders.extend(meta_path.parent().map(Path::to_path_buf));
        }
        folders.extend(dest.parent().map(Path::to_path_buf));
        folders.extend(self.prune_versions_dir(&dir)?);
        Ok(folders)
    }

    /// The key's current delete marker, when its newest version is one: its id and time.
    pub fn current_marker(&self, bucket: &str, key: &str) -> Result<Option<(Option<String>, i64)>> {
        let dir = self.key_versions_dir(bucket, key);
        let Some(newest) = Self::entries(&dir)?.pop() else { return Ok(None) };
        if !newest.marker {
            return Ok(None);
        }
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        if self.current_file(bucket, &plain, &folder_object)?.is_some() {
            return Ok(None);
        }
        Ok(Some((newest.version_id.clone(), Self::marker_time(&newest))))
    }

    fn marker_time(entry: &Entry) -> i64 {
        fs::read(&entry.path).ok().and_then(|b| serde_json::from_slice::<Marker>(&b).ok()).map_or(0, |m| m.last_modified_ms)
    }

    /// The metadata of a noncurrent object entry: its attribute, its metadata file, or
    /// (moved before its metadata file, see [`Store::move_aside`]) the key's metadata
    /// path; derived from the bytes only when none describes this file.
    fn entry_meta(&self, bucket: &str, key: &str, entry: &Entry, file: &mut File) -> Result<ObjectMeta> {
        let stat = file.metadata()?;
        let fingerprint = super::Fingerprint::of(&stat);
        let matching = |bytes: Vec<u8>| super::meta::matching_meta(&bytes, fingerprint, key);
        if let Some(meta) = file.get_xattr(super::meta::META_XATTR).ok().flatten().and_then(matching) {
            return Ok(meta);
        }
        for path in [entry.meta_file(), self.meta_path(bucket, key)] {
            if let Some(meta) = fs::read(&path).ok().and_then(matching) {
                return Ok(meta);
            }
        }
        let mut meta = self.derived_meta(key, file, &stat)?;
        meta.version_id = entry.version_id.clone();
        Ok(meta)
    }

    /// Opens a version by id (`None`: the null version).
    pub fn open_version(&self, bucket: &str, key: &str, version_id: Option<&str>) -> Result<Option<Found>> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        // Under the lock: the version may be moving between the plain path and the folder.
        let _guard = self.bucket_lock(bucket);
        if let Some(current) = self.current_file(bucket, &plain, &folder_object)?
            && let Some((file, meta)) = self.open_with_meta(bucket, key, &current, true)?
            && meta.version_id.as_deref() == version_id
        {
            return Ok(Some(Found::Object(file, Box::new(meta))));
        }
        let dir = self.key_versions_dir(bucket, key);
        let Some(entry) = Self::entries(&dir)?.into_iter().find(|e| e.version_id.as_deref() == version_id) else { return Ok(None) };
        if entry.marker {
            return Ok(Some(Found::Marker { last_modified_ms: Self::marker_time(&entry) }));
        }
        let mut file = open_no_follow(&entry.path)?;
        let meta = self.entry_meta(bucket, key, &entry, &mut file)?;
        Ok(Some(Found::Object(file, Box::new(meta))))
    }

    /// Changes the metadata (tags, ACL) of one version, keeping its bytes.
    pub fn update_version_meta(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        change: impl FnOnce(&mut ObjectMeta),
    ) -> Result<Option<Changed>> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        let current = {
            let _guard = self.bucket_lock(bucket);
            match self.current_file(bucket, &plain, &folder_object)? {
                Some(path) => self.current_meta(bucket, key, &path)?,
                None => None,
            }
        };
        if current.as_ref().is_some_and(|m| m.version_id.as_deref() == version_id) {
            // The current version: the usual path (a racing PUT makes it noncurrent, and
            // then the change lands on the new current one, as a tag write racing a PUT may).
            return Ok(self.update_meta(bucket, key, change)?.map(|meta| Changed::Object(Box::new(meta))));
        }
        let _guard = self.bucket_lock(bucket);
        let dir = self.key_versions_dir(bucket, key);
        let Some(entry) = Self::entries(&dir)?.into_iter().find(|e| e.version_id.as_deref() == version_id) else { return Ok(None) };
        if entry.marker {
            return Ok(Some(Changed::Marker { last_modified_ms: Self::marker_time(&entry) }));
        }
        let mut file = open_no_follow(&entry.path)?;
        let mut meta = self.entry_meta(bucket, key, &entry, &mut file)?;
        change(&mut meta);
        if self.rewrite_meta(&file, &entry.meta_file(), &meta)? {
            missing_ok(fs::remove_file(entry.meta_file()))?;
        }
        Ok(Some(Changed::Object(Box::new(meta))))
    }

    /// The keys of the bucket that have versions besides their current file, with
    /// `prefix`, sorted.
    pub fn versioned_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let read = match fs::read_dir(self.bucket_versions_dir(bucket)) {
            Ok(read) => read,
            Err(err) if gone(&err) => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        let mut keys = Vec::new();
        for entry in read {
            let dir = entry?.path();
            match fs::read(dir.join("key")) {
                Ok(bytes) => {
                    if let Ok(key) = String::from_utf8(bytes)
                        && key.starts_with(prefix)
                    {
                        keys.push(key);
                    }
                }
                Err(err) if gone(&err) => {}
                Err(err) => return Err(err.into()),
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Every version of `key`, newest first: the current file (if any), then the
    /// versions folder's entries. A version that goes meanwhile is left out.
    pub fn versions_of(&self, bucket: &str, key: &str) -> Result<Vec<Version>> {
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        let mut out = Vec::new();
        if let Some(path) = self.current_file(bucket, &plain, &folder_object)?
            && let Some((_, meta)) = self.open_with_meta(bucket, key, &path, false)?
        {
            out.push(Version {
                version_id: meta.version_id.clone(),
                last_modified_ms: meta.last_modified_ms,
                meta: Some(meta),
                latest: true,
            });
        }
        let dir = self.key_versions_dir(bucket, key);
        for entry in Self::entries(&dir)?.into_iter().rev() {
            let latest = out.is_empty();
            if entry.marker {
                out.push(Version { version_id: entry.version_id.clone(), last_modified_ms: Self::marker_time(&entry), meta: None, latest });
                continue;
            }
            let mut file = match open_no_follow(&entry.path) {
                Ok(file) => file,
                Err(err) if gone(&err) => continue,
                Err(err) => return Err(err.into()),
            };
            let meta = self.entry_meta(bucket, key, &entry, &mut file)?;
            out.push(Version { version_id: entry.version_id.clone(), last_modified_ms: meta.last_modified_ms, meta: Some(meta), latest });
        }
        Ok(out)
    }

    /// Repairs what a crash may have left in the versions folders (see the module's
    /// comment): a current version moved aside and not replaced goes back, and of two
    /// null versions the older goes.
    pub(super) fn finish_versions(&self) -> io::Result<()> {
        let root = self.sys.join("versions");
        let mut repaired = 0usize;
        for bucket in fs::read_dir(&root)? {
            let bucket = bucket?;
            let Some(bucket_name) = bucket.file_name().to_str().map(str::to_owned) else { continue };
            if !self.bucket_exists(&bucket_name)? {
                fs::remove_dir_all(bucket.path())?;
                continue;
            }
            for dir in fs::read_dir(bucket.path())? {
                let dir = dir?.path();
                if self.repair_versions_dir(&bucket_name, &dir).map_err(|e| io::Error::other(e.to_string()))? {
                    repaired += 1;
                }
            }
        }
        if repaired > 0 {
            tracing::info!(repaired, "repaired object versions left mid-change by an earlier run");
        }
        Ok(())
    }

    fn repair_versions_dir(&self, bucket: &str, dir: &Path) -> Result<bool> {
        let entries = Self::entries(dir)?;
        let key = match fs::read(dir.join("key")).ok().and_then(|b| String::from_utf8(b).ok()) {
            Some(key) => key,
            None => match entries.iter().find_map(|e| self.entry_key(e)) {
                Some(key) => {
                    fs::write(dir.join("key"), key.as_bytes())?;
                    key
                }
                None => {
                    fs::remove_dir_all(dir)?;
                    return Ok(true);
                }
            },
        };
        if self.key_versions_dir(bucket, &key) != dir {
            return Ok(false);
        }
        let mut repaired = false;
        // A metadata file left at the key's path by a move cut short joins its entry.
        let meta_path = self.meta_path(bucket, &key);
        if let Some(meta) = fs::read(&meta_path).ok().and_then(|b| serde_json::from_slice::<ObjectMeta>(&b).ok()) {
            for entry in entries.iter().filter(|e| !e.marker) {
                if fs::metadata(&entry.path).is_ok_and(|stat| super::Fingerprint::of(&stat) == meta.fingerprint) {
                    fs::rename(&meta_path, entry.meta_file())?;
                    repaired = true;
                    break;
                }
            }
        }
        let (plain, folder_object) = self.object_paths(bucket, &key)?;
        let mut current = self.current_file(bucket, &plain, &folder_object)?;
        if current.is_none() && entries.last().is_some_and(|e| !e.marker) {
            self.promote_newest(bucket, &key, &plain, &folder_object)?;
            current = self.current_file(bucket, &plain, &folder_object)?;
            repaired = true;
        }
        let current_is_null = match &current {
            Some(path) => self.current_meta(bucket, &key, path)?.is_some_and(|m| m.version_id.is_none()),
            None => false,
        };
        let nulls: Vec<Entry> = Self::entries(dir)?.into_iter().filter(|e| e.version_id.is_none()).collect();
        let keep = if current_is_null { 0 } else { 1 };
        if nulls.len() > keep {
            for entry in &nulls[..nulls.len() - keep] {
                self.remove_entry(entry)?;
            }
            repaired = true;
        }
        self.prune_versions_dir(dir)?;
        Ok(repaired)
    }

    fn entry_key(&self, entry: &Entry) -> Option<String> {
        if entry.marker {
            return fs::read(&entry.path).ok().and_then(|b| serde_json::from_slice::<Marker>(&b).ok()).map(|m| m.key);
        }
        let file = File::open(&entry.path).ok()?;
        let bytes = file.get_xattr(super::meta::META_XATTR).ok().flatten().or_else(|| fs::read(entry.meta_file()).ok())?;
        serde_json::from_slice::<ObjectMeta>(&bytes).ok().map(|m| m.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Created, Durability};
    use std::io::Read;

    fn store(dir: &Path) -> Store {
        let store = Store::open(dir, Durability::None).unwrap();
        let info = BucketInfo { name: "bkt".into(), region: "us-east-1".into(), ..BucketInfo::default() };
        if let Created::New = store.create_bucket(&info).unwrap() {
            store.set_versioning("bkt", "Enabled", None).unwrap();
        }
        store
    }

    fn put(store: &Store, key: &str, bytes: &[u8], meta: ObjectMeta) -> ObjectMeta {
        let mut staged = store.stage().unwrap();
        std::io::Write::write_all(staged.file(), bytes).unwrap();
        store.commit_object("bkt", key, staged, meta).unwrap()
    }

    fn read_version(store: &Store, key: &str, id: Option<&str>) -> (Vec<u8>, ObjectMeta) {
        let Some(Found::Object(mut file, meta)) = store.open_version("bkt", key, id).unwrap() else { panic!("no version {id:?}") };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        (bytes, *meta)
    }

    #[test]
    fn metadata_files_move_with_their_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        // Too large for the attribute: the metadata rides in a file, which must follow.
        let user: std::collections::BTreeMap<String, String> = (0..40).map(|i| (format!("k{i}"), "v".repeat(100))).collect();
        let old = put(&store, "k", b"old", ObjectMeta { etag: "e1".into(), user: user.clone(), ..ObjectMeta::default() });
        put(&store, "k", b"new", ObjectMeta { etag: "e2".into(), ..ObjectMeta::default() });
        let (bytes, meta) = read_version(&store, "k", old.version_id.as_deref());
        assert_eq!((bytes.as_slice(), meta.etag.as_str(), &meta.user), (&b"old"[..], "e1", &user));
        // Deleting the current version brings the old one back with its metadata.
        let current = store.versions_of("bkt", "k").unwrap()[0].version_id.clone();
        store.delete_version("bkt", "k", current.as_deref()).unwrap();
        let (file, meta) = store.open_object("bkt", "k").unwrap().unwrap();
        assert_eq!((file.metadata().unwrap().len(), meta.etag.as_str(), meta.user.len()), (3, "e1", 40));
    }

    #[test]
    fn the_start_keeps_only_the_newest_null_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = store(dir.path());
            put(&store, "k", b"kept", ObjectMeta::default());
            store.set_versioning("bkt", "Suspended", None).unwrap();
            put(&store, "k", b"null one", ObjectMeta::default());
            store.delete_object("bkt", "k").unwrap();
            // A crash before the older null version's removal leaves two: fake it.
            let key_dir = store.key_versions_dir("bkt", "k");
            let entries = Store::entries(&key_dir).unwrap();
            let marker = entries.last().unwrap().clone();
            let stale = key_dir.join(Entry::name(marker.seq - 1, None, true));
            fs::copy(&marker.path, &stale).unwrap();
            assert_eq!(Store::entries(&key_dir).unwrap().iter().filter(|e| e.version_id.is_none()).count(), 2);
        }
        let store = store(dir.path());
        let versions = store.versions_of("bkt", "k").unwrap();
        let shape: Vec<(bool, bool, bool)> = versions.iter().map(|v| (v.version_id.is_none(), v.meta.is_none(), v.latest)).collect();
        assert_eq!(shape, [(true, true, true), (false, false, false)]);
    }
}
