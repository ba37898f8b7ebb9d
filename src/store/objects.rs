//! Objects: where a key's file is, opening it with metadata that describes exactly the
//! open bytes, the commit that publishes a staged file with its metadata, and deletion.

use std::convert::Infallible;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::meta::Fingerprint;
use super::{
    Deleted, ObjectMeta, Result, Staged, Store, StoreError, Versioning, gone, is_link_error, keypath, new_version_id, open_no_follow,
};

/// A condition on the current object of a key, checked under the bucket's lock right
/// before a commit or a delete changes that object: what S3's conditional writes need.
pub trait Condition {
    /// The caller's own answer when the condition does not hold.
    type Refusal;
    /// Whether the change may go ahead, given the current object (`None`: there is none).
    fn allows(&self, current: Option<&ObjectMeta>) -> std::result::Result<(), Self::Refusal>;
}

/// The condition of an unconditional change.
pub struct Always;

impl Condition for Always {
    type Refusal = Infallible;
    fn allows(&self, _: Option<&ObjectMeta>) -> std::result::Result<(), Infallible> {
        Ok(())
    }
}

impl Store {
    /// The file of `key` when its path is not a folder, and the file inside that folder.
    pub(super) fn object_paths(&self, bucket: &str, key: &str) -> Result<(PathBuf, PathBuf)> {
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

    /// Opens the object's data file: the plain path, or the folder object when the plain
    /// path is a folder.
    /// Nothing is read through a symbolic link: a link on the way, or as the file, is no object.
    pub(super) fn open_data(&self, bucket: &str, key: &str) -> Result<Option<(File, fs::Metadata)>> {
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
    pub(super) fn link_above(&self, bucket: &str, path: &Path) -> io::Result<Option<PathBuf>> {
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

    /// Publishes a staged file as the object `key`, replacing any earlier one. `meta`
    /// gets its fingerprint here.
    pub fn commit_object(&self, bucket: &str, key: &str, staged: Staged, meta: ObjectMeta) -> Result<ObjectMeta> {
        let Ok(meta) = self.commit_object_if::<Always>(bucket, key, staged, meta, None)?;
        Ok(meta)
    }

    /// As [`Store::commit_object`], when `condition` allows it: the condition sees the
    /// key's current object under the bucket's lock, in the same hold as the rename that
    /// replaces it, so no other commit or delete of the bucket comes between the two.
    pub fn commit_object_if<C: Condition>(
        &self,
        bucket: &str,
        key: &str,
        mut staged: Staged,
        mut meta: ObjectMeta,
        condition: Option<&C>,
    ) -> Result<std::result::Result<ObjectMeta, C::Refusal>> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let versioning = self.versioning(bucket)?;
        meta.key = key.to_owned();
        meta.version_id = (versioning == Versioning::Enabled).then(new_version_id);
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
            let (dest, moved) = {
                let _guard = self.bucket_lock(bucket);
                if let Err(refused) = self.check_current(bucket, key, condition)? {
                    return Ok(Err(refused));
                }
                // In a versioned bucket the current version first moves aside.
                let mut moved = self.before_publish(bucket, key, versioning, &plain, &folder_object)?;
                let dest = self.place_data(bucket, &plain, &folder_object, staged)?;
                // A metadata file left from before describes another inode; drop it.
                match fs::remove_file(&meta_path) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err.into()),
                    _ => {}
                }
                moved.extend(self.after_publish(bucket, key, versioning)?);
                (dest, moved)
            };
            for folder in &moved {
                self.syncs.sync_folder(folder)?;
            }
            self.syncs.sync_parent(&dest)?;
            return Ok(Ok(meta));
        }
        let mut staged_meta = self.stage()?;
        std::io::Write::write_all(staged_meta.file(), &meta_bytes)?;
        staged_meta.sync(self.durability)?;
        if let Some(parent) = meta_path.parent() {
            fs::create_dir_all(parent)?;
        }
        let (dest, moved) = {
            // Renames of one key happen in pairs, so its data and metadata match once both land.
            let _guard = self.bucket_lock(bucket);
            if let Err(refused) = self.check_current(bucket, key, condition)? {
                return Ok(Err(refused));
            }
            let mut moved = self.before_publish(bucket, key, versioning, &plain, &folder_object)?;
            let dest = self.place_data(bucket, &plain, &folder_object, staged)?;
            staged_meta.rename_to(&meta_path)?;
            moved.extend(self.after_publish(bucket, key, versioning)?);
            (dest, moved)
        };
        for folder in &moved {
            self.syncs.sync_folder(folder)?;
        }
        self.syncs.sync_parent(&dest)?;
        self.syncs.sync_parent(&meta_path)?;
        Ok(Ok(meta))
    }

    /// Runs `condition` on the key's current object; the caller holds the bucket's lock.
    pub(super) fn check_current<C: Condition>(
        &self,
        bucket: &str,
        key: &str,
        condition: Option<&C>,
    ) -> Result<std::result::Result<(), C::Refusal>> {
        let Some(condition) = condition else { return Ok(Ok(())) };
        // A bucket deleted meanwhile is NoSuchBucket, whatever the condition says.
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let current = match self.open_data(bucket, key)? {
            Some((mut file, stat)) => Some(self.meta_for(bucket, key, &mut file, &stat, true)?),
            None => None,
        };
        Ok(condition.allows(current.as_ref()))
    }

    /// Deletes an object; answers whether there was one. Folders left empty are removed.
    /// In a versioned bucket the object becomes noncurrent under a new delete marker.
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<bool> {
        let Ok(deleted) = self.delete_object_if::<Always>(bucket, key, None)?;
        Ok(deleted.existed)
    }

    /// As [`Store::delete_object`], when `condition` allows it (checked as a commit's is).
    pub fn delete_object_if<C: Condition>(
        &self,
        bucket: &str,
        key: &str,
        condition: Option<&C>,
    ) -> Result<std::result::Result<Deleted, C::Refusal>> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let versioning = self.versioning(bucket)?;
        if versioning != Versioning::Unversioned {
            return self.delete_versioned(bucket, key, versioning, condition);
        }
        let (plain, folder_object) = self.object_paths(bucket, key)?;
        let mut deleted = None;
        {
            // Under the bucket's lock, so that a write of `a/b` cannot move `a` into its folder
            // between the look and the unlink (and leave `a` behind a 204).
            let _guard = self.bucket_lock(bucket);
            if let Err(refused) = self.check_current(bucket, key, condition)? {
                return Ok(Err(refused));
            }
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
        Ok(Ok(Deleted { existed: deleted.is_some(), ..Deleted::default() }))
    }

    /// Removes the empty folders above a deleted file, up to the bucket's folder; answers
    /// the folder that remains, whose fsync makes the deletion durable.
    pub(super) fn prune_folders(&self, bucket: &str, path: &Path) -> PathBuf {
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
}
