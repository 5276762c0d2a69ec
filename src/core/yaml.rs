//! A small YAML document tree that keeps what serde-style loaders throw away: the exact text
//! of every scalar (`3.10` stays `3.10`) and the line and column of every node.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

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

/// Parses the first document of `text`. A stream with no document gives `None`.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    // Each open collection: its node under construction, its anchor, and a pending map key.
    struct Open {
        node: Node,
        anchor: usize,
        key: Option<Node>,
    }
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
        let finished: Option<(Node, usize)> = match event {
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
                Some(n) => Some((n.clone(), 0)),
                None => return Err(YamlError { mark: mark(&span), message: "alias to an unknown anchor".into() }),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let tag = tag.filter(|t| !t.is_yaml_core_schema()).map(|t| format!("{}{}", t.handle, t.suffix));
                Some((
                    Node { value: Value::Scalar { text: text.into_owned(), quoted }, mark: mark(&span), tag },
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                let is_seq = seq_start;
                let tag = tag.filter(|t| !t.is_yaml_core_schema()).map(|t| format!("{}{}", t.handle, t.suffix));
                let value = if is_seq { Value::Seq(Vec::new()) } else { Value::Map(Vec::new()) };
                stack.push(Open { node: Node { value, mark: mark(&span), tag }, anchor, key: None });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let open = stack.pop().expect("parser balances collections");
                Some((open.node, open.anchor))
            }
        };
        let Some((node, anchor)) = finished else { continue };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => {
                if done.is_none() {
                    done = Some(node);
                }
            }
            Some(open) => match &mut open.node.value {
                Value::Seq(items) => items.push(node),
                Value::Map(entries) => match open.key.take() {
                    None => open.key = Some(node),
                    Some(key) => {
                        if let Some(k) = key.as_scalar() {
                            if let Some((first, _)) = entries.iter().find(|(e, _)| e.as_scalar() == Some(k)) {
                                return Err(YamlError {
                                    mark: key.mark,
                                    message: format!("duplicate key `{k}` (first given at line {})", first.mark.line),
                                });
                            }
                        }
                        entries.push((key, node));
                    }
                },
                Value::Scalar { .. } => unreachable!("scalars are never open"),
            },
        }
    }
    Ok(done)
}

#[cfg(test)]
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
    fn empty_stream_is_none() {
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }
}
