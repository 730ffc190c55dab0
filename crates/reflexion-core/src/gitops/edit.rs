//! A typed action as assignments to fields of a manifest (`ops`), and those assignments made to the YAML text by
//! editing only the bytes of the values they change (`edit`): comments, key order, quoting, anchors elsewhere and
//! every other line stay byte for byte. Every edit is checked by reading the result back: the edited document must
//! equal the assignments applied to the original's value, and every other document must be unchanged.

use super::yaml::{self, Document, Kind, Node, Style, line_after, line_start, starts_line};
use crate::action::Action;
use crate::owner::WorkloadKind;
use serde_json::{Map, Value, json};

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

/// The value at a path of an object, if it is there.
pub fn get<'a>(mut v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.get(k)?,
            Seg::Item { key, value } => v
                .as_array()?
                .iter()
                .find(|i| i.get(key).and_then(Value::as_str) == Some(value))?,
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
                remove
                    .iter()
                    .map(|k| Assign {
                        path: at(&p, &[k]),
                        value: None,
                    })
                    .chain(s.iter().map(|(k, v)| set(at(&p, &[k]), json!(v))))
                    .collect()
            }
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
        Action::Escalate { .. } => return Err(EditError::NotAnEdit("escalate")),
    })
}

/// The assignments applied to a value: what the edited document must read back as.
pub fn apply(obj: &mut Value, ops: &[Assign]) {
    for op in ops {
        assign_json(obj, &op.path, op.value.as_ref());
    }
}

fn assign_json(v: &mut Value, path: &[Seg], value: Option<&Value>) {
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
            let found = items
                .iter()
                .position(|i| i.get(key).and_then(Value::as_str) == Some(name));
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

/// The text edits an assignment makes, collected and applied together.
struct Editor<'a> {
    text: &'a str,
    edits: Vec<(usize, usize, String)>,
    /// Anchors used by an alias somewhere in the document.
    aliased: Vec<usize>,
    step: usize,
    seq_indent: usize,
}

impl<'a> Editor<'a> {
    fn new(text: &'a str, root: &Node) -> Self {
        let mut aliased = Vec::new();
        root.aliases(&mut aliased);
        let (step, seq_indent) = indentation(root);
        Self {
            text,
            edits: Vec::new(),
            aliased,
            step,
            seq_indent,
        }
    }

    fn replace(&mut self, start: usize, end: usize, with: String) {
        self.edits.push((start, end, with));
    }

    fn finish(mut self) -> Result<String, EditError> {
        // Stable: insertions at one point keep the order they were made in.
        self.edits.sort_by_key(|(s, e, _)| (*s, *e));
        let mut out = String::with_capacity(self.text.len());
        let mut at = 0;
        for (s, e, with) in &self.edits {
            if *s < at {
                return Err(EditError::Mismatch("two changes overlap".into()));
            }
            out.push_str(&self.text[at..*s]);
            out.push_str(with);
            at = *e;
        }
        out.push_str(&self.text[at..]);
        Ok(out)
    }

    /// A node on the way to the field: not an alias, not anchored for an alias, no merge key in it.
    fn guard(&self, node: &Node, at: &[Seg]) -> Result<(), EditError> {
        if matches!(node.kind, Kind::Alias(_)) {
            return Err(EditError::Aliased(path_text(at)));
        }
        if node.anchor != 0 && self.aliased.contains(&node.anchor) {
            return Err(EditError::Anchored(path_text(at)));
        }
        if let Kind::Map { entries, .. } = &node.kind
            && entries.iter().any(|(k, _)| k.scalar() == Some("<<"))
        {
            return Err(EditError::Aliased(path_text(at)));
        }
        Ok(())
    }

    /// The node an edit changes: nothing in it may be an anchor an alias uses.
    fn guard_all(&self, node: &Node, at: &[Seg]) -> Result<(), EditError> {
        self.guard(node, at)?;
        let mut anchors = Vec::new();
        node.anchors(&mut anchors);
        if anchors.iter().any(|a| self.aliased.contains(a)) {
            return Err(EditError::Anchored(path_text(at)));
        }
        Ok(())
    }

