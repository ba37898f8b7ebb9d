//! The processors of a delivery stream, in AWS's order: Decompression ->
//! CloudWatchLogProcessing -> RecordDeAggregation -> (Lambda) -> MetadataExtraction ->
//! AppendDelimiterToRecord (applied when an object is written) -> compression.
//!
//! [`Pipeline::route`] is pure: the same record, arrival time, overflow flag and Lambda
//! outcomes always give the same outputs, which is what lets recovery rebuild a sealed
//! object from the journaled raw records (and the journaled Lambda responses, the one
//! part that is not a function of the record). Each output goes to a [`Dest`]: a data
//! partition, an error-output type whose bytes are AWS's JSON error document for the
//! record, or, before its Lambda has run, the Lambda stage's own buffer.

pub mod cloudwatch;
pub mod deaggregate;
pub mod jq;
pub mod lambda;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::firehose::api::{ProcessingConfiguration, S3Destination};
use crate::firehose::naming::{self, Part};
use deaggregate::SubRecordType;
use jq::Query;

/// The error-output types firelake writes (`!{firehose:error-output-type}`).
pub const PROCESSING_FAILED: &str = "processing-failed";
pub const PARTITIONING_FAILED: &str = "partitioning-failed";
pub const DECOMPRESSION_FAILED: &str = "decompression-failed";
/// Records beyond the active-partition limit (the folder AWS's translated guides name).
pub const ACTIVE_PARTITION_EXCEEDED: &str = "activePartitionExceeded";

/// Where one output of a record goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Dest {
    /// A data object; the partition is the values of the Prefix's
    /// `!{partitionKeyFromQuery:…}` keys, in the order the Prefix names them (empty
    /// without dynamic partitioning).
    Data(Vec<String>),
    /// An error object of this error-output type.
    Error(String),
    /// The S3 backup: the record as it was put.
    Backup,
    /// Waiting for the Lambda processor: the record after the processors before it.
    Lambda,
}

/// What the Lambda processor made of one record, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `Ok`: the record is replaced by `data`; `keys` feed `!{partitionKeyFromLambda:k}`.
    Ok {
        #[serde(with = "base64_bytes")]
        data: Bytes,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keys: Vec<(String, String)>,
        /// The record would have opened a partition beyond the active-partition limit.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        overflow: bool,
    },
    Dropped,
    Failed {
        code: String,
        message: String,
        attempts: u32,
        ending_ms: i64,
    },
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map(Bytes::from).map_err(serde::de::Error::custom)
    }
}

/// The Lambda processor's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaStage {
    pub arn: String,
    /// Attempts beyond the first.
    pub retries: u32,
    pub size_bytes: u64,
    pub interval_ms: i64,
}

/// Lambda processor defaults and ranges (AWS's).
const LAMBDA_RETRIES_DEFAULT: u32 = 3;
const LAMBDA_RETRIES_MAX: u32 = 300;
const LAMBDA_BUFFER_MB_DEFAULT: f64 = 1.0;
const LAMBDA_INTERVAL_S_DEFAULT: i64 = 60;

/// The processors a stream runs, compiled from its configuration.
#[derive(Debug, Default)]
pub struct Pipeline {
    decompress: bool,
    extract_messages: bool,
    deaggregate: Option<SubRecordType>,
    query: Option<Query>,
    pub lambda: Option<LambdaStage>,
    /// The partition keys the Prefix uses, in order: (from Lambda, name).
    partition_keys: Vec<(bool, String)>,
}

fn parameter<'a>(processor: &'a crate::firehose::api::Processor, name: &str) -> Option<&'a str> {
    processor.parameters.iter().flatten().find_map(|p| {
        (p.get("ParameterName").and_then(Value::as_str) == Some(name)).then(|| p.get("ParameterValue").and_then(Value::as_str)).flatten()
    })
}

/// The processor types firelake runs.
pub const SUPPORTED_PROCESSORS: [&str; 6] =
    ["RecordDeAggregation", "Decompression", "CloudWatchLogProcessing", "Lambda", "MetadataExtraction", "AppendDelimiterToRecord"];

