//! The resource types simcluster serves, with the discovery data kubectl and kube-rs read.

#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub subresources: &'static [&'static str],
    /// Whether `status` is a subresource: then writes to the main resource keep the stored status, and
    /// spec changes bump `metadata.generation`.
    pub has_status: bool,
    /// Field selectors accepted besides `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether a real cluster serves this kind from a CustomResourceDefinition (Flux's, Argo CD's): JSON only, no
    /// protobuf.
    pub fn custom(&self) -> bool {
        matches!(
            self.group,
            "source.toolkit.fluxcd.io" | "kustomize.toolkit.fluxcd.io" | "argoproj.io"
        )
    }

    /// The name a Status message uses (`pods`, `deployments.apps`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        subresources: &["status"],
        has_status: true,
        fields: &["status.phase"],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        subresources: &["status"],
        has_status: true,
        fields: &["spec.unschedulable"],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        subresources: &["status", "log"],
        has_status: true,
        fields: &[
            "spec.nodeName",
            "status.phase",
            "spec.restartPolicy",
            "spec.schedulerName",
            "status.podIP",
        ],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        subresources: &[],
        has_status: false,
        fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        has_status: false,
        fields: &["type"],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        subresources: &["status", "scale"],
        has_status: true,
        fields: &[],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        short_names: &["rs"],
        subresources: &["status", "scale"],
        has_status: true,
        fields: &["status.replicas"],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        subresources: &["status"],
        has_status: true,
        fields: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        short_names: &["pvc"],
        subresources: &["status"],
        has_status: true,
        fields: &[],
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        subresources: &["token"],
        has_status: false,
        fields: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short_names: &["ep"],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
    ResourceType {
        group: "batch",
        version: "v1",
        plural: "jobs",
        singular: "job",
        kind: "Job",
        namespaced: true,
        short_names: &[],
        subresources: &["status"],
        has_status: true,
        fields: &["status.successful"],
    },
    ResourceType {
        group: "batch",
        version: "v1",
        plural: "cronjobs",
        singular: "cronjob",
        kind: "CronJob",
        namespaced: true,
        short_names: &["cj"],
        subresources: &["status"],
        has_status: true,
        fields: &[],
    },
    ResourceType {
        group: "storage.k8s.io",
        version: "v1",
        plural: "storageclasses",
        singular: "storageclass",
        kind: "StorageClass",
        namespaced: false,
        short_names: &["sc"],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
    ResourceType {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        singular: "role",
        kind: "Role",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        short_names: &[],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        short_names: &[],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
    // Enforced on pod creation (`quota`); its status kept by the quota controller.
    ResourceType {
        group: "",
        version: "v1",
        plural: "resourcequotas",
        singular: "resourcequota",
        kind: "ResourceQuota",
        namespaced: true,
        short_names: &["quota"],
        subresources: &["status"],
        has_status: true,
        fields: &[],
    },
    // Stored and served; not enforced (simcluster has no network between pods).
    ResourceType {
        group: "networking.k8s.io",
        version: "v1",
        plural: "networkpolicies",
        singular: "networkpolicy",
        kind: "NetworkPolicy",
        namespaced: true,
        short_names: &["netpol"],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
    // Access reviews: created and answered (`rbac`), never stored.
    ResourceType {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "subjectaccessreviews",
        singular: "subjectaccessreview",
        kind: "SubjectAccessReview",
        namespaced: false,
        short_names: &[],
        subresources: &[],
        has_status: true,
        fields: &[],
    },
    ResourceType {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        namespaced: false,
        short_names: &[],
        subresources: &[],
        has_status: true,
        fields: &[],
    },
    ResourceType {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "localsubjectaccessreviews",
        singular: "localsubjectaccessreview",
        kind: "LocalSubjectAccessReview",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        has_status: true,
        fields: &[],
    },
    // The GitOps kinds, as Flux's and Argo CD's CRDs define them (served here without the CRDs).
    // Served and stored as a real API server does; simcluster runs no controller for them (they make no pods).
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        short_names: &["sts"],
        subresources: &["status"],
        has_status: true,
        fields: &[],
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        short_names: &["ds"],
        subresources: &["status"],
        has_status: true,
        fields: &[],
    },
    ResourceType {
        group: "source.toolkit.fluxcd.io",
        version: "v1",
        plural: "gitrepositories",
        singular: "gitrepository",
        kind: "GitRepository",
        namespaced: true,
        short_names: &["gitrepo"],
        subresources: &["status"],
        has_status: true,
        fields: &[],
    },
    ResourceType {
        group: "kustomize.toolkit.fluxcd.io",
        version: "v1",
        plural: "kustomizations",
        singular: "kustomization",
        kind: "Kustomization",
        namespaced: true,
        short_names: &["ks"],
        subresources: &["status"],
        has_status: true,
        fields: &[],
    },
    // Argo CD's CRD has no status subresource: its controller writes the status with the object.
    ResourceType {
        group: "argoproj.io",
        version: "v1alpha1",
        plural: "applications",
        singular: "application",
        kind: "Application",
        namespaced: true,
        short_names: &["app", "apps"],
        subresources: &[],
        has_status: false,
        fields: &[],
    },
];

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn by_kind(kind: &str) -> Option<&'static ResourceType> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

pub fn pods() -> &'static ResourceType {
    &RESOURCES[2]
}
pub fn events() -> &'static ResourceType {
    &RESOURCES[3]
}
pub fn namespaces() -> &'static ResourceType {
    &RESOURCES[0]
}
pub fn nodes() -> &'static ResourceType {
    &RESOURCES[1]
}
pub fn deployments() -> &'static ResourceType {
    &RESOURCES[6]
}
pub fn replicasets() -> &'static ResourceType {
    &RESOURCES[7]
}
pub fn services() -> &'static ResourceType {
    &RESOURCES[8]
}
pub fn pvcs() -> &'static ResourceType {
    &RESOURCES[9]
}
pub fn leases() -> &'static ResourceType {
    &RESOURCES[10]
}
pub fn service_accounts() -> &'static ResourceType {
    &RESOURCES[11]
}
pub fn jobs() -> &'static ResourceType {
    &RESOURCES[13]
}
pub fn cronjobs() -> &'static ResourceType {
    &RESOURCES[14]
}
pub fn endpoints() -> &'static ResourceType {
    &RESOURCES[12]
}
pub fn storage_classes() -> &'static ResourceType {
    &RESOURCES[15]
}
pub fn git_repositories() -> &'static ResourceType {
    &RESOURCES[RESOURCES.len() - 3]
}
pub fn kustomizations() -> &'static ResourceType {
    &RESOURCES[RESOURCES.len() - 2]
}
pub fn applications() -> &'static ResourceType {
    &RESOURCES[RESOURCES.len() - 1]
}
pub fn endpoint_slices() -> &'static ResourceType {
    &RESOURCES[16]
}
pub fn resource_quotas() -> &'static ResourceType {
    by_kind("ResourceQuota").unwrap_or(&RESOURCES[0])
}

