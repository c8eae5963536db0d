use authzd::domain::authn::key_format;
use authzd::pb;
use chrono::TimeDelta;
use tonic::Code;

use crate::dual;
use crate::support::*;

fn create(username: &str, name: &str, app: &TestApp, days: i64) -> pb::CreateApiKeyRequest {
    pb::CreateApiKeyRequest {
        account: String::new(),
        username: username.into(),
        name: name.into(),
        description: "ci pipeline".into(),
        expires_at: in_days(&app.core, days),
    }
}

fn get(name: &str) -> pb::GetApiKeyRequest {
    pb::GetApiKeyRequest {
        name: name.into(),
        ..Default::default()
    }
}

async fn a_key_is_shown_once_and_authenticates_as_its_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    let alice = app
        .create_user("acme", "alice", "alice-password", &["read-only"])
        .await;

    let created = app
        .keys()
        .create_api_key(as_user(
            "alice",
            "alice-password",
            create("", "ci", &app, 30),
        ))
        .await
        .unwrap()
        .into_inner();
    let value = created.value.clone();
    let key = created.key.unwrap();
    assert!(value.starts_with("azk_"), "{value}");
    assert_eq!(value.len(), 4 + 12 + 1 + 43 + 1 + 6);
    assert_eq!(key.status(), pb::ApiKeyStatus::Active);
    assert_eq!(
        (key.username.as_str(), key.account.as_str()),
        ("alice", "acme")
    );
    assert_eq!(key.prefix, "azk");
    assert_eq!(key.last_four, value[value.len() - 4..]);
    assert!(value.contains(&key.id));

    // Never again: not in get, not in list.
    let got = app
        .keys()
        .get_api_key(as_user("alice", "alice-password", get("ci")))
        .await
        .unwrap()
        .into_inner();
    let listed = app
        .keys()
        .list_api_keys(as_user(
            "alice",
            "alice-password",
            pb::ListApiKeysRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    let secret = value.split('_').nth(2).unwrap();
    assert!(!format!("{got:?}{listed:?}").contains(secret));
    assert_eq!(listed.keys.len(), 1);
    assert_eq!(got.description, "ci pipeline");

    let principal = app.key_login(&value).await.unwrap();
    assert_eq!(principal.user_id, alice.id);
    assert_eq!(principal.credential_kind(), pb::CredentialKind::ApiKey);
    let key_ref = principal.api_key.clone().unwrap();
    assert_eq!(
        (key_ref.id.as_str(), key_ref.name.as_str()),
        (key.id.as_str(), "ci")
    );
    assert_eq!(principal.grants.len(), 1);

    // The explicit field works the same.
    let explicit = app
        .auth()
        .authenticate(as_service(pb::AuthenticateRequest {
            credentials: Some(pb::authenticate_request::Credentials::ApiKey(value.clone())),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap();
    assert_eq!(explicit, principal);

    // The key carries the owner's roles as they are now.
    app.roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: "read-write".into(),
            username: "alice".into(),
            account: "acme".into(),
        }))
        .await
        .unwrap();
    assert_eq!(app.key_login(&value).await.unwrap().grants.len(), 2);
}

async fn every_key_failure_looks_the_same(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.user_authentication.allow_api_keys_for_saml_users = true
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &[])
        .await;
    let good = app.create_key("acme", "alice", "good", 30).await;
    let parts: Vec<&str> = good.split('_').collect();
    let mut flipped = good.clone().into_bytes();
    flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
    let unknown = key_format::generate("azk").value.expose().to_owned();
    let wrong_secret = key_format::assemble("azk", parts[1], &"x".repeat(43));

    let mut failures = vec![
        ("unknown", unknown),
        ("malformed", "azk_nope".to_owned()),
        ("bad checksum", String::from_utf8(flipped).unwrap()),
        ("wrong secret", wrong_secret),
    ];
    // expired
    let expiring = app.create_key("acme", "alice", "expiring", 1).await;
    // revoked
    let revoked = app.create_key("acme", "alice", "revoked", 30).await;
    app.keys()
        .update_api_key(as_admin(pb::UpdateApiKeyRequest {
            account: "acme".into(),
            username: "alice".into(),
            name: "revoked".into(),
            status: pb::ApiKeyStatus::Revoked.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    // owner disabled
    app.create_user("acme", "dis", "dis-password", &[]).await;
    let disabled_owner = app.create_key("acme", "dis", "k", 30).await;
    app.users()
        .set_user_state(as_admin(pb::SetUserStateRequest {
            account: "acme".into(),
            username: "dis".into(),
            state: pb::UserState::Disabled.into(),
        }))
        .await
        .unwrap();
    // owner deleted
    app.create_user("acme", "gone", "gone-password", &[]).await;
    let deleted_owner = app.create_key("acme", "gone", "k", 30).await;
    app.users()
        .delete_user(as_admin(pb::DeleteUserRequest {
            account: "acme".into(),
            username: "gone".into(),
        }))
        .await
        .unwrap();
    // account disabled, account deleting
    app.create_account("frozen").await;
    app.create_user("frozen", "fred", "fred-password", &[])
        .await;
    let frozen = app.create_key("frozen", "fred", "k", 30).await;
    app.set_account_state("frozen", pb::AccountState::Disabled)
        .await;
    app.create_account("doomed").await;
    app.create_user("doomed", "dora", "dora-password", &[])
        .await;
    let doomed = app.create_key("doomed", "dora", "k", 30).await;
    app.set_account_state("doomed", pb::AccountState::Disabled)
        .await;
    app.accounts()
        .delete_account(as_admin(pb::DeleteAccountRequest {
            name: "doomed".into(),
        }))
        .await
        .unwrap();
    app.core.clock().advance(TimeDelta::days(2));
    failures.extend([
        ("expired", expiring),
        ("revoked", revoked),
        ("owner disabled", disabled_owner),
        ("owner deleted", deleted_owner),
        ("account disabled", frozen),
        ("account deleting", doomed),
    ]);

    assert!(
        app.key_login(&good).await.is_ok(),
        "the control key must work"
    );
    let mut messages = Vec::new();
    for (what, value) in &failures {
        let status = app.key_login(value).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}");
        messages.push(status.message().to_owned());
    }
    messages.dedup();
    assert_eq!(messages, ["invalid credentials"]);
}

async fn names_are_unique_per_user_even_under_concurrency(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &[])
        .await;
    app.create_user("acme", "bob", "bob-password", &[]).await;
    app.create_key("acme", "alice", "ci", 30).await;
    // Another user may use the same name.
    app.create_key("acme", "bob", "ci", 30).await;
    assert_code(
        app.keys()
            .create_api_key(as_user(
                "alice",
                "alice-password",
                create("", "ci", &app, 30),
            ))
            .await,
        Code::AlreadyExists,
    );
    let attempts = (0..6).map(|_| {
        let mut keys = app.keys();
        let request = create("", "race", &app, 30);
        async move {
            code(
                keys.create_api_key(as_user("alice", "alice-password", request))
                    .await,
            )
        }
    });
    let codes = crate::accounts::futures_join_all(attempts).await;
    assert_eq!(
        codes.iter().filter(|c| **c == Code::Ok).count(),
        1,
        "{codes:?}"
    );
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, Code::Ok | Code::AlreadyExists)),
        "{codes:?}"
    );
    // Renaming onto a taken name is refused too.
    assert_code(
        app.keys()
            .update_api_key(as_user(
                "alice",
                "alice-password",
                pb::UpdateApiKeyRequest {
                    name: "race".into(),
                    new_name: Some("ci".into()),
                    ..Default::default()
                },
            ))
            .await,
        Code::AlreadyExists,
    );
}

