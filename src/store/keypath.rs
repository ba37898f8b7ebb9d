//! The mapping from an S3 key to a path under its bucket's folder.
//!
//! Ordinary keys are plain paths: `2026/11/27/21/stream-1-...` is the file
//! `<bucket>/2026/11/27/21/stream-1-...`. A key segment (the text between two `/`)
//! that cannot be a file name is escaped, and escapes always begin with `%`:
//!
//! - a segment that is empty, `.`, `..`, starts with `%` or contains NUL is written
//!   as `%` followed by the segment with `%`, `+` and NUL percent-encoded
//!   (`a//b` is `a/%/b`, a trailing `/` is a last component `%`, `..` is `%..`);
//! - an escaped segment longer than a file name may be is cut into components
//!   `%+<piece>/%+<piece>/.../%<last piece>`, cut only between whole characters;
//! - the object whose key is also the folder of other keys (`a` beside `a/b`) lives
//!   inside that folder under the reserved name `%%`, which no segment encodes to.
//!
//! Escaped components never equal `.` or `..` and never contain `/`, so no key
//! reaches outside its bucket's folder.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// The name of the file that holds the object whose key is its folder's own path.
pub const FOLDER_OBJECT: &str = "%%";

/// Longest file name most Linux file systems accept.
const NAME_BYTES_MAX: usize = 255;
/// Length of one piece of a cut segment; leaves room for the `%+` marker.
const PIECE_BYTES_MAX: usize = 240;
/// S3's limit on the length of a key, in UTF-8 bytes.
pub const KEY_BYTES_MAX: usize = 1024;

/// `%`, `+` and NUL: the bytes that would make an escaped segment ambiguous.
const ESCAPED: &AsciiSet = &CONTROLS.remove(b'\t').remove(b'\n').remove(b'\r').add(b'%').add(b'+');

/// The path components, relative to the bucket's folder, of the file that holds `key`
/// when that path is not also a folder.
pub fn components(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for segment in key.split('/') {
        push_segment(&mut out, segment);
    }
    out
}

fn is_plain(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && !segment.starts_with('%')
        && !segment.contains('\0')
        && segment.len() <= NAME_BYTES_MAX
}

fn push_segment(out: &mut Vec<String>, segment: &str) {
    if is_plain(segment) {
        out.push(segment.to_owned());
        return;
    }
    let encoded: String = utf8_percent_encode(segment, ESCAPED).collect();
    if encoded.len() < NAME_BYTES_MAX {
        out.push(format!("%{encoded}"));
        return;
    }
    let mut rest = encoded.as_str();
    while rest.len() >= NAME_BYTES_MAX {
        let cut = safe_cut(rest, PIECE_BYTES_MAX);
        out.push(format!("%+{}", &rest[..cut]));
        rest = &rest[cut..];
    }
    out.push(format!("%{rest}"));
}

/// The largest cut at or below `max` that splits neither a character nor a `%XX` triple.
fn safe_cut(s: &str, max: usize) -> usize {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let bytes = s.as_bytes();
    if cut >= 1 && bytes[cut - 1] == b'%' {
        cut -= 1;
    } else if cut >= 2 && bytes[cut - 2] == b'%' {
        cut -= 2;
    }
    cut
}

/// The key held by the file at `components` (relative to the bucket's folder), or
/// `None` when the path is not the one `components` gives for any key (a hand-made
/// file whose name looks like an escape, or a name that is not UTF-8).
pub fn key_of(components: &[&str]) -> Option<String> {
    let body = match components.split_last() {
        Some((&FOLDER_OBJECT, body)) => body,
        Some(_) => components,
        None => return None,
    };
    if body.is_empty() {
        return None;
    }
    let mut segments: Vec<String> = Vec::with_capacity(body.len());
    let mut pending = String::new();
    for (i, component) in body.iter().enumerate() {
        if let Some(piece) = component.strip_prefix("%+") {
            if i + 1 == body.len() {
                return None;
            }
            pending.push_str(piece);
        } else if let Some(escaped) = component.strip_prefix('%') {
            pending.push_str(escaped);
            segments.push(percent_decode_str(&pending).decode_utf8().ok()?.into_owned());
            pending.clear();
        } else {
            if !pending.is_empty() {
                return None;
            }
            segments.push((*component).to_owned());
        }
    }
    let key = segments.join("/");
    // Only the canonical spelling of a key names it, so no two files list as one key.
    let canonical = self::components(&key);
    if canonical.len() != body.len() || canonical.iter().zip(body).any(|(a, b)| a != b) {
        return None;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[track_caller]
    fn check(key: &str, expected: &str) {
        let got = components(key).join("/");
        assert_eq!(got, expected);
        let parts: Vec<&str> = got.split('/').collect();
        assert_eq!(key_of(&parts).as_deref(), Some(key));
    }

    #[test]
    fn plain_keys_stay_plain() {
        check("a", "a");
        check("2026/11/27/21/s-1-2026-11-27-21-00-00-x", "2026/11/27/21/s-1-2026-11-27-21-00-00-x");
        check("a b+c%d/é", "a b+c%d/é");
        check(".hidden/..x", ".hidden/..x");
    }

    #[test]
    fn awkward_segments_are_escaped() {
        check("a/", "a/%");
        check("/a", "%/a");
        check("a//b", "a/%/b");
        check("./..", "%./%..");
        check("%", "%%25");
        check("%%", "%%25%25");
        check("%+x", "%%25%2Bx");
        check("a\0b", "%a%00b");
    }

    #[test]
    fn long_segments_are_cut() {
        let long = "x".repeat(600);
        let got = components(&long);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|c| c.len() <= NAME_BYTES_MAX));
        assert!(got[0].starts_with("%+") && got[1].starts_with("%+") && got[2].starts_with('%'));
        let parts: Vec<&str> = got.iter().map(String::as_str).collect();
        assert_eq!(key_of(&parts), Some(long));
    }

    #[test]
    fn folder_object_decodes_to_its_folder() {
        assert_eq!(key_of(&["a", FOLDER_OBJECT]).as_deref(), Some("a"));
        assert_eq!(key_of(&["a", "%", FOLDER_OBJECT]).as_deref(), Some("a/"));
        assert_eq!(key_of(&[FOLDER_OBJECT]), None);
    }

    #[test]
    fn non_canonical_names_are_not_keys() {
        assert_eq!(key_of(&["%a"]), None); // would be the key "a", whose path is "a"
        assert_eq!(key_of(&["%zz"]), None);
        assert_eq!(key_of(&["%+a"]), None);
        assert_eq!(key_of(&["%+a", "b"]), None);
    }

    proptest! {
        #[test]
        fn every_key_round_trips_and_stays_inside(key in "\\PC{1,300}|[a./%+]{1,40}|(.{0,300}/){0,4}.{0,300}") {
            prop_assume!(!key.is_empty() && key.len() <= KEY_BYTES_MAX);
            let comps = components(&key);
            for c in &comps {
                prop_assert!(!c.is_empty() && c != "." && c != ".." && c != FOLDER_OBJECT);
                prop_assert!(!c.contains('/') && !c.contains('\0'));
                prop_assert!(c.len() <= NAME_BYTES_MAX);
            }
            let parts: Vec<&str> = comps.iter().map(String::as_str).collect();
            prop_assert_eq!(key_of(&parts), Some(key.clone()));
            let mut folder = parts.clone();
            folder.push(FOLDER_OBJECT);
            prop_assert_eq!(key_of(&folder), Some(key));
        }
    }
}
