use authzd::pb;
use tonic::Code;

use crate::dual;
use crate::support::*;

async fn accounts_are_created_read_listed_and_updated(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .accounts()
        .create_account(as_admin(pb::CreateAccountRequest {
            name: "security".into(),
            email: "sec@example.com".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.r#type(), pb::AccountType::User);
    assert_eq!(created.state(), pb::AccountState::Enabled);
    assert_eq!(created.email, "sec@example.com");

    let got = app
        .accounts()
        .get_account(as_admin(pb::GetAccountRequest {
            name: "security".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    app.create_account("zeta").await;
    app.set_account_state("zeta", pb::AccountState::Disabled)
        .await;
    let all = app
        .accounts()
        .list_accounts(as_admin(pb::ListAccountsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = all.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["admin", "security", "zeta"]);
    assert_eq!(all.accounts[0].r#type(), pb::AccountType::Admin);

    let disabled = app
        .accounts()
        .list_accounts(as_admin(pb::ListAccountsRequest {
            state: pb::AccountState::Disabled.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = disabled.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["zeta"]);

    // Pages of one walk the whole list in order.
    let mut token = String::new();
    let mut walked = Vec::new();
    loop {
        let page = app
            .accounts()
            .list_accounts(as_admin(pb::ListAccountsRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        walked.extend(page.accounts.into_iter().map(|a| a.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(walked, ["admin", "security", "zeta"]);

    let updated = app
        .accounts()
        .update_account(as_admin(pb::UpdateAccountRequest {
            name: "security".into(),
            email: "new@example.com".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.email, "new@example.com");
    let cleared = app
        .accounts()
        .update_account(as_admin(pb::UpdateAccountRequest {
            name: "security".into(),
            email: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.email, "");
    assert_code(
        app.accounts()
            .get_account(as_admin(pb::GetAccountRequest {
                name: "nope-account".into(),
            }))
            .await,
        Code::NotFound,
    );
}

async fn bad_account_input_is_refused_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let create = |name: &str, email: &str, t: i32| pb::CreateAccountRequest {
        name: name.into(),
        email: email.into(),
        r#type: t,
    };
    for reserved in ["admin", "system", "anchore-system"] {
        assert_invalid(
            app.accounts()
                .create_account(as_admin(create(reserved, "", 0)))
                .await,
            "name",
        );
    }
    for bad in ["", "ab", "-abc", "abc-", "a#bc", &"a".repeat(129)] {
        assert_invalid(
            app.accounts()
                .create_account(as_admin(create(bad, "", 0)))
                .await,
            "name",
        );
    }
    assert_invalid(
        app.accounts()
            .create_account(as_admin(create("okname", "not-an-email", 0)))
            .await,
        "email",
    );
    assert_invalid(
        app.accounts()
            .create_account(as_admin(create(
                "okname",
                "",
                pb::AccountType::Admin.into(),
            )))
            .await,
        "type",
    );
    assert_invalid(
        app.accounts()
            .create_account(as_admin(create("okname", "", 42)))
            .await,
        "type",
    );
    assert_invalid(
        app.accounts()
            .list_accounts(as_admin(pb::ListAccountsRequest {
                state: 42,
                ..Default::default()
            }))
            .await,
        "state",
    );
    assert_invalid(
        app.accounts()
            .list_accounts(as_admin(pb::ListAccountsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            }))
            .await,
        "page_token",
    );
    assert_invalid(
        app.accounts()
            .list_accounts(as_admin(pb::ListAccountsRequest {
                page_size: -1,
                ..Default::default()
            }))
            .await,
        "page_size",
    );
    assert_invalid(
        app.accounts()
            .set_account_state(as_admin(pb::SetAccountStateRequest {
                name: "admin".into(),
                state: 0,
            }))
            .await,
        "state",
    );
    // Nothing was created by any of that.
    let all = app
        .accounts()
        .list_accounts(as_admin(pb::ListAccountsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.accounts.len(), 1);
}

async fn duplicate_names_are_refused_even_when_concurrent(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("dupe").await;
    assert_code(
        app.accounts()
            .create_account(as_admin(pb::CreateAccountRequest {
                name: "dupe".into(),
                ..Default::default()
            }))
            .await,
        Code::AlreadyExists,
    );
    let attempts = (0..8).map(|_| {
        let mut client = app.accounts();
        async move {
            code(
                client
                    .create_account(as_admin(pb::CreateAccountRequest {
                        name: "race".into(),
                        ..Default::default()
                    }))
                    .await,
            )
        }
    });
    let codes = futures_join_all(attempts).await;
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
}

/// Runs the futures concurrently on the runtime.
pub async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn the_admin_account_is_locked(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_code(
        app.accounts()
            .set_account_state(as_admin(pb::SetAccountStateRequest {
                name: "admin".into(),
                state: pb::AccountState::Disabled.into(),
            }))
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        app.accounts()
            .delete_account(as_admin(pb::DeleteAccountRequest {
                name: "admin".into(),
            }))
            .await,
        Code::FailedPrecondition,
    );
    assert!(app.login("admin", ADMIN_PASSWORD).await.is_ok());
}

async fn deletion_follows_the_state_machine_and_frees_the_name_after_purge(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("doomed").await;
    app.create_user("doomed", "dora", "dora-password", &["read-write"])
        .await;
    // Another account's user holding a role in the doomed account.
    app.create_account("other").await;
    let outsider = app.create_user("other", "otto", "otto-password", &[]).await;
    app.roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: "read-only".into(),
            username: "otto".into(),
            account: "doomed".into(),
        }))
        .await
        .unwrap();
    assert!(app.login("dora", "dora-password").await.is_ok());

    // enabled -> deleting is refused.
    let delete = || pb::DeleteAccountRequest {
        name: "doomed".into(),
    };
    assert_code(
        app.accounts().delete_account(as_admin(delete())).await,
        Code::FailedPrecondition,
    );

    app.set_account_state("doomed", pb::AccountState::Disabled)
        .await;
    let deleting = app
        .accounts()
        .delete_account(as_admin(delete()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleting.state(), pb::AccountState::Deleting);

    // Access is gone at once, the name is listed and reserved, and the state is terminal.
    assert_code(
        app.login("dora", "dora-password")
            .await
            .map(tonic::Response::new),
        Code::Unauthenticated,
    );
    let admin_there = app.authorize("admin", "doomed", &["listImages"]).await;
    assert_eq!(
        admin_there.decisions[0].reason(),
        pb::DecisionReason::AccountDeleting
    );
    let decision = app.authorize("otto", "doomed", &["listImages"]).await;
    assert!(!decision.allowed);
    assert_eq!(
        decision.decisions[0].reason(),
        pb::DecisionReason::AccountDeleting
    );
    let listed = app
        .accounts()
        .list_accounts(as_admin(pb::ListAccountsRequest {
            state: pb::AccountState::Deleting.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.accounts.len(), 1);
    assert_code(
        app.accounts()
            .create_account(as_admin(pb::CreateAccountRequest {
                name: "doomed".into(),
                ..Default::default()
            }))
            .await,
        Code::AlreadyExists,
    );
    assert_code(
        app.accounts()
            .set_account_state(as_admin(pb::SetAccountStateRequest {
                name: "doomed".into(),
                state: pb::AccountState::Enabled.into(),
            }))
            .await,
        Code::FailedPrecondition,
    );

    assert_eq!(app.purge().await, 1);
    assert_code(
        app.accounts()
            .get_account(as_admin(pb::GetAccountRequest {
                name: "doomed".into(),
            }))
            .await,
        Code::NotFound,
    );
    // The outsider lost the grant in the purged account but still exists.
    let otto = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "other".into(),
            username: "otto".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(otto.id, outsider.id);
    assert!(otto.roles.is_empty(), "{:?}", otto.roles);
    // Name and username are free again; the new dora is someone else.
    app.create_account("doomed").await;
    let reborn = app
        .create_user("doomed", "dora", "another-password", &[])
        .await;
    let status = app.login("dora", "dora-password").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "invalid credentials");
    assert_eq!(
        app.login("dora", "another-password").await.unwrap().user_id,
        reborn.id
    );
}

async fn the_background_purge_runs_when_a_deletion_starts(backend: Backend) {
    // A long interval: only the wake-up from DeleteAccount can purge in time.
    let app = spawn_app_with(backend, |config| {
        config.server.background_purge = true;
        config.server.purge_interval_seconds = 3600;
    })
    .await;
    app.create_account("doomed").await;
    app.create_user("doomed", "dora", "dora-password", &[])
        .await;
    app.set_account_state("doomed", pb::AccountState::Disabled)
        .await;
    app.accounts()
        .delete_account(as_admin(pb::DeleteAccountRequest {
            name: "doomed".into(),
        }))
        .await
        .unwrap();
    for _ in 0..100 {
        let got = app
            .accounts()
            .get_account(as_admin(pb::GetAccountRequest {
                name: "doomed".into(),
            }))
            .await;
        if code(got) == Code::NotFound {
            app.create_account("doomed").await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the deleting account was never purged");
}

async fn disabling_an_account_blocks_its_users_until_enabled(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("frozen").await;
    app.create_user("frozen", "fred", "fred-password", &["read-only"])
        .await;
    app.set_account_state("frozen", pb::AccountState::Disabled)
        .await;
    let err = app.login("fred", "fred-password").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let decision = app.authorize("fred", "", &["listImages"]).await;
    assert_eq!(
        decision.decisions[0].reason(),
        pb::DecisionReason::SubjectAccountDisabled
    );
    app.set_account_state("frozen", pb::AccountState::Enabled)
        .await;
    assert!(app.login("fred", "fred-password").await.is_ok());
    assert!(app.authorize("fred", "", &["listImages"]).await.allowed);
}

async fn account_administration_needs_the_system_permission(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_account("other").await;
    app.create_user("acme", "boss", "boss-password", &["full-control"])
        .await;
    let as_boss = |m| as_user("boss", "boss-password", m);
    assert_code(
        app.accounts()
            .create_account(as_boss(pb::CreateAccountRequest {
                name: "mine".into(),
                ..Default::default()
            }))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.accounts()
            .list_accounts(as_user(
                "boss",
                "boss-password",
                pb::ListAccountsRequest::default(),
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.accounts()
            .set_account_state(as_user(
                "boss",
                "boss-password",
                pb::SetAccountStateRequest {
                    name: "other".into(),
                    state: pb::AccountState::Disabled.into(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    // Their own account: readable, and full-control may edit its email.
    let own = app
        .accounts()
        .get_account(as_user(
            "boss",
            "boss-password",
            pb::GetAccountRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.name, "acme");
    assert_code(
        app.accounts()
            .update_account(as_user(
                "boss",
                "boss-password",
                pb::UpdateAccountRequest {
                    name: "acme".into(),
                    email: "boss@acme.test".into(),
                },
            ))
            .await,
        Code::Ok,
    );
    // Someone else's account: no.
    assert_code(
        app.accounts()
            .get_account(as_user(
                "boss",
                "boss-password",
                pb::GetAccountRequest {
                    name: "other".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.accounts()
            .get_account(in_account(
                as_user("boss", "boss-password", pb::GetAccountRequest::default()),
                "other",
            ))
            .await,
        Code::PermissionDenied,
    );
}

async fn admin_rpcs_require_valid_credentials(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_code(
        app.accounts()
            .list_accounts(pb::ListAccountsRequest::default())
            .await,
        Code::Unauthenticated,
    );
    assert_code(
        app.accounts()
            .list_accounts(as_user(
                "admin",
                "wrong-password",
                pb::ListAccountsRequest::default(),
            ))
            .await,
        Code::Unauthenticated,
    );
    let mut bearer = tonic::Request::new(pb::ListAccountsRequest::default());
    bearer.metadata_mut().insert(
        "authorization",
        format!("Bearer {CALLER_KEY}").parse().unwrap(),
    );
    assert_code(
        app.accounts().list_accounts(bearer).await,
        Code::Unauthenticated,
    );
}

dual!(
    accounts_are_created_read_listed_and_updated,
    bad_account_input_is_refused_naming_the_field,
    duplicate_names_are_refused_even_when_concurrent,
    the_admin_account_is_locked,
    deletion_follows_the_state_machine_and_frees_the_name_after_purge,
    disabling_an_account_blocks_its_users_until_enabled,
    the_background_purge_runs_when_a_deletion_starts,
    account_administration_needs_the_system_permission,
    admin_rpcs_require_valid_credentials,
);
