//! Where a workload's truth lives, and a fix as a change to it: who owns a workload of record (`owner_of_record`:
//! nobody, Flux, Argo CD or Helm, read from its labels and annotations), which file and document of a repository
//! set the fields a typed action changes (`kustomize`), and the line-minimal edit of that YAML (`edit`, on `yaml`'s
//! spans). No I/O: the repository is read through [`kustomize::Tree`].

pub mod edit;
pub mod kustomize;
pub mod yaml;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FLUX_NAME_LABEL: &str = "kustomize.toolkit.fluxcd.io/name";
pub const FLUX_NAMESPACE_LABEL: &str = "kustomize.toolkit.fluxcd.io/namespace";
pub const FLUX_HELM_NAME_LABEL: &str = "helm.toolkit.fluxcd.io/name";
pub const FLUX_HELM_NAMESPACE_LABEL: &str = "helm.toolkit.fluxcd.io/namespace";
pub const ARGO_TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const HELM_RELEASE_ANNOTATION: &str = "meta.helm.sh/release-name";
pub const HELM_NAMESPACE_ANNOTATION: &str = "meta.helm.sh/release-namespace";

/// Who keeps a workload's desired state: where a fix must land so that it stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OwnerOfRecord {
    /// Nobody: the live object is the truth, and a fix is a live change.
    Live,
    /// A Flux `Kustomization` applies it from a Git source.
    Flux { namespace: String, name: String },
    /// An Argo CD `Application` syncs it. `namespace` is the Application's when the tracking id names it (apps in
    /// any namespace), else the Argo CD control plane's. `by_label`: only the instance label says so, which Helm
    /// charts set too; it holds only if that Application exists.
    ArgoCd {
        name: String,
        namespace: Option<String>,
        by_label: bool,
    },
    /// A Helm release (installed by `helm`, or by Flux's helm-controller when `helm_release` names the
    /// HelmRelease): its values are the truth.
    Helm {
        release: String,
        namespace: String,
        helm_release: Option<String>,
    },
}

impl OwnerOfRecord {
    pub fn is_gitops(&self) -> bool {
        matches!(self, Self::Flux { .. } | Self::ArgoCd { .. })
    }

    /// Who it is, for people: `Flux Kustomization flux-system/apps`.
    pub fn describe(&self) -> String {
        match self {
            Self::Live => "nobody (the live object is the truth)".into(),
            Self::Flux { namespace, name } => format!("Flux Kustomization {namespace}/{name}"),
            Self::ArgoCd {
                name, namespace, ..
            } => match namespace {
                Some(ns) => format!("Argo CD Application {ns}/{name}"),
                None => format!("Argo CD Application {name}"),
            },
            Self::Helm {
                release,
                namespace,
                helm_release: Some(hr),
            } => format!("Helm release {namespace}/{release} (Flux HelmRelease {hr})"),
            Self::Helm {
                release, namespace, ..
            } => format!("Helm release {namespace}/{release}"),
        }
    }
}

/// The object whose owner is asked about, as Argo CD's tracking id names it.
pub struct Object<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Who owns an object of record, from its labels and annotations. Flux's labels first (what it applies may carry a
/// chart's `managed-by: Helm` label when the chart was rendered into Git); then a Helm release, known by the
/// annotations `helm install` writes (a rendered chart has the label but not them); then Argo CD's tracking id,
/// which must name this very object (a copied annotation does not); then Argo CD's instance label.
pub fn owner_of_record(
    obj: &Object<'_>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> OwnerOfRecord {
    let label = |k: &str| labels.get(k).filter(|v| !v.is_empty());
    if let (Some(name), Some(namespace)) = (label(FLUX_NAME_LABEL), label(FLUX_NAMESPACE_LABEL)) {
        return OwnerOfRecord::Flux {
            namespace: namespace.clone(),
            name: name.clone(),
        };
    }
    if let Some(hr) = label(FLUX_HELM_NAME_LABEL) {
        let ns = label(FLUX_HELM_NAMESPACE_LABEL).map_or(obj.namespace, String::as_str);
        return OwnerOfRecord::Helm {
            release: annotations
                .get(HELM_RELEASE_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| hr.clone()),
            namespace: annotations
                .get(HELM_NAMESPACE_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| ns.to_string()),
            helm_release: Some(format!("{ns}/{hr}")),
        };
    }
    if let Some(release) = annotations
        .get(HELM_RELEASE_ANNOTATION)
        .filter(|_| label(MANAGED_BY_LABEL).is_some_and(|m| m == "Helm"))
    {
        return OwnerOfRecord::Helm {
            release: release.clone(),
            namespace: annotations
                .get(HELM_NAMESPACE_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| obj.namespace.to_string()),
            helm_release: None,
        };
    }
    if let Some(owner) = annotations
        .get(ARGO_TRACKING_ANNOTATION)
        .and_then(|id| argo_tracking(id, obj))
    {
        return owner;
    }
    if let Some(app) = label(INSTANCE_LABEL) {
        return OwnerOfRecord::ArgoCd {
            name: app.clone(),
            namespace: None,
            by_label: true,
        };
    }
    OwnerOfRecord::Live
}

