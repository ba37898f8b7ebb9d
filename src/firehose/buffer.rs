//! A buffer of one partition of a delivery stream: records in arrival order, flushed by
//! size or by the age of the oldest record. Pure: no IO, no clock; `now` is passed in.
//!
//! Records are kept in runs (the records of one put that go to this buffer, one arrival
//! time), so that sealing an object of a million small records moves a few thousand runs
//! under the stream's lock, not a million records. Each record carries the seq of the put
//! record it came from: several records (de-aggregated sub-records) may share one seq, and
//! a take never separates them, so that an object holds all of a seq's records for its
//! partition, which is what lets recovery rebuild it from the seqs its seal names.

use std::collections::VecDeque;

use bytes::Bytes;

/// Records that arrived at the same time, in seq order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// When Firehose accepted them, in milliseconds since the epoch.
    pub arrival_ms: i64,
    /// The seq of each record: its put record's position in the stream's journal.
    seqs: Vec<u64>,
    pub records: Vec<Bytes>,
    bytes: u64,
}

impl Run {
    fn first_seq(&self) -> u64 {
        self.seqs[0]
    }

    fn last_seq(&self) -> u64 {
        self.seqs[self.seqs.len() - 1]
    }

    /// Splits off the records after the first `n`.
    fn split_off(&mut self, n: usize) -> Run {
        let rest = self.records.split_off(n);
        let rest_seqs = self.seqs.split_off(n);
        let rest_bytes: u64 = rest.iter().map(|r| r.len() as u64).sum();
        self.bytes -= rest_bytes;
        Run { arrival_ms: self.arrival_ms, seqs: rest_seqs, records: rest, bytes: rest_bytes }
    }
}

/// Records in seq order, as runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Records {
    runs: VecDeque<Run>,
    bytes: u64,
    len: usize,
}

impl Records {
    /// Appends a record (seqs never go down); it joins the last run when it arrived with it.
    pub fn push(&mut self, seq: u64, arrival_ms: i64, data: Bytes) {
        self.bytes += data.len() as u64;
        self.len += 1;
        if let Some(last) = self.runs.back_mut()
            && last.arrival_ms == arrival_ms
            && last.last_seq() <= seq
        {
            last.bytes += data.len() as u64;
            last.seqs.push(seq);
            last.records.push(data);
            return;
        }
        self.runs.push_back(Run { arrival_ms, seqs: vec![seq], bytes: data.len() as u64, records: vec![data] });
    }

    fn push_run(&mut self, run: Run) {
        self.bytes += run.bytes;
        self.len += run.records.len();
        self.runs.push_back(run);
    }

    fn push_front_run(&mut self, run: Run) {
        self.bytes += run.bytes;
        self.len += run.records.len();
        self.runs.push_front(run);
    }

    fn pop_front_run(&mut self) -> Option<Run> {
        let run = self.runs.pop_front()?;
        self.bytes -= run.bytes;
        self.len -= run.records.len();
        Some(run)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held, before compression.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn first_seq(&self) -> Option<u64> {
        self.runs.front().map(Run::first_seq)
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.runs.back().map(Run::last_seq)
    }

    pub fn oldest_arrival_ms(&self) -> Option<i64> {
        self.runs.front().map(|r| r.arrival_ms)
    }

    /// Every record's data, in seq order.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.runs.iter().flat_map(|r| r.records.iter())
    }

    /// Every record with its seq and arrival time, in seq order.
    pub fn entries(&self) -> impl Iterator<Item = (u64, i64, &Bytes)> {
        self.runs.iter().flat_map(|r| r.seqs.iter().zip(&r.records).map(move |(seq, data)| (*seq, r.arrival_ms, data)))
    }

    /// The seqs the records came from, as inclusive ranges in order.
    pub fn seq_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for &seq in self.runs.iter().flat_map(|r| r.seqs.iter()) {
            match ranges.last_mut() {
                Some((_, last)) if *last == seq || *last + 1 == seq => *last = seq,
                _ => ranges.push((seq, seq)),
            }
        }
        ranges
    }
}

/// BufferingHints in the units the buffer counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub size_bytes: u64,
    pub interval_ms: i64,
}

#[derive(Debug, Default)]
pub struct Buffer {
    records: Records,
    /// A flush asked for everything buffered (or a due take failed): the buffer stays due
    /// until it is taken, so a retry does not wait for the interval again.
    pub forced: bool,
}

