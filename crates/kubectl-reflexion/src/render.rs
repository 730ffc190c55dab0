//! What the plugin prints, from the API's JSON: tables as `kubectl get` prints them (upper-case headers, columns
//! three spaces apart, ages as kubectl shows them) and one incident as `kubectl describe` would. Pure: no I/O.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Columns padded to their widest cell, three spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain([headers.len()])
        .max()
        .unwrap_or(0);
    let mut widths = vec![0; columns];
    for (i, h) in headers.iter().enumerate() {
        widths[i] = h.chars().count();
    }
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                let pad = widths[i] - c.chars().count() + 3;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// kubectl's human-readable duration (`k8s.io/apimachinery/pkg/util/duration.HumanDuration`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        let y = d / 365;
        match d % 365 {
            0 => format!("{y}y"),
            r => format!("{y}y{r}d"),
        }
    } else {
        format!("{}y", d / 365)
    }
}

/// The age of an RFC 3339 timestamp at `now`; `<unknown>` when it is not one.
pub fn age(at: &str, now: DateTime<Utc>) -> String {
    DateTime::parse_from_rfc3339(at).map_or_else(
        |_| "<unknown>".into(),
        |t| human_duration(now.signed_duration_since(t).num_seconds()),
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => crate::api::one_line(s),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

/// At most `max` characters of one line.
pub fn cut(s: &str, max: usize) -> String {
    let s = crate::api::one_line(s);
    if s.chars().count() <= max {
        return s;
    }
    let head: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{head}…")
}

pub const INCIDENT_HEADERS: [&str; 7] = [
    "ID",
    "NAMESPACE",
    "WORKLOAD",
    "SIGNATURE",
    "STATE",
    "TRIALS",
    "AGE",
];
pub const INCIDENT_WIDE: [&str; 4] = ["CLUSTER", "POD", "FIXED-BY", "OUTCOME"];

/// One incident summary as a row of `incidents`.
pub fn incident_row(i: &Value, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let mut row = vec![
        text(&i["id"]),
        text(&i["namespace"]),
        format!(
            "{}/{}",
            text(&i["workload"]["kind"]).to_lowercase(),
            text(&i["workload"]["name"])
        ),
        text(&i["signature"]),
        text(&i["state"]),
        text(&i["trials"]),
        age(i["created_at"].as_str().unwrap_or(""), now),
    ];
    if wide {
        row.extend([
            text(&i["cluster"]),
            text(&i["pod_name"]),
            text(&i["fixed_by"]),
            cut(i["outcome"].as_str().unwrap_or("<none>"), 80),
        ]);
    }
    row
}

pub fn incidents(list: &[Value], wide: bool, now: DateTime<Utc>) -> String {
    let mut headers: Vec<&str> = INCIDENT_HEADERS.to_vec();
    if wide {
        headers.extend(INCIDENT_WIDE);
    }
    let rows: Vec<Vec<String>> = list.iter().map(|i| incident_row(i, wide, now)).collect();
    table(&headers, &rows)
}

/// What a person approves: the command, or the Git change and its pull request.
pub fn pending(d: &Value) -> String {
    let mut out = Vec::new();
    if let Some(c) = d["pending_plan"]["command"].as_str() {
        out.push(format!("  {c}"));
    }
    let git = &d["git"];
    if git.is_object() {
        let pr = git["pull_request"]["url"]
            .as_str()
            .or_else(|| git["pull_request"].as_str());
        out.push(format!(
            "  Git: {} branch {}{}",
            text(&git["repo"]),
            text(&git["branch"]),
            pr.map(|u| format!(", pull request {u}"))
                .unwrap_or_default()
        ));
        if let Some(diff) = git["diff"].as_str() {
            out.extend(diff.lines().take(60).map(|l| format!("    {l}")));
        }
    }
    if out.is_empty() {
        out.push("  (no command was stored with the plan)".into());
    }
    out.join("\n")
}

/// One incident in full, as `kubectl describe` prints an object.
pub fn detail(d: &Value, now: DateTime<Utc>) -> String {
    let mut out = vec![
        format!("ID:          {}", text(&d["id"])),
        format!("Cluster:     {}", text(&d["cluster"])),
        format!(
            "Workload:    {} {}/{}   (pod {})",
            text(&d["workload"]["kind"]),
            text(&d["namespace"]),
            text(&d["workload"]["name"]),
            text(&d["pod_name"])
        ),
        format!(
            "Cause:       {} ({})",
            text(&d["signature"]),
            text(&d["error_type"])
        ),
        format!(
            "State:       {}   trials {}   fixed by {}   age {}",
            text(&d["state"]),
            text(&d["trials"]),
            text(&d["fixed_by"]),
            age(d["created_at"].as_str().unwrap_or(""), now)
        ),
    ];
    if let Some(o) = d["outcome"].as_str() {
        out.push(format!("Outcome:     {}", cut(o, 400)));
    }
    if let Some(lands) = d["owner"]["fix_lands"].as_str() {
        out.push(format!("Fix lands:   {lands}"));
    }
    if d["state"] == "awaiting_approval" {
        out.push("Awaiting approval:".into());
        out.push(pending(d));
    }
    out.push("Timeline:".into());
    for t in d["transitions"].as_array().into_iter().flatten() {
        out.push(format!(
            "  {}   {:<18} {}",
            text(&t["at"]),
            text(&t["state"]),
            cut(t["note"].as_str().unwrap_or(""), 160)
        ));
    }
    let trials = d["episodes"].as_array().map_or(&[][..], Vec::as_slice);
    if !trials.is_empty() {
        out.push("Trials:".into());
    }
    for e in trials {
        let verdict = match (e["success"].as_bool(), e["reverted"].as_bool()) {
            (Some(true), _) => "verified".to_string(),
            (_, Some(true)) => "not verified, reverted".to_string(),
            _ => "not verified".to_string(),
        };
        out.push(format!(
            "  #{} {} ({}): {}",
            text(&e["trial"]),
            text(&e["action"]["action"]),
            text(&e["source"]),
            verdict
        ));
        out.push(format!("     command:      {}", text(&e["command"])));
        if let Some(v) = e["verification"]["detail"].as_str() {
            out.push(format!("     verification: {}", cut(v, 200)));
        }
        out.push(format!(
            "     reflection:   {}",
            cut(e["reflection"].as_str().unwrap_or(""), 300)
        ));
    }
    let audit = d["audit"].as_array().map_or(&[][..], Vec::as_slice);
    if !audit.is_empty() {
        out.push("Writes:".into());
    }
    for a in audit {
        out.push(format!(
            "  {}   {} {}: {}",
            text(&a["at"]),
            text(&a["verb"]),
            text(&a["target"]),
            cut(a["result"].as_str().unwrap_or(""), 160)
        ));
    }
    out.join("\n")
}

pub fn strategies(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                text(&s["signature"]),
                text(&s["action"]),
                text(&s["source"]),
                format!(
                    "{}/{}",
                    text(&s["successes"]),
                    s["successes"].as_i64().unwrap_or(0) + s["failures"].as_i64().unwrap_or(0)
                ),
                cut(s["template"].as_str().unwrap_or(""), 70),
            ]
        })
        .collect();
    table(
        &["SIGNATURE", "ACTION", "SOURCE", "HELD", "TEMPLATE"],
        &rows,
    )
}

