//! A bucket's settings ([`BucketInfo`]: region, owner, CORS, tags), one JSON file per
//! bucket in `.firelake/buckets/`, replaced atomically under the bucket's lock.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Result, Store, StoreError, atomic, valid_bucket_name};

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

impl Store {
    pub(super) fn bucket_file(&self, bucket: &str) -> PathBuf {
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

    pub(super) fn write_bucket(&self, info: &BucketInfo) -> io::Result<()> {
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
}
