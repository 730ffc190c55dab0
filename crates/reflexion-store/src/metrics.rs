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
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
