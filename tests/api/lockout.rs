//! Password lockout: counted before the hash is checked, so parallel
//! guesses cannot race past the threshold; a doubling ladder; refusals that
//! look and take the same as any failure; unlocks.

use authzd::pb;
use chrono::TimeDelta;
use tonic::Code;

use crate::dual;
use crate::support::*;

async fn locked_app(backend: Backend, threshold: u32) -> TestApp {
    let app = spawn_app_with(backend, |c| {
        c.lockout.threshold = threshold;
        c.lockout.initial_delay_ms = 1000;
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "bob", "bob-password", &["read-only"])
        .await;
    app
}

async fn parallel_guesses_never_get_more_than_the_threshold_verified(backend: Backend) {
    let app = locked_app(backend, 5).await;
    let before = app.core.hasher().verifications();
    // Below the threshold nothing is locked: each guess is verified.
    for i in 1..=4 {
        wrong_password(&app, "bob", "a-guess").await;
        assert_eq!(app.core.hasher().verifications() - before, i);
    }
    // The fifth failure may come from any of 20 parallel guesses; only
    // one of them is verified.
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..20 {
        let channel = app.channel.clone();
        guesses.spawn(async move { login_on(&channel, "bob", &format!("guess-{i}")).await });
    }
    while let Some(result) = guesses.join_next().await {
        let status = result.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "invalid credentials");
    }
    let verified = app.core.hasher().verifications() - before;
    assert_eq!(
        verified, 5,
        "{verified} hash verifications for 20 parallel guesses (threshold 5)"
    );
    // Locked: even the right password is refused, the same way, unverified.
    locked_out(&app, "bob", "bob-password").await;
    // After the first delay (1 s), the right password works.
    app.core.clock().advance(TimeDelta::milliseconds(1100));
    app.login("bob", "bob-password").await.unwrap();
}

/// Refused as a wrong password is: the uniform answer.
async fn wrong_password(app: &TestApp, username: &str, password: &str) {
    let status = app.login(username, password).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "invalid credentials");
}

/// Refused the same way, but because of the lock: nothing is verified.
async fn locked_out(app: &TestApp, username: &str, password: &str) {
    let before = app.core.hasher().verifications();
    wrong_password(app, username, password).await;
    assert_eq!(
        app.core.hasher().verifications(),
        before,
        "a locked user's password was verified"
    );
}

async fn locks_double_and_a_success_resets_them(backend: Backend) {
    let app = locked_app(backend, 2).await;
    for _ in 0..2 {
        wrong_password(&app, "bob", "wrong-1").await;
    }
    locked_out(&app, "bob", "bob-password").await;
    app.core.clock().advance(TimeDelta::milliseconds(1100));
    // Two more failures: the second lock lasts 2 s.
    for _ in 0..2 {
        wrong_password(&app, "bob", "wrong-2").await;
    }
    app.core.clock().advance(TimeDelta::milliseconds(1100));
    locked_out(&app, "bob", "bob-password").await;
    app.core.clock().advance(TimeDelta::milliseconds(1000));
    app.login("bob", "bob-password").await.unwrap();
    // The success reset the ladder: the next lock is 1 s again.
    for _ in 0..2 {
        wrong_password(&app, "bob", "wrong-3").await;
    }
    app.core.clock().advance(TimeDelta::milliseconds(1100));
    app.login("bob", "bob-password").await.unwrap();
}

async fn failures_older_than_the_reset_window_are_forgotten(backend: Backend) {
    let app = locked_app(backend, 3).await;
    for _ in 0..2 {
        wrong_password(&app, "bob", "wrong").await;
    }
    app.core.clock().advance(TimeDelta::seconds(901));
    for _ in 0..2 {
        wrong_password(&app, "bob", "wrong").await;
    }
    // Four failures, but never three within the window: not locked.
    app.login("bob", "bob-password").await.unwrap();
}

