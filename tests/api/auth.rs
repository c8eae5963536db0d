use authzd::pb;
use authzd::pb::authenticate_request::Credentials;
use authzd::pb::authorize_request::Subject;
use tonic::{Code, Request};

use crate::dual;
use crate::support::*;

fn by_header(header: &str) -> pb::AuthenticateRequest {
    pb::AuthenticateRequest {
        credentials: Some(Credentials::Authorization(header.into())),
        ..Default::default()
    }
}

async fn authenticate_returns_the_principal(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    let alice = app
        .create_user("acme", "alice", "alice-password", &["read-only"])
        .await;
    let principal = app.login("alice", "alice-password").await.unwrap();
    assert_eq!(principal.user_id, alice.id);
    assert_eq!(principal.username, "alice");
    assert_eq!(principal.account, "acme");
    assert_eq!(principal.user_type(), pb::UserType::Native);
    assert_eq!(principal.account_type(), pb::AccountType::User);
    assert_eq!(principal.credential_kind(), pb::CredentialKind::Password);
    assert!(!principal.global_admin);
    assert_eq!(principal.grants.len(), 1);
    assert_eq!(
        (
            principal.grants[0].role.as_str(),
            principal.grants[0].account.as_str()
        ),
        ("read-only", "acme")
    );

    let explicit = app
        .auth()
        .authenticate(as_service(pb::AuthenticateRequest {
            credentials: Some(Credentials::Password(pb::PasswordCredentials {
                username: "alice".into(),
                password: "alice-password".into(),
            })),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap();
    assert_eq!(explicit, principal);
    let admin = app.login("admin", ADMIN_PASSWORD).await.unwrap();
    assert!(admin.global_admin);
    assert_eq!(admin.account_type(), pb::AccountType::Admin);
}

async fn every_authentication_failure_looks_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_account("frozen").await;
    app.create_account("doomed").await;
    app.create_user("acme", "alice", "alice-password", &[])
        .await;
    app.create_user("acme", "dis", "dis-password", &[]).await;
    app.create_user("frozen", "fred", "fred-password", &[])
        .await;
    app.create_user("doomed", "dora", "dora-password", &[])
        .await;
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
            username: "dis".into(),
            state: pb::UserState::Disabled.into(),
        }))
        .await
        .unwrap();
    app.set_account_state("frozen", pb::AccountState::Disabled)
        .await;
    app.set_account_state("doomed", pb::AccountState::Disabled)
        .await;
    app.accounts()
        .delete_account(as_admin(pb::DeleteAccountRequest {
            name: "doomed".into(),
        }))
        .await
        .unwrap();

    let cases = [
        basic("nobody", "whatever-password"),
        basic("alice", "wrong-password"),
        basic("dis", "dis-password"),
        basic("fred", "fred-password"),
        basic("dora", "dora-password"),
        basic("sam", ""),
        basic("sam", "any-password"),
        basic("_api_key", "not-a-key"),
        "Basic !!!not-base64".into(),
        "Basic".into(),
        "Bearer something".into(),
        String::new(),
    ];
    let mut messages = Vec::new();
    for header in &cases {
        let status = app
            .auth()
            .authenticate(as_service(by_header(header)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{header}");
        messages.push(status.message().to_owned());
    }
    let missing = app
        .auth()
        .authenticate(as_service(pb::AuthenticateRequest {
            credentials: None,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    messages.push(missing.message().to_owned());
    messages.dedup();
    assert_eq!(messages.len(), 1, "{messages:?}");
    // Nothing about the cause leaks into the message.
    assert!(!messages[0].contains("disabled") && !messages[0].contains("unknown"));
}

async fn unknown_users_cost_a_password_verification(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &[])
        .await;
    let hasher = app.core.hasher();
    let before = hasher.verifications();
    for (n, (username, password)) in [("nobody", "some-password"), ("alice", "wrong-password")]
        .into_iter()
        .enumerate()
    {
        let status = app.login(username, password).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{username}");
        assert_eq!(status.message(), "invalid credentials", "{username}");
        assert_eq!(hasher.verifications(), before + n as u64 + 1, "{username}");
    }
}

async fn authorize_decides_per_role_with_reasons(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_account("beta").await;
    app.create_user("acme", "reader", "reader-password", &["read-only"])
        .await;
    app.create_user("acme", "writer", "writer-password", &["read-write"])
        .await;
    app.create_user("acme", "policyed", "policyed-password", &["policy-editor"])
        .await;
    app.create_user("acme", "analyzer", "analyzer-password", &["image-analyzer"])
        .await;
    app.create_user(
        "acme",
        "inventory",
        "inventory-password",
        &["inventory-agent"],
    )
    .await;
    app.create_user("acme", "fullctl", "fullctl-password", &["full-control"])
        .await;
    app.create_user("acme", "none", "none-password", &[]).await;

    let table: &[(&str, &str, bool)] = &[
        ("reader", "listImages", true),
        ("reader", "createImage", false),
        ("writer", "createImage", true),
        ("writer", "createUser", false),
        ("policyed", "createPolicy", true),
        ("policyed", "createImage", false),
        ("analyzer", "createImage", true),
        ("analyzer", "createPolicy", false),
        ("inventory", "syncInventory", true),
        ("inventory", "listImages", false),
        ("fullctl", "createUser", true),
        ("fullctl", "deleteImage", true),
        ("fullctl", "createAccount", false),
        ("none", "listImages", false),
        ("none", "selfListApiKeys", true),
    ];
    for (user, action, allowed) in table {
        let response = app.authorize(user, "acme", &[action]).await;
        let d = &response.decisions[0];
        assert_eq!(d.allowed, *allowed, "{user} {action}: {d:?}");
        assert_eq!(response.allowed, *allowed);
        let expected = match (allowed, *action) {
            (true, "selfListApiKeys") => pb::DecisionReason::Self_,
            (true, _) => pb::DecisionReason::Role,
            (false, _) => pb::DecisionReason::NoGrant,
        };
        assert_eq!(d.reason(), expected, "{user} {action}");
    }
    let system = app.authorize("fullctl", "acme", &["createAccount"]).await;
    assert_eq!(system.decisions[0].domain, "system");

    // Several actions: one verdict, one decision each.
    let mixed = app
        .authorize("reader", "acme", &["listImages", "createImage"])
        .await;
    assert!(!mixed.allowed);
    assert_eq!(
        mixed
            .decisions
            .iter()
            .map(|d| d.allowed)
            .collect::<Vec<_>>(),
        [true, false]
    );

    // Administrators everywhere; users nowhere without a role.
    let admin = app
        .authorize("admin", "beta", &["createImage", "createAccount"])
        .await;
    assert!(admin.allowed);
    assert!(
        admin
            .decisions
            .iter()
            .all(|d| d.reason() == pb::DecisionReason::Admin)
    );
    let elsewhere = app.authorize("writer", "beta", &["listImages"]).await;
    assert!(!elsewhere.allowed);
    // Nobody acts in an account that does not exist, administrators included.
    for user in ["writer", "admin"] {
        let missing = app
            .authorize(user, "no-such-account", &["listImages"])
            .await;
        assert!(!missing.allowed);
        assert_eq!(
            missing.decisions[0].reason(),
            pb::DecisionReason::AccountNotFound
        );
    }
}

async fn authorize_takes_the_account_context_from_metadata_or_field(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_account("beta").await;
    app.create_user("beta", "bob", "bob-password", &[]).await;
    app.roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: "read-only".into(),
            username: "bob".into(),
            account: "acme".into(),
        }))
        .await
        .unwrap();
    let request = |account: &str| pb::AuthorizeRequest {
        username_credential: 0,
        subject: Some(Subject::Authorization(basic("bob", "bob-password"))),
        account: account.into(),
        actions: vec!["listImages".into()],
        ..Default::default()
    };
    let via_header = app
        .auth()
        .authorize(in_account(as_service(request("")), "acme"))
        .await
        .unwrap()
        .into_inner();
    assert!(via_header.allowed);
    assert_eq!(via_header.account, "acme");
    let own = app
        .auth()
        .authorize(as_service(request("")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.account, "beta");
    assert!(!own.allowed);

    // A disabled target account refuses everyone but administrators.
    app.set_account_state("acme", pb::AccountState::Disabled)
        .await;
    let refused = app
        .auth()
        .authorize(as_service(request("acme")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        refused.decisions[0].reason(),
        pb::DecisionReason::AccountDisabled
    );
    assert!(
        app.authorize("admin", "acme", &["listImages"])
            .await
            .allowed
    );
}

async fn authorize_refuses_bad_subjects_and_unknown_actions(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_user("acme", "alice", "alice-password", &["read-only"])
        .await;
    let mut auth = app.auth();
    let with = |subject: Subject, actions: &[&str]| pb::AuthorizeRequest {
        username_credential: 0,
        subject: Some(subject),
        account: String::new(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    assert_invalid(
        auth.authorize(as_service(with(
            Subject::Username("alice".into()),
            &["listImages", "flyToTheMoon"],
        )))
        .await,
        "actions[1]",
    );
    assert_invalid(
        auth.authorize(as_service(with(Subject::Username("alice".into()), &[])))
            .await,
        "actions",
    );
    assert_code(
        auth.authorize(as_service(with(
            Subject::Authorization(basic("alice", "nope-nope")),
            &["listImages"],
        )))
        .await,
        Code::Unauthenticated,
    );
    assert_code(
        auth.authorize(as_service(with(
            Subject::Password(pb::PasswordCredentials {
                username: "alice".into(),
                password: "alice-password".into(),
            }),
            &["listImages"],
        )))
        .await,
        Code::Ok,
    );
    assert_code(
        auth.authorize(as_service(with(
            Subject::Username("ghost".into()),
            &["listImages"],
        )))
        .await,
        Code::NotFound,
    );
    assert_invalid(
        auth.authorize(as_service(pb::AuthorizeRequest {
            username_credential: 0,
            subject: None,
            account: String::new(),
            actions: vec!["listImages".into()],
            ..Default::default()
        }))
        .await,
        "subject",
    );
}

async fn check_rpcs_need_a_configured_caller_key(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.server.caller_keys = vec![
            authzd::domain::secret::Secret::new(CALLER_KEY),
            authzd::domain::secret::Secret::new("next-caller-key-abcdefgh"),
        ];
    })
    .await;
    let header = basic("admin", ADMIN_PASSWORD);
    assert_code(
        app.auth()
            .authenticate(Request::new(by_header(&header)))
            .await,
        Code::Unauthenticated,
    );
    let mut wrong = Request::new(by_header(&header));
    wrong.metadata_mut().insert(
        "authorization",
        "Bearer not-the-key-at-all".parse().unwrap(),
    );
    assert_code(app.auth().authenticate(wrong).await, Code::Unauthenticated);
    // Either key of a rotation works.
    assert_code(
        app.auth()
            .authenticate(as_service(by_header(&header)))
            .await,
        Code::Ok,
    );
    let mut next = Request::new(by_header(&header));
    next.metadata_mut().insert(
        "authorization",
        "Bearer next-caller-key-abcdefgh".parse().unwrap(),
    );
    assert_code(app.auth().authenticate(next).await, Code::Ok);
}

async fn without_caller_keys_the_checks_are_open_on_loopback(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.server.caller_keys.clear()).await;
    let header = basic("admin", ADMIN_PASSWORD);
    assert_code(
        app.auth()
            .authenticate(Request::new(by_header(&header)))
            .await,
        Code::Ok,
    );
}

dual!(
    authenticate_returns_the_principal,
    every_authentication_failure_looks_the_same,
    unknown_users_cost_a_password_verification,
    authorize_decides_per_role_with_reasons,
    authorize_takes_the_account_context_from_metadata_or_field,
    authorize_refuses_bad_subjects_and_unknown_actions,
    check_rpcs_need_a_configured_caller_key,
    without_caller_keys_the_checks_are_open_on_loopback,
);
