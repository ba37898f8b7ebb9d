//! Placing an object's file: the folders a key needs, and `a` beside `a/b` (the object
//! `a` moves into the new folder as `a/%%`, through `.firelake/relocate/` with a note of
//! its destination, so that a crash midway is finished at the next start).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{Result, Staged, Store, StoreError, atomic, keypath};

impl Store {
    /// Renames `staged` to the object's path, making its folders (and moving an object
    /// that stands where a folder must go) as needed. Returns the path used.
    /// The caller holds the bucket's lock.
    pub(super) fn place_data(&self, bucket: &str, plain: &Path, folder_object: &Path, mut staged: Staged) -> Result<PathBuf> {
        let dest = self.place_file(bucket, plain, folder_object, staged.path())?;
        staged.mark_committed();
        Ok(dest)
    }

    /// Renames the file `from` to the object's path, as [`Store::place_data`] does.
    pub(super) fn place_file(&self, bucket: &str, plain: &Path, folder_object: &Path, from: &Path) -> Result<PathBuf> {
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
            match fs::rename(from, dest) {
                Ok(()) => return Ok(dest.to_path_buf()),
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

    pub(super) fn finish_relocations(&self) -> io::Result<()> {
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
}
