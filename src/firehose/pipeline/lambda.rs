//! The Lambda processor's contract, pure: the event Firehose sends and the validation of
//! what the function answers (AWS's data-transformation record format).

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::Outcome;

/// The largest payload a synchronous invocation takes or gives (AWS Lambda's 6 MB).
pub const PAYLOAD_BYTES_MAX: usize = 6 * 1024 * 1024;

/// One record as the function sees it.
pub struct EventRecord<'a> {
    pub id: String,
    pub arrival_ms: i64,
    pub data: &'a [u8],
}

/// The event of one invocation: written directly (the records' base64 straight into the
/// output, no JSON value tree of megabytes), with the members in the order serde_json's
/// maps give them (sorted).
pub fn event(invocation_id: &str, stream_arn: &str, region: &str, records: &[EventRecord<'_>]) -> Vec<u8> {
    let size: usize = records.iter().map(|r| r.data.len().div_ceil(3) * 4 + r.id.len() + 80).sum();
    let mut out = Vec::with_capacity(size + stream_arn.len() + region.len() + invocation_id.len() + 96);
    let string = |out: &mut Vec<u8>, text: &str| {
        let _ = serde_json::to_writer(&mut *out, text);
    };
    out.extend_from_slice(b"{\"deliveryStreamArn\":");
    string(&mut out, stream_arn);
    out.extend_from_slice(b",\"invocationId\":");
    string(&mut out, invocation_id);
    out.extend_from_slice(b",\"records\":[");
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"approximateArrivalTimestamp\":");
        out.extend_from_slice(record.arrival_ms.to_string().as_bytes());
        out.extend_from_slice(b",\"data\":\"");
        base64_simd::STANDARD.encode_append(record.data, &mut out);
        out.extend_from_slice(b"\",\"recordId\":");
        string(&mut out, &record.id);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"region\":");
    string(&mut out, region);
    out.push(b'}');
    out
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow)]
    records: Vec<ResponseRecord<'a>>,
}

/// One record of the answer; its strings borrowed from the answer where they have no
/// escapes (base64 never has), so megabytes of data are not copied before decoding.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseRecord<'a> {
    #[serde(borrow)]
    record_id: Cow<'a, str>,
    #[serde(borrow)]
    result: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<Cow<'a, str>>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    partition_keys: HashMap<String, Value>,
}

/// A failure of the whole invocation: its error code and message for the error documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailure {
    pub code: &'static str,
    pub message: String,
}

