//! The data directory: buckets, objects, multipart uploads and firelake's own files.
//!
//! Only this module touches the data directory. An object with key `K` in bucket `B`
//! is the plain file `<root>/B/<path of K>` (see [`keypath`]); everything else lives
//! under `<root>/.firelake/`, which no bucket can be named:
//!
//! ```text
//! .firelake/LOCK                 held while a firelake serves this directory
//! .firelake/tmp/                 temp files, swept at start
//! .firelake/buckets/<B>.json     bucket settings (region, owner, CORS, tags)
//! .firelake/meta/<B>/<h>        object metadata, by SHA-256 of the key
//! .firelake/uploads/<id>/        multipart uploads: upload.json and the parts
//! .firelake/relocate/            objects being moved into their folder (`a` beside `a/b`)
//! .firelake/streams/<uid>.json   delivery stream definitions
//! .firelake/journal/<uid>/       each delivery stream's journal (see [`journal`])
//! .firelake/functions/           Lambda functions: definitions and code (see [`functions`])
//! ```
//!
//! An object's metadata (ETag, size, headers, checksums, tags) rides on its data file as
//! the extended attribute `user.firelake.meta`, set on the temp file before it is
//! fsynced and renamed into place: one inode, one rename, so bytes and metadata are
//! published together and a reader can never see one without the other. Where the file
//! system refuses user xattrs (or the metadata is too large for one), the metadata goes
//! to `.firelake/meta/` instead, in this order: the data is written and fsynced in a temp
//! file; its metadata, which records the temp file's inode, size and mtime (its
//! fingerprint), is written and fsynced in another; the data is renamed into place and
//! its folder fsynced; then the metadata is renamed and its folder fsynced. Either way
//! the metadata carries the fingerprint, and a reader opens the data file first and
//! trusts metadata only when the fingerprint matches the open file, so a crash between
//! the two renames, or a file edited by hand, shows the bytes with metadata derived from
//! those bytes, never bytes that disagree with their ETag.

pub mod atomic;
pub mod functions;
pub mod journal;
pub mod keypath;
pub mod multipart;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use xattr::FileExt;

pub use atomic::Staged;

/// Whether writes are fsynced before they are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync every object, metadata file and folder change before answering.
    Fsync,
    /// No fsync calls: a killed process loses nothing; a power cut may lose the last writes.
    None,
}

/// Errors of the store that the protocols turn into their own errors.
#[derive(Debug)]
pub enum StoreError {
    NoSuchBucket,
    BucketNotEmpty,
    NoSuchUpload,
    /// The key cannot be stored here (too long for a path on this file system).
    KeyTooLong,
    /// The key's path meets a symbolic link (this path, inside the bucket's folder):
    /// firelake never writes through one, nor replaces one.
    Link(PathBuf),
    Io(io::Error),
}

impl From<io::Error> for StoreError {
    fn from(err: io::Error) -> StoreError {
        StoreError::Io(err)
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NoSuchBucket => f.write_str("no such bucket"),
            StoreError::BucketNotEmpty => f.write_str("bucket not empty"),
            StoreError::NoSuchUpload => f.write_str("no such upload"),
            StoreError::KeyTooLong => f.write_str("key too long for this file system"),
            StoreError::Link(path) => write!(f, "{} is a symbolic link", path.display()),
            StoreError::Io(err) => write!(f, "{err}"),
        }
    }
}

pub type Result<T = (), E = StoreError> = std::result::Result<T, E>;

/// Identity of the data file that a metadata file describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Fingerprint {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl Fingerprint {
    fn of(meta: &fs::Metadata) -> Fingerprint {
        Fingerprint { ino: meta.ino(), size: meta.len(), mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128 }
    }
}

/// Everything S3 reports about an object besides its bytes.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Hex MD5, or `<hex>-<parts>` for a multipart object; without quotes.
    pub etag: String,
    pub last_modified_ms: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// User metadata (`x-amz-meta-*`), names in lower case without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    /// Algorithm name (`CRC32`, `CRC64NVME`, ...) to base64 value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    /// Sizes of the parts of a multipart object, in part-number order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_sizes: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub fingerprint: Fingerprint,
}

