//! One report per failure, not one per status update: a failure is keyed by the workload that owns it, the
//! container and the failure family, and reported again only after a cooldown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FailureKey {
    pub namespace: String,
    pub workload_kind: String,
    pub workload_name: String,
    pub container: String,
    pub family: String,
    /// The pod template's hash (`pod-template-hash`, `controller-revision-hash`) and the owner's uid: a new rollout,
    /// or a workload deleted and created again, that fails the same way is a new incident, reported at once.
    pub revision: String,
}

pub struct Dedup {
    cooldown: Duration,
    reported: HashMap<FailureKey, Instant>,
}

impl Dedup {
    pub fn new(cooldown: Duration) -> Self {
        Self {
            cooldown,
            reported: HashMap::new(),
        }
    }

    /// Whether this failure should be reported now; if so, it is remembered as reported.
    pub fn should_report(&mut self, key: &FailureKey, now: Instant) -> bool {
        if self.reported.len() > 10_000 {
            let cooldown = self.cooldown;
            self.reported
                .retain(|_, at| now.duration_since(*at) < cooldown);
        }
        match self.reported.get(key) {
            Some(at) if now.duration_since(*at) < self.cooldown => false,
            _ => {
                self.reported.insert(key.clone(), now);
                true
            }
        }
    }

    /// The workload is healthy again: a new failure of it is a new incident.
    pub fn clear_workload(&mut self, namespace: &str, kind: &str, name: &str) {
        self.reported.retain(|k, _| {
            !(k.namespace == namespace && k.workload_kind == kind && k.workload_name == name)
        });
    }

    /// Forget a report that could not be queued, so the next status update tries again.
    pub fn forget(&mut self, key: &FailureKey) {
        self.reported.remove(key);
    }

    pub fn len(&self) -> usize {
        self.reported.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reported.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, family: &str) -> FailureKey {
        FailureKey {
            namespace: "default".into(),
            workload_kind: "Deployment".into(),
            workload_name: name.into(),
            container: "web".into(),
            family: family.into(),
            revision: "7d9c".into(),
        }
    }

    #[test]
    fn reports_once_per_cooldown_and_again_after_recovery() {
        let mut d = Dedup::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let steps = [
            (key("web", "image_pull"), 0, true),
            // ErrImagePull -> ImagePullBackOff -> ErrImagePull: same family, same incident
            (key("web", "image_pull"), 1, false),
            (key("web", "image_pull"), 59, false),
            (key("web", "crash_loop"), 2, true),
            (key("api", "image_pull"), 3, true),
            // A new rollout failing the same way is a new incident.
            (
                FailureKey {
                    revision: "5f6b".into(),
                    ..key("web", "image_pull")
                },
                4,
                true,
            ),
            (key("web", "image_pull"), 61, true),
        ];
        for (k, secs, want) in steps {
            assert_eq!(
                d.should_report(&k, t0 + Duration::from_secs(secs)),
                want,
                "{k:?} at {secs}s"
            );
        }
        d.clear_workload("default", "Deployment", "web");
        assert!(d.should_report(&key("web", "image_pull"), t0 + Duration::from_secs(62)));
        d.forget(&key("web", "image_pull"));
        assert!(d.should_report(&key("web", "image_pull"), t0 + Duration::from_secs(62)));
    }
}
