//! The security review's findings, each as the attack that worked before:
//! tenant isolation, hostile input, bounds, malformed requests and races,
//! answers that disagree, and logs and metrics an attacker can shape.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

use crate::binary::Server;
use crate::dual;
use crate::support::*;
use crate::wire::{self, Api};
use authzd::pb;

const UA_PASSWORD: &str = "ua-admin-password";

/// acct-a with its user admin, and three users at home in acct-a: one with
/// roles only there, one with a role in acct-b directly, one through a group.
async fn two_tenants(app: &TestApp) {
    app.create_account("acct-a").await;
    app.create_account("acct-b").await;
    app.create_user("acct-a", "ua_admin", UA_PASSWORD, &["account-user-admin"])
        .await;
    app.create_user("acct-a", "ua_local", "local-password", &["read-only"])
        .await;
    app.create_user("acct-a", "ua_cross", "cross-password", &["read-only"])
        .await;
    app.create_user("acct-a", "ua_grouped", "grouped-password", &[])
        .await;
    app.roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: "full-control".into(),
            username: "ua_cross".into(),
            account: "acct-b".into(),
        }))
        .await
        .unwrap();
    let mut groups = app.groups();
    groups
        .create_group(as_admin(pb::CreateGroupRequest {
            name: "b-admins".into(),
            description: String::new(),
        }))
        .await
        .unwrap();
    groups
        .add_group_grants(as_admin(pb::GroupGrantsRequest {
            name: "b-admins".into(),
            grants: vec![pb::GroupGrant {
                role: "full-control".into(),
                account: "acct-b".into(),
            }],
        }))
        .await
        .unwrap();
    groups
        .add_group_members(as_admin(pb::GroupMembersRequest {
            name: "b-admins".into(),
            usernames: vec!["ua_grouped".into()],
        }))
        .await
        .unwrap();
}

fn as_ua<T>(message: T) -> tonic::Request<T> {
    as_user("ua_admin", UA_PASSWORD, message)
}

#[track_caller]
fn assert_denied_for_foreign_roles<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
) {
    match result {
        Err(s) if s.code() == Code::PermissionDenied => assert!(
            s.message()
                .contains("they hold roles in account \"acct-b\""),
            "{}",
            s.message()
        ),
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }
}

