//! The typed action catalog. Planners (rules, learned strategies, an LLM) only ever produce these; the executor
//! turns them into minimal API calls. Validation here is the first gate: an invalid action never reaches the cluster.

use crate::owner::{WorkloadKind, WorkloadRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

mod render;
mod validate;

/// How much harm a wrong action can do; the policy maps risk to a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    None,
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Change one container's image on a workload (on a bare pod the API allows this in place).
    SetImage {
        target: WorkloadRef,
        container: String,
        image: String,
    },
    /// Set one container's memory limit (and request, kept at or below the limit). A bare pod's resources are
    /// immutable, so there the executor recreates the pod with only this changed.
    SetResources {
        target: WorkloadRef,
        container: String,
        memory_limit: String,
        memory_request: Option<String>,
    },
    /// Add an environment variable to one container, taken from an existing ConfigMap or Secret key (never a
    /// literal value: kube-reflexion does not invent configuration).
    SetEnv {
        target: WorkloadRef,
        container: String,
        name: String,
        from: EnvSource,
    },
    /// Point one container's liveness or readiness probe at what the container serves. Only the handler changes
    /// (timings are kept), and a probe is never removed: there is no way to express that.
    SetProbe {
        target: WorkloadRef,
        container: String,
        probe: ProbeKind,
        handler: ProbeHandler,
    },
    /// Lower one container's resource requests so that the pod fits a node. Starving a workload is a real risk,
    /// so this is high risk: by default it waits for approval.
    SetRequests {
        target: WorkloadRef,
        container: String,
        memory: Option<String>,
        cpu: Option<String>,
    },
    /// Make a workload schedulable again: remove nodeSelector keys no node has, or set a key to the one value nodes
    /// have for it. Moving a workload to other nodes is high risk: by default it waits for approval.
    SetNodeSelector {
        target: WorkloadRef,
        remove: Vec<String>,
        set: BTreeMap<String, String>,
    },
    /// Replace a PersistentVolumeClaim the workload mounts that is unbound because its StorageClass does not exist
    /// with the same claim of an existing class. An unbound claim holds no data; a bound claim is never touched.
    RecreateClaim {
        target: WorkloadRef,
        claim: String,
        storage_class: String,
    },
    /// Drop a container's `command` override (and its `args`) so that the image's own entrypoint runs. What runs is
    /// the image's, never text from a planner.
    DropCommand {
        target: WorkloadRef,
        container: String,
    },
    /// Point a Service that selects no pod at the pods of the one workload it was meant for: remove selector keys
    /// and set others (the result is never empty — an empty selector would stop the Service from being managed).
    SetServiceSelector {
        target: WorkloadRef,
        remove: Vec<String>,
        set: BTreeMap<String, String>,
    },
    /// Point one port of a Service (`port`, its number) at a port its pods declare: `target_port` is the pods' port
    /// name, or a number. A name is resolved by Kubernetes against what each pod declares (medium risk); a number is
    /// a promise about a process's socket that only a person can check (high risk: by default it waits for approval).
    SetServiceTargetPort {
        target: WorkloadRef,
        port: u16,
        target_port: String,
    },
    /// Allow a workload's ServiceAccount the one request its pods were refused: one rule (one verb on one resource
    /// of one API group) added to the Role of the workload's namespace that is bound to the account. Never a
    /// ClusterRole, never a wildcard (`rbac::grantable`); granting is high risk: by default it waits for approval.
    GrantRoleRule {
        /// The workload whose pods were refused.
        target: WorkloadRef,
        role: String,
        service_account: String,
        verb: String,
        api_group: String,
        resource: String,
    },
    /// Roll a Deployment back to an earlier revision (the previous one when `to_revision` is absent).
    RolloutUndo {
        target: WorkloadRef,
        to_revision: Option<i64>,
    },
    /// No safe automatic fix: a precise diagnosis and a suggested manual step.
    Escalate {
        diagnosis: String,
        suggestion: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// The container field that holds the probe.
    pub fn field(self) -> &'static str {
        match self {
            Self::Liveness => "livenessProbe",
            Self::Readiness => "readinessProbe",
        }
    }
}

/// How a probe checks the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProbeHandler {
    HttpGet { path: String, port: u16 },
    TcpSocket { port: u16 },
}

