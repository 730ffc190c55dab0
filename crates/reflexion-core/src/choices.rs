//! What exists to choose from, as the answer schema's enums. The LLM is offered the target, the containers, the
//! registry's closest tags, the memory limits left on the ladder, the probe handlers not shown failing, the claims,
//! StorageClasses and nodeSelector keys and values that exist — minus what this incident already tried — so a
//! sampled answer can only name things that are there. Measured before this: a 1.5B model picked the right kind of
//! action and then invented its parameters (a claim named after a StorageClass, `remove: ["disktype=nvme"]`, a
//! limit already tried; docs/llm-evaluation.md). The schema is advice to the sampler, never a gate: every answer is
//! still parsed, validated and vetted.

use crate::llm::Redaction;
use crate::{ProbeHandler, ProbeKind, WorkloadRef};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One probe that may be changed, and the handlers it may be pointed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeChoice {
    pub probe: ProbeKind,
    pub handlers: Vec<ProbeHandler>,
}

/// The values each action's parameters may take; an empty list leaves that parameter as the base schema has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Choices {
    pub target: Option<WorkloadRef>,
    pub containers: Vec<String>,
    pub images: Vec<String>,
    pub memory_limits: Vec<String>,
    pub probes: Vec<ProbeChoice>,
    pub claims: Vec<String>,
    pub storage_classes: Vec<String>,
    /// The nodeSelector's keys that no node satisfies: the only ones that may be removed.
    pub selector_keys: Vec<String>,
    /// For a nodeSelector key, the values nodes have.
    pub selector_values: BTreeMap<String, Vec<String>>,
    /// Actions the facts rule out (dropping a command on an image whose own entrypoint runs nothing).
    pub ruled_out: Vec<String>,
}

impl Choices {
    /// The same choices with every name as the prompt shows it.
    pub fn redacted(&self, redaction: &Redaction) -> Choices {
        let names = |v: &[String]| v.iter().map(|s| redaction.redact(s)).collect::<Vec<_>>();
        Choices {
            target: self.target.as_ref().map(|t| WorkloadRef {
                kind: t.kind,
                namespace: redaction.redact(&t.namespace),
                name: redaction.redact(&t.name),
            }),
            containers: names(&self.containers),
            images: names(&self.images),
            claims: names(&self.claims),
            ..self.clone()
        }
    }

    /// Narrow an answer schema (`llm::answer_schema_for`) to these choices. A probe variant is offered once per
    /// probe that has handlers left; where a list is empty the parameter stays as it was, except that a probe or
    /// claim with nothing left to choose removes its action.
    pub fn narrow(&self, mut schema: Value) -> Value {
        let Some(variants) = schema["anyOf"].as_array_mut() else {
            return schema;
        };
        let mut out = Vec::new();
        for mut v in std::mem::take(variants) {
            let action = v["properties"]["action"]["const"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if self.ruled_out.contains(&action) {
                continue;
            }
            let props = &mut v["properties"];
            if let Some(t) = &self.target
                && props.get("target").is_some()
            {
                let p = &mut props["target"]["properties"];
                p["kind"] = json!({"type": "string", "const": t.kind.to_string()});
                p["namespace"] = json!({"type": "string", "const": t.namespace});
                p["name"] = json!({"type": "string", "const": t.name});
            }
            narrow_to(props, "container", &self.containers);
            match action.as_str() {
                "set_image" => narrow_to(props, "image", &self.images),
                "set_resources" => narrow_to(props, "memory_limit", &self.memory_limits),
                "recreate_claim" => {
                    if self.claims.is_empty() && self.target.is_some() {
                        continue;
                    }
                    narrow_to(props, "claim", &self.claims);
                    narrow_to(props, "storage_class", &self.storage_classes);
                }
                "set_node_selector" => {
                    if !self.selector_keys.is_empty() {
                        props["remove"]["items"] = enum_of(&self.selector_keys);
                        props["remove"]["maxItems"] = json!(self.selector_keys.len());
                    }
                    if !self.selector_values.is_empty() || !self.selector_keys.is_empty() {
                        let set: serde_json::Map<String, Value> = self
                            .selector_values
                            .iter()
                            .filter(|(_, values)| !values.is_empty())
                            .map(|(k, values)| (k.clone(), enum_of(values)))
                            .collect();
                        props["set"] = json!({"type": "object", "properties": set, "additionalProperties": false});
                    }
                }
                "set_probe" if !self.probes.is_empty() || self.target.is_some() => {
                    for p in self.probes.iter().filter(|p| !p.handlers.is_empty()) {
                        let mut one = v.clone();
                        let props = &mut one["properties"];
                        props["probe"] = json!({"type": "string", "const": probe_name(p.probe)});
                        props["handler"] = json!({"enum": p.handlers});
                        out.push(one);
                    }
                    continue;
                }
                _ => {}
            }
            out.push(v);
        }
        schema["anyOf"] = Value::Array(out);
        schema
    }
}

fn probe_name(p: ProbeKind) -> &'static str {
    match p {
        ProbeKind::Liveness => "liveness",
        ProbeKind::Readiness => "readiness",
    }
}

fn enum_of(values: &[String]) -> Value {
    json!({"type": "string", "enum": values})
}

