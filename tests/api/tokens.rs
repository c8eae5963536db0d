//! Bearer tokens: the password and refresh grants, tokens accepted wherever
//! a credential is, revocation reaching the next check, tampering refused,
//! offline verification with the published keys; and API key rotation.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use authzd::pb;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use tonic::Code;

use crate::dual;
use crate::support::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokens")
        .join(name)
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    match result {
        Err(s) => {
            assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
            assert_eq!(s.message(), "invalid credentials");
        }
        Ok(r) => panic!("expected UNAUTHENTICATED, got {r:?}"),
    }
}

async fn tenant(backend: Backend) -> TestApp {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "bob", "bob-password", &["read-only"])
        .await;
    app
}

async fn list_accounts_with(app: &TestApp, access: &str) -> Result<usize, tonic::Status> {
    app.accounts()
        .list_accounts(as_bearer(access, pb::ListAccountsRequest::default()))
        .await
        .map(|r| r.into_inner().accounts.len())
}

async fn a_token_works_on_admin_rpcs_and_in_both_checks(backend: Backend) {
    let app = tenant(backend).await;
    let admin = app.grant("admin", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(admin.token_type, "Bearer");
    assert_eq!(admin.expires_in, 3600);
    assert_eq!(admin.refresh_expires_in, 86_400);
    assert!(admin.refresh_token.starts_with("azr_"));
    assert!(list_accounts_with(&app, &admin.access_token).await.unwrap() >= 2);

    let bob = app.grant("bob", "bob-password").await.unwrap();
    let principal = app.token_login(&bob.access_token).await.unwrap();
    assert_eq!(principal.username, "bob");
    assert_eq!(principal.credential_kind(), pb::CredentialKind::Token);
    assert!(!principal.token_id.is_empty());
    assert!(principal.api_key.is_none());
    // The Authorization header form, in Authorize: grants are read now, and
    // a token carries no API-key restriction.
    let decided = app
        .auth()
        .authorize(as_service(pb::AuthorizeRequest {
            subject: Some(pb::authorize_request::Subject::Authorization(format!(
                "Bearer {}",
                bob.access_token
            ))),
            actions: vec!["listImages".into(), "createImage".into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decided.account, "acme");
    assert!(decided.decisions[0].allowed);
    assert!(!decided.decisions[1].allowed);
    // A role given now is seen by the same token at once.
    app.roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: "read-write".into(),
            username: "bob".into(),
            account: "acme".into(),
        }))
        .await
        .unwrap();
    let decided = app
        .auth()
        .authorize(as_service(pb::AuthorizeRequest {
            subject: Some(pb::authorize_request::Subject::Token(
                bob.access_token.clone(),
            )),
            actions: vec!["createImage".into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(decided.allowed);
    // Bob's token on an admin RPC is Bob, not an administrator.
    assert_code(
        app.accounts()
            .list_accounts(as_bearer(
                &bob.access_token,
                pb::ListAccountsRequest::default(),
            ))
            .await,
        Code::PermissionDenied,
    );
}

async fn every_failed_grant_looks_the_same(backend: Backend) {
    let app = tenant(backend).await;
    app.create_user("acme", "carol", "carol-password", &[])
        .await;
    app.create_user("acme", "dave", "dave-password", &[]).await;
    app.users()
        .create_user(as_admin(pb::CreateUserRequest {
            account: "acme".into(),
            username: "sam".into(),
            r#type: pb::UserType::Saml.into(),
            idp_name: "okta".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    app.users()
        .set_user_state(as_admin(pb::SetUserStateRequest {
            account: "acme".into(),
            username: "carol".into(),
            state: pb::UserState::Disabled.into(),
        }))
        .await
        .unwrap();
    app.create_account("shut").await;
    app.create_user("shut", "erin", "erin-password", &[]).await;
    app.set_account_state("shut", pb::AccountState::Disabled)
        .await;
    assert_refused(app.grant("bob", "wrong-password").await);
    assert_refused(app.grant("nobody", "whatever-password").await);
    assert_refused(app.grant("carol", "carol-password").await);
    assert_refused(app.grant("erin", "erin-password").await);
    assert_refused(app.grant("sam", "").await);
    assert_refused(app.grant("sam", "any-password").await);
    assert_refused(app.refresh("azr_not-a-token").await);
    assert_refused(
        app.tokens()
            .create_token(pb::CreateTokenRequest::default())
            .await,
    );
    app.grant("dave", "dave-password").await.unwrap();
}

/// Only a calling service (with its caller key) may name the end user's
/// address: anyone else could escape the per-source limit by naming a new
/// one on every guess.
async fn only_a_calling_service_names_the_end_users_address(backend: Backend) {
    let app = tenant(backend).await;
    let grant = || pb::CreateTokenRequest {
        grant: Some(pb::create_token_request::Grant::Password(
            pb::PasswordCredentials {
                username: "bob".into(),
                password: "bob-password".into(),
            },
        )),
        client_address: "198.51.100.7".into(),
    };
    let status = app.tokens().create_token(grant()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "client_address: only a calling service presenting its caller key may name an end user's address"
    );
    let issued = app
        .tokens()
        .create_token(as_service(grant()))
        .await
        .unwrap()
        .into_inner();
    app.token_login(&issued.access_token).await.unwrap();
    // With a caller key, a user credential cannot ride along: the header
    // is the caller key.
    assert_refused(
        app.tokens()
            .revoke_user_tokens(as_service(pb::RevokeUserTokensRequest::default()))
            .await,
    );
}

async fn an_expired_access_token_is_refused(backend: Backend) {
    let app = tenant(backend).await;
    let bob = app.grant("bob", "bob-password").await.unwrap();
    app.token_login(&bob.access_token).await.unwrap();
    app.core.clock().advance(TimeDelta::seconds(3599));
    app.token_login(&bob.access_token).await.unwrap();
    app.core.clock().advance(TimeDelta::seconds(2));
    assert_refused(app.token_login(&bob.access_token).await);
    assert_refused(list_accounts_with(&app, &bob.access_token).await);
    // The refresh token outlives it.
    let next = app.refresh(&bob.refresh_token).await.unwrap();
    app.token_login(&next.access_token).await.unwrap();
    app.core.clock().advance(TimeDelta::seconds(86_401));
    assert_refused(app.refresh(&next.refresh_token).await);
    // The purge removes the two refresh tokens and their family, and what
    // is gone stays refused.
    assert_eq!(app.core.purge_tokens().await.unwrap(), 3);
    assert_eq!(app.core.purge_tokens().await.unwrap(), 0);
    assert_refused(app.refresh(&next.refresh_token).await);
    assert_refused(app.token_login(&next.access_token).await);
}

async fn refresh_rotates_and_a_reused_refresh_token_kills_the_family(backend: Backend) {
    let app = tenant(backend).await;
    let first = app.grant("bob", "bob-password").await.unwrap();
    let second = app.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    let third = app.refresh(&second.refresh_token).await.unwrap();
    app.token_login(&third.access_token).await.unwrap();
    // An unrelated family of the same user is untouched by what follows.
    let other = app.grant("bob", "bob-password").await.unwrap();
    // The first refresh token again: someone holds a copy.
    assert_refused(app.refresh(&first.refresh_token).await);
    assert_refused(app.token_login(&third.access_token).await);
    assert_refused(app.token_login(&first.access_token).await);
    assert_refused(app.refresh(&third.refresh_token).await);
    app.token_login(&other.access_token).await.unwrap();
    app.refresh(&other.refresh_token).await.unwrap();
}

async fn revocations_take_effect_on_the_next_check(backend: Backend) {
    let app = tenant(backend).await;
    let tokens = app.tokens();
    let revoke = |token: String| {
        let mut tokens = tokens.clone();
        async move {
            tokens
                .revoke_token(pb::RevokeTokenRequest { token })
                .await
                .map(|r| r.into_inner().revoked)
        }
    };
    // One access token: only that one.
    let pair = app.grant("bob", "bob-password").await.unwrap();
    let sibling = app.refresh(&pair.refresh_token).await.unwrap();
    app.token_login(&pair.access_token).await.unwrap();
    assert!(revoke(pair.access_token.clone()).await.unwrap());
    assert_refused(app.token_login(&pair.access_token).await);
    assert!(!revoke(pair.access_token.clone()).await.unwrap());
    app.token_login(&sibling.access_token).await.unwrap();
    // A refresh token: its whole family.
    assert!(revoke(sibling.refresh_token.clone()).await.unwrap());
    assert_refused(app.token_login(&sibling.access_token).await);
    // Nothing left to revoke in a revoked family.
    assert!(!revoke(sibling.access_token.clone()).await.unwrap());
    assert_refused(app.refresh(&sibling.refresh_token).await);
    let status = tokens
        .clone()
        .revoke_token(pb::RevokeTokenRequest {
            token: "not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "token: is neither a refresh token nor an access token issued by this service"
    );
    // Every token of a user, by an administrator.
    let one = app.grant("bob", "bob-password").await.unwrap();
    let two = app.grant("bob", "bob-password").await.unwrap();
    let revoked = tokens
        .clone()
        .revoke_user_tokens(as_admin(pb::RevokeUserTokensRequest {
            account: "acme".into(),
            username: "bob".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.families_revoked, 2);
    assert_refused(app.token_login(&one.access_token).await);
    assert_refused(app.token_login(&two.access_token).await);
    assert_refused(app.refresh(&two.refresh_token).await);
    // One's own, on a token's authority.
    let mine = app.grant("bob", "bob-password").await.unwrap();
    let revoked = tokens
        .clone()
        .revoke_user_tokens(as_bearer(
            &mine.access_token,
            pb::RevokeUserTokensRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.families_revoked, 1);
    assert_refused(app.token_login(&mine.access_token).await);
    // The purge removes revoked families with everything in them at once:
    // the four families above, their five refresh tokens and the one
    // revocation record. What was in them stays refused.
    assert_eq!(app.core.purge_tokens().await.unwrap(), 10);
    assert_eq!(app.core.purge_tokens().await.unwrap(), 0);
    assert_refused(app.token_login(&mine.access_token).await);
    assert_refused(app.refresh(&two.refresh_token).await);
    assert_refused(app.token_login(&pair.access_token).await);
    // Someone else's needs updateUser there; API keys never may.
    app.create_user("acme", "carol", "carol-password", &["read-only"])
        .await;
    assert_code(
        tokens
            .clone()
            .revoke_user_tokens(as_user(
                "carol",
                "carol-password",
                pb::RevokeUserTokensRequest {
                    account: "acme".into(),
                    username: "bob".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    let key = app.create_key("admin", "admin", "robot", 30).await;
    assert_code(
        tokens
            .clone()
            .revoke_user_tokens(as_key(
                &key,
                pb::RevokeUserTokensRequest {
                    account: "acme".into(),
                    username: "bob".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_refused(
        tokens
            .clone()
            .revoke_user_tokens(pb::RevokeUserTokensRequest::default())
            .await,
    );
}

async fn password_changes_disabling_and_deleting_end_outstanding_tokens(backend: Backend) {
    let app = tenant(backend).await;
    let users = app.users();
    // Changing one's own password takes the current one, even on a token.
    let bob = app.grant("bob", "bob-password").await.unwrap();
    let change = |current: &str| pb::SetPasswordRequest {
        account: "acme".into(),
        username: "bob".into(),
        password: "bob-password-2".into(),
        current_password: current.into(),
    };
    let missing = users
        .clone()
        .set_password(as_bearer(&bob.access_token, change("")))
        .await
        .unwrap_err();
    assert_eq!(
        missing.message(),
        "current_password: is required to change your own password"
    );
    assert_refused(
        users
            .clone()
            .set_password(as_bearer(&bob.access_token, change("guessed-wrong")))
            .await,
    );
    app.token_login(&bob.access_token).await.unwrap();
    users
        .clone()
        .set_password(as_bearer(&bob.access_token, change("bob-password")))
        .await
        .unwrap();
    assert_refused(app.token_login(&bob.access_token).await);
    assert_refused(app.refresh(&bob.refresh_token).await);

    // Disabled: refused, and re-enabling does not revive them.
    let bob = app.grant("bob", "bob-password-2").await.unwrap();
    let state = |s: pb::UserState| pb::SetUserStateRequest {
        account: "acme".into(),
        username: "bob".into(),
        state: s.into(),
    };
    users
        .clone()
        .set_user_state(as_admin(state(pb::UserState::Disabled)))
        .await
        .unwrap();
    assert_refused(app.token_login(&bob.access_token).await);
    users
        .clone()
        .set_user_state(as_admin(state(pb::UserState::Enabled)))
        .await
        .unwrap();
    assert_refused(app.token_login(&bob.access_token).await);
    assert_refused(app.refresh(&bob.refresh_token).await);

    // Deleted and re-created under the same name: a new user, nothing inherited.
    let bob = app.grant("bob", "bob-password-2").await.unwrap();
    users
        .clone()
        .delete_user(as_admin(pb::DeleteUserRequest {
            account: "acme".into(),
            username: "bob".into(),
        }))
        .await
        .unwrap();
    app.create_user("acme", "bob", "bob-password-2", &["read-only"])
        .await;
    assert_refused(app.token_login(&bob.access_token).await);
    assert_refused(app.refresh(&bob.refresh_token).await);
    let fresh = app.grant("bob", "bob-password-2").await.unwrap();
    app.token_login(&fresh.access_token).await.unwrap();
}

async fn grants_count_toward_lockout(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.lockout.threshold = 3;
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "bob", "bob-password", &[]).await;
    for _ in 0..3 {
        assert_refused(app.grant("bob", "wrong-password").await);
    }
    // Locked: the right password is refused too.
    assert_refused(app.grant("bob", "bob-password").await);
}

/// A JWT's three parts, the first two decoded.
fn parts(token: &str) -> (serde_json::Value, serde_json::Value, String) {
    let mut it = token.split('.');
    let mut json = || -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap()
    };
    let header = json();
    let claims = json();
    (header, claims, it.next().unwrap().to_owned())
}

fn encode(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

async fn tampered_tokens_are_refused(backend: Backend) {
    let app = tenant(backend).await;
    let bob = app.grant("bob", "bob-password").await.unwrap();
    let (header, claims, signature) = parts(&bob.access_token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["username"], "bob");
    assert_eq!(claims["account"], "acme");
    assert_eq!(claims["iss"], "authzd");
    assert!(claims.get("roles").is_none());
    for claim in ["sub", "exp", "iat", "jti", "fam"] {
        assert!(claims.get(claim).is_some(), "{claim} missing: {claims}");
    }
    app.token_login(&bob.access_token).await.unwrap();

    // Claims changed under the same signature: bob becomes admin.
    let mut forged = claims.clone();
    forged["username"] = "admin".into();
    forged["account"] = "admin".into();
    let swapped = format!("{}.{}.{signature}", encode(&header), encode(&forged));
    assert_refused(app.token_login(&swapped).await);
    // A flipped signature bit.
    let mut sig = URL_SAFE_NO_PAD.decode(&signature).unwrap();
    sig[0] ^= 1;
    let flipped = format!(
        "{}.{}.{}",
        encode(&header),
        encode(&claims),
        URL_SAFE_NO_PAD.encode(&sig)
    );
    assert_refused(app.token_login(&flipped).await);
    // An unknown key id.
    let mut other_kid = header.clone();
    other_kid["kid"] = "not-a-key-we-have".into();
    let unknown = format!("{}.{}.{signature}", encode(&other_kid), encode(&claims));
    assert_refused(app.token_login(&unknown).await);
    // `alg: none`, with and without a signature.
    let mut none = header.clone();
    none["alg"] = "none".into();
    for tail in ["", signature.as_str()] {
        let unsigned = format!("{}.{}.{tail}", encode(&none), encode(&forged));
        assert_refused(app.token_login(&unsigned).await);
    }
    // HS256 keyed with the published public key (algorithm confusion).
    let keys = app
        .tokens()
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    let public = &keys.keys[0];
    for secret in [
        URL_SAFE_NO_PAD.decode(&public.x).unwrap(),
        public.x.as_bytes().to_vec(),
        keys.jwks.as_bytes().to_vec(),
    ] {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(public.kid.clone());
        let confused = jsonwebtoken::encode(
            &h,
            &forged,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_refused(app.token_login(&confused).await);
        assert_refused(list_accounts_with(&app, &confused).await);
    }
    // Garbage in the Bearer header of an admin RPC.
    assert_refused(list_accounts_with(&app, "not.a.jwt").await);
    // The genuine token still works after all that.
    app.token_login(&bob.access_token).await.unwrap();
}

dual!(
    with_tokens_off_there_are_no_grants_and_no_tokens_accepted,
    the_generated_key_is_sealed_under_the_key_encryption_key,
    configured_keys_sign_rs256_and_rotate_without_logging_anyone_out,
    a_token_works_on_admin_rpcs_and_in_both_checks,
    every_failed_grant_looks_the_same,
    only_a_calling_service_names_the_end_users_address,
    an_expired_access_token_is_refused,
    refresh_rotates_and_a_reused_refresh_token_kills_the_family,
    revocations_take_effect_on_the_next_check,
    password_changes_disabling_and_deleting_end_outstanding_tokens,
    grants_count_toward_lockout,
    tampered_tokens_are_refused,
    a_rotated_key_has_two_secrets_during_the_grace_and_one_after,
);

/// Verifies `token` the way a sibling service would: a JWT library and the
/// published JWK set, none of authzd's code.
fn verify_offline(jwks: &str, token: &str) -> serde_json::Value {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(jwks).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&["authzd"]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_verify_offline_with_the_published_keys_over_grpc_and_http() {
    let app = tenant(Backend::Sqlite).await;
    let bob = app.grant("bob", "bob-password").await.unwrap();
    let keys = app
        .tokens()
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].alg, "EdDSA");
    assert_eq!(keys.keys[0].kty, "OKP");
    assert_eq!(keys.keys[0].crv, "Ed25519");
    assert!(keys.keys[0].signing);
    let claims = verify_offline(&keys.jwks, &bob.access_token);
    assert_eq!(claims["username"], "bob");
    let principal = app.token_login(&bob.access_token).await.unwrap();
    assert_eq!(claims["sub"], principal.user_id.as_str());
    assert_eq!(claims["jti"], principal.token_id.as_str());

    // The same document over plain HTTP, where JWT libraries look for it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(authzd::telemetry::serve_metrics(
        listener,
        test_config(&app.db.url).connection_limits(1024).metrics,
        app.core.tokens().keys().jwks().to_owned(),
        async move {
            let _ = stopped.await;
        },
    ));
    let body = http_get(addr, "/.well-known/jwks.json").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("application/jwk-set+json"), "{body}");
    let document = body.split("\r\n\r\n").nth(1).unwrap();
    verify_offline(document, &bob.access_token);
    let _ = stop.send(());
    let _ = server.await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

/// Configured keys: RS256 for callers without EdDSA, and a rotation that
/// keeps tokens signed by the previous key valid.
async fn configured_keys_sign_rs256_and_rotate_without_logging_anyone_out(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.keys.private_key_path = Some(fixture("ed25519-a.pem"));
        c.keys.public_key_path = Some(fixture("ed25519-a.pub.pem"));
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "bob", "bob-password", &[]).await;
    let old = app.grant("bob", "bob-password").await.unwrap();
    let old_keys = app
        .tokens()
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    // Rotate to an RSA key; A still verifies.
    let app = app
        .restart_with(|c| {
            c.keys.algorithm = "RS256".into();
            c.keys.private_key_path = Some(fixture("rsa.pem"));
            c.keys.previous_public_key_paths = vec![fixture("ed25519-a.pub.pem")];
        })
        .await;
    let new = app.grant("bob", "bob-password").await.unwrap();
    let (header, _, _) = parts(&new.access_token);
    assert_eq!(header["alg"], "RS256");
    app.token_login(&old.access_token).await.unwrap();
    app.token_login(&new.access_token).await.unwrap();
    let keys = app
        .tokens()
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.keys.len(), 2);
    assert!(keys.keys[0].signing && keys.keys[0].kty == "RSA");
    assert!(!keys.keys[1].signing);
    assert_eq!(keys.keys[1].kid, old_keys.keys[0].kid);
    verify_offline(&keys.jwks, &new.access_token);
    verify_offline(&keys.jwks, &old.access_token);
    // Once A is dropped from the list, its tokens stop verifying.
    let app = app
        .restart_with(|c| {
            c.keys.algorithm = "RS256".into();
            c.keys.private_key_path = Some(fixture("rsa.pem"));
        })
        .await;
    assert_refused(app.token_login(&old.access_token).await);
    app.token_login(&new.access_token).await.unwrap();
}

#[test]
fn key_settings_that_cannot_work_are_refused_before_start() {
    let mut config = test_config("sqlite::memory:");
    config.keys.algorithm = "RS256".into();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("keys.algorithm"), "{err}");
    // Anchore's HS256 `keys.secret` is refused by name, with the reason.
    let invocation = authzd::config::cli::parse(["authzd"], &|_| None).unwrap();
    let loaded = authzd::config::Config::load(&invocation, &|name| {
        (name == "AUTHZD_KEYS_SECRET").then(|| "a-shared-secret".to_owned())
    });
    let err = loaded.unwrap_err().to_string();
    assert!(
        err.contains("HS256 shared secrets are not supported"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_or_wrong_kind_of_key_stops_the_start() {
    for adjust in [
        (|c: &mut authzd::config::Config| {
            c.keys.private_key_path = Some(fixture("ed25519-a.pem"));
            c.keys.public_key_path = Some(fixture("ed25519-b.pub.pem"));
        }) as fn(&mut authzd::config::Config),
        |c| {
            c.keys.algorithm = "RS256".into();
            c.keys.private_key_path = Some(fixture("ed25519-a.pem"));
        },
        |c| c.keys.private_key_path = Some(fixture("rsa.pem")),
    ] {
        let db = TestDatabase::new(Backend::Sqlite).await;
        let mut config = test_config(&db.url);
        adjust(&mut config);
        let err = authzd::prepare(&config, authzd::domain::Clock::default())
            .await
            .err()
            .expect("start-up must fail")
            .to_string();
        assert!(err.contains("keys."), "{err}");
    }
}

/// The generated key is encrypted under the key-encryption key, which is
/// then needed to start; without one it is stored in clear.
async fn the_generated_key_is_sealed_under_the_key_encryption_key(backend: Backend) {
    const KEK: &str = "kek-for-tests-0123456789abcdef-0123";
    let app = spawn_app_with(backend, |c| {
        c.keys.encryption_key = Some(authzd::domain::secret::Secret::new(KEK));
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "bob", "bob-password", &[]).await;
    let bob = app.grant("bob", "bob-password").await.unwrap();
    let mut app = app;
    app.stop().await;
    let url = app.db.url.clone();
    let conn = sea_orm::Database::connect(&url).await.unwrap();
    use sea_orm::ConnectionTrait;
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT private_key, encrypted FROM token_signing_keys",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(row.try_get::<bool>("", "encrypted").unwrap());
    let stored: Vec<u8> = row.try_get("", "private_key").unwrap();
    // A PKCS#8 Ed25519 key starts 30 2e 02 01 00 30 05 06 03 2b 65 70.
    assert!(!stored.windows(3).any(|w| w == [0x2b, 0x65, 0x70]));
    drop(conn);
    let mut config = test_config(&url);
    let err = authzd::prepare(&config, authzd::domain::Clock::default())
        .await
        .err()
        .expect("the sealed key cannot be used without its key")
        .to_string();
    assert!(err.contains("keys.encryption_key"), "{err}");
    config.keys.encryption_key = Some(authzd::domain::secret::Secret::new(
        "another-kek-0123456789abcdef-01234",
    ));
    let err = authzd::prepare(&config, authzd::domain::Clock::default())
        .await
        .err()
        .expect("a wrong key does not open it")
        .to_string();
    assert!(err.contains("does not decrypt"), "{err}");
    let app = app
        .restart_with(|c| {
            c.keys.encryption_key = Some(authzd::domain::secret::Secret::new(KEK));
        })
        .await;
    app.token_login(&bob.access_token).await.unwrap();
}

/// Two replicas on one Postgres share the generated key, and a revocation
/// on one reaches checks on the other within the cache's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_share_the_key_and_each_others_revocations() {
    let a = tenant(Backend::Postgres).await;
    // B's staleness bound far above the follower's: only following the
    // change records (LISTEN, or the 1 s poll) can show B the revoke in time.
    let b = spawn_on(TestDatabase::external(&a.db.url), |c| {
        c.cache.max_staleness_ms = 60_000;
        c.cache.poll_interval_ms = 1000;
    })
    .await;
    let on_a = a.grant("bob", "bob-password").await.unwrap();
    let on_b = b.grant("bob", "bob-password").await.unwrap();
    b.token_login(&on_a.access_token).await.unwrap();
    a.token_login(&on_b.access_token).await.unwrap();
    // A refresh on B of A's token, then a revoke on A of B's family.
    let refreshed = b.refresh(&on_a.refresh_token).await.unwrap();
    a.token_login(&refreshed.access_token).await.unwrap();
    // B holds the family's state in memory now: the revoke must evict it.
    b.token_login(&on_b.access_token).await.unwrap();
    let family = parts(&on_b.access_token).1["fam"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        matches!(b.core.cache().family(&family), Some(Some(_))),
        "B did not cache the family"
    );
    a.tokens()
        .revoke_token(pb::RevokeTokenRequest {
            token: on_b.refresh_token.clone(),
        })
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        match b.token_login(&on_b.access_token).await {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                break;
            }
        }
        // LISTEN within a second; the poll within its interval + 1 s.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "B still accepts a token revoked on A"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.token_login(&refreshed.access_token).await.unwrap();
}

async fn a_rotated_key_has_two_secrets_during_the_grace_and_one_after(backend: Backend) {
    let app = tenant(backend).await;
    let old = app.create_key("acme", "bob", "ci", 30).await;
    let rotate = |grace: Option<i64>, name: &str| {
        let mut keys = app.keys();
        let name = name.to_owned();
        async move {
            keys.rotate_api_key(as_admin(pb::RotateApiKeyRequest {
                account: "acme".into(),
                username: "bob".into(),
                name,
                grace_seconds: grace,
            }))
            .await
        }
    };
    let before = app
        .keys()
        .get_api_key(as_admin(pb::GetApiKeyRequest {
            account: "acme".into(),
            username: "bob".into(),
            name: "ci".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let rotated = rotate(None, "ci").await.unwrap().into_inner();
    let key = rotated.key.unwrap();
    let new = rotated.value;
    assert_ne!(new, old);
    assert_eq!(key.id, before.id);
    assert_eq!(key.name, "ci");
    assert_eq!(
        key.expires_at, before.expires_at,
        "rotation never extends a key"
    );
    assert!(new.contains(&format!("_{}_", key.id)));
    assert!(new.ends_with(&key.last_four));
    let rotated_at = key.rotated_at.unwrap();
    assert_eq!(
        key.previous_valid_until.unwrap().seconds - rotated_at.seconds,
        3600
    );
    // Both work during the grace.
    assert_eq!(app.key_login(&old).await.unwrap().username, "bob");
    assert_eq!(app.key_login(&new).await.unwrap().username, "bob");
    app.core.clock().advance(TimeDelta::seconds(3601));
    assert_refused(app.key_login(&old).await);
    app.key_login(&new).await.unwrap();
    // Listed with its rotation.
    let listed = app
        .keys()
        .list_api_keys(as_admin(pb::ListApiKeysRequest {
            account: "acme".into(),
            username: "bob".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.keys[0].rotated_at, Some(rotated_at));
    // No grace: the previous secret stops at once; the grace is capped.
    let third = rotate(Some(0), "ci").await.unwrap().into_inner().value;
    assert_refused(app.key_login(&new).await);
    app.key_login(&third).await.unwrap();
    assert_eq!(
        rotate(Some(86_401), "ci").await.unwrap_err().message(),
        "grace_seconds: must be at most 86400 (user_authentication.api_key_rotation_max_grace_seconds)"
    );
    assert_invalid(rotate(Some(-1), "ci").await, "grace_seconds");
    assert_code(rotate(None, "missing").await, Code::NotFound);
    // The grace never outlives the key.
    let short = app.create_key("acme", "bob", "short", 1).await;
    let rotated = rotate(Some(86_400), "short").await.unwrap().into_inner();
    let key = rotated.key.unwrap();
    assert_eq!(key.previous_valid_until, key.expires_at);
    app.key_login(&short).await.unwrap();
    // An API key may not rotate keys, not even its own.
    assert_code(
        app.keys()
            .rotate_api_key(as_key(
                &third,
                pb::RotateApiKeyRequest {
                    name: "ci".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    // Revoked: both secrets stop, and it cannot be rotated back to life.
    let fourth = rotate(None, "ci").await.unwrap().into_inner().value;
    app.keys()
        .update_api_key(as_admin(pb::UpdateApiKeyRequest {
            account: "acme".into(),
            username: "bob".into(),
            name: "ci".into(),
            status: pb::ApiKeyStatus::Revoked.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_refused(app.key_login(&third).await);
    assert_refused(app.key_login(&fourth).await);
    let status = rotate(None, "ci").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "the key is revoked: revoked keys cannot be rotated"
    );
    // Deleted: the short key's two secrets stop.
    app.keys()
        .delete_api_key(as_admin(pb::DeleteApiKeyRequest {
            account: "acme".into(),
            username: "bob".into(),
            name: "short".into(),
        }))
        .await
        .unwrap();
    assert_refused(app.key_login(&short).await);
    assert_refused(app.key_login(&rotated.value).await);
}

async fn with_tokens_off_there_are_no_grants_and_no_tokens_accepted(backend: Backend) {
    let app = tenant(backend).await;
    let bob = app.grant("bob", "bob-password").await.unwrap();
    let app = app
        .restart_with(|c| c.user_authentication.oauth_enabled = false)
        .await;
    let status = app.grant("bob", "bob-password").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "tokens are disabled (user_authentication.oauth_enabled)"
    );
    assert_refused(app.token_login(&bob.access_token).await);
    app.login("bob", "bob-password").await.unwrap();
}
