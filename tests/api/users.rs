use authzd::pb;
use sea_orm::ConnectionTrait;
use tonic::Code;

use crate::dual;
use crate::support::*;

fn new_user(account: &str, username: &str, password: &str) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        account: account.into(),
        username: username.into(),
        password: password.into(),
        ..Default::default()
    }
}

async fn users_are_created_read_and_listed_with_their_roles(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    let alice = app
        .create_user(
            "acme",
            "alice",
            "alice-password",
            &["read-only", "policy-editor"],
        )
        .await;
    assert_eq!(alice.account, "acme");
    assert_eq!(alice.r#type(), pb::UserType::Native);
    assert_eq!(alice.state(), pb::UserState::Enabled);
    assert!(alice.password_last_updated.is_some());
    let roles: Vec<_> = alice
        .roles
        .iter()
        .map(|g| (g.role.as_str(), g.account.as_str()))
        .collect();
    assert_eq!(roles, [("policy-editor", "acme"), ("read-only", "acme")]);

    let got = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "acme".into(),
            username: "alice".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, alice);

    app.create_user("acme", "bob", "bob-password", &[]).await;
    let saml = app
        .users()
        .create_user(as_admin(pb::CreateUserRequest {
            account: "acme".into(),
            username: "carol:sso".into(),
            r#type: pb::UserType::Saml.into(),
            idp_name: "okta".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saml.idp_name, "okta");
    assert!(saml.password_last_updated.is_none());

    let listed = app
        .users()
        .list_users(as_admin(pb::ListUsersRequest {
            account: "acme".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol:sso"]);
    assert_eq!(listed.users[0].roles.len(), 2);

    let page = app
        .users()
        .list_users(as_admin(pb::ListUsersRequest {
            account: "acme".into(),
            page_size: 2,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.users.len(), 2);
    let rest = app
        .users()
        .list_users(as_admin(pb::ListUsersRequest {
            account: "acme".into(),
            page_size: 2,
            page_token: page.next_page_token,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rest.users
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        ["carol:sso"]
    );
    assert!(rest.next_page_token.is_empty());

    let all = app
        .users()
        .list_all_users(as_admin(pb::ListAllUsersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = all.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["admin", "alice", "bob", "carol:sso"]);
}

async fn bad_user_input_is_refused_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    let mut users = app.users();
    assert_invalid(
        users
            .create_user(as_admin(new_user("acme", "al:ice", "password1")))
            .await,
        "username",
    );
    assert_invalid(
        users
            .create_user(as_admin(new_user("acme", "", "password1")))
            .await,
        "username",
    );
    assert_invalid(
        users
            .create_user(as_admin(new_user("acme", "_api_key", "password1")))
            .await,
        "username",
    );
    assert_invalid(
        users
            .create_user(as_admin(new_user("acme", "alice", "short")))
            .await,
        "password",
    );
    assert_invalid(
        users
            .create_user(as_admin(new_user("acme", "alice", "")))
            .await,
        "password",
    );
    assert_invalid(
        users
            .create_user(as_admin(new_user("acme", "alice", &"p".repeat(129))))
            .await,
        "password",
    );
    let saml = |password: &str, idp: &str| pb::CreateUserRequest {
        r#type: pb::UserType::Saml.into(),
        idp_name: idp.into(),
        ..new_user("acme", "sam", password)
    };
    assert_invalid(
        users.create_user(as_admin(saml("password1", "okta"))).await,
        "password",
    );
    assert_invalid(users.create_user(as_admin(saml("", ""))).await, "idp_name");
    assert_invalid(
        users
            .create_user(as_admin(pb::CreateUserRequest {
                r#type: pb::UserType::Service.into(),
                ..new_user("acme", "svc", "password1")
            }))
            .await,
        "type",
    );
    assert_invalid(
        users
            .create_user(as_admin(pb::CreateUserRequest {
                roles: vec!["read-only".into(), "superuser".into()],
                ..new_user("acme", "alice", "password1")
            }))
            .await,
        "roles[1]",
    );
    assert_code(
        users
            .create_user(as_admin(new_user("no-such-account", "alice", "password1")))
            .await,
        Code::NotFound,
    );
    // Usernames are global: the same name in another account clashes.
    app.create_account("other").await;
    app.create_user("acme", "alice", "password1", &[]).await;
    assert_code(
        users
            .create_user(as_admin(new_user("other", "alice", "password1")))
            .await,
        Code::AlreadyExists,
    );
    let listed = users
        .list_users(as_admin(pb::ListUsersRequest {
            account: "other".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.users.is_empty());
}

async fn deleting_users_respects_the_refusals(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-only"])
        .await;
    // A second global administrator.
    app.create_user("admin", "root2", "root2-password", &[])
        .await;
    let delete = |account: &str, username: &str| pb::DeleteUserRequest {
        account: account.into(),
        username: username.into(),
    };
    assert_code(
        app.users()
            .delete_user(as_user("root2", "root2-password", delete("admin", "root2")))
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        app.users()
            .delete_user(as_user("root2", "root2-password", delete("admin", "admin")))
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        app.users()
            .delete_user(as_admin(delete("admin", "admin")))
            .await,
        Code::FailedPrecondition,
    );
    // A user of another account is not found under the wrong account.
    assert_code(
        app.users()
            .delete_user(as_admin(delete("admin", "alice")))
            .await,
        Code::NotFound,
    );

    app.users()
        .delete_user(as_admin(delete("acme", "alice")))
        .await
        .unwrap();
    assert_eq!(
        app.login("alice", "alice-password")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_code(
        app.users()
            .get_user(as_admin(pb::GetUserRequest {
                account: "acme".into(),
                username: "alice".into(),
            }))
            .await,
        Code::NotFound,
    );
    assert_code(
        app.users()
            .delete_user(as_admin(delete("acme", "alice")))
            .await,
        Code::NotFound,
    );
}

async fn passwords_are_replaced_by_admins_or_their_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &[])
        .await;
    app.create_user("acme", "bob", "bob-password", &[]).await;
    let set = |username: &str, password: &str| pb::SetPasswordRequest {
        account: "acme".into(),
        username: username.into(),
        password: password.into(),
        ..Default::default()
    };
    app.users()
        .set_password(as_admin(set("alice", "admin-chosen")))
        .await
        .unwrap();
    let status = app.login("alice", "alice-password").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "invalid credentials");
    assert!(app.login("alice", "admin-chosen").await.is_ok());

    // Her own, with no role at all: with the current password only.
    assert_invalid(
        app.users()
            .set_password(as_user(
                "alice",
                "admin-chosen",
                set("alice", "alice-chosen"),
            ))
            .await,
        "current_password",
    );
    let status = app
        .users()
        .set_password(as_user(
            "alice",
            "admin-chosen",
            pb::SetPasswordRequest {
                current_password: "not-her-password".into(),
                ..set("alice", "alice-chosen")
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "invalid credentials");
    app.users()
        .set_password(as_user(
            "alice",
            "admin-chosen",
            pb::SetPasswordRequest {
                current_password: "admin-chosen".into(),
                ..set("alice", "alice-chosen")
            },
        ))
        .await
        .unwrap();
    assert!(app.login("alice", "alice-chosen").await.is_ok());
    // Not someone else's.
    assert_code(
        app.users()
            .set_password(as_user("alice", "alice-chosen", set("bob", "hijacked")))
            .await,
        Code::PermissionDenied,
    );
    assert!(app.login("bob", "bob-password").await.is_ok());
    assert_invalid(
        app.users().set_password(as_admin(set("bob", "tiny"))).await,
        "password",
    );
    assert_code(
        app.users()
            .set_password(as_admin(set("nobody", "whatever1")))
            .await,
        Code::NotFound,
    );

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
    assert_code(
        app.users()
            .set_password(as_admin(set("sam", "password1")))
            .await,
        Code::FailedPrecondition,
    );
}

async fn disabling_a_user_takes_effect_on_the_next_check(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-only"])
        .await;
    assert!(app.authorize("alice", "", &["listImages"]).await.allowed);
    let state = |s: pb::UserState| pb::SetUserStateRequest {
        account: "acme".into(),
        username: "alice".into(),
        state: s.into(),
    };
    let disabled = app
        .users()
        .set_user_state(as_admin(state(pb::UserState::Disabled)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disabled.state(), pb::UserState::Disabled);
    assert_eq!(
        app.login("alice", "alice-password")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let decision = app.authorize("alice", "", &["listImages"]).await;
    assert_eq!(
        decision.decisions[0].reason(),
        pb::DecisionReason::SubjectDisabled
    );
    app.users()
        .set_user_state(as_admin(state(pb::UserState::Enabled)))
        .await
        .unwrap();
    assert!(app.login("alice", "alice-password").await.is_ok());
    // Nobody can disable themselves, nor the admin user.
    assert_code(
        app.users()
            .set_user_state(as_admin(pb::SetUserStateRequest {
                account: "admin".into(),
                username: "admin".into(),
                state: pb::UserState::Disabled.into(),
            }))
            .await,
        Code::FailedPrecondition,
    );
    assert_invalid(
        app.users()
            .set_user_state(as_admin(state(pb::UserState::Unspecified)))
            .await,
        "state",
    );
}

async fn account_user_admins_are_confined_to_their_account(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_account("other").await;
    app.create_user("acme", "una", "una-password", &["account-user-admin"])
        .await;
    app.create_user("other", "olaf", "olaf-password", &[]).await;
    let as_una = |m| as_user("una", "una-password", m);

    // In her account: users and role members.
    let made = app
        .users()
        .create_user(as_una(new_user("acme", "newbie", "newbie-password")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.account, "acme");
    // Without an account field, the caller's own account is meant.
    app.users()
        .create_user(as_una(new_user("", "second", "second-password")))
        .await
        .unwrap();
    let listed = app
        .users()
        .list_users(as_user(
            "una",
            "una-password",
            pb::ListUsersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.users.len(), 3);
    let read = app
        .users()
        .get_user(as_user(
            "una",
            "una-password",
            pb::GetUserRequest {
                account: "acme".into(),
                username: "newbie".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.username, "newbie");
    app.roles()
        .add_role_member(as_user(
            "una",
            "una-password",
            pb::AddRoleMemberRequest {
                role: "read-write".into(),
                username: "newbie".into(),
                account: "acme".into(),
            },
        ))
        .await
        .unwrap();

    // Elsewhere: nothing.
    assert_code(
        app.users()
            .create_user(as_una(new_user("other", "sneaky", "sneaky-password")))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.users()
            .create_user(in_account(
                as_una(new_user("", "sneaky", "sneaky-password")),
                "other",
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.users()
            .list_users(as_user(
                "una",
                "una-password",
                pb::ListUsersRequest {
                    account: "other".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.users()
            .get_user(as_user(
                "una",
                "una-password",
                pb::GetUserRequest {
                    account: "other".into(),
                    username: "olaf".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.users()
            .list_all_users(as_user(
                "una",
                "una-password",
                pb::ListAllUsersRequest::default(),
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.roles()
            .add_role_member(as_user(
                "una",
                "una-password",
                pb::AddRoleMemberRequest {
                    role: "read-write".into(),
                    username: "una".into(),
                    account: "other".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    // A field that contradicts the account context is refused.
    assert_invalid(
        app.users()
            .list_users(in_account(
                as_user(
                    "una",
                    "una-password",
                    pb::ListUsersRequest {
                        account: "acme".into(),
                        ..Default::default()
                    },
                ),
                "other",
            ))
            .await,
        "account",
    );
}

async fn users_without_a_role_see_only_themselves(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-write"])
        .await;
    app.create_user("acme", "bob", "bob-password", &[]).await;
    let own = app
        .users()
        .get_user(as_user(
            "bob",
            "bob-password",
            pb::GetUserRequest {
                account: "acme".into(),
                username: "bob".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.username, "bob");
    // read-write grants no identity actions.
    assert_code(
        app.users()
            .get_user(as_user(
                "alice",
                "alice-password",
                pb::GetUserRequest {
                    account: "acme".into(),
                    username: "bob".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.users()
            .create_user(as_user(
                "alice",
                "alice-password",
                new_user("acme", "eve", "eve-password"),
            ))
            .await,
        Code::PermissionDenied,
    );
    // Bob sees himself only: not alice, and no listing.
    assert_code(
        app.users()
            .get_user(as_user(
                "bob",
                "bob-password",
                pb::GetUserRequest {
                    account: "acme".into(),
                    username: "alice".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.users()
            .list_users(as_user(
                "bob",
                "bob-password",
                pb::ListUsersRequest {
                    account: "acme".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
}

/// No user may look like another: usernames differing only by case, and
/// `admin` or `anchore-system` in any case, are refused to a tenant's user
/// administrator and to the global one; an IdP name is a name, with no
/// invisible or direction-changing character. Look-alikes that existed
/// before the rule keep working and are found by the documented query.
async fn look_alike_names_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_account("beta").await;
    app.create_user("acme", "uadmin", "uadmin-password", &["account-user-admin"])
        .await;
    app.create_user("beta", "alice", "alice-password", &["read-only"])
        .await;
    let mut users = app.users();
    for name in [
        "Admin",
        "ADMIN",
        "admin",
        "Anchore-System",
        "anchore-system",
    ] {
        let as_uadmin = as_user(
            "uadmin",
            "uadmin-password",
            new_user("acme", name, "password1"),
        );
        assert_invalid(users.create_user(as_uadmin).await, "username");
        assert_invalid(
            users
                .create_user(as_admin(new_user("acme", name, "password1")))
                .await,
            "username",
        );
    }
    for name in ["Alice", "ALICE", "alicE", "Uadmin"] {
        let as_uadmin = as_user(
            "uadmin",
            "uadmin-password",
            new_user("acme", name, "password1"),
        );
        assert_code(users.create_user(as_uadmin).await, Code::AlreadyExists);
    }
    assert_code(
        users
            .create_user(as_admin(new_user("beta", "ALICE", "password1")))
            .await,
        Code::AlreadyExists,
    );
    // Concurrent look-alikes: the database's index decides, one wins.
    let racers = ["Racer", "racer", "RACER", "rAcEr"].map(|name| {
        let mut users = app.users();
        tokio::spawn(async move {
            code(
                users
                    .create_user(as_admin(new_user("acme", name, "password1")))
                    .await,
            )
        })
    });
    let mut codes = Vec::new();
    for racer in racers {
        codes.push(racer.await.unwrap());
    }
    codes.sort_by_key(|c| *c as i32);
    assert_eq!(
        codes,
        [
            Code::Ok,
            Code::AlreadyExists,
            Code::AlreadyExists,
            Code::AlreadyExists
        ]
    );
    // IdP names.
    for idp in [
        "okta\u{202e}",
        "ok\u{200b}ta",
        "okta\u{2066}x",
        "ok ta\n",
        "\u{feff}okta",
    ] {
        let request = pb::CreateUserRequest {
            account: "acme".into(),
            username: "sso-user".into(),
            r#type: pb::UserType::Saml.into(),
            idp_name: idp.into(),
            ..Default::default()
        };
        assert_invalid(users.create_user(as_admin(request)).await, "idp_name");
    }
    let request = pb::CreateUserRequest {
        account: "acme".into(),
        username: "sso-user".into(),
        r#type: pb::UserType::Saml.into(),
        idp_name: "okta-prod".into(),
        ..Default::default()
    };
    users.create_user(as_admin(request)).await.unwrap();
    // A look-alike from before the rule (as the migration leaves one: its
    // folded name NULL) still signs in, beside the user it resembles, and
    // the documented query finds it.
    app.create_user("acme", "erin", "erin-password", &["read-only"])
        .await;
    app.create_user("acme", "erin2", "erin2-password", &["read-only"])
        .await;
    let conn = sea_orm::Database::connect(&app.db.url).await.unwrap();
    conn.execute_unprepared(
        "UPDATE users SET username = 'Erin', folded_username = NULL WHERE username = 'erin2'",
    )
    .await
    .unwrap();
    app.login("Erin", "erin2-password").await.unwrap();
    app.login("erin", "erin-password").await.unwrap();
    let found = conn
        .query_all_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT username, account_name FROM users WHERE folded_username IS NULL",
        ))
        .await
        .unwrap();
    let found: Vec<String> = found
        .iter()
        .map(|row| row.try_get::<String>("", "username").unwrap())
        .collect();
    assert_eq!(found, ["Erin"]);
}

dual!(
    look_alike_names_are_refused,
    users_are_created_read_and_listed_with_their_roles,
    bad_user_input_is_refused_naming_the_field,
    deleting_users_respects_the_refusals,
    passwords_are_replaced_by_admins_or_their_owner,
    disabling_a_user_takes_effect_on_the_next_check,
    account_user_admins_are_confined_to_their_account,
    users_without_a_role_see_only_themselves,
);
