//! The OCI documents apprunner-build reads and writes, typed: content digests, image references,
//! media types, image manifests, indexes, descriptors, configs (the one handed to `BuildKit`'s
//! exporter too), in-toto statements, SLSA v1 provenance, SPDX documents, DSSE envelopes, and
//! cosign's signature and attestation documents. No I/O: values in, documents and their bytes out. The core re-exports the documents as `core::oci`.

pub mod cosign;
pub mod digest;
mod documents;
pub mod dsse;
pub mod image_ref;
pub mod media_types;
pub mod slsa;
pub mod spdx;

pub use documents::*;
