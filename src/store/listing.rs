//! Listing a bucket's objects: a walk of its folder tree, keys in UTF-8 byte order.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{ObjectMeta, Result, Store, StoreError, gone, is_link_error, keypath, open_no_follow};

/// An object found by a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    path: PathBuf,
}

impl Store {
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
}
