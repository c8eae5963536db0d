use authzd::pb;
use tonic::Code;

use crate::dual;
use crate::support::*;

fn members(name: &str, usernames: &[&str]) -> pb::GroupMembersRequest {
    pb::GroupMembersRequest {
        name: name.into(),
        usernames: usernames.iter().map(|u| u.to_string()).collect(),
    }
}

fn grants(name: &str, pairs: &[(&str, &str)]) -> pb::GroupGrantsRequest {
    pb::GroupGrantsRequest {
        name: name.into(),
        grants: pairs
            .iter()
            .map(|(role, account)| pb::GroupGrant {
                role: role.to_string(),
                account: account.to_string(),
            })
            .collect(),
    }
}

async fn groups_are_created_read_listed_updated_and_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let create = |name: &str| pb::CreateGroupRequest {
        name: name.into(),
        description: "builders".into(),
    };
    let made = app
        .groups()
        .create_group(as_admin(create("devs")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.description, "builders");
    app.groups()
        .create_group(as_admin(create("ops")))
        .await
        .unwrap();
    assert_code(
        app.groups().create_group(as_admin(create("devs"))).await,
        Code::AlreadyExists,
    );
    assert_invalid(
        app.groups().create_group(as_admin(create("x"))).await,
        "name",
    );
    assert_invalid(
        app.groups()
            .create_group(as_admin(pb::CreateGroupRequest {
                name: "long".into(),
                description: "d".repeat(1025),
            }))
            .await,
        "description",
    );
    let listed = app
        .groups()
        .list_groups(as_admin(pb::ListGroupsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .groups
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        ["devs", "ops"]
    );
    let updated = app
        .groups()
        .update_group(as_admin(pb::UpdateGroupRequest {
            name: "devs".into(),
            description: "developers".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.description, "developers");
    let got = app
        .groups()
        .get_group(as_admin(pb::GetGroupRequest {
            name: "devs".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.id, made.id);
    app.groups()
        .delete_group(as_admin(pb::DeleteGroupRequest {
            name: "devs".into(),
        }))
        .await
        .unwrap();
    assert_code(
        app.groups()
            .get_group(as_admin(pb::GetGroupRequest {
                name: "devs".into(),
            }))
            .await,
        Code::NotFound,
    );
}

async fn members_inherit_the_grants_of_their_groups(backend: Backend) {
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
    assert!(
        !app.authorize("alice", "acme", &["createImage"])
            .await
            .allowed
    );

    app.groups()
        .add_group_grants(as_admin(grants("builders", &[("read-write", "acme")])))
        .await
        .unwrap();
    let group = app
        .groups()
        .add_group_members(as_admin(members("builders", &["alice"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(group.members, ["alice"]);
    assert_eq!(group.grants.len(), 1);

    let decision = app.authorize("alice", "acme", &["createImage"]).await;
    assert!(decision.allowed);
    assert_eq!(decision.decisions[0].role, "read-write");
    assert_eq!(decision.decisions[0].group, "builders");
    let principal = app.login("alice", "alice-password").await.unwrap();
    assert_eq!(principal.grants.len(), 1);
    assert_eq!(principal.grants[0].group, "builders");
    let user = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "acme".into(),
            username: "alice".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.roles[0].group, "builders");

    app.groups()
        .remove_group_members(as_admin(members("builders", &["alice"])))
        .await
        .unwrap();
    assert!(
        !app.authorize("alice", "acme", &["createImage"])
            .await
            .allowed
    );
    app.groups()
        .add_group_members(as_admin(members("builders", &["alice"])))
        .await
        .unwrap();
    assert!(
        app.authorize("alice", "acme", &["createImage"])
            .await
            .allowed
    );
    app.groups()
        .remove_group_grants(as_admin(grants("builders", &[("read-write", "acme")])))
        .await
        .unwrap();
    assert!(
        !app.authorize("alice", "acme", &["createImage"])
            .await
            .allowed
    );
    app.groups()
        .add_group_grants(as_admin(grants("builders", &[("read-write", "acme")])))
        .await
        .unwrap();
    assert!(
        app.authorize("alice", "acme", &["createImage"])
            .await
            .allowed
    );
    app.groups()
        .delete_group(as_admin(pb::DeleteGroupRequest {
            name: "builders".into(),
        }))
        .await
        .unwrap();
    assert!(
        !app.authorize("alice", "acme", &["createImage"])
            .await
            .allowed
    );
}

async fn a_change_naming_a_missing_user_changes_nothing(backend: Backend) {
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
    assert_code(
        app.groups()
            .add_group_members(as_admin(members("builders", &["alice", "ghost"])))
            .await,
        Code::NotFound,
    );
    assert_code(
        app.groups()
            .add_group_grants(as_admin(grants(
                "builders",
                &[("read-only", "acme"), ("read-only", "nowhere")],
            )))
            .await,
        Code::NotFound,
    );
    let group = app
        .groups()
        .get_group(as_admin(pb::GetGroupRequest {
            name: "builders".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(group.members.is_empty());
    assert!(group.grants.is_empty());
    assert_invalid(
        app.groups()
            .add_group_grants(as_admin(grants(
                "builders",
                &[("read-only", "acme"), ("root", "acme")],
            )))
            .await,
        "grants[1].role",
    );
    assert_invalid(
        app.groups()
            .add_group_members(as_admin(members("builders", &[])))
            .await,
        "usernames",
    );
    assert_code(
        app.groups()
            .add_group_members(as_admin(members("nope", &["alice"])))
            .await,
        Code::NotFound,
    );
}

async fn only_global_admins_manage_groups(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user(
        "acme",
        "boss",
        "boss-password",
        &["full-control", "account-user-admin"],
    )
    .await;
    assert_code(
        app.groups()
            .create_group(as_user(
                "boss",
                "boss-password",
                pb::CreateGroupRequest {
                    name: "mine".into(),
                    description: String::new(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        app.groups()
            .list_groups(as_user(
                "boss",
                "boss-password",
                pb::ListGroupsRequest::default(),
            ))
            .await,
        Code::PermissionDenied,
    );
}

dual!(
    groups_are_created_read_listed_updated_and_deleted,
    members_inherit_the_grants_of_their_groups,
    a_change_naming_a_missing_user_changes_nothing,
    only_global_admins_manage_groups,
);
