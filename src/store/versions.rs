//! Object versions (issue #11, not yet emulated): where they will live.
//!
//! The current version of a key stays the plain file at `<root>/<B>/<path of K>`, so a
//! listing of the folder still shows what a plain listing shows. Noncurrent versions and
//! delete markers will live under `.firelake/versions/<B>/<sha256 of K>/`, one file per
//! version carrying its metadata as the data file does; moving the current version aside
//! and publishing the new one will happen under the bucket's lock, in an order that a
//! crash between the two renames leaves recoverable at start (as `placement` does for
//! relocations). Until then a version id other than `null` is refused by the S3 layer.
