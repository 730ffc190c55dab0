//! The pod as the watch stream holds it: only what classification, owner resolution and deduplication read — the
//! name, namespace, uid, resourceVersion, deletion timestamp, owner references and the two revision labels; each
//! container's name and image, the node; the whole status. managedFields, annotations, other labels and the rest of
//! the spec are skipped while parsing, never allocated: at 10,000 pods they were most of the watcher's memory. The
//! report carries this projection; the API reads the rest live.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The labels deduplication reads (a revision of the pod's template).
pub const REVISION_LABELS: [&str; 2] = ["pod-template-hash", "controller-revision-hash"];

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WatchedPod {
    #[serde(deserialize_with = "meta")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "spec")]
    pub spec: Option<PodSpec>,
    #[serde(default)]
    pub status: Option<PodStatus>,
}

impl WatchedPod {
    /// The projection as a Pod, for the code that reads Pods (classification, owner chains).
    pub fn to_pod(&self) -> Pod {
        Pod {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status: self.status.clone(),
        }
    }
}

impl kube::Resource for WatchedPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Pod")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("pods")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    deletion_timestamp: Option<Time>,
    owner_references: Option<Vec<OwnerReference>>,
    #[serde(default, deserialize_with = "revision_labels")]
    labels: Option<BTreeMap<String, String>>,
}

fn meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = Meta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        deletion_timestamp: m.deletion_timestamp,
        owner_references: m.owner_references,
        labels: m.labels,
        ..ObjectMeta::default()
    })
}

/// Only the revision labels are kept; the others are read and dropped one by one.
fn revision_labels<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of labels")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                let v: Cow<'de, str> = map.next_value()?;
                if REVISION_LABELS.contains(&k.as_ref()) {
                    kept.insert(k.into_owned(), v.into_owned());
                }
            }
            Ok(Some(kept))
        }
    }
    d.deserialize_any(Visitor)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    containers: Vec<NamedImage>,
    #[serde(default)]
    init_containers: Option<Vec<NamedImage>>,
    #[serde(default)]
    node_name: Option<String>,
}

#[derive(Deserialize)]
struct NamedImage {
    name: String,
    image: Option<String>,
}

impl From<NamedImage> for Container {
    fn from(c: NamedImage) -> Self {
        Container {
            name: c.name,
            image: c.image,
            ..Container::default()
        }
    }
}

fn spec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PodSpec>, D::Error> {
    Ok(Option::<Spec>::deserialize(d)?.map(|s| PodSpec {
        containers: s.containers.into_iter().map(Container::from).collect(),
        init_containers: s
            .init_containers
            .map(|cs| cs.into_iter().map(Container::from).collect()),
        node_name: s.node_name,
        ..PodSpec::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reflexion_core::classify;
    use serde_json::json;

    fn full() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-7d9c-x2x", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "web", "pod-template-hash": "7d9c"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(4000)},
                "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c",
                                     "uid": "rs-1", "controller": true}]
            },
            "spec": {
                "containers": [{"name": "web", "image": "nginx:1.27.O", "env": [{"name": "A", "value": "b"}],
                                "ports": [{"containerPort": 80}]}],
                "volumes": [{"name": "v", "emptyDir": {}}], "nodeName": "node-a"
            },
            "status": {
                "phase": "Pending",
                "containerStatuses": [{"name": "web", "image": "nginx:1.27.O", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": "Back-off pulling image \"nginx:1.27.O\""}}}]
            }
        })
    }

    #[test]
    fn the_projection_keeps_what_classification_reads_and_nothing_else() {
        let whole: Pod = serde_json::from_value(full()).unwrap_or_default();
        let watched: WatchedPod = serde_json::from_value(full()).unwrap_or_default();
        let pod = watched.to_pod();
        assert_eq!(classify(&pod, &[]), classify(&whole, &[]));
        assert!(classify(&pod, &[]).is_some());
        let m = &pod.metadata;
        assert_eq!(
            (m.name.as_deref(), m.namespace.as_deref(), m.uid.as_deref()),
            (Some("web-7d9c-x2x"), Some("shop"), Some("u-1"))
        );
        assert_eq!(m.owner_references, whole.metadata.owner_references);
        assert_eq!(
            m.labels,
            Some(BTreeMap::from([(
                "pod-template-hash".into(),
                "7d9c".into()
            )]))
        );
        assert_eq!(
            (m.annotations.as_ref(), m.managed_fields.as_ref()),
            (None, None)
        );
        let spec = pod.spec.unwrap_or_default();
        assert_eq!(spec.containers[0].image.as_deref(), Some("nginx:1.27.O"));
        assert_eq!(
            (
                spec.containers[0].env.as_ref(),
                spec.volumes.as_ref(),
                spec.node_name.as_deref()
            ),
            (None, None, Some("node-a"))
        );
        assert_eq!(pod.status, whole.status);
    }

    /// The watcher reports what it classifies from the projection: every crash and OOM fixture, in the classic and
    /// the current kubelet's form and a cgroup v1 node's, is detected as from the whole pod.
    #[test]
    fn crashes_and_oom_kills_are_detected_in_every_kubelets_form() {
        let cases: Vec<serde_json::Value> = serde_json::from_str(include_str!(
            "../../reflexion-core/tests/fixtures/pods.json"
        ))
        .unwrap_or_default();
        let mut forms = std::collections::BTreeSet::new();
        for case in &cases {
            let kind = case["expect"]["kind"].as_str().unwrap_or_default();
            if kind != "crash_loop" && kind != "oom_killed" {
                continue;
            }
            let name = case["name"].as_str().unwrap_or_default();
            let whole: Pod = serde_json::from_value(case["pod"].clone()).unwrap_or_default();
            let watched: WatchedPod =
                serde_json::from_value(case["pod"].clone()).unwrap_or_default();
            let (from_watch, from_pod) = (classify(&watched.to_pod(), &[]), classify(&whole, &[]));
            assert_eq!(from_watch, from_pod, "{name}");
            let f = from_watch.unwrap_or_else(|| panic!("{name}: not detected"));
            assert_eq!(f.kind.as_str(), kind, "{name}");
            forms.insert(
                name.split_once('@')
                    .map_or("classic", |(_, form)| form)
                    .to_string(),
            );
        }
        assert_eq!(
            forms.into_iter().collect::<Vec<_>>(),
            [
                "cgroup_v1",
                "classic",
                "current_kubelet",
                "current_kubelet@cgroup_v1"
            ]
        );
    }

    #[test]
    fn absent_or_null_parts_stay_absent() {
        for v in [
            json!({"metadata": {"name": "p"}}),
            json!({"metadata": {"name": "p", "labels": null}, "spec": null, "status": null}),
        ] {
            let w: Result<WatchedPod, _> = serde_json::from_value(v.clone());
            let w = w.unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(
                (w.metadata.labels, w.spec.is_none(), w.status.is_none()),
                (None, true, true),
                "{v}"
            );
        }
    }
}
