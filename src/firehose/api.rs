//! Request shapes of the Firehose operations, their model constraints (answered as
//! `ValidationException` with AWS's Coral-style text) and the S3 destination rules
//! (answered as `InvalidArgumentException`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::firehose::buffer::Hints;
use crate::firehose::compress::Compression;
use crate::firehose::error::{FirehoseError, Result};
use crate::firehose::naming;
use crate::firehose::pipeline::SUPPORTED_PROCESSORS;

/// Model constraint violations, collected then reported together.
#[derive(Debug, Default)]
pub struct Violations(Vec<String>);

impl Violations {
    fn push(&mut self, text: String) {
        self.0.push(text);
    }

    pub fn required<T>(&mut self, path: &str, value: &Option<T>) {
        if value.is_none() {
            self.push(format!("Value null at '{path}' failed to satisfy constraint: Member must not be null"));
        }
    }

    pub fn length(&mut self, path: &str, value: Option<&str>, min: usize, max: usize) {
        let Some(value) = value else { return };
        let n = value.chars().count();
        if n < min {
            self.push(format!(
                "Value '{value}' at '{path}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
            ));
        } else if n > max {
            self.push(format!(
                "Value '{value}' at '{path}' failed to satisfy constraint: Member must have length less than or equal to {max}"
            ));
        }
    }

    /// The length constraint of a list member (records, tags, keys).
    pub fn list_length(&mut self, path: &str, len: usize, min: usize, max: usize) {
        if len < min {
            self.push(format!(
                "Value '[]' at '{path}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
            ));
        } else if len > max {
            self.push(format!(
                "Value '[{len} members]' at '{path}' failed to satisfy constraint: Member must have length less than or equal to {max}"
            ));
        }
    }

    pub fn pattern(&mut self, path: &str, value: Option<&str>, matches: impl Fn(&str) -> bool, pattern: &str) {
        if let Some(value) = value
            && !matches(value)
        {
            self.push(format!(
                "Value '{value}' at '{path}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
            ));
        }
    }

    pub fn range(&mut self, path: &str, value: Option<i64>, min: i64, max: i64) {
        let Some(value) = value else { return };
        if value < min {
            self.push(format!(
                "Value '{value}' at '{path}' failed to satisfy constraint: Member must have value greater than or equal to {min}"
            ));
        } else if value > max {
            self.push(format!(
                "Value '{value}' at '{path}' failed to satisfy constraint: Member must have value less than or equal to {max}"
            ));
        }
    }

    pub fn one_of(&mut self, path: &str, value: Option<&str>, allowed: &[&str]) {
        if let Some(value) = value
            && !allowed.contains(&value)
        {
            self.push(format!(
                "Value at '{path}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ));
        }
    }

    /// `blob` lengths are rendered the way Java prints the buffer.
    pub fn blob_length(&mut self, path: &str, len: usize, max: usize) {
        if len > max {
            self.push(format!(
                "Value 'java.nio.HeapByteBuffer[pos=0 lim={len} cap={len}]' at '{path}' failed to satisfy constraint: Member must have length less than or equal to {max}"
            ));
        }
    }

    pub fn finish(self) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(FirehoseError::Validation(format!("1 validation error detected: {}", self.0[0]))),
            n => Err(FirehoseError::Validation(format!("{n} validation errors detected: {}", self.0.join("; ")))),
        }
    }
}

pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub fn check_stream_name(v: &mut Violations, name: &Option<String>) {
    v.required("deliveryStreamName", name);
    v.length("deliveryStreamName", name.as_deref(), 1, 64);
    v.pattern("deliveryStreamName", name.as_deref(), valid_stream_name, "[a-zA-Z0-9_.-]+");
}

/// `arn:.*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+`
fn valid_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:") else { return false };
    let Some(at) = rest.find(":iam::") else { return false };
    let rest = &rest[at + 6..];
    let (account, role) = match rest.split_once(":role/") {
        Some(parts) => parts,
        None => return false,
    };
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !role.is_empty()
        && role.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-/".contains(&b))
}

/// `arn:.*:s3:::[\w\.\-]{1,255}`; answers the bucket name.
pub fn bucket_of_arn(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let at = rest.find(":s3:::")?;
    let bucket = &rest[at + 6..];
    ((1..=255).contains(&bucket.len()) && bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))).then_some(bucket)
}