async fn a_user_admin_cannot_take_over_users_who_hold_roles_in_other_accounts(backend: Backend) {
    let app = spawn_app(backend).await;
    two_tenants(&app).await;
    let expires = in_days(&app.core, 30);
    let status = app
        .users()
        .set_password(as_ua(pb::SetPasswordRequest {
            account: "acct-a".into(),
            username: "ua_cross".into(),
            password: "taken-over-1".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        status.message(),
        "updateUser on user \"ua_cross\" is not permitted: they hold roles in account \"acct-b\", where you may not updateUser"
    );
    for target in ["ua_cross", "ua_grouped"] {
        let users = || app.users();
        assert_denied_for_foreign_roles(
            users()
                .set_password(as_ua(pb::SetPasswordRequest {
                    account: "acct-a".into(),
                    username: target.into(),
                    password: "taken-over-1".into(),
                    ..Default::default()
                }))
                .await,
        );
        assert_denied_for_foreign_roles(
            app.tokens()
                .revoke_user_tokens(as_ua(pb::RevokeUserTokensRequest {
                    account: "acct-a".into(),
                    username: target.into(),
                }))
                .await,
        );
        assert_denied_for_foreign_roles(
            users()
                .set_user_state(as_ua(pb::SetUserStateRequest {
                    account: "acct-a".into(),
                    username: target.into(),
                    state: pb::UserState::Disabled.into(),
                }))
                .await,
        );
        assert_denied_for_foreign_roles(
            users()
                .delete_user(as_ua(pb::DeleteUserRequest {
                    account: "acct-a".into(),
                    username: target.into(),
                }))
                .await,
        );
        assert_denied_for_foreign_roles(
            app.keys()
                .create_api_key(as_ua(pb::CreateApiKeyRequest {
                    account: "acct-a".into(),
                    username: target.into(),
                    name: "stolen".into(),
                    expires_at: expires,
                    ..Default::default()
                }))
                .await,
        );
        // Nor may it touch keys an administrator made for them.
        let key_name = format!("{target}-key");
        app.keys()
            .create_api_key(as_admin(pb::CreateApiKeyRequest {
                account: "acct-a".into(),
                username: target.into(),
                name: key_name.clone(),
                expires_at: expires,
                ..Default::default()
            }))
            .await
            .unwrap();
        assert_denied_for_foreign_roles(
            app.keys()
                .update_api_key(as_ua(pb::UpdateApiKeyRequest {
                    account: "acct-a".into(),
                    username: target.into(),
                    name: key_name.clone(),
                    description: Some("mine now".into()),
                    ..Default::default()
                }))
                .await,
        );
        assert_denied_for_foreign_roles(
            app.keys()
                .delete_api_key(as_ua(pb::DeleteApiKeyRequest {
                    account: "acct-a".into(),
                    username: target.into(),
                    name: key_name.clone(),
                }))
                .await,
        );
        // Their password still works and nothing was minted.
        let password = format!("{}-password", target.trim_start_matches("ua_"));
        app.login(target, &password).await.unwrap();
    }
    // Reading them stays allowed: isolation is about taking them over.
    app.users()
        .get_user(as_ua(pb::GetUserRequest {
            account: "acct-a".into(),
            username: "ua_cross".into(),
        }))
        .await
        .unwrap();
    // A user whose roles are all in acct-a is the user admin's to manage.
    app.users()
        .set_password(as_ua(pb::SetPasswordRequest {
            account: "acct-a".into(),
            username: "ua_local".into(),
            password: "reset-by-admin".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    app.keys()
        .create_api_key(as_ua(pb::CreateApiKeyRequest {
            account: "acct-a".into(),
            username: "ua_local".into(),
            name: "fine".into(),
            expires_at: expires,
            ..Default::default()
        }))
        .await
        .unwrap();
    // So is a cross-tenant user, once the caller administers acct-b too.
    app.roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: "account-user-admin".into(),
            username: "ua_admin".into(),
            account: "acct-b".into(),
        }))
        .await
        .unwrap();
    app.users()
        .set_user_state(as_ua(pb::SetUserStateRequest {
            account: "acct-a".into(),
            username: "ua_cross".into(),
            state: pb::UserState::Disabled.into(),
        }))
        .await
        .unwrap();
    // A role in the admin account does not make its users manageable:
    // their power shows in no grant.
    app.roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: "account-user-admin".into(),
            username: "ua_admin".into(),
            account: "admin".into(),
        }))
        .await
        .unwrap();
    let status = app
        .users()
        .set_password(as_ua(pb::SetPasswordRequest {
            account: "admin".into(),
            username: "admin".into(),
            password: "taken-over-2".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "updateUser on user \"admin\" is not permitted: only a global administrator manages users of account \"admin\""
    );
    app.login("admin", ADMIN_PASSWORD).await.unwrap();
    // And a global administrator manages everyone.
    app.users()
        .set_user_state(as_admin(pb::SetUserStateRequest {
            account: "acct-a".into(),
            username: "ua_grouped".into(),
            state: pb::UserState::Disabled.into(),
        }))
        .await
        .unwrap();
}

async fn control_characters_never_reach_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    // Unauthenticated: a NUL in the Basic username is the uniform answer,
    // not INTERNAL (Postgres refuses NUL in text).
    for _ in 0..20 {
        let result = app
            .accounts()
            .list_accounts(as_user("x\0", "y", pb::ListAccountsRequest::default()))
            .await;
        assert_code(result, Code::Unauthenticated);
    }
    let result = app
        .auth()
        .authenticate(as_service(pb::AuthenticateRequest {
            credentials: Some(pb::authenticate_request::Credentials::Password(
                pb::PasswordCredentials {
                    username: "ad\0min".into(),
                    password: ADMIN_PASSWORD.into(),
                },
            )),
            ..Default::default()
        }))
        .await;
    assert_code(result, Code::Unauthenticated);
    let result = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "acme".into(),
            username: "al\0ice".into(),
        }))
        .await;
    assert_invalid(result, "username");
    let status = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "acme".into(),
            username: "al\u{7}ice".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        status.message(),
        "username: must not contain control characters"
    );
    let result = app
        .users()
        .list_users(as_admin(pb::ListUsersRequest {
            account: "acme".into(),
            page_token: "\0".into(),
            ..Default::default()
        }))
        .await;
    assert_invalid(result, "page_token");
    // A well-formed token that carries a NUL inside (tokens are the
    // caller's to forge) never reaches the database either.
    use base64::Engine;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v1\u{1f}x\0y");
    let result = app
        .users()
        .list_users(as_admin(pb::ListUsersRequest {
            account: "acme".into(),
            page_token: forged,
            ..Default::default()
        }))
        .await;
    assert_invalid(result, "page_token");
    let result = app
        .users()
        .create_user(as_admin(pb::CreateUserRequest {
            account: "acme".into(),
            username: "sam@idp".into(),
            r#type: pb::UserType::Saml.into(),
            idp_name: "okta\0".into(),
            ..Default::default()
        }))
        .await;
    assert_invalid(result, "idp_name");
    // Free text also refuses what makes it read differently than it is.
    let result = app
        .groups()
        .create_group(as_admin(pb::CreateGroupRequest {
            name: "builders".into(),
            description: "safe \u{202E}txt.exe".into(),
        }))
        .await;
    assert_invalid(result, "description");
    let result = app
        .accounts()
        .update_account(as_admin(pb::UpdateAccountRequest {
            name: "acme".into(),
            email: "ops\u{200B}@acme.example".into(),
        }))
        .await;
    assert_invalid(result, "email");
    // A new password refuses control characters and is otherwise free.
    let result = app
        .users()
        .create_user(as_admin(pb::CreateUserRequest {
            account: "acme".into(),
            username: "bob".into(),
            password: "line\nbreak".into(),
            ..Default::default()
        }))
        .await;
    assert_invalid(result, "password");
    app.create_user("acme", "bob", "pässwörd \u{202E} 🙂", &[])
        .await;
    app.login("bob", "pässwörd \u{202E} 🙂").await.unwrap();
}

