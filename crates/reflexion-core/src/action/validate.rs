//! The first gate: an action whose parameters are not valid never reaches the cluster.

use super::{Action, ActionError, MAX_TEXT, ProbeHandler};
use crate::image::ImageRef;
use crate::logs::is_valid_env_name;
use crate::names::{is_dns1123_label, is_dns1123_subdomain, is_label_key, is_label_value};
use crate::owner::{WorkloadKind, WorkloadRef};
use crate::quantity::{parse_bytes, parse_millicores};

impl Action {
    pub fn validate(&self) -> Result<(), ActionError> {
        match self {
            Self::SetImage {
                target,
                container,
                image,
            } => {
                check_target("set_image", target, &WORKLOADS)?;
                check_container_and_image(container, image)
            }
            Self::SetResources {
                target,
                container,
                memory_limit,
                memory_request,
            } => {
                check_target("set_resources", target, &WORKLOADS)?;
                if !is_dns1123_label(container) {
                    return Err(ActionError::InvalidName {
                        field: "container",
                        value: container.clone(),
                    });
                }
                let limit = parse_bytes(memory_limit)
                    .filter(|b| *b > 0)
                    .ok_or_else(|| ActionError::InvalidQuantity {
                        field: "memory_limit",
                        value: memory_limit.clone(),
                    })?;
                if let Some(request) = memory_request {
                    let r = parse_bytes(request).ok_or_else(|| ActionError::InvalidQuantity {
                        field: "memory_request",
                        value: request.clone(),
                    })?;
                    if r > limit {
                        return Err(ActionError::RequestAboveLimit {
                            request: request.clone(),
                            limit: memory_limit.clone(),
                        });
                    }
                }
                Ok(())
            }
            Self::SetEnv {
                target,
                container,
                name,
                from,
            } => {
                check_target("set_env", target, &WORKLOADS)?;
                if !is_dns1123_label(container) {
                    return Err(ActionError::InvalidName {
                        field: "container",
                        value: container.clone(),
                    });
                }
                if !is_valid_env_name(name) {
                    return Err(ActionError::InvalidName {
                        field: "name",
                        value: name.clone(),
                    });
                }
                let (_, object, key) = from.parts();
                if !is_dns1123_subdomain(object) {
                    return Err(ActionError::InvalidName {
                        field: "from.name",
                        value: object.to_string(),
                    });
                }
                if !is_valid_env_name(key) {
                    return Err(ActionError::InvalidName {
                        field: "from.key",
                        value: key.to_string(),
                    });
                }
                Ok(())
            }
            Self::SetProbe {
                target,
                container,
                handler,
                ..
            } => {
                check_target("set_probe", target, &WORKLOADS)?;
                check_container(container)?;
                let (ProbeHandler::HttpGet { port, .. } | ProbeHandler::TcpSocket { port }) =
                    handler;
                if *port == 0 {
                    return Err(ActionError::InvalidPort);
                }
                if let ProbeHandler::HttpGet { path, .. } = handler
                    && (!path.starts_with('/')
                        || path.len() > 1024
                        || path.chars().any(|c| c.is_whitespace() || c.is_control()))
                {
                    return Err(ActionError::InvalidPath(path.clone()));
                }
                Ok(())
            }
            Self::SetRequests {
                target,
                container,
                memory,
                cpu,
            } => {
                check_target("set_requests", target, &WORKLOADS)?;
                check_container(container)?;
                if memory.is_none() && cpu.is_none() {
                    return Err(ActionError::NothingToSet);
                }
                if let Some(m) = memory
                    && parse_bytes(m).is_none_or(|b| b == 0)
                {
                    return Err(ActionError::InvalidQuantity {
                        field: "memory",
                        value: m.clone(),
                    });
                }
                if let Some(c) = cpu
                    && parse_millicores(c).is_none_or(|m| m == 0)
                {
                    return Err(ActionError::InvalidQuantity {
                        field: "cpu",
                        value: c.clone(),
                    });
                }
                Ok(())
            }
            Self::SetNodeSelector {
                target,
                remove,
                set,
            }
            | Self::SetServiceSelector {
                target,
                remove,
                set,
            } => {
                let allowed: &[WorkloadKind] = match self {
                    Self::SetServiceSelector { .. } => &[WorkloadKind::Service],
                    _ => &WORKLOADS,
                };
                check_target(self.name(), target, allowed)?;
                if remove.is_empty() && set.is_empty() {
                    return Err(ActionError::NoSelectorChange(self.name()));
                }
                for key in remove.iter().chain(set.keys()) {
                    if !is_label_key(key) {
                        return Err(ActionError::InvalidLabel {
                            field: "key",
                            value: key.clone(),
                        });
                    }
                }
                match set.values().find(|v| !is_label_value(v)) {
                    Some(v) => Err(ActionError::InvalidLabel {
                        field: "value",
                        value: v.clone(),
                    }),
                    None => Ok(()),
                }
            }
            Self::SetServiceTargetPort {
                target,
                port,
                target_port,
            } => {
                check_target(self.name(), target, &[WorkloadKind::Service])?;
                if *port == 0 {
                    return Err(ActionError::InvalidPort);
                }
                let digits = target_port.bytes().all(|b| b.is_ascii_digit());
                match (digits, crate::service::port_number(target_port)) {
                    (true, Some(_)) => Ok(()),
                    (true, None) => Err(ActionError::InvalidPort),
                    (false, _) if crate::service::is_port_name(target_port) => Ok(()),
                    (false, _) => Err(ActionError::InvalidPortName(target_port.clone())),
                }
            }
            Self::GrantRoleRule {
                target,
                role,
                service_account,
                verb,
                api_group,
                resource,
            } => {
                let pods_of = [
                    WorkloadKind::Deployment,
                    WorkloadKind::StatefulSet,
                    WorkloadKind::DaemonSet,
                    WorkloadKind::CronJob,
                    WorkloadKind::Job,
                    WorkloadKind::Pod,
                ];
                check_target("grant_role_rule", target, &pods_of)?;
                for (field, value) in [("role", role), ("service_account", service_account)] {
                    if !is_dns1123_subdomain(value) {
                        return Err(ActionError::InvalidName {
                            field,
                            value: value.clone(),
                        });
                    }
                }
                crate::rbac::grantable(verb, api_group, resource).map_err(ActionError::NotGrantable)
            }
            Self::RecreateClaim {
                target,
                claim,
                storage_class,
            } => {
                check_target("recreate_claim", target, &WORKLOADS)?;
                for (field, value) in [("claim", claim), ("storage_class", storage_class)] {
                    if !is_dns1123_subdomain(value) {
                        return Err(ActionError::InvalidName {
                            field,
                            value: value.clone(),
                        });
                    }
                }
                Ok(())
            }
            Self::DropCommand { target, container } => {
                check_target("drop_command", target, &WORKLOADS)?;
                check_container(container)
            }
            Self::RolloutUndo {
                target,
                to_revision,
            } => {
                check_target("rollout_undo", target, &[WorkloadKind::Deployment])?;
                match to_revision {
                    Some(r) if *r < 1 => Err(ActionError::InvalidRevision(*r)),
                    _ => Ok(()),
                }
            }
            Self::Escalate {
                diagnosis,
                suggestion,
            } => {
                check_text("diagnosis", diagnosis)?;
                check_text("suggestion", suggestion)
            }
        }
    }
}

