use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_path()?);
    // The codec looks each request's rules up by its full name.
    config.enable_type_names();
    let protos = [
        "proto/authz/v1/common.proto",
        "proto/authz/v1/auth.proto",
        "proto/authz/v1/accounts.proto",
        "proto/authz/v1/users.proto",
        "proto/authz/v1/roles.proto",
        "proto/authz/v1/groups.proto",
        "proto/authz/v1/api_keys.proto",
        "proto/authz/v1/tokens.proto",
        "proto/authz/v1/audit.proto",
    ];
    tonic_prost_build::configure()
        // Checks every request's strings before decoding (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::Codec")
        .file_descriptor_set_path(out_dir.join("authz_descriptor.bin"))
        .compile_with_config(config, &protos, &["proto"])?;
    // Envoy's ext_authz: the Rust types come from envoy-types; this minimal
    // wire-compatible copy only gives reflection a descriptor (the code
    // generated beside it is never included).
    let envoy_out = out_dir.join("envoy-unused");
    std::fs::create_dir_all(&envoy_out)?;
    let mut envoy = tonic_prost_build::Config::new();
    envoy.protoc_executable(protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&envoy_out)
        .file_descriptor_set_path(out_dir.join("envoy_descriptor.bin"))
        .compile_with_config(
            envoy,
            &["proto/envoy/service/auth/v3/external_auth.proto"],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

/// A fresh machine has no protoc: the vendored one unless PROTOC overrides it.
fn protoc_bin_path() -> Result<PathBuf, Box<dyn std::error::Error>> {
    Ok(match env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    })
}
