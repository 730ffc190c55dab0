//! A YAML file as a tree of nodes that know where their text is, so an edit can replace exactly the bytes of one
//! value and leave comments, quoting, key order and every other byte as they were.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::ops::Range;

/// Files larger than this are not edited (a manifest is kilobytes; this bounds what an untrusted repository costs).
pub const MAX_FILE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("not valid YAML: {0}")]
    Syntax(String),
    #[error("the file is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Single,
    Double,
    /// A literal (`|`) or folded (`>`) block scalar.
    Block,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Scalar {
        value: String,
        style: Style,
    },
    Map {
        entries: Vec<(Node, Node)>,
        flow: bool,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
    },
    /// `*name`: the value is another node's.
    Alias(usize),
}

/// One node: its content, the bytes it spans (`start..end`, without a trailing comment), the column its first
/// line starts at (for a block sequence: the column of its `-`), and its anchor id (0: none).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    pub col: usize,
    pub anchor: usize,
    pub tagged: bool,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The entry with this key and its index.
    pub fn entry(&self, key: &str) -> Option<(usize, &Node)> {
        match &self.kind {
            Kind::Map { entries, .. } => entries
                .iter()
                .enumerate()
                .find(|(_, (k, _))| k.scalar() == Some(key))
                .map(|(i, (_, v))| (i, v)),
            _ => None,
        }
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    pub fn is_flow(&self) -> bool {
        matches!(
            self.kind,
            Kind::Map { flow: true, .. } | Kind::Seq { flow: true, .. }
        )
    }

    /// Every anchor id defined in this node or below it.
    pub fn anchors(&self, out: &mut Vec<usize>) {
        if self.anchor != 0 {
            out.push(self.anchor);
        }
        match &self.kind {
            Kind::Map { entries, .. } => entries.iter().for_each(|(k, v)| {
                k.anchors(out);
                v.anchors(out);
            }),
            Kind::Seq { items, .. } => items.iter().for_each(|i| i.anchors(out)),
            _ => {}
        }
    }

    /// Every alias in this node or below it.
    pub fn aliases(&self, out: &mut Vec<usize>) {
        match &self.kind {
            Kind::Alias(id) => out.push(*id),
            Kind::Map { entries, .. } => entries.iter().for_each(|(k, v)| {
                k.aliases(out);
                v.aliases(out);
            }),
            Kind::Seq { items, .. } => items.iter().for_each(|i| i.aliases(out)),
            Kind::Scalar { .. } => {}
        }
    }
}

/// One document of a file: its root node and the bytes from its start to the next document's.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub root: Option<Node>,
    pub range: Range<usize>,
}

enum Frame {
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        flow: bool,
        open: usize,
        anchor: usize,
        tagged: bool,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
        open: usize,
        anchor: usize,
        tagged: bool,
    },
}

/// Char index -> byte offset: the parser counts characters, edits work on bytes.
struct Offsets(Vec<usize>);

impl Offsets {
    fn new(text: &str) -> Self {
        let mut v: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        v.push(text.len());
        Self(v)
    }
    fn at(&self, char_index: usize) -> usize {
        self.0
            .get(char_index)
            .copied()
            .unwrap_or(*self.0.last().unwrap_or(&0))
    }
}

/// The column (in characters) of a byte offset.
pub fn column(text: &str, at: usize) -> usize {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..at].chars().count()
}