    /// Make `node` (whose value is `cur`) hold `value` at `path` below it.
    fn assign(
        &mut self,
        node: &Node,
        cur: &Value,
        path: &[Seg],
        value: Option<&Value>,
        full: &[Seg],
    ) -> Result<(), EditError> {
        self.guard(node, full)?;
        let Some((first, rest)) = path.split_first() else {
            return match value {
                Some(v) => self.reconcile(node, cur, v, full),
                None => Ok(()),
            };
        };
        match first {
            Seg::Key(k) => {
                let Kind::Map { entries, .. } = &node.kind else {
                    return Err(EditError::Unsupported(path_text(full), "not a mapping"));
                };
                match entries.iter().position(|(key, _)| key.scalar() == Some(k)) {
                    Some(i) if rest.is_empty() && value.is_none() => {
                        self.guard_all(&entries[i].1, full)?;
                        self.remove_entry(node, i, full)
                    }
                    Some(i) => {
                        let child = &entries[i].1;
                        let child_cur = cur.get(k).cloned().unwrap_or(Value::Null);
                        if child_cur.is_null() && value.is_some() && !rest.is_empty() {
                            // `key:` with nothing (or null): the whole entry is written anew.
                            self.guard_all(child, full)?;
                            let mut v = Value::Null;
                            assign_json(&mut v, rest, value);
                            return self.rewrite_entry(node, i, &v, full);
                        }
                        self.assign(child, &child_cur, rest, value, full)
                    }
                    None => match value {
                        None => Ok(()),
                        Some(value) => {
                            let mut v = Value::Null;
                            assign_json(&mut v, rest, Some(value));
                            self.insert_entry(node, k, &v, full)
                        }
                    },
                }
            }
            Seg::Item { key, value: name } => {
                let Kind::Seq { items, .. } = &node.kind else {
                    return Err(EditError::Unsupported(path_text(full), "not a list"));
                };
                let found = items
                    .iter()
                    .enumerate()
                    .find(|(_, i)| i.get(key).and_then(Node::scalar) == Some(name.as_str()));
                match (found, value) {
                    (Some(_), None) if rest.is_empty() => Err(EditError::Unsupported(
                        path_text(full),
                        "removing a list item",
                    )),
                    (Some((i, item)), _) => {
                        let item_cur = cur.get(i).cloned().unwrap_or(Value::Null);
                        self.assign(item, &item_cur, rest, value, full)
                    }
                    (None, None) => Ok(()),
                    (None, Some(value)) => {
                        let mut item = json!({key.clone(): name});
                        assign_json(&mut item, rest, Some(value));
                        self.append_item(node, &item, full)
                    }
                }
            }
        }
    }

    /// Make an existing node equal `v`, changing as little text as possible.
    fn reconcile(
        &mut self,
        node: &Node,
        cur: &Value,
        v: &Value,
        at: &[Seg],
    ) -> Result<(), EditError> {
        if cur == v {
            return Ok(());
        }
        self.guard_all(node, at)?;
        match (&node.kind, v) {
            (Kind::Map { entries, .. }, Value::Object(want)) => {
                for (i, (k, _)) in entries.iter().enumerate() {
                    if let Some(k) = k.scalar()
                        && !want.contains_key(k)
                    {
                        self.remove_entry(node, i, at)?;
                    }
                }
                for (k, x) in want {
                    match entries.iter().find(|(key, _)| key.scalar() == Some(k)) {
                        Some((_, child)) => {
                            let mut p = at.to_vec();
                            p.push(Seg::Key(k.clone()));
                            self.reconcile(child, cur.get(k).unwrap_or(&Value::Null), x, &p)?
                        }
                        None => self.insert_entry(node, k, x, at)?,
                    }
                }
                Ok(())
            }
            (Kind::Scalar { style, .. }, v) if !v.is_object() && !v.is_array() => {
                if node.tagged {
                    return Err(EditError::Unsupported(path_text(at), "a tagged value"));
                }
                if *style == Style::Block {
                    return Err(EditError::Unsupported(path_text(at), "a block scalar"));
                }
                self.replace(node.start, node.end, scalar(v, *style));
                Ok(())
            }
            _ if node.is_flow() || node.scalar().is_some() => {
                self.replace(node.start, node.end, flow(v));
                Ok(())
            }
            _ => Err(EditError::Unsupported(
                path_text(at),
                "changing the shape of a block value",
            )),
        }
    }

    fn insert_entry(
        &mut self,
        map: &Node,
        k: &str,
        v: &Value,
        at: &[Seg],
    ) -> Result<(), EditError> {
        let (entries, is_flow) = mapping(map, at)?;
        if is_flow {
            let text = format!("{}: {}", scalar(&json!(k), Style::Plain), flow(v));
            match entries.last() {
                Some((_, last)) => self.replace(last.end, last.end, format!(", {text}")),
                None => self.replace(map.start + 1, map.start + 1, text),
            }
            return Ok(());
        }
        let Some((_, last)) = entries.last() else {
            return Err(EditError::Unsupported(
                path_text(at),
                "an empty block mapping",
            ));
        };
        let pos = line_after(self.text, last.end);
        let mut text = self.block_entry(k, v, map.col);
        if pos == self.text.len() && !self.text.ends_with('\n') {
            text.insert(0, '\n');
        }
        self.replace(pos, pos, text);
        Ok(())
    }

