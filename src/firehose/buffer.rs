//! A delivery stream's buffer: records in arrival order, flushed by size or by the age
//! of the oldest record. Pure: no IO, no clock; `now` is passed in.

use std::collections::VecDeque;

use bytes::Bytes;

/// One accepted record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the stream's journal.
    pub seq: u64,
    /// When Firehose accepted it, in milliseconds since the epoch.
    pub arrival_ms: i64,
    pub data: Bytes,
}

/// BufferingHints in the units the buffer counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub size_bytes: u64,
    pub interval_ms: i64,
}

#[derive(Debug, Default)]
pub struct Buffer {
    records: VecDeque<Record>,
    bytes: u64,
}

impl Buffer {
    pub fn push(&mut self, record: Record) {
        self.bytes += record.data.len() as u64;
        self.records.push_back(record);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes buffered, before compression.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn oldest_arrival_ms(&self) -> Option<i64> {
        self.records.front().map(|r| r.arrival_ms)
    }

    /// When the interval runs out for the oldest record.
    pub fn deadline_ms(&self, hints: Hints) -> Option<i64> {
        self.oldest_arrival_ms().map(|oldest| oldest.saturating_add(hints.interval_ms))
    }

    /// Whether a flush is due: the size reached, or the interval passed since the oldest record.
    pub fn due(&self, now_ms: i64, hints: Hints) -> bool {
        !self.is_empty() && (self.bytes >= hints.size_bytes || self.deadline_ms(hints).is_some_and(|d| now_ms >= d))
    }

    /// Takes the records of one object: from the oldest, until they reach `size_bytes`
    /// (at least one record; records are never split).
    pub fn take(&mut self, size_bytes: u64) -> Vec<Record> {
        let mut taken = Vec::new();
        let mut bytes = 0u64;
        while let Some(record) = self.records.front() {
            if !taken.is_empty() && bytes >= size_bytes {
                break;
            }
            bytes += record.data.len() as u64;
            taken.push(self.records.pop_front().expect("front exists"));
        }
        self.bytes -= bytes;
        taken
    }

    /// Puts records taken by [`Buffer::take`] back at the front, when their batch could
    /// not be sealed.
    pub fn restore(&mut self, records: Vec<Record>) {
        for record in records.into_iter().rev() {
            self.bytes += record.data.len() as u64;
            self.records.push_front(record);
        }
    }

    /// Empties the buffer (DeleteDeliveryStream discards, as AWS does).
    pub fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINTS: Hints = Hints { size_bytes: 10, interval_ms: 60_000 };

    fn record(seq: u64, arrival_ms: i64, len: usize) -> Record {
        Record { seq, arrival_ms, data: Bytes::from(vec![b'x'; len]) }
    }

    #[test]
    fn empty_is_never_due() {
        assert!(!Buffer::default().due(i64::MAX, HINTS));
    }

    #[test]
    fn size_triggers_at_the_hint() {
        let mut b = Buffer::default();
        b.push(record(1, 0, 4));
        b.push(record(2, 0, 5));
        assert!(!b.due(1, HINTS));
        b.push(record(3, 0, 1));
        assert!(b.due(1, HINTS));
    }

    #[test]
    fn interval_counts_from_the_oldest_record() {
        let mut b = Buffer::default();
        b.push(record(1, 1_000, 1));
        b.push(record(2, 50_000, 1));
        assert_eq!(b.deadline_ms(HINTS), Some(61_000));
        assert!(!b.due(60_999, HINTS));
        assert!(b.due(61_000, HINTS));
    }

    #[test]
    fn zero_interval_is_due_at_once() {
        let mut b = Buffer::default();
        b.push(record(1, 5, 1));
        assert!(b.due(5, Hints { size_bytes: 10, interval_ms: 0 }));
    }

    #[test]
    fn take_stops_at_the_size_and_keeps_the_rest() {
        let mut b = Buffer::default();
        for seq in 1..=5 {
            b.push(record(seq, seq as i64, 4));
        }
        let taken = b.take(10);
        assert_eq!(taken.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(b.bytes(), 8);
        assert_eq!(b.oldest_arrival_ms(), Some(4));
        let big = b.take(1);
        assert_eq!(big.len(), 1);
        b.restore(big);
        assert_eq!((b.len(), b.bytes(), b.oldest_arrival_ms()), (2, 8, Some(4)));
    }
}
