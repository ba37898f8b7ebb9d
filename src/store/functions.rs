//! Lambda functions on disk: each function's definition, its code as uploaded (the zip)
//! and that code unpacked, where its workers run.
//!
//! ```text
//! .firelake/functions/<account>/<region>/<name>/function.json   the definition (atomic write)
//! .firelake/functions/<account>/<region>/<name>/<code id>.zip    the code as uploaded
//! .firelake/functions/<account>/<region>/<name>/<code id>/       the code unpacked
//! ```
//!
//! New code is unpacked into `.firelake/tmp/` and renamed into place before the
//! definition that names it is saved, so a definition never names code that is not
//! there; a crash in between leaves an unnamed code folder, removed when the function
//! is next changed or deleted.
//!
//! Unpacking is where untrusted bytes meet the file system, so it refuses any entry that
//! would land outside the function's folder: absolute paths, `..`, writing through a
//! symbolic link, and symbolic links whose target is absolute or climbs with `..` (a
//! target that only descends stays inside, however links chain).

use std::fs::{self, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::path::{Component, Path, PathBuf};

use super::Store;
use super::atomic;

/// Most entries one code zip may hold.
const ENTRIES_MAX: usize = 50_000;

/// Why code could not be unpacked.
#[derive(Debug)]
pub enum CodeError {
    /// The bytes are not a zip file.
    NotZip(String),
    /// Unzipped, the code is over the limit.
    TooLarge {
        limit: u64,
    },
    /// An entry would be placed outside the function's folder (or is a duplicate).
    Unsafe(String),
    Io(io::Error),
}

impl From<io::Error> for CodeError {
    fn from(err: io::Error) -> CodeError {
        CodeError::Io(err)
    }
}

/// The names a function's folder is made of, checked again here so that nothing a caller
/// passes can point elsewhere.
fn valid_component(part: &str) -> bool {
    (1..=140).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Store {
    fn function_dir(&self, account: &str, region: &str, name: &str) -> io::Result<PathBuf> {
        if ![account, region, name].iter().all(|p| valid_component(p)) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a valid function name, region or account"));
        }
        Ok(self.sys.join("functions").join(account).join(region).join(name))
    }

    /// Stores `zip` as new code for the function and unpacks it (at most
    /// `unzipped_bytes_max` bytes); answers the code's id and its unzipped size.
    pub fn save_function_code(
        &self,
        account: &str,
        region: &str,
        name: &str,
        zip: &[u8],
        unzipped_bytes_max: u64,
    ) -> Result<(String, u64), CodeError> {
        let dir = self.function_dir(account, region, name)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let staging = self.sys.join("tmp").join(format!("{id}.unpack"));
        fs::create_dir(&staging)?;
        let unpacked = match unpack(zip, &staging, unzipped_bytes_max) {
            Ok(size) => size,
            Err(err) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(err);
            }
        };
        fs::create_dir_all(&dir)?;
        atomic::write_file(&self.sys.join("tmp"), &dir.join(format!("{id}.zip")), zip, &self.syncs)?;
        if let Err(err) = fs::rename(&staging, dir.join(&id)) {
            let _ = fs::remove_dir_all(&staging);
            return Err(err.into());
        }
        self.syncs.sync_folder(&dir)?;
        Ok((id, unpacked))
    }

    /// Saves a function's definition (atomically).
    pub fn save_function(&self, account: &str, region: &str, name: &str, definition: &[u8]) -> io::Result<()> {
        let dir = self.function_dir(account, region, name)?;
        fs::create_dir_all(&dir)?;
        atomic::write_file(&self.sys.join("tmp"), &dir.join("function.json"), definition, &self.syncs)
    }

    /// The folder a function's code `code_id` is unpacked in: its workers' working directory.
    pub fn function_code_dir(&self, account: &str, region: &str, name: &str, code_id: &str) -> io::Result<PathBuf> {
        if !valid_component(code_id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a code id"));
        }
        Ok(self.function_dir(account, region, name)?.join(code_id))
    }

    /// Whether code `code_id` has a regular file `file` at its root.
    pub fn function_has_file(&self, account: &str, region: &str, name: &str, code_id: &str, file: &str) -> bool {
        self.function_code_dir(account, region, name, code_id)
            .is_ok_and(|dir| fs::symlink_metadata(dir.join(file)).is_ok_and(|m| m.is_file()))
    }

    /// The zip of code `code_id`, as uploaded.
    pub fn read_function_zip(&self, account: &str, region: &str, name: &str, code_id: &str) -> io::Result<Vec<u8>> {
        let dir = self.function_code_dir(account, region, name, code_id)?;
        fs::read(dir.with_extension("zip"))
    }

    /// Removes every code of the function except `keep`.
    pub fn prune_function_code(&self, account: &str, region: &str, name: &str, keep: &str) -> io::Result<()> {
        let dir = self.function_dir(account, region, name)?;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            let stem = file_name.strip_suffix(".zip").unwrap_or(&file_name);
            if file_name == "function.json" || stem == keep {
                continue;
            }
            match entry.file_type()?.is_dir() {
                true => fs::remove_dir_all(entry.path())?,
                false => fs::remove_file(entry.path())?,
            }
        }
        Ok(())
    }

    /// Deletes a function: first its definition (so a crash leaves no function), then its code.
    pub fn delete_function(&self, account: &str, region: &str, name: &str) -> io::Result<()> {
        let dir = self.function_dir(account, region, name)?;
        match fs::remove_file(dir.join("function.json")) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        self.syncs.sync_folder(&dir)?;
        match fs::remove_dir_all(&dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Every saved function definition.
    pub fn load_functions(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let root = self.sys.join("functions");
        fs::create_dir_all(&root)?;
        for account in fs::read_dir(&root)? {
            for region in fs::read_dir(account?.path())? {
                for function in fs::read_dir(region?.path())? {
                    match fs::read(function?.path().join("function.json")) {
                        Ok(bytes) => out.push(bytes),
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                        Err(err) => return Err(err),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Unpacks `zip` into the empty folder `dest`; answers the bytes written.
pub fn unpack(zip: &[u8], dest: &Path, bytes_max: u64) -> Result<u64, CodeError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).map_err(|err| CodeError::NotZip(err.to_string()))?;
    if archive.len() > ENTRIES_MAX {
        return Err(CodeError::Unsafe(format!("the zip has more than {ENTRIES_MAX} entries")));
    }
    let mut total = 0u64;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|err| CodeError::NotZip(err.to_string()))?;
        let name = entry.name().to_owned();
        let relative = safe_relative(&name).ok_or_else(|| CodeError::Unsafe(format!("entry {name:?} is outside the folder")))?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let path = dest.join(&relative);
        make_parents(dest, &relative)?;
        if entry.is_dir() {
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(CodeError::Unsafe(format!("entry {name:?} is both a file and a folder"))),
                Err(_) => fs::create_dir(&path)?,
            }
            continue;
        }
        if entry.is_symlink() {
            let mut target = String::new();
            entry.by_ref().take(4096).read_to_string(&mut target).map_err(|_| CodeError::Unsafe(format!("link {name:?} is not text")))?;
            let descends =
                !target.is_empty() && Path::new(&target).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if !descends {
                return Err(CodeError::Unsafe(format!("link {name:?} points to {target:?}, outside its folder")));
            }
            std::os::unix::fs::symlink(&target, &path).map_err(|_| CodeError::Unsafe(format!("entry {name:?} appears twice")))?;
            continue;
        }
        let executable = entry.unix_mode().is_some_and(|mode| mode & 0o111 != 0);
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            // create_new never follows a link and never overwrites an earlier entry.
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if executable { 0o755 } else { 0o644 })
                .open(&path)
                .map_err(|_| CodeError::Unsafe(format!("entry {name:?} appears twice")))?
        };
        let left = bytes_max.saturating_sub(total);
        let written = io::copy(&mut entry.by_ref().take(left + 1), &mut file).map_err(|err| match err.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => CodeError::NotZip(err.to_string()),
            _ => CodeError::Io(err),
        })?;
        if written > left {
            return Err(CodeError::TooLarge { limit: bytes_max });
        }
        total += written;
        file.flush()?;
    }
    Ok(total)
}

