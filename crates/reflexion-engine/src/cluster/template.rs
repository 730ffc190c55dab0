//! Changes to a Deployment's pod template beyond one container field: the pod spec's nodeSelector, and a container's
//! command override dropped (`command` and `args` together, so the image's ENTRYPOINT and CMD run). Each is one JSON
//! patch guarded by a `test` of what it replaces, and undone only if nobody changed it since.

use super::revert::Reverted;
use super::workload::spec_path;
use super::{Cluster, ClusterError};
use kube::api::Patch;
use reflexion_core::owner::WorkloadRef;
use serde_json::{Value, json};

pub(super) fn json_patch(ops: Value) -> Result<Patch<Value>, ClusterError> {
    Ok(Patch::Json(serde_json::from_value(ops)?))
}

/// Ops that set `path` from `old` to `new` (null: absent), failing if it is not `old` any more.
pub(super) fn set_ops(path: &str, old: &Value, new: &Value) -> Value {
    let mut ops = Vec::new();
    if !old.is_null() {
        ops.push(json!({"op": "test", "path": path, "value": old}));
    }
    // `add` at an array index inserts (RFC 6902): an element that exists is replaced.
    match (old.is_null(), new.is_null()) {
        (true, true) => {}
        (false, true) => ops.push(json!({"op": "remove", "path": path})),
        (true, false) => ops.push(json!({"op": "add", "path": path, "value": new})),
        (false, false) => ops.push(json!({"op": "replace", "path": path, "value": new})),
    }
    json!(ops)
}

impl Cluster {
    /// The pod spec of a workload's template (a Deployment's, a CronJob's Jobs'), as JSON.
    pub(super) async fn template_spec(&self, target: &WorkloadRef) -> Result<Value, ClusterError> {
        let path = spec_path(target)?;
        Ok(self
            .workload(target)
            .await?
            .pointer(path)
            .cloned()
            .unwrap_or_default())
    }

    /// Put a pod-spec field back, unless someone else changed it since.
    pub(super) async fn revert_pod_spec(
        &self,
        target: &WorkloadRef,
        field: &str,
        old: &Value,
        new: &Value,
    ) -> Result<Reverted, ClusterError> {
        let now = self.template_spec(target).await?[field].clone();
        if now != *new {
            return Ok(Reverted::Skipped(format!(
                "{target}'s {field} was changed by someone else"
            )));
        }
        let path = format!("{}/{field}", spec_path(target)?);
        self.patch_workload(target, json_patch(set_ops(&path, new, old))?, false)
            .await?;
        Ok(Reverted::Done(format!(
            "reverted {target}'s {field} to {old}"
        )))
    }

    /// Put a whole container back, unless someone else changed it since.
    pub(super) async fn revert_container(
        &self,
        target: &WorkloadRef,
        container: &str,
        old: &Value,
        new: &Value,
    ) -> Result<Reverted, ClusterError> {
        let (index, now) = self.container_spec(target, container).await?;
        if now != *new {
            return Ok(Reverted::Skipped(format!(
                "{target} container {container} was changed by someone else"
            )));
        }
        let path = format!("{}/containers/{index}", spec_path(target)?);
        self.patch_workload(target, json_patch(set_ops(&path, new, old))?, false)
            .await?;
        Ok(Reverted::Done(format!(
            "restored {target} container {container} as it was"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_patches_test_what_they_replace() {
        let p = "/spec/template/spec/nodeSelector";
        let a = json!({"disktype": "nvme"});
        let b = json!({"zone": "a"});
        assert_eq!(
            set_ops(p, &a, &b),
            json!([{"op": "test", "path": p, "value": a}, {"op": "replace", "path": p, "value": b}])
        );
        assert_eq!(
            set_ops(p, &a, &Value::Null),
            json!([{"op": "test", "path": p, "value": a}, {"op": "remove", "path": p}])
        );
        assert_eq!(
            set_ops(p, &Value::Null, &b),
            json!([{"op": "add", "path": p, "value": b}])
        );
    }

    #[test]
    fn a_container_is_replaced_in_place_not_inserted_beside_itself() {
        let mut spec = json!({"containers": [{"name": "web", "command": ["x"]}, {"name": "side"}]});
        let ops = set_ops(
            "/containers/0",
            &json!({"name": "web", "command": ["x"]}),
            &json!({"name": "web"}),
        );
        let patch: json_patch::Patch =
            serde_json::from_value(ops).unwrap_or_else(|e| panic!("{e}"));
        json_patch::patch(&mut spec, &patch).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            spec,
            json!({"containers": [{"name": "web"}, {"name": "side"}]})
        );
        // Someone changed it since: the test op refuses the whole patch.
        let mut changed = json!({"containers": [{"name": "web", "command": ["y"]}]});
        assert!(json_patch::patch(&mut changed, &patch).is_err());
    }
}
