//! What a container reaches over the cluster network, as busybox's `wget` sees it: a Service by its DNS name (in
//! the pod's namespace, `NAME.NS`, `NAME.NS.svc`, `NAME.NS.svc.cluster.local`) or a pod by IP. A Service's port
//! leads to a ready endpoint of its EndpointSlices, and that pod must serve the target port: kube-proxy rejects a
//! connection to a Service with no ready endpoint, which the client sees as "Connection refused". And the API
//! server, as an in-cluster client reaches it with the token the kubelet mounted for the pod (`tokens`): what it
//! may list is what RBAC lets that ServiceAccount list (`rbac`).

use crate::catalog::Serves;
use crate::resources;
use crate::store::Store;
use serde_json::Value;
use std::collections::HashMap;

/// The network as a container sees it.
pub trait Network {
    /// GET `http://host:port/path`: `Ok` if something answers 200, else busybox wget's error line.
    fn get(&self, host: &str, port: u16, path: &str) -> Result<(), String>;
    /// List `resource` (`pods`, `deployments.apps`) in the pod's namespace as an in-cluster client does: how many
    /// there are, or the error the client reports (the API server's message for a refusal).
    fn list(&self, resource: &str) -> Result<usize, String>;
}

/// Where an in-cluster client finds its credentials.
const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// No network at all: every name is unknown.
pub struct Offline;

impl Network for Offline {
    fn get(&self, host: &str, _: u16, _: &str) -> Result<(), String> {
        Err(format!("wget: bad address '{host}'"))
    }
    fn list(&self, _: &str) -> Result<usize, String> {
        Err("Get \"https://kubernetes.default.svc/api\": dial tcp: lookup kubernetes.default.svc: no such host".into())
    }
}

/// The cluster's network from a pod of namespace `namespace`: Services and EndpointSlices from the store, and what
/// each pod IP serves now (the kubelet's running processes).
pub struct Cluster<'a> {
    pub store: &'a Store,
    pub namespace: &'a str,
    pub serving: &'a HashMap<String, Vec<Serves>>,
    pub tokens: &'a crate::tokens::Issuer,
    /// The ServiceAccount token mounted in the pod, if any.
    pub token: Option<String>,
}

fn refused(ip: &str) -> String {
    format!("wget: can't connect to remote host ({ip}): Connection refused")
}

impl Cluster<'_> {
    /// What a pod IP answers on a port.
    fn at_pod(&self, ip: &str, port: u16, path: &str) -> Result<(), String> {
        let served = self
            .serving
            .get(ip)
            .and_then(|s| s.iter().find(|s| s.port == port))
            .ok_or_else(|| refused(ip))?;
        match &served.paths {
            Some(paths) if !paths.iter().any(|p| p == path) => {
                Err("wget: server returned error: HTTP/1.1 404 Not Found".into())
            }
            _ => Ok(()),
        }
    }

    /// The Service a DNS name resolves to, searched as a pod's resolv.conf does.
    fn service(&self, host: &str) -> Option<Value> {
        let parts: Vec<&str> = host.trim_end_matches('.').split('.').collect();
        let (name, ns) = match parts.as_slice() {
            [name] => (*name, self.namespace),
            [name, ns] | [name, ns, "svc"] | [name, ns, "svc", "cluster", "local"] => (*name, *ns),
            _ => return None,
        };
        self.store.get(resources::services(), ns, name).ok()
    }
}

impl Network for Cluster<'_> {
    fn list(&self, resource: &str) -> Result<usize, String> {
        let token = self
            .token
            .as_deref()
            .ok_or_else(|| format!("open {TOKEN_PATH}: no such file or directory"))?;
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        let rt = resources::RESOURCES
            .iter()
            .find(|r| r.plural == plural && r.group == group)
            .ok_or_else(|| {
                format!("the server could not find the requested resource ({resource})")
            })?;
        let user = self
            .tokens
            .authenticate(self.store, token)
            .map_err(|e| e.message)?;
        let asked = crate::rbac::Attributes {
            verb: "list".into(),
            group: group.into(),
            resource: plural.into(),
            namespace: self.namespace.into(),
            ..Default::default()
        };
        crate::rbac::authorize(self.store, &user, &asked).map_err(|e| e.message)?;
        Ok(self.store.list(rt, Some(self.namespace)).0.len())
    }

    fn get(&self, host: &str, port: u16, path: &str) -> Result<(), String> {
        if host.parse::<std::net::Ipv4Addr>().is_ok() {
            return self.at_pod(host, port, path);
        }
        let svc = self
            .service(host)
            .ok_or_else(|| format!("wget: bad address '{host}'"))?;
        let ip = svc["spec"]["clusterIP"]
            .as_str()
            .unwrap_or("None")
            .to_string();
        let Some(sp) = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        else {
            return Err(refused(&ip));
        };
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = svc["metadata"]["name"].as_str().unwrap_or_default();
        let (slices, _) = self.store.list(resources::endpoint_slices(), Some(ns));
        let mut last = refused(&ip);
        for slice in slices
            .iter()
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == name)
        {
            // The slice's port of the Service port's name carries the resolved target port.
            let target = slice["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"].as_str().unwrap_or("") == sp["name"].as_str().unwrap_or(""))
                .and_then(|p| p["port"].as_u64())
                .and_then(|p| u16::try_from(p).ok());
            let Some(target) = target else { continue };
            for e in slice["endpoints"].as_array().into_iter().flatten() {
                if e["conditions"]["ready"] == false {
                    continue;
                }
                for addr in e["addresses"].as_array().into_iter().flatten() {
                    match self.at_pod(addr.as_str().unwrap_or_default(), target, path) {
                        Ok(()) => return Ok(()),
                        // The pod answered, or refused: either way the client sees it through the Service's IP.
                        Err(why) => last = why.replace(addr.as_str().unwrap_or_default(), &ip),
                    }
                }
            }
        }
        Err(last)
    }
}

/// `wget [-q] [-O FILE] [-T SEC] URL`: the host, port and path of its URL (http only, as busybox without TLS).
pub fn wget_url(words: &[String]) -> Option<(String, u16, String)> {
    let mut skip_next = false;
    let url = words.iter().skip(1).find(|w| {
        if std::mem::take(&mut skip_next) {
            return false;
        }
        if matches!(w.as_str(), "-O" | "-T" | "-U" | "--header" | "-P") {
            skip_next = true;
            return false;
        }
        !w.starts_with('-')
    })?;
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    Some((host.to_string(), port, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wget_urls_are_read_like_busybox() {
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let cases = [
            ("wget -qO- nginx", Some(("nginx", 80, "/"))),
            (
                "wget -q -O - http://web.shop:8080/healthz",
                Some(("web.shop", 8080, "/healthz")),
            ),
            (
                "wget -O /tmp/x -T 2 10.244.0.5/",
                Some(("10.244.0.5", 80, "/")),
            ),
            (
                "wget --spider api.shop.svc.cluster.local",
                Some(("api.shop.svc.cluster.local", 80, "/")),
            ),
            ("wget -q", None),
        ];
        for (cmd, want) in cases {
            let got = wget_url(&w(cmd));
            assert_eq!(
                got.as_ref()
                    .map(|(h, p, path)| (h.as_str(), *p, path.as_str())),
                want,
                "{cmd}"
            );
        }
    }
}
