//! Delivering reports to reflexion-api: the detector writes each report to the on-disk spool and returns at once;
//! one task delivers spooled reports oldest first, retrying with exponential back-off and jitter, and removes each
//! only when reflexion-api has stored it. What is spooled at shutdown or a crash is delivered after the restart.

use crate::metrics::Metrics;
use crate::spool::{Spool, SpoolError};
use reflexion_core::report::FailureReport;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Notify;

pub const REPORT_PATH: &str = "/api/v1/reflexion/process-with-k8s-data";
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Sender {
    spool: Arc<Spool>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
}

impl Sender {
    /// Spool a report for delivery; never waits on the network.
    pub fn send(&self, report: &FailureReport) -> Result<(), SpoolError> {
        match self.spool.put(report) {
            Ok(_) => {
                self.metrics.spooled.fetch_add(1, Ordering::Relaxed);
                self.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                if matches!(e, SpoolError::Full(_)) {
                    self.metrics.spool_full.fetch_add(1, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

pub struct Config {
    pub api_url: String,
    pub token: Option<String>,
}

/// Start the delivery task; it runs until `stop` is notified, then finishes the report in hand (at most one
/// back-off) and leaves the rest in the spool.
pub fn start(
    config: Config,
    http: reqwest::Client,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    stop: Arc<Notify>,
) -> (Sender, tokio::task::JoinHandle<()>) {
    let wake = Arc::new(Notify::new());
    let sender = Sender {
        spool: spool.clone(),
        wake: wake.clone(),
        metrics: metrics.clone(),
    };
    let url = format!("{}{REPORT_PATH}", config.api_url.trim_end_matches('/'));
    let handle = tokio::spawn(async move {
        let stopped = stop.notified();
        tokio::pin!(stopped);
        loop {
            let pending = spool.pending().unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read the spool");
                Vec::new()
            });
            metrics
                .spooled
                .store(pending.len() as u64, Ordering::Relaxed);
            for path in pending {
                let Some(report) = spool.read(&path) else {
                    continue;
                };
                tokio::select! {
                    _ = &mut stopped => return,
                    done = deliver(&http, &url, config.token.as_deref(), &report, &metrics) => {
                        if done {
                            spool.remove(&path);
                            metrics.spooled.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            tokio::select! {
                _ = &mut stopped => return,
                _ = wake.notified() => {}
                // Files another process (a previous run) left behind are picked up too.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    });
    (sender, handle)
}

/// Deliver one report, retrying until reflexion-api stores it (`true`) or says the report itself is invalid
/// (`true`: retrying cannot help; the report is logged and counted).
async fn deliver(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    report: &FailureReport,
    metrics: &Metrics,
) -> bool {
    let mut backoff = BACKOFF_START;
    loop {
        let mut req = http.post(url).json(report).timeout(Duration::from_secs(10));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(key) = &report.idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                metrics.sent.fetch_add(1, Ordering::Relaxed);
                if let Some(at) = report
                    .real_k8s_data
                    .detected_at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    && let Ok(d) = (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).to_std()
                {
                    metrics.observe_latency(d);
                }
                tracing::info!(pod = %report.pod_name, namespace = %report.namespace, error_type = %report.error_type, status = %resp.status(), "reported failure");
                return true;
            }
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                // An error body is read up to 4 KiB: enough for the API's error, never a proxy's page in full.
                let mut bytes = Vec::new();
                while bytes.len() < 4096
                    && let Ok(Some(chunk)) = resp.chunk().await
                {
                    bytes.extend_from_slice(&chunk);
                }
                let body = String::from_utf8_lossy(&bytes).into_owned();
                let code = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(String::from));
                let why: String = body.chars().take(500).collect();
                match verdict(status, code.as_deref()) {
                    Verdict::Invalid => {
                        metrics.rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(pod = %report.pod_name, namespace = %report.namespace, status, body = %why,
                            "reflexion-api says the report itself is invalid: dropped");
                        return true;
                    }
                    Verdict::Retry => {
                        tracing::warn!(pod = %report.pod_name, status, body = %why, retry_in = ?backoff,
                            "reflexion-api did not store the report; it stays in the spool")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(pod = %report.pod_name, error = %e, retry_in = ?backoff, "reflexion-api unreachable")
            }
        }
        metrics.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The report itself is wrong: sending it again gets the same answer.
    Invalid,
    /// Anything else may pass later (a token being rotated, an API being rolled out or not yet serving this
    /// cluster, a limit, a timeout, an outage): the report stays in the spool.
    Retry,
}

/// What an answer other than 2xx means for the report: only a body the API could not read or a report it found
/// invalid drops it (400 bad JSON, 413 too large, 415 not JSON, 422 but for an unknown cluster).
fn verdict(status: u16, code: Option<&str>) -> Verdict {
    match (status, code) {
        (422, Some("unknown_cluster")) => Verdict::Retry,
        (400 | 413 | 415 | 422, _) => Verdict::Invalid,
        _ => Verdict::Retry,
    }
}

/// 50-100 % of the back-off, so many watchers do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::{Verdict, verdict};

    #[test]
    fn only_an_invalid_report_is_dropped() {
        let cases = [
            (400, Some("invalid_json"), Verdict::Invalid),
            (413, Some("payload_too_large"), Verdict::Invalid),
            (415, Some("unsupported_media_type"), Verdict::Invalid),
            (422, Some("invalid_report"), Verdict::Invalid),
            (422, Some("invalid_body"), Verdict::Invalid),
            (422, None, Verdict::Invalid),
            (422, Some("unknown_cluster"), Verdict::Retry),
            (401, Some("unauthorized"), Verdict::Retry),
            (403, None, Verdict::Retry),
            (404, Some("not_found"), Verdict::Retry),
            (405, None, Verdict::Retry),
            (408, Some("request_timeout"), Verdict::Retry),
            (409, None, Verdict::Retry),
            (429, None, Verdict::Retry),
            (500, Some("internal"), Verdict::Retry),
            (502, None, Verdict::Retry),
            (503, None, Verdict::Retry),
        ];
        for (status, code, want) in cases {
            assert_eq!(verdict(status, code), want, "{status} {code:?}");
        }
    }
}
