//! A typed action as assignments to fields of a manifest (`ops`), and those assignments made to the YAML text by
//! editing only the bytes of the values they change (`edit`): comments, key order, quoting, anchors elsewhere and
//! every other line stay byte for byte. Every edit is checked by reading the result back: the edited document must
//! equal the assignments applied to the original's value, and every other document must be unchanged.

mod text;

use super::yaml::{self, Document};
use crate::action::Action;
use crate::owner::WorkloadKind;
use serde_json::{Map, Value, json};
use text::Editor;

/// One step of a path into an object: a mapping key, or the list item whose `key` field is `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Item { key: String, value: String },
}

impl std::fmt::Display for Seg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seg::Key(k) => write!(f, ".{k}"),
            Seg::Item { key, value } => write!(f, "[{key}={value}]"),
        }
    }
}

pub fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn named(name: &str) -> Seg {
    Seg::Item {
        key: "name".into(),
        value: name.to_string(),
    }
}

/// A path rendered as `.spec.template.spec.containers[name=web].image`.
pub fn path_text(path: &[Seg]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// Set a field to a value (creating what leads to it), or remove it (`None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    pub path: Vec<Seg>,
    pub value: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Yaml(#[from] yaml::YamlError),
    #[error("{0} is not changed by editing a manifest")]
    NotAnEdit(&'static str),
    #[error("container {0} is not in the manifest")]
    NoContainer(String),
    #[error(
        "{0}: the value is an alias or merge key (`*`, `<<`); change it where its anchor is defined, by hand"
    )]
    Aliased(String),
    #[error(
        "{0}: the value is anchored and used elsewhere in the file; editing it would change both places"
    )]
    Anchored(String),
    #[error("{0}: {1}")]
    Unsupported(String, &'static str),
    #[error("the edited file does not read back as intended: {0}")]
    Mismatch(String),
    #[error("no {0} in the file")]
    NoDocument(String),
}

/// Where the pod spec is in an object of this kind.
pub fn pod_spec_path(kind: WorkloadKind) -> Vec<Seg> {
    let p: &[&str] = match kind {
        WorkloadKind::Pod => &["spec"],
        WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    };
    p.iter().map(|k| key(k)).collect()
}

/// Whether a list item's `key` field is `value`: a string, or a number written as `value` (Service ports are
/// keyed by their number).
fn item_is(item: &Value, key: &str, value: &str) -> bool {
    match item.get(key) {
        Some(Value::String(s)) => s == value,
        Some(Value::Number(n)) => n.to_string() == value,
        _ => false,
    }
}

/// The value at a path of an object, if it is there.
pub fn get<'a>(mut v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.get(k)?,
            Seg::Item { key, value } => v.as_array()?.iter().find(|i| item_is(i, key, value))?,
        };
    }
    Some(v)
}

