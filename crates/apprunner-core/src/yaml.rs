//! A small YAML document tree that keeps what serde-style loaders throw away: the exact text
//! of every scalar (`3.10` stays `3.10`) and the line and column of every node.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::{HashMap, HashSet};

/// Nodes a document may have, aliases counted as many times as they are used: apprunner.yaml
/// needs a few dozen; a "billion laughs" file of a few hundred bytes would otherwise expand to
/// gigabytes.
pub const MAX_NODES: usize = 20_000;
/// How deep collections may nest (apprunner.yaml needs 4).
pub const MAX_DEPTH: usize = 32;

/// 1-based line and column of a node in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Mark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar's text exactly as written (after YAML unquoting); `quoted` tells `"1.0"` from `1.0`.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
    /// A non-core tag such as `CloudFormation`'s `!Ref`, which this file format has no use for.
    pub tag: Option<String>,
}

impl Node {
    /// A plain `~`, `null` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, quoted: false } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
    /// What kind of node this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "nothing",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub mark: Mark,
    pub message: String,
}

fn mark(span: &Span) -> Mark {
    Mark { line: span.start.line(), col: span.start.col() + 1 }
}

/// A collection being read: its node under construction, its anchor, a pending map key, the
/// keys it has (duplicates are refused in one pass), and the node count when it opened.
struct Open {
    node: Node,
    anchor: usize,
    key: Option<Node>,
    keys: HashSet<String>,
    nodes_before: usize,
}

impl Open {
    /// Adds a finished child: an item of a sequence, or a key or value of a mapping.
    fn attach(&mut self, node: Node) -> Result<(), YamlError> {
        match &mut self.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match self.key.take() {
                None => self.key = Some(node),
                Some(key) => {
                    if let Some(k) = key.as_scalar() {
                        if !self.keys.insert(k.to_string()) {
                            let first =
                                entries.iter().find(|(e, _)| e.as_scalar() == Some(k)).map_or(0, |(e, _)| e.mark.line);
                            let k = crate::shown::cut(k);
                            let message = format!("duplicate key `{k}` (first given at line {first})");
                            return Err(YamlError { mark: key.mark, message });
                        }
                    }
                    entries.push((key, node));
                }
            },
            Value::Scalar { .. } => unreachable!("scalars are never open"),
        }
        Ok(())
    }
}

/// Parses the first document of `text`. A stream with no document gives `None`.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let parser = Parser::new_from_str(text);
    let mut tree = TreeBuilder::default();
    for next in parser {
        let (event, span) = next.map_err(|e| {
            let m = e.marker();
            YamlError { mark: Mark { line: m.line(), col: m.col() + 1 }, message: e.info().to_string() }
        })?;
        if let Some((node, anchor, size)) = tree.event(event, &span)? {
            tree.place(node, anchor, size)?;
        }
    }
    Ok(tree.done)
}

/// The tree as the parser's events build it, bounded in nodes (an alias counted as the nodes it
/// stands for), depth and documents.
#[derive(Default)]
struct TreeBuilder {
    /// Each anchored node, with how many nodes it stands for.
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    stack: Vec<Open>,
    done: Option<Node>,
    documents: usize,
}