/// Walks every request message of the API: a control character in any
/// string field is refused naming that field, or, in a credential being
/// checked, with the uniform UNAUTHENTICATED. A field that skipped the
/// validation would reach a handler and answer something else.
async fn every_string_field_of_every_request_is_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    let api = Api::load();
    // Credentials being checked, in the services that check them (the
    // grants and RevokeToken take theirs in the body).
    let credentials = [
        "authorization",
        "api_key",
        "token",
        "refresh_token",
        "password.username",
        "password.password",
        "saml.saml_response",
        "oidc.code",
        "oidc.state",
    ];
    let mut checked = 0;
    for method in api.methods() {
        let metadata = if method.service == "AuthService" {
            vec![("authorization", format!("Bearer {CALLER_KEY}"))]
        } else {
            vec![("authorization", basic("admin", ADMIN_PASSWORD))]
        };
        for (path, body) in api.string_fields(&method.input, b"a\0b") {
            let result = wire::call(&app.channel, &method.path, body, &metadata).await;
            let status = result.expect_err(&format!("{} {path}: accepted a NUL", method.path));
            let checks_credentials =
                matches!(method.service.as_str(), "AuthService" | "TokenService");
            if (checks_credentials && credentials.contains(&path.as_str()))
                || path == "current_password"
            {
                assert_eq!(
                    status.code(),
                    Code::Unauthenticated,
                    "{} {path}: {status:?}",
                    method.path
                );
            } else {
                assert_eq!(
                    status.code(),
                    Code::InvalidArgument,
                    "{} {path}: {status:?}",
                    method.path
                );
                assert!(
                    status.message().starts_with(&format!("{path}:")),
                    "{} {path}: {}",
                    method.path,
                    status.message()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} string fields found");
}

async fn everything_is_bounded(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-only"])
        .await;
    // Authorize: at most server.max_authorize_actions (100) actions.
    let result = app
        .auth()
        .authorize(as_service(pb::AuthorizeRequest {
            subject: Some(pb::authorize_request::Subject::Username("alice".into())),
            account: "acme".into(),
            actions: vec!["listImages".to_owned(); 101],
            ..Default::default()
        }))
        .await;
    assert_eq!(
        result.unwrap_err().message(),
        "actions: at most 100 per request (server.max_authorize_actions)"
    );
    // A huge input is refused before any work, and not echoed back.
    let huge = "r".repeat(100_000);
    let status = app
        .roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: huge.clone(),
            username: "alice".into(),
            account: "acme".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().len() < 200, "{}", status.message());
    // Errors quote at most 64 characters of any input.
    let long_name = "x".repeat(120);
    let status = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "acme".into(),
            username: long_name.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        !status.message().contains(&long_name),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains(&"x".repeat(64)),
        "{}",
        status.message()
    );
    // Emails: 254 characters.
    let result = app
        .accounts()
        .update_account(as_admin(pb::UpdateAccountRequest {
            name: "acme".into(),
            email: format!("{}@acme.example", "o".repeat(250)),
        }))
        .await;
    assert_invalid(result, "email");
    // Repeated fields: a new user gets at most 100 roles.
    let result = app
        .users()
        .create_user(as_admin(pb::CreateUserRequest {
            account: "acme".into(),
            username: "carol".into(),
            password: "carol-password".into(),
            roles: vec!["read-only".to_owned(); 101],
            ..Default::default()
        }))
        .await;
    assert_invalid(result, "roles");
    // A message over server.max_message_bytes (1 MiB) is refused whole.
    let result = app
        .groups()
        .add_group_members(as_admin(pb::GroupMembersRequest {
            name: "builders".into(),
            usernames: vec!["u".repeat(128); 9000],
        }))
        .await;
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}

