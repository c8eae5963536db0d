//! SCIM 2.0 provisioning at /scim/v2/{idp}/: the tokens, the request
//! shapes Okta and Entra ID send (each exactly as they send it), errors
//! as SCIM documents, deactivation on every replica, and scim2-tester's
//! conformance checks against the release binary.

use std::time::{Duration, Instant};

use authzd::pb;
use authzd::pb::identity_provider_service_client::IdentityProviderServiceClient;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

use crate::console::{exchange, header, status};
use crate::dual;
use crate::identity_providers::{certificate, metadata};
use crate::support::*;

fn idps(app: &TestApp) -> IdentityProviderServiceClient<Channel> {
    IdentityProviderServiceClient::new(app.channel.clone())
}

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| {
        c.user_authentication.allow_api_keys_for_saml_users = true;
    })
    .await
}

/// The SAML provider `name` (users in `engineering` as read-only), and a
/// SCIM token for it.
async fn provider(app: &TestApp, name: &str) -> String {
    idps(app)
        .create_identity_provider(as_admin(pb::CreateIdentityProviderRequest {
            name: name.into(),
            idp_metadata_xml: metadata(&format!("https://{name}.example/saml"), &certificate()),
            default_account: "engineering".into(),
            default_role: "read-only".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    token(app, name).await
}

async fn token(app: &TestApp, idp: &str) -> String {
    idps(app)
        .create_scim_token(as_admin(pb::CreateScimTokenRequest { idp: idp.into() }))
        .await
        .unwrap()
        .into_inner()
        .value
}

/// One SCIM exchange: (status, head, body as JSON or Null).
pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
    extra: &[&str],
) -> (u16, String, Value) {
    let host = app.http.to_string();
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in extra {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(&body);
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let (head, body) = exchange(tcp, text).await;
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    (status(&head), head, json)
}

/// A SCIM error document with this status and `scimType`, and nothing of
/// the store's in it.
fn assert_scim_error(got: &(u16, String, Value), status: u16, scim_type: Option<&str>) {
    let (code, head, body) = got;
    assert_eq!(*code, status, "{head}\n{body}");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], json!(status.to_string()), "{body}");
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
    let text = body.to_string().to_lowercase();
    for leak in ["sql", "constraint", "panic", "database error"] {
        assert!(!text.contains(leak), "{leak} in {body}");
    }
}

fn enc(filter: &str) -> String {
    filter
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The user's API key, made by an administrator.
async fn key_for(app: &TestApp, username: &str) -> String {
    app.create_key("engineering", username, &format!("{username}-key"), 30)
        .await
}

async fn scim_events(app: &TestApp, idp: &str) -> Vec<pb::AuditEvent> {
    pb::audit_service_client::AuditServiceClient::new(app.channel.clone())
        .list_events(as_admin(pb::ListEventsRequest {
            actor: format!("scim:{idp}"),
            kind: "change".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events
}

dual!(
    tokens_are_shown_once_and_open_only_their_providers_endpoint,
    okta_provisions_and_deprovisions,
    entra_provisions_and_deprovisions,
    errors_are_scim_documents,
    a_scim_request_never_touches_anyone_else,
);

async fn tokens_are_shown_once_and_open_only_their_providers_endpoint(backend: Backend) {
    let app = spawn(backend).await;
    let okta = provider(&app, "okta").await;
    let entra = provider(&app, "entra").await;
    assert!(okta.starts_with("authzdscim_"), "{okta}");
    let listed = idps(&app)
        .list_scim_tokens(as_admin(pb::ListScimTokensRequest { idp: "okta".into() }))
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(listed.len(), 1);
    let id = listed[0].id.clone();
    assert!(okta.contains(&id) && !format!("{listed:?}").contains(&okta));
    assert!(listed[0].created_at.is_some() && listed[0].last_used_at.is_none());

    let (code, _, list) = call(&app, "GET", "/scim/v2/okta/Users", &okta, None, &[]).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["totalResults"], json!(0));
    let listed = idps(&app)
        .list_scim_tokens(as_admin(pb::ListScimTokensRequest { idp: "okta".into() }))
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert!(listed[0].last_used_at.is_some(), "{listed:?}");

    // Another provider's token, a wrong secret, none, a key as a token.
    let wrong = wrong_copy(&okta);
    for bad in [entra.as_str(), wrong.as_str(), "", "not-a-token"] {
        let got = call(&app, "GET", "/scim/v2/okta/Users", bad, None, &[]).await;
        assert_scim_error(&got, 401, None);
        assert!(header(&got.1, "www-authenticate").is_some());
    }
    app.create_account("engineering").await;
    app.create_user("engineering", "dora", "Dora-pass-1234", &["read-only"])
        .await;
    let key = key_for(&app, "dora").await;
    assert_scim_error(
        &call(&app, "GET", "/scim/v2/okta/Users", &key, None, &[]).await,
        401,
        None,
    );
    // And a token is no API key.
    assert_eq!(code_of(app.key_login(&okta).await), Code::Unauthenticated);

    // Administrators only, never on a key's authority.
    let denied = idps(&app)
        .create_scim_token(as_key(
            &key,
            pb::CreateScimTokenRequest { idp: "okta".into() },
        ))
        .await;
    assert_code(denied, Code::PermissionDenied);
    assert_code(
        idps(&app)
            .create_scim_token(as_admin(pb::CreateScimTokenRequest { idp: "nope".into() }))
            .await,
        Code::NotFound,
    );
    assert_invalid(
        idps(&app)
            .revoke_scim_token(as_admin(pb::RevokeScimTokenRequest {
                idp: "okta".into(),
                id: String::new(),
            }))
            .await,
        "id",
    );

    // Revoked: refused at once.
    idps(&app)
        .revoke_scim_token(as_admin(pb::RevokeScimTokenRequest {
            idp: "okta".into(),
            id: id.clone(),
        }))
        .await
        .unwrap();
    assert_scim_error(
        &call(&app, "GET", "/scim/v2/okta/Users", &okta, None, &[]).await,
        401,
        None,
    );
    assert_code(
        idps(&app)
            .revoke_scim_token(as_admin(pb::RevokeScimTokenRequest {
                idp: "okta".into(),
                id,
            }))
            .await,
        Code::NotFound,
    );
    // Made and revoked, in the trail, never with the value.
    let events = pb::audit_service_client::AuditServiceClient::new(app.channel.clone())
        .list_events(as_admin(pb::ListEventsRequest {
            target_kind: "scim_token".into(),
            kind: "change".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(!format!("{events:?}").contains(&okta[20..]));
}

/// The token with its last character changed (never to itself).
fn wrong_copy(token: &str) -> String {
    let last = if token.ends_with('x') { 'y' } else { 'x' };
    format!("{}{last}", &token[..token.len() - 1])
}

fn code_of<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    result.map_or_else(|s| s.code(), |_| Code::Ok)
}

async fn okta_provisions_and_deprovisions(backend: Backend) {
    let app = spawn(backend).await;
    let t = provider(&app, "okta").await;
    // Okta looks the user up first, then creates them.
    let lookup = format!(
        "/scim/v2/okta/Users?filter={}&startIndex=1&count=100",
        enc(r#"userName eq "carol@corp.example""#)
    );
    let (code, _, found) = call(&app, "GET", &lookup, &t, None, &[]).await;
    assert_eq!(code, 200);
    assert_eq!(
        found,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
               "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []})
    );
    let okta_user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "carol@corp.example",
        "name": {"givenName": "Carol", "familyName": "Ng"},
        "emails": [{"primary": true, "value": "carol@corp.example", "type": "work"}],
        "displayName": "Carol Ng",
        "locale": "en-US",
        "externalId": "00u1abcd",
        "groups": [],
        "password": "Okta-sends-this-1",
        "active": true
    });
    let (code, head, made) = call(
        &app,
        "POST",
        "/scim/v2/okta/Users",
        &t,
        Some(&okta_user),
        &[],
    )
    .await;
    assert_eq!(code, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(header(&head, "location"), made["meta"]["location"].as_str());
    assert!(
        made["meta"]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/okta/Users/{id}"))
    );
    assert_eq!(header(&head, "etag"), made["meta"]["version"].as_str());
    assert_eq!(header(&head, "content-type"), Some("application/scim+json"));
    assert_eq!(made["userName"], "carol@corp.example");
    assert_eq!(made["name"], okta_user["name"]);
    assert_eq!(made["emails"], okta_user["emails"]);
    assert_eq!(made["externalId"], "00u1abcd");
    assert_eq!(made["active"], true);
    assert!(made.get("password").is_none() && !made.to_string().contains("Okta-sends-this"));
    // A user of the provider, in its default account with its default role.
    let user = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "engineering".into(),
            username: "carol@corp.example".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.r#type(), pb::UserType::Saml);
    assert_eq!(user.idp_name, "okta");
    let (code, _, found) = call(&app, "GET", &lookup, &t, None, &[]).await;
    assert_eq!(code, 200);
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0], made);

    let key = key_for(&app, "carol@corp.example").await;
    app.key_login(&key).await.unwrap();

    // Okta's profile push: a PUT of the whole user.
    let mut put = made.clone();
    put["name"]["familyName"] = json!("Ng-Smith");
    put["emails"] = json!([{"primary": true, "value": "carol.ng@corp.example", "type": "work"}]);
    let path = format!("/scim/v2/okta/Users/{id}");
    let (code, _, replaced) = call(&app, "PUT", &path, &t, Some(&put), &[]).await;
    assert_eq!(code, 200, "{replaced}");
    assert_eq!(replaced["name"]["familyName"], "Ng-Smith");
    assert_eq!(replaced["emails"][0]["value"], "carol.ng@corp.example");
    assert_ne!(replaced["meta"]["version"], made["meta"]["version"]);

    // Okta deactivates with a no-path replace: the key stops at once.
    let deactivate = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}]});
    let (code, _, patched) = call(&app, "PATCH", &path, &t, Some(&deactivate), &[]).await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["active"], false);
    assert_eq!(patched["name"]["familyName"], "Ng-Smith", "the rest stays");
    assert_eq!(code_of(app.key_login(&key).await), Code::Unauthenticated);
    // Re-activated: the key works again.
    let reactivate = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": true}}]});
    let (code, _, _) = call(&app, "PATCH", &path, &t, Some(&reactivate), &[]).await;
    assert_eq!(code, 200);
    app.key_login(&key).await.unwrap();

    // Groups: lookup, create, members by PATCH, list without members.
    let glookup = format!(
        "/scim/v2/okta/Groups?filter={}&startIndex=1&count=100",
        enc(r#"displayName eq "Engineers""#)
    );
    assert_eq!(
        call(&app, "GET", &glookup, &t, None, &[]).await.2["totalResults"],
        0
    );
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Engineers", "members": []});
    let (code, _, g) = call(&app, "POST", "/scim/v2/okta/Groups", &t, Some(&group), &[]).await;
    assert_eq!(code, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let gpath = format!("/scim/v2/okta/Groups/{gid}");
    let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members",
                        "value": [{"value": id, "display": "carol@corp.example"}]}]});
    let (code, _, g) = call(&app, "PATCH", &gpath, &t, Some(&add), &[]).await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["members"][0]["value"], json!(id));
    assert_eq!(g["members"][0]["type"], "User");
    // An administrator grants the group a role; the member holds it.
    app.groups()
        .add_group_grants(as_admin(pb::GroupGrantsRequest {
            name: "Engineers".into(),
            grants: vec![pb::GroupGrant {
                role: "read-write".into(),
                account: "engineering".into(),
            }],
        }))
        .await
        .unwrap();
    let who = app.key_login(&key).await.unwrap();
    assert!(format!("{who:?}").contains("read-write"), "{who:?}");
    let (code, _, listed) = call(
        &app,
        "GET",
        &format!("{glookup}&excludedAttributes=members"),
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(listed["totalResults"], 1);
    assert!(listed["Resources"][0].get("members").is_none(), "{listed}");
    assert_eq!(listed["Resources"][0]["displayName"], "Engineers");
    let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]});
    let (code, _, g) = call(&app, "PATCH", &gpath, &t, Some(&remove), &[]).await;
    assert_eq!(code, 200, "{g}");
    assert!(g.get("members").is_none(), "{g}");
    let who = app.key_login(&key).await.unwrap();
    assert!(!format!("{who:?}").contains("read-write"), "{who:?}");

    // DELETE: the group, then the user, with their key.
    let (code, _, _) = call(&app, "DELETE", &gpath, &t, None, &[]).await;
    assert_eq!(code, 204);
    assert_scim_error(&call(&app, "GET", &gpath, &t, None, &[]).await, 404, None);
    assert_scim_error(
        &call(&app, "DELETE", &gpath, &t, None, &[]).await,
        404,
        None,
    );
    let (code, _, _) = call(&app, "DELETE", &path, &t, None, &[]).await;
    assert_eq!(code, 204);
    assert_scim_error(&call(&app, "GET", &path, &t, None, &[]).await, 404, None);
    assert_eq!(code_of(app.key_login(&key).await), Code::Unauthenticated);

    // Every change, in the trail as the provider's client.
    let events = scim_events(&app, "okta").await;
    let ops: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.rpc.clone(), e.target_kind.clone()))
        .collect();
    for expected in [
        ("scim:CreateUser", "user"),
        ("scim:ReplaceUser", "user"),
        ("scim:PatchUser", "user"),
        ("scim:CreateGroup", "group"),
        ("scim:PatchGroup", "group"),
        ("scim:DeleteGroup", "group"),
        ("scim:DeleteUser", "user"),
    ] {
        assert!(
            ops.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {ops:?}"
        );
    }
    assert!(events.iter().all(|e| e.actor == "scim:okta"));
}

