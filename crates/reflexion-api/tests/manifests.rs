//! The deployment manifests (`k8s/deploy`: the base and the PostgreSQL overlay) and `docker-compose.yml`, checked without a cluster: every object
//! round-trips through its typed Kubernetes API struct (a misspelled or misplaced field is lost and fails the
//! comparison), the RBAC is least privilege, the pods run hardened with probes, references resolve, and the policy
//! parses as the API's policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
}

/// Every document of every manifest in k8s/deploy/base (its kustomization aside), as (file, JSON).
fn documents() -> Vec<(String, Value)> {
    let dir = root().join("k8s/deploy/base");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if !v.is_null() {
                docs.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
            }
        }
    }
    docs
}

/// Drop nulls and empty objects the typed structs leave out, so the comparison only sees real content.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(file: &str, v: &Value) -> T {
    let typed: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{file}: not a valid {}: {e}", v["kind"]));
    let back = normalize(&serde_json::to_value(&typed).unwrap());
    assert_eq!(
        back,
        normalize(v),
        "{file}: {} {} has fields its API type does not know",
        v["kind"],
        v["metadata"]["name"]
    );
    typed
}

#[test]
fn manifests_match_the_api_schema_and_are_least_privilege() {
    let docs = documents();
    let mut deployments = Vec::new();
    let mut accounts = BTreeSet::new();
    let mut cluster_roles = BTreeMap::new();
    let mut roles = BTreeMap::new();
    let mut bindings = Vec::new();
    let mut config_maps = BTreeMap::new();
    let mut claims = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for (file, v) in &docs {
        let kind = v["kind"].as_str().unwrap().to_string();
        kinds.insert(kind.clone());
        match kind.as_str() {
            "Namespace" => drop(roundtrip::<Namespace>(file, v)),
            "ServiceAccount" => {
                let sa: ServiceAccount = roundtrip(file, v);
                accounts.insert(sa.metadata.name.unwrap());
            }
            "ClusterRole" => {
                let r: ClusterRole = roundtrip(file, v);
                cluster_roles.insert(
                    r.metadata.name.clone().unwrap(),
                    r.rules.unwrap_or_default(),
                );
            }
            "Role" => {
                let r: Role = roundtrip(file, v);
                roles.insert(
                    r.metadata.name.clone().unwrap(),
                    r.rules.unwrap_or_default(),
                );
            }
            "ClusterRoleBinding" => {
                let b: ClusterRoleBinding = roundtrip(file, v);
                bindings.push((b.role_ref, b.subjects.unwrap_or_default()));
            }
            "RoleBinding" => {
                let b: RoleBinding = roundtrip(file, v);
                bindings.push((b.role_ref, b.subjects.unwrap_or_default()));
            }
            "ConfigMap" => {
                let c: ConfigMap = roundtrip(file, v);
                config_maps.insert(c.metadata.name.unwrap(), c.data.unwrap_or_default());
            }
            "PersistentVolumeClaim" => {
                let c: PersistentVolumeClaim = roundtrip(file, v);
                claims.insert(c.metadata.name.unwrap());
            }
            "Deployment" => deployments.push(roundtrip::<Deployment>(file, v)),
            "Service" => drop(roundtrip::<Service>(file, v)),
            "NetworkPolicy" => drop(roundtrip::<NetworkPolicy>(file, v)),
            other => panic!("{file}: unexpected kind {other}"),
        }
    }
    assert_eq!(
        kinds.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );

    // RBAC: the exact grants, no wildcard, nothing that executes, escalates or deletes beyond a bare pod.
    let grants = |rules: &[k8s_openapi::api::rbac::v1::PolicyRule]| -> BTreeSet<String> {
        let mut g = BTreeSet::new();
        for r in rules {
            for group in r.api_groups.iter().flatten() {
                for res in r.resources.iter().flatten() {
                    for verb in &r.verbs {
                        assert!(
                            verb != "*" && res != "*" && group != "*",
                            "wildcard in {r:?}"
                        );
                        assert!(
                            !["escalate", "bind", "impersonate"].contains(&verb.as_str()),
                            "a verb that hands out power in {r:?}"
                        );
                        g.insert(format!("{group}/{res}:{verb}"));
                    }
                }
            }
        }
        g
    };
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        grants(&cluster_roles["kube-reflexion-watcher"]),
        set(&[
            "/pods:get",
            "/pods:list",
            "/pods:watch",
            "/events:list",
            "/events:watch",
            "apps/replicasets:get",
            "apps/deployments:list",
            "apps/deployments:watch",
            "batch/jobs:get",
            "/services:list",
            "/services:watch",
            "discovery.k8s.io/endpointslices:list",
            "discovery.k8s.io/endpointslices:watch"
        ]),
        "the watcher only reads"
    );
    assert_eq!(
        grants(&roles["kube-reflexion-watcher-lease"]),
        set(&[
            "coordination.k8s.io/leases:get",
            "coordination.k8s.io/leases:create",
            "coordination.k8s.io/leases:update"
        ])
    );
    assert_eq!(
        grants(&cluster_roles["kube-reflexion-api"]),
        set(&[
            "/pods:get",
            "/pods:list",
            "/pods:watch",
            "/pods:patch",
            "/pods:delete",
            "/pods:create",
            "/pods/log:get",
            "/events:list",
            "/events:watch",
            "/events:create",
            "/configmaps:list",
            "/secrets:list",
            "/nodes:list",
            "apps/deployments:get",
            "apps/deployments:list",
            "apps/deployments:watch",
            "apps/deployments:patch",
            "apps/replicasets:get",
            "apps/replicasets:list",
            "/services:get",
            "/services:patch",
            "apps/statefulsets:list",
            "apps/daemonsets:list",
            "discovery.k8s.io/endpointslices:list",
            "batch/cronjobs:get",
            "batch/cronjobs:patch",
            "batch/jobs:get",
            "batch/jobs:list",
            "batch/jobs:create",
            "batch/jobs:delete",
            "/persistentvolumeclaims:get",
            "/persistentvolumeclaims:delete",
            "/persistentvolumeclaims:create",
            "storage.k8s.io/storageclasses:list",
            "rbac.authorization.k8s.io/roles:get",
            "rbac.authorization.k8s.io/roles:list",
            "rbac.authorization.k8s.io/roles:patch",
            "rbac.authorization.k8s.io/rolebindings:list",
            "authorization.k8s.io/subjectaccessreviews:create",
            "kustomize.toolkit.fluxcd.io/kustomizations:get",
            "source.toolkit.fluxcd.io/gitrepositories:get",
            "argoproj.io/applications:get",
        ]),
        "the API has exactly the verbs its actions need, and only reads the GitOps kinds"
    );
    for (role_ref, subjects) in &bindings {
        let known = match role_ref.kind.as_str() {
            "ClusterRole" => cluster_roles.contains_key(&role_ref.name),
            _ => roles.contains_key(&role_ref.name),
        };
        assert!(
            known,
            "binding to an unknown {} {}",
            role_ref.kind, role_ref.name
        );
        for s in subjects {
            assert!(
                accounts.contains(&s.name),
                "binding to an unknown ServiceAccount {}",
                s.name
            );
        }
    }

    // Pods: hardened, probed, bounded; their accounts, claims and ConfigMaps exist.
    assert_eq!(deployments.len(), 2);
    for d in &deployments {
        let name = d.metadata.name.clone().unwrap();
        let spec = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert!(
            accounts.contains(spec.service_account_name.as_ref().unwrap()),
            "{name}"
        );
        assert_eq!(
            spec.security_context.as_ref().unwrap().run_as_non_root,
            Some(true),
            "{name}"
        );
        for c in &spec.containers {
            assert!(
                c.liveness_probe.is_some() && c.readiness_probe.is_some(),
                "{name}: probes"
            );
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_deref(),
                Some(&["ALL".to_string()][..])
            );
            assert!(
                c.resources
                    .as_ref()
                    .unwrap()
                    .limits
                    .as_ref()
                    .unwrap()
                    .contains_key("memory"),
                "{name}"
            );
        }
        for v in spec.volumes.iter().flatten() {
            if let Some(pvc) = &v.persistent_volume_claim {
                assert!(
                    claims.contains(&pvc.claim_name),
                    "{name}: claim {}",
                    pvc.claim_name
                );
            }
            if let Some(cm) = &v.config_map {
                assert!(
                    config_maps.contains_key(&cm.name),
                    "{name}: ConfigMap {}",
                    cm.name
                );
            }
        }
    }
    // SQLite on a ReadWriteOnce volume: one API replica, replaced not rolled.
    let api = deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some("reflexion-api"))
        .unwrap();
    let api_spec = api.spec.as_ref().unwrap();
    assert_eq!(api_spec.replicas, Some(1));
    assert_eq!(
        api_spec.strategy.as_ref().unwrap().type_.as_deref(),
        Some("Recreate")
    );

    // The policy the API will read is a valid policy.
    let policy: reflexion_core::policy::Policy =
        serde_json::from_str(&config_maps["reflexion-policy"]["policy.json"])
            .expect("policy.json is a Policy");
    assert!(
        policy
            .protected_namespaces
            .contains(&"kube-system".to_string())
    );
}

