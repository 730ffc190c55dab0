//! `explain POD`: what kube-reflexion knows about a pod's workload — the pod's owner read from the cluster as
//! kubectl's configuration reaches it, what fails on the pod now, the workload's open incident, its last fixes, and
//! what was learned for its failure.

use crate::api::{Api, ApiError};
use crate::render;
use k8s_openapi::api::core::v1::Pod;
use reflexion_core::Signature;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("reading pod {namespace}/{name}: {why}")]
    Pod {
        namespace: String,
        name: String,
        why: String,
    },
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// kubectl's rules: `--kubeconfig` or `KUBECONFIG` or `~/.kube/config`, `--context`, and the context's namespace
/// unless `-n` names one; in a pod without a kubeconfig, its service account.
pub async fn client(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<(kube::Client, String), ExplainError> {
    let opts = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config: Result<kube::Config, String> = match kubeconfig {
        Some(path) => match kube::config::Kubeconfig::read_from(path) {
            Ok(kc) => kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        },
        None if context.is_some() => kube::Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| e.to_string()),
        None => kube::Config::infer().await.map_err(|e| e.to_string()),
    };
    let config = config.map_err(ExplainError::Config)?;
    let namespace = config.default_namespace.clone();
    let client =
        reflexion_k8s::client::client(config).map_err(|e| ExplainError::Config(e.to_string()))?;
    Ok((client, namespace))
}

pub async fn explain(
    api: &Api,
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, ExplainError> {
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let pod = pods.get(name).await.map_err(|e| ExplainError::Pod {
        namespace: namespace.into(),
        name: name.into(),
        why: e.to_string(),
    })?;
    let chain = reflexion_k8s::owners::OwnerChains::live(client)
        .chain(&pod)
        .await
        .map_err(|e| ExplainError::Pod {
            namespace: namespace.into(),
            name: name.into(),
            why: format!("its owners: {e}"),
        })?;
    let (kind, workload) = chain
        .last()
        .map_or(("Pod".to_string(), name.to_string()), |l| {
            (l.kind.clone(), l.name.clone())
        });
    let now_failing = reflexion_core::classify::classify(&pod, &[]);
    let mut out = vec![format!(
        "Pod:         {namespace}/{name}   (fixed at {kind} {workload})"
    )];
    let mut signatures = Vec::new();
    match &now_failing {
        Some(f) => {
            let sig = Signature::of(f).class();
            out.push(format!(
                "Now:         failing: {sig} ({}): {}",
                f.reason,
                render::cut(&f.message, 160)
            ));
            signatures.push(sig);
        }
        None => out.push("Now:         no failure shows on the pod".into()),
    }
    let list = api.get("/api/v1/reflexion/incidents?limit=1000").await?;
    let mine: Vec<&Value> = list["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| {
            i["namespace"] == namespace
                && i["workload"]["kind"] == kind.as_str()
                && i["workload"]["name"] == workload.as_str()
        })
        .collect();
    let open = ["resolved", "escalated", "failed", "dismissed"];
    match mine
        .iter()
        .find(|i| !open.contains(&i["state"].as_str().unwrap_or("")))
    {
        Some(i) => out.push(format!(
            "Open:        incident {} {} ({} trials so far); kubectl reflexion show {}",
            render::cut(i["id"].as_str().unwrap_or(""), 40),
            render::cut(i["state"].as_str().unwrap_or(""), 30),
            i["trials"],
            render::cut(i["id"].as_str().unwrap_or(""), 40)
        )),
        None => out.push("Open:        no open incident".into()),
    }
    out.push(format!("Incidents:   {} on this workload", mine.len()));
    let mut fixes = Vec::new();
    for i in mine.iter().filter(|i| i["state"] == "resolved").take(3) {
        let id = i["id"].as_str().unwrap_or("");
        let d = api
            .get(&format!("/api/v1/reflexion/incidents/{}", path_segment(id)))
            .await?;
        if let Some(e) = d["episodes"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .find(|e| e["success"] == true)
        {
            fixes.push(vec![
                render::cut(e["created_at"].as_str().unwrap_or(""), 30),
                render::cut(d["signature"].as_str().unwrap_or(""), 60),
                render::cut(e["source"].as_str().unwrap_or(""), 20),
                render::cut(e["command"].as_str().unwrap_or(""), 140),
            ]);
        }
    }
    for i in &mine {
        if let Some(s) = i["signature"].as_str()
            && !signatures.iter().any(|x| x == s)
        {
            signatures.push(s.to_string());
        }
    }
    if fixes.is_empty() {
        out.push("Last fixes:  none verified".into());
    } else {
        out.push("Last fixes:".into());
        let t = render::table(&["AT", "CAUSE", "BY", "COMMAND"], &fixes);
        out.extend(t.lines().map(|l| format!("  {l}")));
    }
    let mut learned = Vec::new();
    for sig in signatures.iter().take(5) {
        let s = api
            .get(&format!(
                "/api/v1/memory/strategies?error_type={}",
                path_segment(sig)
            ))
            .await?;
        learned.extend(s["strategies"].as_array().into_iter().flatten().cloned());
    }
    if learned.is_empty() {
        out.push("Learned:     no strategy for these failures yet".into());
    } else {
        out.push("Learned:".into());
        out.extend(
            render::strategies(&learned)
                .lines()
                .map(|l| format!("  {l}")),
        );
    }
    Ok(out.join("\n"))
}

/// A value from the API or a person in a URL path segment or query value, percent-encoded.
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_leave_their_segment() {
        assert_eq!(path_segment("9f1c-4a"), "9f1c-4a");
        assert_eq!(path_segment("../memory/clear"), "%2E%2E%2Fmemory%2Fclear");
        assert_eq!(path_segment("a b?c"), "a%20b%3Fc");
    }
}
