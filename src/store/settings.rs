//! A bucket's settings ([`BucketInfo`]: region, owner, CORS, tags, ACL, ownership,
//! policy, public access block, versioning, lifecycle, default encryption), one JSON
//! file per bucket in `.firelake/buckets/`, replaced atomically under the bucket's lock.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// S3 Object Ownership: `BucketOwnerEnforced`, `BucketOwnerPreferred` or
    /// `ObjectWriter`. `None`: no ownership controls (deleted, or a bucket made by hand or
    /// by a firelake that did not know them), where ACLs work as for ObjectWriter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<String>,
    /// The bucket's ACL; `None`: the default one (the owner's FULL_CONTROL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<Grant>>,
    /// The bucket policy, exactly as PutBucketPolicy sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access_block: Option<PublicAccessBlock>,
    /// `Enabled` or `Suspended`; `None`: never versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<String>,
    /// `Enabled` or `Disabled`, once PutBucketVersioning set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_delete: Option<String>,
    /// The lifecycle configuration, as `s3::lifecycle` keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<serde_json::Value>,
    /// The default encryption PutBucketEncryption set; `None`: SSE-S3 (AES256), which
    /// every AWS bucket has since January 2023.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

impl BucketInfo {
    /// A new bucket's settings, with the defaults AWS gives every bucket created since
    /// April 2023: ACLs disabled (BucketOwnerEnforced) and all public access blocked.
    pub fn new(name: &str, created_ms: i64, region: &str, owner: &str) -> BucketInfo {
        BucketInfo {
            name: name.to_owned(),
            created_ms,
            region: region.to_owned(),
            owner: owner.to_owned(),
            ownership: Some(OWNERSHIP_ENFORCED.to_owned()),
            public_access_block: Some(PublicAccessBlock::all()),
            ..BucketInfo::default()
        }
    }
}

/// The Object Ownership setting under which ACLs are disabled.
pub const OWNERSHIP_ENFORCED: &str = "BucketOwnerEnforced";

/// One grant of an ACL (a bucket's or an object's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `CanonicalUser` or `Group`.
    pub grantee_type: String,
    /// The canonical user's ID, or the group's URI.
    pub grantee: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `FULL_CONTROL`, `WRITE`, `WRITE_ACP`, `READ` or `READ_ACP`.
    pub permission: String,
}

/// A bucket's default encryption (the one rule of a ServerSideEncryptionConfiguration).
/// Recorded and answered; firelake encrypts nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `AES256`, `aws:kms` or `aws:kms:dsse`.
    pub sse_algorithm: String,
    /// Only with `aws:kms` or `aws:kms:dsse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_master_key_id: Option<String>,
    #[serde(default)]
    pub bucket_key_enabled: bool,
}

/// S3 Block Public Access settings of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// All four on: what a new bucket gets.
    pub fn all() -> PublicAccessBlock {
        PublicAccessBlock { block_public_acls: true, ignore_public_acls: true, block_public_policy: true, restrict_public_buckets: true }
    }
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
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Ok(Some(BucketInfo { name: name.to_owned(), created_ms: meta.mtime() * 1000, ..BucketInfo::default() }))
            }
            Err(err) => Err(err),
        }
    }

    /// The bucket's settings, remembered between calls (the store is their only writer).
    pub fn bucket_settings(&self, name: &str) -> Result<Arc<BucketInfo>> {
        if let Some(info) = self.settings.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(info.clone());
        }
        let Some(info) = self.bucket(name)? else { return Err(StoreError::NoSuchBucket) };
        let info = Arc::new(info);
        self.settings.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), info.clone());
        Ok(info)
    }

    /// What [`Store::bucket_settings`] remembers of a bucket, without touching the disk.
    pub fn remembered_settings(&self, name: &str) -> Option<Arc<BucketInfo>> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Writes a bucket's settings; the caller holds the bucket's lock.
    pub(super) fn write_bucket(&self, info: &BucketInfo) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
        // Forgotten first: a failed write may or may not have replaced the file.
        self.forget_settings(Some(&info.name));
        atomic::write_file(&self.sys.join("tmp"), &self.bucket_file(&info.name), &bytes, &self.syncs)?;
        self.settings.lock().unwrap_or_else(|p| p.into_inner()).insert(info.name.clone(), Arc::new(info.clone()));
        Ok(())
    }

    /// Forgets what [`Store::bucket_settings`] remembered of one bucket, or of all.
    pub(super) fn forget_settings(&self, bucket: Option<&str>) {
        let mut known = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        match bucket {
            Some(bucket) => drop(known.remove(bucket)),
            None => known.clear(),
        }
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