/// `APIResourceList` for one group version.
pub fn api_resource_list(group: &str, version: &str) -> Option<serde_json::Value> {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut out = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = serde_json::json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": VERBS, "shortNames": r.short_names,
        });
        // What `kubectl get all` lists.
        if [
            "pods",
            "services",
            "deployments",
            "replicasets",
            "jobs",
            "cronjobs",
            "statefulsets",
            "daemonsets",
        ]
        .contains(&r.plural)
        {
            entry["categories"] = serde_json::json!(["all"]);
        }
        out.push(entry);
        for sub in r.subresources {
            let verbs: &[&str] = if *sub == "log" {
                &["get"]
            } else {
                &["get", "patch", "update"]
            };
            let mut entry = serde_json::json!({
                "name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": match *sub { "log" => "Pod", "scale" => "Scale", _ => r.kind }, "verbs": verbs,
            });
            if *sub == "scale" {
                entry["group"] = serde_json::json!("autoscaling");
                entry["version"] = serde_json::json!("v1");
            }
            out.push(entry);
        }
    }
    (!out.is_empty()).then(|| serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}))
}

/// The named API groups (everything but the core group).
pub fn groups() -> Vec<&'static str> {
    let mut g: Vec<&str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !g.contains(&r.group) {
            g.push(r.group);
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_point_at_the_right_rows() {
        assert_eq!(
            [
                pods().kind,
                events().kind,
                namespaces().kind,
                nodes().kind,
                deployments().kind,
                replicasets().kind
            ],
            [
                "Pod",
                "Event",
                "Namespace",
                "Node",
                "Deployment",
                "ReplicaSet"
            ]
        );
        assert_eq!(deployments().qualified(), "deployments.apps");
        assert_eq!(
            groups(),
            vec![
                "apps",
                "coordination.k8s.io",
                "batch",
                "storage.k8s.io",
                "discovery.k8s.io",
                "rbac.authorization.k8s.io",
                "networking.k8s.io",
                "authorization.k8s.io",
                "source.toolkit.fluxcd.io",
                "kustomize.toolkit.fluxcd.io",
                "argoproj.io"
            ]
        );
        assert_eq!(
            [
                git_repositories().kind,
                kustomizations().kind,
                applications().kind
            ],
            ["GitRepository", "Kustomization", "Application"]
        );
        assert!(api_resource_list("argoproj.io", "v1alpha1").is_some());
        assert_eq!(
            [
                service_accounts().kind,
                jobs().kind,
                endpoints().kind,
                storage_classes().kind,
                endpoint_slices().kind
            ],
            [
                "ServiceAccount",
                "Job",
                "Endpoints",
                "StorageClass",
                "EndpointSlice"
            ]
        );
        assert_eq!(
            (services().kind, pvcs().kind, leases().kind),
            ("Service", "PersistentVolumeClaim", "Lease")
        );
        assert_eq!(resource_quotas().kind, "ResourceQuota");
        assert_eq!(cronjobs().kind, "CronJob");
        assert!(
            api_resource_list("", "v1")
                .is_some_and(|v| v["resources"].as_array().is_some_and(|a| a.len() > 6))
        );
        assert!(api_resource_list("batch", "v1").is_some());
        assert!(api_resource_list("batch", "v2").is_none());
    }
}