/// `<app>:<group>/<kind>:<namespace>/<name>` (the app as `<namespace>_<name>` for apps in any namespace), when it
/// names `obj`.
fn argo_tracking(id: &str, obj: &Object<'_>) -> Option<OwnerOfRecord> {
    let mut parts = id.splitn(3, ':');
    let (app, gk, nn) = (parts.next()?, parts.next()?, parts.next()?);
    let (group, kind) = gk.split_once('/')?;
    let (namespace, name) = nn.split_once('/')?;
    if group != obj.group || kind != obj.kind || name != obj.name || namespace != obj.namespace {
        return None;
    }
    let (app_ns, app) = match app.split_once('_') {
        Some((ns, name)) => (Some(ns.to_string()), name),
        None => (None, app),
    };
    (!app.is_empty()).then(|| OwnerOfRecord::ArgoCd {
        name: app.to_string(),
        namespace: app_ns,
        by_label: false,
    })
}

/// The commit a GitOps controller reports as applied: Flux's `main@sha1:<sha>` (or the older `main/<sha>`), Argo
/// CD's bare `<sha>`.
pub fn revision_sha(revision: &str) -> Option<&str> {
    let sha = match revision.rsplit_once("@sha1:") {
        Some((_, sha)) => sha,
        None => revision.rsplit('/').next()?,
    };
    (sha.len() >= 7 && sha.chars().all(|c| c.is_ascii_hexdigit())).then_some(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn owner_of_record_from_labels_and_annotations() {
        let obj = Object {
            group: "apps",
            kind: "Deployment",
            namespace: "shop",
            name: "web",
        };
        let flux = [
            (FLUX_NAME_LABEL, "apps"),
            (FLUX_NAMESPACE_LABEL, "flux-system"),
        ];
        type Pairs<'a> = Vec<(&'a str, &'a str)>;
        let cases: Vec<(Pairs, Pairs, OwnerOfRecord)> = vec![
            (vec![], vec![], OwnerOfRecord::Live),
            (
                flux.to_vec(),
                vec![],
                OwnerOfRecord::Flux {
                    namespace: "flux-system".into(),
                    name: "apps".into(),
                },
            ),
            // A chart rendered into Git keeps its label; Flux applies it.
            (
                [flux.as_slice(), &[(MANAGED_BY_LABEL, "Helm")]].concat(),
                vec![],
                OwnerOfRecord::Flux {
                    namespace: "flux-system".into(),
                    name: "apps".into(),
                },
            ),
            (
                vec![(MANAGED_BY_LABEL, "Helm"), (INSTANCE_LABEL, "shop")],
                vec![
                    (HELM_RELEASE_ANNOTATION, "shop"),
                    (HELM_NAMESPACE_ANNOTATION, "shop"),
                ],
                OwnerOfRecord::Helm {
                    release: "shop".into(),
                    namespace: "shop".into(),
                    helm_release: None,
                },
            ),
            (
                vec![
                    (MANAGED_BY_LABEL, "Helm"),
                    (FLUX_HELM_NAME_LABEL, "web"),
                    (FLUX_HELM_NAMESPACE_LABEL, "flux-system"),
                ],
                vec![(HELM_RELEASE_ANNOTATION, "shop-web")],
                OwnerOfRecord::Helm {
                    release: "shop-web".into(),
                    namespace: "flux-system".into(),
                    helm_release: Some("flux-system/web".into()),
                },
            ),
            (
                vec![],
                vec![(
                    ARGO_TRACKING_ANNOTATION,
                    "guestbook:apps/Deployment:shop/web",
                )],
                OwnerOfRecord::ArgoCd {
                    name: "guestbook".into(),
                    namespace: None,
                    by_label: false,
                },
            ),
            (
                vec![],
                vec![(
                    ARGO_TRACKING_ANNOTATION,
                    "team-a_guestbook:apps/Deployment:shop/web",
                )],
                OwnerOfRecord::ArgoCd {
                    name: "guestbook".into(),
                    namespace: Some("team-a".into()),
                    by_label: false,
                },
            ),
            // Copied from another object: not this one's owner.
            (
                vec![],
                vec![(
                    ARGO_TRACKING_ANNOTATION,
                    "guestbook:apps/Deployment:shop/api",
                )],
                OwnerOfRecord::Live,
            ),
            (
                vec![],
                vec![(ARGO_TRACKING_ANNOTATION, "garbage")],
                OwnerOfRecord::Live,
            ),
            (
                vec![(INSTANCE_LABEL, "guestbook")],
                vec![],
                OwnerOfRecord::ArgoCd {
                    name: "guestbook".into(),
                    namespace: None,
                    by_label: true,
                },
            ),
            // The label without the annotations: a chart rendered by hand, not a release.
            (
                vec![(MANAGED_BY_LABEL, "Helm")],
                vec![],
                OwnerOfRecord::Live,
            ),
        ];
        for (labels, annotations, want) in cases {
            let got = owner_of_record(&obj, &map(&labels), &map(&annotations));
            assert_eq!(got, want, "labels {labels:?} annotations {annotations:?}");
        }
    }

    #[test]
    fn applied_revisions() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for (rev, want) in [
            (format!("main@sha1:{sha}"), Some(sha)),
            (format!("refs/heads/main@sha1:{sha}"), Some(sha)),
            (format!("main/{sha}"), Some(sha)),
            (sha.to_string(), Some(sha)),
            ("main@sha1:".to_string(), None),
            ("v1.0.0".to_string(), None),
        ] {
            assert_eq!(revision_sha(&rev), want, "{rev}");
        }
    }
}
