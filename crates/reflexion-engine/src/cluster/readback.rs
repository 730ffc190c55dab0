//! A write the API server answered with a server error, or never answered, may or may not have landed (etcd may have
//! committed it before the answer was lost). Before anything else is done it is read back: the same patch, as a
//! server-side dry run against the object as it is now, changes nothing exactly when the write is in place. A JSON
//! patch that guards the value it changes with a `test` (the old value) cannot be read back that way — once it landed
//! its guard fails — so the object as stored is compared with what the patch leaves instead.

use super::workload::{spec_path, template_path};
use super::{Cluster, ClusterError, patch_params};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::rbac::v1::Role;
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

/// What a write patches: a workload's pod template, a bare pod's spec, a Service, or a Role of the namespace.
#[derive(Clone)]
pub(super) enum Patched {
    Template,
    Pod,
    Service,
    Role(String),
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
            Write::Template { patch, .. } => (Patched::Template, patch),
            Write::PodImage { patch, .. } => (Patched::Pod, patch),
            Write::Service { patch, .. } => (Patched::Service, patch),
            Write::Role { name, patch, .. } => (Patched::Role(name.clone()), patch),
            Write::Recreate(_) => return Ok(None),
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
            match self.in_place(target, what.clone(), patch).await {
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
        if let Patch::Json(ops) = patch
            && let Some(result) = guarded_result(&serde_json::to_value(ops)?)
        {
            let now = match what {
                Patched::Template => self.workload(target).await?,
                Patched::Pod => {
                    serde_json::to_value(Api::<Pod>::namespaced(client, ns).get(name).await?)?
                }
                Patched::Service => {
                    serde_json::to_value(Api::<Service>::namespaced(client, ns).get(name).await?)?
                }
                Patched::Role(ref role) => self.role(ns, role).await?,
            };
            let holds = result
                .iter()
                .all(|(path, want)| now.pointer(path).unwrap_or(&Value::Null) == want);
            return Ok(holds.then(|| match what {
                Patched::Template => template_path(target.kind)
                    .and_then(|p| now.pointer(p))
                    .cloned()
                    .unwrap_or_default(),
                Patched::Pod | Patched::Service | Patched::Role(_) => now,
            }));
        }
        let (now, then) = match what {
            Patched::Template => {
                // The whole template (its metadata too: a rollback replaces it), the pod spec returned.
                let template = spec_path(target)?.trim_end_matches("/spec");
                let (now, then) = now_and_patched(self.workload_api(target), name, patch).await?;
                let at = |v: &Value| v.pointer(template).cloned().unwrap_or_default();
                (at(&now), at(&then))
            }
            Patched::Pod => {
                let (now, then) =
                    now_and_patched(Api::<Pod>::namespaced(client, ns), name, patch).await?;
                (now["spec"].clone(), then["spec"].clone())
            }
            Patched::Service => {
                let (now, then) =
                    now_and_patched(Api::<Service>::namespaced(client, ns), name, patch).await?;
                (now["spec"].clone(), then["spec"].clone())
            }
            Patched::Role(ref role) => {
                let (now, then) =
                    now_and_patched(Api::<Role>::namespaced(client, ns), role, patch).await?;
                (now["rules"].clone(), then["rules"].clone())
            }
        };
        Ok((now == then).then_some(match what {
            Patched::Template => now["spec"].clone(),
            Patched::Pod | Patched::Service | Patched::Role(_) => now,
        }))
    }
}

/// For a JSON patch that guards a value it changes with a `test`: every path it tests or sets, with the value the
/// object holds there once the patch is in place (`Null`: absent). `None` for any other patch.
pub(super) fn guarded_result(ops: &Value) -> Option<Vec<(String, Value)>> {
    let ops = ops.as_array()?;
    let path = |op: &Value| op["path"].as_str().map(String::from);
    let tested: Vec<String> = ops
        .iter()
        .filter(|op| op["op"] == "test")
        .filter_map(path)
        .collect();
    let guarded = ops
        .iter()
        .filter(|op| op["op"] != "test")
        .filter_map(path)
        .any(|p| tested.contains(&p));
    if !guarded {
        return None;
    }
    let mut result: Vec<(String, Value)> = Vec::new();
    for op in ops {
        let (Some(p), Some(kind)) = (path(op), op["op"].as_str()) else {
            return None;
        };
        let value = match kind {
            "test" | "add" | "replace" => op["value"].clone(),
            "remove" => Value::Null,
            // move and copy are never compiled; what they leave is not read back here.
            _ => return None,
        };
        match result.iter_mut().find(|(q, _)| *q == p) {
            Some(slot) => slot.1 = value,
            None => result.push((p, value)),
        }
    }
    Some(result)
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

#[cfg(test)]
mod tests {
    use super::guarded_result;
    use serde_json::{Value, json};

    #[test]
    fn a_guarded_patch_is_judged_by_what_it_leaves() {
        let sel = "/spec/template/spec/nodeSelector";
        let c0 = "/spec/template/spec/containers/0";
        let cases: Vec<(Value, Option<Vec<(&str, Value)>>)> = vec![
            // set_node_selector removing the only key: the selector must be gone.
            (
                json!([{"op": "test", "path": sel, "value": {"disktype": "ssd"}}, {"op": "remove", "path": sel}]),
                Some(vec![(sel, Value::Null)]),
            ),
            // set_node_selector changing a value.
            (
                json!([{"op": "test", "path": sel, "value": {"zone": "a"}},
                       {"op": "replace", "path": sel, "value": {"zone": "b"}}]),
                Some(vec![(sel, json!({"zone": "b"}))]),
            ),
            // drop_command: the whole container as intended.
            (
                json!([{"op": "test", "path": c0, "value": {"name": "web", "command": ["x"]}},
                       {"op": "replace", "path": c0, "value": {"name": "web"}}]),
                Some(vec![(c0, json!({"name": "web"}))]),
            ),
            // set_probe: guarded by the container's name only; the dry run of the same patch tells.
            (
                json!([{"op": "test", "path": format!("{c0}/name"), "value": "web"},
                       {"op": "add", "path": format!("{c0}/livenessProbe"), "value": {"tcpSocket": {"port": 80}}}]),
                None,
            ),
            // rollout_undo: no guard.
            (
                json!([{"op": "replace", "path": "/spec/template", "value": {}}]),
                None,
            ),
            // An added selector where there was none: no test, so no guard.
            (
                json!([{"op": "add", "path": sel, "value": {"zone": "b"}}]),
                None,
            ),
        ];
        for (ops, want) in cases {
            let want = want.map(|w| {
                w.into_iter()
                    .map(|(p, v)| (p.to_string(), v))
                    .collect::<Vec<_>>()
            });
            assert_eq!(guarded_result(&ops), want, "{ops}");
        }
    }
}
