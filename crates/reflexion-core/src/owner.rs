//! Which workload owns a pod, and so where a fix belongs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of object that can own a failing pod, plus `Pod` itself for a bare pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkloadKind {
    Pod,
    ReplicaSet,
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    /// Not a workload: a Service whose selector matches no pod is fixed at the Service.
    Service,
}

impl WorkloadKind {
    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "Pod" => Self::Pod,
            "ReplicaSet" => Self::ReplicaSet,
            "Deployment" => Self::Deployment,
            "StatefulSet" => Self::StatefulSet,
            "DaemonSet" => Self::DaemonSet,
            "Job" => Self::Job,
            "CronJob" => Self::CronJob,
            "Service" => Self::Service,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::ReplicaSet => "ReplicaSet",
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::Service => "Service",
        }
    }

    /// The resource name kubectl uses (`deployment/web`).
    pub fn kubectl_name(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::ReplicaSet => "replicaset",
            Self::Deployment => "deployment",
            Self::StatefulSet => "statefulset",
            Self::DaemonSet => "daemonset",
            Self::Job => "job",
            Self::CronJob => "cronjob",
            Self::Service => "service",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The object a fix is applied to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl WorkloadRef {
    pub fn new(kind: WorkloadKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} -n {}",
            self.kind.kubectl_name(),
            self.name,
            self.namespace
        )
    }
}

/// One link of an owner chain, as read from `metadata.ownerReferences` (controller reference only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerLink {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub uid: String,
}

/// The workload a fix belongs at, given the owner chain from the pod upwards (pod first).
///
/// A ReplicaSet owned by a Deployment is fixed at the Deployment; a Job owned by a CronJob at the CronJob; an
/// owner kind we do not know (a custom controller) yields `None`: its controller would undo our change.
pub fn fix_target(namespace: &str, chain: &[OwnerLink]) -> Option<WorkloadRef> {
    let top = chain.last()?;
    let kind = WorkloadKind::parse(&top.kind)?;
    Some(WorkloadRef::new(kind, namespace, top.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(kind: &str, name: &str) -> OwnerLink {
        OwnerLink {
            kind: kind.into(),
            name: name.into(),
            uid: String::new(),
        }
    }

    #[test]
    fn fix_target_is_the_top_of_the_chain() {
        let cases: Vec<(Vec<OwnerLink>, Option<(WorkloadKind, &str)>)> = vec![
            (vec![link("Pod", "p")], Some((WorkloadKind::Pod, "p"))),
            (
                vec![
                    link("Pod", "web-7d9c-x2x"),
                    link("ReplicaSet", "web-7d9c"),
                    link("Deployment", "web"),
                ],
                Some((WorkloadKind::Deployment, "web")),
            ),
            (
                vec![link("Pod", "db-0"), link("StatefulSet", "db")],
                Some((WorkloadKind::StatefulSet, "db")),
            ),
            (
                vec![link("Pod", "p"), link("ReplicaSet", "rs")],
                Some((WorkloadKind::ReplicaSet, "rs")),
            ),
            (
                vec![link("Pod", "p"), link("Job", "j"), link("CronJob", "c")],
                Some((WorkloadKind::CronJob, "c")),
            ),
            (vec![link("Pod", "p"), link("Rollout", "r")], None),
            (vec![], None),
        ];
        for (chain, want) in cases {
            let got = fix_target("ns", &chain).map(|w| (w.kind, w.name));
            assert_eq!(
                got,
                want.map(|(k, n)| (k, n.to_string())),
                "chain {chain:?}"
            );
        }
    }

    #[test]
    fn display_is_kubectl_style() {
        let w = WorkloadRef::new(WorkloadKind::Deployment, "shop", "web");
        assert_eq!(w.to_string(), "deployment/web -n shop");
    }
}
