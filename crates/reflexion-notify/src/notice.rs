//! What a notification says, whatever carries it: the generic webhook's payload (`Notice`, versioned — receivers
//! parse it) and the facts Slack's message is drawn from. Pure: built from an incident as the store holds it.

use reflexion_store::IncidentDetail;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The payload's version: a receiver can refuse what it does not know. Fields are only ever added under it.
pub const VERSION: &str = "kube-reflexion.notification/v1";

/// Longest note or command carried: a message stays readable, and Slack's 3,000-character blocks hold it.
const MAX_TEXT: usize = 1500;

/// The moves a person must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A fix waits for a person's approval.
    AwaitingApproval,
    /// The product handed the incident over.
    Escalated,
    /// Fixed, after more than one trial or a person's approval.
    Resolved,
    /// A change did not hold and was undone (or could not be).
    Reverted,
    /// The product stopped on an error of its own: a person takes over, as after an escalation.
    Failed,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::AwaitingApproval => "awaiting_approval",
            Event::Escalated => "escalated",
            Event::Resolved => "resolved",
            Event::Reverted => "reverted",
            Event::Failed => "failed",
        }
    }

    /// The event a transition to `state` is, if a person must see it. A resolution is news only when it took more
    /// than one trial or someone was asked to approve it (`asked`): a first-try automatic fix is not.
    pub fn of_transition(state: &str, trials: i64, asked: bool) -> Option<Event> {
        match state {
            "awaiting_approval" => Some(Event::AwaitingApproval),
            "escalated" => Some(Event::Escalated),
            "failed" => Some(Event::Failed),
            "resolved" if trials > 1 || asked => Some(Event::Resolved),
            _ => None,
        }
    }
}

/// The incident a notice is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct About {
    pub id: String,
    pub namespace: String,
    /// The workload fixed: `{kind, name}`.
    pub workload: Workload,
    pub pod: String,
    /// `family/cause`, e.g. `image_pull/not_found`.
    pub signature: String,
    /// The kubelet's or controller's reason, e.g. `ImagePullBackOff`.
    pub reason: String,
    /// Its state when the notice was written.
    pub state: String,
    pub trials: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub kind: String,
    pub name: String,
}

/// One notification's content: the generic webhook's body as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// [`VERSION`].
    pub version: String,
    /// The event's key, the same for every target and every retry: a receiver drops what it has seen.
    pub id: String,
    pub event: Event,
    /// When it happened (RFC 3339).
    pub at: String,
    /// The cluster, as the API names it.
    pub cluster: String,
    pub incident: About,
    /// One line a person reads first.
    pub summary: String,
    /// What the product said at that move: the question, the reason handed over, the revert's result.
    pub note: String,
    /// The exact command of the fix waiting, applied, or undone — as a person would type it.
    pub command: Option<String>,
    /// The Git change, when the fix goes through Git: `{repo, branch, sha, pull_request, ...}`.
    pub commit: Option<Value>,
    /// The incident in the console, when the API was told its public address.
    pub console_url: Option<String>,
}

/// What happened, for [`Notice::new`].
pub struct Happened<'a> {
    pub key: &'a str,
    pub event: Event,
    pub at: &'a str,
    pub note: &'a str,
}

impl Notice {
    pub fn new(d: &IncidentDetail, h: &Happened<'_>, console: Option<&str>) -> Self {
        let s = &d.summary;
        let workload = format!("{} {}/{}", s.workload.kind, s.namespace, s.workload.name);
        let summary = match h.event {
            Event::AwaitingApproval => {
                format!("A fix for {workload} awaits approval ({})", s.signature)
            }
            Event::Escalated => format!("{workload} was handed over ({})", s.signature),
            Event::Resolved => format!(
                "{workload} is fixed after {} trial{} ({})",
                s.trials,
                if s.trials == 1 { "" } else { "s" },
                s.signature
            ),
            Event::Reverted => format!("A fix of {workload} did not hold and was undone"),
            Event::Failed => format!("kube-reflexion stopped on {workload}: an error of its own"),
        };
        let command = match h.event {
            Event::AwaitingApproval => d.pending_plan.0["command"].as_str().map(str::to_string),
            Event::Resolved => d
                .episodes
                .iter()
                .rev()
                .find(|e| e.success)
                .map(|e| e.command.clone()),
            Event::Reverted => d
                .audit
                .iter()
                .rev()
                .find_map(|a| a.detail.0["command"].as_str().map(str::to_string)),
            Event::Escalated | Event::Failed => None,
        };
        let commit = (!s.git.0.is_null()).then(|| s.git.0.clone());
        Self {
            version: VERSION.to_string(),
            id: h.key.to_string(),
            event: h.event,
            at: h.at.to_string(),
            cluster: s.cluster.clone(),
            incident: About {
                id: s.id.clone(),
                namespace: s.namespace.clone(),
                workload: Workload {
                    kind: s.workload.kind.clone(),
                    name: s.workload.name.clone(),
                },
                pod: s.pod_name.clone(),
                signature: s.signature.clone(),
                reason: s.error_type.clone(),
                state: s.state.as_str().to_string(),
                trials: s.trials,
            },
            summary,
            note: bounded(h.note),
            command: command.as_deref().map(bounded),
            commit,
            console_url: console.map(|base| {
                format!(
                    "{}/#/incidents/{}",
                    base.trim_end_matches('/'),
                    percent(&s.id)
                )
            }),
        }
    }
}

/// At most `MAX_TEXT` characters, cut at a character boundary with an ellipsis.
fn bounded(text: &str) -> String {
    cut(text, MAX_TEXT + 1)
}

/// At most `max` characters: longer text keeps `max - 1` and ends with an ellipsis.
pub(crate) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text.chars().count() > max => format!("{}…", &text[..at]),
        _ => text.to_string(),
    }
}

/// An incident id in a URL fragment: ids are UUIDs, but nothing stored is trusted to be.
fn percent(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn which_transitions_a_person_sees() {
        let cases = [
            ("awaiting_approval", 1, false, Some(Event::AwaitingApproval)),
            ("escalated", 0, false, Some(Event::Escalated)),
            ("escalated", 3, true, Some(Event::Escalated)),
            ("resolved", 1, false, None),
            ("resolved", 2, false, Some(Event::Resolved)),
            ("resolved", 1, true, Some(Event::Resolved)),
            ("planning", 2, true, None),
            ("executing", 1, false, None),
            ("verifying", 1, false, None),
            ("failed", 3, false, Some(Event::Failed)),
            ("dismissed", 0, true, None),
        ];
        for (state, trials, asked, want) in cases {
            assert_eq!(
                Event::of_transition(state, trials, asked),
                want,
                "{state} {trials} {asked}"
            );
        }
    }

    #[test]
    fn bounds_text_at_a_character() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_TEXT + 5);
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), MAX_TEXT + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn ids_are_escaped_in_links() {
        assert_eq!(percent("9f1c-4a_b.c"), "9f1c-4a_b.c");
        assert_eq!(percent("a/b?c#d"), "a%2Fb%3Fc%23d");
    }
}