/// The shipped deployment is closed: both pods need the token Secret (no Secret, no running pod), reads need the
/// token, probes ask only what they must, and only the watcher and labelled clients reach the API's port.
#[test]
fn the_deployment_is_closed_by_default() {
    let docs = documents();
    let typed = |kind: &str, name: &str| -> Value {
        docs.iter()
            .find(|(_, v)| v["kind"] == kind && v["metadata"]["name"] == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    for name in ["reflexion-api", "reflexion-watcher"] {
        let d: Deployment = serde_json::from_value(typed("Deployment", name)).unwrap();
        let pod = d.spec.unwrap().template.spec.unwrap();
        let env = pod.containers[0].env.clone().unwrap_or_default();
        let token = env
            .iter()
            .find(|e| e.name == "REFLEXION_API_TOKEN")
            .unwrap_or_else(|| panic!("{name}: no token"));
        assert_eq!(token.value, None, "{name}: the token is not written here");
        let secret = token
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.clone())
            .unwrap_or_else(|| panic!("{name}: the token comes from a Secret"));
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("reflexion-api-token", "token")
        );
        assert_ne!(
            secret.optional,
            Some(true),
            "{name}: without the Secret the pod must not start"
        );
        if name == "reflexion-api" {
            let reads = env.iter().find(|e| e.name == "REFLEXION_AUTH_READS");
            assert_eq!(reads.and_then(|e| e.value.as_deref()), Some("true"));
            assert!(
                env.iter().all(|e| e.name != "REFLEXION_INSECURE_NO_AUTH"),
                "never shipped open"
            );
            let c = &pod.containers[0];
            let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
                p.as_ref()
                    .and_then(|p| p.http_get.as_ref())
                    .and_then(|h| h.path.clone())
            };
            assert_eq!(path(&c.liveness_probe).as_deref(), Some("/livez"));
            assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
        }
    }
    let ns = typed("Namespace", "kube-reflexion");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
        "the namespace enforces the restricted Pod Security Standard"
    );
    let deny: NetworkPolicy =
        serde_json::from_value(typed("NetworkPolicy", "default-deny-ingress")).unwrap();
    let deny = deny.spec.unwrap();
    assert_eq!(
        deny.pod_selector.unwrap_or_default(),
        Default::default(),
        "every pod"
    );
    assert_eq!(
        deny.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    assert!(deny.ingress.is_none(), "and nothing allowed");
    let api: NetworkPolicy =
        serde_json::from_value(typed("NetworkPolicy", "reflexion-api")).unwrap();
    let api = api.spec.unwrap();
    let label = |k: &str, v: &str| Some(BTreeMap::from([(k.to_string(), v.to_string())]));
    assert_eq!(
        api.pod_selector.unwrap_or_default().match_labels,
        label("app.kubernetes.io/name", "reflexion-api")
    );
    let rules = api.ingress.unwrap();
    assert_eq!(rules.len(), 1);
    let peers = rules[0].from.clone().unwrap();
    let allowed: Vec<_> = peers
        .iter()
        .map(|p| {
            (
                p.namespace_selector.is_some(),
                p.pod_selector.clone().unwrap_or_default().match_labels,
            )
        })
        .collect();
    assert_eq!(
        allowed,
        [
            (false, label("app.kubernetes.io/name", "reflexion-watcher")),
            (true, label("kube-reflexion.io/client", "true")),
        ],
        "the watcher of this namespace, and labelled clients"
    );
    assert!(
        peers.iter().all(|p| p.ip_block.is_none()),
        "no address range"
    );
}

