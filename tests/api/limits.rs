//! The per-source limit on failed authentications: charged by failures
//! only, per client address (the calling service's `client_address`, else
//! the peer), answered with RESOURCE_EXHAUSTED and a retry delay.

use std::time::Duration;

use authzd::grpc::status::retry_delay;
use authzd::pb;
use authzd::pb::authenticate_request::Credentials;
use tonic::{Code, Status};

use crate::dual;
use crate::support::*;

async fn limited_app(backend: Backend) -> TestApp {
    let app = spawn_app_with(backend, |c| {
        c.rate_limit.failures_per_second = 1;
        c.rate_limit.burst = 5;
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-only"])
        .await;
    app
}

/// Authenticate with an API key on behalf of an end user at `client`.
async fn key_from(app: &TestApp, value: &str, client: &str) -> Result<pb::Principal, Status> {
    app.auth()
        .authenticate(as_service(pb::AuthenticateRequest {
            credentials: Some(Credentials::ApiKey(value.into())),
            client_address: client.into(),
        }))
        .await
        .map(|r| r.into_inner().principal.unwrap_or_default())
}

fn assert_limited(status: &Status) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "too many failed authentications from this source; retry later"
    );
    let delay = retry_delay(status).expect("a RetryInfo detail");
    // The answer was held for up to a second of the delay; the rest is
    // in the detail.
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(5),
        "retry delay {delay:?} at 1 failure per second"
    );
    delay
}

/// Fails `attempt` until the source is refused; returns the failures let
/// through. The limit is 5 at once and one a second: a slow run earns a
/// token back for each second its failures took, and may spend it, but
/// never more.
async fn until_refused<T: std::fmt::Debug>(
    mut attempt: impl AsyncFnMut() -> Result<T, Status>,
) -> u64 {
    let first = std::time::Instant::now();
    let mut failures = 0;
    loop {
        let status = attempt().await.unwrap_err();
        if status.code() == Code::ResourceExhausted {
            assert_limited(&status);
            return failures;
        }
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        failures += 1;
        assert!(
            failures <= 6 + first.elapsed().as_secs(),
            "{failures} failures let through in {:?}",
            first.elapsed()
        );
    }
}

async fn failures_past_the_burst_are_refused_per_client_address(backend: Backend) {
    let app = limited_app(backend).await;
    let key = app.create_key("acme", "alice", "limits", 1).await;
    // Successes never use the bucket up.
    for _ in 0..20 {
        key_from(&app, &key, "198.51.100.7").await.unwrap();
    }
    let wrong = format!("{}x", &key[..key.len() - 1]);
    let failures = until_refused(async || key_from(&app, &wrong, "198.51.100.7").await).await;
    assert!(failures >= 5, "the burst lets 5 through, not {failures}");
    // The source is refused, even with the right key, and the answer is
    // held (about a second here) so a client retrying at once is paced...
    let started = std::time::Instant::now();
    assert_limited(&key_from(&app, &key, "198.51.100.7").await.unwrap_err());
    assert!(started.elapsed() >= Duration::from_millis(900));
    // ...and the same end user through Authorize.
    let status = app
        .auth()
        .authorize(as_service(pb::AuthorizeRequest {
            subject: Some(pb::authorize_request::Subject::ApiKey(key.clone())),
            actions: vec!["listImages".into()],
            client_address: "198.51.100.7".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    let delay = assert_limited(&status);
    // Another end user of the same calling service is not, nor the caller
    // itself (its peer address), nor an address given with a port.
    key_from(&app, &key, "198.51.100.8").await.unwrap();
    key_from(&app, &key, "").await.unwrap();
    key_from(&app, &key, "[2001:db8::1]:443").await.unwrap();
    // After the delay (and a token's worth more: the refusals were
    // debts) the source may try again.
    tokio::time::sleep(delay + Duration::from_millis(1100)).await;
    key_from(&app, &key, "198.51.100.7").await.unwrap();
}

async fn admin_callers_are_limited_by_their_peer_address(backend: Backend) {
    let app = limited_app(backend).await;
    // Unknown users: no lockout, only the source limit stands in the way.
    let mut i = 0;
    let failures = until_refused(async || {
        i += 1;
        app.login(&format!("nobody-{i}"), "guess").await
    })
    .await;
    assert!(failures >= 5, "the burst lets 5 through, not {failures}");
    let before = app.core.hasher().verifications();
    let status = app.login("alice", "alice-password").await.unwrap_err();
    assert_limited(&status);
    assert_eq!(
        app.core.hasher().verifications(),
        before,
        "a refused source costs no hash"
    );
}

async fn client_address_must_be_an_ip_address(backend: Backend) {
    let app = limited_app(backend).await;
    let key = app.create_key("acme", "alice", "limits", 1).await;
    assert_invalid(
        app.auth()
            .authenticate(as_service(pb::AuthenticateRequest {
                credentials: Some(Credentials::ApiKey(key)),
                client_address: "client.example.com".into(),
            }))
            .await,
        "client_address",
    );
}

/// A password login on behalf of an end user at `client`.
async fn password_from(
    app: &TestApp,
    username: &str,
    password: &str,
    client: &str,
) -> Result<pb::Principal, Status> {
    app.auth()
        .authenticate(as_service(pb::AuthenticateRequest {
            credentials: Some(Credentials::Password(pb::PasswordCredentials {
                username: username.into(),
                password: password.into(),
            })),
            client_address: client.into(),
        }))
        .await
        .map(|r| r.into_inner().principal.unwrap_or_default())
}

async fn one_source_cannot_fill_the_hashing_queue(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.server.hash_concurrency = Some(1);
        c.server.hash_queue_per_source = 2;
        c.rate_limit.enabled = false;
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-only"])
        .await;
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..12 {
        let auth = app.auth();
        flood.spawn(async move {
            let mut auth = auth;
            auth.authenticate(as_service(pb::AuthenticateRequest {
                credentials: Some(Credentials::Password(pb::PasswordCredentials {
                    username: format!("nobody-{i}"),
                    password: "guess".into(),
                })),
                client_address: "203.0.113.9".into(),
            }))
            .await
        });
    }
    // The flooding source holds its two places in the queue before the
    // other source asks (else "another source gets a place" is trivial).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.core.hasher().waiting() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the flood never queued"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Another source still gets a place, and its turn.
    password_from(&app, "alice", "alice-password", "203.0.113.10")
        .await
        .unwrap();
    let mut refused = 0;
    while let Some(result) = flood.join_next().await {
        if let Err(status) = result.unwrap() {
            if status.code() == Code::ResourceExhausted {
                assert_eq!(
                    status.message(),
                    "too many password checks waiting; retry later"
                );
                assert!(retry_delay(&status).is_some());
                refused += 1;
            } else {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            }
        }
    }
    assert!(refused >= 1, "the flooding source was never refused");
}

dual!(
    one_source_cannot_fill_the_hashing_queue,
    failures_past_the_burst_are_refused_per_client_address,
    admin_callers_are_limited_by_their_peer_address,
    client_address_must_be_an_ip_address
);
