//! Which file of a repository sets the fields a typed action changes, as Flux's kustomize-controller and Argo CD
//! build a path: a `kustomization.yaml` (resources, directories and bases, strategic-merge patches, the `images`
//! transformer, `namespace`), or, without one, every YAML file under the path. The edit lands where the field's
//! effective value is set — the overlay patch over the base, the `images` entry over the manifest — and the result
//! is checked by building the object again from the edited files.

mod route;

pub use route::plan;

use super::edit::{self, EditError, Seg};
use super::yaml;
use crate::owner::WorkloadKind;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Directories deeper than this (bases of bases) are refused: a cycle or a repository built to exhaust us.
const MAX_DEPTH: usize = 16;
/// Files read for one object at most.
const MAX_FILES: usize = 2000;
const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KustomizeError {
    #[error("{0}: the path leaves the repository")]
    Escapes(String),
    #[error("{0}: a symbolic link; kube-reflexion does not follow links in a repository")]
    Symlink(String),
    #[error("{0}: {1}")]
    Unreadable(String, String),
    #[error("{0} is not defined under {1}")]
    NotFound(String, String),
    #[error("{0} is defined twice: in {1} and in {2}")]
    Duplicate(String, String, String),
    #[error("{0}: kustomizations nested deeper than {MAX_DEPTH}, or more than {MAX_FILES} files")]
    TooDeep(String),
    #[error("{0}: a JSON 6902 patch changes {1}; change it by hand")]
    JsonPatch(String, String),
    #[error("{0}: the images entry for {1} sets a digest; change it by hand")]
    Digest(String, String),
    #[error("{0}: the images entry renames {1} to {2}, but the fix uses {3}")]
    Renamed(String, String, String, String),
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// A repository as files: read through this so that the I/O side decides what may be read (no links, nothing
/// outside the checkout).
pub trait Tree {
    /// A file's text; `None` when there is no such file.
    fn read(&self, path: &str) -> Result<Option<String>, KustomizeError>;
    /// A directory's entries as (name, is a directory); `None` when it is not a directory.
    fn list(&self, dir: &str) -> Result<Option<Vec<(String, bool)>>, KustomizeError>;
}

/// The object looked for.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One document that defines or patches the object, bottom (the base) first.
#[derive(Debug, Clone)]
pub struct Layer {
    pub file: String,
    pub doc: usize,
    pub value: Value,
}

/// An `images` entry of a kustomization.
#[derive(Debug, Clone)]
pub struct ImageOverride {
    pub file: String,
    pub doc: usize,
    pub entry: Value,
}

/// The object as the path builds it.
#[derive(Debug, Clone)]
pub struct Found {
    pub layers: Vec<Layer>,
    pub images: Vec<ImageOverride>,
    /// The object built from the layers, before the `images` transformer.
    pub merged: Value,
    /// What the controller applies.
    pub effective: Value,
}

/// One file changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEdit {
    pub path: String,
    pub before: String,
    pub after: String,
}

