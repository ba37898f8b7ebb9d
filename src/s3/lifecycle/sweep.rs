//! The background sweep that carries out the buckets' lifecycle rules: expiration of
//! current versions (by Days or Date), of noncurrent versions, of delete markers left
//! alone, and the abort of incomplete multipart uploads. Transitions have no local
//! effect. As on S3, removal is asynchronous: an object goes within one sweep period
//! after it is due.
//!
//! Every removal is checked again under the store's lock against what the sweep saw, so
//! a write racing the sweep is never what it removes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Lifecycle, due_ms, of};
use crate::store::{Condition, ListQuery, ObjectMeta, Store, StoreError, Versioning, now_ms};

/// Objects read per listing page of the sweep.
const PAGE: usize = 1000;

/// How often the sweep runs: a twentieth of a day, between 100 ms and 10 minutes.
pub fn period(day_ms: i64) -> Duration {
    Duration::from_millis((day_ms / 20).clamp(100, 600_000) as u64)
}

/// Runs the sweep every [`period`] until `stop` is set.
pub async fn run(store: Arc<Store>, day_ms: i64, stop: Arc<AtomicBool>) {
    let mut ticks = tokio::time::interval(period(day_ms));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let (store, stop) = (store.clone(), stop.clone());
        match tokio::task::spawn_blocking(move || sweep(&store, day_ms, now_ms(), &stop)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "lifecycle sweep failed; trying again next period"),
            Err(err) => tracing::warn!(%err, "lifecycle sweep stopped"),
        }
    }
}

/// One pass over every bucket with a lifecycle configuration, at time `now`.
pub fn sweep(store: &Store, day_ms: i64, now: i64, stop: &AtomicBool) -> Result<(), StoreError> {
    // Not a rule, but the store's housekeeping on the same clock: a completed upload's
    // answer is kept a real day.
    store.forget_completed_uploads(now)?;
    for info in store.list_buckets()? {
        let Some(lifecycle) = of(&info) else { continue };
        let versioning = Versioning::of(&info);
        let bucket = Bucket { store, name: &info.name, lifecycle: &lifecycle, day_ms, now, stop };
        let swept = bucket
            .expire_current()
            .and_then(|()| if versioning == Versioning::Unversioned { Ok(()) } else { bucket.expire_versions() })
            .and_then(|()| bucket.abort_uploads());
        match swept {
            // A bucket deleted meanwhile has nothing left to sweep.
            Err(StoreError::NoSuchBucket) => {}
            other => other?,
        }
    }
    Ok(())
}

struct Bucket<'a> {
    store: &'a Store,
    name: &'a str,
    lifecycle: &'a Lifecycle,
    day_ms: i64,
    now: i64,
    stop: &'a AtomicBool,
}

/// The condition of an expiration: the current object is still the one the sweep saw.
struct Unchanged<'a>(&'a ObjectMeta);

impl Condition for Unchanged<'_> {
    type Refusal = ();
    fn allows(&self, current: Option<&ObjectMeta>) -> Result<(), ()> {
        match current {
            Some(c) if c.etag == self.0.etag && c.last_modified_ms == self.0.last_modified_ms && c.version_id == self.0.version_id => {
                Ok(())
            }
            _ => Err(()),
        }
    }
}

