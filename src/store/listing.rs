//! Listing a bucket's objects: a lazy walk of its folder tree in UTF-8 byte order of the
//! keys, which stops when the page is full.
//!
//! A folder's files do not list in the order of their names: the folder `a` holds the
//! keys `a` (as `a/%%`) and `a/...`, while its siblings `a-b` and `a.txt` sort between
//! those (`-` and `.` come before `/`), and escaped names (`%...`) decode to other bytes.
//! So the walk is a merge: a heap holds files by their key and unopened folders by the
//! smallest key they can hold (every key below a folder starts with it). Popping a
//! folder reads its entries (one `read_dir`, no more) into the heap; popping a file
//! lists it. A folder that holds no key after the start, or none within the prefix, is
//! never opened, and a folder whose keys all roll up into one common prefix is not
//! walked: the prefix is listed once the folder is seen to hold a key. The cost of a
//! page is then the folders on the way to it and the page itself, whatever the size of
//! the rest of the bucket.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

use super::{ObjectMeta, Result, Store, StoreError, gone, keypath};

/// An object found by a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    path: PathBuf,
}

/// One page of a listing: objects and common prefixes, each in key order.
#[derive(Debug, Default)]
pub struct ListPage {
    pub objects: Vec<Listed>,
    pub prefixes: Vec<String>,
    /// Whether entries follow the page.
    pub truncated: bool,
    /// The last key or common prefix on the page, where the next page starts after.
    pub last: Option<String>,
}

/// What a listing asks for: keys starting with `prefix` and greater than `after`,
/// rolled up at `delimiter`.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub after: &'a str,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A common prefix that holds the keys of the folder at the item's path (less the
    /// folder object `%%` when `skip_own` is set), listed once that folder holds one.
    Prefix { skip_own: bool },
    /// A file, whose key is the item's key when its name is the canonical one.
    File,
    /// An unopened folder: every key below it starts with `base`. A complete folder
    /// holds whole segments (`base` ends with `/`, and it may hold its own object `%%`
    /// with the key `base` less the `/`); the others hold the pieces of a long segment.
    Folder { base: Vec<u8>, complete: bool },
}

/// An entry of the walk's heap, ordered by key (the smallest key a folder can hold).
#[derive(Debug, PartialEq, Eq)]
struct Item {
    key: Vec<u8>,
    kind: Kind,
    path: PathBuf,
}

impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key).then_with(|| self.kind.cmp(&other.kind)).then_with(|| self.path.cmp(&other.path))
    }
}

impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn decoded(escaped: &str) -> Vec<u8> {
    percent_decode_str(escaped).collect()
}

fn joined(base: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(base.len() + rest.len() + 1);
    out.extend_from_slice(base);
    out.extend_from_slice(rest);
    out
}

/// The common prefix `key` rolls up into: the key up to the first delimiter after the prefix.
fn rolled<'k>(key: &'k [u8], prefix: &[u8], delimiter: &[u8]) -> Option<&'k [u8]> {
    let rest = key.get(prefix.len()..)?;
    let at = rest.windows(delimiter.len()).position(|w| w == delimiter)?;
    Some(&key[..prefix.len() + at + delimiter.len()])
}

/// One page's walk.
struct Walk<'a> {
    bucket_dir: PathBuf,
    prefix: &'a [u8],
    delimiter: Option<&'a [u8]>,
    after: &'a [u8],
    heap: BinaryHeap<Reverse<Item>>,
    /// Folders opened, by device and inode: a bind mount of a folder inside itself is
    /// opened once.
    opened: HashSet<(u64, u64)>,
    /// The last common prefix met; what starts with it is left out.
    rolled_up: Option<Vec<u8>>,
}

enum Found {
    Object(Listed),
    Prefix(String),
}

