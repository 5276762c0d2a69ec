//! The keys `apprunner.yaml` has, the closest one to a misspelled key, where a key sits, and
//! the other hints a message gives (how to quote a command, a merge conflict, a misplaced key).

use crate::catalog::closest;
use crate::yaml::{Mark, Node, Value};

/// Every key the file format has, by the path of the mapping that holds it.
pub(super) const KNOWN_KEYS: &[(&str, &[&str])] = &[
    ("", &["version", "runtime", "build", "run"]),
    ("build", &["commands", "env"]),
    ("build.commands", &["pre-build", "build", "post-build"]),
    ("build.env[]", &["name", "value"]),
    ("run", &["runtime-version", "pre-run", "command", "network", "env", "secrets"]),
    ("run.network", &["port", "env"]),
    ("run.env[]", &["name", "value"]),
    ("run.secrets[]", &["name", "value-from"]),
];

/// For an unknown key: the same name where it belongs (`run.port` -> `run.network.port`), or the
/// closest known key at that level (`pre_build` -> `pre-build`).
pub(super) fn suggest_key(path: &str, key: &str) -> Option<String> {
    let normal = key.trim().to_ascii_lowercase().replace('_', "-");
    let here = KNOWN_KEYS.iter().find(|(p, _)| *p == path).map_or(&[][..], |(_, k)| *k);
    let join =
        |p: &str, k: &str| if p.is_empty() { k.to_string() } else { format!("{}.{k}", p.replace("[]", "[…]")) };
    if let Some(k) = here.iter().find(|k| **k == normal) {
        return Some(join(path, k));
    }
    if let Some((p, k)) = KNOWN_KEYS
        .iter()
        .flat_map(|(p, ks)| ks.iter().map(move |k| (*p, *k)))
        .find(|(p, k)| *k == normal && !p.contains("[]") && *p != path)
    {
        return Some(join(p, k));
    }
    closest(&normal, here).map(|k| join(path, k))
}

/// Best-effort position of a dotted key such as `run.env[2].name`, for errors found after reading.
pub(super) fn key_mark(root: &Node, key: &str) -> Option<Mark> {
    let mut node = root;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Value::Map(entries) = &node.value else { return None };
        node = &entries.iter().find(|(k, _)| k.as_scalar() == Some(name))?.1;
        if let Some(i) = index {
            let Value::Seq(items) = &node.value else { return None };
            node = items.get(i)?;
        }
    }
    Some(node.mark)
}

/// `text` quoted as YAML would read it back: double quotes, or single quotes when it has some.
pub(super) fn yaml_quoted(text: &str) -> String {
    if text.contains('"') {
        format!("'{}'", text.replace('\'', "''"))
    } else {
        format!("\"{text}\"")
    }
}

/// The first line that is a git merge-conflict marker, and the marker.
pub(super) fn conflict_marker(text: &str) -> Option<(usize, &'static str)> {
    text.lines().enumerate().find_map(|(i, l)| {
        ["<<<<<<<", "=======", ">>>>>>>"]
            .into_iter()
            .find(|m| l.starts_with(m) && l[m.len()..].chars().next().is_none_or(|c| c == ' '))
            .map(|m| (i + 1, m))
    })
}

/// The top-level section (`run`, `build`) that holds `key` when it belongs at the top level.
pub(super) fn misplaced(root: &Node, key: &str) -> Option<(&'static str, Mark)> {
    let Value::Map(top) = &root.value else { return None };
    ["run", "build"].into_iter().find_map(|section| {
        let (_, node) = top.iter().find(|(k, _)| k.as_scalar() == Some(section))?;
        let Value::Map(entries) = &node.value else { return None };
        entries.iter().find(|(k, _)| k.as_scalar() == Some(key)).map(|(k, _)| (section, k.mark))
    })
}
