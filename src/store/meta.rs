//! An object's metadata: what it is ([`ObjectMeta`]), where it rides (the extended
//! attribute of its data file, else a metadata file in `.firelake/meta/`), and how a
//! reader tells whether it describes the open bytes (the [`Fingerprint`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use xattr::FileExt;

use super::{Durability, Result, Store, StoreError, atomic};

/// Identity of the data file that a metadata file describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Fingerprint {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl Fingerprint {
    pub(super) fn of(meta: &fs::Metadata) -> Fingerprint {
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
    /// The parts' checksums (base64, in part-number order) in the algorithm of `checksums`,
    /// kept when the upload declared one: GetObjectAttributes and `?partNumber` show them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_checksums: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// The object's ACL; `None`: the default one (the owner's FULL_CONTROL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<super::settings::Grant>>,
    /// The version id; `None`: the null version (every object of a bucket never versioned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default)]
    pub fingerprint: Fingerprint,
}

/// The extended attribute that carries an object's metadata on its data file.
pub(super) const META_XATTR: &str = "user.firelake.meta";
/// Metadata longer than this goes to a metadata file: ext4 keeps all of an inode's
/// attributes in one 4 KiB block, and running out there would read as a full disk.
const META_XATTR_BYTES_MAX: usize = 3 * 1024;

/// Whether an xattr error means "not here" (file system or size), not a failed disk.
fn xattr_unusable(err: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::NOTSUP, Errno::PERM, Errno::TOOBIG, Errno::RANGE].iter().any(|e| err.raw_os_error() == Some(e.raw_os_error()))
}

impl Store {
    pub(super) fn meta_path(&self, bucket: &str, key: &str) -> PathBuf {
        // One folder per bucket, so concurrent writes share their folder fsyncs.
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        self.sys.join("meta").join(bucket).join(hash)
    }

    /// Reads the metadata of the open data file, or derives it from the bytes when there
    /// is none that describes this file (a hand-copied file, a file changed by hand, or a
    /// crash between the data and metadata renames of a metadata file).
    /// `locked` says the caller holds the bucket's lock already.
    pub(super) fn meta_for(&self, bucket: &str, key: &str, file: &mut File, stat: &fs::Metadata, locked: bool) -> Result<ObjectMeta> {
        let fingerprint = Fingerprint::of(stat);
        let matching = |bytes: Vec<u8>| matching_meta(&bytes, fingerprint, key);
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
        let meta = self.derived_meta(key, file, stat)?;
        // Remember the derived metadata so the file is hashed once; losing this write is
        // harmless. A metadata file, so that a file copied in by hand is left untouched.
        let _ = self.write_meta(&meta_path, &meta);
        Ok(meta)
    }

    /// Opens the file at `path` (never through a link) with metadata that describes it
    /// (see [`Store::meta_for`]); `None` when it is gone or is no file.
    pub(super) fn open_with_meta(&self, bucket: &str, key: &str, path: &Path, locked: bool) -> Result<Option<(File, ObjectMeta)>> {
        let mut file = match super::open_no_follow(path) {
            Ok(file) => file,
            Err(err) if super::gone(&err) || super::is_link_error(&err) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let stat = file.metadata()?;
        if !stat.is_file() {
            return Ok(None);
        }
        let meta = self.meta_for(bucket, key, &mut file, &stat, locked)?;
        Ok(Some((file, meta)))
    }

    /// Metadata derived from the bytes of `file`: what a file without metadata shows.
    pub(super) fn derived_meta(&self, key: &str, file: &mut File, stat: &fs::Metadata) -> io::Result<ObjectMeta> {
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
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: stat.len(),
            etag: hex::encode(md5.finalize()),
            last_modified_ms: modified.map(|d| d.as_millis() as i64).unwrap_or(0),
            fingerprint: Fingerprint::of(stat),
            ..ObjectMeta::default()
        })
    }

    pub(super) fn write_meta(&self, path: &Path, meta: &ObjectMeta) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let bytes = serde_json::to_vec(meta).map_err(io::Error::other)?;
        atomic::write_file(&self.sys.join("tmp"), path, &bytes, &self.syncs)
    }

    /// Sets `bytes` as the metadata attribute of `file`; answers false where the file
    /// system (or the size) rules that out and a metadata file must be used.
    pub(super) fn set_meta_xattr(file: &File, bytes: &[u8]) -> io::Result<bool> {
        if bytes.len() > META_XATTR_BYTES_MAX {
            return Ok(false);
        }
        match file.set_xattr(META_XATTR, bytes) {
            Ok(()) => Ok(true),
            Err(err) if xattr_unusable(&err) => Ok(false),
            Err(err) => Err(err),
        }
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
        self.rewrite_meta(&file, &self.meta_path(bucket, key), &meta)?;
        Ok(Some(meta))
    }

    /// Replaces the metadata of the data file `file` with `meta`: its attribute, else the
    /// metadata file `meta_file`. Answers whether it rides on the attribute.
    pub(super) fn rewrite_meta(&self, file: &File, meta_file: &Path, meta: &ObjectMeta) -> Result<bool> {
        let bytes = serde_json::to_vec(meta).map_err(io::Error::other)?;
        // Setting an attribute replaces it atomically; the fsync makes it durable.
        if Self::set_meta_xattr(file, &bytes)? {
            if self.durability == Durability::Fsync {
                file.sync_all()?;
            }
            return Ok(true);
        }
        self.write_meta(meta_file, meta)?;
        // The attribute, if any, still holds the old metadata and would be read first.
        match file.remove_xattr(META_XATTR) {
            Err(err) if !xattr_unusable(&err) && err.raw_os_error() != Some(rustix::io::Errno::NODATA.raw_os_error()) => {
                return Err(err.into());
            }
            _ => {}
        }
        Ok(false)
    }
}

/// The metadata in `bytes`, if it describes the file of `key` with `fingerprint`.
pub(super) fn matching_meta(bytes: &[u8], fingerprint: Fingerprint, key: &str) -> Option<ObjectMeta> {
    let meta = serde_json::from_slice::<ObjectMeta>(bytes).ok()?;
    (meta.fingerprint == fingerprint && meta.key == key).then_some(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BucketInfo, Created};

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
