//! The gate and the admin RPCs are two doors to one decision: for every
//! route whose operation has an RPC counterpart, both are asked the same
//! question by the same principals and must give the same answer. A row
//! decided in the wrong domain (as `PUT /accounts/{account_name}/state`
//! once was: in the account, where `SetAccountState` decides in the system
//! domain) shows up here as a principal one door lets through and the
//! other refuses.

use authzd::pb;
use tonic::{Code, Request, Status};

use crate::dual;
use crate::ext_authz::{check, http};
use crate::support::*;

/// What one principal sends: the same `authorization` to both doors.
struct Principal {
    name: &'static str,
    authorization: String,
    account: &'static str,
    username: &'static str,
}

fn authed<T>(authorization: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", authorization.parse().unwrap());
    request
}

/// The fixtures one question acts on: made fresh for each question, so a
/// question one principal is allowed (a delete) does not change the next.
struct Targets {
    user: String,
    key: String,
    group: String,
    group_id: String,
    fresh: String,
}

/// How the RPC answered: allowed (whatever it then found) or refused.
fn allowed<T>(result: Result<tonic::Response<T>, Status>) -> bool {
    match result {
        Ok(_) => true,
        Err(s) => !matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated),
    }
}

/// The operations with an RPC counterpart: (method, path template, RPC).
const OPERATIONS: &[(&str, &str, &str)] = &[
    ("GET", "/account", "GetAccount (own)"),
    ("GET", "/accounts", "ListAccounts"),
    ("POST", "/accounts", "CreateAccount"),
    ("GET", "/accounts/users", "ListAllUsers"),
    // acme, where tenant principals hold roles: asked about an account
    // nobody but the admin holds a role in, both doors refuse everyone and
    // a row decided in the account domain goes unnoticed.
    ("PUT", "/accounts/acme/state", "SetAccountState"),
    ("GET", "/accounts/acme", "GetAccount"),
    ("PUT", "/accounts/acme", "UpdateAccount"),
    // acme again: enabled, so an allowed delete is refused as a
    // precondition and the account stays for the next question.
    ("DELETE", "/accounts/acme", "DeleteAccount"),
    ("GET", "/accounts/acme/users", "ListUsers"),
    ("POST", "/accounts/acme/users", "CreateUser"),
    ("GET", "/accounts/acme/users/{user}", "GetUser"),
    ("DELETE", "/accounts/acme/users/{user}", "DeleteUser"),
    ("GET", "/accounts/acme/users/{user}/credentials", "GetUser"),
    (
        "POST",
        "/accounts/acme/users/{user}/credentials",
        "SetPassword",
    ),
    ("GET", "/accounts/acme/users/{user}/api-keys", "ListApiKeys"),
    (
        "POST",
        "/accounts/acme/users/{user}/api-keys",
        "CreateApiKey",
    ),
    (
        "GET",
        "/accounts/acme/users/{user}/api-keys/{key}",
        "GetApiKey",
    ),
    (
        "PATCH",
        "/accounts/acme/users/{user}/api-keys/{key}",
        "UpdateApiKey",
    ),
    (
        "DELETE",
        "/accounts/acme/users/{user}/api-keys/{key}",
        "DeleteApiKey",
    ),
    ("GET", "/user/api-keys", "ListApiKeys (own)"),
    ("POST", "/user/api-keys", "CreateApiKey (own)"),
    ("GET", "/user/api-keys/missing-key", "GetApiKey (own)"),
    ("DELETE", "/user/api-keys/missing-key", "DeleteApiKey (own)"),
    ("GET", "/rbac-manager/roles", "ListRoles"),
    ("GET", "/rbac-manager/roles/read-only", "GetRole"),
    ("GET", "/system/user-groups", "ListGroups"),
    ("POST", "/system/user-groups", "CreateGroup"),
    ("GET", "/system/user-groups/{group}", "GetGroup"),
    ("PATCH", "/system/user-groups/{group}", "UpdateGroup"),
    ("DELETE", "/system/user-groups/{group}", "DeleteGroup"),
    (
        "POST",
        "/system/user-groups/{group}/users",
        "AddGroupMembers",
    ),
    (
        "DELETE",
        "/system/user-groups/{group}/users",
        "RemoveGroupMembers",
    ),
    (
        "POST",
        "/system/user-groups/{group}/roles",
        "AddGroupGrants",
    ),
    (
        "DELETE",
        "/system/user-groups/{group}/roles",
        "RemoveGroupGrants",
    ),
];