/// One HTTP/2 frame: its 9-byte header and its payload.
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<([u8; 9], Vec<u8>)> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await?;
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok((header, payload))
}

/// The server's first HTTP/2 SETTINGS frame, as (identifier, value) pairs.
async fn server_settings(addr: &str) -> Vec<(u16, u32)> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    loop {
        let (header, payload) = read_frame(&mut stream).await.unwrap();
        // A SETTINGS frame that is not an acknowledgement.
        if header[3] == 0x4 && header[4] & 0x1 == 0 {
            return payload
                .chunks(6)
                .map(|p| {
                    (
                        u16::from_be_bytes([p[0], p[1]]),
                        u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                    )
                })
                .collect();
        }
    }
}

/// One literal HPACK field, never indexed (names and values < 127 bytes).
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x10);
    for text in [name, value] {
        out.push(u8::try_from(text.len()).unwrap());
        out.extend_from_slice(text.as_bytes());
    }
}

/// Opens `n` request streams on one connection without ever sending their
/// bodies (so none ends), as a client that ignores the server's
/// SETTINGS_MAX_CONCURRENT_STREAMS would; returns the streams the server
/// refused (RST_STREAM REFUSED_STREAM) within 3 s of the last.
async fn refused_streams(addr: &str, n: u32) -> Vec<u32> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Watch"),
        (":authority", "authzd"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        hpack_literal(&mut block, name, value);
    }
    // The server's limits apply once its SETTINGS are acknowledged.
    let mut frames = Vec::from(*b"\x00\x00\x00\x04\x01\x00\x00\x00\x00");
    for i in 0..n {
        let id = 2 * i + 1;
        let len = u32::try_from(block.len()).unwrap().to_be_bytes();
        // HEADERS, END_HEADERS and not END_STREAM: the stream stays open.
        frames.extend_from_slice(&[len[1], len[2], len[3], 0x1, 0x4]);
        frames.extend_from_slice(&id.to_be_bytes());
        frames.extend_from_slice(&block);
    }
    stream.write_all(&frames).await.unwrap();
    let mut refused = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok((header, payload)) = read_frame(&mut stream).await {
            let id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
            // RST_STREAM with REFUSED_STREAM (0x7).
            if header[3] == 0x3 && payload == [0, 0, 0, 7] {
                refused.push(id);
            }
        }
    })
    .await;
    refused
}