impl Pipeline {
    /// Compiles a destination's processors (the jq query included); the error is the
    /// InvalidArgumentException message. Processors firelake does not run are left out
    /// here: `api` refuses them, or, with --lenient, reports them as ignored.
    pub fn compile(destination: &S3Destination) -> Result<Pipeline, String> {
        let mut pipeline = Pipeline::default();
        let dynamic = destination.dynamic_partitioning();
        if dynamic {
            let parts = naming::parse_prefix(destination.prefix.as_deref().unwrap_or_default()).map_err(|e| e.0)?;
            for part in parts {
                if let Part::PartitionKey { name, from_lambda } = part
                    && !pipeline.partition_keys.contains(&(from_lambda, name.clone()))
                {
                    pipeline.partition_keys.push((from_lambda, name));
                }
            }
        }
        let Some(ProcessingConfiguration { enabled, processors }) = &destination.processing_configuration else {
            return Ok(pipeline);
        };
        if !enabled.unwrap_or(true) {
            return Ok(pipeline);
        }
        for processor in processors.iter().flatten() {
            match processor.kind.as_deref().unwrap_or_default() {
                "Decompression" => {
                    let format = parameter(processor, "CompressionFormat").unwrap_or("GZIP");
                    if format != "GZIP" {
                        return Err(format!("Decompression CompressionFormat {format} is not supported; the supported value is GZIP"));
                    }
                    pipeline.decompress = true;
                }
                "CloudWatchLogProcessing" => {
                    pipeline.extract_messages = match parameter(processor, "DataMessageExtraction") {
                        Some("true") => true,
                        Some("false") | None => false,
                        Some(other) => return Err(format!("DataMessageExtraction must be true or false, not {other}")),
                    };
                }
                "RecordDeAggregation" => {
                    pipeline.deaggregate = Some(match parameter(processor, "SubRecordType").unwrap_or("JSON") {
                        "JSON" => SubRecordType::Json,
                        "DELIMITED" => {
                            let delimiter = parameter(processor, "Delimiter")
                                .ok_or("RecordDeAggregation with SubRecordType DELIMITED needs a Delimiter")?;
                            let bytes =
                                BASE64.decode(delimiter).map_err(|_| "the RecordDeAggregation Delimiter must be base64".to_owned())?;
                            SubRecordType::Delimited(bytes)
                        }
                        other => {
                            return Err(format!("SubRecordType {other} is not supported; the supported values are JSON and DELIMITED"));
                        }
                    });
                }
                "Lambda" => {
                    let arn = parameter(processor, "LambdaArn").ok_or("the Lambda processor needs a LambdaArn")?;
                    if !arn.starts_with("arn:") || !arn.contains(":lambda:") || !arn.contains(":function:") {
                        return Err(format!("LambdaArn {arn} is not the ARN of a Lambda function"));
                    }
                    let retries = match parameter(processor, "NumberOfRetries") {
                        None => LAMBDA_RETRIES_DEFAULT,
                        Some(text) => text
                            .parse::<u32>()
                            .ok()
                            .filter(|n| *n <= LAMBDA_RETRIES_MAX)
                            .ok_or_else(|| format!("NumberOfRetries must be a number from 0 to {LAMBDA_RETRIES_MAX}, not {text}"))?,
                    };
                    let size_mb = match parameter(processor, "BufferSizeInMBs") {
                        None => LAMBDA_BUFFER_MB_DEFAULT,
                        Some(text) => text
                            .parse::<f64>()
                            .ok()
                            .filter(|mb| (0.2..=3.0).contains(mb))
                            .ok_or_else(|| format!("BufferSizeInMBs of the Lambda processor must be from 0.2 to 3, not {text}"))?,
                    };
                    let interval_s =
                        match parameter(processor, "BufferIntervalInSeconds") {
                            None => LAMBDA_INTERVAL_S_DEFAULT,
                            Some(text) => text.parse::<i64>().ok().filter(|s| (0..=900).contains(s)).ok_or_else(|| {
                                format!("BufferIntervalInSeconds of the Lambda processor must be from 0 to 900, not {text}")
                            })?,
                        };
                    pipeline.lambda = Some(LambdaStage {
                        arn: arn.to_owned(),
                        retries,
                        size_bytes: (size_mb * 1024.0 * 1024.0) as u64,
                        interval_ms: interval_s * 1000,
                    });
                }
                "MetadataExtraction" => {
                    let engine = parameter(processor, "JsonParsingEngine").unwrap_or("JQ-1.6");
                    if engine != "JQ-1.6" {
                        return Err(format!("JsonParsingEngine {engine} is not supported; the supported value is JQ-1.6"));
                    }
                    let query =
                        parameter(processor, "MetadataExtractionQuery").ok_or("MetadataExtraction needs a MetadataExtractionQuery")?;
                    pipeline.query =
                        Some(Query::compile(query).map_err(|why| format!("Invalid MetadataExtractionQuery {query:?}: {why}"))?);
                }
                _ => {}
            }
        }
        Ok(pipeline)
    }