impl TreeBuilder {
    /// `n` more nodes, within [`MAX_NODES`].
    fn count(&mut self, n: usize, span: &Span) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(too_many(span));
        }
        Ok(())
    }

    /// The node `event` completes (with its anchor and how many nodes it stands for), if any.
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<Option<(Node, usize, usize)>, YamlError> {
        let core_tag = |tag: Option<std::borrow::Cow<'_, saphyr_parser::Tag>>| {
            tag.filter(|t| !t.is_yaml_core_schema()).map(|t| format!("{}{}", t.handle, t.suffix))
        };
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => Ok(None),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(YamlError {
                        mark: mark(span),
                        message: "the file holds more than one YAML document; apprunner.yaml is a single document"
                            .into(),
                    });
                }
                Ok(None)
            }
            Event::Alias(id) => {
                let Some((n, size)) = self.anchors.get(&id).cloned() else {
                    return Err(YamlError { mark: mark(span), message: "alias to an unknown anchor".into() });
                };
                self.count(size, span)?;
                Ok(Some((n, 0, 0)))
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, span)?;
                let quoted = !matches!(style, ScalarStyle::Plain);
                let value = Value::Scalar { text: text.into_owned(), quoted };
                Ok(Some((Node { value, mark: mark(span), tag: core_tag(tag) }, anchor, 1)))
            }
            Event::SequenceStart(anchor, tag) => self.open(Value::Seq(Vec::new()), anchor, core_tag(tag), span),
            Event::MappingStart(anchor, tag) => self.open(Value::Map(Vec::new()), anchor, core_tag(tag), span),
            Event::SequenceEnd | Event::MappingEnd => {
                let open = self.stack.pop().expect("parser balances collections");
                Ok(Some((open.node, open.anchor, self.nodes - open.nodes_before)))
            }
        }
    }

    /// A sequence or mapping begins: it is open until its end.
    fn open(
        &mut self,
        value: Value,
        anchor: usize,
        tag: Option<String>,
        span: &Span,
    ) -> Result<Option<(Node, usize, usize)>, YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError {
                mark: mark(span),
                message: format!("the file nests more than {MAX_DEPTH} levels deep; apprunner.yaml needs 4"),
            });
        }
        self.count(1, span)?;
        let node = Node { value, mark: mark(span), tag };
        self.stack.push(Open { node, anchor, key: None, keys: HashSet::new(), nodes_before: self.nodes - 1 });
        Ok(None)
    }

    /// A finished node: kept under its anchor, and attached to the collection it is in (or the
    /// document's root).
    fn place(&mut self, node: Node, anchor: usize, size: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.done.is_none() {
                    self.done = Some(node);
                }
                Ok(())
            }
            Some(open) => open.attach(node),
        }
    }
}

fn too_many(span: &Span) -> YamlError {
    YamlError {
        mark: mark(span),
        message: format!(
            "the file has more than {MAX_NODES} values once its aliases are expanded; apprunner.yaml needs a few dozen"
        ),
    }
}

#[cfg(test)]
#[allow(clippy::format_collect, clippy::format_push_string)]
mod tests {
    use super::*;

    #[test]
    fn keeps_scalar_text_and_positions() {
        let doc = parse("version: 1.0\nrun:\n  runtime-version: 3.10\n  port: 08080\n").unwrap().unwrap();
        let Value::Map(top) = &doc.value else { panic!() };
        assert_eq!(top[0].1.as_scalar(), Some("1.0"));
        let Value::Map(run) = &top[1].1.value else { panic!() };
        assert_eq!(run[0].1.as_scalar(), Some("3.10"));
        assert_eq!(run[0].1.mark, Mark { line: 3, col: 20 });
        assert_eq!(run[1].1.as_scalar(), Some("08080"));
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.mark.line >= 1, "{err:?}");
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.mark.line, 2);
        assert!(err.message.contains("duplicate key `a`"));
    }

    #[test]
    fn resolves_aliases_and_keeps_custom_tags() {
        let doc = parse("x: &c [a, b]\ny: *c\nz: !Ref Thing\n").unwrap().unwrap();
        let Value::Map(top) = &doc.value else { panic!() };
        assert_eq!(top[0].1.value, top[1].1.value);
        assert_eq!(top[2].1.tag.as_deref(), Some("!Ref"));
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused_quickly() {
        // Nine levels of ten aliases: 10^9 values if expanded.
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let err = parse(&bomb).unwrap_err();
        assert!(err.message.contains("more than 20000 values"), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let deep = format!("{}x{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("nests more than 32 levels"));
    }

    #[test]
    fn many_keys_are_checked_in_linear_time() {
        let text: String = (0..50_000).map(|i| format!("k{i}: v\n")).collect();
        let started = std::time::Instant::now();
        assert!(parse(&text).unwrap_err().message.contains("more than 20000"));
        let text: String = (0..9_000).map(|i| format!("k{i}: v\n")).collect::<String>() + "k5: again\n";
        assert!(parse(&text).unwrap_err().message.contains("duplicate key `k5` (first given at line 6)"));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn empty_stream_is_none() {
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }
}