async fn entra_provisions_and_deprovisions(backend: Backend) {
    let app = spawn(backend).await;
    let t = provider(&app, "entra").await;
    // Entra's connectivity test and first lookup.
    let probe = format!(
        "/scim/v2/entra/Users?filter={}",
        enc(r#"userName eq "non-existent-user-0a1b""#)
    );
    assert_eq!(
        call(&app, "GET", &probe, &t, None, &[]).await.2["totalResults"],
        0
    );
    let entra_user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "7f3c2a9e-entra",
        "userName": "Erin@corp.example",
        "active": true,
        "displayName": "Erin Lee",
        "emails": [{"primary": true, "type": "work", "value": "Erin@corp.example"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Erin Lee", "familyName": "Lee", "givenName": "Erin"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Platform"}
    });
    let (code, _, made) = call(
        &app,
        "POST",
        "/scim/v2/entra/Users",
        &t,
        Some(&entra_user),
        &[],
    )
    .await;
    assert_eq!(code, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(
        made["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Platform"
    );
    assert!(made["schemas"].to_string().contains("enterprise"));
    // By externalId, and by both (Entra's matching attributes).
    for filter in [
        r#"externalId eq "7f3c2a9e-entra""#,
        r#"userName eq "erin@CORP.example" and externalId eq "7f3c2a9e-entra""#,
    ] {
        let (code, _, found) = call(
            &app,
            "GET",
            &format!("/scim/v2/entra/Users?filter={}", enc(filter)),
            &t,
            None,
            &[],
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(found["totalResults"], 1, "{filter}: {found}");
        assert_eq!(found["Resources"][0]["id"], json!(id));
    }
    let path = format!("/scim/v2/entra/Users/{id}");
    // Entra's PATCH: capitalised ops, paths, a value filter, string booleans.
    let update = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [
        {"op": "Replace", "path": "displayName", "value": "Erin K. Lee"},
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "erin.lee@corp.example"},
        {"op": "Add", "path": "name.givenName", "value": "Erin K."}
    ]});
    let (code, _, patched) = call(&app, "PATCH", &path, &t, Some(&update), &[]).await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["displayName"], "Erin K. Lee");
    assert_eq!(patched["emails"][0]["value"], "erin.lee@corp.example");
    assert_eq!(patched["name"]["givenName"], "Erin K.");
    assert_eq!(patched["name"]["familyName"], "Lee");

    let key = key_for(&app, "Erin@corp.example").await;
    app.key_login(&key).await.unwrap();
    let disable = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    let (code, _, patched) = call(&app, "PATCH", &path, &t, Some(&disable), &[]).await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["active"], false);
    assert_eq!(code_of(app.key_login(&key).await), Code::Unauthenticated);
    let enable = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "True"}]});
    assert_eq!(
        call(&app, "PATCH", &path, &t, Some(&enable), &[]).await.0,
        200
    );
    app.key_login(&key).await.unwrap();

    // Groups as Entra sends them.
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "externalId": "grp-8812", "displayName": "Platform Team", "members": []});
    let (code, _, g) = call(&app, "POST", "/scim/v2/entra/Groups", &t, Some(&group), &[]).await;
    assert_eq!(code, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let found = call(
        &app,
        "GET",
        &format!(
            "/scim/v2/entra/Groups?excludedAttributes=members&filter={}",
            enc(r#"displayName eq "Platform Team""#)
        ),
        &t,
        None,
        &[],
    )
    .await
    .2;
    assert_eq!(found["totalResults"], 1, "{found}");
    assert_eq!(found["Resources"][0]["externalId"], "grp-8812");
    let gpath = format!("/scim/v2/entra/Groups/{gid}");
    let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": [{"value": id}]}]});
    let (code, _, g) = call(&app, "PATCH", &gpath, &t, Some(&add), &[]).await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Remove", "path": "members", "value": [{"value": id}]}]});
    let (code, _, g) = call(&app, "PATCH", &gpath, &t, Some(&remove), &[]).await;
    assert_eq!(code, 200, "{g}");
    assert!(g.get("members").is_none(), "{g}");
    let rename = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "displayName", "value": "Platform Group"}]});
    let (code, _, g) = call(&app, "PATCH", &gpath, &t, Some(&rename), &[]).await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["displayName"], "Platform Group");
    app.groups()
        .get_group(as_admin(pb::GetGroupRequest {
            name: "Platform Group".into(),
        }))
        .await
        .unwrap();

    // Entra deletes a user it no longer assigns.
    assert_eq!(call(&app, "DELETE", &path, &t, None, &[]).await.0, 204);
    assert_eq!(code_of(app.key_login(&key).await), Code::Unauthenticated);
    assert_code(
        app.users()
            .get_user(as_admin(pb::GetUserRequest {
                account: "engineering".into(),
                username: "Erin@corp.example".into(),
            }))
            .await,
        Code::NotFound,
    );
}