    /// Whether every record goes to the one data partition as it is.
    pub fn is_identity(&self) -> bool {
        !self.decompress && !self.extract_messages && self.deaggregate.is_none() && self.partition_keys.is_empty() && self.lambda.is_none()
    }

    /// Whether records are partitioned by key at put (with a Lambda processor they are
    /// partitioned when its answer comes).
    pub fn partitioned(&self) -> bool {
        !self.partition_keys.is_empty() && self.lambda.is_none()
    }

    /// The outputs of one record, in order. Pure. With a Lambda processor, `outcomes`
    /// are its journaled answers for the record's sub-records; without them the
    /// sub-records go to [`Dest::Lambda`].
    pub fn route(&self, data: &Bytes, arrival_ms: i64, overflow: bool, outcomes: Option<&[Outcome]>) -> Vec<(Dest, Bytes)> {
        let fail = |kind: &str, code: &str, message: &str, raw: &[u8]| {
            (Dest::Error(kind.to_owned()), error_document(arrival_ms, code, message, raw, None))
        };
        if !self.decompress && !self.extract_messages && self.deaggregate.is_none() && self.lambda.is_none() {
            // Partitioning alone, the common configuration: one output, no list between.
            return vec![self.partition(data.clone(), &[], overflow, arrival_ms)];
        }
        let mut records = vec![data.clone()];
        if self.decompress {
            match cloudwatch::gunzip(data) {
                Ok(plain) => records = vec![plain],
                Err(why) => return vec![fail(DECOMPRESSION_FAILED, "Decompression failed.", &why, data)],
            }
        }
        if self.extract_messages {
            match cloudwatch::extract_messages(&records[0]) {
                Ok(messages) => records = messages,
                Err(why) => return vec![fail(PROCESSING_FAILED, "CloudWatchLogProcessing.ExtractionFailed", &why, data)],
            }
        }
        if let Some(kind) = &self.deaggregate {
            let mut split = Vec::new();
            for record in &records {
                match deaggregate::split(record, kind) {
                    Ok(sub) => split.extend(sub),
                    Err(why) => return vec![fail(PROCESSING_FAILED, "RecordDeAggregation.Failed", &why, data)],
                }
            }
            records = split;
        }
        let mut out = Vec::with_capacity(records.len());
        if let Some(stage) = &self.lambda {
            let Some(outcomes) = outcomes else {
                return records.into_iter().map(|r| (Dest::Lambda, r)).collect();
            };
            for (record, outcome) in records.into_iter().zip(outcomes) {
                out.extend(self.after_lambda(stage, &record, outcome, arrival_ms));
            }
            return out;
        }
        for record in records {
            out.push(self.partition(record, &[], overflow, arrival_ms));
        }
        out
    }

