//! A pod's events, the evidence of what its kubelet and the scheduler saw.

use crate::K8sError;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use reflexion_core::classify::{PodEvent, recent_events};

/// The pod's most recent events (by its uid, so a pod of the same name before it is not read), oldest first, at
/// most `max`.
pub async fn pod_events(client: &Client, pod: &Pod, max: usize) -> Result<Vec<PodEvent>, K8sError> {
    let api: Api<Event> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let lp = ListParams::default().fields(&format!(
        "involvedObject.uid={}",
        pod.uid().unwrap_or_default()
    ));
    Ok(recent_events(api.list(&lp).await?.items, max))
}