async fn expiry_is_required_and_bounded(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.user_authentication.max_api_key_age_days = 30).await;
    let mut keys = app.keys();
    assert_invalid(
        keys.create_api_key(as_admin(create("", "past", &app, -1)))
            .await,
        "expires_at",
    );
    assert_invalid(
        keys.create_api_key(as_admin(create("", "far", &app, 31)))
            .await,
        "expires_at",
    );
    let mut missing = create("", "none", &app, 1);
    missing.expires_at = None;
    assert_invalid(keys.create_api_key(as_admin(missing)).await, "expires_at");
    assert_invalid(
        keys.create_api_key(as_admin(create("", "", &app, 1))).await,
        "name",
    );
    let mut long = create("", "long", &app, 1);
    long.description = "d".repeat(1025);
    assert_invalid(keys.create_api_key(as_admin(long)).await, "description");
    assert_code(
        keys.create_api_key(as_admin(create("", "edge", &app, 29)))
            .await,
        Code::Ok,
    );
}

async fn the_per_user_limit_counts_active_keys(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.user_authentication.max_api_keys_per_user = 2).await;
    app.create_key("admin", "admin", "one", 30).await;
    app.create_key("admin", "admin", "two", 30).await;
    let status = app
        .keys()
        .create_api_key(as_admin(create("", "three", &app, 30)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "\"admin\" already has 2 active API keys (user_authentication.max_api_keys_per_user)"
    );
    app.keys()
        .update_api_key(as_admin(pb::UpdateApiKeyRequest {
            name: "one".into(),
            status: pb::ApiKeyStatus::Revoked.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_code(
        app.keys()
            .create_api_key(as_admin(create("", "three", &app, 30)))
            .await,
        Code::Ok,
    );
}

async fn revoking_is_immediate_and_irreversible(backend: Backend) {
    let app = spawn_app(backend).await;
    let value = app.create_key("admin", "admin", "ci", 30).await;
    app.create_key("admin", "admin", "short", 1).await;
    assert!(app.key_login(&value).await.is_ok());
    let revoked = app
        .keys()
        .update_api_key(as_admin(pb::UpdateApiKeyRequest {
            name: "ci".into(),
            status: pb::ApiKeyStatus::Revoked.into(),
            description: Some("leaked".into()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.status(), pb::ApiKeyStatus::Revoked);
    assert!(revoked.revoked_at.is_some());
    assert_eq!(revoked.description, "leaked");
    assert_eq!(
        app.key_login(&value).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_code(
        app.keys()
            .update_api_key(as_admin(pb::UpdateApiKeyRequest {
                name: "ci".into(),
                status: pb::ApiKeyStatus::Active.into(),
                ..Default::default()
            }))
            .await,
        Code::FailedPrecondition,
    );
    assert_invalid(
        app.keys()
            .update_api_key(as_admin(pb::UpdateApiKeyRequest {
                name: "short".into(),
                status: pb::ApiKeyStatus::Expired.into(),
                ..Default::default()
            }))
            .await,
        "status",
    );
    let status = app.key_login(&value).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "invalid credentials");

    // Listing: active by default, the others on request; status derived now.
    app.core.clock().advance(TimeDelta::days(2));
    let list = |expired: bool, revoked: bool| pb::ListApiKeysRequest {
        include_expired: expired,
        include_revoked: revoked,
        ..Default::default()
    };
    let names = |keys: Vec<pb::ApiKey>| {
        keys.into_iter()
            .map(|k| format!("{}:{}", k.name, k.status().as_str_name()))
            .collect::<Vec<_>>()
    };
    let default = app
        .keys()
        .list_api_keys(as_admin(list(false, false)))
        .await
        .unwrap()
        .into_inner();
    assert!(default.keys.is_empty(), "{:?}", default.keys);
    let all = app
        .keys()
        .list_api_keys(as_admin(list(true, true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        names(all.keys),
        ["ci:API_KEY_STATUS_REVOKED", "short:API_KEY_STATUS_EXPIRED"]
    );
    let expired = app
        .keys()
        .list_api_keys(as_admin(list(true, false)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(expired.keys), ["short:API_KEY_STATUS_EXPIRED"]);

    // Deleting removes it and frees the name.
    app.keys()
        .delete_api_key(as_admin(pb::DeleteApiKeyRequest {
            name: "ci".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_code(
        app.keys().get_api_key(as_admin(get("ci"))).await,
        Code::NotFound,
    );
    app.create_key("admin", "admin", "ci", 30).await;
}

async fn saml_users_get_keys_only_when_allowed(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.user_authentication.allow_api_keys_for_saml_users = true
    })
    .await;
    app.create_account("acme").await;
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
    let value = app.create_key("acme", "sam", "sso-key", 30).await;
    assert!(app.key_login(&value).await.is_ok());

    // Turned off: the existing key stops working and new ones are refused.
    let app = app
        .restart_with(|c| c.user_authentication.allow_api_keys_for_saml_users = false)
        .await;
    assert_eq!(
        app.key_login(&value).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_code(
        app.keys()
            .create_api_key(as_admin(pb::CreateApiKeyRequest {
                account: "acme".into(),
                ..create("sam", "another", &app, 30)
            }))
            .await,
        Code::FailedPrecondition,
    );
}

async fn account_admins_manage_keys_in_their_account_only(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_account("other").await;
    app.create_user("acme", "una", "una-password", &["account-user-admin"])
        .await;
    app.create_user("acme", "newbie", "newbie-password", &[])
        .await;
    app.create_user("other", "olaf", "olaf-password", &[]).await;
    let as_una = |m| as_user("una", "una-password", m);
    let for_user = |account: &str, username: &str| pb::CreateApiKeyRequest {
        account: account.into(),
        ..create(username, "managed", &app, 30)
    };
    let made = app
        .keys()
        .create_api_key(as_una(for_user("acme", "newbie")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.key.unwrap().username, "newbie");
    assert!(app.key_login(&made.value).await.is_ok());
    assert_code(
        app.keys()
            .create_api_key(as_una(for_user("other", "olaf")))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.keys()
            .list_api_keys(as_user(
                "una",
                "una-password",
                pb::ListApiKeysRequest {
                    account: "other".into(),
                    username: "olaf".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    // A user without a role manages only their own.
    assert_code(
        app.keys()
            .create_api_key(as_user(
                "newbie",
                "newbie-password",
                for_user("acme", "una"),
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.keys()
            .create_api_key(as_user(
                "newbie",
                "newbie-password",
                create("", "mine", &app, 30),
            ))
            .await,
        Code::Ok,
    );
    // A global administrator manages everyone's.
    assert_code(
        app.keys()
            .create_api_key(as_admin(for_user("other", "olaf")))
            .await,
        Code::Ok,
    );
}

async fn an_api_key_may_never_change_identities_or_credentials(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &[])
        .await;
    app.groups()
        .create_group(as_admin(pb::CreateGroupRequest {
            name: "builders".into(),
            description: String::new(),
        }))
        .await
        .unwrap();
    app.create_key("admin", "admin", "victim", 30).await;
    // The most powerful owner there is.
    let key = app.create_key("admin", "admin", "root-key", 30).await;
    let denied = |result: Result<Code, tonic::Status>| match result {
        Err(status) => {
            assert_eq!(
                status.code(),
                Code::PermissionDenied,
                "{}",
                status.message()
            );
            assert!(status.message().contains("API key"), "{}", status.message());
        }
        Ok(code) => panic!("expected PERMISSION_DENIED, got {code:?}"),
    };
    fn ok<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<Code, tonic::Status> {
        r.map(|_| Code::Ok)
    }
    let (mut accounts, mut users, mut roles, mut groups, mut keys) = (
        app.accounts(),
        app.users(),
        app.roles(),
        app.groups(),
        app.keys(),
    );
    denied(ok(accounts
        .create_account(as_key(
            &key,
            pb::CreateAccountRequest {
                name: "newco".into(),
                ..Default::default()
            },
        ))
        .await));
    denied(ok(accounts
        .update_account(as_key(
            &key,
            pb::UpdateAccountRequest {
                name: "acme".into(),
                email: "x@y.z".into(),
            },
        ))
        .await));
    denied(ok(accounts
        .set_account_state(as_key(
            &key,
            pb::SetAccountStateRequest {
                name: "acme".into(),
                state: pb::AccountState::Disabled.into(),
            },
        ))
        .await));
    denied(ok(accounts
        .delete_account(as_key(
            &key,
            pb::DeleteAccountRequest {
                name: "acme".into(),
            },
        ))
        .await));
    denied(ok(users
        .create_user(as_key(
            &key,
            pb::CreateUserRequest {
                account: "acme".into(),
                username: "eve".into(),
                password: "eve-password".into(),
                ..Default::default()
            },
        ))
        .await));
    denied(ok(users
        .delete_user(as_key(
            &key,
            pb::DeleteUserRequest {
                account: "acme".into(),
                username: "alice".into(),
            },
        ))
        .await));
    denied(ok(users
        .set_password(as_key(
            &key,
            pb::SetPasswordRequest {
                account: "acme".into(),
                username: "alice".into(),
                password: "hijacked".into(),
                ..Default::default()
            },
        ))
        .await));
    denied(ok(users
        .set_password(as_key(
            &key,
            pb::SetPasswordRequest {
                account: "admin".into(),
                username: "admin".into(),
                password: "hijacked".into(),
                ..Default::default()
            },
        ))
        .await));
    denied(ok(users
        .set_user_state(as_key(
            &key,
            pb::SetUserStateRequest {
                account: "acme".into(),
                username: "alice".into(),
                state: pb::UserState::Disabled.into(),
            },
        ))
        .await));
    denied(ok(roles
        .add_role_member(as_key(
            &key,
            pb::AddRoleMemberRequest {
                role: "full-control".into(),
                username: "alice".into(),
                account: "acme".into(),
            },
        ))
        .await));
    denied(ok(roles
        .remove_role_member(as_key(
            &key,
            pb::RemoveRoleMemberRequest {
                role: "full-control".into(),
                username: "alice".into(),
                account: "acme".into(),
            },
        ))
        .await));
    denied(ok(groups
        .create_group(as_key(
            &key,
            pb::CreateGroupRequest {
                name: "ops".into(),
                description: String::new(),
            },
        ))
        .await));
    denied(ok(groups
        .update_group(as_key(
            &key,
            pb::UpdateGroupRequest {
                name: "builders".into(),
                description: "x".into(),
            },
        ))
        .await));
    denied(ok(groups
        .delete_group(as_key(
            &key,
            pb::DeleteGroupRequest {
                name: "builders".into(),
            },
        ))
        .await));
    denied(ok(groups
        .add_group_members(as_key(
            &key,
            pb::GroupMembersRequest {
                name: "builders".into(),
                usernames: vec!["alice".into()],
            },
        ))
        .await));
    denied(ok(groups
        .remove_group_members(as_key(
            &key,
            pb::GroupMembersRequest {
                name: "builders".into(),
                usernames: vec!["alice".into()],
            },
        ))
        .await));
    denied(ok(groups
        .add_group_grants(as_key(
            &key,
            pb::GroupGrantsRequest {
                name: "builders".into(),
                grants: vec![pb::GroupGrant {
                    role: "read-only".into(),
                    account: "acme".into(),
                }],
            },
        ))
        .await));
    denied(ok(groups
        .remove_group_grants(as_key(
            &key,
            pb::GroupGrantsRequest {
                name: "builders".into(),
                grants: vec![pb::GroupGrant {
                    role: "read-only".into(),
                    account: "acme".into(),
                }],
            },
        ))
        .await));
    denied(ok(keys
        .create_api_key(as_key(&key, create("", "more", &app, 30)))
        .await));
    denied(ok(keys
        .create_api_key(as_key(
            &key,
            pb::CreateApiKeyRequest {
                account: "acme".into(),
                ..create("alice", "more", &app, 30)
            },
        ))
        .await));
    denied(ok(keys
        .update_api_key(as_key(
            &key,
            pb::UpdateApiKeyRequest {
                name: "victim".into(),
                status: pb::ApiKeyStatus::Revoked.into(),
                ..Default::default()
            },
        ))
        .await));
    denied(ok(keys
        .delete_api_key(as_key(
            &key,
            pb::DeleteApiKeyRequest {
                name: "victim".into(),
                ..Default::default()
            },
        ))
        .await));

    // Everything else the owner may do, the key may do.
    assert_code(
        accounts
            .list_accounts(as_key(&key, pb::ListAccountsRequest::default()))
            .await,
        Code::Ok,
    );
    assert_code(
        users
            .list_users(as_key(
                &key,
                pb::ListUsersRequest {
                    account: "acme".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::Ok,
    );
    assert_code(
        keys.list_api_keys(as_key(&key, pb::ListApiKeysRequest::default()))
            .await,
        Code::Ok,
    );
    assert_code(
        keys.get_api_key(as_key(&key, get("victim"))).await,
        Code::Ok,
    );
    assert_code(
        groups
            .get_group(as_key(
                &key,
                pb::GetGroupRequest {
                    name: "builders".into(),
                },
            ))
            .await,
        Code::Ok,
    );

    // Nothing changed.
    assert!(app.login("alice", "alice-password").await.is_ok());
    assert_code(keys.get_api_key(as_admin(get("victim"))).await, Code::Ok);

    // Authorize says the same, naming the restriction.
    let decision = app
        .auth()
        .authorize(as_service(pb::AuthorizeRequest {
            username_credential: 0,
            subject: Some(pb::authorize_request::Subject::ApiKey(key.clone())),
            account: "acme".into(),
            actions: vec![
                "createUser".into(),
                "selfCreateApiKey".into(),
                "listImages".into(),
            ],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let reasons: Vec<_> = decision.decisions.iter().map(|d| d.reason()).collect();
    assert_eq!(
        reasons,
        [
            pb::DecisionReason::ApiKeyRestricted,
            pb::DecisionReason::ApiKeyRestricted,
            pb::DecisionReason::Admin
        ]
    );
    assert!(!decision.allowed);
    assert_eq!(
        decision.principal.unwrap().credential_kind(),
        pb::CredentialKind::ApiKey
    );

    // A service that authenticated the key itself and passes the username
    // says how; the restriction then holds too.
    let by_username = |kind: pb::CredentialKind| pb::AuthorizeRequest {
        subject: Some(pb::authorize_request::Subject::Username("admin".into())),
        account: "acme".into(),
        actions: vec!["createUser".into()],
        username_credential: kind.into(),
        ..Default::default()
    };
    let via_key = app
        .auth()
        .authorize(as_service(by_username(pb::CredentialKind::ApiKey)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        via_key.decisions[0].reason(),
        pb::DecisionReason::ApiKeyRestricted
    );
    let via_password = app
        .auth()
        .authorize(as_service(by_username(pb::CredentialKind::Unspecified)))
        .await
        .unwrap()
        .into_inner();
    assert!(via_password.allowed);
}

async fn last_use_is_recorded_without_a_write_per_check(backend: Backend) {
    // No background flush during the test: only the explicit one below.
    let app = spawn_app_with(backend, |c| {
        c.user_authentication.api_key_last_used_flush_ms = 3_600_000;
    })
    .await;
    let value = app.create_key("admin", "admin", "ci", 30).await;
    let before = app
        .keys()
        .get_api_key(as_admin(get("ci")))
        .await
        .unwrap()
        .into_inner();
    assert!(before.last_used_at.is_none());
    for _ in 0..5 {
        app.key_login(&value).await.unwrap();
    }
    // Visible at once (pending), but not written: five checks, no write.
    let after = app
        .keys()
        .get_api_key(as_admin(get("ci")))
        .await
        .unwrap()
        .into_inner();
    assert!(after.last_used_at.is_some());
    let stored_use = || async {
        use sea_orm::ConnectionTrait;
        let conn = sea_orm::Database::connect(&app.db.url).await.unwrap();
        let row = conn
            .query_one_raw(sea_orm::Statement::from_string(
                conn.get_database_backend(),
                "SELECT COUNT(*) AS n FROM api_keys WHERE name = 'ci' AND last_used_at IS NOT NULL",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    assert_eq!(stored_use().await, 0, "a check wrote the last use");
    // One flush writes the one row for the five checks.
    assert_eq!(app.core.flush_last_used().await.unwrap(), 1);
    assert_eq!(stored_use().await, 1);
    assert_eq!(app.core.flush_last_used().await.unwrap(), 0);
    let restarted = app.restart_with(|_| {}).await;
    let stored = restarted
        .keys()
        .get_api_key(as_admin(get("ci")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.last_used_at, after.last_used_at);
}

async fn deleted_users_keys_are_kept_then_purged(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "gone", "gone-password", &[]).await;
    let value = app.create_key("acme", "gone", "k", 300).await;
    app.users()
        .delete_user(as_admin(pb::DeleteUserRequest {
            account: "acme".into(),
            username: "gone".into(),
        }))
        .await
        .unwrap();
    let status = app.key_login(&value).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "invalid credentials");
    let kept = || authzd::store::api_keys::count_owner_deleted(app.core.db());
    assert_eq!(kept().await.unwrap(), 1);
    assert_eq!(app.core.purge_deleted_users_keys().await.unwrap(), 0);
    app.core.clock().advance(TimeDelta::days(366));
    assert_eq!(app.core.purge_deleted_users_keys().await.unwrap(), 1);
    assert_eq!(kept().await.unwrap(), 0);

    // -1 keeps them forever.
    let app = app
        .restart_with(|c| {
            c.user_authentication
                .remove_deleted_user_api_keys_older_than_days = -1
        })
        .await;
    app.create_user("acme", "gone2", "gone-password", &[]).await;
    app.create_key("acme", "gone2", "k", 300).await;
    app.users()
        .delete_user(as_admin(pb::DeleteUserRequest {
            account: "acme".into(),
            username: "gone2".into(),
        }))
        .await
        .unwrap();
    app.core.clock().advance(TimeDelta::days(3650));
    assert_eq!(app.core.purge_deleted_users_keys().await.unwrap(), 0);
    assert_eq!(
        authzd::store::api_keys::count_owner_deleted(app.core.db())
            .await
            .unwrap(),
        1
    );
}

dual!(
    a_key_is_shown_once_and_authenticates_as_its_owner,
    every_key_failure_looks_the_same,
    names_are_unique_per_user_even_under_concurrency,
    expiry_is_required_and_bounded,
    the_per_user_limit_counts_active_keys,
    revoking_is_immediate_and_irreversible,
    saml_users_get_keys_only_when_allowed,
    account_admins_manage_keys_in_their_account_only,
    an_api_key_may_never_change_identities_or_credentials,
    last_use_is_recorded_without_a_write_per_check,
    deleted_users_keys_are_kept_then_purged,
);
