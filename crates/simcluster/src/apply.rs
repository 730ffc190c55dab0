//! Field ownership and server-side apply, as far as `kubectl apply --server-side` needs them. Every write through the
//! API records which manager set which fields (`metadata.managedFields`, FieldsV1). An apply
//! (`application/apply-patch+yaml`) creates the object or merges the applied configuration into it; a field it sets
//! that another manager owns with a different value is a conflict (409, each field named) unless `force=true`,
//! which takes the field over; a field this manager applied before and no longer does is removed when nobody else
//! owns it.

use crate::error::ApiError;
use crate::patch;
use chrono::SecondsFormat;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// A field path in FieldsV1 notation: `f:spec`, `k:{"name":"web"}` (a list item by its merge key), `v:"x"` (an item of
/// a set), `.` (the list item or map itself).
type Path = Vec<String>;

/// Fields no manager owns: the object's identity and what the server sets.
fn unowned(key: &str) -> bool {
    matches!(key, "apiVersion" | "kind" | "status")
}

const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Every owned leaf of an object (or of a configuration applied to it).
fn leaves(obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            if unowned(k) {
                continue;
            }
            if k == "metadata" {
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    if !SERVER_METADATA.contains(&mk.as_str()) {
                        walk(
                            mv,
                            &mut vec!["f:metadata".into(), format!("f:{mk}")],
                            &mut out,
                        );
                    }
                }
                continue;
            }
            walk(v, &mut vec![format!("f:{k}")], &mut out);
        }
    }
    out
}

fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    let field = path
        .last()
        .and_then(|p| p.strip_prefix("f:"))
        .unwrap_or_default()
        .to_string();
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                walk(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            match patch::merge_key(&field, items.iter().find(|i| i.is_object())) {
                Some(key) if items.iter().all(|i| i.get(key).is_some()) => {
                    for item in items {
                        path.push(format!("k:{}", json!({key: item[key]})));
                        let mut node = path.clone();
                        node.push(".".into());
                        out.insert(node);
                        walk(item, path, out);
                        path.pop();
                    }
                }
                _ if patch::is_merged_primitive_list(&field) => {
                    for item in items {
                        let mut p = path.clone();
                        p.push(format!("v:{item}"));
                        out.insert(p);
                    }
                }
                // An atomic list is owned whole.
                _ => {
                    out.insert(path.clone());
                }
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at a path, if the object has it.
fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for elem in path {
        cur = if let Some(f) = elem.strip_prefix("f:") {
            cur.get(f)?
        } else if let Some(k) = elem.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur.as_array()?
                .iter()
                .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))?
        } else if let Some(v) = elem.strip_prefix("v:") {
            let want: Value = serde_json::from_str(v).ok()?;
            cur.as_array()?.iter().find(|i| **i == want)?
        } else {
            cur
        };
    }
    Some(cur)
}

/// Remove the field or list item a path names.
fn remove(obj: &mut Value, path: &[String]) {
    let (last, parent) = match path.split_last() {
        Some((l, p)) if l == "." => match p.split_last() {
            Some((item, parent)) => (item, parent),
            None => return,
        },
        Some(split) => split,
        None => return,
    };
    let mut cur = obj;
    for elem in parent {
        let next = if let Some(f) = elem.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = elem.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            cur.as_array_mut().and_then(|a| {
                a.iter_mut()
                    .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))
            })
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
        if let Some(a) = cur.as_array_mut() {
            a.retain(|i| !key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
        }
    } else if let Some(v) = last.strip_prefix("v:") {
        let gone: Value = serde_json::from_str(v).unwrap_or(Value::Null);
        if let Some(a) = cur.as_array_mut() {
            a.retain(|i| *i != gone);
        }
    }
}

fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    fn insert(m: &mut Map<String, Value>, path: &[String]) {
        if let Some((first, rest)) = path.split_first()
            && let Value::Object(child) = m.entry(first.clone()).or_insert_with(|| json!({}))
        {
            insert(child, rest);
        }
    }
    let mut root = Map::new();
    for p in paths {
        insert(&mut root, p);
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    fn go(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    go(child, path, out);
                    path.pop();
                }
            }
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// `.spec.template.spec.containers[name="web"].image`, as conflicts name a field.
fn render(path: &[String]) -> String {
    let mut out = String::new();
    for elem in path {
        if let Some(f) = elem.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = elem.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(kk, kv)| format!("{kk}={kv}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = elem.strip_prefix("v:") {
            out.push_str(&format!("[{v}]"));
        }
    }
    out
}

