//! What a change needs before its verification can see it: a grant is first checked with a SubjectAccessReview (and
//! its pods get the kubelet's crash back-off to come back in); a CronJob's fix is proven by its next run, which is
//! started now when the policy allows it (`trigger_cronjob_runs`), audited like any other write.

use super::Engine;
use super::rules::rbac::CRASH_BACKOFF_MAX;
use crate::db::Incident;
use reflexion_core::Action;
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use serde_json::json;
use std::time::Duration;

/// What was done or checked before verification, and how much longer than the timeout it may take.
#[derive(Default)]
pub(in crate::engine) struct Before {
    pub said: Option<String>,
    pub extra: Duration,
    /// The CronJob run started to prove the change.
    pub run: Option<String>,
}

impl Engine {
    /// `Err` is why the change is not verified, before watching anything.
    pub(in crate::engine) async fn before_verifying(
        &self,
        inc: &Incident,
        action: &Action,
        target: &WorkloadRef,
    ) -> Result<Before, String> {
        if let Some(said) = self.granted(action).await? {
            // A crash-looping container restarts only when its back-off ends.
            return Ok(Before {
                said: Some(said),
                extra: CRASH_BACKOFF_MAX,
                run: None,
            });
        }
        if target.kind != WorkloadKind::CronJob || !self.scope.policy.trigger_cronjob_runs {
            return Ok(Before::default());
        }
        let (detail, result, before) = match self.scope.cluster.trigger_run(target, &inc.id).await {
            Ok(job) => {
                let command = format!(
                    "kubectl create job {job} --from=cronjob/{} -n {}",
                    target.name, target.namespace
                );
                let said = format!(
                    "started Job {job} from {target} to prove the fix (the policy allows triggered runs)"
                );
                (
                    json!({"job": job, "command": command}),
                    "created".to_string(),
                    Before {
                        said: Some(said),
                        extra: Duration::ZERO,
                        run: Some(job),
                    },
                )
            }
            // The next scheduled run still proves it.
            Err(e) => (
                json!({"job": null}),
                format!("error: {e}"),
                Before {
                    said: Some(format!(
                        "starting a run of {target} failed ({e}); waiting for the next scheduled one"
                    )),
                    ..Before::default()
                },
            ),
        };
        self.inner
            .db
            .audit(&inc.id, "trigger", &target.to_string(), &detail, &result)
            .await
            .map_err(|e| e.to_string())?;
        Ok(before)
    }
}
