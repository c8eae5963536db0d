//! The settings declaration against everything that spells settings: the
//! generated reference, the example file, the Kubernetes ConfigMap, the
//! binary's `config print`, and SIGHUP reloads.

use std::path::Path;
use std::process::Stdio;

use authzd::config::{Config, SETTINGS, cli};
use authzd::pb;

use crate::binary::{Server, authzd_command};
use crate::ops::{Pki, tls_channel};
use crate::support::*;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn load_file(path: &Path, env: &[(&str, &str)]) -> authzd::config::Loaded {
    let invocation = cli::parse(["authzd", "--config", path.to_str().unwrap()], &|_| None).unwrap();
    let env: std::collections::HashMap<&str, &str> = env.iter().copied().collect();
    Config::load(&invocation, &|name| env.get(name).map(|v| (*v).to_owned()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn docs_configuration_md_is_the_generated_reference() {
    let docs = std::fs::read_to_string(repo("docs/configuration.md")).unwrap();
    assert!(
        docs == authzd::config::reference(),
        "docs/configuration.md is stale: run `cargo run -- config reference > docs/configuration.md`"
    );
    // And the binary prints exactly that.
    let output = authzd_command()
        .args(["config", "reference"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), docs);
}

#[test]
fn the_example_file_is_valid_and_names_every_setting() {
    let path = repo("deploy/authzd.example.yaml");
    let loaded = load_file(&path, &[]);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let text = std::fs::read_to_string(&path).unwrap();
    for def in SETTINGS {
        let name = def.key.split_once('.').unwrap().1;
        assert!(
            text.lines().any(|l| l
                .trim_start()
                .trim_start_matches("# ")
                .starts_with(&format!("{name}:"))),
            "deploy/authzd.example.yaml does not mention {}",
            def.key
        );
    }
}

#[test]
fn the_kubernetes_configmap_is_valid_against_the_declaration() {
    let manifest: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo("deploy/k8s/configmap.yaml")).unwrap(),
    )
    .unwrap();
    let file = manifest["data"]["authzd.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authzd.yaml");
    std::fs::write(&path, file).unwrap();
    // The Secret supplies the caller keys, as the Deployment does.
    let loaded = load_file(
        &path,
        &[("AUTHZD_SERVER_CALLER_KEYS", "k8s-caller-key-0123456789")],
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.server.listen.port(), 50051);
    // Every env var the Deployment sets is a declared name.
    let deployment = std::fs::read_to_string(repo("deploy/k8s/deployment.yaml")).unwrap();
    for line in deployment.lines() {
        if let Some(name) = line.trim().strip_prefix("- name: AUTHZD_") {
            let name = format!("AUTHZD_{name}");
            assert!(
                name == "AUTHZD_CONFIG"
                    || SETTINGS
                        .iter()
                        .any(|d| d.env() == name || d.env_aliases.contains(&name.as_str())),
                "deploy/k8s/deployment.yaml sets {name}, which is not a setting"
            );
        }
    }
}

#[test]
fn config_print_shows_each_source_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authzd.yaml");
    std::fs::write(
        &file,
        "server:\n  purge_interval_seconds: 30\nlog:\n  level: debug\n",
    )
    .unwrap();
    let output = authzd_command()
        .args(["config", "print", "--config"])
        .arg(&file)
        .args(["--log-level", "warn"])
        .env(
            "DATABASE_URL",
            "postgres://authzd:hunter42-secret@db:5432/authzd",
        )
        .env("AUTHZD_ADMIN_PASSWORD", "admin-secret-pass")
        .env("AUTHZD_SERVER_CALLER_KEYS", "caller-secret-0123456789")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    for secret in [
        "hunter42-secret",
        "admin-secret-pass",
        "caller-secret-0123456789",
    ] {
        assert!(
            !text.contains(secret),
            "config print shows a secret:\n{text}"
        );
    }
    let file = file.display();
    for line in [
        "  listen: 127.0.0.1:50051  # default".to_owned(),
        format!("  purge_interval_seconds: 30  # file {file}"),
        "  level: warn  # flag --log-level".to_owned(),
        "  url: postgres://authzd:***@db:5432/authzd  # environment DATABASE_URL".to_owned(),
        "  password: <redacted>  # environment AUTHZD_ADMIN_PASSWORD".to_owned(),
        "  caller_keys: <redacted: 1>  # environment AUTHZD_SERVER_CALLER_KEYS".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

#[test]
fn deprecated_names_work_and_are_named_in_a_warning() {
    let output = authzd_command()
        .args(["config", "print", "--listen", "127.0.0.1:6123"])
        .env("AUTHZD_LOG", "debug")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("  listen: 127.0.0.1:6123  # flag --listen"),
        "{text}"
    );
    assert!(
        text.contains("  level: debug  # environment AUTHZD_LOG"),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--listen is deprecated") && stderr.contains("server.listen"),
        "{stderr}"
    );
    assert!(
        stderr.contains("AUTHZD_LOG is deprecated") && stderr.contains("log.level"),
        "{stderr}"
    );
}

/// A caller key accepted (true) or refused (false) by Authenticate on `channel`.
async fn caller_key_works(channel: &tonic::transport::Channel, key: &str) -> bool {
    let mut request = tonic::Request::new(pb::AuthenticateRequest {
        credentials: Some(pb::authenticate_request::Credentials::Authorization(basic(
            "admin",
            ADMIN_PASSWORD,
        ))),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    match AuthServiceClient::new(channel.clone())
        .authenticate(request)
        .await
    {
        Ok(_) => true,
        Err(status) if status.code() == tonic::Code::Unauthenticated => false,
        Err(status) => panic!("unexpected {status:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_caller_keys_and_tls_and_keeps_the_old_ones_when_the_new_are_bad() {
    let (old_ca, new_ca) = (Pki::new(), Pki::new());
    let (cert, key) = old_ca.issue("localhost");
    let cert_file = old_ca.write("server.pem", &cert);
    let key_file = old_ca.write("server.key", &key);
    let keys_file = old_ca.write(
        "caller-keys",
        "# the first key\nold-caller-key-0123456789\n",
    );
    let db = TestDatabase::new(Backend::Sqlite).await;
    let server = Server::start_with(&db, |c| {
        c.env_remove("AUTHZD_SERVER_CALLER_KEYS")
            .env("AUTHZD_SERVER_CALLER_KEYS_FILE", &keys_file)
            .env("AUTHZD_TLS_CERT_FILE", &cert_file)
            .env("AUTHZD_TLS_KEY_FILE", &key_file);
    })
    .await;
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let first = tls_channel(addr, &old_ca.ca.pem(), None).await.unwrap();
    assert!(caller_key_works(&first, "old-caller-key-0123456789").await);
    assert!(!caller_key_works(&first, "new-caller-key-0123456789").await);

    // cert-manager renews the certificate under a new CA; the Secret rotates the key.
    let (cert, key) = new_ca.issue("localhost");
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    std::fs::write(&keys_file, "new-caller-key-0123456789\n").unwrap();
    server.signal("HUP");
    server
        .wait_for_logged("reloaded caller keys and TLS material", 1)
        .await;
    let second = tls_channel(addr, &new_ca.ca.pem(), None).await.unwrap();
    assert!(caller_key_works(&second, "new-caller-key-0123456789").await);
    assert!(!caller_key_works(&second, "old-caller-key-0123456789").await);
    // New connections no longer present the old certificate.
    let stale = match tls_channel(addr, &old_ca.ca.pem(), None).await {
        Ok(ch) => caller_key_works(&ch, "new-caller-key-0123456789").await,
        Err(_) => false,
    };
    assert!(!stale, "a new connection still got the old certificate");

    // A broken renewal: the key file is garbage. Nothing changes.
    std::fs::write(&key_file, "not a key").unwrap();
    std::fs::write(&keys_file, "third-caller-key-0123456789\n").unwrap();
    server.signal("HUP");
    server
        .wait_for_logged(
            "reload refused; still serving with the previous caller keys and TLS material",
            1,
        )
        .await;
    let third = tls_channel(addr, &new_ca.ca.pem(), None).await.unwrap();
    assert!(caller_key_works(&third, "new-caller-key-0123456789").await);
    assert!(!caller_key_works(&third, "third-caller-key-0123456789").await);
    server.stop();
}
