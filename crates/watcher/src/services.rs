//! Services that select no pod: no pod fails, so nothing in a pod's status says so. Services and their
//! EndpointSlices are mirrored by reflectors; every few seconds each Service with a selector is looked at, and one
//! that has had no endpoint for the grace period (a Deployment created after its Service is still starting) and whose
//! selector matches no pod at all (pods that exist but are not ready fail on their own) is reported once per
//! selector.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service with a selector and no endpoint in any of its slices: (namespace, name, uid, selector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Empty {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub selector: BTreeMap<String, String>,
}

impl Empty {
    /// The selector as a label selector (`app=web,tier=x`).
    pub fn selector_text(&self) -> String {
        self.selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The Services that select pods by labels and have no endpoint at all (ready or not). ExternalName Services and
/// Services without a selector (their endpoints are someone else's) are not.
pub fn without_endpoints(services: &[&Service], slices: &[&EndpointSlice]) -> Vec<Empty> {
    let mut has: HashMap<(&str, &str), bool> = HashMap::new();
    for s in slices {
        if let (Some(ns), Some(name)) = (
            s.metadata.namespace.as_deref(),
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str),
        ) {
            *has.entry((ns, name)).or_default() |= !s.endpoints.is_empty();
        }
    }
    services
        .iter()
        .filter_map(|s| {
            let spec = s.spec.as_ref()?;
            let selector = spec.selector.clone().filter(|m| !m.is_empty())?;
            if spec.type_.as_deref() == Some("ExternalName")
                || s.metadata.deletion_timestamp.is_some()
            {
                return None;
            }
            let (ns, name) = (s.metadata.namespace.clone()?, s.metadata.name.clone()?);
            if has
                .get(&(ns.as_str(), name.as_str()))
                .copied()
                .unwrap_or(false)
            {
                return None;
            }
            Some(Empty {
                namespace: ns,
                name,
                uid: s.metadata.uid.clone().unwrap_or_default(),
                selector,
            })
        })
        .collect()
}

/// How long each Service has been without endpoints, by uid and selector: a changed selector starts again.
#[derive(Default)]
pub struct Grace {
    since: HashMap<String, (BTreeMap<String, String>, Instant)>,
}

impl Grace {
    /// Those of `empty` that have been empty for `grace`; every Service not in `empty` is forgotten.
    pub fn due(&mut self, empty: Vec<Empty>, grace: Duration, now: Instant) -> Vec<Empty> {
        let mut seen = HashMap::with_capacity(empty.len());
        let mut due = Vec::new();
        for e in empty {
            let since = match self.since.remove(&e.uid) {
                Some((selector, at)) if selector == e.selector => at,
                _ => now,
            };
            if now.duration_since(since) >= grace {
                due.push(e.clone());
            }
            seen.insert(e.uid.clone(), (e.selector, since));
        }
        self.since = seen;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "shop", "uid": format!("u-{name}")}, "spec": spec}))
            .unwrap_or_else(|e| panic!("service: {e}"))
    }

    fn slice(service: &str, endpoints: usize) -> EndpointSlice {
        serde_json::from_value(json!({"addressType": "IPv4",
            "metadata": {"name": format!("{service}-x"), "namespace": "shop", "labels": {SERVICE_NAME_LABEL: service}},
            "endpoints": (0..endpoints).map(|_| json!({"addresses": ["10.0.0.1"], "conditions": {"ready": false}})).collect::<Vec<_>>()}))
        .unwrap_or_else(|e| panic!("slice: {e}"))
    }

    #[test]
    fn services_without_any_endpoint_are_the_ones_selecting_nothing() {
        let services = [
            svc("web", json!({"selector": {"app": "web"}})),
            svc("api", json!({"selector": {"app": "api"}})),
            svc("no-slice-yet", json!({"selector": {"app": "x"}})),
            svc("kubernetes", json!({})),
            svc("empty-selector", json!({"selector": {}})),
            svc(
                "ext",
                json!({"type": "ExternalName", "externalName": "example.com", "selector": {"a": "b"}}),
            ),
        ];
        // `api` has an endpoint that is not ready: its pods exist and fail on their own.
        let slices = [slice("web", 0), slice("api", 1), slice("api", 0)];
        let got: Vec<String> = without_endpoints(
            &services.iter().collect::<Vec<_>>(),
            &slices.iter().collect::<Vec<_>>(),
        )
        .into_iter()
        .map(|e| e.name)
        .collect();
        assert_eq!(got, ["web", "no-slice-yet"]);
    }

    #[test]
    fn a_service_is_due_after_the_grace_and_again_only_with_another_selector() {
        let e = |app: &str| Empty {
            namespace: "shop".into(),
            name: "web".into(),
            uid: "u".into(),
            selector: BTreeMap::from([("app".to_string(), app.to_string())]),
        };
        let (mut g, t0, grace) = (Grace::default(), Instant::now(), Duration::from_secs(30));
        assert!(g.due(vec![e("web")], grace, t0).is_empty());
        assert!(
            g.due(vec![e("web")], grace, t0 + Duration::from_secs(29))
                .is_empty()
        );
        assert_eq!(
            g.due(vec![e("web")], grace, t0 + Duration::from_secs(30))
                .len(),
            1
        );
        // Another selector: the wait starts again.
        assert!(
            g.due(vec![e("web2")], grace, t0 + Duration::from_secs(31))
                .is_empty()
        );
        // Endpoints meanwhile: forgotten, and the wait starts again.
        assert!(
            g.due(vec![], grace, t0 + Duration::from_secs(40))
                .is_empty()
        );
        assert!(
            g.due(vec![e("web2")], grace, t0 + Duration::from_secs(41))
                .is_empty()
        );
    }
}