struct Entry {
    manager: String,
    operation: String,
    subresource: Option<String>,
    api_version: String,
    time: String,
    fields: BTreeSet<Path>,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            subresource: e["subresource"].as_str().map(String::from),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

fn store(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                               "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if let Some(s) = e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if obj["metadata"].is_object() {
        obj["metadata"]["managedFields"] = json!(list);
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Record a write that is not an apply (create, update, patch): the fields it changed now belong to `manager`, and
/// no longer to anyone else.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let before = old.map(leaves).unwrap_or_default();
    let after = leaves(new);
    let changed: BTreeSet<Path> = after
        .iter()
        .filter(|p| {
            // A list item's own node changes when it appears; a change inside it belongs to its fields.
            !before.contains(*p)
                || (p.last().is_some_and(|l| l != ".")
                    && old.and_then(|o| get(o, p)) != get(new, p))
        })
        .cloned()
        .collect();
    let mut list = old.map(entries).unwrap_or_default();
    for e in &mut list {
        e.fields
            .retain(|p| after.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        let api_version = new["apiVersion"].as_str().unwrap_or_default().to_string();
        match list.iter_mut().find(|e| {
            e.manager == manager
                && e.operation == "Update"
                && e.subresource.as_deref() == subresource
        }) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now();
            }
            None => list.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                subresource: subresource.map(String::from),
                api_version,
                time: now(),
                fields: changed,
            }),
        }
    }
    store(new, list);
}

/// Server-side apply of `config` to the stored object `rt` `ns`/`name` (created when absent), as the API server
/// makes it. The stored object, and whether it was created.
#[allow(clippy::too_many_arguments)]
pub fn apply_stored(
    store: &crate::Store,
    rt: &'static crate::resources::ResourceType,
    ns: &str,
    name: &str,
    config: &Value,
    manager: &str,
    force: bool,
    dry_run: bool,
) -> Result<(Value, bool), ApiError> {
    match store.get(rt, ns, name) {
        Err(e) if e.code == 404 => {
            let mut obj = apply(None, config, manager, force, rt.kind, name)?;
            obj["metadata"]["name"] = serde_json::json!(name);
            Ok((store.create(rt, ns, obj, dry_run)?, true))
        }
        Err(e) => Err(e),
        Ok(_) => {
            let applied = store.modify(rt, ns, name, false, dry_run, |old| {
                let mut new = apply(Some(old), config, manager, force, rt.kind, name)?;
                new["metadata"]["resourceVersion"] = Value::Null;
                Ok(new)
            })?;
            Ok((applied, false))
        }
    }
}

