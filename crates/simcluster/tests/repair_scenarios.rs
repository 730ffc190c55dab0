//! Conformance of the scenarios kube-reflexion repairs across trials or with an operator's approval: both probes
//! wrong, a nodeSelector no node has behind a Service, a claim of a StorageClass that does not exist, a command the
//! image does not have. Each reaches the state a real cluster reaches, with its reasons, events and logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{Endpoints, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;

#[macro_use]
mod common;

use common::pods::*;
use common::{start, start_split};

async fn both_probes_wrong_kill_the_container_and_keep_it_unready(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "bad-probes.yaml").await;
    let p = pod_where(
        &sim.client,
        "app=probes",
        "killed by its liveness probe",
        |p| last_terminated(p).is_some(),
    )
    .await;
    assert_eq!(last_terminated(&p), Some((137, "Error".to_string())));
    let ev = events_of(&sim.client, &p).await;
    for (reason, needle) in [
        (
            "Unhealthy",
            "Liveness probe failed: HTTP probe failed with statuscode: 404",
        ),
        (
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 404",
        ),
    ] {
        assert!(
            has_event(&ev, "Warning", reason, needle),
            "{needle}: {ev:?}"
        );
    }
    assert!(
        has_event(
            &ev,
            "Normal",
            "Killing",
            "Container web failed liveness probe, will be restarted"
        ),
        "{ev:?}"
    );
    let cs = &p.status.unwrap().container_statuses.unwrap()[0];
    assert!(!cs.ready, "never Ready: {cs:?}");
}

async fn a_node_selector_no_node_has_leaves_the_service_without_endpoints(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "selector-no-node.yaml").await;
    let p = pod_where(&sim.client, "app=catalog", "Unschedulable", |p| {
        unschedulable(p).is_some()
    })
    .await;
    assert!(
        unschedulable(&p).unwrap().starts_with(
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        ),
        "{:?}",
        unschedulable(&p)
    );
    let endpoints: Api<Endpoints> = Api::namespaced(sim.client.clone(), "default");
    let mut e = None;
    for _ in 0..50 {
        e = endpoints.get_opt("catalog").await.unwrap();
        if e.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let addresses: usize = e
        .expect("the endpoints controller writes the Service's Endpoints")
        .subsets
        .unwrap_or_default()
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(addresses, 0);
}

async fn a_claim_of_a_missing_class_stays_pending_and_so_does_its_pod(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "pvc-missing-class.yaml").await;
    let p = pod_where(&sim.client, "app=uploader", "Unschedulable", |p| {
        unschedulable(p).is_some()
    })
    .await;
    assert!(
        unschedulable(&p)
            .unwrap()
            .contains("pod has unbound immediate PersistentVolumeClaims"),
        "{:?}",
        unschedulable(&p)
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(sim.client.clone(), "default");
    let claim = claims.get("uploads").await.unwrap();
    assert_eq!(
        claim.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    assert_eq!(
        claim.metadata.finalizers.unwrap_or_default(),
        ["kubernetes.io/pvc-protection"]
    );
    let ev: Vec<_> =
        Api::<k8s_openapi::api::core::v1::Event>::namespaced(sim.client.clone(), "default")
            .list(&ListParams::default().fields("involvedObject.name=uploads"))
            .await
            .unwrap()
            .items;
    assert!(
        ev.iter()
            .any(|e| e.reason.as_deref() == Some("ProvisioningFailed")
                && e.message.as_deref()
                    == Some("storageclass.storage.k8s.io \"premium-ssd\" not found")),
        "{ev:?}"
    );
}

async fn a_command_the_image_lacks_exits_127_or_fails_to_start(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "bad-command.yaml").await;
    apply(&sim.client, "bad-command-pod.yaml").await;
    // Through the image's shell: dash says so, exit 127.
    let p = pod_where(&sim.client, "app=storefront", "restarted", |p| {
        last_terminated(p).is_some()
    })
    .await;
    assert_eq!(last_terminated(&p), Some((127, "Error".to_string())));
    assert_eq!(
        previous_logs(&sim.client, &p).await,
        "/bin/sh: 1: start-my-server: not found\n"
    );
    // Exec'd directly: the runtime cannot start it, StartError 128.
    let p: Pod = pod_where(&sim.client, "app=storefront-solo", "restarted", |p| {
        last_terminated(p).is_some()
    })
    .await;
    assert_eq!(last_terminated(&p), Some((128, "StartError".to_string())));
}

both_topologies!(
    both_probes_wrong_kill_the_container_and_keep_it_unready,
    a_node_selector_no_node_has_leaves_the_service_without_endpoints,
    a_claim_of_a_missing_class_stays_pending_and_so_does_its_pod,
    a_command_the_image_lacks_exits_127_or_fails_to_start,
);
