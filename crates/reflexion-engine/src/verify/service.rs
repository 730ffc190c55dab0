//! A Service is fixed when it has ready endpoints that every one of its ports reaches, and keeps them for the
//! stability window: read from the Service and its EndpointSlices (`kubernetes.io/service-name`) every half second.
//! A slice without one of the Service's ports (a named target no pod declares) routes nothing for it, so its
//! endpoints do not count. A read that fails is unobserved time, not stable time: the window starts again.

use super::Verification;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};
use reflexion_core::owner::WorkloadRef;
use std::time::Duration;
use tokio::time::Instant;

const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Ready endpoints across a Service's slices that carry every port named in `ports` (a Service's port names; an
/// unnamed port is `""`). An endpoint whose `ready` condition is absent counts as ready, as the API documents it.
pub(super) fn ready_endpoints(slices: &[EndpointSlice], ports: &[String]) -> usize {
    let routes_all = |s: &&EndpointSlice| {
        ports.iter().all(|want| {
            s.ports
                .iter()
                .flatten()
                .any(|p| p.name.as_deref().unwrap_or("") == want && p.port.is_some())
        })
    };
    slices
        .iter()
        .filter(routes_all)
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .count()
}

pub(super) async fn verify_service(
    client: &Client,
    target: &WorkloadRef,
    window: Duration,
    timeout: Duration,
) -> Verification {
    let start = Instant::now();
    let deadline = start + timeout;
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &target.namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &target.namespace);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={}", target.name));
    let (mut ready_since, mut first_ready): (Option<Instant>, Option<Instant>) = (None, None);
    let mut last = "no observation of the Service's endpoints yet".to_string();
    loop {
        let now = Instant::now();
        if let Some(since) = ready_since
            && now >= since + window
        {
            return Verification {
                verified: true,
                detail: format!(
                    "{target} has ready endpoints, stable for {}s ({last})",
                    window.as_secs_f64()
                ),
                ready_after_ms: first_ready.map(|t| (t - start).as_millis() as u64),
                stable_for_secs: window.as_secs_f64(),
            };
        }
        if now >= deadline {
            return Verification {
                verified: false,
                detail: format!(
                    "{target} did not keep ready endpoints for {}s within {}s: {last}",
                    window.as_secs_f64(),
                    timeout.as_secs()
                ),
                ready_after_ms: first_ready.map(|t| (t - start).as_millis() as u64),
                stable_for_secs: ready_since.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            };
        }
        let read = match services.get(&target.name).await {
            Ok(svc) => api.list(&lp).await.map(|list| (svc, list)),
            Err(e) => Err(e),
        };
        match read {
            Ok((svc, list)) => {
                let names: Vec<String> = svc
                    .spec
                    .and_then(|s| s.ports)
                    .into_iter()
                    .flatten()
                    .map(|p| p.name.unwrap_or_default())
                    .collect();
                let n = ready_endpoints(&list.items, &names);
                last = format!("{n} ready endpoint{}", if n == 1 { "" } else { "s" });
                if n == 0 {
                    ready_since = None;
                } else if ready_since.is_none() {
                    ready_since = Some(Instant::now());
                    first_ready.get_or_insert_with(Instant::now);
                }
            }
            Err(e) => {
                last = format!("reading the Service or its EndpointSlices failed: {e}");
                ready_since = None;
            }
        }
        tokio::time::sleep(LOOK_EVERY.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(ready: &[Option<bool>]) -> EndpointSlice {
        with_ports(ready, serde_json::json!([{"name": "http", "port": 80}]))
    }

    fn with_ports(ready: &[Option<bool>], ports: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "addressType": "IPv4",
            "metadata": {"name": "s"},
            "ports": ports,
            "endpoints": ready.iter().map(|r| {
                let mut e = serde_json::json!({"addresses": ["10.0.0.1"]});
                if let Some(r) = r { e["conditions"] = serde_json::json!({"ready": r}); }
                e
            }).collect::<Vec<_>>(),
        }))
        .unwrap_or_else(|e| panic!("slice: {e}"))
    }

    #[test]
    fn ready_endpoints_are_counted_across_slices() {
        let cases = [
            (vec![], 0),
            (vec![slice(&[])], 0),
            (vec![slice(&[Some(false)])], 0),
            (vec![slice(&[Some(true), Some(false)])], 1),
            (vec![slice(&[None]), slice(&[Some(true)])], 2),
        ];
        let http = ["http".to_string()];
        for (slices, want) in cases {
            assert_eq!(ready_endpoints(&slices, &http), want);
        }
        // A slice without a port the Service has (its named target resolved on no pod) routes nothing for it.
        let unresolved = [with_ports(&[Some(true)], serde_json::Value::Null)];
        assert_eq!(ready_endpoints(&unresolved, &http), 0);
        let one_of_two = [slice(&[Some(true)])];
        assert_eq!(
            ready_endpoints(&one_of_two, &["http".into(), "metrics".into()]),
            0
        );
        let unnamed = [with_ports(
            &[Some(true)],
            serde_json::json!([{"port": 8080}]),
        )];
        assert_eq!(ready_endpoints(&unnamed, &[String::new()]), 1);
        assert_eq!(ready_endpoints(&unnamed, &[]), 1, "a Service without ports");
    }
}