/// A bucket's settings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BucketInfo {
    pub name: String,
    pub created_ms: i64,
    pub region: String,
    pub owner: String,
    /// The CORS configuration as parsed from PutBucketCors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<(String, String)>>,
}

/// An object found by a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    path: PathBuf,
}

/// What CreateBucket found.
pub enum Created {
    New,
    Existing(BucketInfo),
    /// Something that is not a bucket (a file, a symbolic link) has the bucket's name in
    /// the data directory.
    Blocked,
}

const STRIPES: usize = 64;

/// The extended attribute that carries an object's metadata on its data file.
const META_XATTR: &str = "user.firelake.meta";
/// Metadata longer than this goes to a metadata file: ext4 keeps all of an inode's
/// attributes in one 4 KiB block, and running out there would read as a full disk.
const META_XATTR_BYTES_MAX: usize = 3 * 1024;

/// Whether an xattr error means "not here" (file system or size), not a failed disk.
fn xattr_unusable(err: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::NOTSUP, Errno::PERM, Errno::TOOBIG, Errno::RANGE].iter().any(|e| err.raw_os_error() == Some(e.raw_os_error()))
}

/// The data directory.
pub struct Store {
    root: PathBuf,
    sys: PathBuf,
    durability: Durability,
    syncs: atomic::FolderSyncs,
    /// Serialises the changes to a bucket's folder tree (striped by bucket name): every
    /// rename, unlink and folder change of objects, and the creation and deletion of the
    /// bucket itself. Folders are shared between keys (`a` becomes `a/%%` when `a/b` is
    /// written), so a per-key lock cannot keep `a` and `a/b` from racing; the lock is held
    /// only for the renames and unlinks, never for an object's bytes or an fsync.
    stripes: Vec<Mutex<()>>,
    /// Serialises the changes to one multipart upload: a part's commit, the upload's
    /// completion and its abort.
    uploads: KeyLocks,
    _lock: File,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// S3's bucket naming rules (general purpose buckets).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && !name.starts_with("xn--")
        && !name.starts_with("sthree-")
        && !name.ends_with("-s3alias")
        && !name.ends_with("--ol-s3")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

impl Store {
    /// Opens (creating if needed) the data directory, takes its lock, and repairs what
    /// a crash may have left: temp files are swept and interrupted relocations finished.
    pub fn open(root: &Path, durability: Durability) -> io::Result<Store> {
        fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let sys = root.join(".firelake");
        for dir in ["tmp", "buckets", "meta", "uploads", "relocate", "streams", "journal"] {
            fs::create_dir_all(sys.join(dir))?;
        }
        let lock = File::create(sys.join("LOCK"))?;
        if let Err(err) = lock.try_lock() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("the data directory {} is in use by another firelake ({err})", root.display()),
            ));
        }
        let store = Store {
            root,
            sys,
            durability,
            syncs: atomic::FolderSyncs::new(durability),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            uploads: KeyLocks::default(),
            _lock: lock,
        };
        let swept = atomic::sweep(&store.sys.join("tmp"))?;
        if swept > 0 {
            tracing::info!(swept, "removed temp files left by an earlier run");
        }
        store.finish_relocations()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder where firelake keeps its own files.
    pub fn system_dir(&self) -> &Path {
        &self.sys
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// A new temp file for an object or a part.
    pub fn stage(&self) -> io::Result<Staged> {
        Staged::create(&self.sys.join("tmp"))
    }

    /// The lock on `bucket`'s folder tree (see [`Store::stripes`]).
    fn bucket_lock(&self, bucket: &str) -> MutexGuard<'_, ()> {
        let digest = Sha256::digest(bucket.as_bytes());
        let index = digest[0] as usize % STRIPES;
        self.stripes[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- buckets ----

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    fn bucket_file(&self, bucket: &str) -> PathBuf {
        self.sys.join("buckets").join(format!("{bucket}.json"))
    }

    /// The bucket's settings, or `None` when there is no such bucket. A folder made by
    /// hand is a bucket too, with settings derived from the folder.
    pub fn bucket(&self, name: &str) -> io::Result<Option<BucketInfo>> {
        if !valid_bucket_name(name) {
            return Ok(None);
        }
        let dir = self.bucket_dir(name);
        // A symbolic link is not a bucket, even to a folder: nothing is read through it.
        let meta = match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => meta,
            Ok(_) => return Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        match fs::read(self.bucket_file(name)) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(info) => Ok(Some(info)),
                Err(err) => Err(io::Error::new(io::ErrorKind::InvalidData, err)),
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Some(BucketInfo {
                name: name.to_owned(),
                created_ms: meta.mtime() * 1000,
                region: String::new(),
                owner: String::new(),
                cors: None,
                tags: None,
            })),
            Err(err) => Err(err),
        }
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
            return Ok(Created::Existing(existing));
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

    fn write_bucket(&self, info: &BucketInfo) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
        atomic::write_file(&self.sys.join("tmp"), &self.bucket_file(&info.name), &bytes, &self.syncs)
    }

    /// Changes a bucket's settings; a hand-made bucket gets a settings file.
    pub fn update_bucket(&self, name: &str, change: impl FnOnce(&mut BucketInfo)) -> Result<BucketInfo> {
        let _guard = self.bucket_lock(name);
        let Some(mut info) = self.bucket(name)? else { return Err(StoreError::NoSuchBucket) };
        change(&mut info);
        self.write_bucket(&info)?;
        Ok(info)
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
            if has_file(&dir)? {
                return Err(StoreError::BucketNotEmpty);
            }
            match remove_empty_tree(&dir) {
                // Something appeared that firelake did not put there.
                Err(err) if err.kind() == io::ErrorKind::DirectoryNotEmpty => return Err(StoreError::BucketNotEmpty),
                other => other?,
            }
            let _ = fs::remove_dir_all(self.sys.join("meta").join(name));
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

    // ---- objects ----

    /// The file of `key` when its path is not a folder, and the file inside that folder.
    fn object_paths(&self, bucket: &str, key: &str) -> Result<(PathBuf, PathBuf)> {
        let mut path = self.bucket_dir(bucket);
        for component in keypath::components(key) {
            path.push(component);
        }
        if path.as_os_str().len() > 4000 {
            return Err(StoreError::KeyTooLong);
        }
        let folder_object = path.join(keypath::FOLDER_OBJECT);
        Ok((path, folder_object))
    }

    fn meta_path(&self, bucket: &str, key: &str) -> PathBuf {
        // One folder per bucket, so concurrent writes share their folder fsyncs.
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        self.sys.join("meta").join(bucket).join(hash)
    }

    /// Opens the object's data file: the plain path, or the folder object when the plain
    /// path is a folder.
    /// Nothing is read through a symbolic link: a link on the way, or as the file, is no object.
    fn open_data(&self, bucket: &str, key: &str) -> Result<Option<(File, fs::Metadata)>> {
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        for path in [plain, folder_object] {
            if self.link_above(bucket, &path)?.is_some() {
                continue;
            }
            match open_no_follow(&path) {
                Ok(file) => {
                    let meta = file.metadata()?;
                    if meta.is_file() {
                        return Ok(Some((file, meta)));
                    }
                }
                Err(err) if gone(&err) || is_link_error(&err) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(None)
    }

    /// The first symbolic link among the folders between the bucket's folder and `path`
    /// (both excluded; the bucket's folder is never a link, see [`Store::bucket_exists`]).
    /// A folder that does not exist ends the search: nothing below it exists either.
    fn link_above(&self, bucket: &str, path: &Path) -> io::Result<Option<PathBuf>> {
        let bucket_dir = self.bucket_dir(bucket);
        let Some(parent) = path.parent() else { return Ok(None) };
        let Ok(relative) = parent.strip_prefix(&bucket_dir) else { return Ok(None) };
        let mut folder = bucket_dir;
        for component in relative.components() {
            folder.push(component);
            match fs::symlink_metadata(&folder) {
                Ok(meta) if meta.file_type().is_symlink() => return Ok(Some(folder)),
                Ok(_) => {}
                Err(err) if gone(&err) => return Ok(None),
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// Opens an object for reading, with metadata that describes exactly the open bytes.
    pub fn open_object(&self, bucket: &str, key: &str) -> Result<Option<(File, ObjectMeta)>> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let opened = match self.open_data(bucket, key)? {
            Some(opened) => Some(opened),
            // The object may be moving into its folder (`a` to `a/%%`) right now: only
            // under the bucket's lock is "not found" an answer.
            None => {
                let _guard = self.bucket_lock(bucket);
                self.open_data(bucket, key)?
            }
        };
        let Some((mut file, stat)) = opened else { return Ok(None) };
        let meta = self.meta_for(bucket, key, &mut file, &stat, false)?;
        Ok(Some((file, meta)))
    }

    /// The metadata of an object found by a listing.
    pub fn listed_meta(&self, bucket: &str, listed: &Listed) -> Result<Option<ObjectMeta>> {
        // Since the walk the file may have gone, or become a folder (`a` moved to `a/%%`).
        let mut file = match open_no_follow(&listed.path) {
            Ok(file) => file,
            Err(err) if gone(&err) || is_link_error(&err) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let stat = file.metadata()?;
        if !stat.is_file() {
            return Ok(None);
        }
        Ok(Some(self.meta_for(bucket, &listed.key, &mut file, &stat, false)?))
    }

    /// Reads the metadata of the open data file, or derives it from the bytes when there
    /// is none that describes this file (a hand-copied file, a file changed by hand, or a
    /// crash between the data and metadata renames of a metadata file).
    /// `locked` says the caller holds the bucket's lock already.
    fn meta_for(&self, bucket: &str, key: &str, file: &mut File, stat: &fs::Metadata, locked: bool) -> Result<ObjectMeta> {
        let fingerprint = Fingerprint::of(stat);
        let matching = |bytes: Vec<u8>| -> Option<ObjectMeta> {
            let meta = serde_json::from_slice::<ObjectMeta>(&bytes).ok()?;
            (meta.fingerprint == fingerprint && meta.key == key).then_some(meta)
        };
        if let Some(meta) = file.get_xattr(META_XATTR).ok().flatten().and_then(matching) {
            return Ok(meta);
        }
        let meta_path = self.meta_path(bucket, key);
        let read_file = || fs::read(&meta_path).ok().and_then(matching);
        if let Some(meta) = read_file() {
            return Ok(meta);
        }
        // A commit of this key may be between its two renames: look again under its lock.
        if !locked {
            let _guard = self.bucket_lock(bucket);
            if let Some(meta) = read_file() {
                return Ok(meta);
            }
        }
        let mut md5 = Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
        }
        file.seek(io::SeekFrom::Start(0))?;
        let modified = stat.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let meta = ObjectMeta {
            key: key.to_owned(),
            size: stat.len(),
            etag: hex::encode(md5.finalize()),
            last_modified_ms: modified.map(|d| d.as_millis() as i64).unwrap_or(0),
            fingerprint,
            ..ObjectMeta::default()
        };
        // Remember the derived metadata so the file is hashed once; losing this write is
        // harmless. A metadata file, so that a file copied in by hand is left untouched.
        let _ = self.write_meta(&meta_path, &meta);
        Ok(meta)
    }

    fn write_meta(&self, path: &Path, meta: &ObjectMeta) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let bytes = serde_json::to_vec(meta).map_err(io::Error::other)?;
        atomic::write_file(&self.sys.join("tmp"), path, &bytes, &self.syncs)
    }

    /// Sets `bytes` as the metadata attribute of `file`; answers false where the file
    /// system (or the size) rules that out and a metadata file must be used.
    fn set_meta_xattr(file: &File, bytes: &[u8]) -> io::Result<bool> {
        if bytes.len() > META_XATTR_BYTES_MAX {
            return Ok(false);
        }
        match file.set_xattr(META_XATTR, bytes) {
            Ok(()) => Ok(true),
            Err(err) if xattr_unusable(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Publishes a staged file as the object `key`, replacing any earlier one. `meta`
    /// gets its fingerprint here.
    pub fn commit_object(&self, bucket: &str, key: &str, mut staged: Staged, mut meta: ObjectMeta) -> Result<ObjectMeta> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        meta.key = key.to_owned();
        meta.fingerprint = Fingerprint::of(&staged.file().metadata()?);
        meta.size = meta.fingerprint.size;
        let meta_bytes = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        let meta_path = self.meta_path(bucket, key);
        let on_file = Self::set_meta_xattr(staged.file(), &meta_bytes)?;
        staged.sync(self.durability)?;
        #[cfg(feature = "fault-injection")]
        staged.tear_under_fault()?;
        if on_file {
            // One fsync and one rename publish the bytes and their metadata together.
            let dest = {
                let _guard = self.bucket_lock(bucket);
                let dest = self.place_data(bucket, &plain, &folder_object, staged)?;
                // A metadata file left from before describes another inode; drop it.
                match fs::remove_file(&meta_path) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err.into()),
                    _ => {}
                }
                dest
            };
            self.syncs.sync_parent(&dest)?;
            return Ok(meta);
        }
        let mut staged_meta = self.stage()?;
        std::io::Write::write_all(staged_meta.file(), &meta_bytes)?;
        staged_meta.sync(self.durability)?;
        if let Some(parent) = meta_path.parent() {
            fs::create_dir_all(parent)?;
        }
        let dest = {
            // Renames of one key happen in pairs, so its data and metadata match once both land.
            let _guard = self.bucket_lock(bucket);
            let dest = self.place_data(bucket, &plain, &folder_object, staged)?;
            staged_meta.rename_to(&meta_path)?;
            dest
        };
        self.syncs.sync_parent(&dest)?;
        self.syncs.sync_parent(&meta_path)?;
        Ok(meta)
    }

    /// Renames `staged` to the object's path, making its folders (and moving an object
    /// that stands where a folder must go) as needed. Returns the path used.
    /// The caller holds the bucket's lock.
    fn place_data(&self, bucket: &str, plain: &Path, folder_object: &Path, mut staged: Staged) -> Result<PathBuf> {
        // Checked under the lock: a bucket deleted since the caller looked takes the write
        // with it, and the answer says so.
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let bucket_dir = self.bucket_dir(bucket);
        // Racing deletes may remove a folder this write just made; a few tries settle it.
        for _ in 0..8 {
            let plain_type = fs::symlink_metadata(plain).map(|m| m.file_type());
            let dest = if plain_type.as_ref().is_ok_and(|t| t.is_dir()) { folder_object } else { plain };
            let Some(parent) = dest.parent() else { return Err(io::Error::other("an object path has no folder").into()) };
            match self.make_folders(&bucket_dir, parent) {
                Err(StoreError::Io(err)) if err.kind() == io::ErrorKind::NotFound => continue,
                other => other?,
            }
            // A link where the object goes is the user's, and stays.
            if fs::symlink_metadata(dest).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(StoreError::Link(dest.to_path_buf()));
            }
            match fs::rename(staged.path(), dest) {
                Ok(()) => {
                    staged.mark_committed();
                    return Ok(dest.to_path_buf());
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::NotFound
                            | io::ErrorKind::IsADirectory
                            | io::ErrorKind::DirectoryNotEmpty
                            | io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(err) => return Err(err.into()),
            }
        }
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        Err(io::Error::other(format!("could not place {} after repeated races", plain.display())).into())
    }

    /// Creates the folders from `bucket_dir` down to `folder`. Where an object's file
    /// stands in the way (`a` when writing `a/b`), that object moves into the new
    /// folder as its folder object (`a/%%`).
    /// A symbolic link on the way refuses the write: nothing is written through one.
    fn make_folders(&self, bucket_dir: &Path, folder: &Path) -> Result {
        let relative = folder.strip_prefix(bucket_dir).map_err(io::Error::other)?;
        let mut path = bucket_dir.to_path_buf();
        for component in relative.components() {
            path.push(component);
            let existing = match fs::symlink_metadata(&path) {
                Ok(meta) => Some(meta.file_type()),
                Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                Err(err) => return Err(err.into()),
            };
            match existing {
                Some(kind) if kind.is_dir() => {}
                Some(kind) if kind.is_symlink() => return Err(StoreError::Link(path)),
                Some(_) => self.relocate_into_folder(&path)?,
                None => match fs::create_dir(&path) {
                    Ok(()) => {}
                    // Made meanwhile by hand; the next try looks at it.
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Err(io::Error::from(io::ErrorKind::NotFound).into()),
                    Err(err) => return Err(err.into()),
                },
            }
        }
        Ok(())
    }

    /// Moves the object file at `path` to `path/%%`, through `.firelake/relocate` with a
    /// note of where it goes, so that a crash midway is finished at the next start.
    fn relocate_into_folder(&self, path: &Path) -> io::Result<()> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let parking = self.sys.join("relocate").join(&id);
        let note = self.sys.join("relocate").join(format!("{id}.to"));
        let dest = path.join(keypath::FOLDER_OBJECT);
        atomic::write_file(&self.sys.join("tmp"), &note, dest.as_os_str().as_encoded_bytes(), &self.syncs)?;
        match fs::rename(path, &parking) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::remove_file(&note)?;
                return fs::create_dir(path).or_else(|e| if e.kind() == io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) });
            }
            Err(err) => return Err(err),
        }
        self.syncs.sync_parent(&parking)?;
        match fs::create_dir(path) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => return Err(err),
            _ => {}
        }
        fs::rename(&parking, &dest)?;
        self.syncs.sync_parent(&dest)?;
        fs::remove_file(&note)?;
        Ok(())
    }

    fn finish_relocations(&self) -> io::Result<()> {
        let dir = self.sys.join("relocate");
        for entry in fs::read_dir(&dir)? {
            let note = entry?.path();
            if note.extension().is_none_or(|ext| ext != "to") {
                continue;
            }
            let parking = note.with_extension("");
            if parking.exists() {
                let dest = PathBuf::from(String::from_utf8_lossy(&fs::read(&note)?).into_owned());
                if !dest.starts_with(&self.root) || dest.starts_with(&self.sys) {
                    continue;
                }
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::rename(&parking, &dest)?;
                tracing::info!(path = %dest.display(), "finished moving an object into its folder");
            }
            fs::remove_file(&note)?;
        }
        Ok(())
    }

    /// Deletes an object; answers whether there was one. Folders left empty are removed.
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<bool> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        let mut deleted = None;
        {
            // Under the bucket's lock, so that a write of `a/b` cannot move `a` into its folder
            // between the look and the unlink (and leave `a` behind a 204).
            let _guard = self.bucket_lock(bucket);
            for path in [&plain, &folder_object] {
                // Only files are objects: a link (or anything through one) is left alone.
                if self.link_above(bucket, path)?.is_some() {
                    continue;
                }
                match fs::symlink_metadata(path) {
                    Ok(meta) if meta.is_file() => {
                        fs::remove_file(path)?;
                        deleted = Some(self.prune_folders(bucket, path));
                        break;
                    }
                    _ => {}
                }
            }
            match fs::remove_file(self.meta_path(bucket, key)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err.into()),
                _ => {}
            }
        }
        if let Some(folder) = &deleted {
            self.syncs.sync_folder(folder)?;
        }
        Ok(deleted.is_some())
    }

    /// Removes the empty folders above a deleted file, up to the bucket's folder; answers
    /// the folder that remains, whose fsync makes the deletion durable.
    fn prune_folders(&self, bucket: &str, path: &Path) -> PathBuf {
        let bucket_dir = self.bucket_dir(bucket);
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == bucket_dir || !d.starts_with(&bucket_dir) || fs::remove_dir(d).is_err() {
                return d.to_path_buf();
            }
            dir = d.parent();
        }
        bucket_dir
    }

    /// Replaces an object's metadata (tags) while keeping its bytes.
    pub fn update_meta(&self, bucket: &str, key: &str, change: impl FnOnce(&mut ObjectMeta)) -> Result<Option<ObjectMeta>> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        // Opened under the lock, so that the attribute lands on the file a racing PUT did
        // not just replace (an answer of 200 means the tags are on the object).
        let _guard = self.bucket_lock(bucket);
        let Some((mut file, stat)) = self.open_data(bucket, key)? else { return Ok(None) };
        let mut meta = self.meta_for(bucket, key, &mut file, &stat, true)?;
        change(&mut meta);
        let bytes = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        // Setting an attribute replaces it atomically; the fsync makes it durable.
        if Self::set_meta_xattr(&file, &bytes)? {
            if self.durability == Durability::Fsync {
                file.sync_all()?;
            }
            return Ok(Some(meta));
        }
        self.write_meta(&self.meta_path(bucket, key), &meta)?;
        // The attribute, if any, still holds the old metadata and would be read first.
        match file.remove_xattr(META_XATTR) {
            Err(err) if !xattr_unusable(&err) && err.raw_os_error() != Some(rustix::io::Errno::NODATA.raw_os_error()) => {
                return Err(err.into());
            }
            _ => {}
        }
        Ok(Some(meta))
    }

    /// Deletes every bucket with its objects, metadata and uploads (POST /_firelake/reset).
    pub fn reset(&self) -> io::Result<()> {
        for bucket in self.list_buckets()? {
            fs::remove_dir_all(self.bucket_dir(&bucket.name))?;
        }
        for dir in ["buckets", "meta", "uploads", "relocate"] {
            let path = self.sys.join(dir);
            fs::remove_dir_all(&path)?;
            fs::create_dir_all(&path)?;
        }
        Ok(())
    }

    // ---- delivery streams ----

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

    /// Every object of `bucket` whose key starts with `prefix`, in UTF-8 byte order.
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let bucket_dir = self.bucket_dir(bucket);
        // Start the walk at the deepest folder the prefix names, when that folder is plain.
        let mut start = bucket_dir.clone();
        let mut start_components: Vec<String> = Vec::new();
        if let Some((folders, _)) = prefix.rsplit_once('/') {
            let components = keypath::components(folders);
            if components.iter().all(|c| !c.starts_with('%')) {
                for c in &components {
                    start.push(c);
                }
                start_components = components;
            }
        }
        let mut out = Vec::new();
        // Symbolic links are not followed, and a folder is walked once (a bind mount of a
        // folder inside itself would otherwise never end).
        let mut walked = std::collections::HashSet::new();
        if fs::symlink_metadata(&start).is_ok_and(|m| m.file_type().is_symlink()) || self.link_above(bucket, &start.join("x"))?.is_some() {
            return Ok(out);
        }
        let mut stack: Vec<(PathBuf, Vec<String>)> = vec![(start, start_components)];
        while let Some((dir, components)) = stack.pop() {
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() && walked.insert((meta.dev(), meta.ino())) => {}
                _ => continue,
            }
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => continue,
                Err(err) => return Err(err.into()),
            };
            for entry in entries {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
                let file_type = match entry.file_type() {
                    Ok(file_type) => file_type,
                    Err(err) if gone(&err) => continue,
                    Err(err) => return Err(err.into()),
                };
                let mut child = components.clone();
                child.push(name);
                if file_type.is_dir() {
                    stack.push((entry.path(), child));
                } else if file_type.is_file() {
                    let parts: Vec<&str> = child.iter().map(String::as_str).collect();
                    if let Some(key) = keypath::key_of(&parts)
                        && key.starts_with(prefix)
                    {
                        out.push(Listed { key, path: entry.path() });
                    }
                }
            }
        }
        out.sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        Ok(out)
    }
}

