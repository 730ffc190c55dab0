//! Who owns a workload of record, read from the cluster: the workload's labels and annotations, then the GitOps
//! object that applies it and the Git source that object reads (Flux: Kustomization -> GitRepository; Argo CD:
//! Application); and the revision that controller says it applied. Read-only: kube-reflexion never writes these.

use super::{Cluster, ClusterError};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use reflexion_core::gitops::{Object, OwnerOfRecord, owner_of_record};
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_gitops::Source;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The GitOps object that applies a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Controller {
    /// A Flux Kustomization.
    Flux { namespace: String, name: String },
    /// An Argo CD Application.
    Argo { namespace: String, name: String },
}

impl std::fmt::Display for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flux { namespace, name } => write!(f, "Flux Kustomization {namespace}/{name}"),
            Self::Argo { namespace, name } => write!(f, "Argo CD Application {namespace}/{name}"),
        }
    }
}

/// Where a workload's truth lives, as far as the cluster tells.
#[derive(Debug, Clone, Serialize)]
pub struct OwnerRecord {
    pub owner: OwnerOfRecord,
    pub controller: Option<Controller>,
    /// The Git source, when there is one kube-reflexion can commit to.
    pub source: Option<Source>,
    /// Why there is none (a tag or commit is tracked, a chart, an OCI artifact...).
    pub note: Option<String>,
    /// An Argo CD revision to resolve to a branch (`HEAD`, or a name that may be a branch).
    #[serde(skip)]
    pub revision: Option<String>,
}

impl OwnerRecord {
    fn live(owner: OwnerOfRecord) -> Self {
        Self {
            owner,
            controller: None,
            source: None,
            note: None,
            revision: None,
        }
    }
}

/// What a controller says it applied.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The revision applied and in sync (Flux `main@sha1:<sha>`, Argo CD `<sha>`).
    pub revision: Option<String>,
    /// The revision its last attempt failed on, and why.
    pub failed: Option<(String, String)>,
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub(super) fn workload_resource(kind: WorkloadKind) -> (ApiResource, &'static str) {
    let (g, v, k, p) = match kind {
        WorkloadKind::Pod => ("", "v1", "Pod", "pods"),
        WorkloadKind::ReplicaSet => ("apps", "v1", "ReplicaSet", "replicasets"),
        WorkloadKind::Deployment => ("apps", "v1", "Deployment", "deployments"),
        WorkloadKind::StatefulSet => ("apps", "v1", "StatefulSet", "statefulsets"),
        WorkloadKind::DaemonSet => ("apps", "v1", "DaemonSet", "daemonsets"),
        WorkloadKind::Job => ("batch", "v1", "Job", "jobs"),
        WorkloadKind::CronJob => ("batch", "v1", "CronJob", "cronjobs"),
        WorkloadKind::Service => ("", "v1", "Service", "services"),
    };
    (resource(g, v, k, p), g)
}

fn flux_kustomizations() -> ApiResource {
    resource(
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
        "kustomizations",
    )
}
fn flux_git_repositories() -> ApiResource {
    resource(
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
    )
}
fn argo_applications() -> ApiResource {
    resource("argoproj.io", "v1alpha1", "Application", "applications")
}

/// A GitOps object, or `None` when it (or its kind) does not exist.
async fn get(
    cluster: &Cluster,
    ar: &ApiResource,
    ns: &str,
    name: &str,
) -> Result<Option<Value>, ClusterError> {
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client().clone(), ns, ar);
    match api.get_opt(name).await {
        Ok(o) => Ok(o.map(|o| serde_json::to_value(o).unwrap_or(Value::Null))),
        // The kind is not served: Flux or Argo CD is not installed.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))?
        .as_str()
        .filter(|s| !s.is_empty())
}

impl Cluster {
    /// Who owns the workload of record, and the Git source a fix to it goes to.
    pub async fn owner_of_record(
        &self,
        target: &WorkloadRef,
        argocd_namespace: &str,
    ) -> Result<OwnerRecord, ClusterError> {
        let (ar, group) = workload_resource(target.kind);
        let Some(obj) = get(self, &ar, &target.namespace, &target.name).await? else {
            return Err(ClusterError::NotFound(target.to_string()));
        };
        let map = |field: &str| -> std::collections::BTreeMap<String, String> {
            serde_json::from_value(obj["metadata"][field].clone()).unwrap_or_default()
        };
        let owner = owner_of_record(
            &Object {
                group,
                kind: target.kind.as_str(),
                namespace: &target.namespace,
                name: &target.name,
            },
            &map("labels"),
            &map("annotations"),
        );
        match &owner {
            OwnerOfRecord::Flux { namespace, name } => {
                self.flux_source(owner.clone(), namespace, name).await
            }
            OwnerOfRecord::ArgoCd {
                name,
                namespace,
                by_label,
            } => {
                let ns = namespace.as_deref().unwrap_or(argocd_namespace);
                self.argo_source(owner.clone(), ns, name, *by_label).await
            }
            _ => Ok(OwnerRecord::live(owner)),
        }
    }