    /// The output of a record the Lambda processor answered for: none when Dropped.
    pub fn after_lambda(&self, stage: &LambdaStage, record: &[u8], outcome: &Outcome, arrival_ms: i64) -> Option<(Dest, Bytes)> {
        match outcome {
            Outcome::Dropped => None,
            Outcome::Failed { code, message, attempts, ending_ms } => {
                let doc = error_document(arrival_ms, code, message, record, Some((&stage.arn, *attempts, *ending_ms)));
                Some((Dest::Error(PROCESSING_FAILED.to_owned()), doc))
            }
            Outcome::Ok { data, keys, overflow } => Some(self.partition(data.clone(), keys, *overflow, arrival_ms)),
        }
    }

    /// Whether data outputs are partitioned (by the query or the Lambda's keys).
    pub fn has_partition_keys(&self) -> bool {
        !self.partition_keys.is_empty()
    }

    /// The data partition of a processed record, or its error document.
    fn partition(&self, record: Bytes, lambda_keys: &[(String, String)], overflow: bool, arrival_ms: i64) -> (Dest, Bytes) {
        if self.partition_keys.is_empty() {
            return (Dest::Data(Vec::new()), record);
        }
        let fail = |kind: &str, code: &str, message: &str| {
            (Dest::Error(kind.to_owned()), error_document(arrival_ms, code, message, &record, None))
        };
        match self.partition_of(&record, lambda_keys) {
            Ok(_) if overflow => fail(
                ACTIVE_PARTITION_EXCEEDED,
                "DynamicPartitioning.ActivePartitionsLimitExceeded",
                &format!("The delivery stream already has {ACTIVE_PARTITIONS_MAX} active partitions"),
            ),
            Ok(partition) => (Dest::Data(partition), record),
            Err(why) => fail(PARTITIONING_FAILED, "DynamicPartitioning.MetadataExtractionFailed", &why),
        }
    }

    /// The partition of a record: the values of the keys the Prefix uses, from the jq
    /// query or the Lambda's `metadata.partitionKeys`.
    pub fn partition_of(&self, record: &[u8], lambda_keys: &[(String, String)]) -> Result<Vec<String>, String> {
        let mut query_keys = match &self.query {
            Some(query) if self.partition_keys.iter().any(|(from_lambda, _)| !from_lambda) => query.extract(record).map_err(|e| e.0)?,
            _ => Vec::new(),
        };
        self.partition_keys
            .iter()
            .map(|(from_lambda, name)| {
                if *from_lambda {
                    return lambda_keys
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| format!("The partition key {name} was not found in the Lambda's partitionKeys"));
                }
                // Taken, not cloned: the Prefix names each key once.
                match query_keys.iter_mut().find(|(k, _)| k == name) {
                    Some((_, Some(value))) => Ok(std::mem::take(value)),
                    Some((_, None)) => Err(format!("The partition key {name} has no value that can name a partition")),
                    None if self.query.is_none() => Err("The delivery stream has no MetadataExtraction query".to_owned()),
                    None => Err(format!("The partition key {name} was not found in the JQ query output")),
                }
            })
            .collect()
    }
}

/// Partitions of one stream that may hold records at once (AWS's default quota).
pub const ACTIVE_PARTITIONS_MAX: usize = 500;

