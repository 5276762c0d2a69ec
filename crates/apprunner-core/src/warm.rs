//! Dependency warm-up: when a stage's first command is a dependency install this recognises, the
//! same command runs first on the dependency manifests alone, cached on their content. The real
//! command then runs as before, on the whole source, and finds everything in place: a code change
//! no longer reinstalls every package. App Runner's own steps stay exactly as they are.
//!
//! Only plain commands are recognised (no shell operators, no substitutions), and only as the
//! first command of a stage, so the warm-up sees the same image, env and working directory.

use serde::Serialize;
use std::collections::BTreeSet;

/// The warm-up of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarmStep {
    pub command: String,
    /// Paths relative to the source directory, copied into /app before the command runs.
    pub manifests: Vec<String>,
}

/// What an install reads: files it needs (all must exist) and files it reads when they exist.
struct Install {
    required: Vec<String>,
    optional: &'static [&'static str],
}

/// The install `command` is, if it is one this recognises.
fn recognise(command: &str) -> Option<Install> {
    if command.contains(['\n', ';', '&', '|', '<', '>', '$', '`', '(', ')', '\\', '"', '\'', '*', '?']) {
        return None;
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    let flags_only = |rest: &[&str]| rest.iter().all(|w| w.starts_with('-'));
    let node = |lock: &'static [&'static str]| Install { required: vec!["package.json".into()], optional: lock };
    match words.as_slice() {
        ["pip" | "pip3", "install", rest @ ..] | ["python" | "python3", "-m", "pip", "install", rest @ ..] => {
            requirements_file(rest).map(|file| Install { required: vec![file], optional: &[] })
        }
        ["npm", "ci" | "install" | "i", rest @ ..] if flags_only(rest) => {
            Some(node(&["package-lock.json", "npm-shrinkwrap.json", ".npmrc"]))
        }
        ["yarn", rest @ ..] | ["yarn", "install", rest @ ..] if flags_only(rest) => {
            Some(node(&["yarn.lock", ".yarnrc", ".yarnrc.yml"]))
        }
        ["pnpm", "install" | "i", rest @ ..] if flags_only(rest) => {
            Some(node(&["pnpm-lock.yaml", ".npmrc", "pnpm-workspace.yaml"]))
        }
        ["bundle", "install", rest @ ..] if flags_only(rest) => {
            Some(Install { required: vec!["Gemfile".into()], optional: &["Gemfile.lock"] })
        }
        ["composer", "install", rest @ ..] if flags_only(rest) => {
            Some(Install { required: vec!["composer.json".into()], optional: &["composer.lock"] })
        }
        ["go", "mod", "download"] => Some(Install { required: vec!["go.mod".into()], optional: &["go.sum"] }),
        _ => None,
    }
}

/// `-r requirements.txt` (or `--requirement`): the one requirements file of a pip install with
/// nothing else to install, as a plain relative path.
fn requirements_file(args: &[&str]) -> Option<String> {
    let mut file = None;
    let mut i = 0;
    while i < args.len() {
        match args[i] {
            "-r" | "--requirement" => {
                if file.is_some() {
                    return None;
                }
                file = Some(args.get(i + 1)?.to_string());
                i += 2;
            }
            a if a.starts_with('-') && !a.starts_with("-r") && !a.starts_with("-c") && !a.starts_with("-e") => i += 1,
            // A package named on the command line, a constraints or editable file: not a
            // dependency-only install.
            _ => return None,
        }
    }
    file.filter(|f| !f.starts_with('/') && !f.split('/').any(|p| p == ".." || p.is_empty()))
}

/// The files `command` would need in the source directory to be warmed up (for the I/O side to
/// check); empty when it is not an install this recognises.
pub fn candidates(command: &str) -> Vec<String> {
    recognise(command)
        .map(|i| i.required.into_iter().chain(i.optional.iter().map(|s| (*s).to_string())).collect())
        .unwrap_or_default()
}

/// The warm-up of a stage whose first command is `command`, given which of its candidate files
/// are regular files in the source directory.
pub fn warm_step(command: &str, present: &BTreeSet<String>) -> Option<WarmStep> {
    let install = recognise(command)?;
    if !install.required.iter().all(|f| present.contains(f)) {
        return None;
    }
    let optional = install.optional.iter().map(|s| (*s).to_string()).filter(|f| present.contains(f));
    Some(WarmStep { command: command.to_string(), manifests: install.required.into_iter().chain(optional).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(files: &[&str]) -> BTreeSet<String> {
        files.iter().map(|f| (*f).to_string()).collect()
    }

    #[test]
    fn recognised_installs_warm_up_on_their_manifests() {
        let files = present(&["requirements.txt", "package.json", "package-lock.json", "go.mod"]);
        let pip = warm_step("pip install -r requirements.txt", &files).unwrap();
        assert_eq!(pip.manifests, ["requirements.txt"]);
        assert!(warm_step("pip3 install --no-cache-dir -r requirements.txt", &files).is_some());
        assert_eq!(warm_step("npm ci", &files).unwrap().manifests, ["package.json", "package-lock.json"]);
        assert!(warm_step("npm install --omit=dev", &files).is_some());
        assert_eq!(warm_step("go mod download", &files).unwrap().manifests, ["go.mod"]);
    }

    #[test]
    fn anything_else_is_left_alone() {
        let files = present(&["requirements.txt", "package.json", "Gemfile"]);
        for command in [
            "pip install flask",
            "pip install -r requirements.txt flask",
            "pip install -r ../requirements.txt",
            "pip install -r /etc/requirements.txt",
            "pip install -r requirements.txt && python setup.py",
            "npm install express",
            "npm run build",
            "yarn build",
            "bundle exec rake",
            "composer install",
            "echo $(pip install -r requirements.txt)",
        ] {
            assert_eq!(warm_step(command, &files), None, "{command}");
        }
        assert_eq!(warm_step("pip install -r dev.txt", &files), None, "the file is not there");
        assert_eq!(candidates("pip install -r dev.txt"), ["dev.txt"]);
    }
}