/// Locks named by a string (an upload id), held by [`KeyGuard`]s.
#[derive(Default)]
struct KeyLocks {
    held: Mutex<std::collections::HashSet<String>>,
    released: Condvar,
}

/// Holds one name of a [`KeyLocks`] until dropped.
pub struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
}

impl KeyLocks {
    fn lock(&self, key: &str) -> KeyGuard<'_> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.contains(key) {
            held = self.released.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.insert(key.to_owned());
        KeyGuard { locks: self, key: key.to_owned() }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.key);
        drop(held);
        self.locks.released.notify_all();
    }
}

/// Whether an error opening a path means it is not (or no longer) there as a file.
fn gone(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory)
}

/// Whether opening with `O_NOFOLLOW` met a symbolic link.
fn is_link_error(err: &io::Error) -> bool {
    err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

/// Opens `path` for reading, refusing (with `ELOOP`) when `path` itself is a symbolic link.
fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Fsync).unwrap();
        let info = BucketInfo { name: "bkt".into(), region: "us-east-1".into(), ..BucketInfo::default() };
        assert!(matches!(store.create_bucket(&info).unwrap(), Created::New));
        (dir, store)
    }

    fn md5_hex(bytes: &[u8]) -> String {
        hex::encode(Md5::digest(bytes))
    }

    fn put(store: &Store, key: &str, bytes: &[u8], meta: ObjectMeta) -> ObjectMeta {
        let meta = ObjectMeta { etag: md5_hex(bytes), ..meta };
        let mut staged = store.stage().unwrap();
        std::io::Write::write_all(staged.file(), bytes).unwrap();
        store.commit_object("bkt", key, staged, meta).unwrap()
    }

    fn read(store: &Store, key: &str) -> (Vec<u8>, ObjectMeta) {
        let (mut file, meta) = store.open_object("bkt", key).unwrap().unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        (bytes, meta)
    }

    #[test]
    fn metadata_rides_on_the_data_file() {
        let (dir, store) = store();
        let meta = ObjectMeta { user: BTreeMap::from([("team".into(), "fleet".into())]), ..ObjectMeta::default() };
        put(&store, "a/b.txt", b"hello", meta);
        let path = dir.path().join("bkt/a/b.txt");
        assert!(xattr::get(&path, META_XATTR).unwrap().is_some());
        assert!(!store.meta_path("bkt", "a/b.txt").exists());
        let (bytes, meta) = read(&store, "a/b.txt");
        assert_eq!(
            (bytes.as_slice(), meta.etag.as_str(), meta.user["team"].as_str()),
            (&b"hello"[..], md5_hex(b"hello").as_str(), "fleet")
        );
        // `a` beside `a/b.txt` moves into the folder; its metadata moves with its inode.
        put(
            &store,
            "a",
            b"folder object",
            ObjectMeta { headers: BTreeMap::from([("content-type".into(), "text/x".into())]), ..ObjectMeta::default() },
        );
        put(&store, "a/c", b"c", ObjectMeta::default());
        let (bytes, meta) = read(&store, "a");
        assert_eq!((bytes.as_slice(), meta.headers["content-type"].as_str()), (&b"folder object"[..], "text/x"));
    }

    #[test]
    fn metadata_too_large_for_an_attribute_goes_to_a_file() {
        let (dir, store) = store();
        let user: BTreeMap<String, String> = (0..40).map(|i| (format!("k{i}"), "v".repeat(100))).collect();
        put(&store, "big-meta", b"x", ObjectMeta { user: user.clone(), ..ObjectMeta::default() });
        assert!(xattr::get(dir.path().join("bkt/big-meta"), META_XATTR).unwrap().is_none());
        assert!(store.meta_path("bkt", "big-meta").exists());
        assert_eq!(read(&store, "big-meta").1.user, user);

        // Tags that no longer fit: the file takes over and the stale attribute goes.
        put(&store, "tagged", b"y", ObjectMeta::default());
        let tags: Vec<(String, String)> = (0..10).map(|i| (format!("tag{i}-{}", "k".repeat(100)), "t".repeat(250))).collect();
        store.update_meta("bkt", "tagged", |m| m.tags = vec![("small".into(), "1".into())]).unwrap();
        assert_eq!(read(&store, "tagged").1.tags, vec![("small".to_owned(), "1".to_owned())]);
        store.update_meta("bkt", "tagged", |m| m.tags = tags.clone()).unwrap();
        assert!(xattr::get(dir.path().join("bkt/tagged"), META_XATTR).unwrap().is_none());
        assert_eq!(read(&store, "tagged").1.tags, tags);
        // A new PUT of the key puts the metadata back on the file and drops the old file.
        put(&store, "tagged", b"z", ObjectMeta::default());
        assert!(!store.meta_path("bkt", "tagged").exists());
        assert!(read(&store, "tagged").1.tags.is_empty());
    }

    #[test]
    fn files_changed_or_copied_by_hand_get_metadata_from_their_bytes() {
        let (dir, store) = store();
        put(&store, "edited", b"before", ObjectMeta::default());
        let path = dir.path().join("bkt/edited");
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&path, b"after, and longer").unwrap(); // same inode, attribute kept
        assert!(xattr::get(&path, META_XATTR).unwrap().is_some());
        let (bytes, meta) = read(&store, "edited");
        assert_eq!((meta.etag, meta.size), (md5_hex(&bytes), 17));
        fs::write(dir.path().join("bkt/copied"), b"by hand").unwrap();
        assert_eq!(read(&store, "copied").1.etag, md5_hex(b"by hand"));
    }
}
