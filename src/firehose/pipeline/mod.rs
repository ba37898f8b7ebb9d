//! The processors of a delivery stream, in AWS's order: Decompression ->
//! CloudWatchLogProcessing -> RecordDeAggregation -> (Lambda) -> MetadataExtraction ->
//! AppendDelimiterToRecord (applied when an object is written) -> compression.
//!
//! [`Pipeline::route`] is pure: the same record, arrival time and overflow flag always
//! give the same outputs, which is what lets recovery rebuild a sealed object from the
//! journaled raw records. Each output goes to a [`Dest`]: a data partition, or an
//! error-output type whose bytes are AWS's JSON error document for the record.

pub mod cloudwatch;
pub mod deaggregate;
pub mod jq;

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
}

/// The processors a stream runs, compiled from its configuration.
#[derive(Debug, Default)]
pub struct Pipeline {
    decompress: bool,
    extract_messages: bool,
    deaggregate: Option<SubRecordType>,
    query: Option<Query>,
    /// The names of the partition keys the Prefix uses, in order.
    partition_keys: Vec<String>,
}

fn parameter<'a>(processor: &'a crate::firehose::api::Processor, name: &str) -> Option<&'a str> {
    processor.parameters.iter().flatten().find_map(|p| {
        (p.get("ParameterName").and_then(Value::as_str) == Some(name)).then(|| p.get("ParameterValue").and_then(Value::as_str)).flatten()
    })
}

/// The processor types firelake runs.
pub const SUPPORTED_PROCESSORS: [&str; 5] =
    ["RecordDeAggregation", "Decompression", "CloudWatchLogProcessing", "MetadataExtraction", "AppendDelimiterToRecord"];

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
                if let Part::PartitionKey { name, .. } = part
                    && !pipeline.partition_keys.contains(&name)
                {
                    pipeline.partition_keys.push(name);
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
        !self.decompress && !self.extract_messages && self.deaggregate.is_none() && self.partition_keys.is_empty()
    }

    /// Whether records are partitioned by key.
    pub fn partitioned(&self) -> bool {
        !self.partition_keys.is_empty()
    }

    /// The outputs of one record, in order. Pure.
    pub fn route(&self, data: &Bytes, arrival_ms: i64, overflow: bool) -> Vec<(Dest, Bytes)> {
        let fail = |kind: &str, code: &str, message: &str, raw: &[u8]| {
            (Dest::Error(kind.to_owned()), error_document(arrival_ms, code, message, raw))
        };
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
        for record in records {
            if !self.partitioned() {
                out.push((Dest::Data(Vec::new()), record));
                continue;
            }
            match self.partition_of(&record) {
                Ok(_) if overflow => out.push(fail(
                    ACTIVE_PARTITION_EXCEEDED,
                    "DynamicPartitioning.ActivePartitionsLimitExceeded",
                    &format!("The delivery stream already has {ACTIVE_PARTITIONS_MAX} active partitions"),
                    &record,
                )),
                Ok(partition) => out.push((Dest::Data(partition), record)),
                Err(why) => out.push(fail(PARTITIONING_FAILED, "DynamicPartitioning.MetadataExtractionFailed", &why, &record)),
            }
        }
        out
    }

    /// The partition of a record: the values of the keys the Prefix uses.
    fn partition_of(&self, record: &[u8]) -> Result<Vec<String>, String> {
        let Some(query) = &self.query else {
            return Err("The delivery stream has no MetadataExtraction query".to_owned());
        };
        let keys = query.extract(record).map_err(|e| e.0)?;
        self.partition_keys
            .iter()
            .map(|name| match keys.iter().find(|(k, _)| k == name) {
                Some((_, Some(value))) => Ok(value.clone()),
                Some((_, None)) => Err(format!("The partition key {name} has no value that can name a partition")),
                None => Err(format!("The partition key {name} was not found in the JQ query output")),
            })
            .collect()
    }
}

/// Partitions of one stream that may hold records at once (AWS's default quota).
pub const ACTIVE_PARTITIONS_MAX: usize = 500;

/// AWS's error document for a record that failed processing, with its LF.
/// `attemptEndingTimestamp` is the arrival: firelake's processors run as the record arrives.
pub fn error_document(arrival_ms: i64, code: &str, message: &str, raw: &[u8]) -> Bytes {
    // Written by hand: AWS's member order, which a JSON map would sort.
    let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut line = format!(
        "{{\"attemptsMade\":1,\"arrivalTimestamp\":{arrival_ms},\"errorCode\":{},\"errorMessage\":{},\"attemptEndingTimestamp\":{arrival_ms},\"rawData\":\"{}\"}}",
        text(code),
        text(message),
        BASE64.encode(raw)
    );
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
        let out = pipeline.route(&Bytes::from_static(br#"{"vin":"A1","x":2}"#), 5, false);
        assert_eq!(out, [(Dest::Data(vec!["A1".into()]), Bytes::from_static(br#"{"vin":"A1","x":2}"#))]);
        let out = pipeline.route(&Bytes::from_static(b"nope"), 5, false);
        assert_eq!(out[0].0, Dest::Error(PARTITIONING_FAILED.into()));
        let doc: Value = serde_json::from_slice(&out[0].1).unwrap();
        assert_eq!(doc["errorCode"], "DynamicPartitioning.MetadataExtractionFailed");
        assert_eq!(doc["rawData"], BASE64.encode("nope"));
        assert_eq!(doc["arrivalTimestamp"], 5);
        let out = pipeline.route(&Bytes::from_static(br#"{"vin":"A1"}"#), 5, true);
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
        let out = pipeline.route(&Bytes::from_static(b"{\"k\":\"a\"}{\"k\":\"b\"}{\"j\":1}"), 1, false);
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