/// The entry's path as plain components below the folder, or `None` if it is absolute or
/// climbs (`..` anywhere is refused, even where it would stay inside).
fn safe_relative(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Creates the folders above `relative` under `dest`, refusing to pass through a link.
fn make_parents(dest: &Path, relative: &Path) -> Result<(), CodeError> {
    let mut current = dest.to_path_buf();
    let Some(parent) = relative.parent() else { return Ok(()) };
    for component in parent.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(CodeError::Unsafe(format!("{} passes through a link", relative.display())));
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(CodeError::Unsafe(format!("{} is below a file", relative.display()))),
            Err(_) => fs::create_dir(&current)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    enum Entry<'a> {
        File(&'a str, &'a [u8]),
        Link(&'a str, &'a str),
        Dir(&'a str),
    }

    fn zip_of(entries: &[Entry]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for entry in entries {
            match entry {
                Entry::File(name, bytes) => {
                    writer.start_file(*name, SimpleFileOptions::default().unix_permissions(0o755)).unwrap();
                    writer.write_all(bytes).unwrap();
                }
                Entry::Link(name, target) => writer.add_symlink(*name, *target, SimpleFileOptions::default()).unwrap(),
                Entry::Dir(name) => writer.add_directory(*name, SimpleFileOptions::default()).unwrap(),
            }
        }
        writer.finish().unwrap().into_inner()
    }

    #[track_caller]
    fn check(entries: &[Entry], ok: bool) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("code");
        fs::create_dir(&dest).unwrap();
        let result = unpack(&zip_of(entries), &dest, 1000);
        assert_eq!(result.is_ok(), ok, "{result:?}");
        // Nothing is ever written beside the destination.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn plain_entries_unpack() {
        check(&[Entry::File("a.py", b"x"), Entry::Dir("pkg/"), Entry::File("pkg/b.py", b"y"), Entry::File("c/d/e.txt", b"z")], true);
        check(&[Entry::File("./a.py", b"x")], true);
        check(&[Entry::File("lib/x.so.1", b"x"), Entry::Link("lib/x.so", "x.so.1")], true);
        check(&[Entry::Link("here", "."), Entry::Link("sub", "lib/./deeper")], true);
    }

    #[test]
    fn escapes_are_refused() {
        check(&[Entry::File("../a.py", b"x")], false);
        check(&[Entry::File("a/../../b", b"x")], false);
        check(&[Entry::File("/etc/passwd", b"x")], false);
        check(&[Entry::Link("out", "/etc")], false);
        check(&[Entry::Link("up", "..")], false);
        check(&[Entry::Link("d/up", "../x")], false);
        // Writing through a link, even one that points inside.
        check(&[Entry::Dir("real/"), Entry::Link("l", "real"), Entry::File("l/a", b"x")], false);
        // A file below a file. (The zip crate itself refuses archives with a name twice.)
        check(&[Entry::File("a", b"x"), Entry::File("a/b", b"y")], false);
    }

    #[test]
    fn size_is_limited() {
        check(&[Entry::File("a", &[0; 1000])], true);
        check(&[Entry::File("a", &[0; 1001])], false);
        check(&[Entry::File("a", &[0; 600]), Entry::File("b", &[0; 600])], false);
    }

    #[test]
    fn executable_bit_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        unpack(&zip_of(&[Entry::File("bootstrap", b"#!/bin/sh\n")]), dir.path(), 1000).unwrap();
        assert_eq!(fs::metadata(dir.path().join("bootstrap")).unwrap().permissions().mode() & 0o111, 0o111);
    }

    #[test]
    fn not_a_zip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(unpack(b"PK not really", dir.path(), 1000), Err(CodeError::NotZip(_))));
    }
}