    async fn flux_source(
        &self,
        owner: OwnerOfRecord,
        ns: &str,
        name: &str,
    ) -> Result<OwnerRecord, ClusterError> {
        let controller = Controller::Flux {
            namespace: ns.into(),
            name: name.into(),
        };
        let mut rec = OwnerRecord {
            controller: Some(controller.clone()),
            ..OwnerRecord::live(owner)
        };
        let Some(k) = get(self, &flux_kustomizations(), ns, name).await? else {
            rec.note = Some(format!(
                "{controller} is named by the workload's labels but does not exist"
            ));
            return Ok(rec);
        };
        let kind = s(&k, &["spec", "sourceRef", "kind"]).unwrap_or("GitRepository");
        let src_ns = s(&k, &["spec", "sourceRef", "namespace"]).unwrap_or(ns);
        let src_name = s(&k, &["spec", "sourceRef", "name"]).unwrap_or_default();
        if kind != "GitRepository" {
            rec.note = Some(format!(
                "{controller} applies a {kind}, not a Git repository"
            ));
            return Ok(rec);
        }
        let Some(repo) = get(self, &flux_git_repositories(), src_ns, src_name).await? else {
            rec.note = Some(format!(
                "GitRepository {src_ns}/{src_name} of {controller} does not exist"
            ));
            return Ok(rec);
        };
        let reference = &repo["spec"]["ref"];
        let branch = match (
            s(reference, &["branch"]),
            reference
                .as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        ) {
            (Some(b), _) => b.to_string(),
            (None, Some(keys)) if !keys.is_empty() => {
                rec.note = Some(format!(
                    "GitRepository {src_ns}/{src_name} follows a {} rather than a branch: change its source by hand",
                    keys.join("/")
                ));
                return Ok(rec);
            }
            // Flux's default.
            _ => "master".to_string(),
        };
        rec.source = Some(Source {
            url: s(&repo, &["spec", "url"]).unwrap_or_default().to_string(),
            branch,
            path: s(&k, &["spec", "path"]).unwrap_or("./").to_string(),
        });
        Ok(rec)
    }

    async fn argo_source(
        &self,
        owner: OwnerOfRecord,
        ns: &str,
        name: &str,
        by_label: bool,
    ) -> Result<OwnerRecord, ClusterError> {
        let controller = Controller::Argo {
            namespace: ns.into(),
            name: name.into(),
        };
        let Some(app) = get(self, &argo_applications(), ns, name).await? else {
            if by_label {
                // The instance label alone, and no such Application: a chart's label, nobody's GitOps.
                return Ok(OwnerRecord::live(OwnerOfRecord::Live));
            }
            let mut rec = OwnerRecord::live(owner);
            rec.controller = Some(controller.clone());
            rec.note = Some(format!(
                "{controller} is named by the workload's tracking id but does not exist"
            ));
            return Ok(rec);
        };
        let mut rec = OwnerRecord {
            controller: Some(controller.clone()),
            ..OwnerRecord::live(owner)
        };
        let src = &app["spec"]["source"];
        if !src.is_object() {
            rec.note = Some(format!(
                "{controller} has several sources: change them by hand"
            ));
            return Ok(rec);
        }
        if src.get("chart").is_some_and(|c| !c.is_null())
            || src.get("helm").is_some_and(|h| !h.is_null())
        {
            rec.note = Some(format!(
                "{controller} renders a Helm chart: change its values by hand"
            ));
            return Ok(rec);
        }
        rec.revision = Some(s(src, &["targetRevision"]).unwrap_or("HEAD").to_string());
        rec.source = Some(Source {
            url: s(src, &["repoURL"]).unwrap_or_default().to_string(),
            branch: String::new(),
            path: s(src, &["path"]).unwrap_or(".").to_string(),
        });
        Ok(rec)
    }

    /// What the controller says it applied.
    pub async fn applied(&self, controller: &Controller) -> Result<Applied, ClusterError> {
        Ok(match controller {
            Controller::Flux { namespace, name } => {
                let Some(k) = get(self, &flux_kustomizations(), namespace, name).await? else {
                    return Err(ClusterError::NotFound(controller.to_string()));
                };
                let st = &k["status"];
                let ready = st["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "Ready");
                let failed = match (ready, s(st, &["lastAttemptedRevision"])) {
                    (Some(c), Some(rev)) if c["status"] == "False" => Some((
                        rev.to_string(),
                        s(c, &["message"]).unwrap_or_default().to_string(),
                    )),
                    _ => None,
                };
                Applied {
                    revision: s(st, &["lastAppliedRevision"]).map(String::from),
                    failed,
                }
            }
            Controller::Argo { namespace, name } => {
                let Some(app) = get(self, &argo_applications(), namespace, name).await? else {
                    return Err(ClusterError::NotFound(controller.to_string()));
                };
                let st = &app["status"];
                let synced = st["sync"]["status"] == "Synced";
                let failed = (st["operationState"]["phase"] == "Failed").then(|| {
                    (
                        s(st, &["operationState", "syncResult", "revision"])
                            .unwrap_or_default()
                            .to_string(),
                        s(st, &["operationState", "message"])
                            .unwrap_or_default()
                            .to_string(),
                    )
                });
                Applied {
                    revision: synced
                        .then(|| s(st, &["sync", "revision"]).map(String::from))
                        .flatten(),
                    failed,
                }
            }
        })
    }
}