/// Parse every document of a file.
pub fn parse(text: &str) -> Result<Vec<Document>, YamlError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(YamlError::TooLarge);
    }
    let offsets = Offsets::new(text);
    let mut docs: Vec<Document> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut doc_start = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError::Syntax(e.to_string()))?;
        let (s, e) = (offsets.at(span.start.index()), offsets.at(span.end.index()));
        let node = match event {
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                doc_start = s;
                root = None;
                continue;
            }
            Event::DocumentEnd => {
                docs.push(Document {
                    root: root.take(),
                    range: doc_start..s.max(doc_start),
                });
                continue;
            }
            Event::StreamStart | Event::Nothing => continue,
            Event::Alias(id) => Node {
                kind: Kind::Alias(id),
                start: s,
                end: e,
                col: column(text, s),
                anchor: 0,
                tagged: false,
            },
            Event::Scalar(value, style, anchor, tag) => {
                scalar(text, value.into_owned(), style, anchor, tag.is_some(), s, e)
            }
            Event::MappingStart(anchor, tag) => {
                let flow = flow_open(text, s, e, '{');
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    flow,
                    open: if flow { e - 1 } else { e },
                    anchor,
                    tagged: tag.is_some(),
                });
                continue;
            }
            Event::SequenceStart(anchor, tag) => {
                let flow = flow_open(text, s, e, '[');
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    flow,
                    open: if flow { e - 1 } else { e },
                    anchor,
                    tagged: tag.is_some(),
                });
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => match stack.pop() {
                Some(frame) => close(text, frame, &span, &offsets)?,
                None => return Err(YamlError::Syntax("unbalanced collection".into())),
            },
        };
        match stack.last_mut() {
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => *key = Some(node),
            },
            Some(Frame::Seq { items, .. }) => items.push(node),
            None => root = Some(node),
        }
    }
    // Each document runs to the next one's start.
    for i in 0..docs.len() {
        let next = docs.get(i + 1).map_or(text.len(), |d| d.range.start);
        docs[i].range.end = next;
    }
    Ok(docs)
}

/// Whether a collection's start span opens a flow collection (`{`/`[`, possibly after an anchor or tag).
fn flow_open(text: &str, s: usize, e: usize, bracket: char) -> bool {
    e > s && text[s..e].trim_end().ends_with(bracket)
}

fn scalar(
    text: &str,
    value: String,
    style: ScalarStyle,
    anchor: usize,
    tagged: bool,
    s: usize,
    e: usize,
) -> Node {
    let (style, start, end) = match style {
        ScalarStyle::DoubleQuoted => {
            let open = text[s..].find('"').map_or(s, |i| s + i);
            (Style::Double, open, quoted_end(text, open, '"'))
        }
        ScalarStyle::SingleQuoted => {
            let open = text[s..].find('\'').map_or(s, |i| s + i);
            (Style::Single, open, quoted_end(text, open, '\''))
        }
        ScalarStyle::Plain => (Style::Plain, s, e),
        _ => (Style::Block, s, e),
    };
    Node {
        kind: Kind::Scalar { value, style },
        start,
        end,
        col: column(text, start),
        anchor,
        tagged,
    }
}

/// The byte after a quoted scalar's closing quote (the parser's span may run on over a trailing comment).
fn quoted_end(text: &str, open: usize, quote: char) -> usize {
    let mut chars = text[open + 1..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if quote == '"' => {
                chars.next();
            }
            c if c == quote => {
                if quote == '\'' && chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    chars.next();
                    continue;
                }
                return open + 1 + i + c.len_utf8();
            }
            _ => {}
        }
    }
    text.len()
}

fn close(text: &str, frame: Frame, span: &Span, offsets: &Offsets) -> Result<Node, YamlError> {
    let end_bracket = offsets.at(span.start.index());
    let (kind, flow, open, anchor, tagged) = match frame {
        Frame::Map {
            entries,
            key,
            flow,
            open,
            anchor,
            tagged,
        } => {
            if key.is_some() {
                return Err(YamlError::Syntax("a key without a value".into()));
            }
            (Kind::Map { entries, flow }, flow, open, anchor, tagged)
        }
        Frame::Seq {
            items,
            flow,
            open,
            anchor,
            tagged,
        } => (Kind::Seq { items, flow }, flow, open, anchor, tagged),
    };
    let (start, end) = if flow {
        (open, end_bracket + 1)
    } else {
        let first = match &kind {
            Kind::Map { entries, .. } => entries.first().map(|(k, _)| k.start),
            Kind::Seq { items, .. } => items.first().map(|i| dash_before(text, i.start)),
            _ => None,
        };
        let last = match &kind {
            Kind::Map { entries, .. } => entries.last().map(|(_, v)| v.end),
            Kind::Seq { items, .. } => items.last().map(|i| i.end),
            _ => None,
        };
        (first.unwrap_or(open), last.unwrap_or(open))
    };
    Ok(Node {
        col: column(text, start),
        kind,
        start,
        end,
        anchor,
        tagged,
    })
}

