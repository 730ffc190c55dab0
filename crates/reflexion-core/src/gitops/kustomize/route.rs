//! Which file an assignment is made in (`route`), and the edits of every file a fix changes (`plan`), checked by
//! building the object again from the edited files.

use super::{FileEdit, Found, KustomizeError, Layer, Target, Tree, find, repo_part, transformed};
use crate::action::Action;
use crate::gitops::edit::{self, Assign, EditError, Seg, get};
use crate::image::ImageRef;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The files to change so that the path builds the object with `action` made, each edited where the field it
/// changes is set.
pub fn plan(
    tree: &dyn Tree,
    root: &str,
    target: &Target,
    action: &Action,
) -> Result<Vec<FileEdit>, KustomizeError> {
    let found = find(tree, root, target)?;
    let ops = edit::ops(action, target.kind, &found.effective)?;
    // (file, document) -> assignments, in the order they were routed.
    let mut routed: BTreeMap<(String, usize), Vec<Assign>> = BTreeMap::new();
    for op in &ops {
        for (file, doc, a) in route(&found, op, target)? {
            routed.entry((file, doc)).or_default().push(a);
        }
    }
    let mut texts: BTreeMap<String, (String, String)> = BTreeMap::new();
    for ((file, doc), assigns) in routed {
        let (before, current) = match texts.remove(&file) {
            Some(t) => t,
            None => {
                let t = tree.read(&file)?.ok_or_else(|| {
                    KustomizeError::Unreadable(file.clone(), "no such file".into())
                })?;
                (t.clone(), t)
            }
        };
        let after = edit::edit(&current, doc, &assigns)?;
        texts.insert(file, (before, after));
    }
    let edits: Vec<FileEdit> = texts
        .into_iter()
        .filter(|(_, (b, a))| b != a)
        .map(|(path, (before, after))| FileEdit {
            path,
            before,
            after,
        })
        .collect();
    // Built again from the edited files, the object must be what the action makes of it.
    let mut want = found.effective.clone();
    edit::apply(&mut want, &ops);
    let again = find(
        &Edited {
            tree,
            edits: &edits,
        },
        root,
        target,
    )?;
    if again.effective != want {
        return Err(EditError::Mismatch(format!(
            "the path builds {} instead of {}",
            again.effective, want
        ))
        .into());
    }
    Ok(edits)
}

/// Where one assignment is made: the `images` entry for an image it overrides; else the top layer that sets the
/// field; a new field goes to the layer that has most of the path to it (the top one of those); a removal to
/// every layer that sets the field.
fn route(
    found: &Found,
    op: &Assign,
    target: &Target,
) -> Result<Vec<(String, usize, Assign)>, KustomizeError> {
    if op.path.last() == Some(&Seg::Key("image".into()))
        && let Some(Value::String(new)) = &op.value
        && let Some(Value::String(raw)) = get(&found.merged, &op.path)
        && let Some(o) = found.images.iter().rev().find(|o| {
            transformed(raw, o.entry["name"].as_str().unwrap_or_default(), &o.entry).is_some()
        })
    {
        let name = o.entry["name"].as_str().unwrap_or_default().to_string();
        if o.entry["digest"].is_string() {
            return Err(KustomizeError::Digest(o.file.clone(), name));
        }
        let repo = o.entry["newName"].as_str().unwrap_or(&name).to_string();
        let new_ref = ImageRef::parse(new)
            .map_err(|_| EditError::Unsupported(new.clone(), "not an image reference"))?;
        let Some(tag) = new_ref.tag.clone().filter(|_| repo_part(new) == repo) else {
            return Err(KustomizeError::Renamed(
                o.file.clone(),
                name,
                repo,
                new.clone(),
            ));
        };
        let path = vec![
            Seg::Key("images".into()),
            Seg::Item {
                key: "name".into(),
                value: name,
            },
            Seg::Key("newTag".into()),
        ];
        return Ok(vec![(
            o.file.clone(),
            o.doc,
            Assign {
                path,
                value: Some(json!(tag)),
            },
        )]);
    }
    let layers = &found.layers;
    let sets = |l: &Layer| get(&l.value, &op.path).is_some();
    if op.value.is_none() {
        return Ok(layers
            .iter()
            .filter(|l| sets(l))
            .map(|l| (l.file.clone(), l.doc, op.clone()))
            .collect());
    }
    let depth = |l: &Layer| {
        (0..=op.path.len())
            .rev()
            .find(|n| get(&l.value, &op.path[..*n]).is_some())
            .unwrap_or(0)
    };
    // The last of the deepest: the top layer among them.
    let best = layers
        .iter()
        .max_by_key(|l| depth(l))
        .ok_or_else(|| KustomizeError::NotFound(target.to_string(), String::new()))?;
    Ok(vec![(best.file.clone(), best.doc, op.clone())])
}

/// The tree with some files replaced by their edited text.
struct Edited<'a> {
    tree: &'a dyn Tree,
    edits: &'a [FileEdit],
}

impl Tree for Edited<'_> {
    fn read(&self, path: &str) -> Result<Option<String>, KustomizeError> {
        match self.edits.iter().find(|e| e.path == path) {
            Some(e) => Ok(Some(e.after.clone())),
            None => self.tree.read(path),
        }
    }
    fn list(&self, dir: &str) -> Result<Option<Vec<(String, bool)>>, KustomizeError> {
        self.tree.list(dir)
    }
}
