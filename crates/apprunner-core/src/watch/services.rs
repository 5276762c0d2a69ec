//! The services a watcher follows (`watch --services FILE`): a YAML list under `services:`, read
//! with positions, every problem of the file reported at once, one line each.

use crate::catalog::RuntimeCatalog;
use crate::config;
use crate::image_ref::ImageRef;
use crate::request::ConfigInput;
use crate::shown::cut;
use crate::yaml::{self, Mark, Node, Value};

/// The largest services file read: some 10,000 services.
pub const MAX_SERVICES_BYTES: usize = 4 << 20;
/// Services one file may declare.
pub const MAX_SERVICES: usize = 10_000;
/// Problems reported; more are counted in one last line.
const MAX_PROBLEMS: usize = 100;

const KEYS: [&str; 7] = ["name", "repository", "branch", "source-directory", "image", "configuration", "auto-deploy"];

/// One service a watcher follows.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchedService {
    pub name: String,
    /// `https://…` or `file://…`, without credentials.
    pub repository: String,
    /// None: the repository's default branch.
    pub branch: Option<String>,
    /// From the repository root, `/` or `/services/api`.
    pub source_dir: String,
    /// Where each deployment pushes (no digest).
    pub image: ImageRef,
    pub configuration: ConfigInput,
    /// False: followed by nothing; deployed by hand only.
    pub auto_deploy: bool,
}

/// Every problem of a services file, one line each (`FILE:LINE:COL: what; what is accepted`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ServicesErrors(pub Vec<String>);

/// Reads the services file `file` (its name, for the messages) whose text is `text`.
pub fn read(text: &str, file: &str, catalog: &RuntimeCatalog) -> Result<Vec<WatchedService>, ServicesErrors> {
    let mut reader = Reader { file, problems: Vec::new(), more: 0 };
    let services = reader.file(text, catalog);
    if reader.more > 0 {
        reader.problems.push(format!("{file}: … and {} more problems", reader.more));
    }
    if reader.problems.is_empty() {
        Ok(services)
    } else {
        Err(ServicesErrors(reader.problems))
    }
}

struct Reader<'a> {
    file: &'a str,
    problems: Vec<String>,
    more: usize,
}

