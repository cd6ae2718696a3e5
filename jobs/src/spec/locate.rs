//! Finding where a field is written in TOML text: byte offsets to line and
//! column, and field paths (`task.messages[1].content`) to the item that
//! writes them, so that errors point at the line to fix.

use std::fmt;

/// 1-based line and column in the spec text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

pub(super) fn offset_to_location(text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    Location { line, column }
}

/// Finds where a field path such as `task.messages[1].content` is written in
/// TOML text, falling back to the closest enclosing item that has a span.
pub(super) fn locate_field(text: &str, field: &str) -> Option<Location> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut best: Option<std::ops::Range<usize>> = None;
    let mut node = Node::Table(doc.as_table());
    for segment in field.split('.') {
        let (key, indexes) = split_indexes(segment);
        let Some(next) = node.child_key(key) else {
            break;
        };
        node = next;
        best = node.span().or(best);
        for index in indexes {
            let Some(next) = node.child_index(index) else {
                return best.map(|r| offset_to_location(text, r.start));
            };
            node = next;
            best = node.span().or(best);
        }
    }
    best.map(|r| offset_to_location(text, r.start))
}

/// A position in a parsed TOML document, whatever syntax wrote it.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<std::ops::Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn child_key(self, key: &str) -> Option<Node<'a>> {
        match self {
            Node::Table(t) => t.get(key).map(Node::Item),
            Node::Item(toml_edit::Item::Table(t)) => t.get(key).map(Node::Item),
            Node::Item(toml_edit::Item::Value(toml_edit::Value::InlineTable(t)))
            | Node::Value(toml_edit::Value::InlineTable(t)) => t.get(key).map(Node::Value),
            _ => None,
        }
    }

    fn child_index(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => a.get(index).map(Node::Table),
            Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a)))
            | Node::Value(toml_edit::Value::Array(a)) => a.get(index).map(Node::Value),
            _ => None,
        }
    }
}

/// Splits `messages[1]` into `("messages", [1])`.
fn split_indexes(segment: &str) -> (&str, Vec<usize>) {
    let key_end = segment.find('[').unwrap_or(segment.len());
    let key = &segment[..key_end];
    let indexes = segment[key_end..]
        .split(['[', ']'])
        .filter_map(|s| s.parse().ok())
        .collect();
    (key, indexes)
}