fn valid_file_extension(ext: &str) -> bool {
    ext.is_empty()
        || (ext.len() > 1
            && ext.starts_with('.')
            && ext[1..].bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"!-_.*'()".contains(&b)))
}

fn valid_time_zone(zone: &str) -> bool {
    zone.is_empty() || zone.bytes().all(|b| b.is_ascii_alphabetic() || b"/_".contains(&b))
}

fn tag_chars(s: &str) -> bool {
    s.chars().all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@%".contains(c))
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct BufferingHints {
    #[serde(rename = "SizeInMBs", skip_serializing_if = "Option::is_none")]
    pub size_in_mbs: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_in_seconds: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessingConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processors: Option<Vec<Processor>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Processor {
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<Value>>,
}

/// An S3 or ExtendedS3 destination, as configured (and as described back).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct S3Destination {
    #[serde(rename = "RoleARN", skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(rename = "BucketARN", skip_serializing_if = "Option::is_none")]
    pub bucket_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_output_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffering_hints: Option<BufferingHints>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_watch_logging_options: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_configuration: Option<ProcessingConfiguration>,
    #[serde(rename = "S3BackupMode", skip_serializing_if = "Option::is_none")]
    pub s3_backup_mode: Option<String>,
    #[serde(rename = "S3BackupConfiguration", skip_serializing_if = "Option::is_none")]
    pub s3_backup_configuration: Option<Value>,
    #[serde(rename = "S3BackupUpdate", skip_serializing_if = "Option::is_none")]
    pub s3_backup_update: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_format_conversion_configuration: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_partitioning_configuration: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_extension: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_time_zone: Option<String>,
}

pub const DEFAULT_SIZE_MB: i64 = 5;
pub const DEFAULT_INTERVAL_S: i64 = 300;

/// Default SizeInMBs of a dynamically partitioned stream (whose minimum is 64).
pub const DEFAULT_PARTITIONED_SIZE_MB: i64 = 128;
const PARTITIONED_SIZE_MB_MIN: i64 = 64;
/// The backup's buffering never flushes sooner than this.
const BACKUP_INTERVAL_S_MIN: i64 = 60;
const PROCESSOR_PARAMETERS: [&str; 11] = [
    "LambdaArn",
    "NumberOfRetries",
    "MetadataExtractionQuery",
    "JsonParsingEngine",
    "RoleArn",
    "BufferSizeInMBs",
    "BufferIntervalInSeconds",
    "SubRecordType",
    "Delimiter",
    "CompressionFormat",
    "DataMessageExtraction",
];
const PROCESSOR_TYPES: [&str; 6] =
    ["RecordDeAggregation", "Decompression", "CloudWatchLogProcessing", "Lambda", "MetadataExtraction", "AppendDelimiterToRecord"];

impl S3Destination {
    /// Model constraints of the destination members under `path`.
    pub fn check_model(&self, v: &mut Violations, path: &str, creating: bool) {
        let p = |member: &str| format!("{path}.{member}");
        if creating {
            v.required(&p("roleARN"), &self.role_arn);
            v.required(&p("bucketARN"), &self.bucket_arn);
        }
        v.length(&p("roleARN"), self.role_arn.as_deref(), 1, 512);
        v.pattern(&p("roleARN"), self.role_arn.as_deref(), valid_role_arn, "arn:.*:iam::\\d{12}:role/[a-zA-Z_0-9+=,.@\\-_/]+");
        v.length(&p("bucketARN"), self.bucket_arn.as_deref(), 1, 2048);
        v.pattern(&p("bucketARN"), self.bucket_arn.as_deref(), |a| bucket_of_arn(a).is_some(), "arn:.*:s3:::[\\w\\.\\-]{1,255}");
        v.length(&p("prefix"), self.prefix.as_deref(), 0, 1024);
        v.length(&p("errorOutputPrefix"), self.error_output_prefix.as_deref(), 0, 1024);
        if let Some(hints) = &self.buffering_hints {
            v.range(&p("bufferingHints.sizeInMBs"), hints.size_in_mbs, 1, 128);
            v.range(&p("bufferingHints.intervalInSeconds"), hints.interval_in_seconds, 0, 900);
        }
        v.one_of(&p("compressionFormat"), self.compression_format.as_deref(), &["ZIP", "HADOOP_SNAPPY", "Snappy", "GZIP", "UNCOMPRESSED"]);
        v.one_of(&p("s3BackupMode"), self.s3_backup_mode.as_deref(), &["Disabled", "Enabled"]);
        v.length(&p("fileExtension"), self.file_extension.as_deref(), 0, 128);
        v.pattern(&p("fileExtension"), self.file_extension.as_deref(), valid_file_extension, "^$|\\.[0-9a-z!\\-_.*'()]+");
        v.length(&p("customTimeZone"), self.custom_time_zone.as_deref(), 0, 50);
        v.pattern(&p("customTimeZone"), self.custom_time_zone.as_deref(), valid_time_zone, "^$|[a-zA-Z/_]+");
        if let Some(processing) = &self.processing_configuration {
            for (i, processor) in processing.processors.iter().flatten().enumerate() {
                let path = p(&format!("processingConfiguration.processors.{}.member.type", i + 1));
                v.required(&path, &processor.kind);
                v.one_of(&path, processor.kind.as_deref(), &PROCESSOR_TYPES);
                for (j, parameter) in processor.parameters.iter().flatten().enumerate() {
                    let path = p(&format!("processingConfiguration.processors.{}.member.parameters.{}.member", i + 1, j + 1));
                    let name = parameter.get("ParameterName").and_then(Value::as_str);
                    let value = parameter.get("ParameterValue").and_then(Value::as_str);
                    v.required(&format!("{path}.parameterName"), &name);
                    v.one_of(&format!("{path}.parameterName"), name, &PROCESSOR_PARAMETERS);
                    v.required(&format!("{path}.parameterValue"), &value);
                    v.length(&format!("{path}.parameterValue"), value, 1, 5120);
                }
            }
        }
    }

    /// Applies an UpdateDestination's members over this configuration (AWS merges
    /// member-wise when the destination type stays the same).
    pub fn merge(&mut self, update: S3Destination) {
        macro_rules! take {
            ($($field:ident),*) => { $(if update.$field.is_some() { self.$field = update.$field; })* };
        }
        take!(
            role_arn,
            bucket_arn,
            prefix,
            error_output_prefix,
            buffering_hints,
            compression_format,
            encryption_configuration,
            cloud_watch_logging_options,
            processing_configuration,
            s3_backup_mode,
            data_format_conversion_configuration,
            dynamic_partitioning_configuration,
            file_extension,
            custom_time_zone
        );
        if update.s3_backup_update.is_some() {
            self.s3_backup_configuration = update.s3_backup_update;
        }
    }

    pub fn compression(&self) -> Compression {
        self.compression_format.as_deref().and_then(Compression::parse).unwrap_or(Compression::Uncompressed)
    }

    pub fn size_bytes(&self) -> u64 {
        let default = if self.dynamic_partitioning() { DEFAULT_PARTITIONED_SIZE_MB } else { DEFAULT_SIZE_MB };
        self.buffering_hints.as_ref().and_then(|h| h.size_in_mbs).unwrap_or(default) as u64 * 1024 * 1024
    }

    pub fn hints(&self) -> Hints {
        Hints { size_bytes: self.size_bytes(), interval_ms: self.interval_s() * 1000 }
    }

    /// Whether DynamicPartitioningConfiguration is enabled.
    pub fn dynamic_partitioning(&self) -> bool {
        self.dynamic_partitioning_configuration.as_ref().and_then(|c| c.get("Enabled")).and_then(Value::as_bool).unwrap_or(false)
    }

    /// Whether the original records are also delivered to the S3 backup.
    pub fn backup_enabled(&self) -> bool {
        self.s3_backup_mode.as_deref() == Some("Enabled") && self.backup().is_some()
    }

    /// The S3BackupConfiguration (an S3 destination of its own).
    pub fn backup(&self) -> Option<S3Destination> {
        self.s3_backup_configuration.clone().and_then(|v| serde_json::from_value(v).ok())
    }

    /// Whether processing is enabled with a processor of this type.
    pub fn has_processor(&self, kind: &str) -> bool {
        let Some(processing) = &self.processing_configuration else { return false };
        processing.enabled.unwrap_or(true) && processing.processors.iter().flatten().any(|p| p.kind.as_deref() == Some(kind))
    }

    pub fn interval_s(&self) -> i64 {
        self.buffering_hints.as_ref().and_then(|h| h.interval_in_seconds).unwrap_or(DEFAULT_INTERVAL_S)
    }

    /// The extension of delivered objects: FileExtension replaces the compression's.
    pub fn extension(&self) -> String {
        match self.file_extension.as_deref() {
            Some(ext) if !ext.is_empty() => ext.to_owned(),
            _ => self.compression().extension().to_owned(),
        }
    }

    pub fn zone(&self) -> Option<chrono_tz::Tz> {
        self.custom_time_zone.as_deref().filter(|z| !z.is_empty() && *z != "UTC").and_then(|z| z.parse().ok())
    }

    pub fn append_delimiter(&self) -> bool {
        self.has_processor("AppendDelimiterToRecord")
    }

    pub fn bucket(&self) -> &str {
        self.bucket_arn.as_deref().and_then(bucket_of_arn).unwrap_or_default()
    }

    /// The semantic rules AWS checks after the model: hints in pairs, the prefix rules,
    /// a known time zone. Answers the members firelake does not emulate, which are an
    /// error unless `lenient`, in which case they are returned to be reported as ignored.
    pub fn check_semantics(&self, lenient: bool, path: &str) -> Result<Vec<String>> {
        if let Some(hints) = &self.buffering_hints
            && hints.size_in_mbs.is_some() != hints.interval_in_seconds.is_some()
        {
            return Err(FirehoseError::InvalidArgument(
                "BufferingHints.SizeInMBs and BufferingHints.IntervalInSeconds must be specified together".to_owned(),
            ));
        }
        check_prefixes(self.prefix.as_deref(), self.error_output_prefix.as_deref())?;
        if let Some(zone) = self.custom_time_zone.as_deref()
            && !zone.is_empty()
            && zone != "UTC"
            && zone.parse::<chrono_tz::Tz>().is_err()
        {
            return Err(FirehoseError::InvalidArgument(format!("CustomTimeZone {zone} is not a supported time zone")));
        }
        let mut unsupported = Vec::new();
        if let Some(processing) = &self.processing_configuration
            && processing.enabled.unwrap_or(true)
        {
            let processors = processing.processors.as_deref().unwrap_or_default();
            if processors.is_empty() && processing.enabled == Some(true) {
                return Err(FirehoseError::InvalidArgument(
                    "ProcessingConfiguration must have at least one processor when enabled".to_owned(),
                ));
            }
            if processors.len() > 5 {
                return Err(FirehoseError::InvalidArgument("ProcessingConfiguration.Processors can have at most 5 processors".to_owned()));
            }
            if processors.iter().filter(|p| p.kind.as_deref() == Some("Lambda")).count() > 1 {
                return Err(FirehoseError::InvalidArgument("ProcessingConfiguration can have at most one Lambda processor".to_owned()));
            }
            for processor in processors {
                let kind = processor.kind.as_deref().unwrap_or_default();
                if !SUPPORTED_PROCESSORS.contains(&kind) {
                    unsupported.push(format!("{path}.ProcessingConfiguration.Processors[{kind}]"));
                }
            }
        }
        let dynamic = self.dynamic_partitioning();
        let parts = naming::parse_prefix(self.prefix.as_deref().unwrap_or_default()).unwrap_or_default();
        let keys: Vec<(bool, &str)> = parts
            .iter()
            .filter_map(
                |p| if let naming::Part::PartitionKey { from_lambda, name } = p { Some((*from_lambda, name.as_str())) } else { None },
            )
            .collect();
        if !keys.is_empty() && !dynamic {
            return Err(FirehoseError::InvalidArgument(
                "Partition key expressions (partitionKeyFromQuery, partitionKeyFromLambda) in Prefix need DynamicPartitioningConfiguration enabled".to_owned(),
            ));
        }
        if dynamic {
            if self.error_output_prefix.as_deref().is_none_or(str::is_empty) {
                return Err(FirehoseError::InvalidArgument(
                    "ErrorOutputPrefix is required when dynamic partitioning is enabled".to_owned(),
                ));
            }
            if self.buffering_hints.as_ref().and_then(|h| h.size_in_mbs).is_some_and(|mb| mb < PARTITIONED_SIZE_MB_MIN) {
                return Err(FirehoseError::InvalidArgument(format!(
                    "BufferingHints.SizeInMBs must be at least {PARTITIONED_SIZE_MB_MIN} when dynamic partitioning is enabled"
                )));
            }
            if self.buffering_hints.as_ref().and_then(|h| h.interval_in_seconds) == Some(0) {
                return Err(FirehoseError::InvalidArgument(
                    "BufferingHints.IntervalInSeconds cannot be 0 when dynamic partitioning is enabled".to_owned(),
                ));
            }
            if keys.is_empty() {
                return Err(FirehoseError::InvalidArgument(
                    "Prefix must contain a partitionKeyFromQuery or partitionKeyFromLambda expression when dynamic partitioning is enabled"
                        .to_owned(),
                ));
            }
            if keys.iter().any(|(from_lambda, _)| !from_lambda) && !self.has_processor("MetadataExtraction") {
                return Err(FirehoseError::InvalidArgument(
                    "Prefix uses partitionKeyFromQuery, which needs a MetadataExtraction processor".to_owned(),
                ));
            }
            if keys.iter().any(|(from_lambda, _)| *from_lambda) && !self.has_processor("Lambda") {
                return Err(FirehoseError::InvalidArgument(
                    "Prefix uses partitionKeyFromLambda, which needs a Lambda processor".to_owned(),
                ));
            }
        } else if self.has_processor("MetadataExtraction") {
            return Err(FirehoseError::InvalidArgument(
                "MetadataExtraction processor is supported only when dynamic partitioning is enabled".to_owned(),
            ));
        }
        if let Err(why) = crate::firehose::pipeline::Pipeline::compile(self) {
            return Err(FirehoseError::InvalidArgument(why));
        }
        if self.s3_backup_mode.as_deref() == Some("Enabled") {
            let Some(backup) = self.backup() else {
                return Err(FirehoseError::InvalidArgument("S3BackupConfiguration is required when S3BackupMode is Enabled".to_owned()));
            };
            if backup.bucket().is_empty() {
                return Err(FirehoseError::InvalidArgument("S3BackupConfiguration.BucketARN is required".to_owned()));
            }
            if let Some(hints) = &backup.buffering_hints
                && hints.interval_in_seconds.is_some_and(|s| s < BACKUP_INTERVAL_S_MIN)
            {
                return Err(FirehoseError::InvalidArgument(format!(
                    "S3BackupConfiguration.BufferingHints.IntervalInSeconds must be at least {BACKUP_INTERVAL_S_MIN}"
                )));
            }
            check_prefixes(backup.prefix.as_deref(), backup.error_output_prefix.as_deref())?;
        }
        if let Some(config) = &self.data_format_conversion_configuration
            && config.get("Enabled").and_then(Value::as_bool).unwrap_or(true)
        {
            unsupported.push(format!("{path}.DataFormatConversionConfiguration"));
        }
        if !lenient && let Some(first) = unsupported.first() {
            return Err(not_emulated(first));
        }
        Ok(unsupported)
    }

    /// What UpdateDestination may not change: dynamic partitioning is set at create for
    /// good, and a backup once enabled cannot be disabled.
    pub fn check_update(before: &S3Destination, after: &S3Destination) -> Result<()> {
        if before.dynamic_partitioning() != after.dynamic_partitioning() {
            return Err(FirehoseError::InvalidArgument(if before.dynamic_partitioning() {
                "Dynamic partitioning cannot be disabled once it is enabled.".to_owned()
            } else {
                "Dynamic partitioning can be enabled only when the delivery stream is created.".to_owned()
            }));
        }
        if before.s3_backup_mode.as_deref() == Some("Enabled") && after.s3_backup_mode.as_deref() != Some("Enabled") {
            return Err(FirehoseError::InvalidArgument("S3BackupMode cannot be disabled once it is enabled.".to_owned()));
        }
        Ok(())
    }

    /// The `ExtendedS3DestinationDescription` AWS returns, defaults filled in.
    pub fn describe_extended(&self) -> Value {
        let mut v = self.describe_basic();
        let Some(map) = v.as_object_mut() else { return v };
        if let Some(p) = self.processing_configuration.as_ref().and_then(|p| serde_json::to_value(p).ok()) {
            map.insert("ProcessingConfiguration".into(), p);
        }
        map.insert("S3BackupMode".into(), Value::String(self.s3_backup_mode.clone().unwrap_or_else(|| "Disabled".into())));
        if let Some(backup) = self.backup() {
            map.insert("S3BackupDescription".into(), backup.describe_basic());
        } else if let Some(backup) = &self.s3_backup_configuration {
            map.insert("S3BackupDescription".into(), backup.clone());
        }
        map.insert(
            "DataFormatConversionConfiguration".into(),
            self.data_format_conversion_configuration.clone().unwrap_or_else(|| serde_json::json!({"Enabled": false})),
        );
        if let Some(mut dp) = self.dynamic_partitioning_configuration.clone() {
            if dp.get("Enabled").and_then(Value::as_bool) == Some(true) && dp.get("RetryOptions").is_none() {
                dp["RetryOptions"] = serde_json::json!({"DurationInSeconds": 300});
            }
            map.insert("DynamicPartitioningConfiguration".into(), dp);
        }
        if let Some(ext) = &self.file_extension {
            map.insert("FileExtension".into(), Value::String(ext.clone()));
        }
        if let Some(zone) = &self.custom_time_zone {
            map.insert("CustomTimeZone".into(), Value::String(zone.clone()));
        }
        v
    }

    /// The `S3DestinationDescription`: the subset every S3 destination has.
    pub fn describe_basic(&self) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("RoleARN".into(), Value::String(self.role_arn.clone().unwrap_or_default()));
        map.insert("BucketARN".into(), Value::String(self.bucket_arn.clone().unwrap_or_default()));
        if let Some(prefix) = &self.prefix {
            map.insert("Prefix".into(), Value::String(prefix.clone()));
        }
        if let Some(prefix) = &self.error_output_prefix {
            map.insert("ErrorOutputPrefix".into(), Value::String(prefix.clone()));
        }
        map.insert(
            "BufferingHints".into(),
            serde_json::json!({"SizeInMBs": self.size_bytes() / (1024 * 1024), "IntervalInSeconds": self.interval_s()}),
        );
        map.insert("CompressionFormat".into(), Value::String(self.compression_format.clone().unwrap_or_else(|| "UNCOMPRESSED".into())));
        map.insert(
            "EncryptionConfiguration".into(),
            self.encryption_configuration.clone().unwrap_or_else(|| serde_json::json!({"NoEncryptionConfig": "NoEncryption"})),
        );
        map.insert(
            "CloudWatchLoggingOptions".into(),
            self.cloud_watch_logging_options.clone().unwrap_or_else(|| serde_json::json!({"Enabled": false})),
        );
        Value::Object(map)
    }
}