async fn administrators_unlock_and_api_keys_cannot(backend: Backend) {
    let app = locked_app(backend, 2).await;
    let lock_bob = || async {
        for _ in 0..2 {
            wrong_password(&app, "bob", "wrong").await;
        }
        locked_out(&app, "bob", "bob-password").await;
    };
    lock_bob().await;
    let get_bob = || async {
        app.users()
            .get_user(as_admin(pb::GetUserRequest {
                account: "acme".into(),
                username: "bob".into(),
            }))
            .await
            .unwrap()
            .into_inner()
    };
    // Those who may manage bob see the lock.
    let lock = get_bob().await.lock.expect("a lock state");
    assert!(lock.locked_until.is_some(), "{lock:?}");
    assert!(!lock.permanent);
    let unlock = pb::UnlockUserRequest {
        account: "acme".into(),
        username: "bob".into(),
    };
    // Never on an API key's authority (updateUser is restricted).
    let key = app.create_key("admin", "admin", "ops", 1).await;
    let status = app
        .users()
        .unlock_user(as_key(&key, unlock.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Nor by bob's peers without updateUser.
    app.create_user("acme", "carol", "carol-password", &["read-only"])
        .await;
    let status = app
        .users()
        .unlock_user(as_user("carol", "carol-password", unlock.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let cleared = app
        .users()
        .unlock_user(as_admin(unlock.clone()))
        .await
        .unwrap()
        .into_inner()
        .cleared;
    assert!(cleared);
    assert_eq!(get_bob().await.lock, None);
    app.login("bob", "bob-password").await.unwrap();
    // A password set by an administrator unlocks too.
    lock_bob().await;
    app.users()
        .set_password(as_admin(pb::SetPasswordRequest {
            account: "acme".into(),
            username: "bob".into(),
            password: "bob-new-password".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    app.login("bob", "bob-new-password").await.unwrap();
}

/// A password check as a calling service makes it for an end user at `address`.
async fn login_from(
    app: &TestApp,
    username: &str,
    password: &str,
    address: &str,
) -> Result<pb::Principal, tonic::Status> {
    app.auth()
        .authenticate(as_service(pb::AuthenticateRequest {
            credentials: Some(pb::authenticate_request::Credentials::Password(
                pb::PasswordCredentials {
                    username: username.into(),
                    password: password.into(),
                },
            )),
            client_address: address.into(),
        }))
        .await
        .map(|r| r.into_inner().principal.unwrap())
}

fn refused(result: Result<pb::Principal, tonic::Status>) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "invalid credentials");
}

/// Nobody can keep a user locked out of where they sign in: through the
/// whole ladder (1 s doubling to 15 min), an attacker guessing from one
/// source, and others from many sources, never stop the user signing in
/// from the address they used before. Every other source shares one ladder,
/// so guessing from them stays locked and unverified; a known source is
/// forgotten after `lockout.remember_sources_days`.
async fn guessers_cannot_lock_a_user_out_of_a_known_source(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.lockout.threshold = 5;
        c.lockout.initial_delay_ms = 1000;
        c.lockout.max_delay_seconds = 900;
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "bob", "bob-password", &["read-only"])
        .await;
    let home = "198.51.100.10";
    login_from(&app, "bob", "bob-password", home).await.unwrap();

    let mut delay_ms: i64 = 1000;
    let mut rounds = 0;
    while delay_ms <= 900_000 {
        rounds += 1;
        // One source guesses until the shared ladder locks: 5 verified.
        let before = app.core.hasher().verifications();
        for i in 0..7 {
            refused(login_from(&app, "bob", &format!("guess-{i}"), "203.0.113.66").await);
        }
        assert_eq!(
            app.core.hasher().verifications() - before,
            5,
            "round {rounds}"
        );
        // Many sources, one guess each: locked out, nothing verified.
        let before = app.core.hasher().verifications();
        for i in 0..10 {
            refused(login_from(&app, "bob", "guess", &format!("192.0.2.{i}")).await);
        }
        assert_eq!(app.core.hasher().verifications(), before, "round {rounds}");
        // Even the right password from a new source waits out the lock…
        refused(login_from(&app, "bob", "bob-password", "192.0.2.200").await);
        // …but bob, from where he signed in before, is in.
        let principal = login_from(&app, "bob", "bob-password", home).await.unwrap();
        assert_eq!(principal.username, "bob");
        app.core
            .clock()
            .advance(TimeDelta::milliseconds(delay_ms + 100));
        delay_ms *= 2;
    }
    assert_eq!(rounds, 10, "the ladder from 1 s to 15 min");
    // The lock stays at its longest (15 min) from here on: still no effect
    // on bob at home.
    for i in 0..5 {
        refused(login_from(&app, "bob", &format!("again-{i}"), "203.0.113.66").await);
    }
    login_from(&app, "bob", "bob-password", home).await.unwrap();

    // Thirty days without signing in from home: home is a stranger again,
    // and shares the (now locked) ladder of strangers.
    app.core.clock().advance(TimeDelta::days(31));
    for i in 0..5 {
        refused(login_from(&app, "bob", &format!("late-{i}"), "203.0.113.66").await);
    }
    let before = app.core.hasher().verifications();
    refused(login_from(&app, "bob", "bob-password", home).await);
    assert_eq!(app.core.hasher().verifications(), before);
}

dual!(
    guessers_cannot_lock_a_user_out_of_a_known_source,
    parallel_guesses_never_get_more_than_the_threshold_verified,
    locks_double_and_a_success_resets_them,
    failures_older_than_the_reset_window_are_forgotten,
    administrators_unlock_and_api_keys_cannot,
);