impl ProbeHandler {
    /// The probe's handler fields as the API writes them; the other handler kinds are set to null so that a
    /// merge replaces the handler instead of adding a second one.
    pub fn to_api(&self) -> serde_json::Value {
        match self {
            Self::HttpGet { path, port } => serde_json::json!({
                "httpGet": {"path": path, "port": port}, "tcpSocket": null, "exec": null, "grpc": null
            }),
            Self::TcpSocket { port } => serde_json::json!({
                "tcpSocket": {"port": port}, "httpGet": null, "exec": null, "grpc": null
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::HttpGet { path, port } => format!("httpGet {path} on port {port}"),
            Self::TcpSocket { port } => format!("tcpSocket on port {port}"),
        }
    }
}

/// Where a `set_env` value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnvSource {
    ConfigMapKey { name: String, key: String },
    SecretKey { name: String, key: String },
}

impl EnvSource {
    /// The `valueFrom` of a container's `env` entry that takes the variable from this key.
    pub fn to_api(&self) -> serde_json::Value {
        match self {
            Self::ConfigMapKey { name, key } => {
                serde_json::json!({"configMapKeyRef": {"name": name, "key": key}})
            }
            Self::SecretKey { name, key } => {
                serde_json::json!({"secretKeyRef": {"name": name, "key": key}})
            }
        }
    }