/// InvalidArgumentException for a member firelake does not emulate.
pub fn not_emulated(member: &str) -> FirehoseError {
    FirehoseError::InvalidArgument(format!(
        "{member} is not supported by firelake (a local emulator); remove it, or start firelake with --lenient to accept and ignore it"
    ))
}

const PREFIX_RULE: &str = "Ths supplied prefix(es) do not satisfy the following constraint: ";

/// The Prefix / ErrorOutputPrefix rules of Create and UpdateDestination.
pub fn check_prefixes(prefix: Option<&str>, error_prefix: Option<&str>) -> Result<()> {
    let invalid = |rule: String| FirehoseError::InvalidArgument(format!("{PREFIX_RULE}{rule}"));
    let parts = naming::parse_prefix(prefix.unwrap_or_default()).map_err(|e| invalid(e.0))?;
    let error_parts = naming::parse_prefix(error_prefix.unwrap_or_default()).map_err(|e| invalid(e.0))?;
    if parts.contains(&naming::Part::ErrorOutputType) {
        return Err(invalid("Prefix cannot contain !{firehose:error-output-type}".to_owned()));
    }
    if naming::has_expressions(&parts) && error_prefix.is_none_or(str::is_empty) {
        return Err(invalid("ErrorOutputPrefix cannot be null or empty when Prefix contains expressions".to_owned()));
    }
    if naming::has_expressions(&error_parts) && !error_parts.contains(&naming::Part::ErrorOutputType) {
        return Err(invalid("ErrorOutputPrefix must contain !{firehose:error-output-type} when it contains expressions".to_owned()));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tag {
    #[serde(rename = "Key")]
    pub key: Option<String>,
    #[serde(rename = "Value", skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

pub fn check_tags(v: &mut Violations, path: &str, tags: &[Tag]) {
    for (i, tag) in tags.iter().enumerate() {
        let p = format!("{path}.{}.member", i + 1);
        v.required(&format!("{p}.key"), &tag.key);
        v.length(&format!("{p}.key"), tag.key.as_deref(), 1, 128);
        v.pattern(
            &format!("{p}.key"),
            tag.key.as_deref(),
            |k| tag_chars(k) && !k.starts_with("aws:"),
            "^(?!aws:)[\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@%]*$",
        );
        v.length(&format!("{p}.value"), tag.value.as_deref(), 0, 256);
        v.pattern(&format!("{p}.value"), tag.value.as_deref(), tag_chars, "^[\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@%]*$");
    }
}

/// Parses a request body into `T`, answering SerializationException when it does not fit.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|err| FirehoseError::Serialization(format!("failed to parse the request: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(bucket_of_arn("arn:aws:s3:::my-bucket"), Some("my-bucket"));
        assert_eq!(bucket_of_arn("arn:aws:s3:::"), None);
        assert_eq!(bucket_of_arn("arn:aws:s3:::a/b"), None);
        assert!(valid_role_arn("arn:aws:iam::000000000000:role/firehoseDeliveryRole"));
        assert!(!valid_role_arn("arn:aws:iam::0000:role/x"));
    }

    #[test]
    fn coral_messages() {
        let mut v = Violations::default();
        check_stream_name(&mut v, &Some("x".repeat(65)));
        let err = v.finish().unwrap_err();
        assert_eq!(
            err.message(),
            format!(
                "1 validation error detected: Value '{}' at 'deliveryStreamName' failed to satisfy constraint: Member must have length less than or equal to 64",
                "x".repeat(65)
            )
        );
        let mut v = Violations::default();
        let dest =
            S3Destination { compression_format: Some("gzip".into()), file_extension: Some(".Custom.LOG".into()), ..Default::default() };
        dest.check_model(&mut v, "extendedS3DestinationConfiguration", false);
        let message = v.finish().unwrap_err().message().into_owned();
        assert!(message.starts_with("2 validation errors detected: Value at 'extendedS3DestinationConfiguration.compressionFormat' failed to satisfy constraint: Member must satisfy enum value set: [ZIP, HADOOP_SNAPPY, Snappy, GZIP, UNCOMPRESSED]; "), "{message}");
        assert!(message.ends_with("Member must satisfy regular expression pattern: ^$|\\.[0-9a-z!\\-_.*'()]+"), "{message}");
    }

    #[test]
    fn prefix_rules() {
        assert!(check_prefixes(Some("logs/"), None).is_ok());
        let err = check_prefixes(Some("!{timestamp:yyyy}/"), None).unwrap_err();
        assert_eq!(
            err.message(),
            "Ths supplied prefix(es) do not satisfy the following constraint: ErrorOutputPrefix cannot be null or empty when Prefix contains expressions"
        );
        assert!(check_prefixes(Some("!{timestamp:yyyy}/"), Some("errors/")).is_ok());
        assert!(check_prefixes(Some("!{firehose:error-output-type}"), Some("e/")).is_err());
        assert!(check_prefixes(None, Some("e/!{timestamp:yyyy}/")).is_err());
        assert!(check_prefixes(None, Some("e/!{firehose:error-output-type}/!{timestamp:yyyy}/")).is_ok());
    }

    #[test]
    fn merge_keeps_what_the_update_omits() {
        let mut dest = S3Destination { bucket_arn: Some("arn:aws:s3:::a".into()), prefix: Some("p/".into()), ..Default::default() };
        dest.merge(S3Destination { compression_format: Some("GZIP".into()), ..Default::default() });
        assert_eq!(dest.prefix.as_deref(), Some("p/"));
        assert_eq!(dest.compression(), Compression::Gzip);
        assert_eq!(dest.extension(), ".gz");
        dest.merge(S3Destination { file_extension: Some(".log".into()), ..Default::default() });
        assert_eq!(dest.extension(), ".log");
    }
}