impl Reader<'_> {
    fn problem(&mut self, mark: Mark, message: impl std::fmt::Display) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(format!("{}:{mark}: {message}", self.file));
        } else {
            self.more += 1;
        }
    }

    fn file(&mut self, text: &str, catalog: &RuntimeCatalog) -> Vec<WatchedService> {
        let top = Mark { line: 1, col: 1 };
        if text.len() > MAX_SERVICES_BYTES {
            self.problem(top, format!("the file is {} bytes; at most {MAX_SERVICES_BYTES} are read", text.len()));
            return Vec::new();
        }
        let root = match yaml::parse(text) {
            Ok(Some(root)) => root,
            Ok(None) => {
                self.problem(top, "the file is empty; give `services:` and a list of services under it");
                return Vec::new();
            }
            Err(e) => {
                self.problem(e.mark, format!("not YAML: {}", e.message));
                return Vec::new();
            }
        };
        let Value::Map(entries) = &root.value else {
            self.problem(root.mark, format!("the file is {}; give a mapping with `services:`", root.kind()));
            return Vec::new();
        };
        let mut list = None;
        for (key, value) in entries {
            match key.as_scalar() {
                Some("services") => list = Some(value),
                other => self.problem(
                    key.mark,
                    format!("unknown key `{}`; the file has one key, `services`", cut(other.unwrap_or("?"))),
                ),
            }
        }
        let Some(list) = list else {
            self.problem(root.mark, "`services:` is missing; give a list of services under it");
            return Vec::new();
        };
        let Value::Seq(items) = &list.value else {
            self.problem(list.mark, format!("`services` is {}; give a list, each item a service", list.kind()));
            return Vec::new();
        };
        if items.len() > MAX_SERVICES {
            self.problem(list.mark, format!("{} services; one file may declare at most {MAX_SERVICES}", items.len()));
            return Vec::new();
        }
        let mut services: Vec<WatchedService> = Vec::new();
        let mut first_at = std::collections::HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let Some(service) = self.service(i, item, catalog) else { continue };
            if let Some(line) = first_at.get(&service.name) {
                self.problem(
                    item.mark,
                    format!(
                        "services[{i}]: service `{}` is declared twice (first at line {line}); each name once",
                        service.name
                    ),
                );
                continue;
            }
            first_at.insert(service.name.clone(), item.mark.line);
            services.push(service);
        }
        services
    }

    /// The `i`th service, or None with its problems kept.
    fn service(&mut self, i: usize, item: &Node, catalog: &RuntimeCatalog) -> Option<WatchedService> {
        let Value::Map(entries) = &item.value else {
            self.problem(item.mark, format!("services[{i}] is {}; give a mapping of {}", item.kind(), KEYS.join(", ")));
            return None;
        };
        let mut fields = Fields::default();
        for (key, value) in entries {
            let name = key.as_scalar().unwrap_or("?");
            if !KEYS.contains(&name) {
                self.problem(
                    key.mark,
                    format!("services[{i}]: unknown key `{}`; the keys are {}", cut(name), KEYS.join(", ")),
                );
                continue;
            }
            fields.set(name, value);
        }
        let before = self.problems.len() + self.more;
        let at = |key: &str| format!("services[{i}].{key}");
        let name = self.required(item, fields.name, &at("name")).and_then(|n| self.checked(n, &at("name"), check_name));
        let repository = self
            .required(item, fields.repository, &at("repository"))
            .and_then(|n| self.checked(n, &at("repository"), check_repository));
        let branch = fields.branch.and_then(|n| self.checked(n, &at("branch"), check_branch));
        let source_dir = match fields.source_dir {
            Some(n) => {
                self.checked(n, &at("source-directory"), |s| crate::request::normalize_source_dir(s).map_err(|e| e.0))
            }
            None => Some("/".to_string()),
        };
        let image =
            self.required(item, fields.image, &at("image")).and_then(|n| self.checked(n, &at("image"), check_image));
        let configuration = match fields.configuration {
            Some(n) => self.configuration(n, &at("configuration"), catalog),
            None => Some(ConfigInput::Repository),
        };
        let auto_deploy = match fields.auto_deploy {
            Some(n) => self.checked(n, &at("auto-deploy"), |s| match s {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(format!("`{}` is not true or false", cut(other))),
            }),
            None => Some(true),
        };
        if self.problems.len() + self.more > before {
            return None;
        }
        Some(WatchedService {
            name: name?,
            repository: repository?,
            branch,
            source_dir: source_dir?,
            image: image?,
            configuration: configuration?,
            auto_deploy: auto_deploy?,
        })
    }

    fn required<'n>(&mut self, item: &Node, field: Option<&'n Node>, what: &str) -> Option<&'n Node> {
        if field.is_none() {
            self.problem(item.mark, format!("{what} is missing"));
        }
        field
    }

    /// A scalar field checked by `check`, or None with the problem kept.
    fn checked<T>(&mut self, node: &Node, what: &str, check: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let Some(text) = node.as_scalar().filter(|_| !node.is_null()) else {
            self.problem(node.mark, format!("{what} is {}; give a value", node.kind()));
            return None;
        };
        match check(text) {
            Ok(v) => Some(v),
            Err(message) => {
                self.problem(node.mark, format!("{what}: {message}"));
                None
            }
        }
    }

    /// `repository` (the source directory's apprunner.yaml), or API values as `--api-config` takes them.
    fn configuration(&mut self, node: &Node, what: &str, catalog: &RuntimeCatalog) -> Option<ConfigInput> {
        match &node.value {
            Value::Scalar { text, .. } if text == "repository" => Some(ConfigInput::Repository),
            Value::Map(_) => {
                let values = json_of(node);
                match config::from_api(&values, catalog) {
                    Ok(_) => Some(ConfigInput::Api(values)),
                    Err(e) => {
                        self.problem(node.mark, format!("{what}: {e}"));
                        None
                    }
                }
            }
            _ => {
                self.problem(node.mark, format!("{what} is {}; give `repository` or the API build settings (Runtime, BuildCommand, StartCommand, Port, …) as a mapping", node.kind()));
                None
            }
        }
    }
}

