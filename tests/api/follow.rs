//! The change follower itself, not the answers it keeps right: a stale
//! cache still answers correctly (it reads through to the database), so a
//! follower that stopped would pass every test of answers. Here every kind
//! of write that leaves a change record is made through one replica, and
//! both replicas must have applied every record, with the cache not stale
//! and nothing unexpected logged at WARN.

use std::time::Duration;

use authzd::pb;
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::binary::Server;
use crate::dual;
use crate::support::*;

/// WARN lines this test causes on purpose; any other fails it.
const EXPECTED_WARNINGS: [&str; 3] = [
    // The lockout below.
    "user locked after repeated wrong passwords",
    // The refresh token replayed below.
    "a used refresh token was presented again: possible theft; its token family is revoked",
    // No signing key configured: the generated one is kept in the database.
    "the token signing key is stored in clear in the database (token_signing_keys); \
     set keys.encryption_key before the first start to encrypt it, or configure keys.private_key_path",
];

/// The kinds of change record the writes below must produce (all of them).
const KINDS: [&str; 6] = ["account", "user", "group", "key", "key_gone", "family"];

async fn metrics_of(addr: &str) -> String {
    let body = crate::ops::http_get(addr, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

async fn every_write_kind_is_followed_by_every_replica(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let start = |db| {
        Server::start_with(db, |c| {
            c.env("AUTHZD_SERVER_METRICS_LISTEN", "127.0.0.1:0")
                // Only the follower's own reading can bring B up to date.
                .env("AUTHZD_CACHE_POLL_INTERVAL_MS", "100");
        })
    };
    let a = start(&db).await;
    let b = start(&db).await;
    let metrics = [
        a.wait_for_address("metrics listening").await,
        b.wait_for_address("metrics listening").await,
    ];
    let ch = connect(&a.addr).await;
    let accounts = || AccountServiceClient::new(ch.clone());
    let users = || UserServiceClient::new(ch.clone());
    let roles = || RoleServiceClient::new(ch.clone());
    let groups = || GroupServiceClient::new(ch.clone());
    let keys = || ApiKeyServiceClient::new(ch.clone());
    let tokens = || TokenServiceClient::new(ch.clone());

    // Accounts: create, update, state.
    for name in ["acme", "doomed"] {
        accounts()
            .create_account(as_admin(pb::CreateAccountRequest {
                name: name.into(),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    accounts()
        .update_account(as_admin(pb::UpdateAccountRequest {
            name: "acme".into(),
            email: "ops@acme.example".into(),
        }))
        .await
        .unwrap();
    // Users: create with a role (a binding), password, state, delete.
    for (account, username) in [("acme", "alice"), ("acme", "bob"), ("doomed", "dora")] {
        users()
            .create_user(as_admin(pb::CreateUserRequest {
                account: account.into(),
                username: username.into(),
                password: format!("{username}-password"),
                roles: vec!["read-only".into()],
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    users()
        .set_password(as_admin(pb::SetPasswordRequest {
            account: "acme".into(),
            username: "bob".into(),
            password: "bob-password-2".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    for state in [pb::UserState::Disabled, pb::UserState::Enabled] {
        users()
            .set_user_state(as_admin(pb::SetUserStateRequest {
                account: "acme".into(),
                username: "bob".into(),
                state: state.into(),
            }))
            .await
            .unwrap();
    }
    // Role bindings: add and remove.
    roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: "read-write".into(),
            username: "alice".into(),
            account: "acme".into(),
        }))
        .await
        .unwrap();
    roles()
        .remove_role_member(as_admin(pb::RemoveRoleMemberRequest {
            role: "read-only".into(),
            username: "alice".into(),
            account: "acme".into(),
        }))
        .await
        .unwrap();
    // Groups: create, members and grants added and removed, delete.
    for name in ["ops", "gone"] {
        groups()
            .create_group(as_admin(pb::CreateGroupRequest {
                name: name.into(),
                ..Default::default()
            }))
            .await
            .unwrap();
        groups()
            .add_group_members(as_admin(pb::GroupMembersRequest {
                name: name.into(),
                usernames: vec!["alice".into(), "bob".into()],
            }))
            .await
            .unwrap();
        groups()
            .add_group_grants(as_admin(pb::GroupGrantsRequest {
                name: name.into(),
                grants: vec![pb::GroupGrant {
                    role: "read-write".into(),
                    account: "acme".into(),
                }],
            }))
            .await
            .unwrap();
    }
    groups()
        .remove_group_members(as_admin(pb::GroupMembersRequest {
            name: "ops".into(),
            usernames: vec!["bob".into()],
        }))
        .await
        .unwrap();
    groups()
        .remove_group_grants(as_admin(pb::GroupGrantsRequest {
            name: "ops".into(),
            grants: vec![pb::GroupGrant {
                role: "read-write".into(),
                account: "acme".into(),
            }],
        }))
        .await
        .unwrap();
    groups()
        .delete_group(as_admin(pb::DeleteGroupRequest {
            name: "gone".into(),
        }))
        .await
        .unwrap();
    // API keys: create, update, revoke, rotate, delete.
    let expires_at = Some(prost_types::Timestamp {
        seconds: authzd::domain::Clock::default().now().timestamp() + 86_400,
        nanos: 0,
    });
    for name in ["ci", "old", "spare"] {
        keys()
            .create_api_key(as_admin(pb::CreateApiKeyRequest {
                account: "acme".into(),
                username: "alice".into(),
                name: name.into(),
                expires_at,
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    keys()
        .update_api_key(as_admin(pb::UpdateApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "ci".into(),
            description: Some("the pipeline".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    keys()
        .update_api_key(as_admin(pb::UpdateApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "old".into(),
            status: pb::ApiKeyStatus::Revoked.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    keys()
        .rotate_api_key(as_admin(pb::RotateApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "ci".into(),
            grace_seconds: Some(60),
        }))
        .await
        .unwrap();
    keys()
        .delete_api_key(as_admin(pb::DeleteApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "spare".into(),
        }))
        .await
        .unwrap();
    // Tokens: a grant, a refresh, a replay (reuse revokes the family), an
    // access token revoked, every token of a user revoked.
    let grant = |username: &str, password: &str| pb::CreateTokenRequest {
        grant: Some(pb::create_token_request::Grant::Password(
            pb::PasswordCredentials {
                username: username.into(),
                password: password.into(),
            },
        )),
        ..Default::default()
    };
    let first = tokens()
        .create_token(grant("alice", "alice-password"))
        .await
        .unwrap()
        .into_inner();
    let refresh = |token: &str| pb::CreateTokenRequest {
        grant: Some(pb::create_token_request::Grant::RefreshToken(token.into())),
        ..Default::default()
    };
    tokens()
        .create_token(refresh(&first.refresh_token))
        .await
        .unwrap();
    assert_code(
        tokens().create_token(refresh(&first.refresh_token)).await,
        tonic::Code::Unauthenticated,
    );
    let second = tokens()
        .create_token(grant("bob", "bob-password-2"))
        .await
        .unwrap()
        .into_inner();
    tokens()
        .revoke_token(as_bearer(
            &second.access_token,
            pb::RevokeTokenRequest {
                token: second.access_token.clone(),
            },
        ))
        .await
        .unwrap();
    tokens()
        .create_token(grant("bob", "bob-password-2"))
        .await
        .unwrap();
    tokens()
        .revoke_user_tokens(as_admin(pb::RevokeUserTokensRequest {
            account: "acme".into(),
            username: "bob".into(),
        }))
        .await
        .unwrap();
    // Lockout: failures up to a lock, and the unlock.
    for _ in 0..5 {
        assert_code(
            login_on(&ch, "bob", "wrong-password")
                .await
                .map(tonic::Response::new),
            tonic::Code::Unauthenticated,
        );
    }
    users()
        .unlock_user(as_admin(pb::UnlockUserRequest {
            account: "acme".into(),
            username: "bob".into(),
        }))
        .await
        .unwrap();
    // A user deleted, and an account disabled, deleted and purged.
    users()
        .delete_user(as_admin(pb::DeleteUserRequest {
            account: "acme".into(),
            username: "bob".into(),
        }))
        .await
        .unwrap();
    for state in [pb::AccountState::Disabled] {
        accounts()
            .set_account_state(as_admin(pb::SetAccountStateRequest {
                name: "doomed".into(),
                state: state.into(),
            }))
            .await
            .unwrap();
    }
    accounts()
        .delete_account(as_admin(pb::DeleteAccountRequest {
            name: "doomed".into(),
        }))
        .await
        .unwrap();
    let mut purged = false;
    for _ in 0..200 {
        let gone = accounts()
            .get_account(as_admin(pb::GetAccountRequest {
                name: "doomed".into(),
            }))
            .await;
        if code(gone) == tonic::Code::NotFound {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(purged, "the deleted account was never purged");

    // Every kind of record was written, and both replicas applied the last.
    let conn = Database::connect(&db.url).await.unwrap();
    let backend_of = conn.get_database_backend();
    let rows = conn
        .query_all_raw(Statement::from_string(
            backend_of,
            "SELECT DISTINCT kind FROM changes",
        ))
        .await
        .unwrap();
    let written: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String>("", "kind").unwrap())
        .collect();
    for kind in KINDS {
        assert!(
            written.iter().any(|k| k == kind),
            "no {kind:?} record in {written:?}"
        );
    }
    let counter = conn
        .query_one_raw(Statement::from_string(
            backend_of,
            "SELECT seq FROM change_counter WHERE id = 1",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "seq")
        .unwrap();
    assert!(counter > 40, "only {counter} change records");
    for (server, addr) in [(&a, &metrics[0]), (&b, &metrics[1])] {
        let mut text = metrics_of(addr).await;
        for _ in 0..100 {
            if crate::ops::sample(&text, "authzd_cache_followed_seq") == Some(counter as f64) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            text = metrics_of(addr).await;
        }
        assert_eq!(
            crate::ops::sample(&text, "authzd_cache_followed_seq"),
            Some(counter as f64),
            "a replica did not follow every change record:\n{text}\n{}",
            server.stderr()
        );
        assert_eq!(
            crate::ops::sample(&text, "authzd_cache_stale"),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            crate::ops::sample(&text, "authzd_cache_unreadable_changes_total").unwrap_or(0.0),
            0.0,
            "{text}"
        );
        let unexpected: Vec<String> = server
            .log_events()
            .into_iter()
            .filter(|e| e["level"] == "WARN")
            .filter(|e| {
                let message = e["fields"]["message"].as_str().unwrap_or_default();
                !EXPECTED_WARNINGS.contains(&message)
            })
            .map(|e| e.to_string())
            .collect();
        assert!(
            unexpected.is_empty(),
            "unexpected warnings: {unexpected:#?}"
        );
    }
    a.stop();
    b.stop();
}

dual!(every_write_kind_is_followed_by_every_replica);