/// Each record's outcome from the function's answer, in the order of `ids`, or why the
/// whole answer is unusable (then the invocation is retried). A record whose id is
/// missing or returned twice fails alone, as on AWS.
pub fn outcomes(ids: &[String], payload: &[u8], attempts: u32, ending_ms: i64) -> Result<Vec<Outcome>, BatchFailure> {
    if payload.len() > PAYLOAD_BYTES_MAX {
        return Err(BatchFailure {
            code: "Lambda.FunctionError",
            message: "The Lambda function's response is larger than 6 MB".to_owned(),
        });
    }
    let response: Response = serde_json::from_slice(payload).map_err(|err| BatchFailure {
        code: "Lambda.JsonProcessingException",
        message: format!("The Lambda function's response could not be parsed: {err}"),
    })?;
    let mut by_id: HashMap<&str, Vec<&ResponseRecord>> = HashMap::new();
    for record in &response.records {
        by_id.entry(record.record_id.as_ref()).or_default().push(record);
    }
    let failed = |code: &str, message: &str| Outcome::Failed { code: code.to_owned(), message: message.to_owned(), attempts, ending_ms };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let outcome = match by_id.get(id.as_str()).map(Vec::as_slice) {
            None | Some([]) => failed("Lambda.MissingRecordId", &format!("Record ID {id} is missing from the Lambda function's response")),
            Some([_, _, ..]) => failed("Lambda.DuplicatedRecordId", &format!("Record ID {id} was returned more than once")),
            Some([record]) => match record.result.as_ref() {
                "Ok" => {
                    let Some(data) = record.data.as_deref() else {
                        return Err(BatchFailure { code: "Lambda.FunctionError", message: format!("Record {id} is Ok but has no data") });
                    };
                    let data = base64_simd::STANDARD.decode_to_vec(data).map_err(|_| BatchFailure {
                        code: "Lambda.FunctionError",
                        message: format!("The data of record {id} is not valid base64"),
                    })?;
                    let keys = record
                        .metadata
                        .iter()
                        .flat_map(|m| m.partition_keys.iter())
                        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
                        .collect();
                    Outcome::Ok { data: Bytes::from(data), keys, overflow: false }
                }
                "Dropped" => Outcome::Dropped,
                "ProcessingFailed" => failed("Lambda.ProcessingFailedStatus", "ProcessingFailed status set for record"),
                other => failed("Lambda.InvalidResult", &format!("Record {id} has result {other:?}, not Ok, Dropped or ProcessingFailed")),
            },
        };
        out.push(outcome);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;

    use super::*;

    #[test]
    fn the_event_is_the_json_of_its_records() {
        let data: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), (0..=255u8).collect(), "caf\u{e9} \"q\"\n".as_bytes().to_vec()];
        let records: Vec<EventRecord<'_>> = data
            .iter()
            .enumerate()
            .map(|(i, d)| EventRecord { id: format!("{i}.0"), arrival_ms: 1_700_000_000_000 + i as i64, data: d })
            .collect();
        let written = event("inv-\"1\"", "arn:aws:firehose:us-east-1:1:deliverystream/s", "us-east-1", &records);
        let expected = serde_json::json!({
            "invocationId": "inv-\"1\"",
            "deliveryStreamArn": "arn:aws:firehose:us-east-1:1:deliverystream/s",
            "region": "us-east-1",
            "records": records.iter().map(|r| serde_json::json!({
                "recordId": r.id, "approximateArrivalTimestamp": r.arrival_ms, "data": BASE64.encode(r.data)})).collect::<Vec<_>>(),
        });
        // Byte for byte what serde_json writes for the same event (its maps sort the members).
        assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(&expected).unwrap());
        assert_eq!(event("i", "a", "r", &[]), br#"{"deliveryStreamArn":"a","invocationId":"i","records":[],"region":"r"}"#);
    }

    #[test]
    fn escaped_strings_in_the_answer_are_read_too() {
        let ids = vec!["a/1".to_owned()];
        let payload = br#"{"records": [{"recordId": "a\/1", "result": "O\u006b", "data": "QQ\u003d\u003d"}]}"#;
        let out = outcomes(&ids, payload, 1, 0).unwrap();
        assert_eq!(out, vec![Outcome::Ok { data: Bytes::from_static(b"A"), keys: Vec::new(), overflow: false }]);
    }

    #[test]
    fn results_map_to_outcomes() {
        let ids: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
        let payload = serde_json::json!({"records": [
            {"recordId": "a", "result": "Ok", "data": BASE64.encode("A!"), "metadata": {"partitionKeys": {"k": "v", "n": 1}}},
            {"recordId": "b", "result": "Dropped"},
            {"recordId": "c", "result": "ProcessingFailed"},
            {"recordId": "d", "result": "Dropped"},
            {"recordId": "d", "result": "Dropped"},
        ]});
        let out = outcomes(&ids, payload.to_string().as_bytes(), 1, 9).unwrap();
        let Outcome::Ok { data, mut keys, .. } = out[0].clone() else { panic!("{:?}", out[0]) };
        keys.sort();
        assert_eq!((data, keys), (Bytes::from_static(b"A!"), vec![("k".to_owned(), "v".to_owned()), ("n".to_owned(), "1".to_owned())]));
        assert_eq!(out[1], Outcome::Dropped);
        let codes: Vec<&str> = out[2..].iter().map(|o| if let Outcome::Failed { code, .. } = o { code.as_str() } else { "" }).collect();
        assert_eq!(codes, ["Lambda.ProcessingFailedStatus", "Lambda.DuplicatedRecordId", "Lambda.MissingRecordId"]);
    }

    #[test]
    fn an_unusable_answer_fails_the_batch() {
        let ids = vec!["a".to_owned()];
        assert_eq!(outcomes(&ids, b"not json", 1, 0).unwrap_err().code, "Lambda.JsonProcessingException");
        let bad = serde_json::json!({"records": [{"recordId": "a", "result": "Ok", "data": "%%%"}]});
        assert_eq!(outcomes(&ids, bad.to_string().as_bytes(), 1, 0).unwrap_err().code, "Lambda.FunctionError");
    }
}
