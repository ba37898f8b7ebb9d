//! Bucket lifecycle: Put/Get/DeleteBucketLifecycleConfiguration, the rules' matching
//! and due dates, the `x-amz-expiration` and `x-amz-abort-date` headers of answers, and
//! the background [`sweep`] that carries the rules out.
//!
//! A "day" is `--lifecycle-day-seconds` long (86,400 by default), and S3 counts days as
//! whole days since the epoch: an action due N days after a time is due at the first
//! day boundary at or after that time plus N days (00:00 UTC with real days).

pub mod sweep;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::http::Body;
use crate::s3::common::{blocking, change_bucket, check_small_body_digest, parse_xml, read_small_body, require_bucket};
use crate::s3::error::{Code, Result, S3Error};
use crate::s3::xml::{self, Xml};
use crate::s3::{Req, S3State};
use crate::store::{BucketInfo, ObjectMeta};

const RULES_MAX: usize = 1000;
const ID_CHARS_MAX: usize = 255;
const NEWER_NONCURRENT_MAX: i64 = 100;
/// S3's largest object, the bound of the size filters.
const SIZE_MAX: u64 = 5 * 1024 * 1024 * 1024 * 1024;
const STORAGE_CLASSES: [&str; 6] = ["GLACIER", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "DEEP_ARCHIVE", "GLACIER_IR"];
const MINIMUM_SIZE_HEADER: &str = "x-amz-transition-default-minimum-object-size";
const MINIMUM_SIZES: [&str; 2] = ["all_storage_classes_128K", "varies_by_storage_class"];
/// What a configuration sent without the header gets (S3's default since September 2024).
const MINIMUM_SIZE_DEFAULT: &str = "all_storage_classes_128K";
/// A rule id in `x-amz-expiration` is URL-encoded.
const RULE_ID_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A bucket's lifecycle configuration, as stored with its settings and given back by GET:
/// every element a PUT sent is kept as sent (present or absent), because Terraform polls
/// GET until it reads back exactly what it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub rules: Vec<Rule>,
    /// `x-amz-transition-default-minimum-object-size`.
    pub minimum_object_size: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    /// The deprecated top-level `Prefix` (in place of a `Filter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_expiration: Option<NoncurrentExpiration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noncurrent_transitions: Vec<NoncurrentTransition>,
    /// AbortIncompleteMultipartUpload's DaysAfterInitiation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_days: Option<i64>,
}

