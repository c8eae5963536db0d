//! Generated wire types and the descriptor set for reflection.
#![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

tonic::include_proto!("authz.v1");

pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("authz_descriptor");

/// Envoy's ext_authz service, for reflection only (proto/envoy/README.md).
pub const ENVOY_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("envoy_descriptor");
