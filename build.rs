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
        "proto/authz/v1/identity_providers.proto",
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
    std::fs::create_dir_all(out_dir.join("servers"))?;
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
    // The servers of the standard services authzd answers (Envoy's Check,
    // gRPC health), generated here for one reason: their codec answers a
    // body that does not decode with INVALID_ARGUMENT, not INTERNAL. The
    // messages stay those of envoy-types and tonic-health.
    let mut servers = tonic_prost_build::Config::new();
    servers.protoc_executable(protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path("crate::grpc::codec::Lenient")
        .extern_path(".envoy", "::envoy_types::pb::envoy")
        .extern_path(".google.rpc", "::envoy_types::pb::google::rpc")
        .extern_path(".grpc.health.v1", "::tonic_health::pb")
        .out_dir(out_dir.join("servers"))
        .compile_with_config(
            servers,
            &[
                "proto/envoy/service/auth/v3/external_auth.proto",
                "proto/grpc/health/v1/health.proto",
            ],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rustc-env=AUTHZD_COMMIT={}", commit());
    Ok(())
}

/// The commit being built, for `authzd_build_info` and `authzd --version`:
/// `AUTHZD_COMMIT` when the builder sets it (an image built without `.git`),
/// else git's short hash, else "unknown".
fn commit() -> String {
    println!("cargo:rerun-if-env-changed=AUTHZD_COMMIT");
    if let Ok(commit) = env::var("AUTHZD_COMMIT") {
        return commit;
    }
    // Rebuilt when HEAD moves: HEAD itself, and the branch it names.
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        println!("cargo:rerun-if-changed=.git/HEAD");
        let branch = head
            .trim()
            .strip_prefix("ref: ")
            .map(|b| format!(".git/{b}"));
        // Only files that exist: a missing one would rerun this every build.
        for file in branch
            .iter()
            .map(String::as_str)
            .chain([".git/packed-refs"])
        {
            if std::path::Path::new(file).exists() {
                println!("cargo:rerun-if-changed={file}");
            }
        }
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|hash| hash.trim().to_owned())
        .filter(|hash| !hash.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A fresh machine has no protoc: the vendored one unless PROTOC overrides it.
fn protoc_bin_path() -> Result<PathBuf, Box<dyn std::error::Error>> {
    Ok(match env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    })
}