/// A rule's `Filter`: empty (every key), or exactly one condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Filter {
    All,
    Prefix(String),
    Tag(String, String),
    SizeGreaterThan(u64),
    SizeLessThan(u64),
    And { prefix: Option<String>, tags: Vec<(String, String)>, greater_than: Option<u64>, less_than: Option<u64> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiration {
    pub days: Option<i64>,
    /// Midnight UTC, in ms since the epoch.
    pub date_ms: Option<i64>,
    pub expired_object_delete_marker: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub days: Option<i64>,
    pub date_ms: Option<i64>,
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentExpiration {
    pub days: Option<i64>,
    pub newer_versions: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentTransition {
    pub days: Option<i64>,
    pub storage_class: Option<String>,
    pub newer_versions: Option<i64>,
}

/// The first day boundary at or after `from_ms` plus `days` days.
pub fn due_ms(from_ms: i64, days: i64, day_ms: i64) -> i64 {
    let at = from_ms.saturating_add(days.saturating_mul(day_ms));
    at.div_euclid(day_ms).saturating_add(i64::from(at.rem_euclid(day_ms) != 0)).saturating_mul(day_ms)
}

impl Rule {
    /// The key prefix every key the rule applies to starts with.
    pub fn prefix(&self) -> &str {
        match (&self.filter, &self.prefix) {
            (Some(Filter::Prefix(p)), _) | (Some(Filter::And { prefix: Some(p), .. }), _) | (None, Some(p)) => p,
            _ => "",
        }
    }

    fn has_tag_filter(&self) -> bool {
        matches!(&self.filter, Some(Filter::Tag(..))) || matches!(&self.filter, Some(Filter::And { tags, .. }) if !tags.is_empty())
    }

    /// Whether the rule applies to an object (its key, size and tags). Disabled rules apply to none.
    pub fn applies(&self, key: &str, size: u64, tags: &[(String, String)]) -> bool {
        let has_tag = |k: &str, v: &str| tags.iter().any(|(tk, tv)| tk == k && tv == v);
        self.enabled
            && key.starts_with(self.prefix())
            && match &self.filter {
                None | Some(Filter::All) | Some(Filter::Prefix(_)) => true,
                Some(Filter::Tag(k, v)) => has_tag(k, v),
                Some(Filter::SizeGreaterThan(n)) => size > *n,
                Some(Filter::SizeLessThan(n)) => size < *n,
                Some(Filter::And { tags: wanted, greater_than, less_than, .. }) => {
                    wanted.iter().all(|(k, v)| has_tag(k, v)) && greater_than.is_none_or(|n| size > n) && less_than.is_none_or(|n| size < n)
                }
            }
    }

    /// When the rule's Expiration (by Days or Date) removes a current version made at
    /// `created_ms`; `None` when it has neither.
    pub fn expires_ms(&self, created_ms: i64, day_ms: i64) -> Option<i64> {
        let expiration = self.expiration.as_ref()?;
        match (expiration.days, expiration.date_ms) {
            (Some(days), _) => Some(due_ms(created_ms, days, day_ms)),
            (None, Some(date)) => Some(date),
            (None, None) => None,
        }
    }
}

impl Lifecycle {
    /// The earliest expiration of an object by the rules that apply to it, with the
    /// rule's id: what `x-amz-expiration` says.
    pub fn expiry(&self, meta: &ObjectMeta, day_ms: i64) -> Option<(i64, &str)> {
        self.rules
            .iter()
            .filter(|rule| rule.applies(&meta.key, meta.size, &meta.tags))
            .filter_map(|rule| Some((rule.expires_ms(meta.last_modified_ms, day_ms)?, rule.id.as_str())))
            .min_by_key(|(at, _)| *at)
    }

    /// The earliest abort of an upload of `key` started at `initiated_ms`, with the rule's id.
    pub fn abort(&self, key: &str, initiated_ms: i64, day_ms: i64) -> Option<(i64, &str)> {
        self.rules
            .iter()
            .filter(|rule| rule.enabled && key.starts_with(rule.prefix()))
            .filter_map(|rule| Some((due_ms(initiated_ms, rule.abort_days?, day_ms), rule.id.as_str())))
            .min_by_key(|(at, _)| *at)
    }
}

/// The bucket's lifecycle configuration, if it has one.
pub fn of(info: &BucketInfo) -> Option<Lifecycle> {
    info.lifecycle.as_ref().and_then(|value| serde_json::from_value(value.clone()).ok())
}

/// The bucket's lifecycle configuration. An unreadable bucket has none here: the headers
/// this feeds never fail the request they decorate.
async fn configured(state: &Arc<S3State>, bucket: &str) -> Option<Lifecycle> {
    of(&*crate::s3::common::remembered_settings(state, bucket).await.ok()??)
}

/// The `x-amz-expiration` of an answer about the current version of an object, when a
/// rule expires it.
pub async fn expiration_header(state: &Arc<S3State>, bucket: &str, meta: &ObjectMeta) -> Option<http::HeaderValue> {
    let lifecycle = configured(state, bucket).await?;
    let (at, id) = lifecycle.expiry(meta, state.lifecycle_day_ms)?;
    let value = format!("expiry-date=\"{}\", rule-id=\"{}\"", crate::s3::get::http_date(at), utf8_percent_encode(id, RULE_ID_ENCODE));
    http::HeaderValue::from_str(&value).ok()
}

/// Adds `x-amz-expiration` to an answer about the current version of an object.
pub async fn add_expiration(state: &Arc<S3State>, bucket: &str, meta: &ObjectMeta, headers: &mut http::HeaderMap) {
    if let Some(value) = expiration_header(state, bucket, meta).await {
        headers.insert("x-amz-expiration", value);
    }
}

/// `x-amz-abort-date` and `x-amz-abort-rule-id` of CreateMultipartUpload, when a rule
/// aborts the upload.
pub async fn add_abort(state: &Arc<S3State>, bucket: &str, key: &str, initiated_ms: i64, headers: &mut http::HeaderMap) {
    let Some(lifecycle) = configured(state, bucket).await else { return };
    let Some((at, id)) = lifecycle.abort(key, initiated_ms, state.lifecycle_day_ms) else { return };
    if let (Ok(date), Ok(id)) = (http::HeaderValue::from_str(&crate::s3::get::http_date(at)), http::HeaderValue::from_str(id)) {
        headers.insert("x-amz-abort-date", date);
        headers.insert("x-amz-abort-rule-id", id);
    }
}

// The request document, element by element; numbers and dates are read as text and
// checked below, so that a bad value gets S3's error rather than MalformedXML.
#[derive(Debug, Deserialize)]
struct ConfigurationXml {
    #[serde(rename = "Rule", default)]
    rules: Vec<RuleXml>,
}

#[derive(Debug, Deserialize)]
struct RuleXml {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "Prefix")]
    prefix: Option<String>,
    #[serde(rename = "Filter")]
    filter: Option<FilterXml>,
    #[serde(rename = "Expiration")]
    expiration: Option<ExpirationXml>,
    #[serde(rename = "Transition", default)]
    transitions: Vec<TransitionXml>,
    #[serde(rename = "NoncurrentVersionExpiration")]
    noncurrent_expiration: Option<NoncurrentXml>,
    #[serde(rename = "NoncurrentVersionTransition", default)]
    noncurrent_transitions: Vec<NoncurrentXml>,
    #[serde(rename = "AbortIncompleteMultipartUpload")]
    abort: Option<AbortXml>,
}

#[derive(Debug, Deserialize, Default)]
struct FilterXml {
    #[serde(rename = "Prefix")]
    prefix: Option<String>,
    #[serde(rename = "Tag")]
    tag: Option<TagXml>,
    #[serde(rename = "ObjectSizeGreaterThan")]
    greater_than: Option<String>,
    #[serde(rename = "ObjectSizeLessThan")]
    less_than: Option<String>,
    #[serde(rename = "And")]
    and: Option<AndXml>,
}

#[derive(Debug, Deserialize, Default)]
struct AndXml {
    #[serde(rename = "Prefix")]
    prefix: Option<String>,
    #[serde(rename = "Tag", default)]
    tags: Vec<TagXml>,
    #[serde(rename = "ObjectSizeGreaterThan")]
    greater_than: Option<String>,
    #[serde(rename = "ObjectSizeLessThan")]
    less_than: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TagXml {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

#[derive(Debug, Deserialize)]
struct ExpirationXml {
    #[serde(rename = "Days")]
    days: Option<String>,
    #[serde(rename = "Date")]
    date: Option<String>,
    #[serde(rename = "ExpiredObjectDeleteMarker")]
    expired_object_delete_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TransitionXml {
    #[serde(rename = "Days")]
    days: Option<String>,
    #[serde(rename = "Date")]
    date: Option<String>,
    #[serde(rename = "StorageClass")]
    storage_class: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NoncurrentXml {
    #[serde(rename = "NoncurrentDays")]
    days: Option<String>,
    #[serde(rename = "StorageClass")]
    storage_class: Option<String>,
    #[serde(rename = "NewerNoncurrentVersions")]
    newer_versions: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AbortXml {
    #[serde(rename = "DaysAfterInitiation")]
    days: Option<String>,
}

fn integer(text: Option<&str>) -> Result<Option<i64>> {
    text.map(|t| t.trim().parse::<i64>().map_err(|_| S3Error::malformed_xml())).transpose()
}

fn size(text: Option<&str>) -> Result<Option<u64>> {
    let Some(n) = integer(text)? else { return Ok(None) };
    match u64::try_from(n) {
        Ok(n) if n <= SIZE_MAX => Ok(Some(n)),
        _ => Err(S3Error::invalid_argument("The object size filter must be between 0 and 5 TB", "ObjectSize", &n.to_string())),
    }
}

/// An ISO 8601 date, which S3 accepts only at midnight UTC.
fn date(text: Option<&str>) -> Result<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    let parsed = chrono::DateTime::parse_from_rfc3339(text.trim()).map_err(|_| S3Error::malformed_xml())?;
    let ms = parsed.timestamp_millis();
    if ms.rem_euclid(86_400_000) != 0 {
        return Err(S3Error::invalid_argument("'Date' must be at midnight GMT", "Date", text));
    }
    Ok(Some(ms))
}

fn positive_days(days: Option<i64>, what: &str) -> Result<()> {
    match days {
        Some(n) if n <= 0 => {
            Err(S3Error::invalid_argument(format!("'{what}' for {} must be a positive integer", action_of(what)), what, &n.to_string()))
        }
        _ => Ok(()),
    }
}

fn action_of(what: &str) -> &'static str {
    match what {
        "NoncurrentDays" => "NoncurrentVersionExpiration action",
        "DaysAfterInitiation" => "AbortIncompleteMultipartUpload action",
        _ => "Expiration action",
    }
}

fn storage_class(class: Option<&str>) -> Result<Option<String>> {
    match class {
        Some(c) if STORAGE_CLASSES.contains(&c) => Ok(Some(c.to_owned())),
        Some(_) => Err(S3Error::malformed_xml()),
        None => Err(S3Error::malformed_xml()),
    }
}

fn newer_versions(text: Option<&str>) -> Result<Option<i64>> {
    let newer = integer(text)?;
    if let Some(n) = newer
        && !(1..=NEWER_NONCURRENT_MAX).contains(&n)
    {
        return Err(S3Error::invalid_argument(
            "NewerNoncurrentVersions must be greater than 0 and less than or equal to 100",
            "NewerNoncurrentVersions",
            &n.to_string(),
        ));
    }
    Ok(newer)
}

fn filter(xml: FilterXml) -> Result<Filter> {
    let present = [xml.prefix.is_some(), xml.tag.is_some(), xml.greater_than.is_some(), xml.less_than.is_some(), xml.and.is_some()];
    let sizes = |greater: Option<u64>, less: Option<u64>| match (greater, less) {
        (Some(g), Some(l)) if g >= l => Err(S3Error::invalid_argument(
            "ObjectSizeGreaterThan must be less than ObjectSizeLessThan",
            "ObjectSizeGreaterThan",
            &g.to_string(),
        )),
        _ => Ok(()),
    };
    Ok(match present.iter().filter(|p| **p).count() {
        0 => Filter::All,
        1 => {
            if let Some(prefix) = xml.prefix {
                Filter::Prefix(prefix)
            } else if let Some(tag) = xml.tag {
                Filter::Tag(tag.key, tag.value)
            } else if let Some(n) = size(xml.greater_than.as_deref())? {
                Filter::SizeGreaterThan(n)
            } else if let Some(n) = size(xml.less_than.as_deref())? {
                Filter::SizeLessThan(n)
            } else {
                let and = xml.and.unwrap_or_default();
                let (greater_than, less_than) = (size(and.greater_than.as_deref())?, size(and.less_than.as_deref())?);
                sizes(greater_than, less_than)?;
                let tags: Vec<(String, String)> = and.tags.into_iter().map(|t| (t.key, t.value)).collect();
                if tags.iter().enumerate().any(|(i, (k, _))| tags[..i].iter().any(|(other, _)| other == k)) {
                    return Err(S3Error::invalid_argument("Duplicate Tag Keys are not allowed.", "Tag", ""));
                }
                Filter::And { prefix: and.prefix, tags, greater_than, less_than }
            }
        }
        _ => return Err(S3Error::malformed_xml()),
    })
}

fn rule(xml: RuleXml) -> Result<Rule> {
    let enabled = match xml.status.as_deref() {
        Some("Enabled") => true,
        Some("Disabled") => false,
        _ => return Err(S3Error::malformed_xml()),
    };
    let id = match xml.id {
        Some(id) if id.chars().count() > ID_CHARS_MAX => {
            return Err(S3Error::invalid_argument("ID length should not exceed allowed limit of 255", "ID", &id));
        }
        Some(id) => id,
        // S3 names a rule sent without an id.
        None => crate::store::new_version_id(),
    };
    let filter = match (xml.filter, &xml.prefix) {
        (Some(f), None) => Some(filter(f)?),
        (None, Some(_)) => None,
        _ => return Err(S3Error::malformed_xml()),
    };
    let expiration = match xml.expiration {
        None => None,
        Some(e) => {
            let marker = match e.expired_object_delete_marker.as_deref().map(str::trim) {
                None => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(_) => return Err(S3Error::malformed_xml()),
            };
            let expiration =
                Expiration { days: integer(e.days.as_deref())?, date_ms: date(e.date.as_deref())?, expired_object_delete_marker: marker };
            let chosen = [expiration.days.is_some(), expiration.date_ms.is_some(), marker == Some(true)];
            if chosen.iter().filter(|c| **c).count() > 1 || (chosen.iter().all(|c| !c) && marker.is_none()) {
                return Err(S3Error::malformed_xml());
            }
            positive_days(expiration.days, "Days")?;
            Some(expiration)
        }
    };
    let mut transitions = Vec::new();
    for t in xml.transitions {
        let transition = Transition {
            days: integer(t.days.as_deref())?,
            date_ms: date(t.date.as_deref())?,
            storage_class: storage_class(t.storage_class.as_deref())?,
        };
        if transition.days.is_some() == transition.date_ms.is_some() {
            return Err(S3Error::malformed_xml());
        }
        if let Some(days) = transition.days.filter(|d| *d < 0) {
            return Err(S3Error::invalid_argument("'Days' in Transition action must be nonnegative", "Days", &days.to_string()));
        }
        transitions.push(transition);
    }
    let noncurrent_expiration = match xml.noncurrent_expiration {
        None => None,
        Some(n) => {
            let days = integer(n.days.as_deref())?;
            if days.is_none() {
                return Err(S3Error::malformed_xml());
            }
            positive_days(days, "NoncurrentDays")?;
            Some(NoncurrentExpiration { days, newer_versions: newer_versions(n.newer_versions.as_deref())? })
        }
    };
    let mut noncurrent_transitions = Vec::new();
    for n in xml.noncurrent_transitions {
        let days = integer(n.days.as_deref())?;
        if let Some(d) = days.filter(|d| *d < 0) {
            return Err(S3Error::invalid_argument(
                "'NoncurrentDays' in NoncurrentVersionTransition action must be nonnegative",
                "NoncurrentDays",
                &d.to_string(),
            ));
        }
        noncurrent_transitions.push(NoncurrentTransition {
            days,
            storage_class: storage_class(n.storage_class.as_deref())?,
            newer_versions: newer_versions(n.newer_versions.as_deref())?,
        });
    }
    let abort_days = match xml.abort {
        None => None,
        Some(a) => {
            let days = integer(a.days.as_deref())?;
            if days.is_none() {
                return Err(S3Error::malformed_xml());
            }
            positive_days(days, "DaysAfterInitiation")?;
            days
        }
    };
    let rule = Rule {
        id,
        enabled,
        prefix: xml.prefix,
        filter,
        expiration,
        transitions,
        noncurrent_expiration,
        noncurrent_transitions,
        abort_days,
    };
    let actions = rule.expiration.is_some()
        || !rule.transitions.is_empty()
        || rule.noncurrent_expiration.is_some()
        || !rule.noncurrent_transitions.is_empty()
        || rule.abort_days.is_some();
    if !actions {
        return Err(S3Error::invalid_request("At least one action needs to be specified in a rule"));
    }
    if rule.has_tag_filter() {
        if rule.expiration.as_ref().is_some_and(|e| e.expired_object_delete_marker == Some(true)) {
            return Err(S3Error::invalid_request("ExpiredObjectDeleteMarker cannot be specified with object tagging-based filters"));
        }
        if rule.abort_days.is_some() {
            return Err(S3Error::invalid_request("AbortIncompleteMultipartUpload cannot be specified with object tagging-based filters"));
        }
    }
    let newer =
        rule.noncurrent_expiration.iter().map(|n| n.newer_versions).chain(rule.noncurrent_transitions.iter().map(|n| n.newer_versions));
    if rule.filter.is_none() && newer.clone().any(|n| n.is_some()) {
        return Err(S3Error::invalid_request("NewerNoncurrentVersions cannot be specified without a Filter"));
    }
    Ok(rule)
}

/// Parses and checks a PutBucketLifecycleConfiguration document.
pub fn parse(bytes: &[u8], minimum_object_size: Option<&str>) -> Result<Lifecycle> {
    let xml: ConfigurationXml = parse_xml(bytes)?;
    if xml.rules.is_empty() || xml.rules.len() > RULES_MAX {
        return Err(S3Error::malformed_xml());
    }
    let rules = xml.rules.into_iter().map(rule).collect::<Result<Vec<_>>>()?;
    if rules.iter().enumerate().any(|(i, r)| rules[..i].iter().any(|other| other.id == r.id)) {
        return Err(S3Error::invalid_argument("Rule ID must be unique. Found same ID for more than one rule", "ID", ""));
    }
    let minimum_object_size = match minimum_object_size {
        None => MINIMUM_SIZE_DEFAULT.to_owned(),
        Some(value) if MINIMUM_SIZES.contains(&value) => value.to_owned(),
        Some(value) => {
            return Err(S3Error::invalid_argument("Invalid value for TransitionDefaultMinimumObjectSize", MINIMUM_SIZE_HEADER, value));
        }
    };
    Ok(Lifecycle { rules, minimum_object_size })
}

/// The GetBucketLifecycleConfiguration document.
pub fn to_xml(lifecycle: &Lifecycle) -> String {
    let mut x = Xml::document();
    x.root("LifecycleConfiguration");
    for rule in &lifecycle.rules {
        x.node("Rule", |x| write_rule(x, rule));
    }
    x.close("LifecycleConfiguration");
    x.finish()
}

fn write_rule(x: &mut Xml, rule: &Rule) {
    let days = |n: Option<i64>| n.map(|n| n.to_string());
    x.leaf("ID", &rule.id);
    x.leaf_opt("Prefix", rule.prefix.as_deref());
    if let Some(filter) = &rule.filter {
        x.node("Filter", |x| write_filter(x, filter));
    }
    x.leaf("Status", if rule.enabled { "Enabled" } else { "Disabled" });
    for t in &rule.transitions {
        x.node("Transition", |x| {
            x.leaf_opt("Days", days(t.days).as_deref());
            x.leaf_opt("Date", t.date_ms.map(xml::timestamp).as_deref());
            x.leaf_opt("StorageClass", t.storage_class.as_deref());
        });
    }
    for n in &rule.noncurrent_transitions {
        x.node("NoncurrentVersionTransition", |x| {
            x.leaf_opt("NoncurrentDays", days(n.days).as_deref());
            x.leaf_opt("StorageClass", n.storage_class.as_deref());
            x.leaf_opt("NewerNoncurrentVersions", days(n.newer_versions).as_deref());
        });
    }
    if let Some(e) = &rule.expiration {
        x.node("Expiration", |x| {
            x.leaf_opt("Days", days(e.days).as_deref());
            x.leaf_opt("Date", e.date_ms.map(xml::timestamp).as_deref());
            x.leaf_opt("ExpiredObjectDeleteMarker", e.expired_object_delete_marker.map(|b| b.to_string()).as_deref());
        });
    }
    if let Some(n) = &rule.noncurrent_expiration {
        x.node("NoncurrentVersionExpiration", |x| {
            x.leaf_opt("NoncurrentDays", days(n.days).as_deref());
            x.leaf_opt("NewerNoncurrentVersions", days(n.newer_versions).as_deref());
        });
    }
    if let Some(d) = rule.abort_days {
        x.node("AbortIncompleteMultipartUpload", |x| x.leaf("DaysAfterInitiation", &d.to_string()));
    }
}

fn write_filter(x: &mut Xml, filter: &Filter) {
    let tag = |x: &mut Xml, k: &str, v: &str| {
        x.node("Tag", |x| {
            x.leaf("Key", k);
            x.leaf("Value", v);
        })
    };
    match filter {
        Filter::All => {}
        Filter::Prefix(p) => x.leaf("Prefix", p),
        Filter::Tag(k, v) => tag(x, k, v),
        Filter::SizeGreaterThan(n) => x.leaf("ObjectSizeGreaterThan", &n.to_string()),
        Filter::SizeLessThan(n) => x.leaf("ObjectSizeLessThan", &n.to_string()),
        Filter::And { prefix, tags, greater_than, less_than } => x.node("And", |x| {
            x.leaf_opt("Prefix", prefix.as_deref());
            for (k, v) in tags {
                tag(x, k, v);
            }
            x.leaf_opt("ObjectSizeGreaterThan", greater_than.map(|n| n.to_string()).as_deref());
            x.leaf_opt("ObjectSizeLessThan", less_than.map(|n| n.to_string()).as_deref());
        }),
    }
}

pub async fn put_bucket_lifecycle(state: &Arc<S3State>, req: &Req, body: Incoming, bucket: &str) -> Result<Response<Body>> {
    require_bucket(state, bucket).await?;
    let bytes = read_small_body(req, body).await?;
    // S3 requires a Content-MD5 or flexible checksum; checked when sent, required under
    // `--auth strict` (older SDKs send neither).
    check_small_body_digest(req, &bytes, state.auth_keys.is_some())?;
    let lifecycle = parse(&bytes, req.header(MINIMUM_SIZE_HEADER))?;
    let value = serde_json::to_value(&lifecycle).map_err(S3Error::internal)?;
    let mut response = change_bucket(state, bucket, StatusCode::OK, |info| info.lifecycle = Some(value)).await?;
    if let Ok(value) = http::HeaderValue::from_str(&lifecycle.minimum_object_size) {
        response.headers_mut().insert(MINIMUM_SIZE_HEADER, value);
    }
    Ok(response)
}

pub async fn get_bucket_lifecycle(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    let b = bucket.to_owned();
    let info = blocking(state, move |store| store.bucket(&b)).await??.ok_or_else(|| S3Error::no_such_bucket(bucket))?;
    let Some(lifecycle) = of(&info) else {
        return Err(
            S3Error::new(Code::NoSuchLifecycleConfiguration, "The lifecycle configuration does not exist").with("BucketName", bucket)
        );
    };
    let mut response = crate::s3::common::xml_response(to_xml(&lifecycle));
    if let Ok(value) = http::HeaderValue::from_str(&lifecycle.minimum_object_size) {
        response.headers_mut().insert(MINIMUM_SIZE_HEADER, value);
    }
    Ok(response)
}

/// DeleteBucketLifecycle: 204 whether or not there was a configuration.
pub async fn delete_bucket_lifecycle(state: &Arc<S3State>, bucket: &str) -> Result<Response<Body>> {
    change_bucket(state, bucket, StatusCode::NO_CONTENT, |info| info.lifecycle = None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn days_are_counted_to_the_next_midnight() {
        // Created 2024-01-15 10:30 UTC, 3 days: due 2024-01-19 00:00 UTC (the User Guide's example).
        let created = chrono::DateTime::parse_from_rfc3339("2024-01-15T10:30:00Z").unwrap().timestamp_millis();
        let due = chrono::DateTime::parse_from_rfc3339("2024-01-19T00:00:00Z").unwrap().timestamp_millis();
        assert_eq!(due_ms(created, 3, DAY), due);
        // Exactly at midnight: no rounding.
        assert_eq!(due_ms(due - 3 * DAY, 3, DAY), due);
        // A scaled day of 2 s.
        assert_eq!(due_ms(1_500, 1, 2_000), 4_000);
    }

    fn parsed(rules: &str) -> Result<Lifecycle> {
        parse(format!("<LifecycleConfiguration xmlns=\"{}\">{rules}</LifecycleConfiguration>", xml::NAMESPACE).as_bytes(), None)
    }

    fn code(rules: &str) -> String {
        parsed(rules).map(|_| "ok".to_owned()).unwrap_or_else(|e| format!("{:?}", e.code))
    }

    #[test]
    fn validation() {
        let ok =
            "<Rule><ID>a</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>";
        assert_eq!(code(ok), "ok");
        assert_eq!(code(""), "MalformedXML");
        assert_eq!(code(&ok.replace("Enabled", "enabled")), "MalformedXML");
        assert_eq!(code(&ok.replace("<Days>1</Days>", "<Days>0</Days>")), "InvalidArgument");
        assert_eq!(code(&ok.replace("<Days>1</Days>", "<Days>1</Days><Date>2030-01-01T00:00:00Z</Date>")), "MalformedXML");
        assert_eq!(code(&ok.replace("<Days>1</Days>", "<Date>2030-01-01T10:00:00Z</Date>")), "InvalidArgument");
        assert_eq!(code(&ok.replace("<Days>1</Days>", "<Date>20300101</Date>")), "MalformedXML");
        assert_eq!(code(&format!("{ok}{ok}")), "InvalidArgument");
        assert_eq!(code(&ok.replace("<Filter><Prefix>logs/</Prefix></Filter>", "")), "MalformedXML");
        assert_eq!(code(&ok.replace("<ID>a</ID>", &format!("<ID>{}</ID>", "x".repeat(256)))), "InvalidArgument");
        assert_eq!(
            code(
                &ok.replace("<Prefix>logs/</Prefix>", "<Tag><Key>k</Key><Value>v</Value></Tag>")
                    .replace("<Days>1</Days>", "<ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker>")
            ),
            "InvalidRequest"
        );
        assert_eq!(code(&ok.replace("<Expiration><Days>1</Days></Expiration>", "")), "InvalidRequest");
        assert_eq!(
            code(
                "<Rule><ID>n</ID><Prefix></Prefix><Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays><NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>"
            ),
            "InvalidRequest"
        );
        assert_eq!(
            code(&ok.replace("<Prefix>logs/</Prefix>", "<Prefix>a</Prefix><ObjectSizeLessThan>5</ObjectSizeLessThan>")),
            "MalformedXML"
        );
    }

    #[test]
    fn round_trip_keeps_what_was_sent() {
        let rules = "<Rule><ID>t</ID><Filter></Filter><Status>Disabled</Status><Transition><Days>0</Days><StorageClass>GLACIER</StorageClass></Transition>\
            <Expiration><ExpiredObjectDeleteMarker>false</ExpiredObjectDeleteMarker></Expiration></Rule>\
            <Rule><ID>p</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status><Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration></Rule>\
            <Rule><ID>a</ID><Filter><And><Prefix>x/</Prefix><Tag><Key>b</Key><Value>2</Value></Tag><Tag><Key>a</Key><Value>1</Value></Tag></And></Filter>\
            <Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>3</NoncurrentDays><NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>";
        let lifecycle = parsed(rules).unwrap();
        assert_eq!(lifecycle.rules[0].filter, Some(Filter::All));
        assert_eq!(lifecycle.rules[1].filter, Some(Filter::Prefix(String::new())));
        let again = parse(to_xml(&lifecycle).as_bytes(), Some(&lifecycle.minimum_object_size)).unwrap();
        assert_eq!(again, lifecycle);
        assert!(to_xml(&lifecycle).contains("<Date>2030-01-01T00:00:00.000Z</Date>"));
    }

    #[test]
    fn rules_apply_by_prefix_tags_and_size() {
        let lifecycle = parsed(
            "<Rule><ID>a</ID><Filter><And><Prefix>x/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter>\
             <Status>Enabled</Status><Expiration><Days>2</Days></Expiration></Rule>",
        )
        .unwrap();
        let rule = &lifecycle.rules[0];
        let tags = vec![("k".to_owned(), "v".to_owned())];
        assert!(rule.applies("x/1", 11, &tags));
        assert!(!rule.applies("y/1", 11, &tags));
        assert!(!rule.applies("x/1", 10, &tags));
        assert!(!rule.applies("x/1", 11, &[("k".to_owned(), "w".to_owned())]));
        let meta = ObjectMeta { key: "x/1".into(), size: 11, tags, last_modified_ms: 1, ..ObjectMeta::default() };
        // Made 1 ms after midnight: two days later, rounded up to the next midnight.
        assert_eq!(lifecycle.expiry(&meta, DAY), Some((3 * DAY, "a")));
    }
}