/// Every lesson of these episodes, newest episode first.
pub fn lessons(episodes: &[Value], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = episodes
        .iter()
        .flat_map(|e| {
            e["lessons_learned"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |l| {
                    vec![
                        age(e["created_at"].as_str().unwrap_or(""), now),
                        text(&e["signature"]),
                        cut(l.as_str().unwrap_or(""), 120),
                    ]
                })
        })
        .collect();
    table(&["AGE", "SIGNATURE", "LESSON"], &rows)
}

pub fn stats(s: &Value) -> String {
    let pct = |v: &Value| {
        v.as_f64()
            .map_or("<none>".into(), |f| format!("{:.0}%", f * 100.0))
    };
    let mut out = vec![];
    if let Some(by) = s["incidents"]["by_state"].as_object() {
        let states: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push(format!(
            "Incidents:        {} ({})",
            text(&s["incidents"]["total"]),
            states.join(", ")
        ));
    }
    out.extend([
        format!("Success rate:     {}", pct(&s["success_rate"])),
        format!("First-trial fix:  {}", pct(&s["first_trial_fix_rate"])),
        format!(
            "Trials to fix:    {}",
            s["mean_trials_to_fix"]
                .as_f64()
                .map_or("<none>".into(), |f| format!("{f:.2}"))
        ),
        format!(
            "Episodes:         {} ({} verified, {} reverted)",
            text(&s["episodes"]["total"]),
            text(&s["episodes"]["successful"]),
            text(&s["episodes"]["reverted"])
        ),
        format!("Strategies:       {}", text(&s["strategies"])),
        format!("Lessons:          {}", text(&s["lessons"])),
        format!("Cluster writes:   {}", text(&s["cluster_writes"])),
        format!("LLM calls:        {}", text(&s["llm"]["calls"])),
    ]);
    out.join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_as_kubectl_prints_them() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 86400, "8d"),
            (730 * 86400, "2y"),
            (731 * 86400, "2y1d"),
            (8 * 365 * 86400, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn tables_align_like_kubectl_get() {
        let t = table(
            &["ID", "STATE"],
            &[
                vec!["a".into(), "resolved".into()],
                vec!["longer-id".into(), "escalated".into()],
            ],
        );
        assert_eq!(
            t,
            "ID          STATE\na           resolved\nlonger-id   escalated"
        );
    }

    #[test]
    fn an_incident_row_and_its_wide_columns() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T10:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let i = json!({"id": "abc", "namespace": "default", "workload": {"kind": "Deployment", "name": "web"},
            "signature": "image_pull/not_found", "state": "resolved", "trials": 1,
            "created_at": "2026-12-06T10:00:00.000Z", "cluster": "prod", "pod_name": "web-1", "fixed_by": "rules",
            "outcome": "fixed\nwith set_image"});
        assert_eq!(
            incident_row(&i, false, now),
            [
                "abc",
                "default",
                "deployment/web",
                "image_pull/not_found",
                "resolved",
                "1",
                "5m"
            ]
        );
        assert_eq!(
            incident_row(&i, true, now)[7..],
            ["prod", "web-1", "rules", "fixed with set_image"]
        );
        assert_eq!(incident_row(&json!({}), false, now)[0], "<none>");
    }

    #[test]
    fn what_is_approved_is_shown_whole() {
        let live = json!({"pending_plan": {"command": "kubectl patch deployment/web -p '{}'"}});
        assert_eq!(pending(&live), "  kubectl patch deployment/web -p '{}'");
        let git = json!({"pending_plan": {}, "git": {"repo": "https://git/x", "branch": "fix/1",
            "pull_request": {"url": "https://git/x/pull/3"}, "diff": "-image: a\n+image: b"}});
        let text = pending(&git);
        assert!(
            text.contains("branch fix/1, pull request https://git/x/pull/3"),
            "{text}"
        );
        assert!(text.contains("    +image: b"), "{text}");
    }
}
