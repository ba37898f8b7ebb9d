//! A crate that archives vehicle positions through a Firehose delivery stream.

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;

/// Sends each line, newline added, as one record of one PutRecordBatch.
pub async fn archive(firehose: &aws_sdk_firehose::Client, stream: &str, lines: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let records = lines.iter().map(|line| Record::builder().data(Blob::new(format!("{line}\n"))).build()).collect::<Result<Vec<_>, _>>()?;
    let sent = firehose.put_record_batch().delivery_stream_name(stream).set_records(Some(records)).send().await?;
    match sent.failed_put_count() {
        0 => Ok(()),
        failed => Err(format!("{failed} of {} records refused", lines.len()).into()),
    }
}
