//! Delivering reports to reflexion-api: a bounded queue drained by one task that retries with exponential
//! back-off and jitter, so the watch loop never waits on the network.

use reflexion_core::report::FailureReport;
use std::time::Duration;
use tokio::sync::mpsc;

pub const REPORT_PATH: &str = "/api/v1/reflexion/process-with-k8s-data";
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Sender {
    tx: mpsc::Sender<FailureReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("report queue is full")]
    Full,
    #[error("report delivery has stopped")]
    Closed,
}

impl Sender {
    /// Queue a report without waiting.
    pub fn try_send(&self, report: FailureReport) -> Result<(), QueueError> {
        self.tx.try_send(report).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })
    }
}

pub struct Config {
    pub api_url: String,
    pub token: Option<String>,
    pub queue: usize,
}

/// Start the delivery task. It ends when every `Sender` is dropped and the queue is drained.
pub fn start(config: Config, http: reqwest::Client) -> (Sender, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<FailureReport>(config.queue.max(1));
    let url = format!("{}{REPORT_PATH}", config.api_url.trim_end_matches('/'));
    let handle = tokio::spawn(async move {
        while let Some(report) = rx.recv().await {
            deliver(&http, &url, config.token.as_deref(), &report).await;
        }
    });
    (Sender { tx }, handle)
}

async fn deliver(http: &reqwest::Client, url: &str, token: Option<&str>, report: &FailureReport) {
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
                tracing::info!(pod = %report.pod_name, namespace = %report.namespace, error_type = %report.error_type, status = %resp.status(), "reported failure");
                return;
            }
            // A request the API refuses will be refused again: log it precisely and move on.
            Ok(resp)
                if resp.status().is_client_error()
                    && resp.status() != 408
                    && resp.status() != 429 =>
            {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                tracing::error!(pod = %report.pod_name, %status, body = %body.chars().take(500).collect::<String>(), "reflexion-api rejected the report");
                return;
            }
            Ok(resp) => {
                tracing::warn!(pod = %report.pod_name, status = %resp.status(), retry_in = ?backoff, "reflexion-api unavailable")
            }
            Err(e) => {
                tracing::warn!(pod = %report.pod_name, error = %e, retry_in = ?backoff, "reflexion-api unreachable")
            }
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// 50-100 % of the back-off, so many watchers do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}
