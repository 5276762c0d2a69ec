//! Image references (`host[:port]/repo/path[:tag][@sha256:…]`), parsed once where they enter
//! and carried typed from there.

use crate::digest::Digest;

/// A string that is not an image reference, and what would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an image reference; expected REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/apps/web:latest"
)]
pub struct ImageRefError(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        let bad = || ImageRefError(s.to_string());
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|_| bad())?)),
            None => (s, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(bad)?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad());
        }
        let (repository, tag) = split_tag(path);
        let valid_repo = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty()
                    && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
            });
        if !valid_repo || tag.is_some_and(|t| t.is_empty() || t.len() > 128) {
            return Err(bad());
        }
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag, or the digest, or `latest`.
    pub fn reference(&self) -> String {
        self.digest.as_ref().map(ToString::to_string).or_else(|| self.tag.clone()).unwrap_or_else(|| "latest".into())
    }

    /// `registry/repository@digest`: the image at `digest` in this repository.
    pub fn with_digest(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.name())
    }

    /// This repository's image at `digest`, as a reference.
    #[must_use]
    pub fn at(&self, digest: &Digest) -> ImageRef {
        ImageRef { tag: None, digest: Some(digest.clone()), ..self.clone() }
    }

    /// The repository it is in.
    pub fn repo(&self) -> Repo {
        Repo::new(&self.registry, &self.repository)
    }
}

/// A repository at a registry (`host[:port]`, `path/name`): where blobs, manifests and tags live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repo {
    pub registry: String,
    pub repository: String,
}

impl Repo {
    pub fn new(registry: &str, repository: &str) -> Self {
        Self { registry: registry.to_string(), repository: repository.to_string() }
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// `repo/path:tag` -> (`repo/path`, Some(`tag`)); a `:` inside the host part is a port, not a tag.
pub fn split_tag(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (name, None),
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A name made fit to be one path component of a repository: lower case, `[a-z0-9._-]`,
/// starting and ending with a letter or digit (`.tmpAb3` -> `tmpab3`).
pub fn repository_component(name: &str) -> String {
    let mapped: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "app".into()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_parse() {
        let r = ImageRef::parse("127.0.0.1:5000/apprunner-runtimes/python3:3.8.16-build").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "apprunner-runtimes/python3", Some("3.8.16-build"))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("registry.example.com/apps/web@{d}")).unwrap();
        assert_eq!(r.reference(), d);
        assert!(ImageRef::parse("python:3").is_err());
        assert!(ImageRef::parse("127.0.0.1:5000/Apps/web")
            .unwrap_err()
            .to_string()
            .contains("expected REGISTRY/REPOSITORY"));
        assert_eq!(split_tag("127.0.0.1:5000/apps/web"), ("127.0.0.1:5000/apps/web", None));
        assert_eq!(split_tag("127.0.0.1:5000/apps/web:v1"), ("127.0.0.1:5000/apps/web", Some("v1")));
    }

    #[test]
    fn names_become_repository_components() {
        assert_eq!(repository_component(".tmpAb3"), "tmpab3");
        assert_eq!(repository_component("My Service!"), "my-service");
        assert_eq!(repository_component("..."), "app");
    }
}