    fn remove_entry(&mut self, map: &Node, i: usize, at: &[Seg]) -> Result<(), EditError> {
        let (entries, is_flow) = mapping(map, at)?;
        let (k, v) = &entries[i];
        if is_flow {
            let (s, e) = match (
                entries.get(i + 1),
                i.checked_sub(1).and_then(|p| entries.get(p)),
            ) {
                (Some((next, _)), _) => (k.start, next.start),
                (None, Some((_, prev))) => (prev.end, v.end),
                (None, None) => (k.start, v.end),
            };
            self.replace(s, e, String::new());
            return Ok(());
        }
        if entries.len() == 1 {
            return Err(EditError::Unsupported(
                path_text(at),
                "removing the only key of a mapping",
            ));
        }
        if starts_line(self.text, k.start) {
            self.replace(
                line_start(self.text, k.start),
                line_after(self.text, v.end),
                String::new(),
            );
        } else if let Some((next, _)) = entries.get(i + 1) {
            // The first key of a list item (`- command: ...`): the next key moves up behind the `-`.
            self.replace(k.start, next.start, String::new());
        } else {
            return Err(EditError::Unsupported(
                path_text(at),
                "removing a key that shares its line",
            ));
        }
        Ok(())
    }

    /// Write a whole entry again (its value was null or of another shape).
    fn rewrite_entry(
        &mut self,
        map: &Node,
        i: usize,
        v: &Value,
        at: &[Seg],
    ) -> Result<(), EditError> {
        let (entries, is_flow) = mapping(map, at)?;
        let (k, old) = &entries[i];
        let key = k.scalar().unwrap_or_default().to_string();
        if is_flow {
            self.replace(
                k.start,
                old.end.max(k.end),
                format!("{}: {}", scalar(&json!(key), Style::Plain), flow(v)),
            );
            return Ok(());
        }
        let end = line_after(self.text, old.end.max(k.end));
        let text = self.block_entry(&key, v, map.col);
        self.replace(k.start, end, text.trim_start_matches(' ').to_string());
        Ok(())
    }

    fn append_item(&mut self, seq: &Node, item: &Value, at: &[Seg]) -> Result<(), EditError> {
        let Kind::Seq {
            items,
            flow: is_flow,
        } = &seq.kind
        else {
            return Err(EditError::Unsupported(path_text(at), "not a list"));
        };
        if *is_flow {
            match items.last() {
                Some(last) => self.replace(last.end, last.end, format!(", {}", flow(item))),
                None => self.replace(seq.start + 1, seq.start + 1, flow(item)),
            }
            return Ok(());
        }
        // Items written as the first one is: `- name` or `-   name`.
        let offset = items
            .first()
            .map_or(2, |i| i.col.saturating_sub(seq.col).max(2));
        let pos = line_after(self.text, seq.end);
        let mut text = self.block_item(item, seq.col, offset);
        if pos == self.text.len() && !self.text.ends_with('\n') {
            text.insert(0, '\n');
        }
        self.replace(pos, pos, text);
        Ok(())
    }

    /// `key: value` in block style at column `col`, one line per scalar, ending with a newline.
    fn block_entry(&self, k: &str, v: &Value, col: usize) -> String {
        let pad = " ".repeat(col);
        let k = scalar(&json!(k), Style::Plain);
        match v {
            Value::Object(m) if !m.is_empty() => {
                let mut s = format!("{pad}{k}:\n");
                for (ck, cv) in named_first(m) {
                    s.push_str(&self.block_entry(ck, cv, col + self.step));
                }
                s
            }
            Value::Array(a) if !a.is_empty() => {
                let mut s = format!("{pad}{k}:\n");
                for item in a {
                    s.push_str(&self.block_item(item, col + self.seq_indent, 2));
                }
                s
            }
            v => format!("{pad}{k}: {}\n", flow(v)),
        }
    }