/// Server-side apply of `config` by `manager` to the live object (`None`: it does not exist yet). The object to
/// store, or the conflicts.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    kind: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let applied = leaves(config);
    let api_version = config["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(live) = live else {
        let mut obj = config.clone();
        store(
            &mut obj,
            vec![Entry {
                manager: manager.into(),
                operation: "Apply".into(),
                subresource: None,
                api_version,
                time: now(),
                fields: applied,
            }],
        );
        return Ok(obj);
    };
    let mut list = entries(live);
    let others = |list: &[Entry], p: &Path| -> Vec<String> {
        list.iter()
            .filter(|e| !(e.manager == manager && e.operation == "Apply") && e.fields.contains(p))
            .map(|e| e.manager.clone())
            .collect()
    };
    // A list item's own node (`.`) is about its existence: only its fields can differ.
    let differs = |p: &&Path| p.last().is_some_and(|l| l != ".") && get(live, p) != get(config, p);
    let conflicts: Vec<(String, String)> = applied
        .iter()
        .filter(differs)
        .flat_map(|p| others(&list, p).into_iter().map(move |m| (m, render(p))))
        .collect();
    if !conflicts.is_empty() && !force {
        let causes: Vec<(String, String, String)> = conflicts
            .iter()
            .map(|(m, f)| {
                (
                    "FieldManagerConflict".to_string(),
                    f.clone(),
                    format!("conflict with \"{m}\""),
                )
            })
            .collect();
        let summary: Vec<String> = conflicts
            .iter()
            .map(|(m, f)| format!("conflict with \"{m}\": {f}"))
            .collect();
        return Err(ApiError::apply_conflict(kind, name, &summary, causes));
    }
    let previous = list
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut merged = live.clone();
    // What this manager applied before and applies no more goes, unless someone else owns it too.
    for p in previous.difference(&applied) {
        if others(&list, p).is_empty() {
            remove(&mut merged, p);
        }
    }
    let mut config_body = config.clone();
    if let Some(m) = config_body.as_object_mut() {
        m.remove("status");
    }
    patch::strategic_merge_patch(&mut merged, &config_body);
    // Forced: the fields move to this manager. Otherwise equal values are shared.
    if force {
        let taken: BTreeSet<Path> = applied.iter().filter(differs).cloned().collect();
        for e in &mut list {
            e.fields.retain(|p| !taken.contains(p));
        }
    }
    list.retain(|e| !(e.manager == manager && e.operation == "Apply"));
    list.push(Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        subresource: None,
        api_version,
        time: now(),
        fields: applied,
    });
    store(&mut merged, list);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str, replicas: Option<i64>) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}});
        if let Some(r) = replicas {
            d["spec"]["replicas"] = json!(r);
        }
        d
    }

    fn owners(obj: &Value) -> Vec<(String, String)> {
        entries(obj)
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect()
    }

    #[test]
    fn leaves_follow_merge_keys_sets_and_atomic_lists() {
        let obj = json!({"metadata": {"name": "x", "finalizers": ["a"]},
                         "spec": {"containers": [{"name": "web", "args": ["-v"]}]}});
        let got: Vec<String> = leaves(&obj).iter().map(|p| p.join("/")).collect();
        assert_eq!(
            got,
            vec![
                "f:metadata/f:finalizers/v:\"a\"",
                "f:spec/f:containers/k:{\"name\":\"web\"}/.",
                "f:spec/f:containers/k:{\"name\":\"web\"}/f:args",
                "f:spec/f:containers/k:{\"name\":\"web\"}/f:name",
            ]
        );
        assert_eq!(from_fields_v1(&to_fields_v1(&leaves(&obj))), leaves(&obj));
    }

    #[test]
    fn apply_creates_merges_removes_and_reports_conflicts() {
        let created = apply(
            None,
            &deployment("nginx:1.27", Some(2)),
            "kubectl",
            false,
            "Deployment",
            "web",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            owners(&created),
            vec![("kubectl".to_string(), "Apply".to_string())]
        );

        // Another manager changes the image with an ordinary patch: it owns that field now.
        let mut patched = created.clone();
        patched["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
        record_update(Some(&created), &mut patched, "kube-reflexion", None);
        assert_eq!(
            owners(&patched),
            vec![
                ("kubectl".to_string(), "Apply".to_string()),
                ("kube-reflexion".to_string(), "Update".to_string())
            ]
        );

        // Applying the old image again conflicts, naming the field and its owner.
        let err = apply(
            Some(&patched),
            &deployment("nginx:1.27", Some(2)),
            "kubectl",
            false,
            "Deployment",
            "web",
        )
        .err()
        .unwrap_or_else(|| panic!("a conflict"));
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains(
                "conflict with \"kube-reflexion\": .spec.template.spec.containers[name=\"web\"].image"
            ),
            "{}",
            err.message
        );
        // Applying the image it has now is no conflict; dropping replicas from the config removes the field.
        let merged = apply(
            Some(&patched),
            &deployment("nginx:1.28", None),
            "kubectl",
            false,
            "Deployment",
            "web",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(merged["spec"].get("replicas").is_none(), "{merged}");
        // force takes the field over.
        let forced = apply(
            Some(&patched),
            &deployment("nginx:1.27", Some(2)),
            "kubectl",
            true,
            "Deployment",
            "web",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            forced["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.27"
        );
        assert_eq!(
            owners(&forced),
            vec![("kubectl".to_string(), "Apply".to_string())]
        );
    }
}
