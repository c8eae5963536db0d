use std::collections::HashMap;

use super::*;

fn invocation(args: &[&str]) -> Invocation {
    cli::parse(
        std::iter::once("authzd").chain(args.iter().copied()),
        &|_| None,
    )
    .unwrap()
}

fn load_with(args: &[&str], env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::load(&invocation(args), &|name| env.get(name).cloned())
}

fn load(args: &[&str]) -> Result<Config, ConfigError> {
    load_with(args, &[]).map(|l| l.config)
}

#[test]
fn every_default_is_valid_and_every_name_is_unique() {
    let loaded = load_with(&[], &[]).unwrap();
    assert!(loaded.sources.iter().all(|(_, s)| *s == Source::Default));
    assert_eq!(loaded.sources.len(), SETTINGS.len());
    let mut names: Vec<String> = SETTINGS
        .iter()
        .flat_map(|d| {
            let mut n = vec![d.key.to_owned(), d.env(), d.flag()];
            n.extend(d.old.iter().map(|o| (*o).to_owned()));
            n.extend(d.old_envs());
            n
        })
        .collect();
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count, "a name is used twice");
    for def in SETTINGS {
        assert!(!def.doc.trim().is_empty(), "{} has no doc line", def.key);
    }
}

#[test]
fn a_public_address_without_caller_keys_is_refused() {
    let err = load(&["--server-listen", "0.0.0.0:50051"]).unwrap_err();
    assert!(err.to_string().contains("server.caller_keys"), "{err}");
    let ok = load(&[
        "--server-listen",
        "0.0.0.0:50051",
        "--server-caller-keys",
        "0123456789abcdef0123",
    ]);
    assert!(ok.is_ok());
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authzd.yaml");
    std::fs::write(
        &path,
        "server:\n  listen: 127.0.0.1:6000\n  purge_interval_seconds: 7\nlog:\n  format: json\nuser_authentication:\n  allow_api_keys_for_saml_users: true\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let loaded = load_with(&["--config", p], &[]).unwrap();
    let config = &loaded.config;
    assert_eq!(config.server.listen.port(), 6000);
    assert_eq!(config.log.format, LogFormat::Json);
    assert!(config.user_authentication.allow_api_keys_for_saml_users);
    assert!(loaded.print().contains("listen: 127.0.0.1:6000  # file"));

    let env = [("AUTHZD_SERVER_LISTEN", "127.0.0.1:7000")];
    let loaded = load_with(&["--config", p], &env).unwrap();
    assert_eq!(loaded.config.server.listen.port(), 7000);
    assert_eq!(loaded.config.server.purge_interval_seconds, 7);
    assert!(
        loaded
            .print()
            .contains("listen: 127.0.0.1:7000  # environment AUTHZD_SERVER_LISTEN")
    );

    let loaded = load_with(&["--config", p, "--server-listen", "127.0.0.1:8000"], &env).unwrap();
    assert_eq!(loaded.config.server.listen.port(), 8000);
    assert!(loaded.print().contains("# flag --server-listen"));
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "listen_addr: 1\n").unwrap();
    let err = load(&["--config", path.to_str().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("listen_addr"), "{err}");
    std::fs::write(&path, "cache:\n  ttl: 1\n").unwrap();
    let err = load(&["--config", path.to_str().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("unknown setting"), "{err}");
    let err = load(&["--database-url", "mysql://x"]).unwrap_err();
    assert!(err.to_string().contains("database.url"), "{err}");
    let err = load(&["--server-caller-keys", "short"]).unwrap_err();
    assert!(err.to_string().contains("server.caller_keys: [0]"), "{err}");
    let err = load_with(&[], &[("AUTHZD_SERVER_HEALTH_CHECK_INTERVAL_MS", "10")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration error: server.health_check_interval_ms: must be at least 50 \
         (from environment AUTHZD_SERVER_HEALTH_CHECK_INTERVAL_MS)"
    );
}

#[test]
fn old_flat_names_still_work_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.yaml");
    std::fs::write(&path, "listen: 127.0.0.1:6001\ndb_max_connections: 3\n").unwrap();
    let loaded = load_with(
        &["--config", path.to_str().unwrap(), "--log-format", "json"],
        &[("AUTHZD_LOG", "debug"), ("AUTHZD_API_KEY_PREFIX", "old")],
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.server.listen.port(), 6001);
    assert_eq!(c.database.max_connections, 3);
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.user_authentication.api_key_prefix, "old");
    assert_eq!(loaded.warnings.len(), 4, "{:?}", loaded.warnings);
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("AUTHZD_LOG ") && w.contains("log.level"))
    );
    // A current name given too wins over the old one.
    let loaded = load_with(
        &[],
        &[("AUTHZD_LOG", "debug"), ("AUTHZD_LOG_LEVEL", "warn")],
    )
    .unwrap();
    assert_eq!(loaded.config.log.level, "warn");
    let loaded = load_with(
        &["--listen", "127.0.0.1:1", "--server-listen", "127.0.0.1:2"],
        &[],
    )
    .unwrap();
    assert_eq!(loaded.config.server.listen.port(), 2);
}