    fn parts(&self) -> (&'static str, &str, &str) {
        match self {
            Self::ConfigMapKey { name, key } => ("configmap", name, key),
            Self::SecretKey { name, key } => ("secret", name, key),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ActionError {
    #[error("{field}: {value:?} is not a valid Kubernetes name")]
    InvalidName { field: &'static str, value: String },
    #[error("image: {0}")]
    InvalidImage(String),
    #[error("{action} does not apply to a {kind}")]
    WrongTarget {
        action: &'static str,
        kind: WorkloadKind,
    },
    #[error("{field}: {value:?} is not a valid positive quantity")]
    InvalidQuantity { field: &'static str, value: String },
    #[error("memory request {request} is above the limit {limit}")]
    RequestAboveLimit { request: String, limit: String },
    #[error("revision {0} does not exist: revisions start at 1")]
    InvalidRevision(i64),
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("port must be between 1 and 65535")]
    InvalidPort,
    #[error("target_port: {0:?} is neither a port number nor a port name (IANA_SVC_NAME)")]
    InvalidPortName(String),
    #[error("probe path {0:?} must start with / and contain no spaces or control characters")]
    InvalidPath(String),
    #[error("set_requests must lower at least one of memory and cpu")]
    NothingToSet,
    #[error("{0} must remove or set at least one key")]
    NoSelectorChange(&'static str),
    #[error("grant_role_rule: {0}")]
    NotGrantable(String),
    #[error("{field}: {value:?} is not a valid label key or value")]
    InvalidLabel { field: &'static str, value: String },
}

const MAX_TEXT: usize = 4096;

/// A nodeSelector (`old`, null when absent) with keys removed and others set, as `set_node_selector` leaves it.
pub fn edited_selector(
    old: &serde_json::Value,
    remove: &[String],
    set: &BTreeMap<String, String>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut selector = old.as_object().cloned().unwrap_or_default();
    for k in remove {
        selector.remove(k);
    }
    for (k, v) in set {
        selector.insert(k.clone(), serde_json::json!(v));
    }
    selector
}

/// The version of [`Action::strategy_key`]'s format; a new version is a new key space, never a silent change.
pub const STRATEGY_KEY_VERSION: &str = "v1";

impl Action {
    /// A stable key for a strategy that reuses this action: its kind and the parameters that decide what it does,
    /// in a fixed order — not its serialization, so a new optional field does not split a strategy's record. The
    /// target is left out: a strategy is learned per failure signature, for whichever workload has it.
    pub fn strategy_key(&self) -> String {
        let v = STRATEGY_KEY_VERSION;
        match self {
            Self::SetImage {
                container, image, ..
            } => format!("{v}:set_image:{container}:{image}"),
            Self::SetResources {
                container,
                memory_limit,
                memory_request,
                ..
            } => format!(
                "{v}:set_resources:{container}:{memory_limit}:{}",
                memory_request.as_deref().unwrap_or("-")
            ),
            Self::SetEnv {
                container,
                name,
                from,
                ..
            } => {
                let (kind, object, key) = match from {
                    EnvSource::ConfigMapKey { name, key } => ("configmap", name, key),
                    EnvSource::SecretKey { name, key } => ("secret", name, key),
                };
                format!("{v}:set_env:{container}:{name}:{kind}/{object}/{key}")
            }
            Self::SetProbe {
                container,
                probe,
                handler,
                ..
            } => {
                let handler = match handler {
                    ProbeHandler::HttpGet { path, port } => format!("http:{port}{path}"),
                    ProbeHandler::TcpSocket { port } => format!("tcp:{port}"),
                };
                format!("{v}:set_probe:{container}:{}:{handler}", probe.field())
            }
            Self::SetRequests {
                container,
                memory,
                cpu,
                ..
            } => format!(
                "{v}:set_requests:{container}:{}:{}",
                memory.as_deref().unwrap_or("-"),
                cpu.as_deref().unwrap_or("-")
            ),
            Self::SetNodeSelector { remove, set, .. }
            | Self::SetServiceSelector { remove, set, .. } => {
                let mut remove = remove.clone();
                remove.sort();
                let set: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "{v}:{}:-{}:+{}",
                    self.name(),
                    remove.join(","),
                    set.join(",")
                )
            }
            Self::RecreateClaim {
                claim,
                storage_class,
                ..
            } => format!("{v}:recreate_claim:{claim}:{storage_class}"),
            Self::SetServiceTargetPort {
                port, target_port, ..
            } => format!("{v}:set_service_target_port:{port}:{target_port}"),
            Self::DropCommand { container, .. } => format!("{v}:drop_command:{container}"),
            Self::GrantRoleRule {
                role,
                service_account,
                verb,
                api_group,
                resource,
                ..
            } => format!(
                "{v}:grant_role_rule:{role}:{service_account}:{verb}:{api_group}/{resource}"
            ),
            Self::RolloutUndo { to_revision, .. } => format!(
                "{v}:rollout_undo:{}",
                to_revision.map_or("previous".to_string(), |r| r.to_string())
            ),
            Self::Escalate { .. } => format!("{v}:escalate"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::SetImage { .. } => "set_image",
            Self::SetResources { .. } => "set_resources",
            Self::RolloutUndo { .. } => "rollout_undo",
            Self::SetEnv { .. } => "set_env",
            Self::SetProbe { .. } => "set_probe",
            Self::SetRequests { .. } => "set_requests",
            Self::SetNodeSelector { .. } => "set_node_selector",
            Self::RecreateClaim { .. } => "recreate_claim",
            Self::DropCommand { .. } => "drop_command",
            Self::SetServiceSelector { .. } => "set_service_selector",
            Self::SetServiceTargetPort { .. } => "set_service_target_port",
            Self::GrantRoleRule { .. } => "grant_role_rule",
            Self::Escalate { .. } => "escalate",
        }
    }

    pub fn risk(&self) -> Risk {
        // A Job's template is immutable: it is recreated, which runs it again from the start (whatever its
        // earlier pods already did), so a person decides.
        if self.target().is_some_and(|t| t.kind == WorkloadKind::Job) {
            return Risk::High;
        }
        match self {
            Self::SetImage { .. } | Self::RolloutUndo { .. } => Risk::Low,
            Self::SetResources { .. }
            | Self::SetEnv { .. }
            | Self::SetProbe { .. }
            | Self::SetServiceSelector { .. } => Risk::Medium,
            Self::SetRequests { .. }
            | Self::SetNodeSelector { .. }
            | Self::RecreateClaim { .. }
            | Self::DropCommand { .. }
            | Self::GrantRoleRule { .. } => Risk::High,
            Self::SetServiceTargetPort { target_port, .. } => {
                if crate::service::is_port_name(target_port) {
                    Risk::Medium
                } else {
                    Risk::High
                }
            }
            Self::Escalate { .. } => Risk::None,
        }
    }

    /// The request a `grant_role_rule` allows, as the denial it answers (in the workload's namespace), and the Role
    /// it adds the rule to.
    pub fn grant(&self) -> Option<(crate::rbac::Denial, &str)> {
        let Self::GrantRoleRule {
            target,
            role,
            service_account,
            verb,
            api_group,
            resource,
        } = self
        else {
            return None;
        };
        let d = crate::rbac::Denial {
            namespace: target.namespace.clone(),
            service_account: service_account.clone(),
            verb: verb.clone(),
            api_group: api_group.clone(),
            resource: resource.clone(),
            scope: Some(target.namespace.clone()),
        };
        Some((d, role))
    }

    /// The workload this action writes to, if any.
    pub fn target(&self) -> Option<&WorkloadRef> {
        match self {
            Self::SetImage { target, .. }
            | Self::SetResources { target, .. }
            | Self::RolloutUndo { target, .. }
            | Self::SetEnv { target, .. }
            | Self::SetProbe { target, .. }
            | Self::SetRequests { target, .. }
            | Self::SetNodeSelector { target, .. }
            | Self::RecreateClaim { target, .. }
            | Self::DropCommand { target, .. }
            | Self::SetServiceSelector { target, .. }
            | Self::SetServiceTargetPort { target, .. }
            | Self::GrantRoleRule { target, .. } => Some(target),
            Self::Escalate { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(name: &str) -> WorkloadRef {
        WorkloadRef::new(WorkloadKind::Deployment, "default", name)
    }
    fn pod(name: &str) -> WorkloadRef {
        WorkloadRef::new(WorkloadKind::Pod, "default", name)
    }

    #[test]
    fn validation_table() {
        let set_image = |target: WorkloadRef, c: &str, i: &str| Action::SetImage {
            target,
            container: c.into(),
            image: i.into(),
        };
        let cases: Vec<(Action, Result<(), ActionError>)> = vec![
            (set_image(deploy("web"), "web", "nginx:1.27"), Ok(())),
            (set_image(pod("p"), "web", "nginx:1.27"), Ok(())),
            (
                set_image(WorkloadRef::new(WorkloadKind::Service, "default", "j"), "c", "nginx"),
                Err(ActionError::WrongTarget { action: "set_image", kind: WorkloadKind::Service }),
            ),
            (set_image(deploy("Web"), "web", "nginx"), Err(ActionError::InvalidName { field: "target.name", value: "Web".into() })),
            (
                set_image(WorkloadRef::new(WorkloadKind::Deployment, "a.b", "web"), "web", "nginx"),
                Err(ActionError::InvalidName { field: "target.namespace", value: "a.b".into() }),
            ),
            (set_image(deploy("web"), "we_b", "nginx"), Err(ActionError::InvalidName { field: "container", value: "we_b".into() })),
            (
                set_image(deploy("web"), "web", "nginx; rm -rf /"),
                Err(ActionError::InvalidImage("invalid reference format: \"nginx; rm -rf \" is not a valid repository path component".into())),
            ),
            (set_image(deploy("web"), "web", "NGINX"), Err(ActionError::InvalidImage("invalid reference format: repository name must be lowercase".into()))),
            (Action::Escalate { diagnosis: "d".into(), suggestion: " ".into() }, Err(ActionError::Empty { field: "suggestion" })),
            (
                Action::Escalate { diagnosis: "d".repeat(5000), suggestion: "s".into() },
                Err(ActionError::TooLong { field: "diagnosis", max: MAX_TEXT }),
            ),
        ];
        for (action, want) in cases {
            assert_eq!(action.validate(), want, "{action:?}");
        }
    }

    #[test]
    fn set_resources_validation_and_rendering() {
        let set = |target: WorkloadRef, limit: &str, request: Option<&str>| Action::SetResources {
            target,
            container: "web".into(),
            memory_limit: limit.into(),
            memory_request: request.map(String::from),
        };
        let cases = [
            (set(deploy("web"), "384Mi", Some("64Mi")), Ok(())),
            (set(pod("memory-app"), "266Mi", None), Ok(())),
            (
                set(deploy("web"), "lots", None),
                Err(ActionError::InvalidQuantity {
                    field: "memory_limit",
                    value: "lots".into(),
                }),
            ),
            (
                set(deploy("web"), "0", None),
                Err(ActionError::InvalidQuantity {
                    field: "memory_limit",
                    value: "0".into(),
                }),
            ),
            (
                set(deploy("web"), "128Mi", Some("1Gi")),
                Err(ActionError::RequestAboveLimit {
                    request: "1Gi".into(),
                    limit: "128Mi".into(),
                }),
            ),
            (
                set(
                    WorkloadRef::new(WorkloadKind::ReplicaSet, "default", "j"),
                    "1Gi",
                    None,
                ),
                Err(ActionError::WrongTarget {
                    action: "set_resources",
                    kind: WorkloadKind::ReplicaSet,
                }),
            ),
        ];
        for (a, want) in cases {
            assert_eq!(a.validate(), want, "{a:?}");
        }
        let a = set(deploy("web"), "384Mi", Some("64Mi"));
        assert_eq!(
            a.render(),
            "kubectl set resources deployment/web -c web --limits=memory=384Mi --requests=memory=64Mi -n default"
        );
        assert_eq!((a.name(), a.risk()), ("set_resources", Risk::Medium));
    }

    #[test]
    fn set_env_takes_values_only_from_existing_objects() {
        let env = |name: &str, object: &str| Action::SetEnv {
            target: deploy("demo-app"),
            container: "demo-app".into(),
            name: name.into(),
            from: EnvSource::ConfigMapKey {
                name: object.into(),
                key: name.into(),
            },
        };
        assert_eq!(env("DATABASE_URL", "app-config").validate(), Ok(()));
        assert_eq!(
            env("1BAD", "app-config").validate(),
            Err(ActionError::InvalidName {
                field: "name",
                value: "1BAD".into()
            })
        );
        assert_eq!(
            env("X", "App_Config").validate(),
            Err(ActionError::InvalidName {
                field: "from.name",
                value: "App_Config".into()
            })
        );
        assert_eq!(
            env("DATABASE_URL", "app-config").render(),
            "kubectl set env deployment/demo-app -c demo-app --from=configmap/app-config --keys=DATABASE_URL -n default"
        );
        // A literal value is not expressible at all.
        let literal = r#"{"action":"set_env","target":{"kind":"Deployment","namespace":"d","name":"w"},"container":"w","name":"X","value":"secret"}"#;
        assert!(serde_json::from_str::<Action>(literal).is_err());
    }

    #[test]
    fn rollout_undo_applies_to_deployments_only() {
        let undo = |target: WorkloadRef, to_revision: Option<i64>| Action::RolloutUndo {
            target,
            to_revision,
        };
        assert_eq!(undo(deploy("web"), None).validate(), Ok(()));
        assert_eq!(
            undo(deploy("web"), Some(0)).validate(),
            Err(ActionError::InvalidRevision(0))
        );
        assert_eq!(
            undo(pod("p"), None).validate(),
            Err(ActionError::WrongTarget {
                action: "rollout_undo",
                kind: WorkloadKind::Pod
            })
        );
        assert_eq!(
            undo(deploy("web"), Some(3)).render(),
            "kubectl rollout undo deployment/web --to-revision=3 -n default"
        );
        assert_eq!(undo(deploy("web"), None).risk(), Risk::Low);
    }

    #[test]
    fn set_probe_changes_the_handler_only_and_cannot_remove_a_probe() {
        let probe = |handler: ProbeHandler| Action::SetProbe {
            target: deploy("probed"),
            container: "web".into(),
            probe: ProbeKind::Liveness,
            handler,
        };
        let http = |path: &str, port: u16| {
            probe(ProbeHandler::HttpGet {
                path: path.into(),
                port,
            })
        };
        let cases = [
            (http("/", 80), Ok(())),
            (http("/healthz", 8080), Ok(())),
            (probe(ProbeHandler::TcpSocket { port: 80 }), Ok(())),
            (
                http("healthz", 80),
                Err(ActionError::InvalidPath("healthz".into())),
            ),
            (
                http("/a b", 80),
                Err(ActionError::InvalidPath("/a b".into())),
            ),
            (http("/", 0), Err(ActionError::InvalidPort)),
            (
                probe(ProbeHandler::TcpSocket { port: 0 }),
                Err(ActionError::InvalidPort),
            ),
        ];
        for (a, want) in cases {
            assert_eq!(a.validate(), want, "{a:?}");
        }
        let a = http("/", 80);
        assert_eq!((a.name(), a.risk()), ("set_probe", Risk::Medium));
        assert!(
            a.render()
                .starts_with("kubectl patch deployment/probed -n default --type=strategic")
        );
        // The other handler kinds are nulled so a merge replaces the handler.
        let api = ProbeHandler::TcpSocket { port: 80 }.to_api();
        assert_eq!(api["tcpSocket"]["port"], 80);
        assert!(api["httpGet"].is_null() && api.get("httpGet").is_some());
        // "Remove the probe" is not expressible: no handler, or a null one, does not parse.
        for text in [
            r#"{"action":"set_probe","target":{"kind":"Deployment","namespace":"default","name":"probed"},"container":"web","probe":"liveness"}"#,
            r#"{"action":"set_probe","target":{"kind":"Deployment","namespace":"default","name":"probed"},"container":"web","probe":"liveness","handler":null}"#,
            r#"{"action":"set_probe","target":{"kind":"Deployment","namespace":"default","name":"probed"},"container":"web","probe":"liveness","handler":{"type":"exec","command":["true"]}}"#,
        ] {
            assert!(serde_json::from_str::<Action>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn set_requests_is_high_risk_and_needs_a_quantity() {
        let req = |memory: Option<&str>, cpu: Option<&str>| Action::SetRequests {
            target: deploy("big"),
            container: "big".into(),
            memory: memory.map(Into::into),
            cpu: cpu.map(Into::into),
        };
        let cases = [
            (req(Some("512Mi"), None), Ok(())),
            (req(None, Some("250m")), Ok(())),
            (req(None, None), Err(ActionError::NothingToSet)),
            (
                req(Some("0"), None),
                Err(ActionError::InvalidQuantity {
                    field: "memory",
                    value: "0".into(),
                }),
            ),
            (
                req(None, Some("lots")),
                Err(ActionError::InvalidQuantity {
                    field: "cpu",
                    value: "lots".into(),
                }),
            ),
        ];
        for (a, want) in cases {
            assert_eq!(a.validate(), want, "{a:?}");
        }
        let a = req(Some("512Mi"), Some("250m"));
        assert_eq!(a.risk(), Risk::High);
        assert_eq!(
            a.render(),
            "kubectl set resources deployment/big -c big --requests=memory=512Mi,cpu=250m -n default"
        );
    }

    #[test]
    fn renders_as_kubectl() {
        let a = Action::SetImage {
            target: deploy("web"),
            container: "web".into(),
            image: "nginx:1.27".into(),
        };
        assert_eq!(
            a.render(),
            "kubectl set image deployment/web web=nginx:1.27 -n default"
        );
        assert_eq!((a.name(), a.risk()), ("set_image", Risk::Low));
        // A bare pod's image changes in place: the API allows it, and it is the smallest change.
        let p = Action::SetImage {
            target: pod("test-nginx"),
            container: "test-nginx".into(),
            image: "nginx:1.27".into(),
        };
        assert_eq!(
            (p.render().as_str(), p.risk()),
            (
                "kubectl set image pod/test-nginx test-nginx=nginx:1.27 -n default",
                Risk::Low
            )
        );
    }

    #[test]
    fn a_service_target_port_is_a_number_or_a_port_name_and_a_number_waits_for_a_person() {
        let tp = |port: u16, t: &str| Action::SetServiceTargetPort {
            target: WorkloadRef::new(WorkloadKind::Service, "shop", "web"),
            port,
            target_port: t.into(),
        };
        let cases: Vec<(Action, Result<(), ActionError>, Risk)> = vec![
            (tp(80, "http"), Ok(()), Risk::Medium),
            (tp(80, "8080"), Ok(()), Risk::High),
            (tp(0, "http"), Err(ActionError::InvalidPort), Risk::Medium),
            (tp(80, "0"), Err(ActionError::InvalidPort), Risk::High),
            (tp(80, "70000"), Err(ActionError::InvalidPort), Risk::High),
            (
                tp(80, "HTTP"),
                Err(ActionError::InvalidPortName("HTTP".into())),
                Risk::High,
            ),
            (
                tp(80, "a-very-long-port-name"),
                Err(ActionError::InvalidPortName("a-very-long-port-name".into())),
                Risk::High,
            ),
            (
                tp(80, "web--x"),
                Err(ActionError::InvalidPortName("web--x".into())),
                Risk::High,
            ),
            (
                tp(80, "-web"),
                Err(ActionError::InvalidPortName("-web".into())),
                Risk::High,
            ),
            (
                tp(80, "http; rm"),
                Err(ActionError::InvalidPortName("http; rm".into())),
                Risk::High,
            ),
        ];
        for (action, want, risk) in cases {
            assert_eq!(
                (action.validate(), action.risk()),
                (want, risk),
                "{action:?}"
            );
        }
        let wrong = Action::SetServiceTargetPort {
            target: deploy("web"),
            port: 80,
            target_port: "http".into(),
        };
        assert!(matches!(
            wrong.validate(),
            Err(ActionError::WrongTarget { .. })
        ));
        assert_eq!(
            tp(80, "http").render(),
            r#"kubectl patch service/web -n shop -p '{"spec":{"ports":[{"port":80,"targetPort":"http"}]}}'"#
        );
        assert_eq!(
            tp(80, "8080").render(),
            r#"kubectl patch service/web -n shop -p '{"spec":{"ports":[{"port":80,"targetPort":8080}]}}'"#
        );
        assert_eq!(
            tp(80, "http").strategy_key(),
            "v1:set_service_target_port:80:http"
        );
    }

    #[test]
    fn a_bare_jobs_fix_recreates_it_and_waits_for_a_person() {
        let job = WorkloadRef::new(WorkloadKind::Job, "default", "report");
        let env = Action::SetEnv {
            target: job.clone(),
            container: "report".into(),
            name: "REPORT_BUCKET".into(),
            from: EnvSource::ConfigMapKey {
                name: "reports".into(),
                key: "REPORT_BUCKET".into(),
            },
        };
        let image = Action::SetImage {
            target: job.clone(),
            container: "report".into(),
            image: "busybox:1.36".into(),
        };
        let probe_like = Action::DropCommand {
            target: job,
            container: "report".into(),
        };
        for a in [&env, &image, &probe_like] {
            assert_eq!((a.validate(), a.risk()), (Ok(()), Risk::High), "{a:?}");
        }
        let tail = " | jq 'del(.spec.selector, .spec.template.metadata.labels[\"controller-uid\", \"batch.kubernetes.io/controller-uid\"])' | kubectl replace --force -f -";
        assert_eq!(
            env.render(),
            format!(
                "kubectl get job/report -n default -o json | kubectl set env --local -f - -c report --from=configmap/reports --keys=REPORT_BUCKET -o json{tail}"
            )
        );
        assert_eq!(
            image.render(),
            format!(
                "kubectl get job/report -n default -o json | kubectl set image --local -f - report=busybox:1.36 -o json{tail}"
            )
        );
        assert!(
            probe_like
                .render()
                .starts_with("kubectl get job/report -n default -o json | kubectl patch --local -f - --type=strategic -p '{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"args\":null,\"command\":null,\"name\":\"report\"}]}}}}' -o json | jq"),
            "{}",
            probe_like.render()
        );
    }

    #[test]
    fn wire_format_is_tagged_and_strict() {
        let a = Action::SetImage {
            target: deploy("web"),
            container: "web".into(),
            image: "nginx:1.27".into(),
        };
        let v = serde_json::to_value(&a).unwrap_or_default();
        assert_eq!(v["action"], "set_image");
        assert_eq!(v["target"]["kind"], "Deployment");
        let unknown = r#"{"action":"set_image","target":{"kind":"Deployment","namespace":"d","name":"w"},"container":"w","image":"x","shell":"rm"}"#;
        assert!(serde_json::from_str::<Action>(unknown).is_err());
        let invented = r#"{"action":"delete_namespace","namespace":"default"}"#;
        assert!(serde_json::from_str::<Action>(invented).is_err());
    }

    #[test]
    fn strategy_keys_are_stable_and_ignore_the_target_and_field_order() {
        let a: Action = serde_json::from_str(
            r#"{"action":"set_image","target":{"kind":"Deployment","namespace":"a","name":"WORKLOAD_1"},"container":"web","image":"nginx:1.27.3"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let b: Action = serde_json::from_str(
            r#"{"image":"nginx:1.27.3","container":"web","target":{"name":"other","namespace":"b","kind":"Pod"},"action":"set_image"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.strategy_key(), "v1:set_image:web:nginx:1.27.3");
        assert_eq!(a.strategy_key(), b.strategy_key());
        let sel = |remove: &[&str]| Action::SetNodeSelector {
            target: WorkloadRef::new(WorkloadKind::Deployment, "d", "w"),
            remove: remove.iter().map(|s| s.to_string()).collect(),
            set: BTreeMap::new(),
        };
        assert_eq!(
            sel(&["b", "a"]).strategy_key(),
            sel(&["a", "b"]).strategy_key()
        );
        assert_ne!(sel(&["a"]).strategy_key(), sel(&["b"]).strategy_key());
    }
}
