//! The SPDX 2.3 JSON document of an image's packages, and the in-toto statement that carries it
//! as an attestation (where BuildKit puts its own SBOMs: beside the provenance).

use super::{Ecosystem, Merged, Package};
use crate::digest::Digest;
use crate::oci::spdx::{CreationInfo, ExternalRef, Relationship, SpdxDocument, SpdxPackage};
use crate::oci::{Statement, Subject};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The predicate type of an SPDX attestation, as BuildKit and `imagetools inspect` name it.
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";

/// `s` with everything but letters, digits and `.-_~` percent-encoded (purl's rule for names and
/// versions).
fn encoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"._-~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The package's purl (`pkg:type/namespace/name@version?qualifiers`).
pub fn purl(p: &Package, os: Option<&(String, String)>) -> String {
    let path = |name: &str| name.split('/').map(encoded).collect::<Vec<_>>().join("/");
    let version = encoded(&p.version);
    match p.ecosystem {
        Ecosystem::Deb => {
            let (id, version_id) = os.cloned().unwrap_or_else(|| ("debian".into(), String::new()));
            let mut q = Vec::new();
            if let Some(arch) = &p.arch {
                q.push(format!("arch={}", encoded(arch)));
            }
            if !version_id.is_empty() {
                q.push(format!("distro={}-{}", encoded(&id), encoded(&version_id)));
            }
            let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
            format!("pkg:deb/{}/{}@{version}{q}", encoded(&id), encoded(&p.name))
        }
        // PyPI names compare lower-cased with `_` as `-` (PEP 503); purl writes them so.
        Ecosystem::Pypi => format!("pkg:pypi/{}@{version}", encoded(&p.name.to_lowercase().replace('_', "-"))),
        Ecosystem::Npm => format!("pkg:npm/{}@{version}", path(&p.name)),
        Ecosystem::Gem => format!("pkg:gem/{}@{version}", encoded(&p.name)),
        Ecosystem::Composer => format!("pkg:composer/{}@{version}", path(&p.name)),
        Ecosystem::Golang => format!("pkg:golang/{}@{version}", path(&p.name)),
        Ecosystem::Maven => format!("pkg:maven/{}@{version}", path(&p.name)),
    }
}

/// The SPDX document of the image `name` (`registry/repo`) whose manifest is `digest`: every
/// package the merged layers record, once per purl, with where it was found; `created` is the
/// image's own time, so the same image always gets the same document.
pub fn document(merged: &Merged, name: &str, digest: &Digest, created: &str, tool: &str) -> SpdxDocument {
    let mut seen: BTreeMap<String, (&Package, &str)> = BTreeMap::new();
    for (path, packages) in &merged.files {
        for p in packages {
            seen.entry(purl(p, merged.os.as_ref())).or_insert((p, path));
        }
    }
    let package = |name: &str, id: &str, version: &str| SpdxPackage {
        name: name.to_string(),
        spdx_id: id.to_string(),
        version_info: version.to_string(),
        download_location: "NOASSERTION".into(),
        files_analyzed: false,
        primary_package_purpose: None,
        source_info: None,
        external_refs: Vec::new(),
    };
    let image = SpdxPackage {
        primary_package_purpose: Some("CONTAINER".into()),
        ..package(name, "SPDXRef-Image", digest.as_str())
    };
    let mut packages = vec![image];
    let mut relationships = vec![Relationship::new("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")];
    for (i, (purl, (p, path))) in seen.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{}", ecosystem_name(p.ecosystem), i + 1);
        packages.push(SpdxPackage {
            source_info: Some(format!("found in /{path}")),
            external_refs: vec![ExternalRef::purl(purl)],
            ..package(&p.name, &id, &p.version)
        });
        relationships.push(Relationship::new("SPDXRef-Image", "CONTAINS", &id));
    }
    SpdxDocument {
        spdx_version: "SPDX-2.3".into(),
        data_license: "CC0-1.0".into(),
        spdx_id: "SPDXRef-DOCUMENT".into(),
        name: format!("{name}@{digest}"),
        document_namespace: format!("https://apprunner-build.dev/spdx/{name}/{digest}"),
        creation_info: CreationInfo { created: created.to_string(), creators: vec![format!("Tool: {tool}")] },
        packages,
        relationships,
    }
}

fn ecosystem_name(e: Ecosystem) -> &'static str {
    match e {
        Ecosystem::Deb => "deb",
        Ecosystem::Pypi => "pypi",
        Ecosystem::Npm => "npm",
        Ecosystem::Gem => "gem",
        Ecosystem::Composer => "composer",
        Ecosystem::Golang => "golang",
        Ecosystem::Maven => "maven",
    }
}

/// The in-toto statement whose subject is the image manifest `digest` of `name` and whose
/// predicate is the SPDX `document`, as bytes.
pub fn statement(name: &str, digest: &Digest, document: &SpdxDocument) -> Vec<u8> {
    let subject = Subject::at(&format!("pkg:docker/{name}?platform=linux%2Famd64"), digest);
    crate::oci::to_bytes(&Statement::v01(SPDX_PREDICATE, vec![subject], document))
}
