//! Writes audit records on a thread of their own.
//!
//! In enforce mode a call's record is complete once the response is sent.
//! When the proxy's worker threads wrote it, each call paid a system call
//! (one line of a file or one journald datagram), and the workers waited
//! for each other on the sink's lock. [`BackgroundSink`] hands the record
//! to a writer thread instead, through a bounded queue. The writer takes
//! every record queued and writes them together
//! ([`AuditSink::write_batch`]). When records come often it first waits a
//! few milliseconds for more, so under load a file gets one `write` for
//! many records, and a caller wakes the writer once per batch instead of
//! once per record.
//!
//! A sink that writes bytes (journald, JSON lines) has an
//! [`Encoder`](super::Encoder). The caller then encodes each record
//! itself and queues only the entry. A call's record owns about a dozen
//! allocations. Memory freed on another thread returns to its owner
//! through mimalloc's cross-thread free lists, and its cache lines move
//! between cores each time.
//!
//! Records keep their order, and none is dropped: when the queue is full,
//! the caller waits for room. While the writer keeps up, a record reaches
//! its sink at most about [`BATCH_WAIT`] after the call. A writer behind
//! its queue writes full batches without waiting. Dropping the last handle
//! writes what is queued before it returns.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ratelimit::FailureReportThrottle;
use super::sink::EncoderPanics;
use super::{AuditRecord, AuditSink, Encoder};

/// Maximum records queued for the writer. Past this the caller waits, so a
/// stalled sink bounds memory and slows calls down instead of losing records.
/// The queue contains boxes or entries: its slots are allocated up front,
/// and records in place would keep several MiB resident in an idle daemon.
const QUEUE_RECORDS: usize = 4096;

/// Maximum records the writer hands to its sink at once.
const MAX_BATCH_RECORDS: usize = 256;

/// How long the writer waits, after the first record of a batch arrives,
/// for more to join it when records come often. Without the wait, a writer
/// that keeps up wakes and writes once per record, and each of those
/// wakeups costs the caller a `futex` call and the machine a context
/// switch. At 1,000 calls per second four milliseconds gather about four
/// records per write, at 25,000 about a hundred.
const BATCH_WAIT: Duration = Duration::from_millis(4);

/// A record that comes less than this after the last write counts as part
/// of a steady flow, which the writer waits [`BATCH_WAIT`] to batch. A
/// record after a longer pause is written at once, so an occasional call
/// is not held back.
const BUSY_GAP: Duration = Duration::from_millis(10);

/// A handle on the writer thread; cloning it gives another handle on the
/// same thread and queue.
#[derive(Clone)]
pub struct BackgroundSink {
    // Declared before `_writer`, so that the last handle closes the queue
    // before it waits for the thread.
    queue: SyncSender<Queued>,
    /// The sink's encoder; every record is then queued encoded.
    encoder: Option<Arc<dyn Encoder>>,
    _writer: Arc<Writer>,
    /// Bounds the reports of records lost to a writer thread that is gone.
    lost: FailureReportThrottle,
    /// Reports the records lost to an encoder that panicked.
    encoder_panics: EncoderPanics,
}

/// A record in the queue: encoded by the caller when the sink has an
/// encoder, whole otherwise. One sink's records all take the same form.
enum Queued {
    Record(Box<AuditRecord>),
    Encoded(Vec<u8>),
}

/// Joins the writer thread when the last handle drops.
struct Writer {
    thread: Mutex<Option<JoinHandle<()>>>,
}

// === impl BackgroundSink ===

impl BackgroundSink {
    /// Starts the writer thread, which writes to `sink`.
    pub fn start(sink: Box<dyn AuditSink>) -> std::io::Result<Self> {
        let (queue, records) = mpsc::sync_channel(QUEUE_RECORDS);
        let encoder = sink.encoder();
        let thread = std::thread::Builder::new().name("odoogate-audit".to_owned()).spawn(move || write_until_closed(sink, &records, std::thread::sleep))?;
        Ok(Self {
            queue,
            encoder,
            _writer: Arc::new(Writer { thread: Mutex::new(Some(thread)) }),
            lost: FailureReportThrottle::default(),
            encoder_panics: EncoderPanics::default(),
        })
    }