fn narrow_to(props: &mut Value, field: &str, values: &[String]) {
    if !values.is_empty() && props.get(field).is_some() {
        props[field] = enum_of(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkloadKind;
    use crate::llm::{NameKind, answer_schema_for};

    fn variant<'a>(schema: &'a Value, action: &str) -> Vec<&'a Value> {
        schema["anyOf"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .filter(|v| v["properties"]["action"]["const"] == action)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn choices() -> Choices {
        Choices {
            target: Some(WorkloadRef::new(WorkloadKind::Deployment, "shop", "web")),
            containers: vec!["web".into()],
            images: vec!["nginx:1.27".into(), "nginx:1.26".into()],
            memory_limits: vec!["384Mi".into(), "768Mi".into()],
            probes: vec![
                ProbeChoice {
                    probe: ProbeKind::Liveness,
                    handlers: vec![ProbeHandler::TcpSocket { port: 80 }],
                },
                ProbeChoice {
                    probe: ProbeKind::Readiness,
                    handlers: vec![],
                },
            ],
            claims: vec!["uploads".into()],
            storage_classes: vec!["standard".into()],
            selector_keys: vec!["disktype".into()],
            selector_values: BTreeMap::from([("zone".into(), vec!["a".into(), "b".into()])]),
            ruled_out: vec![],
        }
    }

    #[test]
    fn each_parameter_is_narrowed_to_what_exists() {
        let all = [
            "set_image",
            "set_resources",
            "set_probe",
            "set_node_selector",
            "recreate_claim",
            "drop_command",
            "escalate",
        ];
        let s = choices().narrow(answer_schema_for(&all));
        let p = |a: &str| variant(&s, a)[0]["properties"].clone();
        let cases: Vec<(&str, &str, Value)> = vec![
            ("set_image", "image", json!(["nginx:1.27", "nginx:1.26"])),
            ("set_image", "container", json!(["web"])),
            ("drop_command", "container", json!(["web"])),
            ("set_resources", "memory_limit", json!(["384Mi", "768Mi"])),
            ("recreate_claim", "claim", json!(["uploads"])),
            ("recreate_claim", "storage_class", json!(["standard"])),
        ];
        for (action, field, want) in cases {
            assert_eq!(p(action)[field]["enum"], want, "{action}.{field}");
        }
        assert_eq!(
            p("set_image")["target"]["properties"]["name"]["const"],
            "web"
        );
        assert_eq!(
            p("set_image")["target"]["properties"]["kind"]["const"],
            "Deployment"
        );
        assert_eq!(
            p("set_node_selector")["remove"]["items"]["enum"],
            json!(["disktype"])
        );
        assert_eq!(
            p("set_node_selector")["set"]["properties"]["zone"]["enum"],
            json!(["a", "b"])
        );
        assert_eq!(p("set_node_selector")["set"]["additionalProperties"], false);
        // Escalation is untouched; a probe with no handler left is not offered.
        assert_eq!(
            variant(&s, "escalate")[0],
            variant(&answer_schema_for(&all), "escalate")[0]
        );
        let probes = variant(&s, "set_probe");
        assert_eq!(probes.len(), 1);
        assert_eq!(probes[0]["properties"]["probe"]["const"], "liveness");
        assert_eq!(
            probes[0]["properties"]["handler"]["enum"],
            json!([{"type": "tcp_socket", "port": 80}])
        );
    }

    #[test]
    fn empty_choices_leave_the_schema_as_it_was_and_nothing_left_removes_the_action() {
        let actions = ["set_image", "set_probe", "recreate_claim", "escalate"];
        let base = answer_schema_for(&actions);
        assert_eq!(Choices::default().narrow(base.clone()), base);
        // Known target, but no claim to recreate and no probe handler left: those actions are gone.
        let c = Choices {
            target: Some(WorkloadRef::new(WorkloadKind::Pod, "shop", "web")),
            ..Choices::default()
        };
        let s = c.narrow(base);
        assert!(variant(&s, "recreate_claim").is_empty());
        let ruled = Choices {
            ruled_out: vec!["set_image".into()],
            ..c.clone()
        };
        assert!(variant(&ruled.narrow(answer_schema_for(&actions)), "set_image").is_empty());
        assert!(variant(&s, "set_probe").is_empty());
        assert_eq!(variant(&s, "set_image").len(), 1);
        assert_eq!(variant(&s, "escalate").len(), 1);
    }

    #[test]
    fn names_are_redacted_as_in_the_prompt() {
        let mut r = Redaction::default();
        r.add(NameKind::Namespace, "shop");
        r.add(NameKind::Workload, "web");
        r.add(NameKind::Registry, "registry.corp.example:5000");
        let c = Choices {
            images: vec!["registry.corp.example:5000/web:1.2".into()],
            ..choices()
        };
        let red = c.redacted(&r);
        let t = red.target.clone().unwrap_or_else(|| unreachable!());
        assert_eq!(t.kind, WorkloadKind::Deployment);
        assert!(t.namespace.starts_with("NAMESPACE_"), "{}", t.namespace);
        assert!(t.name.starts_with("WORKLOAD_"), "{}", t.name);
        assert!(!red.images[0].contains("registry.corp"), "{:?}", red.images);
        assert_eq!(red.storage_classes, c.storage_classes);
        // The schema carries the placeholders, so a sampled answer restores to the real names.
        let s = red.narrow(answer_schema_for(&["set_image"]));
        let mut answer = json!({"target": {"name": s["anyOf"][0]["properties"]["target"]["properties"]["name"]["const"]}});
        r.restore(&mut answer);
        assert_eq!(answer["target"]["name"], "web");
    }
}