async fn errors_are_scim_documents(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.scim.max_page_size = 2;
        c.scim.max_filter_chars = 64;
    })
    .await;
    let t = provider(&app, "okta").await;
    let user = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
    let mut ids = Vec::new();
    for name in ["ann@x.example", "ben@x.example", "cat@x.example"] {
        let (code, _, made) = call(
            &app,
            "POST",
            "/scim/v2/okta/Users",
            &t,
            Some(&user(name)),
            &[],
        )
        .await;
        assert_eq!(code, 201, "{made}");
        ids.push(made["id"].as_str().unwrap().to_owned());
    }
    // Taken, whatever the case.
    assert_scim_error(
        &call(
            &app,
            "POST",
            "/scim/v2/okta/Users",
            &t,
            Some(&user("ANN@x.example")),
            &[],
        )
        .await,
        409,
        Some("uniqueness"),
    );
    // Pages are capped; startIndex and count as the RFC says.
    let (_, _, page) = call(&app, "GET", "/scim/v2/okta/Users?count=50", &t, None, &[]).await;
    assert_eq!(
        (page["totalResults"].clone(), page["itemsPerPage"].clone()),
        (json!(3), json!(2))
    );
    let (_, _, page) = call(
        &app,
        "GET",
        "/scim/v2/okta/Users?startIndex=3&count=2",
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!(page["itemsPerPage"], 1);
    assert_eq!(page["startIndex"], 3);
    assert_eq!(page["Resources"][0]["id"], json!(ids[2]));
    let (_, _, page) = call(&app, "GET", "/scim/v2/okta/Users?count=0", &t, None, &[]).await;
    assert_eq!(
        (page["totalResults"].clone(), page["itemsPerPage"].clone()),
        (json!(3), json!(0))
    );
    assert_scim_error(
        &call(&app, "GET", "/scim/v2/okta/Users?count=many", &t, None, &[]).await,
        400,
        Some("invalidValue"),
    );
    // Filters: garbage, too long, too deep.
    for filter in [
        "userName garbage".to_owned(),
        format!(r#"userName eq "{}""#, "x".repeat(60)),
        format!("{}userName pr{}", "not (".repeat(9), ")".repeat(9)),
    ] {
        assert_scim_error(
            &call(
                &app,
                "GET",
                &format!("/scim/v2/okta/Users?filter={}", enc(&filter)),
                &t,
                None,
                &[],
            )
            .await,
            400,
            Some("invalidFilter"),
        );
    }
    let path = format!("/scim/v2/okta/Users/{}", ids[0]);
    // Bodies that are not JSON, or not a PatchOp.
    let host = app.http.to_string();
    let raw = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: Bearer {t}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: 9\r\n\r\n{{\"Oper\":["
    );
    let (head, body) = exchange(tokio::net::TcpStream::connect(&host).await.unwrap(), raw).await;
    assert_scim_error(
        &(
            status(&head),
            head.clone(),
            serde_json::from_str(&body).unwrap(),
        ),
        400,
        Some("invalidSyntax"),
    );
    let patch = |ops: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    assert_scim_error(
        &call(
            &app,
            "PATCH",
            &path,
            &t,
            Some(&patch(json!([{"op": "remove"}]))),
            &[],
        )
        .await,
        400,
        Some("noTarget"),
    );
    assert_scim_error(
        &call(
            &app,
            "PATCH",
            &path,
            &t,
            Some(&patch(json!([{"op": "frobnicate", "path": "x"}]))),
            &[],
        )
        .await,
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(
        &call(
            &app,
            "PATCH",
            &path,
            &t,
            Some(&patch(json!([{"op": "replace", "path": "emails[type eq \"fax\"]", "value": {"value": "f"}}]))),
            &[],
        )
        .await,
        400,
        Some("noTarget"),
    );
    assert_scim_error(
        &call(
            &app,
            "PATCH",
            &path,
            &t,
            Some(&patch(
                json!([{"op": "replace", "path": "active", "value": "maybe"}]),
            )),
            &[],
        )
        .await,
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &call(
            &app,
            "PATCH",
            &path,
            &t,
            Some(&patch(
                json!([{"op": "replace", "path": "userName", "value": "zed@x.example"}]),
            )),
            &[],
        )
        .await,
        400,
        Some("mutability"),
    );
    for name in ["admin", "x", "bad\u{202e}name"] {
        assert_scim_error(
            &call(
                &app,
                "POST",
                "/scim/v2/okta/Users",
                &t,
                Some(&user(name)),
                &[],
            )
            .await,
            400,
            Some("invalidValue"),
        );
    }
    // A stale version is refused and changes nothing; the current one passes.
    let (_, head, current) = call(&app, "GET", &path, &t, None, &[]).await;
    let version = header(&head, "etag").unwrap().to_owned();
    let mut put = current.clone();
    put["displayName"] = json!("Ann");
    let (code, _, after) = call(
        &app,
        "PUT",
        &path,
        &t,
        Some(&put),
        &[&format!("If-Match: {version}")],
    )
    .await;
    assert_eq!(code, 200, "{after}");
    put["displayName"] = json!("Annie");
    assert_scim_error(
        &call(
            &app,
            "PUT",
            &path,
            &t,
            Some(&put),
            &[&format!("If-Match: {version}")],
        )
        .await,
        412,
        None,
    );
    assert_scim_error(
        &call(
            &app,
            "DELETE",
            &path,
            &t,
            None,
            &[&format!("If-Match: {version}")],
        )
        .await,
        412,
        None,
    );
    let (_, _, now) = call(&app, "GET", &path, &t, None, &[]).await;
    assert_eq!(now["displayName"], "Ann");
    let (code, _, _) = call(
        &app,
        "GET",
        &path,
        &t,
        None,
        &[&format!(
            "If-None-Match: {}",
            now["meta"]["version"].as_str().unwrap()
        )],
    )
    .await;
    assert_eq!(code, 304);
    // Unknown ids and addresses.
    assert_scim_error(
        &call(&app, "GET", "/scim/v2/okta/Users/not-a-uuid", &t, None, &[]).await,
        404,
        None,
    );
    assert_scim_error(
        &call(&app, "GET", "/scim/v2/okta/Widgets", &t, None, &[]).await,
        404,
        None,
    );
    assert_scim_error(
        &call(
            &app,
            "POST",
            "/scim/v2/okta/.search",
            &t,
            Some(&json!({})),
            &[],
        )
        .await,
        501,
        None,
    );
    // A group of strangers is refused, and so is a name that is no name.
    let group =
        json!({"displayName": "Team", "members": [{"value": uuid::Uuid::new_v4().to_string()}]});
    assert_scim_error(
        &call(&app, "POST", "/scim/v2/okta/Groups", &t, Some(&group), &[]).await,
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &call(
            &app,
            "POST",
            "/scim/v2/okta/Groups",
            &t,
            Some(&json!({"displayName": "\u{0}x"})),
            &[],
        )
        .await,
        400,
        Some("invalidValue"),
    );
    // Discovery.
    let (code, _, spc) = call(
        &app,
        "GET",
        "/scim/v2/okta/ServiceProviderConfig",
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(spc["filter"], json!({"supported": true, "maxResults": 2}));
    assert_eq!(spc["etag"]["supported"], true);
    let (_, _, schemas) = call(&app, "GET", "/scim/v2/okta/Schemas", &t, None, &[]).await;
    assert_eq!(schemas["totalResults"], 2);
    let (code, _, user_schema) = call(
        &app,
        "GET",
        "/scim/v2/okta/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
        &t,
        None,
        &[],
    )
    .await;
    assert_eq!(code, 200, "{user_schema}");
    let user_name = user_schema["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "userName")
        .unwrap();
    assert_eq!(user_name["mutability"], "immutable");
    let (_, _, types) = call(&app, "GET", "/scim/v2/okta/ResourceTypes", &t, None, &[]).await;
    assert_eq!(types["totalResults"], 2);
}

/// Native users, another provider's users, and administrators are not
/// there for a provider's client, whatever it asks.
async fn a_scim_request_never_touches_anyone_else(backend: Backend) {
    let app = spawn(backend).await;
    let okta = provider(&app, "okta").await;
    let entra = provider(&app, "entra").await;
    app.create_account("engineering").await;
    app.create_user("engineering", "nate", "Nate-pass-1234", &["read-only"])
        .await;
    let native = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "engineering".into(),
            username: "nate".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let admin = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "admin".into(),
            username: "admin".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let (_, _, theirs) = call(
        &app,
        "POST",
        "/scim/v2/entra/Users",
        &entra,
        Some(&json!({"userName": "ivy@corp.example"})),
        &[],
    )
    .await;
    let theirs = theirs["id"].as_str().unwrap().to_owned();
    for id in [native.id.as_str(), admin.id.as_str(), theirs.as_str()] {
        let path = format!("/scim/v2/okta/Users/{id}");
        assert_scim_error(&call(&app, "GET", &path, &okta, None, &[]).await, 404, None);
        assert_scim_error(
            &call(
                &app,
                "PUT",
                &path,
                &okta,
                Some(&json!({"userName": "x", "active": false})),
                &[],
            )
            .await,
            404,
            None,
        );
        let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]});
        assert_scim_error(
            &call(&app, "PATCH", &path, &okta, Some(&off), &[]).await,
            404,
            None,
        );
        assert_scim_error(
            &call(&app, "DELETE", &path, &okta, None, &[]).await,
            404,
            None,
        );
    }
    // Not listed, not found by name either.
    let (_, _, all) = call(&app, "GET", "/scim/v2/okta/Users", &okta, None, &[]).await;
    assert_eq!(all["totalResults"], 0, "{all}");
    let by_name = format!(
        "/scim/v2/okta/Users?filter={}",
        enc(r#"userName eq "nate""#)
    );
    assert_eq!(
        call(&app, "GET", &by_name, &okta, None, &[]).await.2["totalResults"],
        0
    );
    // A native user's name cannot be taken over.
    assert_scim_error(
        &call(
            &app,
            "POST",
            "/scim/v2/okta/Users",
            &okta,
            Some(&json!({"userName": "NATE"})),
            &[],
        )
        .await,
        409,
        Some("uniqueness"),
    );
    // An administrator's group mapped to the provider keeps its grants and
    // its administrator-made members when the provider deletes it.
    app.groups()
        .create_group(as_admin(pb::CreateGroupRequest {
            name: "ops".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    app.groups()
        .add_group_members(as_admin(pb::GroupMembersRequest {
            name: "ops".into(),
            usernames: vec!["nate".into()],
        }))
        .await
        .unwrap();
    idps(&app)
        .add_user_group_mappings(as_admin(pb::UserGroupMappingsRequest {
            idp: "okta".into(),
            user_groups: vec!["ops".into()],
        }))
        .await
        .unwrap();
    let (_, _, groups) = call(&app, "GET", "/scim/v2/okta/Groups", &okta, None, &[]).await;
    assert_eq!(groups["totalResults"], 1);
    assert!(
        groups["Resources"][0].get("members").is_none(),
        "a native member is not the provider's to see"
    );
    let gid = groups["Resources"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        call(
            &app,
            "DELETE",
            &format!("/scim/v2/okta/Groups/{gid}"),
            &okta,
            None,
            &[]
        )
        .await
        .0,
        204
    );
    let ops = app
        .groups()
        .get_group(as_admin(pb::GetGroupRequest { name: "ops".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ops.members, vec!["nate".to_owned()]);
    let mappings = idps(&app)
        .list_user_group_mappings(as_admin(pb::ListUserGroupMappingsRequest {
            idp: "okta".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(mappings.user_groups.is_empty());
}

/// Deactivation on one replica refuses the user's key on the other within
/// a second, though the key was hot in that replica's cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deactivation_reaches_every_replica_within_a_second() {
    let a = spawn(Backend::Postgres).await;
    let b = spawn_on(TestDatabase::external(&a.db.url), |c| {
        c.user_authentication.allow_api_keys_for_saml_users = true;
    })
    .await;
    let t = provider(&a, "okta").await;
    let (code, _, made) = call(
        &a,
        "POST",
        "/scim/v2/okta/Users",
        &t,
        Some(&json!({"userName": "rita@corp.example"})),
        &[],
    )
    .await;
    assert_eq!(code, 201, "{made}");
    let path = format!("/scim/v2/okta/Users/{}", made["id"].as_str().unwrap());
    let key = key_for(&a, "rita@corp.example").await;
    // B follows the new key within moments (issue 30 is about that
    // window); then the key is hot in B's cache.
    let started = Instant::now();
    while b.key_login(&key).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new key never reached B"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..3 {
        b.key_login(&key).await.unwrap();
    }
    let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}]});
    assert_eq!(call(&a, "PATCH", &path, &t, Some(&off), &[]).await.0, 200);
    let started = Instant::now();
    let refused_after = loop {
        if code_of(b.key_login(&key).await) == Code::Unauthenticated {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still accepted on B after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        refused_after < Duration::from_secs(1),
        "took {refused_after:?}"
    );
    // Back on: the key works on B again; deleted: it is gone everywhere.
    let on = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": true}}]});
    assert_eq!(call(&a, "PATCH", &path, &t, Some(&on), &[]).await.0, 200);
    let started = Instant::now();
    while b.key_login(&key).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not back on B within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(call(&a, "DELETE", &path, &t, None, &[]).await.0, 204);
    let started = Instant::now();
    while b.key_login(&key).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "deleted user's key still works on B"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A brute force of SCIM tokens counts toward the per-source limit: past
/// it even the right token is turned away (429) from that source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guessing_counts_toward_the_per_source_limit() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.rate_limit.failures_per_second = 1;
        c.rate_limit.burst = 5;
    })
    .await;
    let t = provider(&app, "okta").await;
    let wrong = wrong_copy(&t);
    let mut limited = false;
    for _ in 0..30 {
        let (code, _, _) = call(&app, "GET", "/scim/v2/okta/Users", &wrong, None, &[]).await;
        if code == 429 {
            limited = true;
            break;
        }
        assert_eq!(code, 401);
    }
    assert!(limited, "30 wrong tokens were never limited");
    assert_scim_error(
        &call(&app, "GET", "/scim/v2/okta/Users", &t, None, &[]).await,
        429,
        None,
    );
}

/// scim2-tester (python-scim's conformance checker) against the release
/// binary: every check passes, or is one docs/scim.md lists with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_conformance() {
    let python = std::env::var("AUTHZD_TEST_SCIM_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let db = TestDatabase::new(Backend::Sqlite).await;
    let server = crate::binary::Server::start_with(&db, |c| {
        c.env("AUTHZD_CONSOLE_ENABLED", "true")
            .env("AUTHZD_CONSOLE_LISTEN", "127.0.0.1:0");
    })
    .await;
    let console = server.wait_for_address("console listening").await;
    let channel = connect(&server.addr).await;
    let idps = IdentityProviderServiceClient::new(channel);
    let mut idps = idps;
    idps.create_identity_provider(as_admin(pb::CreateIdentityProviderRequest {
        name: "okta".into(),
        idp_metadata_xml: metadata("https://okta.example/saml", &certificate()),
        default_account: "engineering".into(),
        default_role: "read-only".into(),
        ..Default::default()
    }))
    .await
    .unwrap();
    let token = idps
        .create_scim_token(as_admin(pb::CreateScimTokenRequest { idp: "okta".into() }))
        .await
        .unwrap()
        .into_inner()
        .value;
    let script = format!("{}/tests/scim/conformance.py", env!("CARGO_MANIFEST_DIR"));
    let base = format!("http://{console}/scim/v2/okta");
    let out = tokio::process::Command::new(&python)
        .args([script.as_str(), base.as_str(), token.as_str()])
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (./scripts/test installs scim2-tester): {e}")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = report["results"].as_array().unwrap();
    // The run went past discovery: both resource types were created.
    for kind in ["User", "Group"] {
        assert!(
            results.iter().any(|r| r["title"] == "object_creation"
                && r["resource_type"] == kind
                && r["status"] == "SUCCESS"),
            "{kind} creation did not pass: {report}"
        );
    }
    let doc =
        std::fs::read_to_string(format!("{}/docs/scim.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !matches!(r["status"].as_str(), Some("SUCCESS" | "SKIPPED")))
        .filter(|r| {
            !(doc.contains(&format!("`{}`", r["title"].as_str().unwrap_or_default()))
                && doc.contains(r["reason"].as_str().unwrap_or("\u{0}")))
        })
        .map(|r| {
            format!(
                "{} {} {}: {}",
                r["status"], r["resource_type"], r["title"], r["reason"]
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "checks failed that docs/scim.md does not list:\n{}",
        failed.join("\n")
    );
    let passed = results.iter().filter(|r| r["status"] == "SUCCESS").count();
    assert!(passed >= 60, "only {passed} checks passed: {report}");
}