    fn send(&mut self, queued: Queued) {
        // The writer survives a panicking sink (see `write_until_closed`), so
        // the queue closes only when the last handle drops, and this handle
        // is alive.
        if self.queue.send(queued).is_err()
            && let Some(lost) = self.lost.failure(Instant::now())
        {
            tracing::error!(lost_records = lost, "The audit writer thread is gone; audit records were not written");
        }
    }
}

impl AuditSink for BackgroundSink {
    /// Encodes `record` on this thread when the sink has an encoder. A
    /// record whose encoder panicked is lost, and [`EncoderPanics`] reports
    /// it.
    fn write(&mut self, record: &AuditRecord) {
        match self.encoder.as_deref() {
            Some(encoder) => {
                if let Some(entry) = self.encoder_panics.encode(encoder, record) {
                    self.send(Queued::Encoded(entry));
                }
            }
            None => self.write_owned(record.clone()),
        }
    }

    /// Encodes `record` here and frees it on this thread when the sink has
    /// an encoder.
    fn write_owned(&mut self, record: AuditRecord) {
        match self.encoder {
            Some(_) => self.write(&record),
            None => self.send(Queued::Record(Box::new(record))),
        }
    }

    /// Returns the sink's encoder, so that a caller may encode its records
    /// before it takes a lock of its own ([`AuditSink::write_entry`]).
    fn encoder(&self) -> Option<Arc<dyn Encoder>> {
        self.encoder.clone()
    }

    fn write_encoded(&mut self, entries: &[Vec<u8>]) {
        for entry in entries {
            self.send(Queued::Encoded(entry.clone()));
        }
    }

    fn write_entry(&mut self, entry: Vec<u8>) {
        self.send(Queued::Encoded(entry));
    }
}

// === impl Writer ===

impl Drop for Writer {
    fn drop(&mut self) {
        let thread = self.thread.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("The audit writer thread panicked");
        }
    }
}

/// Writes batches of queued records until every handle has dropped and the
/// queue is empty. `wait` sleeps while a batch gathers more records (tests
/// count the waits instead).
fn write_until_closed(mut sink: Box<dyn AuditSink>, records: &Receiver<Queued>, mut wait: impl FnMut(Duration)) {
    let mut batch = Batch::default();
    let mut last_written = Instant::now();
    // `recv` waits while the queue is empty and fails once it is empty and
    // closed.
    while let Ok(first) = records.recv() {
        batch.push(first);
        take_queued(records, &mut batch);
        // A full batch has no room for what the wait would gather, and a
        // writer behind its queue must not wait at all.
        if batch.len() < MAX_BATCH_RECORDS && last_written.elapsed() < BUSY_GAP {
            wait(BATCH_WAIT);
            take_queued(records, &mut batch);
        }
        // Sinks count and report their own write errors. A panic in a sink
        // loses this batch, which is logged, and the writer goes on.
        if catch_unwind(AssertUnwindSafe(|| batch.write_to(sink.as_mut()))).is_err() {
            tracing::error!(records = batch.len(), "The audit sink panicked; these audit records may be lost");
        }
        batch.clear();
        last_written = Instant::now();
        crate::memory::release_freed_memory();
    }
}

/// Records taken from the queue, in the form they were queued in.
#[derive(Default)]
struct Batch {
    records: Vec<AuditRecord>,
    entries: Vec<Vec<u8>>,
}

impl Batch {
    fn push(&mut self, queued: Queued) {
        match queued {
            Queued::Record(record) => self.records.push(*record),
            Queued::Encoded(entry) => self.entries.push(entry),
        }
    }

