//! The deterministic reflection written after every trial when no LLM is configured: what was seen, what was
//! done, what happened, and the lesson for the next similar failure.

use crate::progress::Verdict;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialOutcome {
    pub signature: String,
    pub reason: String,
    pub workload: String,
    pub symptom: String,
    pub action: String,
    /// Why this action was chosen (`newest stable tag`, `closest tag to 1.27.O`).
    pub rationale: String,
    pub verified: bool,
    /// What verification saw: `Ready for 30s` or why not.
    pub verification: String,
    pub reverted: bool,
    /// For a change that was not verified: what it did, judged by what the pods show after it.
    #[serde(default)]
    pub verdict: Option<Verdict>,
    /// The causes that show after the change (`not_ready/readiness_probe`), for the reflection.
    #[serde(default)]
    pub now_showing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reflection {
    pub text: String,
    pub lessons: Vec<String>,
}

pub fn reflect(o: &TrialOutcome) -> Reflection {
    let seen = format!(
        "{} failed with {} ({}): {}",
        o.workload, o.reason, o.signature, o.symptom
    );
    if o.verified {
        Reflection {
            text: format!(
                "{seen}. I ran `{}` because {}; verification: {}. The fix held.",
                o.action, o.rationale, o.verification
            ),
            lessons: vec![format!(
                "For {}: `{}` ({}) was verified to fix it.",
                o.signature, o.action, o.rationale
            )],
        }
    } else if o.verdict == Some(Verdict::Progress) {
        let now = o.now_showing.join(", ");
        Reflection {
            text: format!(
                "{seen}. I ran `{}` because {}; verification failed: {}. It made progress: {} no longer shows, {now} does instead, so the change was kept and the next trial works on {now}.",
                o.action, o.rationale, o.verification, o.signature
            ),
            lessons: vec![format!(
                "For {}: `{}` ({}) removed that cause and revealed {now}; keep it and fix {now} next.",
                o.signature, o.action, o.rationale
            )],
        }
    } else {
        let undo = if o.reverted {
            " The change was reverted."
        } else {
            ""
        };
        let judged = match o.verdict {
            Some(Verdict::Worse) => format!(
                " It made things worse: {} shows now, an earlier stage than {}.",
                o.now_showing.join(", "),
                o.signature
            ),
            Some(_) if o.now_showing.is_empty() => {
                " It made no progress: the pods show no cause at all, so nothing says the change helped.".to_string()
            }
            Some(_) => format!(" It made no progress: {} still shows.", o.signature),
            None => String::new(),
        };
        Reflection {
            text: format!(
                "{seen}. I ran `{}` because {}; verification failed: {}.{judged}{undo} Next time, do not repeat this action for this workload.",
                o.action, o.rationale, o.verification
            ),
            lessons: vec![format!(
                "For {}: `{}` ({}) did not fix it: {}.",
                o.signature, o.action, o.rationale, o.verification
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(verified: bool, reverted: bool) -> TrialOutcome {
        TrialOutcome {
            signature: "image_pull/not_found".into(),
            reason: "ImagePullBackOff".into(),
            workload: "pod/test-nginx -n default".into(),
            symptom: "nginx:bu-tag-yok: not found".into(),
            action: "kubectl set image deployment/web web=nginx:1.27.3 -n default".into(),
            rationale: "1.27.3 is the newest stable tag of docker.io/library/nginx".into(),
            verified,
            verification: if verified {
                "Ready and stable for 30s".into()
            } else {
                "not Ready within 180s".into()
            },
            reverted,
            verdict: None,
            now_showing: Vec::new(),
        }
    }

    #[test]
    fn success_and_failure_reflections_name_the_evidence_and_the_lesson() {
        let ok = reflect(&outcome(true, false));
        assert!(
            ok.text.contains("ImagePullBackOff") && ok.text.contains("fix held"),
            "{}",
            ok.text
        );
        assert_eq!(ok.lessons.len(), 1);
        assert!(
            ok.lessons[0].contains("verified to fix"),
            "{:?}",
            ok.lessons
        );

        let bad = reflect(&outcome(false, true));
        assert!(
            bad.text
                .contains("verification failed: not Ready within 180s")
                && bad.text.contains("reverted"),
            "{}",
            bad.text
        );
        assert!(
            bad.lessons[0].contains("did not fix it"),
            "{:?}",
            bad.lessons
        );
        assert!(!reflect(&outcome(false, false)).text.contains("reverted"));
    }

    #[test]
    fn reflections_say_whether_a_change_made_progress() {
        let judged = |verdict: Verdict, now: &[&str]| {
            reflect(&TrialOutcome {
                verdict: Some(verdict),
                now_showing: now.iter().map(|s| s.to_string()).collect(),
                reverted: verdict != Verdict::Progress,
                ..outcome(false, false)
            })
        };
        let kept = judged(Verdict::Progress, &["not_ready/readiness_probe"]);
        assert!(
            kept.text.contains("made progress")
                && kept.text.contains("kept")
                && kept.text.contains("not_ready/readiness_probe")
                && !kept.text.contains("reverted"),
            "{}",
            kept.text
        );
        let worse = judged(Verdict::Worse, &["unschedulable/node_selector"]);
        assert!(
            worse.text.contains("worse") && worse.text.contains("reverted"),
            "{}",
            worse.text
        );
        let same = judged(Verdict::NoProgress, &["image_pull/not_found"]);
        assert!(
            same.text.contains("no progress") && same.text.contains("still shows"),
            "{}",
            same.text
        );
        let nothing = judged(Verdict::NoProgress, &[]);
        assert!(nothing.text.contains("no cause at all"), "{}", nothing.text);
    }
}
