//! Prometheus counters: counted as things happen in this process, so they only grow (clearing the memory deletes
//! rows, not what was done; a restart starts them at 0, which Prometheus reads as a counter reset).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    pub episodes: AtomicU64,
    pub episodes_successful: AtomicU64,
    pub cluster_writes: AtomicU64,
    pub reverts: AtomicU64,
    pub llm_calls: AtomicU64,
    pub llm_tokens: AtomicU64,
    /// Write transactions begun, and the microseconds spent getting each (a pooled connection, BEGIN, the writer
    /// lock): how long writers queue behind each other.
    pub write_txs: AtomicU64,
    pub write_wait_us: AtomicU64,
    /// Report batches stored together (group commit), the reports in them, and the microseconds of each phase:
    /// waiting (the writer lock; on PostgreSQL a connection), reading what exists (with BEGIN), inserting (with the
    /// COMMIT; on PostgreSQL the whole call), a COMMIT alone (nothing new).
    pub ingest_batches: AtomicU64,
    pub ingest_reports: AtomicU64,
    pub ingest_wait_us: AtomicU64,
    pub ingest_lookup_us: AtomicU64,
    pub ingest_insert_us: AtomicU64,
    pub ingest_commit_us: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Add the microseconds since `since`.
    pub fn time(counter: &AtomicU64, since: std::time::Instant) {
        Self::add(
            counter,
            u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX),
        );
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