#[test]
fn docker_compose_runs_both_services_from_their_dockerfiles() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_yaml::from_str(&text).unwrap();
    let services = compose["services"].as_object().unwrap();
    assert_eq!(
        services.keys().collect::<Vec<_>>(),
        ["postgres", "reflexion-api", "watcher"]
    );
    // PostgreSQL only in its profile: a plain `docker compose up` keeps SQLite.
    assert_eq!(
        services["postgres"]["profiles"],
        serde_json::json!(["postgres"])
    );
    assert_eq!(
        services["postgres"]["volumes"][0],
        "postgres-data:/var/lib/postgresql/data"
    );
    let declared: BTreeSet<&str> = compose["volumes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for (name, s) in services.iter().filter(|(n, _)| *n != "postgres") {
        let dockerfile = s["build"]["dockerfile"].as_str().unwrap();
        let df = std::fs::read_to_string(root().join(dockerfile)).unwrap();
        assert!(df.matches("FROM ").count() >= 2, "{name}: multi-stage");
        assert!(df.contains("USER 65532"), "{name}: non-root");
        for v in s["volumes"].as_array().unwrap() {
            let source = v.as_str().unwrap().split(':').next().unwrap();
            assert!(
                source.starts_with('$') || declared.contains(source),
                "{name}: volume {source} is not declared"
            );
        }
        assert_eq!(s["environment"]["KUBECONFIG"], "/kube/config", "{name}");
        // Compose refuses to start without the token (`:?`): never served open.
        assert!(
            s["environment"]["REFLEXION_API_TOKEN"]
                .as_str()
                .is_some_and(|v| v.starts_with("${REFLEXION_API_TOKEN:?")),
            "{name}: the token is required"
        );
    }
    assert_eq!(
        services["watcher"]["environment"]["REFLEXION_API_URL"],
        "http://reflexion-api:8000"
    );
    assert_eq!(
        services["reflexion-api"]["environment"]["DATABASE_URL"],
        "${DATABASE_URL:-sqlite:///data/reflexion.db}"
    );
}

