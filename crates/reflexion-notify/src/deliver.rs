//! The notifier: one task per target, each tick (1) offering the target the events after its cursor — stored in the
//! outbox, at most once each — and (2) sending what is due, retried with back-off until delivered or too old. It
//! reads what the engine wrote and never makes the engine wait.

use crate::notice::{Event, Happened, Notice};
use crate::sign;
use crate::slack;
use crate::target::{Kind, Target};
use reflexion_store::{Db, IncidentDetail, NewNotification, Notification, now_ms};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Events read per tick and target; more wait for the next tick.
const BATCH: i64 = 100;

#[derive(Debug, Clone)]
pub struct Settings {
    pub targets: Vec<Target>,
    /// The generic webhooks' shared secret (required when there is one).
    pub secret: Option<Vec<u8>>,
    /// The console's public address, for links.
    pub console_url: Option<String>,
    /// How often each target looks for events and due retries.
    pub poll: Duration,
    /// One request's limit.
    pub timeout: Duration,
    /// The longest wait between retries (they double from one second up to it).
    pub max_backoff: Duration,
    /// A notification not delivered by then is abandoned.
    pub give_up_after: Duration,
}

impl Settings {
    pub fn new(targets: Vec<Target>, secret: Option<Vec<u8>>, console_url: Option<String>) -> Self {
        Self {
            targets,
            secret,
            console_url,
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Clone)]
pub struct Notifier {
    db: Db,
    client: reqwest::Client,
    settings: Arc<Settings>,
}

/// Why a send did not land, and whether trying again can help.
struct Undelivered {
    why: String,
    permanent: bool,
}

impl Notifier {
    pub fn new(db: Db, settings: Settings) -> Result<Self, reqwest::Error> {
        // A redirect would send the notice (and its signature) somewhere nobody configured.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .user_agent(concat!("kube-reflexion/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            db,
            client,
            settings: Arc::new(settings),
        })
    }

    /// One task per target, until the returned handles are aborted. An aborted send is retried after its lease.
    pub fn spawn(self) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.settings.targets.len())
            .map(|i| {
                let me = self.clone();
                tokio::spawn(async move { me.serve(i).await })
            })
            .collect()
    }

    async fn serve(&self, i: usize) {
        let target = &self.settings.targets[i];
        let mut tick = tokio::time::interval(self.settings.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.offer(target).await {
                tracing::warn!(target = %target.redacted(), error = %e, "reading events to notify");
            }
            if let Err(e) = self.send_due(target).await {
                tracing::warn!(target = %target.redacted(), error = %e, "sending notifications");
            }
        }
    }

    /// Store, for `target`, every event after its cursor that a person must see; move the cursor past what was read.
    pub async fn offer(&self, target: &Target) -> reflexion_store::Result<u64> {
        let key = target.key();
        let (after_transition, after_audit) = self.db.notify_cursor(&key).await?;
        let transitions = self.db.transitions_after(after_transition, BATCH).await?;
        let (reverts, audit_to) = self.db.reverts_after(after_audit, BATCH).await?;
        let transition_to = transitions.last().map_or(after_transition, |t| t.id);
        if transition_to == after_transition && audit_to == after_audit {
            return Ok(0);
        }
        let mut details: HashMap<String, Option<IncidentDetail>> = HashMap::new();
        let mut notices = Vec::new();
        for t in &transitions {
            if Event::of_transition(&t.state, i64::MAX, true).is_none() {
                continue;
            }
            let Some(d) = self.detail(&mut details, &t.incident_id).await? else {
                continue;
            };
            let asked = d.transitions.iter().any(|x| x.state == "awaiting_approval");
            if let Some(event) = Event::of_transition(&t.state, d.summary.trials, asked) {
                let key = format!("transition-{}", t.id);
                let h = Happened {
                    key: &key,
                    event,
                    at: &t.at,
                    note: &t.note,
                };
                notices.push(Notice::new(d, &h, self.settings.console_url.as_deref()));
            }
        }
        for r in &reverts {
            let Some(d) = self.detail(&mut details, &r.incident_id).await? else {
                continue;
            };
            let (key, note) = (
                format!("revert-{}", r.id),
                format!("{}: {}", r.target, r.result),
            );
            let h = Happened {
                key: &key,
                event: Event::Reverted,
                at: &r.at,
                note: &note,
            };
            notices.push(Notice::new(d, &h, self.settings.console_url.as_deref()));
        }
        let payloads: Vec<String> = notices
            .iter()
            .map(|n| serde_json::to_string(n).unwrap_or_default())
            .collect();
        let items: Vec<NewNotification<'_>> = notices
            .iter()
            .zip(&payloads)
            .map(|(n, payload)| NewNotification {
                event: &n.id,
                incident_id: &n.incident.id,
                kind: n.event.as_str(),
                payload,
            })
            .collect();
        self.db
            .enqueue_notifications(&key, &items, (transition_to, audit_to))
            .await
    }

    async fn detail<'a>(
        &self,
        cache: &'a mut HashMap<String, Option<IncidentDetail>>,
        id: &str,
    ) -> reflexion_store::Result<Option<&'a IncidentDetail>> {
        if !cache.contains_key(id) {
            let d = self.db.incident_detail(id).await?;
            cache.insert(id.to_string(), d);
        }
        Ok(cache.get(id).and_then(Option::as_ref))
    }

    /// Send `target`'s due notifications, oldest first; stop at the first that fails (the receiver is likely down,
    /// and the rest keep their turn).
    pub async fn send_due(&self, target: &Target) -> reflexion_store::Result<()> {
        let key = target.key();
        let now = now_ms();
        let lease = now + ms(self.settings.timeout) * 3;
        for n in self.db.due_notifications(&key, now, 20).await? {
            if !self
                .db
                .claim_notification(n.id, n.next_at_ms, lease)
                .await?
            {
                continue;
            }
            match self.send(target, &n).await {
                Ok(()) => {
                    self.db.notification_sent(n.id).await?;
                    tracing::info!(target = %target.redacted(), event = %n.kind, incident = %n.incident_id, attempt = n.attempts + 1, "notified");
                }
                Err(u) => {
                    let attempt = n.attempts + 1;
                    let retry = (!u.permanent && !self.too_old(&n))
                        .then(|| now_ms() + ms(backoff(attempt, self.settings.max_backoff)));
                    self.db.notification_failed(n.id, &u.why, retry).await?;
                    tracing::warn!(target = %target.redacted(), event = %n.kind, incident = %n.incident_id, attempt, error = %u.why, retrying = retry.is_some(), "notification not delivered");
                    break;
                }
            }
        }
        Ok(())
    }

    fn too_old(&self, n: &Notification) -> bool {
        chrono::DateTime::parse_from_rfc3339(&n.created_at).is_ok_and(|t| {
            chrono::Utc::now()
                .signed_duration_since(t)
                .num_milliseconds()
                > ms(self.settings.give_up_after)
        })
    }

    async fn send(&self, target: &Target, n: &Notification) -> Result<(), Undelivered> {
        let notice: Notice = serde_json::from_str(&n.payload).map_err(|e| Undelivered {
            why: format!("stored notice unreadable: {e}"),
            permanent: true,
        })?;
        let mut req = self
            .client
            .post(target.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        let body = match target.kind {
            Kind::Slack => slack::message(&notice).to_string(),
            Kind::Webhook => {
                let ts = chrono::Utc::now().timestamp();
                let secret = self.settings.secret.as_deref().unwrap_or_default();
                req = req
                    .header(sign::TIMESTAMP_HEADER, ts.to_string())
                    .header(
                        sign::SIGNATURE_HEADER,
                        sign::signature(secret, ts, n.payload.as_bytes()),
                    )
                    .header(sign::DELIVERY_HEADER, &notice.id)
                    .header(sign::EVENT_HEADER, notice.event.as_str());
                n.payload.clone()
            }
        };
        let resp = req.body(body).send().await.map_err(|e| Undelivered {
            why: format!("request failed: {}", without_url(&e)),
            permanent: false,
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        Err(Undelivered {
            why: format!("HTTP {}: {}", status.as_u16(), text.trim()),
            // The receiver refused this request as such (a gone channel, a malformed payload): sending it again
            // cannot help. A timeout, throttling or a server error can pass.
            permanent: status.is_client_error()
                && status != reqwest::StatusCode::REQUEST_TIMEOUT
                && status != reqwest::StatusCode::TOO_MANY_REQUESTS,
        })
    }
}

/// A request's error without its URL, which may be the secret.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<target>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// The wait before attempt `attempt + 1`: 1 s, 2 s, 4 s, ... up to `max`.
pub(crate) fn backoff(attempt: i64, max: Duration) -> Duration {
    let exp = u32::try_from(attempt.clamp(1, 20) - 1).unwrap_or(0);
    Duration::from_secs(1u64 << exp).min(max)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let cap = Duration::from_secs(30);
        let got: Vec<u64> = (1..=8).map(|a| backoff(a, cap).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(0, cap).as_secs(), 1);
        assert_eq!(backoff(i64::MAX, cap).as_secs(), 30);
    }
}
