//! The subset of `BuildKit`'s `moby.buildkit.v1.Control` service (api/services/control) we call,
//! with `BuildKit`'s field numbers, and a small tonic client for it.

use apprunner_core::llb::pb::Definition;
use std::collections::BTreeMap;

#[derive(Clone, PartialEq, prost::Message)]
pub struct SolveRequest {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(message, optional, tag = "2")]
    pub definition: Option<Definition>,
    #[prost(string, tag = "3")]
    pub exporter: String,
    #[prost(btree_map = "string, string", tag = "4")]
    pub exporter_attrs: BTreeMap<String, String>,
    #[prost(string, tag = "5")]
    pub session: String,
    /// With no frontend, what the request asks of the solver (`attest:provenance`).
    #[prost(btree_map = "string, string", tag = "7")]
    pub frontend_attrs: BTreeMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub cache: Option<CacheOptions>,
    #[prost(string, repeated, tag = "9")]
    pub entitlements: Vec<String>,
    /// Not recorded in `BuildKit`'s build history (v0.11+; older ones ignore it). The history
    /// costs the daemon a record, its blobs and their leases per solve, and nobody reads it: each
    /// build's deployment log and events are its record here.
    #[prost(bool, tag = "11")]
    pub internal: bool,
}

/// Where a solve imports cache from and exports it to.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CacheOptions {
    #[prost(message, repeated, tag = "4")]
    pub exports: Vec<CacheOptionsEntry>,
    #[prost(message, repeated, tag = "5")]
    pub imports: Vec<CacheOptionsEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CacheOptionsEntry {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(btree_map = "string, string", tag = "2")]
    pub attrs: BTreeMap<String, String>,
}

/// A chunk of a session's byte stream (`Control.Session`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BytesMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SolveResponse {
    #[prost(btree_map = "string, string", tag = "1")]
    pub exporter_response: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {
    #[prost(string, tag = "1")]
    pub r#ref: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    #[prost(message, repeated, tag = "1")]
    pub vertexes: Vec<Vertex>,
    #[prost(message, repeated, tag = "3")]
    pub logs: Vec<VertexLog>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Vertex {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(bool, tag = "4")]
    pub cached: bool,
    #[prost(message, optional, tag = "5")]
    pub started: Option<prost_types::Timestamp>,
    #[prost(message, optional, tag = "6")]
    pub completed: Option<prost_types::Timestamp>,
    #[prost(string, tag = "7")]
    pub error: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VertexLog {
    #[prost(string, tag = "1")]
    pub vertex: String,
    #[prost(int64, tag = "3")]
    pub stream: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub msg: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoResponse {
    #[prost(message, optional, tag = "1")]
    pub buildkit_version: Option<BuildkitVersion>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BuildkitVersion {
    #[prost(string, tag = "1")]
    pub package: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, tag = "3")]
    pub revision: String,
}

const SERVICE: &str = "/moby.buildkit.v1.Control/";

/// A Control client over any tonic channel.
#[derive(Clone)]
pub struct ControlClient {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl ControlClient {
    pub fn new(channel: tonic::transport::Channel) -> Self {
        // Definitions of big builds, and Status batches of chatty ones, exceed the 4 MiB default.
        let grpc =
            tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20);
        Self { grpc }
    }

    fn path(method: &str) -> tonic::codegen::http::uri::PathAndQuery {
        format!("{SERVICE}{method}").parse().expect("valid gRPC path")
    }

    pub async fn solve(&mut self, req: SolveRequest) -> Result<SolveResponse, tonic::Status> {
        self.grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::default();
        Ok(self.grpc.unary(tonic::Request::new(req), Self::path("Solve"), codec).await?.into_inner())
    }

    pub async fn status(&mut self, r#ref: &str) -> Result<tonic::Streaming<StatusResponse>, tonic::Status> {
        self.grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::default();
        let req = StatusRequest { r#ref: r#ref.to_string() };
        Ok(self.grpc.server_streaming(tonic::Request::new(req), Self::path("Status"), codec).await?.into_inner())
    }

    pub async fn info(&mut self) -> Result<InfoResponse, tonic::Status> {
        self.grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::default();
        Ok(self.grpc.unary(tonic::Request::new(InfoRequest {}), Self::path("Info"), codec).await?.into_inner())
    }

    /// Opens `Control.Session`: `headers` tell `BuildKit` the session's id and methods.
    pub async fn session(
        &mut self,
        outgoing: impl tokio_stream::Stream<Item = BytesMessage> + Send + 'static,
        headers: Vec<(String, String)>,
    ) -> Result<tonic::Streaming<BytesMessage>, tonic::Status> {
        self.grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::default();
        let mut req = tonic::Request::new(outgoing);
        for (name, value) in headers {
            let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes())
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
            let value = value.parse().map_err(|_| tonic::Status::internal(format!("session header {name}")))?;
            req.metadata_mut().append(name, value);
        }
        Ok(self.grpc.streaming(req, Self::path("Session"), codec).await?.into_inner())
    }
}