/// The assignments an action makes to the object `obj` (a workload of `kind`, as its manifest or as rendered).
pub fn ops(action: &Action, kind: WorkloadKind, obj: &Value) -> Result<Vec<Assign>, EditError> {
    let spec = pod_spec_path(kind);
    let container = |name: &str| -> Result<Vec<Seg>, EditError> {
        for list in ["containers", "initContainers"] {
            let mut p = spec.clone();
            p.extend([key(list), named(name)]);
            if get(obj, &p).is_some() {
                return Ok(p);
            }
        }
        Err(EditError::NoContainer(name.to_string()))
    };
    let at = |base: &[Seg], rest: &[&str]| -> Vec<Seg> {
        let mut p = base.to_vec();
        p.extend(rest.iter().map(|k| key(k)));
        p
    };
    let set = |path: Vec<Seg>, v: Value| Assign {
        path,
        value: Some(v),
    };
    Ok(match action {
        Action::SetImage {
            container: c,
            image,
            ..
        } => vec![set(at(&container(c)?, &["image"]), json!(image))],
        Action::SetResources {
            container: c,
            memory_limit,
            memory_request,
            ..
        } => {
            let c = container(c)?;
            let mut v = vec![set(
                at(&c, &["resources", "limits", "memory"]),
                json!(memory_limit),
            )];
            if let Some(r) = memory_request {
                v.push(set(at(&c, &["resources", "requests", "memory"]), json!(r)));
            }
            v
        }
        Action::SetRequests {
            container: c,
            memory,
            cpu,
            ..
        } => {
            let c = container(c)?;
            let mut v = Vec::new();
            for (resource, q) in [("memory", memory), ("cpu", cpu)] {
                if let Some(q) = q {
                    v.push(set(at(&c, &["resources", "requests", resource]), json!(q)));
                }
            }
            v
        }
        Action::SetEnv {
            container: c,
            name,
            from,
            ..
        } => {
            let mut p = at(&container(c)?, &["env"]);
            p.push(named(name));
            vec![set(p, json!({"name": name, "valueFrom": from.to_api()}))]
        }
        Action::SetProbe {
            container: c,
            probe,
            handler,
            ..
        } => {
            let p = at(&container(c)?, &[probe.field()]);
            let Value::Object(handler) = handler.to_api() else {
                return Err(EditError::NotAnEdit("a probe without a handler"));
            };
            if get(obj, &p).is_some_and(Value::is_object) {
                // Only the handler changes; the probe's timings stay.
                handler
                    .into_iter()
                    .map(|(k, v)| Assign {
                        path: at(&p, &[&k]),
                        value: (!v.is_null()).then_some(v),
                    })
                    .collect()
            } else {
                let h: Map<String, Value> =
                    handler.into_iter().filter(|(_, v)| !v.is_null()).collect();
                vec![set(p, Value::Object(h))]
            }
        }
        Action::SetNodeSelector { remove, set: s, .. } => {
            let p = at(&spec, &["nodeSelector"]);
            let old = get(obj, &p).cloned().unwrap_or(Value::Null);
            if crate::action::edited_selector(&old, remove, s).is_empty() {
                vec![Assign {
                    path: p,
                    value: None,
                }]
            } else {
                label_ops(&p, remove, s)
            }
        }
        Action::SetServiceSelector { remove, set: s, .. } => {
            label_ops(&[key("spec"), key("selector")], remove, s)
        }
        Action::SetServiceTargetPort {
            port, target_port, ..
        } => {
            let p = vec![
                key("spec"),
                key("ports"),
                Seg::Item {
                    key: "port".into(),
                    value: port.to_string(),
                },
            ];
            if get(obj, &p).is_none() {
                return Err(EditError::Unsupported(
                    path_text(&p),
                    "the Service port is not in the manifest",
                ));
            }
            vec![set(
                at(&p, &["targetPort"]),
                crate::service::target_value(target_port),
            )]
        }
        Action::DropCommand { container: c, .. } => {
            let c = container(c)?;
            ["command", "args"]
                .iter()
                .map(|f| Assign {
                    path: at(&c, &[f]),
                    value: None,
                })
                .collect()
        }
        Action::RolloutUndo { .. } => return Err(EditError::NotAnEdit("rollout_undo")),
        Action::RecreateClaim { .. } => return Err(EditError::NotAnEdit("recreate_claim")),
        Action::GrantRoleRule { .. } => return Err(EditError::NotAnEdit("grant_role_rule")),
        Action::Escalate { .. } => return Err(EditError::NotAnEdit("escalate")),
    })
}

/// A label map's keys removed and others set, one assignment each.
fn label_ops(
    map: &[Seg],
    remove: &[String],
    set: &std::collections::BTreeMap<String, String>,
) -> Vec<Assign> {
    let at = |k: &str| {
        let mut p = map.to_vec();
        p.push(key(k));
        p
    };
    remove
        .iter()
        .map(|k| Assign {
            path: at(k),
            value: None,
        })
        .chain(set.iter().map(|(k, v)| Assign {
            path: at(k),
            value: Some(json!(v)),
        }))
        .collect()
}

/// The assignments applied to a value: what the edited document must read back as.
pub fn apply(obj: &mut Value, ops: &[Assign]) {
    for op in ops {
        assign_json(obj, &op.path, op.value.as_ref());
    }
}