/// `rel` resolved against the directory `dir`, both relative to the repository's root. Refused when it leaves it.
pub fn join(dir: &str, rel: &str) -> Result<String, KustomizeError> {
    if rel.starts_with('/') || rel.contains('\\') || rel.contains('\0') {
        return Err(KustomizeError::Escapes(rel.to_string()));
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in dir.split('/').chain(rel.split('/')) {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(KustomizeError::Escapes(format!("{dir}/{rel}")));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

struct Finder<'t> {
    tree: &'t dyn Tree,
    target: Target,
    files: usize,
    resources: Vec<(Layer, Naming)>,
    patches: Vec<Layer>,
    images: Vec<ImageOverride>,
    json_patches: Vec<(String, Value)>,
}

/// What a kustomization level changes about the names and namespaces of what it includes.
#[derive(Clone, Default)]
struct Naming {
    prefix: String,
    suffix: String,
    namespace: Option<String>,
}

/// Find the object under `root` (the controller's path).
pub fn find(tree: &dyn Tree, root: &str, target: &Target) -> Result<Found, KustomizeError> {
    let root = join("", root)?;
    let mut f = Finder {
        tree,
        target: target.clone(),
        files: 0,
        resources: Vec::new(),
        patches: Vec::new(),
        images: Vec::new(),
        json_patches: Vec::new(),
    };
    f.build(&root, &Naming::default(), 0)?;
    let resources = std::mem::take(&mut f.resources);
    match resources.len() {
        0 => {
            return Err(KustomizeError::NotFound(
                target.to_string(),
                if root.is_empty() { "/".into() } else { root },
            ));
        }
        1 => {}
        _ => {
            return Err(KustomizeError::Duplicate(
                target.to_string(),
                resources[0].0.file.clone(),
                resources[1].0.file.clone(),
            ));
        }
    }
    let (base, naming) = resources
        .into_iter()
        .next()
        .ok_or_else(|| KustomizeError::NotFound(target.to_string(), String::new()))?;
    let mut layers = vec![base];
    layers.append(&mut f.patches);
    let mut merged = Value::Null;
    for l in &layers {
        if merged.is_null() {
            merged = l.value.clone();
        } else {
            strategic_merge(&mut merged, &l.value);
        }
    }
    if let Some((file, _)) = f.json_patches.first() {
        return Err(KustomizeError::JsonPatch(file.clone(), target.to_string()));
    }
    if let Some(m) = merged["metadata"].as_object_mut() {
        m.insert("name".into(), json!(target.name));
        if let Some(ns) = naming.namespace {
            m.insert("namespace".into(), json!(ns));
        }
    }
    let mut effective = merged.clone();
    for o in &f.images {
        transform_images(&mut effective, target.kind, &o.entry);
    }
    Ok(Found {
        layers,
        images: f.images,
        merged,
        effective,
    })
}

impl Finder<'_> {
    fn count(&mut self, path: &str) -> Result<(), KustomizeError> {
        self.files += 1;
        if self.files > MAX_FILES {
            return Err(KustomizeError::TooDeep(path.to_string()));
        }
        Ok(())
    }

    fn build(&mut self, dir: &str, outer: &Naming, depth: usize) -> Result<(), KustomizeError> {
        if depth > MAX_DEPTH {
            return Err(KustomizeError::TooDeep(dir.to_string()));
        }
        for name in KUSTOMIZATION_FILES {
            let path = join(dir, name)?;
            if let Some(text) = self.tree.read(&path)? {
                self.count(&path)?;
                return self.kustomization(dir, &path, &text, outer, depth);
            }
        }
        // No kustomization: every manifest under the directory, as kustomize-controller generates one.
        let Some(entries) = self.tree.list(dir)? else {
            return Err(KustomizeError::Unreadable(
                dir.to_string(),
                "not a directory".into(),
            ));
        };
        let mut entries = entries;
        entries.sort();
        for (name, is_dir) in entries {
            if name.starts_with('.') {
                continue;
            }
            let path = join(dir, &name)?;
            if is_dir {
                self.build(&path, outer, depth + 1)?;
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                self.resource_file(&path, outer)?;
            }
        }
        Ok(())
    }

    fn kustomization(
        &mut self,
        dir: &str,
        path: &str,
        text: &str,
        outer: &Naming,
        depth: usize,
    ) -> Result<(), KustomizeError> {
        let k = yaml::to_json(text)
            .map_err(|e| KustomizeError::Unreadable(path.to_string(), e.to_string()))?
            .into_iter()
            .next()
            .unwrap_or(Value::Null);
        let s = |key: &str| k[key].as_str().unwrap_or_default().to_string();
        // Inner names are wrapped by outer ones; an outer namespace wins.
        let naming = Naming {
            prefix: format!("{}{}", outer.prefix, s("namePrefix")),
            suffix: format!("{}{}", s("nameSuffix"), outer.suffix),
            namespace: outer
                .namespace
                .clone()
                .or_else(|| k["namespace"].as_str().map(String::from)),
        };
        for list in ["resources", "bases"] {
            for r in k[list].as_array().into_iter().flatten() {
                let Some(r) = r.as_str() else { continue };
                if r.contains("://") || r.starts_with("github.com/") || r.contains("?ref=") {
                    continue;
                }
                let p = join(dir, r)?;
                if self.tree.list(&p)?.is_some() {
                    self.build(&p, &naming, depth + 1)?;
                } else {
                    self.resource_file(&p, &naming)?;
                }
            }
        }
        for p in k["patchesStrategicMerge"].as_array().into_iter().flatten() {
            if let Some(p) = p.as_str() {
                let file = join(dir, p)?;
                self.patch_file(&file, None, &naming)?;
            }
        }
        for p in k["patches"].as_array().into_iter().flatten() {
            let target = p.get("target").filter(|t| t.is_object());
            match (p["path"].as_str(), p["patch"].as_str()) {
                (Some(file), _) => {
                    let file = join(dir, file)?;
                    self.patch_file(&file, target, &naming)?;
                }
                (None, Some(inline)) => {
                    self.patch_text(path, inline, target, &naming, true)?;
                }
                _ => {}
            }
        }
        for entry in k["images"].as_array().into_iter().flatten() {
            if entry["name"].is_string() {
                self.images.push(ImageOverride {
                    file: path.to_string(),
                    doc: 0,
                    entry: entry.clone(),
                });
            }
        }
        Ok(())
    }

    fn read(&mut self, path: &str) -> Result<String, KustomizeError> {
        self.count(path)?;
        self.tree
            .read(path)?
            .ok_or_else(|| KustomizeError::Unreadable(path.to_string(), "no such file".into()))
    }

    fn matches(&self, doc: &Value, naming: &Naming) -> bool {
        let t = &self.target;
        let name = format!(
            "{}{}{}",
            naming.prefix,
            doc["metadata"]["name"].as_str().unwrap_or_default(),
            naming.suffix
        );
        let ns = naming
            .namespace
            .clone()
            .or_else(|| doc["metadata"]["namespace"].as_str().map(String::from));
        doc["kind"] == t.kind.as_str() && name == t.name && ns.is_none_or(|ns| ns == t.namespace)
    }

    fn resource_file(&mut self, path: &str, naming: &Naming) -> Result<(), KustomizeError> {
        let text = self.read(path)?;
        let docs = docs_of(path, &text)?;
        for (i, d) in docs.into_iter().enumerate() {
            if self.matches(&d, naming) {
                self.resources.push((
                    Layer {
                        file: path.to_string(),
                        doc: i,
                        value: d,
                    },
                    naming.clone(),
                ));
            }
        }
        Ok(())
    }

    fn patch_file(
        &mut self,
        path: &str,
        target: Option<&Value>,
        naming: &Naming,
    ) -> Result<(), KustomizeError> {
        let text = self.read(path)?;
        self.patch_text(path, &text, target, naming, false)
    }

    /// A patch (a file, or inline in a kustomization: not edited there, only read). JSON 6902 patches (lists of
    /// operations) that reach the object are recorded: a field they set cannot be changed by editing YAML.
    fn patch_text(
        &mut self,
        path: &str,
        text: &str,
        target: Option<&Value>,
        naming: &Naming,
        inline: bool,
    ) -> Result<(), KustomizeError> {
        let docs = docs_of(path, text)?;
        for (i, d) in docs.into_iter().enumerate() {
            let hit = match target {
                Some(t) => {
                    t["kind"]
                        .as_str()
                        .is_none_or(|k| k == self.target.kind.as_str())
                        && t["name"].as_str().is_none_or(|n| {
                            format!("{}{n}{}", naming.prefix, naming.suffix) == self.target.name
                        })
                        && t["namespace"]
                            .as_str()
                            .is_none_or(|ns| ns == self.target.namespace)
                }
                None => self.matches(&d, naming),
            };
            if !hit {
                continue;
            }
            if d.is_array() || inline {
                self.json_patches.push((path.to_string(), d));
            } else {
                self.patches.push(Layer {
                    file: path.to_string(),
                    doc: i,
                    value: d,
                });
            }
        }
        Ok(())
    }
}

fn docs_of(path: &str, text: &str) -> Result<Vec<Value>, KustomizeError> {
    yaml::to_json(text).map_err(|e| KustomizeError::Unreadable(path.to_string(), e.to_string()))
}

/// A strategic merge as kustomize makes it of a patch over a base: maps merge, a null removes, lists of named
/// objects (containers, env, volumes) merge by name, other lists are replaced.
pub fn strategic_merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) = b.get_mut(k) {
                    strategic_merge(existing, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (Value::Array(b), Value::Array(p))
            if p.iter().chain(b.iter()).all(|i| i["name"].is_string()) =>
        {
            for item in p {
                match b.iter_mut().find(|x| x["name"] == item["name"]) {
                    Some(existing) => strategic_merge(existing, item),
                    None => b.push(item.clone()),
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Kustomize's `images` transformer on the pod spec's containers.
fn transform_images(obj: &mut Value, kind: WorkloadKind, entry: &Value) {
    let mut spec_path = edit::pod_spec_path(kind);
    let Some(name) = entry["name"].as_str() else {
        return;
    };
    for list in ["containers", "initContainers"] {
        spec_path.push(Seg::Key(list.into()));
        if let Some(Value::Array(cs)) = get_mut(obj, &spec_path) {
            for c in cs {
                if let Some(img) = c["image"].as_str()
                    && let Some(new) = transformed(img, name, entry)
                {
                    c["image"] = json!(new);
                }
            }
        }
        spec_path.pop();
    }
}

/// The image after an `images` entry, if the entry applies to it (its name is the image's without tag or digest,
/// as written: kustomize matches names exactly).
pub(super) fn transformed(image: &str, name: &str, entry: &Value) -> Option<String> {
    if repo_part(image) != name {
        return None;
    }
    let repo = entry["newName"].as_str().unwrap_or(name);
    let digest = image.split_once('@').map(|(_, d)| d);
    let tag = image
        .split('@')
        .next()
        .and_then(|i| i.rsplit_once(':'))
        .filter(|(_, t)| !t.contains('/'))
        .map(|(_, t)| t);
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

/// An image reference without its tag or digest, as written.
pub(super) fn repo_part(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

fn get_mut<'a>(mut v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.get_mut(k)?,
            Seg::Item { key, value } => v
                .as_array_mut()?
                .iter_mut()
                .find(|i| i.get(key).and_then(Value::as_str) == Some(value))?,
        };
    }
    Some(v)
}

/// A repository held in memory, for tests and for callers that read files themselves.
#[derive(Debug, Clone, Default)]
pub struct MemTree(pub BTreeMap<String, String>);

impl Tree for MemTree {
    fn read(&self, path: &str) -> Result<Option<String>, KustomizeError> {
        Ok(self.0.get(path).cloned())
    }
    fn list(&self, dir: &str) -> Result<Option<Vec<(String, bool)>>, KustomizeError> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out: Vec<(String, bool)> = Vec::new();
        for path in self.0.keys() {
            if let Some(rest) = path.strip_prefix(&prefix) {
                let entry = match rest.split_once('/') {
                    Some((d, _)) => (d.to_string(), true),
                    None => (rest.to_string(), false),
                };
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}
