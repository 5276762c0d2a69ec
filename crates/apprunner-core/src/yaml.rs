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
    let mut parser = Parser::new_from_str(text);
    // Each anchored node, with how many nodes it stands for.
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut nodes = 0usize;
    let mut stack: Vec<Open> = Vec::new();
    let mut done: Option<Node> = None;
    let mut documents = 0;
    loop {
        let (event, span) = match parser.next() {
            None => break,
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                let m = e.marker();
                return Err(YamlError {
                    mark: Mark { line: m.line(), col: m.col() + 1 },
                    message: e.info().to_string(),
                });
            }
        };
        let seq_start = matches!(event, Event::SequenceStart(..));
        let finished: Option<(Node, usize, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        mark: mark(&span),
                        message: "the file holds more than one YAML document; apprunner.yaml is a single document"
                            .into(),
                    });
                }
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((n, size)) => {
                    nodes += size;
                    if nodes > MAX_NODES {
                        return Err(too_many(&span));
                    }
                    Some((n.clone(), 0, 0))
                }
                None => return Err(YamlError { mark: mark(&span), message: "alias to an unknown anchor".into() }),
            },
            Event::Scalar(text, style, anchor, tag) => {
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(too_many(&span));
                }
                let quoted = !matches!(style, ScalarStyle::Plain);
                let tag = tag.filter(|t| !t.is_yaml_core_schema()).map(|t| format!("{}{}", t.handle, t.suffix));
                Some((
                    Node { value: Value::Scalar { text: text.into_owned(), quoted }, mark: mark(&span), tag },
                    anchor,
                    1,
                ))
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                let is_seq = seq_start;
                let tag = tag.filter(|t| !t.is_yaml_core_schema()).map(|t| format!("{}{}", t.handle, t.suffix));
                let value = if is_seq { Value::Seq(Vec::new()) } else { Value::Map(Vec::new()) };
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        mark: mark(&span),
                        message: format!("the file nests more than {MAX_DEPTH} levels deep; apprunner.yaml needs 4"),
                    });
                }
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(too_many(&span));
                }
                stack.push(Open {
                    node: Node { value, mark: mark(&span), tag },
                    anchor,
                    key: None,
                    keys: HashSet::new(),
                    nodes_before: nodes - 1,
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let open = stack.pop().expect("parser balances collections");
                Some((open.node, open.anchor, nodes - open.nodes_before))
            }
        };
        let Some((node, anchor, size)) = finished else { continue };
        if anchor != 0 {
            anchors.insert(anchor, (node.clone(), size));
        }
        match stack.last_mut() {
            None => {
                if done.is_none() {
                    done = Some(node);
                }
            }
            Some(open) => open.attach(node)?,
        }
    }
    Ok(done)
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