async fn rpc(app: &TestApp, rpc: &str, p: &Principal, t: &Targets) -> bool {
    let a = p.authorization.as_str();
    let grants = vec![pb::GroupGrant {
        role: "read-only".into(),
        account: "beta".into(),
    }];
    match rpc {
        "GetAccount (own)" => allowed(
            app.accounts()
                .get_account(authed(
                    a,
                    pb::GetAccountRequest {
                        name: p.account.into(),
                    },
                ))
                .await,
        ),
        "ListAccounts" => allowed(
            app.accounts()
                .list_accounts(authed(a, pb::ListAccountsRequest::default()))
                .await,
        ),
        "CreateAccount" => allowed(
            app.accounts()
                .create_account(authed(
                    a,
                    pb::CreateAccountRequest {
                        name: t.fresh.clone(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "ListAllUsers" => allowed(
            app.users()
                .list_all_users(authed(a, pb::ListAllUsersRequest::default()))
                .await,
        ),
        "SetAccountState" => allowed(
            app.accounts()
                .set_account_state(authed(
                    a,
                    // Enabling an enabled account: allowed changes nothing
                    // the next question relies on.
                    pb::SetAccountStateRequest {
                        name: "acme".into(),
                        state: pb::AccountState::Enabled.into(),
                    },
                ))
                .await,
        ),
        "GetAccount" => allowed(
            app.accounts()
                .get_account(authed(
                    a,
                    pb::GetAccountRequest {
                        name: "acme".into(),
                    },
                ))
                .await,
        ),
        "UpdateAccount" => allowed(
            app.accounts()
                .update_account(authed(
                    a,
                    pb::UpdateAccountRequest {
                        name: "acme".into(),
                        email: "ops@acme.example".into(),
                    },
                ))
                .await,
        ),
        "DeleteAccount" => allowed(
            app.accounts()
                .delete_account(authed(
                    a,
                    pb::DeleteAccountRequest {
                        name: "acme".into(),
                    },
                ))
                .await,
        ),
        "ListUsers" => allowed(
            app.users()
                .list_users(authed(
                    a,
                    pb::ListUsersRequest {
                        account: "acme".into(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "CreateUser" => allowed(
            app.users()
                .create_user(authed(
                    a,
                    pb::CreateUserRequest {
                        account: "acme".into(),
                        username: t.fresh.clone(),
                        password: "a-long-enough-password".into(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "GetUser" => allowed(
            app.users()
                .get_user(authed(
                    a,
                    pb::GetUserRequest {
                        account: "acme".into(),
                        username: t.user.clone(),
                    },
                ))
                .await,
        ),
        "DeleteUser" => allowed(
            app.users()
                .delete_user(authed(
                    a,
                    pb::DeleteUserRequest {
                        account: "acme".into(),
                        username: t.user.clone(),
                    },
                ))
                .await,
        ),
        "SetPassword" => allowed(
            app.users()
                .set_password(authed(
                    a,
                    pb::SetPasswordRequest {
                        account: "acme".into(),
                        username: t.user.clone(),
                        password: "another-long-password".into(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "ListApiKeys" | "ListApiKeys (own)" => {
            let (account, username) = owner(rpc, p, t);
            allowed(
                app.keys()
                    .list_api_keys(authed(
                        a,
                        pb::ListApiKeysRequest {
                            account,
                            username,
                            ..Default::default()
                        },
                    ))
                    .await,
            )
        }
        "CreateApiKey" | "CreateApiKey (own)" => {
            let (account, username) = owner(rpc, p, t);
            allowed(
                app.keys()
                    .create_api_key(authed(
                        a,
                        pb::CreateApiKeyRequest {
                            account,
                            username,
                            name: t.fresh.clone(),
                            expires_at: in_days(&app.core, 30),
                            ..Default::default()
                        },
                    ))
                    .await,
            )
        }
        "GetApiKey" | "GetApiKey (own)" => {
            let (account, username) = owner(rpc, p, t);
            allowed(
                app.keys()
                    .get_api_key(authed(
                        a,
                        pb::GetApiKeyRequest {
                            account,
                            username,
                            name: key_name(rpc, t),
                        },
                    ))
                    .await,
            )
        }
        "UpdateApiKey" => allowed(
            app.keys()
                .update_api_key(authed(
                    a,
                    pb::UpdateApiKeyRequest {
                        account: "acme".into(),
                        username: t.user.clone(),
                        name: t.key.clone(),
                        description: Some("renamed".into()),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "DeleteApiKey" | "DeleteApiKey (own)" => {
            let (account, username) = owner(rpc, p, t);
            allowed(
                app.keys()
                    .delete_api_key(authed(
                        a,
                        pb::DeleteApiKeyRequest {
                            account,
                            username,
                            name: key_name(rpc, t),
                        },
                    ))
                    .await,
            )
        }
        "ListRoles" => allowed(
            app.roles()
                .list_roles(authed(a, pb::ListRolesRequest {}))
                .await,
        ),
        "GetRole" => allowed(
            app.roles()
                .get_role(authed(
                    a,
                    pb::GetRoleRequest {
                        name: "read-only".into(),
                    },
                ))
                .await,
        ),
        "ListGroups" => allowed(
            app.groups()
                .list_groups(authed(a, pb::ListGroupsRequest::default()))
                .await,
        ),
        "CreateGroup" => allowed(
            app.groups()
                .create_group(authed(
                    a,
                    pb::CreateGroupRequest {
                        name: t.fresh.clone(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "GetGroup" => allowed(
            app.groups()
                .get_group(authed(
                    a,
                    pb::GetGroupRequest {
                        name: t.group.clone(),
                    },
                ))
                .await,
        ),
        "UpdateGroup" => allowed(
            app.groups()
                .update_group(authed(
                    a,
                    pb::UpdateGroupRequest {
                        name: t.group.clone(),
                        description: "changed".into(),
                    },
                ))
                .await,
        ),
        "DeleteGroup" => allowed(
            app.groups()
                .delete_group(authed(
                    a,
                    pb::DeleteGroupRequest {
                        name: t.group.clone(),
                    },
                ))
                .await,
        ),
        "AddGroupMembers" | "RemoveGroupMembers" => {
            let request = || {
                authed(
                    a,
                    pb::GroupMembersRequest {
                        name: t.group.clone(),
                        usernames: vec![t.user.clone()],
                    },
                )
            };
            if rpc == "AddGroupMembers" {
                allowed(app.groups().add_group_members(request()).await)
            } else {
                allowed(app.groups().remove_group_members(request()).await)
            }
        }
        "AddGroupGrants" | "RemoveGroupGrants" => {
            let request = || {
                authed(
                    a,
                    pb::GroupGrantsRequest {
                        name: t.group.clone(),
                        grants: grants.clone(),
                    },
                )
            };
            if rpc == "AddGroupGrants" {
                allowed(app.groups().add_group_grants(request()).await)
            } else {
                allowed(app.groups().remove_group_grants(request()).await)
            }
        }
        other => panic!("no RPC for {other}"),
    }
}

/// The owner a key RPC names: the fixture user, or the caller (`own`).
fn owner(rpc: &str, p: &Principal, t: &Targets) -> (String, String) {
    if rpc.ends_with("(own)") {
        (p.account.into(), p.username.into())
    } else {
        ("acme".into(), t.user.clone())
    }
}

fn key_name(rpc: &str, t: &Targets) -> String {
    if rpc.ends_with("(own)") {
        "missing-key".into()
    } else {
        t.key.clone()
    }
}

async fn parity(backend: Backend) {
    let app = spawn_app(backend).await;
    for account in ["acme", "beta", "gamma"] {
        app.create_account(account).await;
    }
    app.create_user("acme", "uadmin", "uadmin-password", &["account-user-admin"])
        .await;
    app.create_user("acme", "fcuser", "fcuser-password", &["full-control"])
        .await;
    app.create_user("acme", "bob", "bob-password", &["read-only"])
        .await;
    app.create_user("beta", "olga", "olga-password", &["full-control"])
        .await;
    // Full control of acme through a group only.
    app.create_user("gamma", "gina", "gina-password", &[]).await;
    app.groups()
        .create_group(as_admin(pb::CreateGroupRequest {
            name: "acme-operators".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    app.groups()
        .add_group_grants(as_admin(pb::GroupGrantsRequest {
            name: "acme-operators".into(),
            grants: vec![pb::GroupGrant {
                role: "full-control".into(),
                account: "acme".into(),
            }],
        }))
        .await
        .unwrap();
    app.groups()
        .add_group_members(as_admin(pb::GroupMembersRequest {
            name: "acme-operators".into(),
            usernames: vec!["gina".into()],
        }))
        .await
        .unwrap();
    let key = app.create_key("acme", "fcuser", "fc-key", 30).await;
    // Tokens for the password principals: the same decision as Basic, at
    // a fraction of the hashing.
    let mut principals = vec![Principal {
        name: "global admin",
        authorization: basic("admin", ADMIN_PASSWORD),
        account: "admin",
        username: "admin",
    }];
    for (name, username, account) in [
        ("account user admin", "uadmin", "acme"),
        ("full control", "fcuser", "acme"),
        ("full control through a group", "gina", "gamma"),
        ("read-only", "bob", "acme"),
        ("another tenant's full control", "olga", "beta"),
    ] {
        let token = app
            .grant(username, &format!("{username}-password"))
            .await
            .unwrap()
            .access_token;
        principals.push(Principal {
            name,
            authorization: format!("Bearer {token}"),
            account,
            username,
        });
    }
    principals.push(Principal {
        name: "full control's API key",
        authorization: basic("_api_key", &key),
        account: "acme",
        username: "fcuser",
    });

    let mut n = 0;
    let mut differences = Vec::new();
    let mut allowed_somewhere = 0;
    for (method, template, call) in OPERATIONS {
        for p in &principals {
            n += 1;
            let t = targets(&app, n).await;
            let path = template
                .replace("{user}", &t.user)
                .replace("{key}", &t.key)
                .replace("{group}", &t.group_id);
            let gate = check(
                &app,
                http(method, &path, &[("authorization", &p.authorization)]),
            )
            .await;
            assert!(
                matches!(gate.status, 200 | 403),
                "{method} {path} as {}: {gate:?}",
                p.name
            );
            let by_gate = gate.status == 200;
            let by_rpc = rpc(&app, call, p, &t).await;
            allowed_somewhere += usize::from(by_rpc);
            if by_gate != by_rpc {
                differences.push(format!(
                    "{method} {template} / {call} as {}: gate {}, RPC {}",
                    p.name,
                    if by_gate { "allows" } else { "refuses" },
                    if by_rpc { "allows" } else { "refuses" },
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "the gate and the RPCs disagree:\n{}",
        differences.join("\n")
    );
    // Both doors said yes and no: the comparison compared something.
    assert!(allowed_somewhere > OPERATIONS.len(), "{allowed_somewhere}");
    assert!(allowed_somewhere < n, "{allowed_somewhere} of {n}");
}

/// A fresh user in acme (read-only there) with a key and a fresh group,
/// for one question.
async fn targets(app: &TestApp, n: usize) -> Targets {
    let user = format!("victim{n}");
    app.create_user("acme", &user, "victim-password", &["read-only"])
        .await;
    app.create_key("acme", &user, "victim-key", 30).await;
    let group = format!("group{n}");
    let group_id = app
        .groups()
        .create_group(as_admin(pb::CreateGroupRequest {
            name: group.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .id;
    Targets {
        user,
        key: "victim-key".into(),
        group,
        group_id,
        fresh: format!("fresh{n}"),
    }
}

dual!(parity);
