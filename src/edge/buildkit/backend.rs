//! The two kinds of `BuildKit` the worker drives, behind one face: how a solve exports the image,
//! and what is left to do after it so the image is in the registry.

use super::docker::{self, PushError};
use super::BuildkitAddr;
use crate::core::image_ref::ImageRef;
use crate::edge::registry::{is_plain_http, Credentials};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Docker Engine's embedded `BuildKit`: the `moby` exporter stores the image in the Engine,
    /// which then pushes it.
    DockerEngine { socket: PathBuf },
    /// A standalone buildkitd: its `image` exporter pushes the image itself.
    Buildkitd,
}

impl Backend {
    pub fn for_addr(addr: &BuildkitAddr) -> Self {
        match addr {
            BuildkitAddr::Docker(socket) => Backend::DockerEngine { socket: socket.clone() },
            BuildkitAddr::Unix(_) | BuildkitAddr::Tcp(_) => Backend::Buildkitd,
        }
    }

    /// The exporter and its attributes for an image solve that ends in `target`.
    pub fn exporter(
        &self,
        target: &ImageRef,
        insecure_registries: &[String],
    ) -> (&'static str, BTreeMap<String, String>) {
        let name = ("name".to_string(), target.to_string());
        match self {
            Backend::DockerEngine { .. } => ("moby", BTreeMap::from([name])),
            Backend::Buildkitd => {
                let mut a = BTreeMap::from([name, ("push".to_string(), "true".to_string())]);
                if is_plain_http(&target.registry, insecure_registries) {
                    a.insert("registry.insecure".into(), "true".into());
                }
                ("image", a)
            }
        }
    }

    /// Whether the image still has to be pushed after the solve.
    pub fn pushes_after_solve(&self) -> bool {
        matches!(self, Backend::DockerEngine { .. })
    }

    /// Drops what the export left outside the registry: the Engine's local image under the
    /// target's name (unfinished: the registry's has the final config).
    pub async fn forget_local(&self, target: &ImageRef) -> Result<(), PushError> {
        match self {
            Backend::DockerEngine { socket } => docker::remove(socket, &target.name(), &target.reference()).await,
            Backend::Buildkitd => Ok(()),
        }
    }

    /// Puts the exported image into the registry, where the exporter did not already.
    pub async fn publish(&self, target: &ImageRef, credentials: Option<&Credentials>) -> Result<(), PushError> {
        match self {
            Backend::DockerEngine { socket } => {
                docker::push(socket, &target.name(), &target.reference(), credentials).await
            }
            Backend::Buildkitd => Ok(()),
        }
    }
}
