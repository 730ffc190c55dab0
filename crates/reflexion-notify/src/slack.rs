//! A notice as a Slack incoming-webhook message (Block Kit). The only button is a link to the console, where the
//! API's token decides who may approve: an approve button would need Slack's interactivity endpoint and its signing
//! secret, which an incoming webhook does not give, so a click could not be verified.

use crate::notice::{Event, Notice, cut};
use serde_json::{Value, json};

/// Slack's limits: a header's text 150 characters, a section's 3,000, a field's 2,000.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;

pub fn message(n: &Notice) -> Value {
    let title = match n.event {
        Event::AwaitingApproval => "Fix awaiting approval",
        Event::Escalated => "Incident handed over",
        Event::Resolved => "Incident resolved",
        Event::Reverted => "Fix reverted",
        Event::Failed => "kube-reflexion stopped",
    };
    let i = &n.incident;
    let workload = format!("{} {}/{}", i.workload.kind, i.namespace, i.workload.name);
    let mut fields = vec![
        field("Workload", &escape(&workload)),
        field(
            "Cause",
            &format!("`{}` ({})", escape(&i.signature), escape(&i.reason)),
        ),
        field("Trials", &i.trials.to_string()),
    ];
    if !n.cluster.is_empty() {
        fields.push(field("Cluster", &escape(&n.cluster)));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(title, HEADER_MAX)}}),
        json!({"type": "section", "text": mrkdwn(&escape(&n.summary), SECTION_MAX), "fields": fields}),
    ];
    if let Some(command) = &n.command {
        let label = match n.event {
            Event::AwaitingApproval => "The change, if approved",
            Event::Reverted => "The change undone",
            _ => "The change that held",
        };
        blocks.push(json!({"type": "section", "text": mrkdwn(&format!("*{label}*\n```{}```", escape(command)), SECTION_MAX)}));
    }
    if let Some(sha) = n.commit.as_ref().and_then(|c| c["sha"].as_str()) {
        let repo = n
            .commit
            .as_ref()
            .and_then(|c| c["repo"].as_str())
            .unwrap_or("");
        blocks.push(json!({"type": "section", "text": mrkdwn(&format!("*Commit* `{}` in {}", escape(sha), escape(repo)), SECTION_MAX)}));
    }
    if !n.note.is_empty() {
        blocks
            .push(json!({"type": "context", "elements": [mrkdwn(&escape(&n.note), SECTION_MAX)]}));
    }
    if let Some(url) = &n.console_url {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "action_id": "open_console",
            "text": {"type": "plain_text", "text": "Open in console"},
            "url": url,
        }]}));
    }
    json!({"text": cut(&format!("{title}: {}", n.summary), SECTION_MAX), "blocks": blocks})
}

fn field(name: &str, value: &str) -> Value {
    mrkdwn(&format!("*{name}*\n{value}"), FIELD_MAX)
}

fn mrkdwn(text: &str, max: usize) -> Value {
    json!({"type": "mrkdwn", "text": cut(text, max)})
}

/// Slack's three control characters, escaped as its formatting reference asks: text from a cluster (a pod's log in
/// a note) cannot become a link or a mention.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::notice::{About, VERSION, Workload};

    fn notice(event: Event, command: Option<&str>, console: Option<&str>) -> Notice {
        Notice {
            version: VERSION.into(),
            id: "transition-7".into(),
            event,
            at: "2026-12-06T10:00:00.000Z".into(),
            cluster: "prod".into(),
            incident: About {
                id: "abc".into(),
                namespace: "default".into(),
                workload: Workload {
                    kind: "Deployment".into(),
                    name: "web".into(),
                },
                pod: "web-1".into(),
                signature: "scheduling/node_selector".into(),
                reason: "FailedScheduling".into(),
                state: event.as_str().into(),
                trials: 1,
            },
            summary: "A fix for Deployment default/web awaits approval".into(),
            note: "log said <!channel> & more".into(),
            command: command.map(str::to_string),
            commit: None,
            console_url: console.map(str::to_string),
        }
    }

    #[test]
    fn carries_workload_cause_command_and_link() {
        let m = message(&notice(
            Event::AwaitingApproval,
            Some("kubectl patch deployment/web -p '{\"a\":1}'"),
            Some("https://reflexion.example/#/incidents/abc"),
        ));
        let text = m.to_string();
        assert_eq!(m["blocks"][0]["text"]["text"], "Fix awaiting approval");
        assert!(text.contains("Deployment default/web"), "{text}");
        assert!(
            text.contains("`scheduling/node_selector` (FailedScheduling)"),
            "{text}"
        );
        assert!(text.contains("kubectl patch deployment/web"), "{text}");
        assert!(text.contains("*Cluster*\\nprod"), "{text}");
        let buttons: Vec<&Value> = m["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap())
            .collect();
        assert_eq!(buttons.len(), 1);
        assert_eq!(
            buttons[0]["url"],
            "https://reflexion.example/#/incidents/abc"
        );
    }

    #[test]
    fn no_console_no_button_and_cluster_text_escaped() {
        let m = message(&notice(Event::Escalated, None, None));
        let text = m.to_string();
        assert!(!text.contains("\"actions\""), "{text}");
        assert!(!text.contains("```"), "{text}");
        assert!(text.contains("&lt;!channel&gt; &amp; more"), "{text}");
        assert!(!text.contains("<!channel>"), "{text}");
    }

    #[test]
    fn cuts_to_slack_limits() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        let long = notice(Event::Reverted, Some(&"x".repeat(5000)), None);
        let m = message(&long);
        for b in m["blocks"].as_array().unwrap() {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() <= SECTION_MAX);
            }
        }
    }
}