    /// `- item` in block style with its dash at column `col` and its content `offset` further right.
    fn block_item(&self, item: &Value, col: usize, offset: usize) -> String {
        let pad = " ".repeat(col);
        let gap = " ".repeat(offset - 1);
        match item {
            Value::Object(m) if !m.is_empty() => {
                let mut s = String::new();
                for (i, (k, v)) in named_first(m).into_iter().enumerate() {
                    let entry = self.block_entry(k, v, col + offset);
                    if i == 0 {
                        s.push_str(&format!("{pad}-{gap}{}", entry.trim_start_matches(' ')));
                    } else {
                        s.push_str(&entry);
                    }
                }
                s
            }
            v => format!("{pad}-{gap}{}\n", flow(v)),
        }
    }
}

/// A mapping's entries with `name` first, as Kubernetes manifests are written.
fn named_first(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut v: Vec<(&String, &Value)> = m.iter().collect();
    v.sort_by_key(|(k, _)| k.as_str() != "name");
    v
}

/// A mapping node's entries and whether it is written in flow style.
fn mapping<'n>(map: &'n Node, at: &[Seg]) -> Result<(&'n [(Node, Node)], bool), EditError> {
    match &map.kind {
        Kind::Map { entries, flow } => Ok((entries, *flow)),
        _ => Err(EditError::Unsupported(path_text(at), "not a mapping")),
    }
}

/// The file's indentation: spaces per nesting level, and whether lists are indented under their key (their
/// `-` further right than the key) or not.
fn indentation(root: &Node) -> (usize, usize) {
    fn walk(n: &Node, step: &mut Option<usize>, seq: &mut Option<usize>) {
        if let Kind::Map {
            entries,
            flow: false,
        } = &n.kind
        {
            for (k, v) in entries {
                match &v.kind {
                    Kind::Map { flow: false, .. } if step.is_none() && v.col > k.col => {
                        *step = Some(v.col - k.col)
                    }
                    Kind::Seq { flow: false, .. } if seq.is_none() && v.col >= k.col => {
                        *seq = Some(v.col - k.col)
                    }
                    _ => {}
                }
                walk(v, step, seq);
            }
        }
        if let Kind::Seq { items, .. } = &n.kind {
            items.iter().for_each(|i| walk(i, step, seq));
        }
    }
    let (mut step, mut seq) = (None, None);
    walk(root, &mut step, &mut seq);
    let step = step.unwrap_or(2);
    (step, seq.unwrap_or(step))
}

/// A value on one line: `{a: 1, b: [x, y]}`.
pub fn flow(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = named_first(m)
                .into_iter()
                .map(|(k, v)| format!("{}: {}", scalar(&json!(k), Style::Plain), flow(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(flow).collect::<Vec<_>>().join(", ")),
        v => scalar(v, Style::Plain),
    }
}

/// A scalar in the style it had (a string that plain style would read as something else is double-quoted).
pub fn scalar(v: &Value, style: Style) -> String {
    match v {
        Value::String(s) => match style {
            Style::Single if !s.contains('\n') => format!("'{}'", s.replace('\'', "''")),
            Style::Plain if plain_safe(s) => s.clone(),
            _ => serde_json::to_string(s).unwrap_or_default(),
        },
        Value::Null => "null".into(),
        v => v.to_string(),
    }
}

/// Whether a string written plain reads back as that same string under YAML 1.1 and 1.2 alike (Kubernetes'
/// YAML reader resolves `yes`, `on`, `1.5`, `~` to other types).
fn plain_safe(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    if WORDS.contains(&s.to_ascii_lowercase().as_str())
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || s.starts_with(' ')
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #")
        || s.chars().any(|c| c.is_control())
    {
        return false;
    }
    // Anything that could be a number, a date or a sexagesimal: digits with signs, `_`, `:`, `-`, exponents, hex
    // or octal prefixes, and at most one dot (`1.27.3` is a string to every YAML reader, `1.27` is not).
    let numberish = s
        .chars()
        .all(|c| c.is_ascii_hexdigit() || "+-._:xXoO".contains(c))
        && s.matches('.').count() <= 1;
    !((first.is_ascii_digit() || first == '.' || first == '+') && numberish)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strings_that_would_change_type_are_quoted() {
        for (s, plain) in [
            ("nginx:1.27.3", true),
            ("128Mi", true),
            ("500m", true),
            ("/healthz", true),
            ("yes", false),
            ("On", false),
            ("1.27", false),
            ("0x1F", false),
            ("1.27.3", true),
            ("10", false),
            ("1e3", false),
            ("12:30", false),
            ("2001-12-14", false),
            ("", false),
            ("a: b", false),
            ("#x", false),
            ("- x", false),
        ] {
            assert_eq!(plain_safe(s), plain, "{s:?}");
        }
    }

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