fn check_target(
    action: &'static str,
    target: &WorkloadRef,
    allowed: &[WorkloadKind],
) -> Result<(), ActionError> {
    if !allowed.contains(&target.kind) {
        return Err(ActionError::WrongTarget {
            action,
            kind: target.kind,
        });
    }
    if !is_dns1123_label(&target.namespace) {
        return Err(ActionError::InvalidName {
            field: "target.namespace",
            value: target.namespace.clone(),
        });
    }
    if !is_dns1123_subdomain(&target.name) {
        return Err(ActionError::InvalidName {
            field: "target.name",
            value: target.name.clone(),
        });
    }
    Ok(())
}

/// The workload kinds whose pod template (or, for a bare pod, whose spec) the executor edits.
const WORKLOADS: [WorkloadKind; 6] = [
    WorkloadKind::Deployment,
    WorkloadKind::CronJob,
    WorkloadKind::Job,
    WorkloadKind::StatefulSet,
    WorkloadKind::DaemonSet,
    WorkloadKind::Pod,
];

fn check_container(container: &str) -> Result<(), ActionError> {
    if is_dns1123_label(container) {
        Ok(())
    } else {
        Err(ActionError::InvalidName {
            field: "container",
            value: container.to_string(),
        })
    }
}

fn check_container_and_image(container: &str, image: &str) -> Result<(), ActionError> {
    check_container(container)?;
    ImageRef::parse(image)
        .map(drop)
        .map_err(|e| ActionError::InvalidImage(e.to_string()))
}

fn check_text(field: &'static str, text: &str) -> Result<(), ActionError> {
    if text.trim().is_empty() {
        return Err(ActionError::Empty { field });
    }
    if text.chars().count() > MAX_TEXT {
        return Err(ActionError::TooLong {
            field,
            max: MAX_TEXT,
        });
    }
    Ok(())
}
