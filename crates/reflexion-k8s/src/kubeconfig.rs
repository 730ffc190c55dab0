//! Which cluster a binary talks to, and under what name: the watcher names its cluster in every report, and the API
//! serves one or several clusters by name (`--cluster NAME[=KUBECONFIG]`).

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use std::path::Path;

/// The name a cluster reached with the default configuration goes by: the current context of the kubeconfig that
/// `kube::Config::infer` reads first (KUBECONFIG or ~/.kube/config), else `in-cluster`.
pub fn default_cluster_name() -> String {
    Kubeconfig::read()
        .ok()
        .and_then(|k| k.current_context)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "in-cluster".into())
}

/// The configuration of one named cluster: with a path, that kubeconfig's current context; without one, the context
/// named `name` in the default kubeconfig.
pub async fn cluster_config(
    name: &str,
    path: Option<&Path>,
) -> Result<kube::Config, KubeconfigError> {
    match path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p)?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await
        }
        None => {
            kube::Config::from_kubeconfig(&KubeConfigOptions {
                context: Some(name.to_string()),
                ..KubeConfigOptions::default()
            })
            .await
        }
    }
}