pub(super) fn assign_json(v: &mut Value, path: &[Seg], value: Option<&Value>) {
    let Some((first, rest)) = path.split_first() else {
        if let Some(value) = value {
            *v = value.clone();
        }
        return;
    };
    match first {
        Seg::Key(k) => {
            if rest.is_empty() && value.is_none() {
                if let Some(m) = v.as_object_mut() {
                    m.remove(k);
                }
                return;
            }
            if value.is_none() && v.get(k).is_none() {
                return;
            }
            if !v.is_object() {
                *v = json!({});
            }
            if let Some(m) = v.as_object_mut() {
                assign_json(m.entry(k.clone()).or_insert(Value::Null), rest, value);
            }
        }
        Seg::Item { key, value: name } => {
            if !v.is_array() {
                if value.is_none() {
                    return;
                }
                *v = json!([]);
            }
            let Some(items) = v.as_array_mut() else {
                return;
            };
            let found = items.iter().position(|i| item_is(i, key, name));
            match (found, value) {
                (Some(i), None) if rest.is_empty() => {
                    items.remove(i);
                }
                (Some(i), _) => assign_json(&mut items[i], rest, value),
                (None, None) => {}
                (None, Some(_)) => {
                    let mut item = json!({key.clone(): name});
                    assign_json(&mut item, rest, value);
                    items.push(item);
                }
            }
        }
    }
}

/// The YAML file `text` with the assignments made to its document `doc` (an index into `yaml::parse`). Each
/// assignment is made to the text the previous one left, so two that create the same missing parent share it.
pub fn edit(text: &str, doc: usize, assigns: &[Assign]) -> Result<String, EditError> {
    let mut expected = Value::Null;
    let mut current = text.to_string();
    for (i, a) in assigns.iter().enumerate() {
        let docs = yaml::parse(&current)?;
        let d = docs
            .get(doc)
            .ok_or_else(|| EditError::NoDocument(format!("document {doc}")))?;
        let root = d
            .root
            .as_ref()
            .ok_or_else(|| EditError::NoDocument(format!("content in document {doc}")))?;
        let cur = doc_json(&current, d)?;
        if i == 0 {
            expected = cur.clone();
        }
        let mut editor = Editor::new(&current, root);
        editor.assign(root, &cur, &a.path, a.value.as_ref(), &a.path)?;
        current = editor.finish()?;
        assign_json(&mut expected, &a.path, a.value.as_ref());
    }
    check(text, &current, doc, &expected)?;
    Ok(current)
}

/// The JSON value of one parsed document, read from its own text.
fn doc_json(text: &str, d: &Document) -> Result<Value, EditError> {
    Ok(yaml::to_json(&text[d.range.clone()])?
        .into_iter()
        .next()
        .unwrap_or(Value::Null))
}

/// The edited file must read back as the original with exactly the expected document changed.
fn check(before: &str, after: &str, doc: usize, expected: &Value) -> Result<(), EditError> {
    let (old, new) = (yaml::parse(before)?, yaml::parse(after)?);
    if old.len() != new.len() {
        return Err(EditError::Mismatch(format!(
            "{} documents became {}",
            old.len(),
            new.len()
        )));
    }
    for (i, (o, n)) in old.iter().zip(&new).enumerate() {
        let got = doc_json(after, n)?;
        let want = if i == doc {
            expected.clone()
        } else {
            doc_json(before, o)?
        };
        if got != want {
            return Err(EditError::Mismatch(format!(
                "document {i} reads {got} instead of {want}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_assignments_create_and_remove() {
        let mut v = json!({"spec": {"containers": [{"name": "web", "image": "a"}]}});
        let c = vec![key("spec"), key("containers"), named("web")];
        let mut limit = c.clone();
        limit.extend([key("resources"), key("limits"), key("memory")]);
        let mut env = c.clone();
        env.extend([key("env"), named("X")]);
        let mut image = c.clone();
        image.push(key("image"));
        apply(
            &mut v,
            &[
                Assign {
                    path: limit,
                    value: Some(json!("1Gi")),
                },
                Assign {
                    path: env,
                    value: Some(json!({"name": "X", "value": "1"})),
                },
                Assign {
                    path: image,
                    value: None,
                },
            ],
        );
        assert_eq!(
            v,
            json!({"spec": {"containers": [{"name": "web", "resources": {"limits": {"memory": "1Gi"}},
                "env": [{"name": "X", "value": "1"}]}]}})
        );
    }
}
