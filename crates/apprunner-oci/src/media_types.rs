//! The media types of the OCI and Docker documents the service reads and writes: one place.

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI 1.1's empty config (`{}`): of an artifact whose content is its annotations.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// An attestation's statement (the SLSA provenance).
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// A cosign signature's payload (Red Hat's simple signing format, as cosign writes it).
/// A signed in-toto statement: a DSSE envelope (cosign's attestation layers).
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const COSIGN_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// What a manifest request accepts: an image or an index, in either family.
pub const ACCEPTED_MANIFESTS: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_request_accepts_each_manifest_type() {
        let accepted: Vec<&str> = ACCEPTED_MANIFESTS.split(", ").collect();
        assert_eq!(accepted, [DOCKER_MANIFEST, OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST]);
    }
}
