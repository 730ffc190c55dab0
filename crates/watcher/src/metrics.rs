//! The watcher's counters and the detection-to-delivery latency histogram, rendered in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

#[derive(Default)]
pub struct Metrics {
    pub detected: AtomicU64,
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub rejected: AtomicU64,
    pub spool_full: AtomicU64,
    pub duplicates: AtomicU64,
    pub spooled: AtomicU64,
    pub leader: AtomicBool,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    pub fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "watcher_failures_detected_total",
            "Failures that became a report.",
            get(&self.detected),
        );
        counter(
            "watcher_reports_sent_total",
            "Reports reflexion-api stored.",
            get(&self.sent),
        );
        counter(
            "watcher_reports_retried_total",
            "Delivery attempts that failed and were retried.",
            get(&self.retried),
        );
        counter(
            "watcher_reports_dropped_invalid_total",
            "Reports reflexion-api found invalid (400, 413, 415, 422 but an unknown cluster); logged, not retried.",
            get(&self.rejected),
        );
        counter(
            "watcher_reports_dropped_duplicate_total",
            "Pod updates of a failure already reported (same workload, container, family and rollout).",
            get(&self.duplicates),
        );
        counter(
            "watcher_reports_dropped_spool_full_total",
            "Reports dropped because the spool was full.",
            get(&self.spool_full),
        );
        let _ = writeln!(
            out,
            "# HELP watcher_reports_spooled Reports on disk waiting for delivery.\n# TYPE watcher_reports_spooled gauge\nwatcher_reports_spooled {}",
            get(&self.spooled)
        );
        let _ = writeln!(
            out,
            "# HELP watcher_leader Whether this replica holds the lease and reports.\n# TYPE watcher_leader gauge\nwatcher_leader {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        );
        let name = "watcher_report_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From the watch event that showed the failure to reflexion-api storing the report.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", get(bucket));
        }
        let count = get(&self.latency_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {count}",
            get(&self.latency_sum_micros) as f64 / 1e6
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        for ms in [3, 20, 20, 700] {
            m.observe_latency(Duration::from_millis(ms));
        }
        m.sent.fetch_add(4, Ordering::Relaxed);
        let text = m.render();
        for line in [
            "watcher_reports_sent_total 4",
            "watcher_report_latency_seconds_bucket{le=\"0.005\"} 1",
            "watcher_report_latency_seconds_bucket{le=\"0.025\"} 3",
            "watcher_report_latency_seconds_bucket{le=\"1\"} 4",
            "watcher_report_latency_seconds_bucket{le=\"+Inf\"} 4",
            "watcher_report_latency_seconds_count 4",
            "watcher_leader 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