async fn connections_are_bounded_and_silent_ones_closed(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_SERVER_IDLE_TIMEOUT_SECONDS", "3")
            .env("AUTHZD_SERVER_KEEPALIVE_INTERVAL_SECONDS", "1")
            .env("AUTHZD_SERVER_KEEPALIVE_TIMEOUT_SECONDS", "1")
            .env("AUTHZD_SERVER_MAX_CONCURRENT_STREAMS", "7");
    })
    .await;
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) as configured.
    let settings = server_settings(&server.addr).await;
    assert!(settings.contains(&(0x3, 7)), "{settings:?}");
    // And enforced: a client that ignores it gets its 8th stream refused.
    assert_eq!(refused_streams(&server.addr, 8).await, [15]);
    let mut silent = TcpStream::connect(&server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a silent connection stayed open 10 s");
    // A live client on a connection idle longer than that is kept: the
    // server's keepalive pings are answered. The channel counts its
    // connections: a closed one would be reopened behind the client's back.
    let connects = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ch = {
        let connects = connects.clone();
        let addr = server.addr.clone();
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                connects.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let addr = addr.clone();
                async move {
                    TcpStream::connect(addr)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            }))
            .await
            .unwrap()
    };
    login_on(&ch, "admin", ADMIN_PASSWORD).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5000)).await;
    login_on(&ch, "admin", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(
        connects.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the idle connection was closed and reopened"
    );
    server.stop();
}

async fn malformed_bodies_are_invalid_argument_not_internal(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = [("authorization", basic("admin", ADMIN_PASSWORD))];
    let bodies: [&[u8]; 4] = [
        &[0x0a, 0xff, 0xff],       // a length past the end
        &[0x0b],                   // a group start
        &[0xff, 0xff, 0xff, 0xff], // a truncated key
        &[0x08, 0x80],             // a truncated varint
    ];
    for body in bodies {
        let status = wire::call(
            &app.channel,
            "/authz.v1.AccountService/CreateAccount",
            body.to_vec(),
            &admin,
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{body:?}: {status:?}");
        assert_eq!(
            status.message(),
            "request: not a valid authz.v1.CreateAccountRequest message"
        );
        // The standard services authzd serves answer the same way.
        let service = [("authorization", format!("Bearer {CALLER_KEY}"))];
        for (method, headers) in [
            ("/envoy.service.auth.v3.Authorization/Check", &service[..]),
            ("/grpc.health.v1.Health/Check", &[][..]),
            ("/grpc.health.v1.Health/Watch", &[][..]),
        ] {
            let status = wire::call(&app.channel, method, body.to_vec(), headers)
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{method} {body:?}: {status:?}"
            );
        }
    }
}

async fn a_request_without_a_message_is_invalid_argument(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::empty::<Vec<u8>>());
    request.metadata_mut().insert(
        "authorization",
        basic("admin", ADMIN_PASSWORD).parse().unwrap(),
    );
    let status = grpc
        .client_streaming(
            request,
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/authz.v1.AccountService/ListAccounts",
            ),
            wire::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "request: Missing request message");
}

async fn a_missing_parent_is_not_found(backend: Backend) {
    // What a CreateUser that loses a race with DeleteAccount meets.
    let app = spawn_app(backend).await;
    let now = app.core.clock().now();
    let user = authzd::domain::model::User {
        id: uuid::Uuid::new_v4(),
        username: "orphan".into(),
        account: "gone".into(),
        user_type: authzd::domain::model::UserType::Native,
        idp_name: None,
        state: authzd::domain::model::UserState::Enabled,
        password_updated_at: None,
        created_at: now,
        updated_at: now,
    };
    let err = authzd::store::users::create_user(app.core.db(), &user, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, authzd::error::Error::NotFound(ref what) if what.contains("gone")),
        "{err:?}"
    );
}