#[test]
fn database_url_comes_from_the_conventional_variable_and_is_masked() {
    let loaded = load_with(&[], &[("DATABASE_URL", "postgres://u:hunter42@db/authzd")]).unwrap();
    assert_eq!(
        loaded.config.database.url.expose(),
        "postgres://u:hunter42@db/authzd"
    );
    let printed = loaded.print();
    assert!(!printed.contains("hunter42"), "{printed}");
    assert!(printed.contains("url: postgres://u:***@db/authzd  # environment DATABASE_URL"));
    let loaded = load_with(
        &[
            "--server-caller-keys",
            "0123456789abcdef0123",
            "--admin-password",
            "s3cret-pass",
        ],
        &[],
    )
    .unwrap();
    let printed = loaded.print();
    assert!(
        !printed.contains("0123456789abcdef0123") && !printed.contains("s3cret-pass"),
        "{printed}"
    );
}

#[test]
fn caller_keys_file_adds_keys_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, "# rotated 2026-11\nfile-key-0123456789abc\n\n").unwrap();
    let c = load(&["--server-caller-keys-file", path.to_str().unwrap()]).unwrap();
    let keys = c.caller_keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].expose(), "file-key-0123456789abc");
    std::fs::write(&path, "short\n").unwrap();
    let err = load(&["--server-caller-keys-file", path.to_str().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("server.caller_keys_file"), "{err}");
}

#[test]
fn sqlite_path_is_read_from_the_url() {
    let mut config = Config::default();
    assert_eq!(config.sqlite_path(), Some(PathBuf::from("authzd.db")));
    config.database.url = DatabaseUrl::new("sqlite:///tmp/x.db?mode=rwc");
    assert_eq!(config.sqlite_path(), Some(PathBuf::from("/tmp/x.db")));
    config.database.url = DatabaseUrl::new("postgres://h/db");
    assert_eq!(config.sqlite_path(), None);
}

#[test]
fn anchores_nested_oauth_settings_are_read_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authzd.yaml");
    std::fs::write(
        &path,
        "user_authentication:\n  oauth:\n    enabled: false\n    default_token_expiration_seconds: 600\n",
    )
    .unwrap();
    let config = load(&["--config", path.to_str().unwrap()]).unwrap();
    assert!(!config.user_authentication.oauth_enabled);
    assert_eq!(
        config
            .user_authentication
            .oauth_default_token_expiration_seconds,
        600
    );
    std::fs::write(
        &path,
        "user_authentication:\n  oauth:\n    enabeld: false\n",
    )
    .unwrap();
    let err = load(&["--config", path.to_str().unwrap()]).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown setting \"user_authentication.oauth_enabeld\""),
        "{err}"
    );
}
