//! In-process, warm: what one check costs authzd itself, without the
//! network or gRPC. Targets: `authenticate` (API key) ≤ 5 µs, `authorize`
//! of 3 actions ≤ 10 µs; the ext_authz gate's decision of one request
//! (route, API key, action) costs about one authenticate plus one action.
//!
//!   cargo bench --bench checks
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authzd::config::{Config, DatabaseUrl};
use authzd::domain::authn::credentials::Credential;
use authzd::domain::authn::sources::Source;
use authzd::domain::caller::Caller;
use authzd::domain::secret::Secret;
use authzd::domain::{Clock, Core};
use criterion::{Criterion, criterion_group, criterion_main};

const ACTIONS: [&str; 3] = ["listImages", "getImage", "createImage"];

async fn setup(dir: &std::path::Path) -> (Core, Credential, Credential) {
    let mut config = Config::default();
    config.database.url = DatabaseUrl::new(format!(
        "sqlite://{}?mode=rwc",
        dir.join("bench.db").display()
    ));
    config.admin.password = Some(Secret::new("bench-admin-password"));
    let (core, _) = authzd::prepare(&config, Clock::default()).await.unwrap();
    let admin = core
        .authenticate(
            &Credential::Password {
                username: "admin".into(),
                password: Secret::new("bench-admin-password"),
            },
            Source::LOCAL,
        )
        .await
        .unwrap();
    let (_, value) = core
        .create_api_key(
            &Caller::local(admin),
            "admin",
            "",
            "bench".into(),
            String::new(),
            core.clock().now() + chrono::TimeDelta::days(1),
        )
        .await
        .unwrap();
    let issued = core
        .create_token_with_password("admin", &Secret::new("bench-admin-password"), Source::LOCAL)
        .await
        .unwrap();
    (
        core,
        Credential::ApiKey(value),
        Credential::Token(issued.access_token),
    )
}

fn checks(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (core, key, token) = runtime.block_on(setup(dir.path()));
    // As in the server: without a follower the cache turns stale after
    // `cache.max_staleness_ms` and every check reads through.
    let stop = tokio_util::sync::CancellationToken::new();
    runtime.spawn(authzd::cache::run_follower(
        core.follower().clone(),
        None,
        stop.clone(),
    ));
    let principal = runtime
        .block_on(core.authenticate(&key, Source::LOCAL))
        .unwrap();
    let actions: Vec<String> = ACTIONS.iter().map(|a| (*a).to_owned()).collect();

    c.bench_function("authenticate (API key, warm)", |b| {
        b.to_async(&runtime)
            .iter(|| async { core.authenticate(&key, Source::LOCAL).await.unwrap() })
    });
    runtime
        .block_on(core.authenticate(&token, Source::LOCAL))
        .unwrap();
    c.bench_function("authenticate (access token, warm)", |b| {
        b.to_async(&runtime)
            .iter(|| async { core.authenticate(&token, Source::LOCAL).await.unwrap() })
    });
    c.bench_function("authorize (3 actions, warm)", |b| {
        b.to_async(&runtime)
            .iter(|| async { core.authorize(&principal, None, &actions).await.unwrap() })
    });
    // Envoy's Check without the transport: the route lookup, the API key
    // from memory and the decision of GET /images in the key's account.
    let gate = authzd::server::gate(&core, &Config::default()).unwrap();
    let Credential::ApiKey(secret) = &key else {
        unreachable!()
    };
    let basic = {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("_api_key:{}", secret.expose()));
        format!("Basic {encoded}")
    };
    let request = authzd::domain::gate::HttpRequest {
        method: "GET",
        path: "/v2/images?page=1",
        authorization: Some(&basic),
        account_header: None,
        method_override: None,
        source: Source::LOCAL,
    };
    c.bench_function("gate: GET /images (API key, warm)", |b| {
        b.to_async(&runtime).iter(|| async {
            let verdict = core.gate(&gate, request).await.unwrap();
            assert!(verdict.is_ok());
            verdict
        })
    });
    c.bench_function("authenticate + authorize (API key, 3 actions, warm)", |b| {
        b.to_async(&runtime).iter(|| async {
            let principal = core.authenticate(&key, Source::LOCAL).await.unwrap();
            core.authorize(&principal, None, &actions).await.unwrap()
        })
    });
}

criterion_group!(benches, checks);
criterion_main!(benches);