async fn one_failing_account_purge_does_not_stop_the_others(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let app = spawn_app(backend).await;
    for name in ["aaa-poisoned", "zzz-fine"] {
        app.create_account(name).await;
        app.create_user(name, &format!("{name}-user"), "user-password", &[])
            .await;
    }
    // A real database fault for one account's users only.
    let db = app.core.db();
    let trigger = match backend {
        Backend::Postgres => vec![
            "CREATE FUNCTION refuse_poisoned() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'poisoned'; END $$ LANGUAGE plpgsql"
                .to_owned(),
            "CREATE TRIGGER poisoned BEFORE DELETE ON users FOR EACH ROW \
             WHEN (OLD.account_name = 'aaa-poisoned') EXECUTE FUNCTION refuse_poisoned()"
                .to_owned(),
        ],
        Backend::Sqlite => vec![
            "CREATE TRIGGER poisoned BEFORE DELETE ON users \
             WHEN OLD.account_name = 'aaa-poisoned' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
                .to_owned(),
        ],
    };
    for statement in trigger {
        db.execute_unprepared(&statement).await.unwrap();
    }
    for name in ["aaa-poisoned", "zzz-fine"] {
        app.set_account_state(name, pb::AccountState::Disabled)
            .await;
        app.accounts()
            .delete_account(as_admin(pb::DeleteAccountRequest { name: name.into() }))
            .await
            .unwrap();
    }
    let outcome = app.core.purge_deleting_accounts().await.unwrap();
    assert_eq!((outcome.purged, outcome.failed), (1, 1));
    let gone = app
        .accounts()
        .get_account(as_admin(pb::GetAccountRequest {
            name: "zzz-fine".into(),
        }))
        .await;
    assert_code(gone, Code::NotFound);
    let drop = match backend {
        Backend::Postgres => "DROP TRIGGER poisoned ON users",
        Backend::Sqlite => "DROP TRIGGER poisoned",
    };
    db.execute_unprepared(drop).await.unwrap();
    let outcome = app.core.purge_deleting_accounts().await.unwrap();
    assert_eq!((outcome.purged, outcome.failed), (1, 0));
}

async fn answers_agree_with_the_rest_of_the_api(backend: Backend) {
    let app = spawn_app(backend).await;
    two_tenants(&app).await;
    // A missing account is NOT_FOUND for an administrator on every admin
    // RPC that names one; a malformed name INVALID_ARGUMENT.
    assert_code(
        app.users()
            .list_users(in_account(
                as_admin(pb::ListUsersRequest::default()),
                "ghost-acct",
            ))
            .await,
        Code::NotFound,
    );
    assert_code(
        app.roles()
            .list_roles(in_account(as_admin(pb::ListRolesRequest {}), "ghost-acct"))
            .await,
        Code::NotFound,
    );
    assert_code(
        app.roles()
            .list_role_members(as_admin(pb::ListRoleMembersRequest {
                role: "read-only".into(),
                account: "ghost-acct".into(),
                ..Default::default()
            }))
            .await,
        Code::NotFound,
    );
    assert_invalid(
        app.users()
            .list_users(as_admin(pb::ListUsersRequest {
                account: "bad#acct!".into(),
                ..Default::default()
            }))
            .await,
        "account",
    );
    // Anyone else is refused there as anywhere they hold no role: the
    // answer does not tell which accounts exist.
    let denied_ghost = app
        .users()
        .list_users(in_account(
            as_ua(pb::ListUsersRequest::default()),
            "ghost-acct",
        ))
        .await
        .unwrap_err();
    let in_c = app.create_account("acct-c").await;
    let denied_real = app
        .users()
        .list_users(in_account(
            as_ua(pb::ListUsersRequest::default()),
            &in_c.name,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied_ghost.code(), Code::PermissionDenied);
    assert_eq!(denied_real.code(), Code::PermissionDenied);
    // One's own keys live in one's own account: a context naming another
    // is refused, as a contradicting field is.
    let result = app
        .keys()
        .list_api_keys(in_account(
            as_ua(pb::ListApiKeysRequest::default()),
            "ghost-acct",
        ))
        .await;
    assert_invalid(result, "username");
    // Authorize keeps answering with the decision.
    let decision = app
        .authorize("ua_local", "ghost-acct", &["listImages"])
        .await;
    assert_eq!(
        decision.decisions[0].reason(),
        pb::DecisionReason::AccountNotFound
    );
    // self* actions only in the subject's own account.
    let own = app
        .authorize("ua_local", "acct-a", &["selfListApiKeys"])
        .await;
    assert!(own.allowed);
    for elsewhere in ["acct-b", "ghost-acct"] {
        let other = app
            .authorize("ua_local", elsewhere, &["selfListApiKeys"])
            .await;
        assert!(!other.allowed, "{elsewhere}: {other:?}");
    }
    // AddRoleMember tells a user admin nothing about users it may not see:
    // a user of another account reads as a missing one.
    app.create_user("acct-c", "carol", "carol-password", &[])
        .await;
    let probe = |username: &'static str| {
        let mut roles = app.roles();
        async move {
            roles
                .add_role_member(as_ua(pb::AddRoleMemberRequest {
                    role: "read-only".into(),
                    username: username.into(),
                    account: "acct-a".into(),
                }))
                .await
                .unwrap_err()
        }
    };
    let exists = probe("carol").await;
    let missing = probe("nobody-at-all").await;
    assert_eq!(exists.code(), Code::NotFound);
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        exists.message().replace("carol", "X"),
        missing.message().replace("nobody-at-all", "X")
    );
}

