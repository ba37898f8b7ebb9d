//! RecordDeAggregation: one record into its sub-records. KPL-aggregated records (magic,
//! protobuf, MD5) are unpacked first; then each piece is split as `SubRecordType` says,
//! JSON (consecutive JSON values) or DELIMITED (on the base64-given delimiter).

use bytes::Bytes;
use md5::{Digest, Md5};

/// The most sub-records one record may hold (AWS: "more than 500 is not supported").
pub const SUB_RECORDS_MAX: usize = 500;

const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// How a record splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubRecordType {
    Json,
    Delimited(Vec<u8>),
}

/// Splits `data`; the error says why it cannot be split.
pub fn split(data: &Bytes, kind: &SubRecordType) -> Result<Vec<Bytes>, String> {
    let pieces = match kpl_user_records(data) {
        Some(records) => records?,
        None => vec![data.clone()],
    };
    let mut out = Vec::new();
    for piece in pieces {
        match kind {
            SubRecordType::Json => split_json(&piece, &mut out)?,
            SubRecordType::Delimited(delimiter) => split_delimited(&piece, delimiter, &mut out),
        }
        if out.len() > SUB_RECORDS_MAX {
            return Err(format!("The record holds more than {SUB_RECORDS_MAX} sub-records"));
        }
    }
    Ok(out)
}

/// Consecutive JSON values, each kept as the bytes it was written with (whitespace
/// between values dropped).
fn split_json(data: &Bytes, out: &mut Vec<Bytes>) -> Result<(), String> {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    loop {
        while data.get(start).is_some_and(u8::is_ascii_whitespace) {
            start += 1;
        }
        match values.next() {
            None => return Ok(()),
            Some(Err(_)) => return Err("The record is not a sequence of JSON objects".to_owned()),
            Some(Ok(_)) => {
                let end = values.byte_offset();
                out.push(data.slice(start..end));
                start = end;
            }
        }
    }
}

fn split_delimited(data: &Bytes, delimiter: &[u8], out: &mut Vec<Bytes>) {
    if delimiter.is_empty() {
        out.push(data.clone());
        return;
    }
    let mut start = 0;
    let mut at = 0;
    while at + delimiter.len() <= data.len() {
        if &data[at..at + delimiter.len()] == delimiter {
            if at > start {
                out.push(data.slice(start..at));
            }
            at += delimiter.len();
            start = at;
        } else {
            at += 1;
        }
    }
    if start < data.len() {
        out.push(data.slice(start..));
    }
}

/// The user records of a KPL-aggregated record: `None` when `data` is not one (no magic,
/// or an MD5 that does not match: then it is an ordinary record, as the KPL's own
/// de-aggregators treat it); an error when its protobuf is broken.
fn kpl_user_records(data: &Bytes) -> Option<Result<Vec<Bytes>, String>> {
    if data.len() < KPL_MAGIC.len() + 16 || data[..4] != KPL_MAGIC {
        return None;
    }
    let body = &data[4..data.len() - 16];
    if Md5::digest(body).as_slice() != &data[data.len() - 16..] {
        return None;
    }
    let start = 4;
    Some(parse_aggregated(data, start, data.len() - 16))
}

/// `AggregatedRecord { repeated string partition_key_table = 1; repeated string
/// explicit_hash_key_table = 2; repeated Record records = 3; }`, where `Record { uint64
/// partition_key_index = 1; uint64 explicit_hash_key_index = 2; bytes data = 3; ... }`.
fn parse_aggregated(data: &Bytes, start: usize, end: usize) -> Result<Vec<Bytes>, String> {
    let broken = || "The KPL aggregated record is malformed".to_owned();
    let mut records = Vec::new();
    let mut at = start;
    while at < end {
        let (key, next) = varint(&data[..end], at).ok_or_else(broken)?;
        at = next;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => at = varint(&data[..end], at).ok_or_else(broken)?.1,
            1 => at += 8,
            5 => at += 4,
            2 => {
                let (len, next) = varint(&data[..end], at).ok_or_else(broken)?;
                let body_end = next.checked_add(len as usize).filter(|e| *e <= end).ok_or_else(broken)?;
                if field == 3 {
                    records.push(record_data(data, next, body_end).ok_or_else(broken)?);
                }
                at = body_end;
            }
            _ => return Err(broken()),
        }
        if at > end {
            return Err(broken());
        }
        if records.len() > SUB_RECORDS_MAX {
            return Err(format!("The record holds more than {SUB_RECORDS_MAX} sub-records"));
        }
    }
    Ok(records)
}

/// The `data` field of one `Record`.
fn record_data(data: &Bytes, start: usize, end: usize) -> Option<Bytes> {
    let mut at = start;
    let mut found = None;
    while at < end {
        let (key, next) = varint(&data[..end], at)?;
        at = next;
        match key & 7 {
            0 => at = varint(&data[..end], at)?.1,
            1 => at += 8,
            5 => at += 4,
            2 => {
                let (len, next) = varint(&data[..end], at)?;
                let field_end = next.checked_add(len as usize).filter(|e| *e <= end)?;
                if key >> 3 == 3 {
                    found = Some(data.slice(next..field_end));
                }
                at = field_end;
            }
            _ => return None,
        }
    }
    (at == end).then_some(found.unwrap_or_default())
}

fn varint(data: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(at)?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(records: &[Bytes]) -> Vec<&str> {
        records.iter().map(|r| std::str::from_utf8(r).unwrap()).collect()
    }

    #[test]
    fn json_values_split_whether_or_not_separated() {
        let data = Bytes::from_static(b"{\"a\":1}{\"a\":2}\n {\"a\": [3]}\n");
        assert_eq!(strings(&split(&data, &SubRecordType::Json).unwrap()), ["{\"a\":1}", "{\"a\":2}", "{\"a\": [3]}"]);
        assert!(split(&Bytes::from_static(b"{\"a\":1}{oops"), &SubRecordType::Json).is_err());
    }

    #[test]
    fn delimited_splits_on_the_delimiter() {
        let kind = SubRecordType::Delimited(b"####".to_vec());
        let data = Bytes::from_static(b"a####b########c####");
        assert_eq!(strings(&split(&data, &kind).unwrap()), ["a", "b", "c"]);
    }

    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push(number << 3 | 2);
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }

    #[test]
    fn kpl_records_are_unpacked_then_split() {
        let mut body = Vec::new();
        field(&mut body, 1, b"pk");
        for data in [&b"{\"n\":1}"[..], b"{\"n\":2}{\"n\":3}"] {
            let mut record = vec![0x08, 0x00];
            field(&mut record, 3, data);
            field(&mut body, 3, &record);
        }
        let mut aggregated = KPL_MAGIC.to_vec();
        aggregated.extend_from_slice(&body);
        aggregated.extend_from_slice(&Md5::digest(&body));
        let records = split(&Bytes::from(aggregated.clone()), &SubRecordType::Json).unwrap();
        assert_eq!(strings(&records), ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
        // A wrong MD5 makes it an ordinary record (and here, not JSON).
        let last = aggregated.len() - 1;
        aggregated[last] ^= 1;
        assert!(split(&Bytes::from(aggregated), &SubRecordType::Json).is_err());
    }

    #[test]
    fn too_many_sub_records_is_an_error() {
        let data = Bytes::from("{}".repeat(SUB_RECORDS_MAX + 1));
        assert!(split(&data, &SubRecordType::Json).is_err());
        assert_eq!(split(&Bytes::from("{}".repeat(SUB_RECORDS_MAX)), &SubRecordType::Json).unwrap().len(), SUB_RECORDS_MAX);
    }
}