/// A service's keys, as found (a key given twice is refused by the YAML reader).
#[derive(Default)]
struct Fields<'n> {
    name: Option<&'n Node>,
    repository: Option<&'n Node>,
    branch: Option<&'n Node>,
    source_dir: Option<&'n Node>,
    image: Option<&'n Node>,
    configuration: Option<&'n Node>,
    auto_deploy: Option<&'n Node>,
}

impl<'n> Fields<'n> {
    fn set(&mut self, key: &str, value: &'n Node) {
        let slot = match key {
            "name" => &mut self.name,
            "repository" => &mut self.repository,
            "branch" => &mut self.branch,
            "source-directory" => &mut self.source_dir,
            "image" => &mut self.image,
            "configuration" => &mut self.configuration,
            _ => &mut self.auto_deploy,
        };
        *slot = Some(value);
    }
}

/// App Runner's rule for a service name.
fn check_name(s: &str) -> Result<String, String> {
    let ok = (4..=40).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{}` is not a service name; give 4-40 letters, digits, '-' or '_', starting with a letter or digit",
            cut(s)
        ))
    }
}

fn check_repository(s: &str) -> Result<String, String> {
    if !(s.starts_with("https://") || s.starts_with("file://")) {
        return Err(format!(
            "`{}` is not a repository URL; give https://HOST/PATH or file:///PATH",
            cut(&crate::shown::redact_userinfo(s))
        ));
    }
    if crate::shown::split_userinfo(s).1.is_some() {
        return Err(
            "the URL holds credentials; give them in the git-credentials file (--git-credentials), never here".into()
        );
    }
    if s.len() > 2048 || s.chars().any(char::is_control) || s.contains(' ') {
        return Err(format!("`{}` is not a repository URL; give https://HOST/PATH or file:///PATH", cut(s)));
    }
    Ok(s.to_string())
}

/// git's rules for a branch name (`git check-ref-format --branch`), those a file can break.
fn check_branch(s: &str) -> Result<String, String> {
    let bad = s.is_empty()
        || s.len() > 255
        || s.starts_with(['-', '/', '.'])
        || s.ends_with(['/', '.'])
        || s.to_ascii_lowercase().ends_with(".lock")
        || s.contains("..")
        || s.contains("//")
        || s.contains("@{")
        || s.chars().any(|c| c.is_control() || " ~^:?*[\\".contains(c));
    if bad {
        Err(format!("`{}` is not a branch name git takes; give one such as main or release/2026", cut(s)))
    } else {
        Ok(s.to_string())
    }
}

fn check_image(s: &str) -> Result<ImageRef, String> {
    let image = ImageRef::parse(s).map_err(|e| e.to_string())?;
    if image.digest.is_some() {
        return Err(format!(
            "`{}` names a digest; give REGISTRY/REPOSITORY[:TAG], where each deployment pushes",
            cut(s)
        ));
    }
    Ok(image)
}

/// A YAML node as the JSON the API takes: every scalar a string (App Runner's API values are
/// strings, `Port` too).
fn json_of(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Scalar { text, .. } => serde_json::Value::String(text.clone()),
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(json_of).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries.iter().map(|(k, v)| (k.as_scalar().unwrap_or_default().to_string(), json_of(v))).collect(),
        ),
    }
}