/// The `-` that introduces a block sequence item starting at `at`.
fn dash_before(text: &str, at: usize) -> usize {
    let before = text[..at].trim_end_matches([' ', '\t', '\n', '\r']);
    if before.ends_with('-') {
        before.len() - 1
    } else {
        at
    }
}

/// The offset of the start of the line holding `at`.
pub fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// The offset just past the end of the line holding `at` (after its newline), or the end of the text. An offset at
/// the start of a line (a block scalar's end) is its own line's end.
pub fn line_after(text: &str, at: usize) -> usize {
    if at > 0 && text.as_bytes().get(at - 1) == Some(&b'\n') {
        return at;
    }
    text[at..].find('\n').map_or(text.len(), |i| at + i + 1)
}

/// Whether only spaces precede `at` on its line.
pub fn starts_line(text: &str, at: usize) -> bool {
    text[line_start(text, at)..at].chars().all(|c| c == ' ')
}

/// The JSON value of every document of a file, as Kubernetes reads them (empty documents skipped).
pub fn to_json(text: &str) -> Result<Vec<serde_json::Value>, YamlError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v =
            serde_yaml::Value::deserialize(doc).map_err(|e| YamlError::Syntax(e.to_string()))?;
        let mut v = v;
        v.apply_merge()
            .map_err(|e| YamlError::Syntax(e.to_string()))?;
        let json: serde_json::Value =
            serde_json::to_value(&v).map_err(|e| YamlError::Syntax(e.to_string()))?;
        out.push(json);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn text_of<'a>(src: &'a str, n: &Node) -> &'a str {
        &src[n.start..n.end]
    }

    #[test]
    fn spans_cover_values_without_comments() {
        let src = "a: \"x\"  # c\nb: 'it''s' # d\nc: plain # e\nd: {p: 1}\ne: [1, 2] # f\ng:\n- name: x\n  v: y\n";
        let docs = parse(src).expect("parse");
        let root = docs[0].root.as_ref().expect("root");
        assert_eq!(text_of(src, root.get("a").expect("a")), "\"x\"");
        assert_eq!(text_of(src, root.get("b").expect("b")), "'it''s'");
        assert_eq!(text_of(src, root.get("c").expect("c")), "plain");
        assert_eq!(text_of(src, root.get("d").expect("d")), "{p: 1}");
        assert_eq!(text_of(src, root.get("e").expect("e")), "[1, 2]");
        let g = root.get("g").expect("g");
        assert_eq!(text_of(src, g), "- name: x\n  v: y");
        assert_eq!(g.col, 0);
    }

    #[test]
    fn documents_and_multibyte_text() {
        let src = "# ünïcode\na: é\n---\nb: 2\n...\n---\nc: 3\n";
        let docs = parse(src).expect("parse");
        assert_eq!(docs.len(), 3);
        let a = docs[0].root.as_ref().and_then(|r| r.get("a")).expect("a");
        assert_eq!(text_of(src, a), "é");
        let c = docs[2].root.as_ref().and_then(|r| r.get("c")).expect("c");
        assert_eq!(text_of(src, c), "3");
        assert!(src[docs[1].range.clone()].contains("b: 2"));
    }

    #[test]
    fn anchors_and_aliases_are_seen() {
        let src = "a: &x {p: 1}\nb: *x\n";
        let root = parse(src).expect("parse").remove(0).root.expect("root");
        let (mut anchors, mut aliases) = (vec![], vec![]);
        root.anchors(&mut anchors);
        root.aliases(&mut aliases);
        assert_eq!(anchors, aliases);
        assert_eq!(anchors.len(), 1);
    }

    #[test]
    fn bad_yaml_is_an_error() {
        assert!(parse("a: [1, 2\n").is_err());
        assert!(parse(&"a".repeat(MAX_FILE_BYTES + 1)).is_err());
    }
}