    fn len(&self) -> usize {
        self.records.len() + self.entries.len()
    }

    /// Writes the batch. Only one of the two lists is filled, because one
    /// sink's records are all queued in the same form, so the order holds.
    fn write_to(&self, sink: &mut dyn AuditSink) {
        if !self.records.is_empty() {
            sink.write_batch(&self.records);
        }
        if !self.entries.is_empty() {
            sink.write_encoded(&self.entries);
        }
    }

    fn clear(&mut self) {
        self.records.clear();
        self.entries.clear();
    }
}

/// Moves queued records to `batch` until it contains [`MAX_BATCH_RECORDS`]
/// records or the queue is empty.
fn take_queued(records: &Receiver<Queued>, batch: &mut Batch) {
    while batch.len() < MAX_BATCH_RECORDS {
        match records.try_recv() {
            Ok(queued) => batch.push(queued),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;
    use crate::audit::sink::test_support::EncodedMessages;
    use std::sync::mpsc::Sender;

    /// Encodes a record as its message, and sends the thread it ran on.
    struct MessageEncoder(Mutex<Sender<std::thread::ThreadId>>);

    impl Encoder for MessageEncoder {
        fn encode(&self, record: &AuditRecord) -> Vec<u8> {
            let _ = self.0.lock().unwrap().send(std::thread::current().id());
            record.message.clone().into_bytes()
        }
    }

    /// A sink of encoded messages, which sends each batch it is given.
    struct EncodedBatches {
        encoder: Arc<MessageEncoder>,
        batches: Sender<Vec<String>>,
    }

    impl AuditSink for EncodedBatches {
        fn write(&mut self, _record: &AuditRecord) {
            panic!("records reach this sink encoded");
        }

        fn encoder(&self) -> Option<Arc<dyn Encoder>> {
            Some(self.encoder.clone())
        }

        fn write_encoded(&mut self, entries: &[Vec<u8>]) {
            let _ = self.batches.send(entries.iter().map(|entry| String::from_utf8(entry.clone()).unwrap()).collect());
        }
    }

    /// A sink with an encoder gets entries encoded on the callers' thread,
    /// in order, and all of them once the last handle drops.
    #[test]
    fn encoded_records_keep_order() {
        let (threads, encoded_on) = mpsc::channel();
        let (batches, written) = mpsc::channel();
        let encoder = Arc::new(MessageEncoder(Mutex::new(threads)));
        let sink = BackgroundSink::start(Box::new(EncodedBatches { encoder, batches })).unwrap();
        let messages = write_through_two_handles(sink);

        assert_batches_hold(written.try_iter().collect(), &messages);
        let threads: Vec<_> = encoded_on.try_iter().collect();
        assert_eq!(threads.len(), messages.len());
        assert!(threads.iter().all(|&thread| thread == std::thread::current().id()), "a record was encoded on the writer thread");
    }

    /// Sends the messages of each batch it is given, one `Vec` per batch.
    struct Batches(Sender<Vec<String>>);

    impl AuditSink for Batches {
        fn write(&mut self, record: &AuditRecord) {
            self.write_batch(std::slice::from_ref(record));
        }

        fn write_batch(&mut self, records: &[AuditRecord]) {
            let _ = self.0.send(records.iter().map(|record| record.message.clone()).collect());
        }
    }

    fn record(message: &str) -> AuditRecord {
        AuditRecord::new(AuditEvent::Call, message)
    }

    #[test]
    fn batches_keep_order_and_drain_on_drop() {
        let (sender, batches) = mpsc::channel();
        let sink = BackgroundSink::start(Box::new(Batches(sender))).unwrap();
        let messages = write_through_two_handles(sink);

        // The writer has joined, so every batch has been sent.
        assert_batches_hold(batches.try_iter().collect(), &messages);
    }

    /// Writes 10,000 call records through `sink` and a clone of it, owned
    /// and borrowed in turn, drops both handles and returns the messages.
    fn write_through_two_handles(mut sink: BackgroundSink) -> Vec<String> {
        let mut other = sink.clone();
        let messages: Vec<String> = (0..10_000).map(|n| format!("call {n}")).collect();
        for (n, message) in messages.iter().enumerate() {
            match n % 2 {
                0 => sink.write_owned(record(message)),
                _ => other.write(&record(message)),
            }
        }
        drop(sink);
        drop(other);
        messages
    }

    /// Checks that `batches` are bounded, not empty, and hold `messages` in
    /// order.
    fn assert_batches_hold(batches: Vec<Vec<String>>, messages: &[String]) {
        assert!(batches.iter().all(|batch| !batch.is_empty() && batch.len() <= MAX_BATCH_RECORDS));
        assert_eq!(batches.concat(), messages);
    }

    /// Sends the message of every record it is given, then panics on the
    /// one whose message is "panic".
    struct PanicsOnce(Sender<String>);

    impl AuditSink for PanicsOnce {
        fn write(&mut self, record: &AuditRecord) {
            let _ = self.0.send(record.message.clone());
            assert_ne!(record.message, "panic", "a sink bug");
        }
    }

    #[test]
    fn writer_survives_panicking_sink() {
        let (sender, written) = mpsc::channel();
        let mut sink = BackgroundSink::start(Box::new(PanicsOnce(sender))).unwrap();
        sink.write_owned(record("panic"));
        // The writer has taken the first record once it was sent on, so the
        // second comes in a batch of its own.
        assert_eq!(written.recv().unwrap(), "panic");
        sink.write_owned(record("after"));
        drop(sink);
        assert_eq!(written.try_iter().collect::<Vec<_>>(), ["after"]);
    }

    /// A panic in the encoder, which runs on the caller's thread, loses only
    /// that record and does not reach the caller.
    #[test]
    fn caller_survives_panicking_encoder() {
        let (batches, written) = mpsc::channel();
        let mut sink = BackgroundSink::start(Box::new(EncodedMessages(batches))).unwrap();

        let owned = catch_unwind(AssertUnwindSafe(|| sink.write_owned(record("panic"))));
        assert!(owned.is_ok(), "write_owned passed the encoder's panic to its caller");
        let borrowed = catch_unwind(AssertUnwindSafe(|| sink.write(&record("panic"))));
        assert!(borrowed.is_ok(), "write passed the encoder's panic to its caller");
        sink.write_owned(record("after"));
        drop(sink);

        assert_eq!(written.try_iter().collect::<Vec<_>>().concat(), ["after"]);
    }

    /// Sends the size of each batch.
    struct Sizes(Sender<usize>);

    impl AuditSink for Sizes {
        fn write(&mut self, record: &AuditRecord) {
            self.write_batch(std::slice::from_ref(record));
        }

        fn write_batch(&mut self, records: &[AuditRecord]) {
            let _ = self.0.send(records.len());
        }
    }

    /// A writer behind its queue, as after a sink that stalled, writes full
    /// batches without waiting for more records.
    #[test]
    fn full_queue_drains_without_waiting() {
        let (queue, records) = mpsc::sync_channel(QUEUE_RECORDS);
        for n in 0..QUEUE_RECORDS {
            queue.send(Queued::Record(Box::new(record(&format!("call {n}"))))).unwrap();
        }
        drop(queue);
        let (sizes, written) = mpsc::channel();
        let mut waits = Vec::new();

        write_until_closed(Box::new(Sizes(sizes)), &records, |time| waits.push(time));

        let sizes: Vec<usize> = written.try_iter().collect();
        assert_eq!(sizes, vec![MAX_BATCH_RECORDS; QUEUE_RECORDS / MAX_BATCH_RECORDS]);
        assert!(waits.is_empty(), "waited {} times", waits.len());
    }
}
