use authzd::pb;
use tonic::Code;

use crate::dual;
use crate::support::*;

fn member(role: &str, username: &str, account: &str) -> pb::AddRoleMemberRequest {
    pb::AddRoleMemberRequest {
        role: role.into(),
        username: username.into(),
        account: account.into(),
    }
}

async fn the_predefined_roles_are_listed_with_their_actions(backend: Backend) {
    let app = spawn_app(backend).await;
    let roles = app
        .roles()
        .list_roles(as_admin(pb::ListRolesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .roles;
    let names: Vec<_> = roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "account-user-admin",
            "full-control",
            "image-analyzer",
            "inventory-agent",
            "policy-editor",
            "read-only",
            "read-write",
        ]
    );
    let get = |name: &str| pb::GetRoleRequest { name: name.into() };
    let read_only = app
        .roles()
        .get_role(as_admin(get("read-only")))
        .await
        .unwrap()
        .into_inner();
    assert!(read_only.actions.iter().any(|a| a == "listImages"));
    assert!(!read_only.actions.iter().any(|a| a == "createImage"));
    let uadmin = app
        .roles()
        .get_role(as_admin(get("account-user-admin")))
        .await
        .unwrap()
        .into_inner();
    for action in ["createUser", "deleteRoleMember", "createApiKey"] {
        assert!(uadmin.actions.iter().any(|a| a == action), "{action}");
    }
    assert!(!uadmin.actions.iter().any(|a| a == "listImages"));
    let full = app
        .roles()
        .get_role(as_admin(get("full-control")))
        .await
        .unwrap()
        .into_inner();
    assert!(full.actions.len() > read_only.actions.len());
    assert!(
        !full.actions.iter().any(|a| a == "createAccount"),
        "system actions are not grantable"
    );
    assert_code(
        app.roles().get_role(as_admin(get("superuser"))).await,
        Code::NotFound,
    );
}

async fn role_members_are_added_listed_and_removed(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_account("beta").await;
    app.create_user("acme", "alice", "alice-password", &[])
        .await;
    app.create_user("beta", "bob", "bob-password", &[]).await;
    app.create_user("beta", "bea", "bea-password", &[]).await;
    for (user, account) in [
        ("alice", "acme"),
        ("bob", "acme"),
        ("bea", "beta"),
        ("alice", "beta"),
    ] {
        let added = app
            .roles()
            .add_role_member(as_admin(member("read-write", user, account)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(added.account, account);
    }
    assert_code(
        app.roles()
            .add_role_member(as_admin(member("read-write", "alice", "acme")))
            .await,
        Code::AlreadyExists,
    );
    assert_code(
        app.roles()
            .add_role_member(as_admin(member("read-write", "ghost", "acme")))
            .await,
        Code::NotFound,
    );
    assert_code(
        app.roles()
            .add_role_member(as_admin(member("superuser", "alice", "acme")))
            .await,
        Code::NotFound,
    );
    assert_code(
        app.roles()
            .add_role_member(as_admin(member("read-write", "alice", "nowhere")))
            .await,
        Code::NotFound,
    );

    let list = |account: &str, size: i32, token: String| pb::ListRoleMembersRequest {
        role: "read-write".into(),
        account: account.into(),
        page_size: size,
        page_token: token,
    };
    let in_acme = app
        .roles()
        .list_role_members(as_admin(list("acme", 0, String::new())))
        .await
        .unwrap()
        .into_inner()
        .members;
    let who: Vec<_> = in_acme
        .iter()
        .map(|m| (m.username.as_str(), m.user_account.as_str()))
        .collect();
    assert_eq!(who, [("alice", "acme"), ("bob", "beta")]);

    // Everything, one by one across the (account, username) key.
    let mut token = String::new();
    let mut all = Vec::new();
    loop {
        let page = app
            .roles()
            .list_role_members(as_admin(list("", 1, token)))
            .await
            .unwrap()
            .into_inner();
        all.extend(
            page.members
                .into_iter()
                .map(|m| format!("{}/{}", m.account, m.username)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(all, ["acme/alice", "acme/bob", "beta/alice", "beta/bea"]);

    let remove = |user: &str, account: &str| pb::RemoveRoleMemberRequest {
        role: "read-write".into(),
        username: user.into(),
        account: account.into(),
    };
    app.roles()
        .remove_role_member(as_admin(remove("bob", "acme")))
        .await
        .unwrap();
    assert_code(
        app.roles()
            .remove_role_member(as_admin(remove("bob", "acme")))
            .await,
        Code::NotFound,
    );
    let in_acme = app
        .roles()
        .list_role_members(as_admin(list("acme", 0, String::new())))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(in_acme.len(), 1);
}

async fn removing_a_role_takes_effect_on_the_next_check(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-write"])
        .await;
    assert!(
        app.authorize("alice", "acme", &["createImage"])
            .await
            .allowed
    );
    app.roles()
        .remove_role_member(as_admin(pb::RemoveRoleMemberRequest {
            role: "read-write".into(),
            username: "alice".into(),
            account: "acme".into(),
        }))
        .await
        .unwrap();
    let after = app.authorize("alice", "acme", &["createImage"]).await;
    assert!(!after.allowed);
    assert_eq!(after.decisions[0].reason(), pb::DecisionReason::NoGrant);
}

async fn a_role_in_another_account_applies_only_there(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_account("beta").await;
    app.create_user("beta", "bob", "bob-password", &[]).await;
    app.roles()
        .add_role_member(as_admin(member("read-only", "bob", "acme")))
        .await
        .unwrap();
    let in_acme = app.authorize("bob", "acme", &["listImages"]).await;
    assert!(in_acme.allowed);
    assert_eq!(in_acme.account, "acme");
    let at_home = app.authorize("bob", "", &["listImages"]).await;
    assert_eq!(at_home.account, "beta");
    assert!(!at_home.allowed);
}

async fn role_reads_need_a_role_in_the_account(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-write"])
        .await;
    app.create_user("acme", "una", "una-password", &["account-user-admin"])
        .await;
    assert_code(
        app.roles()
            .list_roles(as_user("alice", "alice-password", pb::ListRolesRequest {}))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.roles()
            .list_roles(as_user("una", "una-password", pb::ListRolesRequest {}))
            .await,
        Code::Ok,
    );
    // Una lists the members of her own account only, even without a filter.
    let members = app
        .roles()
        .list_role_members(as_user(
            "una",
            "una-password",
            pb::ListRoleMembersRequest {
                role: "read-write".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    assert_code(
        app.roles()
            .list_role_members(as_user(
                "una",
                "una-password",
                pb::ListRoleMembersRequest {
                    role: "read-write".into(),
                    account: "admin".into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
}

dual!(
    the_predefined_roles_are_listed_with_their_actions,
    role_members_are_added_listed_and_removed,
    removing_a_role_takes_effect_on_the_next_check,
    a_role_in_another_account_applies_only_there,
    role_reads_need_a_role_in_the_account,
);