/// `kubectl kustomize DIR` as JSON documents; None where kubectl is not installed.
fn kustomize(dir: &str) -> Option<Vec<Value>> {
    let out = match std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join(dir))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("kubectl is not installed ({e}): the kustomizations are not rendered");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect(),
    )
}

#[test]
fn the_base_kustomization_renders_exactly_the_base_manifests() {
    let Some(rendered) = kustomize("k8s/deploy/base") else {
        return;
    };
    let key = |v: &Value| format!("{}/{}", v["kind"], v["metadata"]["name"]);
    let mut rendered: Vec<String> = rendered.iter().map(key).collect();
    let mut files: Vec<String> = documents().iter().map(|(_, v)| key(v)).collect();
    rendered.sort();
    files.sort();
    assert_eq!(rendered, files);
}

#[test]
fn the_postgres_overlay_runs_two_api_replicas_with_a_disruption_budget_and_the_url_from_a_secret() {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let Some(rendered) = kustomize("k8s/deploy/overlays/postgres") else {
        return;
    };
    let file = "k8s/deploy/overlays/postgres";
    let of = |kind: &str, name: &str| {
        rendered
            .iter()
            .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
            .cloned()
    };
    assert!(
        of("PersistentVolumeClaim", "reflexion-data").is_none(),
        "no SQLite volume"
    );
    let api: Deployment = roundtrip(file, &of("Deployment", "reflexion-api").unwrap());
    let spec = api.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let strategy = spec.strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.unwrap();
    assert_eq!(
        rolling.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );
    let pod = spec.template.spec.unwrap();
    assert!(
        pod.volumes
            .unwrap_or_default()
            .iter()
            .all(|v| v.persistent_volume_claim.is_none()),
        "no claim mounted"
    );
    let container = &pod.containers[0];
    assert!(
        container
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.mount_path != "/data"),
        "nothing mounted where SQLite was"
    );
    let env = container.env.clone().unwrap();
    let var = |name: &str| env.iter().find(|e| e.name == name).unwrap().clone();
    let url = var("DATABASE_URL");
    assert_eq!(url.value, None, "the URL is not written in the manifest");
    let secret = url.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("reflexion-database", "url")
    );
    assert_ne!(
        secret.optional,
        Some(true),
        "without a database the API must not start"
    );
    // Each replica claims incidents under its own pod name.
    let replica = var("REFLEXION_REPLICA_ID")
        .value_from
        .unwrap()
        .field_ref
        .unwrap();
    assert_eq!(replica.field_path, "metadata.name");
    let pdb: PodDisruptionBudget =
        roundtrip(file, &of("PodDisruptionBudget", "reflexion-api").unwrap());
    let pdb = pdb.spec.unwrap();
    assert_eq!(
        pdb.min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(
        pdb.selector.unwrap().match_labels,
        spec.selector.match_labels,
        "the budget covers the API's pods"
    );
    // Everything else is the base's, unchanged.
    let base = kustomize("k8s/deploy/base").unwrap();
    for v in &base {
        if ["reflexion-api", "reflexion-data"].contains(&v["metadata"]["name"].as_str().unwrap()) {
            continue;
        }
        assert!(
            rendered.contains(v),
            "{} {} changed",
            v["kind"],
            v["metadata"]["name"]
        );
    }
}
