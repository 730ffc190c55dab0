//! A write the API server answered with a server error, or never answered, may or may not have landed (etcd may have
//! committed it before the answer was lost). Before anything else is done it is read back: the same patch, as a
//! server-side dry run against the object as it is now, changes nothing exactly when the write is in place.

use super::{Cluster, ClusterError, patch_params};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::Patch;
use reflexion_core::owner::WorkloadRef;
use serde_json::Value;
use std::time::Duration;

/// Reads back tried before the outcome is called unknown, a second apart.
const ATTEMPTS: u32 = 5;

/// Whether an error leaves the write's outcome unknown: a 5xx, or no answer at all. A 4xx is a refusal.
pub(super) fn uncertain(e: &ClusterError) -> bool {
    match e {
        ClusterError::Kube(kube::Error::Api(s)) => s.code >= 500,
        ClusterError::Kube(kube::Error::HyperError(_) | kube::Error::Service(_)) => true,
        ClusterError::Timeout(_) => true,
        _ => false,
    }
}

/// What a write patches: a Deployment's template, or a bare pod's spec.
#[derive(Clone, Copy)]
pub(super) enum Patched {
    Deployment,
    Pod,
}

impl Cluster {
    /// Whether a compiled write is in place now: `None` for writes that cannot be read back this way (a recreated
    /// pod or claim).
    pub async fn landed(&self, change: &super::Change) -> Result<Option<bool>, ClusterError> {
        use super::change::Write;
        let super::Change::Write { target, write } = change else {
            return Ok(None);
        };
        let (what, patch) = match write {
            Write::Deployment { patch, .. } => (Patched::Deployment, patch),
            Write::PodImage { patch, .. } => (Patched::Pod, patch),
            Write::RecreatePod { .. } | Write::RecreateClaim { .. } => return Ok(None),
        };
        Ok(Some(self.in_place(target, what, patch).await?.is_some()))
    }

    /// After `failed` left a patch's outcome unknown: `Ok(object)` as stored when the patch is in place,
    /// `Err(NotApplied)` when it is not, `Err(Uncertain)` when the object could not be read back.
    pub(super) async fn read_back(
        &self,
        target: &WorkloadRef,
        what: Patched,
        patch: &Patch<Value>,
        failed: ClusterError,
    ) -> Result<Value, ClusterError> {
        let mut last = failed.to_string();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            match self.in_place(target, what, patch).await {
                Ok(Some(stored)) => {
                    tracing::warn!(workload = %target, error = %failed, "the write was answered with an error but is in place");
                    return Ok(stored);
                }
                Ok(None) => return Err(ClusterError::NotApplied(failed.to_string())),
                Err(e) if uncertain(&e) => last = e.to_string(),
                // The object is gone or the patch no longer applies: the write is not in place.
                Err(_) => return Err(ClusterError::NotApplied(failed.to_string())),
            }
        }
        Err(ClusterError::Uncertain(format!(
            "{failed}; the last read back: {last}"
        )))
    }

    /// The object as stored if the patch would change nothing of it, `None` if it would.
    async fn in_place(
        &self,
        target: &WorkloadRef,
        what: Patched,
        patch: &Patch<Value>,
    ) -> Result<Option<Value>, ClusterError> {
        let (client, ns, name) = (self.client.clone(), &target.namespace, &target.name);
        let (now, then) = match what {
            Patched::Deployment => {
                let (now, then) =
                    now_and_patched(Api::<Deployment>::namespaced(client, ns), name, patch).await?;
                (
                    now["spec"]["template"].clone(),
                    then["spec"]["template"].clone(),
                )
            }
            Patched::Pod => {
                let (now, then) =
                    now_and_patched(Api::<Pod>::namespaced(client, ns), name, patch).await?;
                (now["spec"].clone(), then["spec"].clone())
            }
        };
        Ok((now == then).then_some(match what {
            Patched::Deployment => now["spec"].clone(),
            Patched::Pod => now,
        }))
    }
}

/// The object as stored, and as the patch would leave it (a server-side dry run).
async fn now_and_patched<K>(
    api: Api<K>,
    name: &str,
    patch: &Patch<Value>,
) -> Result<(Value, Value), ClusterError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let now = serde_json::to_value(api.get(name).await?)?;
    let then = serde_json::to_value(api.patch(name, &patch_params(true), patch).await?)?;
    Ok((now, then))
}
