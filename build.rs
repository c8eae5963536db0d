use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // A fresh machine has no protoc: use the vendored one unless PROTOC overrides it.
    let protoc = match env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
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
    ];
    tonic_prost_build::configure()
        // Checks every request's strings before decoding (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::Codec")
        .file_descriptor_set_path(out_dir.join("authz_descriptor.bin"))
        .compile_with_config(config, &protos, &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
