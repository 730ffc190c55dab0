//! A Service's selector or ports: the writes made to a Service, not a workload. One JSON patch guarded by a `test`
//! of the field it replaces (read back like the other guarded patches), undone only if nobody changed it since.

use super::change::Write;
use super::revert::{Reverted, Snapshot};
use super::template::{json_patch, set_ops};
use super::{Cluster, ClusterError, patch_params};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::Patch;
use reflexion_core::action::edited_selector;
use reflexion_core::owner::WorkloadRef;
use serde_json::Value;
use std::collections::BTreeMap;

const SELECTOR: &str = "/spec/selector";
const PORTS: &str = "/spec/ports";

impl Cluster {
    /// The Service as stored, as JSON.
    pub(super) async fn service(&self, target: &WorkloadRef) -> Result<Value, ClusterError> {
        let s = Api::<Service>::namespaced(self.client.clone(), &target.namespace)
            .get_opt(&target.name)
            .await?
            .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
        Ok(serde_json::to_value(s)?)
    }

    /// `set_service_selector` compiled against the Service as it is now. A selector left empty is refused: the
    /// endpoints controller ignores a Service without one.
    pub(super) async fn compile_service_selector(
        &self,
        target: &WorkloadRef,
        remove: &[String],
        set: &BTreeMap<String, String>,
    ) -> Result<Write, ClusterError> {
        let old = self.service(target).await?["spec"]["selector"].clone();
        let new = edited_selector(&old, remove, set);
        if new.is_empty() {
            return Err(ClusterError::Refused(format!(
                "{target} would be left without a selector"
            )));
        }
        let new = Value::Object(new);
        Ok(Write::Service {
            patch: json_patch(set_ops(SELECTOR, &old, &new))?,
            snapshot: Snapshot::ServiceSelector {
                target: target.clone(),
                old,
                new,
            },
        })
    }

    /// `set_service_target_port` compiled against the Service as it is now: its whole `ports` list guarded and
    /// replaced with one port's `targetPort` changed (ports are a list; an index alone could name another port if
    /// someone edited the list meanwhile).
    pub(super) async fn compile_service_target_port(
        &self,
        target: &WorkloadRef,
        port: u16,
        target_port: &str,
    ) -> Result<Write, ClusterError> {
        let old = self.service(target).await?["spec"]["ports"].clone();
        let mut new = old.clone();
        let found = new
            .as_array_mut()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_u64() == Some(u64::from(port)))
            .ok_or_else(|| ClusterError::Refused(format!("{target} has no port {port}")))?;
        found["targetPort"] = reflexion_core::service::target_value(target_port);
        Ok(Write::Service {
            patch: json_patch(set_ops(PORTS, &old, &new))?,
            snapshot: Snapshot::ServicePorts {
                target: target.clone(),
                old,
                new,
            },
        })
    }

    pub(super) async fn patch_service(
        &self,
        target: &WorkloadRef,
        patch: &Patch<Value>,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let s = Api::<Service>::namespaced(self.client.clone(), &target.namespace)
            .patch(&target.name, &patch_params(dry_run), patch)
            .await?;
        Ok(serde_json::to_value(s)?)
    }

    /// Put the selector (`ports` false) or the ports back, unless someone else changed them since.
    pub(super) async fn revert_service(
        &self,
        target: &WorkloadRef,
        ports: bool,
        old: &Value,
        new: &Value,
    ) -> Result<Reverted, ClusterError> {
        let (path, field) = if ports {
            (PORTS, "ports")
        } else {
            (SELECTOR, "selector")
        };
        let now = self.service(target).await?["spec"][field].clone();
        if now != *new {
            return Ok(Reverted::Skipped(format!(
                "{target}'s {field} was changed by someone else"
            )));
        }
        self.patch_service(target, &json_patch(set_ops(path, new, old))?, false)
            .await?;
        Ok(Reverted::Done(format!(
            "reverted {target}'s {field} to {old}"
        )))
    }
}