impl Walk<'_> {
    /// Whether an entry whose keys all start with `key` (a file: whose key is `key`) can
    /// hold a key of the listing.
    fn admits(&self, key: &[u8], is_file: bool) -> bool {
        let in_prefix = key.starts_with(self.prefix) || (!is_file && self.prefix.starts_with(key));
        let past_start = key > self.after || (!is_file && self.after.starts_with(key));
        in_prefix && past_start
    }

    fn push(&mut self, key: Vec<u8>, kind: Kind, path: PathBuf) {
        if self.admits(&key, kind == Kind::File) {
            self.heap.push(Reverse(Item { key, kind, path }));
        }
    }

    /// Whether `dir` is a real folder not opened before (a symbolic link never is).
    fn first_opening(&mut self, dir: &Path) -> io::Result<bool> {
        match fs::symlink_metadata(dir) {
            Ok(meta) => Ok(meta.is_dir() && self.opened.insert((meta.dev(), meta.ino()))),
            Err(err) if gone(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The entries of `dir` (file names as given by the file system, UTF-8 only, links
    /// and special files left out), or none when it went since it was seen.
    fn entries(dir: &Path) -> io::Result<Vec<(String, bool)>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if gone(&err) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(err) if gone(&err) => continue,
                Err(err) => return Err(err),
            };
            if file_type.is_dir() || file_type.is_file() {
                out.push((name, file_type.is_dir()));
            }
        }
        Ok(out)
    }

    /// Reads the folder at `dir` into the heap.
    fn open(&mut self, dir: &Path, base: &[u8], complete: bool) -> io::Result<()> {
        if !self.first_opening(dir)? {
            return Ok(());
        }
        for (name, is_dir) in Self::entries(dir)? {
            let path = dir.join(&name);
            if name == keypath::FOLDER_OBJECT {
                // The folder's own object; in the bucket's folder or a piece, no key.
                if !is_dir && complete && !base.is_empty() {
                    self.push(base[..base.len() - 1].to_vec(), Kind::File, path);
                }
            } else if let Some(piece) = name.strip_prefix("%+") {
                if is_dir {
                    let base = joined(base, &decoded(piece));
                    self.push(base.clone(), Kind::Folder { base, complete: false }, path);
                }
            } else {
                let segment = match name.strip_prefix('%') {
                    Some(escaped) => decoded(escaped),
                    None if complete => name.into_bytes(),
                    // A plain name among the pieces of a segment names no key.
                    None => continue,
                };
                let key = joined(base, &segment);
                if is_dir {
                    let mut inner = key.clone();
                    inner.push(b'/');
                    self.push(key, Kind::Folder { base: inner, complete: true }, path);
                } else {
                    self.push(key, Kind::File, path);
                }
            }
        }
        Ok(())
    }

    /// The key of the file at `path` when `key` is its canonical spelling.
    fn key_of(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.bucket_dir).ok()?;
        let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
        keypath::key_of(&parts?)
    }

    /// Whether the folder at `dir` holds a listable key (its own object `%%` left out
    /// when `skip_own`), looking no further than the first one.
    fn holds_key(&self, dir: &Path, skip_own: bool) -> io::Result<bool> {
        let mut seen = HashSet::new();
        let mut stack = vec![(dir.to_path_buf(), skip_own)];
        while let Some((dir, skip_own)) = stack.pop() {
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() && seen.insert((meta.dev(), meta.ino())) => {}
                Ok(_) => continue,
                Err(err) if gone(&err) => continue,
                Err(err) => return Err(err),
            }
            for (name, is_dir) in Self::entries(&dir)? {
                let path = dir.join(&name);
                if is_dir {
                    stack.push((path, false));
                } else if !(skip_own && name == keypath::FOLDER_OBJECT) && self.key_of(&path).is_some() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The next object or common prefix of the listing.
    fn next(&mut self) -> io::Result<Option<Found>> {
        while let Some(Reverse(item)) = self.heap.pop() {
            if self.rolled_up.as_ref().is_some_and(|r| item.key.starts_with(r)) {
                continue;
            }
            match item.kind {
                Kind::Prefix { skip_own } => {
                    if self.holds_key(&item.path, skip_own)? {
                        let text = String::from_utf8(item.key.clone()).ok();
                        self.rolled_up = Some(item.key);
                        if let Some(text) = text {
                            return Ok(Some(Found::Prefix(text)));
                        }
                    }
                }
                Kind::File => {
                    let Some(key) = self.key_of(&item.path).filter(|k| k.as_bytes() == item.key) else { continue };
                    match self.delimiter.and_then(|d| rolled(&item.key, self.prefix, d)) {
                        Some(common) => {
                            let common = common.to_vec();
                            let listed = common.as_slice() > self.after;
                            let text = String::from_utf8(common.clone()).ok();
                            self.rolled_up = Some(common);
                            // A prefix at or before the start was on an earlier page.
                            if listed && let Some(text) = text {
                                return Ok(Some(Found::Prefix(text)));
                            }
                        }
                        None => return Ok(Some(Found::Object(Listed { key, path: item.path }))),
                    }
                }
                Kind::Folder { base, complete } => {
                    // Keys below the folder other than its own object start with `base`;
                    // when `base` already reaches a delimiter, they are all one prefix.
                    let common = self.delimiter.and_then(|d| rolled(&base, self.prefix, d)).map(<[u8]>::to_vec);
                    let Some(common) = common else {
                        self.open(&item.path, &base, complete)?;
                        continue;
                    };
                    if complete {
                        let own = item.path.join(keypath::FOLDER_OBJECT);
                        if fs::symlink_metadata(&own).is_ok_and(|m| m.is_file()) {
                            self.push(item.key.clone(), Kind::File, own);
                        }
                    }
                    if common.as_slice() > self.after {
                        self.heap.push(Reverse(Item { key: common, kind: Kind::Prefix { skip_own: complete }, path: item.path }));
                    }
                }
            }
        }
        Ok(None)
    }
}

impl Store {
    /// One page of `bucket`'s listing: at most `max` objects and common prefixes after
    /// `query.after`, in UTF-8 byte order; `truncated` when more follow.
    pub fn list_page(&self, bucket: &str, query: ListQuery<'_>, max: usize) -> Result<ListPage> {
        if !self.bucket_exists(bucket)? {
            return Err(StoreError::NoSuchBucket);
        }
        let bucket_dir = self.bucket_dir(bucket);
        // Start at the deepest folder the prefix names, when that folder is plain.
        let mut start = bucket_dir.clone();
        let mut base = Vec::new();
        if let Some((folders, _)) = query.prefix.rsplit_once('/') {
            let components = keypath::components(folders);
            if components.iter().all(|c| !c.starts_with('%')) {
                for c in &components {
                    start.push(c);
                }
                base = format!("{folders}/").into_bytes();
            }
        }
        let mut page = ListPage::default();
        // Symbolic links are not followed.
        if fs::symlink_metadata(&start).is_ok_and(|m| m.file_type().is_symlink()) || self.link_above(bucket, &start.join("x"))?.is_some() {
            return Ok(page);
        }
        let mut walk = Walk {
            bucket_dir,
            prefix: query.prefix.as_bytes(),
            delimiter: query.delimiter.filter(|d| !d.is_empty()).map(str::as_bytes),
            after: query.after.as_bytes(),
            heap: BinaryHeap::new(),
            opened: HashSet::new(),
            rolled_up: None,
        };
        walk.heap.push(Reverse(Item { key: base.clone(), kind: Kind::Folder { base, complete: true }, path: start }));
        let mut count = 0;
        while let Some(found) = walk.next()? {
            // One entry past the page says whether the listing goes on.
            if count == max {
                page.truncated = true;
                break;
            }
            count += 1;
            match found {
                Found::Object(listed) => {
                    page.last = Some(listed.key.clone());
                    page.objects.push(listed);
                }
                Found::Prefix(common) => {
                    page.last = Some(common.clone());
                    page.prefixes.push(common);
                }
            }
        }
        Ok(page)
    }

    /// The metadata of an object found by a listing.
    pub fn listed_meta(&self, bucket: &str, listed: &Listed) -> Result<Option<ObjectMeta>> {
        // Since the walk the file may have gone, or become a folder (`a` moved to `a/%%`).
        Ok(self.open_with_meta(bucket, &listed.key, &listed.path, false)?.map(|(_, meta)| meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BucketInfo, Created, Durability};
    use proptest::prelude::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::None).unwrap();
        let info = BucketInfo { name: "bkt".into(), region: "us-east-1".into(), ..BucketInfo::default() };
        assert!(matches!(store.create_bucket(&info).unwrap(), Created::New));
        (dir, store)
    }

    fn put(store: &Store, key: &str) {
        let staged = store.stage().unwrap();
        store.commit_object("bkt", key, staged, ObjectMeta::default()).unwrap();
    }

    /// What a listing must answer, from the whole key set: the model the walk is held to.
    fn model(keys: &[String], query: ListQuery<'_>, max: usize) -> (Vec<String>, Vec<String>, bool) {
        let mut sorted: Vec<&str> = keys.iter().map(String::as_str).collect();
        sorted.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        sorted.dedup();
        let (mut objects, mut prefixes, mut count) = (Vec::new(), Vec::<String>::new(), 0);
        for key in sorted {
            if key.as_bytes() <= query.after.as_bytes() || !key.starts_with(query.prefix) {
                continue;
            }
            let common = query
                .delimiter
                .filter(|d| !d.is_empty())
                .and_then(|d| key[query.prefix.len()..].find(d).map(|at| &key[..query.prefix.len() + at + d.len()]));
            if let Some(common) = common
                && (common.as_bytes() <= query.after.as_bytes() || prefixes.last().is_some_and(|p| p == common))
            {
                continue;
            }
            if count == max {
                return (objects, prefixes, true);
            }
            count += 1;
            match common {
                Some(common) => prefixes.push(common.to_owned()),
                None => objects.push(key.to_owned()),
            }
        }
        (objects, prefixes, false)
    }

    #[track_caller]
    fn check(store: &Store, keys: &[String], query: ListQuery<'_>, max: usize) -> ListPage {
        let page = store.list_page("bkt", query, max).unwrap();
        let got: Vec<String> = page.objects.iter().map(|l| l.key.clone()).collect();
        assert_eq!((got, page.prefixes.clone(), page.truncated), model(keys, query, max), "{query:?} max {max}");
        page
    }

    #[test]
    fn siblings_sort_between_a_folder_object_and_its_folder() {
        let (_dir, store) = store();
        let keys: Vec<String> = ["a", "a/b", "a-b", "a.b", "a0", "a//x", "a/", "é", "a/%", "z"].map(String::from).to_vec();
        for key in &keys {
            put(&store, key);
        }
        let all = ListQuery { prefix: "", delimiter: None, after: "" };
        let page = check(&store, &keys, all, 1000);
        let got: Vec<&str> = page.objects.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(got, ["a", "a-b", "a.b", "a/", "a/%", "a//x", "a/b", "a0", "z", "é"]);
        check(&store, &keys, ListQuery { delimiter: Some("/"), ..all }, 1000);
        check(&store, &keys, ListQuery { prefix: "a/", delimiter: Some("/"), after: "a/" }, 2);
        check(&store, &keys, ListQuery { after: "a.b", ..all }, 3);
        check(&store, &keys, all, 0);
    }

    #[test]
    fn long_segments_cut_into_pieces_keep_their_order() {
        let (_dir, store) = store();
        let x = |n: usize| "x".repeat(n);
        let keys =
            vec![x(600), format!("{}/y", x(600)), x(300), format!("{}-", x(599)), format!("{}é", x(500)), format!("{}/z", x(240)), x(241)];
        for key in &keys {
            put(&store, key);
        }
        for prefix in [String::new(), x(240), x(500)] {
            for delimiter in [None, Some("/"), Some("-")] {
                for after in [String::new(), x(300), x(599)] {
                    for max in [0, 1, 3, 1000] {
                        check(&store, &keys, ListQuery { prefix: &prefix, delimiter, after: &after }, max);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn every_page_is_the_model_page(
            keys in proptest::collection::vec("[ab/.\\-%é]{1,7}", 1..40),
            prefix in "[ab/]{0,2}",
            delimiter in proptest::option::of("/|-|b/|a"),
            max in 0usize..6,
        ) {
            let (_dir, store) = store();
            for key in &keys {
                put(&store, key);
            }
            // Page through the whole listing, as a client does.
            let mut after = String::new();
            for _ in 0..100 {
                let query = ListQuery { prefix: &prefix, delimiter: delimiter.as_deref(), after: &after };
                let page = store.list_page("bkt", query, max).unwrap();
                let got: Vec<String> = page.objects.iter().map(|l| l.key.clone()).collect();
                prop_assert_eq!((got, page.prefixes.clone(), page.truncated), model(&keys, query, max));
                match page.last {
                    Some(last) if page.truncated => after = last,
                    _ => break,
                }
            }
        }
    }
}
