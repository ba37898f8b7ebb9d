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
//! .firelake/versions/<B>/<h>/    noncurrent versions and delete markers (see [`versions`])
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

//!
//! By job: [`buckets`] (the bucket folders), [`settings`] (each bucket's settings file),
//! [`objects`] (finding, opening, committing and deleting an object), [`meta`] (its
//! metadata and fingerprint), [`placement`] (folders, and `a` beside `a/b`), [`listing`],
//! [`versions`] (versioning, noncurrent versions and delete markers), [`multipart`], [`streams`] and
//! [`journal`] (delivery streams), [`functions`] (Lambda), [`keypath`] and [`atomic`].

pub mod atomic;
pub mod buckets;
pub mod functions;
pub mod journal;
pub mod keypath;
pub mod listing;
pub mod meta;
pub mod multipart;
pub mod objects;
pub mod placement;
pub mod settings;
pub mod streams;
pub mod versions;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

// The store's types are named from outside as `store::X`, whichever file holds them.
pub use atomic::Staged;
pub use buckets::Created;
pub use listing::{ListPage, ListQuery, Listed};
pub use meta::{Fingerprint, ObjectMeta};
pub use objects::{Always, Condition};
pub use settings::{BucketInfo, Encryption, Grant, PublicAccessBlock};
pub use versions::{Changed, Deleted, Found, Version, Versioning, new_version_id, valid_version_id};

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

const STRIPES: usize = 64;

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
    /// Each bucket's settings as last read or written: every write asks for the
    /// versioning state, and every object response for the lifecycle rules.
    settings: Mutex<std::collections::HashMap<String, std::sync::Arc<BucketInfo>>>,
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
        for dir in ["tmp", "buckets", "meta", "uploads", "relocate", "versions", "streams", "journal"] {
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
            settings: Mutex::default(),
            _lock: lock,
        };
        let swept = atomic::sweep(&store.sys.join("tmp"))?;
        if swept > 0 {
            tracing::info!(swept, "removed temp files left by an earlier run");
        }
        store.finish_relocations()?;
        store.finish_versions()?;
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

    /// Deletes every bucket with its objects, metadata and uploads (POST /_firelake/reset).
    pub fn reset(&self) -> io::Result<()> {
        for bucket in self.list_buckets()? {
            fs::remove_dir_all(self.bucket_dir(&bucket.name))?;
        }
        for dir in ["buckets", "meta", "uploads", "relocate", "versions"] {
            let path = self.sys.join(dir);
            fs::remove_dir_all(&path)?;
            fs::create_dir_all(&path)?;
        }
        self.forget_settings(None);
        Ok(())
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