async fn logs_and_metrics_cannot_be_shaped_by_callers(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let server = Server::start_with(&db, |c| {
        c.env("AUTHZD_LOG_FORMAT", "text")
            .env("AUTHZD_SERVER_METRICS_LISTEN", "127.0.0.1:0");
    })
    .await;
    let ch = connect(&server.addr).await;
    // A request id that is not a plain token is replaced, never echoed.
    let mut request = as_admin(pb::ListAccountsRequest::default());
    request.metadata_mut().insert(
        "x-request-id",
        "x password replaced caller=\"admin\"".parse().unwrap(),
    );
    let response = crate::support::AccountServiceClient::new(ch.clone())
        .list_accounts(request)
        .await
        .unwrap();
    let id = response.metadata().get("x-request-id").unwrap();
    assert!(!id.to_str().unwrap().contains("caller"), "{id:?}");
    // A caller-chosen username with spaces and '=' is quoted in the text
    // log, so it cannot pass for other fields.
    let forged = "mallory outcome=success caller=admin";
    crate::support::AccountServiceClient::new(ch.clone())
        .create_account(as_admin(pb::CreateAccountRequest {
            name: "acme".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    crate::support::UserServiceClient::new(ch.clone())
        .create_user(as_admin(pb::CreateUserRequest {
            account: "acme".into(),
            username: forged.into(),
            password: "mallory-password".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    // Malformed and missing admin credentials are counted and logged.
    let mut bare = tonic::Request::new(pb::ListAccountsRequest::default());
    bare.metadata_mut()
        .insert("authorization", "Basic !!!".parse().unwrap());
    let status = crate::support::AccountServiceClient::new(ch.clone())
        .list_accounts(bare)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = crate::support::AccountServiceClient::new(ch.clone())
        .list_accounts(tonic::Request::new(pb::ListAccountsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // Invented paths all share one metric label.
    for i in 0..20 {
        let status = wire::call(
            &ch,
            &format!("/authz.v1.Invented{i}/Path{i}"),
            Vec::new(),
            &[],
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    }
    // Their closing lines are the last the requests log: once all 20 are
    // in, so is everything before them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server
        .stderr()
        .lines()
        .filter(|l| l.contains("rpc finished") && l.contains("UNIMPLEMENTED"))
        .count()
        < 20
    {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than 20 closing lines:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = server.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("user created"))
        .unwrap_or_else(|| panic!("no line about the forged username:\n{log}"));
    assert!(
        line.contains(&format!("{forged:?}")),
        "the username is not quoted: {line}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("password replaced") && !l.contains("x-request-id")),
        "{log}"
    );
    let metrics_addr = log
        .lines()
        .find_map(|l| l.split_once("metrics listening address=").map(|(_, a)| a))
        .and_then(|a| a.split_whitespace().next())
        .unwrap()
        .to_owned();
    let mut stream = TcpStream::connect(&metrics_addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    assert!(!text.contains("Invented"), "{text}");
    assert!(text.contains(r#"method="unknown""#), "{text}");
    for reason in ["malformed", "missing_credentials"] {
        let counted = format!(
            r#"authzd_authentications_total{{credential="unknown",outcome="failure",reason="{reason}"}}"#
        );
        assert!(text.contains(&counted), "{reason}:\n{text}");
    }
    server.stop();
}

dual!(
    a_user_admin_cannot_take_over_users_who_hold_roles_in_other_accounts,
    control_characters_never_reach_the_database,
    every_string_field_of_every_request_is_validated,
    everything_is_bounded,
    connections_are_bounded_and_silent_ones_closed,
    malformed_bodies_are_invalid_argument_not_internal,
    a_request_without_a_message_is_invalid_argument,
    a_missing_parent_is_not_found,
    one_failing_account_purge_does_not_stop_the_others,
    answers_agree_with_the_rest_of_the_api,
    logs_and_metrics_cannot_be_shaped_by_callers,
);
