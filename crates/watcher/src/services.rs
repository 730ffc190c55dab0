//! Services that select no pod: no pod fails, so nothing in a pod's status says so. Services and their
//! EndpointSlices are mirrored by reflectors; every few seconds each Service with a selector is looked at, and one
//! that has had no endpoint for the grace period (a Deployment created after its Service is still starting) and whose
//! selector matches no pod at all (pods that exist but are not ready fail on their own) is reported once per
//! selector. A Service whose slices list endpoints but none of them carries one of its ports with a named target
//! (the EndpointSlice controller could resolve the name on no pod) routes nothing on that port: reported once per
//! port and target.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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

/// The (namespace, name) of the Service a slice belongs to.
fn service_of(s: &EndpointSlice) -> Option<(&str, &str)> {
    Some((
        s.metadata.namespace.as_deref()?,
        s.metadata
            .labels
            .as_ref()?
            .get(SERVICE_NAME_LABEL)?
            .as_str(),
    ))
}

/// The Services that select pods by labels and have no endpoint at all (ready or not). ExternalName Services and
/// Services without a selector (their endpoints are someone else's) are not.
pub fn without_endpoints(services: &[&Service], slices: &[&EndpointSlice]) -> Vec<Empty> {
    let mut has: HashMap<(&str, &str), bool> = HashMap::new();
    for s in slices {
        if let Some((ns, name)) = service_of(s) {
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

/// A Service port whose named target no slice resolved: (namespace, name, uid, the port's number and target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrouted {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub port: u16,
    pub target: String,
}

/// The Services with endpoints in their slices whose port with a named target none of the slices carries (slices
/// name their ports after the Service's). A numeric target is always carried, so only names are found here.
pub fn unrouted_ports(services: &[&Service], slices: &[&EndpointSlice]) -> Vec<Unrouted> {
    // (namespace, service) -> the port names its slices with endpoints carry; present only if some have endpoints.
    let mut carried: HashMap<(&str, &str), Vec<String>> = HashMap::new();
    for s in slices.iter().filter(|s| !s.endpoints.is_empty()) {
        if let Some((ns, name)) = service_of(s) {
            carried.entry((ns, name)).or_default().extend(
                s.ports
                    .iter()
                    .flatten()
                    .filter(|p| p.port.is_some())
                    .map(|p| p.name.clone().unwrap_or_default()),
            );
        }
    }
    let mut out = Vec::new();
    for s in services {
        let (Some(spec), Some(ns), Some(name)) = (
            s.spec.as_ref(),
            s.metadata.namespace.as_deref(),
            s.metadata.name.as_deref(),
        ) else {
            continue;
        };
        if spec.selector.as_ref().is_none_or(|m| m.is_empty())
            || spec.type_.as_deref() == Some("ExternalName")
            || s.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let Some(names) = carried.get(&(ns, name)) else {
            continue;
        };
        for p in spec.ports.iter().flatten() {
            let Some(IntOrString::String(target)) = &p.target_port else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            if names.contains(&port_name) {
                continue;
            }
            out.push(Unrouted {
                namespace: ns.to_string(),
                name: name.to_string(),
                uid: s.metadata.uid.clone().unwrap_or_default(),
                port: u16::try_from(p.port).unwrap_or_default(),
                target: target.clone(),
            });
        }
    }
    out
}

/// What the grace period is counted for: a Service (by uid, and what it is waited for), and what about it is wrong
/// now; when that changes the wait starts again.
pub trait Waiting: Clone {
    fn key(&self) -> String;
    fn state(&self) -> String;
}

impl Waiting for Empty {
    fn key(&self) -> String {
        self.uid.clone()
    }
    fn state(&self) -> String {
        self.selector_text()
    }
}

impl Waiting for Unrouted {
    fn key(&self) -> String {
        format!("{}/{}", self.uid, self.port)
    }
    fn state(&self) -> String {
        self.target.clone()
    }
}

/// How long each Service has been wrong, by key and state: a changed selector (or target) starts again.
#[derive(Default)]
pub struct Grace {
    since: HashMap<String, (String, Instant)>,
}

impl Grace {
    /// Those of `wrong` that have been so for `grace`; everything not in `wrong` is forgotten.
    pub fn due<T: Waiting>(&mut self, wrong: Vec<T>, grace: Duration, now: Instant) -> Vec<T> {
        let mut seen = HashMap::with_capacity(wrong.len());
        let mut due = Vec::new();
        for e in wrong {
            let (key, state) = (e.key(), e.state());
            let since = match self.since.remove(&key) {
                Some((was, at)) if was == state => at,
                _ => now,
            };
            if now.duration_since(since) >= grace {
                due.push(e);
            }
            seen.insert(key, (state, since));
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

    fn slice_with(service: &str, endpoints: usize, ports: serde_json::Value) -> EndpointSlice {
        let mut s = slice(service, endpoints);
        s.ports = serde_json::from_value(ports).unwrap_or_else(|e| panic!("ports: {e}"));
        s
    }

    #[test]
    fn a_named_target_no_slice_carries_is_a_port_that_routes_nothing() {
        let services = [
            // The case: pods declare `http`, the Service targets `web`.
            svc(
                "web",
                json!({"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "web"}]}),
            ),
            // Resolved: the slice carries the port.
            svc(
                "api",
                json!({"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}),
            ),
            // A numeric target is always carried, and one that is not must be something else.
            svc(
                "num",
                json!({"selector": {"app": "num"}, "ports": [{"port": 80, "targetPort": 8080}]}),
            ),
            // No endpoints at all: that is a Service selecting nothing, not this.
            svc(
                "empty",
                json!({"selector": {"app": "e"}, "ports": [{"port": 80, "targetPort": "http"}]}),
            ),
            // Two ports, one resolved: the other is reported.
            svc(
                "two",
                json!({"selector": {"app": "two"}, "ports": [
                    {"name": "http", "port": 80, "targetPort": "http"},
                    {"name": "metrics", "port": 9090, "targetPort": "prom"}]}),
            ),
        ];
        let slices = [
            slice_with("web", 1, json!(null)),
            slice_with("api", 1, json!([{"name": "http", "port": 8080}])),
            slice_with("num", 1, json!([{"port": 8080}])),
            slice_with("empty", 0, json!(null)),
            slice_with("two", 2, json!([{"name": "http", "port": 8080}])),
        ];
        let got: Vec<(String, u16, String)> = unrouted_ports(
            &services.iter().collect::<Vec<_>>(),
            &slices.iter().collect::<Vec<_>>(),
        )
        .into_iter()
        .map(|u| (u.name, u.port, u.target))
        .collect();
        assert_eq!(
            got,
            [
                ("web".to_string(), 80, "web".to_string()),
                ("two".to_string(), 9090, "prom".to_string())
            ]
        );
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
            g.due(Vec::<Empty>::new(), grace, t0 + Duration::from_secs(40))
                .is_empty()
        );
        assert!(
            g.due(vec![e("web2")], grace, t0 + Duration::from_secs(41))
                .is_empty()
        );
    }
}