impl Buffer {
    pub fn push(&mut self, seq: u64, arrival_ms: i64, data: Bytes) {
        self.records.push(seq, arrival_ms, data);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes buffered, before compression.
    pub fn bytes(&self) -> u64 {
        self.records.bytes()
    }

    pub fn oldest_arrival_ms(&self) -> Option<i64> {
        self.records.oldest_arrival_ms()
    }

    /// When the interval runs out for the oldest record.
    pub fn deadline_ms(&self, hints: Hints) -> Option<i64> {
        self.oldest_arrival_ms().map(|oldest| oldest.saturating_add(hints.interval_ms))
    }

    /// Whether a flush is due: the size reached, or the interval passed since the oldest record.
    pub fn due(&self, now_ms: i64, hints: Hints) -> bool {
        !self.is_empty() && (self.forced || self.bytes() >= hints.size_bytes || self.deadline_ms(hints).is_some_and(|d| now_ms >= d))
    }

    /// The lowest seq of any record buffered.
    pub fn first_seq(&self) -> Option<u64> {
        self.records.first_seq()
    }

    /// Takes the records of one object: from the oldest, until they reach `size_bytes`
    /// (at least one record; records are never split). Whole runs are moved; at most one
    /// is cut in two.
    pub fn take(&mut self, size_bytes: u64) -> Records {
        self.forced = false;
        let mut taken = Records::default();
        while let Some(mut run) = self.records.pop_front_run() {
            if taken.bytes + run.bytes >= size_bytes {
                // The record that reaches the size is the last one taken.
                let mut bytes = taken.bytes;
                let mut n = 0;
                while bytes < size_bytes || (n == 0 && taken.is_empty()) {
                    bytes += run.records[n].len() as u64;
                    n += 1;
                }
                // The records of one seq stay together.
                while n < run.records.len() && run.seqs[n] == run.seqs[n - 1] {
                    n += 1;
                }
                if n < run.records.len() {
                    self.records.push_front_run(run.split_off(n));
                }
                taken.push_run(run);
                break;
            }
            taken.push_run(run);
        }
        taken
    }

    /// Puts records taken by [`Buffer::take`] back at the front, when their batch could
    /// not be sealed.
    pub fn restore(&mut self, taken: Records) {
        for run in taken.runs.into_iter().rev() {
            self.records.push_front_run(run);
        }
    }

    /// Empties the buffer (DeleteDeliveryStream discards, as AWS does).
    pub fn clear(&mut self) {
        self.records = Records::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINTS: Hints = Hints { size_bytes: 10, interval_ms: 60_000 };

    fn push(b: &mut Buffer, seq: u64, arrival_ms: i64, len: usize) {
        b.push(seq, arrival_ms, Bytes::from(vec![b'x'; len]));
    }

    fn seqs(records: &Records) -> Vec<u64> {
        records.runs.iter().flat_map(|r| r.seqs.iter().copied()).collect()
    }

    #[test]
    fn empty_is_never_due() {
        assert!(!Buffer::default().due(i64::MAX, HINTS));
    }

    #[test]
    fn size_triggers_at_the_hint() {
        let mut b = Buffer::default();
        push(&mut b, 1, 0, 4);
        push(&mut b, 2, 0, 5);
        assert!(!b.due(1, HINTS));
        push(&mut b, 3, 0, 1);
        assert!(b.due(1, HINTS));
    }

    #[test]
    fn interval_counts_from_the_oldest_record() {
        let mut b = Buffer::default();
        push(&mut b, 1, 1_000, 1);
        push(&mut b, 2, 50_000, 1);
        assert_eq!(b.deadline_ms(HINTS), Some(61_000));
        assert!(!b.due(60_999, HINTS));
        assert!(b.due(61_000, HINTS));
    }

    #[test]
    fn zero_interval_is_due_at_once() {
        let mut b = Buffer::default();
        push(&mut b, 1, 5, 1);
        assert!(b.due(5, Hints { size_bytes: 10, interval_ms: 0 }));
    }

    #[test]
    fn take_stops_at_the_size_and_keeps_the_rest() {
        let mut b = Buffer::default();
        for seq in 1..=5 {
            push(&mut b, seq, seq as i64, 4);
        }
        let taken = b.take(10);
        assert_eq!(seqs(&taken), [1, 2, 3]);
        assert_eq!(b.bytes(), 8);
        assert_eq!(b.oldest_arrival_ms(), Some(4));
        let big = b.take(1);
        assert_eq!(big.len(), 1);
        b.restore(big);
        assert_eq!((b.len(), b.bytes(), b.oldest_arrival_ms()), (2, 8, Some(4)));
    }

    #[test]
    fn records_of_one_put_form_one_run_and_a_take_cuts_it_at_the_size() {
        let mut b = Buffer::default();
        for seq in 1..=6 {
            push(&mut b, seq, 7, 3);
        }
        push(&mut b, 7, 8, 3);
        assert_eq!(b.records.runs.len(), 2);
        let taken = b.take(8);
        assert_eq!((seqs(&taken), taken.bytes(), taken.oldest_arrival_ms()), (vec![1, 2, 3], 9, Some(7)));
        assert_eq!((seqs(&b.records), b.len(), b.bytes()), (vec![4, 5, 6, 7], 4, 12));
        b.restore(taken);
        assert_eq!((seqs(&b.records), b.len(), b.bytes()), (vec![1, 2, 3, 4, 5, 6, 7], 7, 21));
        // A gap in seqs (a throttled record, another partition's) stays in the run.
        push(&mut b, 9, 8, 1);
        assert_eq!(b.records.runs.len(), 3);
        assert_eq!(b.records.seq_ranges(), [(1, 7), (9, 9)]);
        let all = b.take(u64::MAX);
        assert_eq!((all.len(), all.bytes(), all.first_seq(), all.last_seq()), (8, 22, Some(1), Some(9)));
        assert!(b.is_empty());
    }

    #[test]
    fn records_of_one_seq_are_never_separated() {
        let mut b = Buffer::default();
        for seq in [1, 1, 1, 2, 2] {
            push(&mut b, seq, 0, 4);
        }
        let taken = b.take(4);
        assert_eq!(seqs(&taken), [1, 1, 1]);
        assert_eq!(taken.seq_ranges(), [(1, 1)]);
        assert_eq!(seqs(&b.records), [2, 2]);
    }

    #[test]
    fn a_forced_buffer_is_due_until_taken() {
        let mut b = Buffer::default();
        push(&mut b, 1, 0, 1);
        b.forced = true;
        assert!(b.due(0, HINTS));
        b.take(u64::MAX);
        push(&mut b, 2, 0, 1);
        assert!(!b.due(0, HINTS));
    }

    #[test]
    fn a_record_larger_than_the_size_is_taken_alone() {
        let mut b = Buffer::default();
        push(&mut b, 1, 0, 50);
        push(&mut b, 2, 0, 1);
        assert_eq!(seqs(&b.take(10)), [1]);
        assert_eq!(seqs(&b.take(0)), [2]);
    }
}