impl Bucket<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Expiration by Days or Date: the current version goes (in a versioned bucket, under
    /// a new delete marker, which the store adds).
    fn expire_current(&self) -> Result<(), StoreError> {
        let prefixes = self.rule_prefixes(|rule| rule.expires_ms(0, self.day_ms).is_some());
        for prefix in prefixes {
            let mut after = String::new();
            loop {
                let page = self.store.list_page(self.name, ListQuery { prefix: &prefix, delimiter: None, after: &after }, PAGE)?;
                for listed in &page.objects {
                    if self.stopped() {
                        return Ok(());
                    }
                    let Some(meta) = self.store.listed_meta(self.name, listed)? else { continue };
                    if self.lifecycle.expiry(&meta, self.day_ms).is_some_and(|(at, _)| at <= self.now) {
                        let expired = self.store.delete_object_if(self.name, &meta.key, Some(&Unchanged(&meta)))?;
                        if expired.is_ok() {
                            tracing::debug!(bucket = self.name, key = %meta.key, "lifecycle expired an object");
                        }
                    }
                }
                match (page.truncated, page.last) {
                    (true, Some(last)) => after = last,
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// NoncurrentVersionExpiration, and ExpiredObjectDeleteMarker: a delete marker that is
    /// the only version of its key.
    fn expire_versions(&self) -> Result<(), StoreError> {
        let prefixes = self.rule_prefixes(|rule| {
            rule.noncurrent_expiration.is_some() || rule.expiration.as_ref().is_some_and(|e| e.expired_object_delete_marker == Some(true))
        });
        for prefix in prefixes {
            for key in self.store.versioned_keys(self.name, &prefix)? {
                if self.stopped() {
                    return Ok(());
                }
                self.expire_versions_of(&key)?;
            }
        }
        Ok(())
    }

    fn expire_versions_of(&self, key: &str) -> Result<(), StoreError> {
        let versions = self.store.versions_of(self.name, key)?;
        if let [only] = versions.as_slice()
            && only.meta.is_none()
        {
            let removes_marker = self.lifecycle.rules.iter().any(|rule| {
                rule.expiration.as_ref().is_some_and(|e| e.expired_object_delete_marker == Some(true)) && rule.applies(key, 0, &[])
            });
            if removes_marker && self.store.expire_version(self.name, key, only.version_id.as_deref(), true)? {
                tracing::debug!(bucket = self.name, key, "lifecycle removed an expired delete marker");
            }
            return Ok(());
        }
        // Newest first; a noncurrent version became noncurrent when its successor was made.
        for (newer_noncurrent, pair) in versions.windows(2).enumerate() {
            let (successor, version) = (&pair[0], &pair[1]);
            let (size, tags) = version.meta.as_ref().map_or((0, &[][..]), |m| (m.size, &m.tags[..]));
            let expired = self.lifecycle.rules.iter().any(|rule| {
                let Some(n) = rule.noncurrent_expiration.as_ref().filter(|_| rule.applies(key, size, tags)) else { return false };
                // NewerNoncurrentVersions: that many newer noncurrent versions are kept.
                let kept_newer = n.newer_versions.is_some_and(|keep| (newer_noncurrent as i64) < keep);
                n.days.is_some_and(|days| due_ms(successor.last_modified_ms, days, self.day_ms) <= self.now) && !kept_newer
            });
            if expired && self.store.expire_version(self.name, key, version.version_id.as_deref(), false)? {
                tracing::debug!(bucket = self.name, key, version = ?version.version_id, "lifecycle expired a noncurrent version");
            }
        }
        Ok(())
    }

    /// AbortIncompleteMultipartUpload.
    fn abort_uploads(&self) -> Result<(), StoreError> {
        if !self.lifecycle.rules.iter().any(|rule| rule.abort_days.is_some()) {
            return Ok(());
        }
        for upload in self.store.list_uploads(self.name)? {
            if self.lifecycle.abort(&upload.key, upload.initiated_ms, self.day_ms).is_some_and(|(at, _)| at <= self.now) {
                match self.store.abort_upload(&upload.id) {
                    Ok(()) => tracing::debug!(bucket = self.name, key = %upload.key, "lifecycle aborted an incomplete upload"),
                    // Completed or aborted meanwhile.
                    Err(StoreError::NoSuchUpload) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(())
    }

    /// The prefixes to walk for the enabled rules `wanted` picks, none inside another.
    fn rule_prefixes(&self, wanted: impl Fn(&super::Rule) -> bool) -> Vec<String> {
        let mut prefixes: Vec<String> =
            self.lifecycle.rules.iter().filter(|r| r.enabled && wanted(r)).map(|r| r.prefix().to_owned()).collect();
        prefixes.sort();
        prefixes.dedup();
        let all = prefixes.clone();
        prefixes.retain(|p| !all.iter().any(|other| other != p && p.starts_with(other.as_str())));
        prefixes
    }
}
