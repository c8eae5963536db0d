//! Generated wire types and the descriptor set for reflection.
#![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

tonic::include_proto!("authz.v1");

pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("authz_descriptor");

/// Envoy's ext_authz service, for reflection only (proto/envoy/README.md).
pub const ENVOY_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("envoy_descriptor");

/// The servers of the standard services authzd answers, generated with the
/// lenient codec (src/grpc/codec.rs) over the messages of envoy-types and
/// tonic-health.
pub mod servers {
    pub mod envoy {
        #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
        include!(concat!(
            env!("OUT_DIR"),
            "/servers/envoy.service.auth.v3.rs"
        ));
    }
    pub mod health {
        #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
        include!(concat!(env!("OUT_DIR"), "/servers/grpc.health.v1.rs"));
    }
}
