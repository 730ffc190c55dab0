//! Assignments made to YAML text: only the bytes of the values they change are replaced, and what they add is
//! written in the file's own style (its indentation, how its lists are indented, flow or block).

use super::{EditError, Seg, assign_json, path_text};
use crate::gitops::yaml::{Kind, Node, Style, line_after, line_start, starts_line};
use serde_json::{Map, Value, json};

/// The text edits an assignment makes, collected and applied together.
pub(super) struct Editor<'a> {
    text: &'a str,
    edits: Vec<(usize, usize, String)>,
    /// Anchors used by an alias somewhere in the document.
    aliased: Vec<usize>,
    step: usize,
    seq_indent: usize,
}

impl<'a> Editor<'a> {
    pub(super) fn new(text: &'a str, root: &Node) -> Self {
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

    pub(super) fn finish(mut self) -> Result<String, EditError> {
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
    pub(super) fn assign(
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
}
