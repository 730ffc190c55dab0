//! Building a path of a repository into the objects a GitOps controller applies, as `kustomize build` does for the
//! fields simcluster supports — `resources` (files and directories), `bases`, strategic-merge `patches` and
//! `patchesStrategicMerge`, JSON 6902 `patches` with a target, `images`, `namespace`, `namePrefix`, `nameSuffix` —
//! in kustomize's order (patches, then namespace and names, then images). A field it does not support is an error,
//! never ignored. Without a kustomization file every manifest under the path is taken, as kustomize-controller does.

use crate::patch;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];
const SUPPORTED: &[&str] = &[
    "apiVersion",
    "kind",
    "resources",
    "bases",
    "patches",
    "patchesStrategicMerge",
    "images",
    "namespace",
    "namePrefix",
    "nameSuffix",
];
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "PersistentVolume",
    "CustomResourceDefinition",
];

/// `rel` resolved against `dir`; refused when it leaves the repository.
fn join(dir: &str, rel: &str) -> Result<String, String> {
    if rel.starts_with('/') {
        return Err(format!("{rel}: an absolute path"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in dir.split('/').chain(rel.split('/')) {
        match p {
            "" | "." => {}
            ".." => {
                parts
                    .pop()
                    .ok_or_else(|| format!("{dir}/{rel}: leaves the repository"))?;
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn is_dir(files: &BTreeMap<String, String>, dir: &str) -> bool {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    files.keys().any(|f| f.starts_with(&prefix))
}

/// Every document of a YAML text, null ones left out.
pub fn documents(name: &str, text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| format!("{name}: {e}"))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The objects the path `dir` builds into.
pub fn build(files: &BTreeMap<String, String>, dir: &str) -> Result<Vec<Value>, String> {
    build_at(files, &join("", dir)?, 0)
}

fn build_at(
    files: &BTreeMap<String, String>,
    dir: &str,
    depth: usize,
) -> Result<Vec<Value>, String> {
    if depth > 16 {
        return Err(format!("{dir}: kustomizations nested too deep"));
    }
    if !is_dir(files, dir) {
        return Err(format!("{dir}: no such directory"));
    }
    for name in KUSTOMIZATION_FILES {
        let path = join(dir, name)?;
        if let Some(text) = files.get(&path) {
            return kustomization(files, dir, &path, text, depth);
        }
    }
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut out = Vec::new();
    for (path, text) in files.range(prefix.clone()..) {
        if !path.starts_with(&prefix) {
            break;
        }
        let hidden = path[prefix.len()..].split('/').any(|p| p.starts_with('.'));
        if hidden || !(path.ends_with(".yaml") || path.ends_with(".yml")) {
            continue;
        }
        out.extend(
            documents(path, text)?
                .into_iter()
                .filter(|d| d["apiVersion"].is_string() && d["kind"].is_string()),
        );
    }
    Ok(out)
}

fn kustomization(
    files: &BTreeMap<String, String>,
    dir: &str,
    path: &str,
    text: &str,
    depth: usize,
) -> Result<Vec<Value>, String> {
    let k = documents(path, text)?
        .into_iter()
        .next()
        .unwrap_or(json!({}));
    if let Some(field) = k
        .as_object()
        .into_iter()
        .flatten()
        .map(|(f, _)| f)
        .find(|f| !SUPPORTED.contains(&f.as_str()))
    {
        return Err(format!(
            "{path}: simcluster's kustomize does not support `{field}`"
        ));
    }
    let mut objects: Vec<Value> = Vec::new();
    for list in ["resources", "bases"] {
        for r in k[list].as_array().into_iter().flatten() {
            let r = r
                .as_str()
                .ok_or_else(|| format!("{path}: {list} must be strings"))?;
            let p = join(dir, r)?;
            let more = match files.get(&p) {
                Some(text) => documents(&p, text)?,
                None => build_at(files, &p, depth + 1)?,
            };
            for o in more {
                if objects.iter().any(|x| id(x) == id(&o)) {
                    return Err(format!("{path}: {} is defined twice", id(&o)));
                }
                objects.push(o);
            }
        }
    }
    for p in k["patchesStrategicMerge"].as_array().into_iter().flatten() {
        let file = join(dir, p.as_str().unwrap_or_default())?;
        let text = files
            .get(&file)
            .ok_or_else(|| format!("{file}: no such file"))?;
        for doc in documents(&file, text)? {
            apply_patch(&mut objects, &doc, None, &file)?;
        }
    }
    for p in k["patches"].as_array().into_iter().flatten() {
        let (name, text) = match (p["path"].as_str(), p["patch"].as_str()) {
            (Some(f), _) => {
                let file = join(dir, f)?;
                let text = files
                    .get(&file)
                    .ok_or_else(|| format!("{file}: no such file"))?;
                (file, text.clone())
            }
            (None, Some(inline)) => (path.to_string(), inline.to_string()),
            _ => return Err(format!("{path}: a patch needs `path` or `patch`")),
        };
        let target = p.get("target").filter(|t| t.is_object());
        for doc in documents(&name, &text)? {
            apply_patch(&mut objects, &doc, target, &name)?;
        }
    }
    if let Some(ns) = k["namespace"].as_str() {
        for o in objects.iter_mut() {
            if !CLUSTER_SCOPED.contains(&o["kind"].as_str().unwrap_or_default()) {
                o["metadata"]["namespace"] = json!(ns);
            }
        }
    }
    let (prefix, suffix) = (
        k["namePrefix"].as_str().unwrap_or_default(),
        k["nameSuffix"].as_str().unwrap_or_default(),
    );
    if !prefix.is_empty() || !suffix.is_empty() {
        for o in objects.iter_mut() {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            o["metadata"]["name"] = json!(format!("{prefix}{name}{suffix}"));
        }
    }
    for entry in k["images"].as_array().into_iter().flatten() {
        for o in objects.iter_mut() {
            set_images(o, entry);
        }
    }
    Ok(objects)
}

fn id(o: &Value) -> String {
    format!(
        "{} {}/{}",
        o["kind"].as_str().unwrap_or_default(),
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// A strategic-merge patch applies to the object of its kind and name (or to those its target selects); a JSON
/// 6902 patch (a list of operations) to those its target selects. A patch that selects nothing is an error.
fn apply_patch(
    objects: &mut [Value],
    doc: &Value,
    target: Option<&Value>,
    file: &str,
) -> Result<(), String> {
    let selects = |o: &Value| -> bool {
        match target {
            Some(t) => {
                t["kind"].as_str().is_none_or(|k| o["kind"] == k)
                    && t["name"]
                        .as_str()
                        .is_none_or(|n| o["metadata"]["name"] == n)
                    && t["namespace"]
                        .as_str()
                        .is_none_or(|n| o["metadata"]["namespace"] == n)
            }
            None => o["kind"] == doc["kind"] && o["metadata"]["name"] == doc["metadata"]["name"],
        }
    };
    let mut hit = false;
    for o in objects.iter_mut().filter(|o| selects(o)) {
        hit = true;
        if doc.is_array() {
            patch::json_patch(o, doc).map_err(|e| format!("{file}: {e}"))?;
        } else {
            let mut body = doc.clone();
            if let Some(m) = body.as_object_mut() {
                // The patch's own identity is how it was matched, not a change.
                m.remove("apiVersion");
                m.remove("kind");
                if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("name");
                    meta.remove("namespace");
                }
            }
            patch::strategic_merge_patch(o, &body);
        }
    }
    if hit {
        Ok(())
    } else {
        Err(format!("{file}: the patch matches no resource"))
    }
}

/// Kustomize's `images` transformer: every container whose image name (without tag or digest, as written) is the
/// entry's `name`.
fn set_images(v: &mut Value, entry: &Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if (k == "containers" || k == "initContainers") && child.is_array() {
                    for c in child.as_array_mut().into_iter().flatten() {
                        if let Some(img) = c["image"].as_str()
                            && let Some(new) = transformed(img, entry)
                        {
                            c["image"] = json!(new);
                        }
                    }
                } else {
                    set_images(child, entry);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| set_images(c, entry)),
        _ => {}
    }
}

fn transformed(image: &str, entry: &Value) -> Option<String> {
    let name = entry["name"].as_str()?;
    let (no_digest, digest) = match image.split_once('@') {
        Some((i, d)) => (i, Some(d)),
        None => (image, None),
    };
    let (repo, tag) = match no_digest.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (no_digest, None),
    };
    if repo != name {
        return None;
    }
    let repo = entry["newName"].as_str().unwrap_or(repo);
    Some(
        match (
            entry["digest"].as_str(),
            entry["newTag"].as_str(),
            digest,
            tag,
        ) {
            (Some(d), ..) => format!("{repo}@{d}"),
            (None, Some(t), ..) => format!("{repo}:{t}"),
            (None, None, Some(d), _) => format!("{repo}@{d}"),
            (None, None, None, Some(t)) => format!("{repo}:{t}"),
            (None, None, None, None) => repo.to_string(),
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_overlay_patches_renames_and_retags_its_base() {
        let f = files(&[
            ("base/kustomization.yaml", "resources: [web.yaml]\n"),
            (
                "base/web.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: web, image: 'nginx:1.0'}]\n",
            ),
            (
                "prod/kustomization.yaml",
                "namespace: shop\nresources: [../base]\npatches:\n- path: mem.yaml\n- target: {kind: Deployment, name: web}\n  patch: |\n    - op: add\n      path: /spec/replicas\n      value: 3\nimages:\n- {name: nginx, newTag: '1.27.3'}\n",
            ),
            (
                "prod/mem.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: web, resources: {limits: {memory: 1Gi}}}]\n",
            ),
        ]);
        let out = build(&f, "./prod").unwrap();
        assert_eq!(out.len(), 1);
        let d = &out[0];
        assert_eq!(d["metadata"]["namespace"], "shop");
        assert_eq!(d["spec"]["replicas"], 3);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx:1.27.3");
        assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
    }

    #[test]
    fn without_a_kustomization_every_manifest_counts() {
        let f = files(&[
            (
                "apps/a.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
            ),
            (
                "apps/sub/c.yml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            ),
            ("apps/README.md", "not yaml"),
            (
                "apps/.hidden/d.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n",
            ),
            (
                "other/e.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: e}\n",
            ),
        ]);
        let names: Vec<String> = build(&f, "apps")
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["a", "b", "c"]);
    }

    #[test]
    fn what_it_cannot_build_is_an_error() {
        let f = files(&[
            ("k/kustomization.yaml", "helmCharts: [{name: x}]\n"),
            ("p/kustomization.yaml", "resources: [../../etc]\n"),
            ("q/kustomization.yaml", "patchesStrategicMerge: [x.yaml]\n"),
            (
                "q/x.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nothing}\n",
            ),
        ]);
        assert!(
            build(&f, "k")
                .unwrap_err()
                .contains("does not support `helmCharts`")
        );
        assert!(
            build(&f, "p")
                .unwrap_err()
                .contains("leaves the repository")
        );
        assert!(build(&f, "q").unwrap_err().contains("matches no resource"));
        assert!(
            build(&f, "missing")
                .unwrap_err()
                .contains("no such directory")
        );
    }
}
