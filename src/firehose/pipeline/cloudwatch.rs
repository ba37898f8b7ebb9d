//! Decompression (GZIP) and CloudWatchLogProcessing (DataMessageExtraction): what a
//! CloudWatch Logs subscription delivers is a gzipped JSON envelope of log events.

use std::io::Read;

use bytes::Bytes;
use serde::Deserialize;

/// The most bytes one record may decompress to: a gzip bomb stops here.
pub const DECOMPRESSED_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Gunzips a record (every member, as `gzip -d` does).
pub fn gunzip(data: &[u8]) -> Result<Bytes, String> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(data).take(DECOMPRESSED_BYTES_MAX + 1);
    decoder.read_to_end(&mut out).map_err(|_| "Decompression failed.".to_owned())?;
    if out.len() as u64 > DECOMPRESSED_BYTES_MAX {
        return Err(format!("Decompression failed: the record decompresses to more than {DECOMPRESSED_BYTES_MAX} bytes"));
    }
    Ok(Bytes::from(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    message_type: String,
    #[serde(default)]
    log_events: Vec<LogEvent>,
}

#[derive(Deserialize)]
struct LogEvent {
    message: String,
}

/// The log messages of a DATA_MESSAGE, each followed by LF; a CONTROL_MESSAGE (the
/// subscription's own check) holds none.
pub fn extract_messages(data: &[u8]) -> Result<Vec<Bytes>, String> {
    let envelope: Envelope =
        serde_json::from_slice(data).map_err(|_| "The record is not a CloudWatch Logs subscription message".to_owned())?;
    if envelope.message_type == "CONTROL_MESSAGE" {
        return Ok(Vec::new());
    }
    Ok(envelope
        .log_events
        .into_iter()
        .map(|event| {
            let mut line = event.message.into_bytes();
            line.push(b'\n');
            Bytes::from(line)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_subscription_payload_gives_its_messages() {
        let payload = br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":1,"message":"one"},{"id":"2","timestamp":2,"message":"two"}]}"#;
        let data = gunzip(&gzip(payload)).unwrap();
        let messages = extract_messages(&data).unwrap();
        assert_eq!(messages, [Bytes::from_static(b"one\n"), Bytes::from_static(b"two\n")]);
        assert!(
            extract_messages(br#"{"messageType":"CONTROL_MESSAGE","logEvents":[{"message":"CWL CONTROL MESSAGE"}]}"#).unwrap().is_empty()
        );
    }

    #[test]
    fn bad_input_is_an_error_and_a_bomb_is_stopped() {
        assert!(gunzip(b"plain text").is_err());
        assert!(extract_messages(b"{}").is_err());
        let bomb = gzip(&vec![0u8; DECOMPRESSED_BYTES_MAX as usize + 1]);
        assert!(gunzip(&bomb).is_err());
    }
}