/// AWS's error document for a record that failed processing, with its LF. For a
/// Lambda failure, `lambda` is (its ARN, attempts made, when the last one ended); for the
/// other processors, which run as the record arrives, one attempt ending at the arrival.
pub fn error_document(arrival_ms: i64, code: &str, message: &str, raw: &[u8], lambda: Option<(&str, u32, i64)>) -> Bytes {
    let (attempts, ending_ms) = lambda.map_or((1, arrival_ms), |(_, attempts, ending)| (attempts, ending));
    // Written by hand: AWS's member order, which a JSON map would sort.
    let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut line = format!(
        "{{\"attemptsMade\":{attempts},\"arrivalTimestamp\":{arrival_ms},\"errorCode\":{},\"errorMessage\":{},\"attemptEndingTimestamp\":{ending_ms},\"rawData\":\"{}\"",
        text(code),
        text(message),
        BASE64.encode(raw)
    );
    if let Some((arn, _, _)) = lambda {
        line.push_str(&format!(",\"lambdaARN\":{}", text(arn)));
    }
    line.push('}');
    line.push('\n');
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firehose::api::Processor;

    fn destination(prefix: &str, processors: Vec<(&str, Vec<(&str, &str)>)>) -> S3Destination {
        let processors = processors
            .into_iter()
            .map(|(kind, params)| Processor {
                kind: Some(kind.to_owned()),
                parameters: Some(params.into_iter().map(|(n, v)| serde_json::json!({"ParameterName": n, "ParameterValue": v})).collect()),
            })
            .collect();
        S3Destination {
            prefix: Some(prefix.to_owned()),
            error_output_prefix: Some("errors/!{firehose:error-output-type}/".to_owned()),
            dynamic_partitioning_configuration: Some(serde_json::json!({"Enabled": true})),
            processing_configuration: Some(ProcessingConfiguration { enabled: Some(true), processors: Some(processors) }),
            ..S3Destination::default()
        }
    }

    #[test]
    fn partitions_by_the_keys_the_prefix_names() {
        let dest = destination(
            "vin=!{partitionKeyFromQuery:vin}/!{timestamp:yyyy}/",
            vec![("MetadataExtraction", vec![("MetadataExtractionQuery", "{vin: .vin, other: .x}"), ("JsonParsingEngine", "JQ-1.6")])],
        );
        let pipeline = Pipeline::compile(&dest).unwrap();
        let out = pipeline.route(&Bytes::from_static(br#"{"vin":"A1","x":2}"#), 5, false, None);
        assert_eq!(out, [(Dest::Data(vec!["A1".into()]), Bytes::from_static(br#"{"vin":"A1","x":2}"#))]);
        let out = pipeline.route(&Bytes::from_static(b"nope"), 5, false, None);
        assert_eq!(out[0].0, Dest::Error(PARTITIONING_FAILED.into()));
        let doc: Value = serde_json::from_slice(&out[0].1).unwrap();
        assert_eq!(doc["errorCode"], "DynamicPartitioning.MetadataExtractionFailed");
        assert_eq!(doc["rawData"], BASE64.encode("nope"));
        assert_eq!(doc["arrivalTimestamp"], 5);
        let out = pipeline.route(&Bytes::from_static(br#"{"vin":"A1"}"#), 5, true, None);
        assert_eq!(out[0].0, Dest::Error(ACTIVE_PARTITION_EXCEEDED.into()));
    }

    #[test]
    fn deaggregated_records_are_partitioned_one_by_one() {
        let dest = destination(
            "!{partitionKeyFromQuery:k}/",
            vec![
                ("RecordDeAggregation", vec![("SubRecordType", "JSON")]),
                ("MetadataExtraction", vec![("MetadataExtractionQuery", "{k: .k}"), ("JsonParsingEngine", "JQ-1.6")]),
            ],
        );
        let pipeline = Pipeline::compile(&dest).unwrap();
        let out = pipeline.route(&Bytes::from_static(b"{\"k\":\"a\"}{\"k\":\"b\"}{\"j\":1}"), 1, false, None);
        let dests: Vec<&Dest> = out.iter().map(|(d, _)| d).collect();
        assert_eq!(dests, [&Dest::Data(vec!["a".into()]), &Dest::Data(vec!["b".into()]), &Dest::Error(PARTITIONING_FAILED.into())]);
    }

    #[test]
    fn an_invalid_query_is_refused_at_compile() {
        let dest = destination(
            "!{partitionKeyFromQuery:k}/",
            vec![("MetadataExtraction", vec![("MetadataExtractionQuery", "{k: .k"), ("JsonParsingEngine", "JQ-1.6")])],
        );
        assert!(Pipeline::compile(&dest).unwrap_err().starts_with("Invalid MetadataExtractionQuery"));
    }
}
