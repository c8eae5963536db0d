//! OpenID Connect sign-in against a certified OpenID Provider (panva's
//! oidc-provider, tests/idp/oidc, run by Node on loopback, one for the
//! whole test binary), and against a hostile one beside it that signs
//! whatever a test asks: the forged ID tokens a certified provider never
//! makes.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use authzd::domain::authn::sources::Source;
use authzd::error::{AuthFailure, Error};
use authzd::pb;
use authzd::pb::identity_provider_service_client::IdentityProviderServiceClient;
use authzd::pb::token_service_client::TokenServiceClient;
use serde_json::{Value, json};
use tonic::Code;

use crate::console::{header, http, jar, set_cookies, status};
use crate::dual;
use crate::support::*;

/// The providers, started once per test binary.
pub struct Op {
    /// The certified provider's issuer, `http://127.0.0.1:P`.
    pub issuer: String,
    pub host: String,
    pub hostile_issuer: String,
    pub hostile_host: String,
    _child: std::sync::Mutex<std::process::Child>,
}

pub fn op() -> &'static Op {
    static OP: OnceLock<Op> = OnceLock::new();
    OP.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/oidc");
        assert!(
            dir.join("node_modules").exists(),
            "the test OpenID Provider is not installed: run ./scripts/test (it runs `npm ci` in {})",
            dir.display()
        );
        let mut child = std::process::Command::new("node")
            .arg(dir.join("op.mjs"))
            .arg("--exit-on-stdin-close")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node runs the test OpenID Provider");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let info: Value = serde_json::from_str(&line).unwrap();
        Op {
            issuer: info["issuer"].as_str().unwrap().to_owned(),
            host: format!("127.0.0.1:{}", info["port"]),
            hostile_issuer: info["hostile_issuer"].as_str().unwrap().to_owned(),
            hostile_host: format!("127.0.0.1:{}", info["hostile_port"]),
            _child: std::sync::Mutex::new(child),
        }
    })
}

/// The hostile provider's settings are global: one test at a time uses it.
async fn hostile_turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

async fn control(host: &str, method: &str, path: &str, body: Value) -> Value {
    let (head, text) = http(
        host,
        method,
        path,
        &["Content-Type: application/json"],
        &body.to_string(),
    )
    .await;
    assert!(status(&head) / 100 == 2, "{method} {path}: {head}{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// `(host, path and query)` of an absolute http URL, or of a path on
/// `host`.
fn split_url(url: &str, host: &str) -> (String, String) {
    match url.strip_prefix("http://") {
        Some(rest) => {
            let at = rest.find('/').unwrap_or(rest.len());
            (rest[..at].to_owned(), rest[at..].to_owned())
        }
        None => (host.to_owned(), url.to_owned()),
    }
}

fn query_of(url: &str) -> BTreeMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str(query).unwrap()
}

/// A browser's walk through the certified provider: from the
/// authorization request, past its login form (as `login`), to the
/// redirect back to authzd. Returns that URL.
async fn walk_provider(authorization_url: &str, login: &str, back_to: &str) -> String {
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let (mut host, mut path) = split_url(authorization_url, &op().host);
    let mut method = "GET";
    let mut body = String::new();
    for _ in 0..12 {
        let cookie = format!(
            "Cookie: {}",
            cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let content_type = "Content-Type: application/x-www-form-urlencoded";
        let headers: Vec<&str> = if method == "POST" {
            vec![cookie.as_str(), content_type]
        } else {
            vec![cookie.as_str()]
        };
        let (head, page) = http(&host, method, &path, &headers, &body).await;
        for set in set_cookies(&head) {
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || set.to_ascii_lowercase().contains("max-age=0") {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        match status(&head) {
            301 | 302 | 303 | 307 => {
                let location = header(&head, "location").unwrap().to_owned();
                if location.starts_with(back_to) {
                    return location;
                }
                (host, path) = split_url(&location, &host);
                method = "GET";
                body.clear();
            }
            200 if page.contains(r#"name="login""#) => {
                // The provider's login form: any password.
                let action = page
                    .split(r#"action=""#)
                    .nth(1)
                    .and_then(|a| a.split('"').next())
                    .unwrap()
                    .replace("&amp;", "&");
                (host, path) = split_url(&action, &host);
                method = "POST";
                body =
                    serde_urlencoded::to_string([("login", login), ("password", "any")]).unwrap();
            }
            other => panic!("the provider answered {other}: {head}{page}"),
        }
    }
    panic!("the provider never sent the browser back")
}

fn idps(app: &TestApp) -> IdentityProviderServiceClient<tonic::transport::Channel> {
    IdentityProviderServiceClient::new(app.channel.clone())
}

fn tokens(app: &TestApp) -> TokenServiceClient<tonic::transport::Channel> {
    TokenServiceClient::new(app.channel.clone())
}

/// An app whose public address is its own HTTP face, so the provider's
/// redirects and back-channel posts reach it.
async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with_face(backend, |c, http| {
        c.console.public_url = Some(format!("http://{http}"));
        c.user_authentication.allow_api_keys_for_saml_users = true;
    })
    .await
}

fn public(app: &TestApp) -> String {
    format!("http://{}", app.http)
}

/// A client registered at the certified provider for `idp` on `app`
/// (Dynamic Client Registration): (client_id, client_secret).
async fn register(app: &TestApp, idp: &str) -> (String, String) {
    register_at(&public(app), idp).await
}

/// A client registered for `idp` at the console reached at `base`.
pub async fn register_at(base: &str, idp: &str) -> (String, String) {
    let client = control(
        &op().host,
        "POST",
        "/reg",
        json!({
            "redirect_uris": [format!("{base}/sso/oidc/{idp}/callback")],
            "backchannel_logout_uri": format!("{base}/sso/oidc/{idp}/backchannel-logout"),
            "backchannel_logout_session_required": true,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }),
    )
    .await;
    (
        client["client_id"].as_str().unwrap().to_owned(),
        client["client_secret"].as_str().unwrap().to_owned(),
    )
}

pub async fn account_at_op(login: &str, sub: &str, claims: Value) {
    control(
        &op().host,
        "POST",
        "/test/accounts",
        json!({"login": login, "sub": sub, "claims": claims}),
    )
    .await;
}

/// The provider `idp` over `issuer`, with `adjust` applied.
async fn provider(
    app: &TestApp,
    idp: &str,
    issuer: &str,
    client: (&str, &str),
    adjust: impl FnOnce(&mut pb::CreateIdentityProviderRequest),
) -> Result<pb::IdentityProvider, tonic::Status> {
    let mut request = pb::CreateIdentityProviderRequest {
        name: idp.into(),
        default_account: "engineering".into(),
        default_role: "read-only".into(),
        oidc: Some(pb::OidcSettings {
            issuer: issuer.into(),
            client_id: client.0.into(),
            client_secret: client.1.into(),
            scopes: vec![
                "openid".into(),
                "profile".into(),
                "email".into(),
                "groups".into(),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    adjust(&mut request);
    idps(app)
        .create_identity_provider(as_admin(request))
        .await
        .map(tonic::Response::into_inner)
}

async fn start(app: &TestApp, idp: &str) -> pb::StartOidcLoginResponse {
    tokens(app)
        .start_oidc_login(pb::StartOidcLoginRequest {
            idp: idp.into(),
            relay_state: "/keys".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn grant(
    app: &TestApp,
    idp: &str,
    code: &str,
    state: &str,
) -> Result<pb::CreateTokenResponse, tonic::Status> {
    tokens(app)
        .create_token(pb::CreateTokenRequest {
            grant: Some(pb::create_token_request::Grant::Oidc(pb::OidcGrant {
                idp: idp.into(),
                code: code.into(),
                state: state.into(),
            })),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Why the domain refused a code (what the log, the metrics and the audit
/// record say).
async fn refusal(app: &TestApp, idp: &str, code: &str, state: &str) -> String {
    match app
        .core
        .create_token_with_oidc(idp, code, state, Source::LOCAL)
        .await
    {
        Err(Error::Unauthenticated(AuthFailure::Sso(reason))) => reason.to_owned(),
        Err(other) => panic!("expected an SSO refusal, got {other:?}"),
        Ok(_) => panic!("expected an SSO refusal, got a session"),
    }
}

/// A sign-in at the certified provider as `login`: (code, state).
async fn sign_in_at_op(app: &TestApp, idp: &str, login: &str) -> (String, String) {
    let started = start(app, idp).await;
    let back = walk_provider(
        &started.redirect_url,
        login,
        &format!("{}/sso/oidc/{idp}/callback", public(app)),
    )
    .await;
    let query = query_of(&back);
    assert_eq!(query["state"], started.state, "{back}");
    (query["code"].clone(), query["state"].clone())
}

async fn mapped_group(app: &TestApp, idp: &str, group: &str, role: &str, account: &str) {
    app.groups()
        .create_group(as_admin(pb::CreateGroupRequest {
            name: group.into(),
            description: String::new(),
        }))
        .await
        .unwrap();
    app.groups()
        .add_group_grants(as_admin(pb::GroupGrantsRequest {
            name: group.into(),
            grants: vec![pb::GroupGrant {
                role: role.into(),
                account: account.into(),
            }],
        }))
        .await
        .unwrap();
    idps(app)
        .add_user_group_mappings(as_admin(pb::UserGroupMappingsRequest {
            idp: idp.into(),
            user_groups: vec![group.into()],
        }))
        .await
        .unwrap();
}

fn held(principal: &pb::Principal) -> Vec<(String, String, String)> {
    let mut held: Vec<_> = principal
        .grants
        .iter()
        .map(|g| (g.role.clone(), g.account.clone(), g.group.clone()))
        .collect();
    held.sort();
    held
}

/// The seed's flow through a certified provider: a just-in-time user with
/// the claimed account, roles and mapped groups, who makes an API key;
/// the next sign-in follows what the provider says now.
async fn a_certified_provider_signs_in_a_just_in_time_user(backend: Backend) {
    let app = spawn(backend).await;
    let client = register(&app, "keycloak").await;
    let made = provider(
        &app,
        "keycloak",
        &op().issuer,
        (&client.0, &client.1),
        |p| {
            p.default_role = String::new();
            let oidc = p.oidc.as_mut().unwrap();
            oidc.account_claim = Some("account".into());
            oidc.roles_claim = Some("roles".into());
        },
    )
    .await
    .unwrap();
    // What an administrator registers at the provider, and never the secret.
    let oidc = made.oidc.clone().unwrap();
    assert_eq!(oidc.client_secret, "");
    assert!(oidc.client_secret_set);
    assert_eq!(
        oidc.redirect_uri,
        format!("{}/sso/oidc/keycloak/callback", public(&app))
    );
    assert_eq!(
        oidc.backchannel_logout_uri,
        format!("{}/sso/oidc/keycloak/backchannel-logout", public(&app))
    );
    assert_eq!(oidc.token_endpoint, format!("{}/token", op().issuer));
    assert_eq!(oidc.username_claim.as_deref(), Some("preferred_username"));
    assert_eq!(oidc.groups_claim.as_deref(), Some("groups"));
    assert_eq!(made.idp_metadata_xml, "");
    let listed = idps(&app)
        .list_identity_providers(as_admin(pb::ListIdentityProvidersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .identity_providers;
    assert!(
        listed
            .iter()
            .all(|p| p.oidc.as_ref().is_some_and(|o| o.client_secret.is_empty()))
    );
    assert!(!format!("{listed:?}").contains(&client.1));

    app.create_account("acme").await;
    mapped_group(&app, "keycloak", "devs", "read-write", "acme").await;
    let login = format!("alice-{}", backend_name(backend));
    let sub = format!("sub-{login}");
    account_at_op(
        &login,
        &sub,
        json!({"preferred_username": login, "account": "acme",
               "roles": ["read-only", "no-such-role"], "groups": ["devs", "unmapped"]}),
    )
    .await;
    let (code, state) = sign_in_at_op(&app, "keycloak", &login).await;
    let pair = grant(&app, "keycloak", &code, &state).await.unwrap();
    assert_eq!(pair.relay_state, "/keys");
    let who = app.token_login(&pair.access_token).await.unwrap();
    assert_eq!(who.username, login);
    assert_eq!(who.account, "acme");
    assert_eq!(who.user_type(), pb::UserType::Oidc);
    assert_eq!(
        held(&who),
        [
            ("read-only".into(), "acme".into(), String::new()),
            ("read-write".into(), "acme".into(), "devs".into()),
        ]
    );
    let user = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "acme".into(),
            username: login.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.idp_name, "keycloak");
    assert_eq!(user.r#type(), pb::UserType::Oidc);
    // The seed's "API keys for SAML users" flow, for an OIDC user.
    let key = app
        .keys()
        .create_api_key(as_bearer(
            &pair.access_token,
            pb::CreateApiKeyRequest {
                name: "laptop".into(),
                expires_at: in_days(&app.core, 1),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    app.key_login(&key.value).await.unwrap();

    // The state and the code were spent: neither signs in again.
    assert_eq!(
        refusal(&app, "keycloak", &code, &state).await,
        "oidc_unknown_state"
    );
    let fresh = start(&app, "keycloak").await;
    assert_eq!(
        refusal(&app, "keycloak", &code, &fresh.state).await,
        "oidc_code_rejected"
    );
    // On the wire, every refusal is the same.
    let status = grant(&app, "keycloak", &code, &state).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "invalid credentials");

    // The provider dropped the group: the next sign-in drops its grants.
    account_at_op(
        &login,
        &sub,
        json!({"preferred_username": login, "account": "acme", "roles": ["read-only"],
               "groups": []}),
    )
    .await;
    let (code, state) = sign_in_at_op(&app, "keycloak", &login).await;
    let pair = grant(&app, "keycloak", &code, &state).await.unwrap();
    let who = app.token_login(&pair.access_token).await.unwrap();
    assert_eq!(
        held(&who),
        [("read-only".into(), "acme".into(), String::new())]
    );

    // The username now belongs to another person at the provider (another
    // sub): not this user.
    account_at_op(
        &login,
        &format!("{sub}-someone-else"),
        json!({"preferred_username": login, "account": "acme", "roles": ["read-only"]}),
    )
    .await;
    let (code, state) = sign_in_at_op(&app, "keycloak", &login).await;
    assert_eq!(
        refusal(&app, "keycloak", &code, &state).await,
        "oidc_subject_changed"
    );
}

/// PKCE: a code is worth nothing without the verifier of the sign-in that
/// asked for it, and the provider enforces it.
async fn a_code_needs_its_own_verifier(backend: Backend) {
    let app = spawn(backend).await;
    let client = register(&app, "keycloak").await;
    provider(
        &app,
        "keycloak",
        &op().issuer,
        (&client.0, &client.1),
        |_| {},
    )
    .await
    .unwrap();
    let login = format!("pkce-{}", backend_name(backend));
    account_at_op(
        &login,
        &format!("sub-{login}"),
        json!({"preferred_username": login}),
    )
    .await;
    let (code, _state) = sign_in_at_op(&app, "keycloak", &login).await;
    // An intercepted code redeemed without the verifier: the provider
    // refuses it.
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{}:{}", client.0, client.1),
    );
    let form = serde_urlencoded::to_string([
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        (
            "redirect_uri",
            &format!("{}/sso/oidc/keycloak/callback", public(&app)),
        ),
    ])
    .unwrap();
    let (head, body) = http(
        &op().host,
        "POST",
        "/token",
        &[
            &format!("Authorization: Basic {basic}"),
            "Content-Type: application/x-www-form-urlencoded",
        ],
        &form,
    )
    .await;
    assert_eq!(status(&head), 400, "{head}{body}");
    assert!(body.contains("invalid_grant"), "{body}");
    // Through another sign-in's state (so another verifier): refused.
    let other = start(&app, "keycloak").await;
    assert_eq!(
        refusal(&app, "keycloak", &code, &other.state).await,
        "oidc_code_rejected"
    );
}

/// Forged ID tokens, each refused for its own reason; the good algorithms
/// and a rotated key pass (so the corpus can fail).
async fn forged_id_tokens_are_refused_for_their_reason(backend: Backend) {
    let _turn = hostile_turn().await;
    let hostile = &op().hostile_host;
    control(hostile, "POST", "/test/next", json!({})).await;
    control(hostile, "POST", "/test/discovery", json!({"issuer": null})).await;
    control(
        hostile,
        "POST",
        "/test/userinfo",
        json!({"sub": "hostile-sub"}),
    )
    .await;
    let app = spawn(backend).await;
    app.create_account("engineering").await;
    provider(
        &app,
        "rogue",
        &op().hostile_issuer,
        ("rp", "rp-secret"),
        |_| {},
    )
    .await
    .unwrap();
    mapped_group(&app, "rogue", "devs", "read-write", "engineering").await;
    let attempt = async |spec: Value| -> Result<String, String> {
        control(hostile, "POST", "/test/next", spec).await;
        let started = start(&app, "rogue").await;
        let (_, path) = split_url(&started.redirect_url, hostile);
        let (head, _) = http(hostile, "GET", &path, &[], "").await;
        let query = query_of(header(&head, "location").unwrap());
        match app
            .core
            .create_token_with_oidc("rogue", &query["code"], &query["state"], Source::LOCAL)
            .await
        {
            Ok(signed_in) => Ok(app
                .token_login(signed_in.issued.access_token.expose())
                .await
                .unwrap()
                .username),
            Err(Error::Unauthenticated(AuthFailure::Sso(reason))) => Err(reason.to_owned()),
            Err(other) => panic!("{other:?}"),
        }
    };
    let stats = async || control(hostile, "GET", "/test/stats", Value::Null).await;
    control(hostile, "POST", "/test/reset-stats", json!({})).await;
    // Good ones: every allowed algorithm; the verifier went with the code.
    for key in ["rsa", "ec", "ed", "ps"] {
        assert_eq!(
            attempt(json!({"key": key})).await,
            Ok("mallory".into()),
            "{key}"
        );
    }
    let seen = stats().await;
    let requests = seen["token_requests"].as_array().unwrap();
    assert!(
        requests.iter().all(|r| r["pkce_ok"] == true
            && r["auth_method"] == "client_secret_basic"
            && r["client_secret"] == "rp-secret"),
        "{requests:?}"
    );
    // A rotated key: the JWKS is read again once, and the token passes.
    let jwks_before = stats().await["jwks_fetches"].as_u64().unwrap();
    let rotated = control(hostile, "POST", "/test/rotate", json!({})).await["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(attempt(json!({})).await, Ok("mallory".into()));
    assert_eq!(
        stats().await["jwks_fetches"].as_u64().unwrap(),
        jwks_before + 1
    );
    // An unknown kid within the minute: refused without another read.
    assert_eq!(
        attempt(json!({"kid": "no-such-key"})).await,
        Err("oidc_unknown_kid".into())
    );
    assert_eq!(
        stats().await["jwks_fetches"].as_u64().unwrap(),
        jwks_before + 1
    );
    let now = app.core.clock().now().timestamp();
    for (spec, reason) in [
        (
            json!({"claims": {"iss": "https://evil.example"}}),
            "oidc_issuer",
        ),
        (json!({"claims": {"aud": "someone-else"}}), "oidc_audience"),
        (
            json!({"claims": {"aud": ["rp", "someone-else"]}}),
            "oidc_azp",
        ),
        (
            json!({"claims": {"exp": now - 3600, "iat": now - 7200}}),
            "oidc_expired",
        ),
        (
            json!({"claims": {"iat": now + 3600, "exp": now + 7200}}),
            "oidc_issued_in_future",
        ),
        (json!({"claims": {"nbf": now + 3600}}), "oidc_not_yet_valid"),
        (json!({"key": "none"}), "oidc_alg_none"),
        (
            json!({"key": "hmac", "hmac_secret": "rp-secret"}),
            "oidc_alg_hmac",
        ),
        (json!({"key": "rogue"}), "oidc_signature"),
        (json!({"omit_kid": true}), "oidc_no_kid"),
        (
            json!({"claims": {"nonce": "not-the-one-sent"}}),
            "oidc_nonce",
        ),
        (json!({"claims": {"nonce": null}}), "oidc_nonce"),
        (json!({"at_hash": "bad"}), "oidc_at_hash"),
        (json!({"claims": {"sub": null}}), "oidc_no_subject"),
        (json!({"key": "ec", "kid": rotated}), "oidc_key_algorithm"),
        // The key declares RS256: another algorithm with it is refused.
        (json!({"key": "rsa", "alg": "PS256"}), "oidc_key_algorithm"),
    ] {
        assert_eq!(attempt(spec.clone()).await, Err(reason.into()), "{spec}");
    }
    // Claims the ID token lacks come from userinfo, for the same subject
    // only.
    control(
        hostile,
        "POST",
        "/test/userinfo",
        json!({"sub": "hostile-sub", "groups": ["devs"]}),
    )
    .await;
    let before = stats().await["userinfo_fetches"].as_u64().unwrap();
    assert_eq!(attempt(json!({})).await, Ok("mallory".into()));
    assert_eq!(
        stats().await["userinfo_fetches"].as_u64().unwrap(),
        before + 1
    );
    let who = app
        .users()
        .get_user(as_admin(pb::GetUserRequest {
            account: "engineering".into(),
            username: "mallory".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.r#type(), pb::UserType::Oidc);
    control(
        hostile,
        "POST",
        "/test/userinfo",
        json!({"sub": "someone-else", "groups": ["devs"]}),
    )
    .await;
    assert_eq!(
        attempt(json!({})).await,
        Err("oidc_userinfo_subject".into())
    );
    control(hostile, "POST", "/test/next", json!({})).await;
    control(
        hostile,
        "POST",
        "/test/userinfo",
        json!({"sub": "hostile-sub"}),
    )
    .await;
}

/// The model's rules: an OIDC provider takes no SAML fields, a SAML one
/// never becomes OIDC, the issuer is what it says and served safely, and
/// the secret is write-only.
async fn providers_are_checked_when_configured(backend: Backend) {
    let _turn = hostile_turn().await;
    let app = spawn(backend).await;
    app.create_account("engineering").await;
    let invalid = |status: tonic::Status, field: &str| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    };
    let hostile = op().hostile_issuer.clone();
    let client = ("rp", "rp-secret");
    invalid(
        provider(&app, "corp", "http://idp.example.com", client, |_| {})
            .await
            .unwrap_err(),
        "oidc.issuer",
    );
    invalid(
        provider(&app, "corp", &hostile, ("rp", ""), |_| {})
            .await
            .unwrap_err(),
        "oidc.client_secret",
    );
    invalid(
        provider(&app, "corp", &hostile, client, |p| {
            p.oidc.as_mut().unwrap().scopes = vec!["profile".into()];
        })
        .await
        .unwrap_err(),
        "oidc.scopes",
    );
    invalid(
        provider(&app, "corp", &hostile, client, |p| {
            p.allow_idp_initiated = Some(true);
        })
        .await
        .unwrap_err(),
        "allow_idp_initiated",
    );
    // Discovery naming another issuer (OIDC Discovery 4.3).
    control(
        &op().hostile_host,
        "POST",
        "/test/discovery",
        json!({"issuer": "https://login.example.com"}),
    )
    .await;
    let refused = provider(&app, "corp", &hostile, client, |_| {})
        .await
        .unwrap_err();
    control(
        &op().hostile_host,
        "POST",
        "/test/discovery",
        json!({"issuer": null}),
    )
    .await;
    invalid(refused, "oidc.issuer");
    // Nothing was made by the refusals.
    let listed = idps(&app)
        .list_identity_providers(as_admin(pb::ListIdentityProvidersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.identity_providers.is_empty(), "{listed:?}");

    provider(&app, "corp", &hostile, client, |_| {})
        .await
        .unwrap();
    // It has no SAML half: no SAML sign-in goes through it, and it has no
    // SP metadata.
    let saml = tokens(&app)
        .start_saml_login(pb::StartSamlLoginRequest {
            idp: "corp".into(),
            relay_state: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(saml.code(), Code::NotFound, "{saml:?}");
    let (head, _) = http(
        &app.http.to_string(),
        "GET",
        "/sso/saml/corp/metadata",
        &[],
        "",
    )
    .await;
    assert_eq!(status(&head), 404, "{head}");
    // A new secret: the audit trail says it was replaced, never what it is.
    let updated = idps(&app)
        .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
            name: "corp".into(),
            oidc: Some(pb::OidcSettings {
                client_secret: "rotated-secret-value".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.oidc.as_ref().unwrap().client_secret, "");
    assert_eq!(updated.oidc.as_ref().unwrap().client_id, "rp");
    let events = pb::audit_service_client::AuditServiceClient::new(app.channel.clone())
        .list_events(as_admin(pb::ListEventsRequest {
            target: "corp".into(),
            target_kind: "identity_provider".into(),
            kind: "change".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    let trail = format!("{events:?}");
    assert!(trail.contains("replaced"), "{trail}");
    assert!(!trail.contains("rotated-secret-value") && !trail.contains("rp-secret"));
    invalid(
        idps(&app)
            .update_identity_provider(as_admin(pb::UpdateIdentityProviderRequest {
                name: "corp".into(),
                idp_metadata_url: Some("https://idp.example.com/m".into()),
                ..Default::default()
            }))
            .await
            .unwrap_err(),
        "idp_metadata_url",
    );
    // A user made by hand for the provider (for require_existing_users).
    let made = app
        .users()
        .create_user(as_admin(pb::CreateUserRequest {
            account: "engineering".into(),
            username: "hand-made".into(),
            r#type: pb::UserType::Oidc as i32,
            idp_name: "corp".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.r#type(), pb::UserType::Oidc);
}

/// Back-channel logout: the provider's logout token ends the session on
/// every replica (and the console's), once; forged ones end nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backchannel_logout_ends_the_session_on_every_replica() {
    let a = spawn(Backend::Postgres).await;
    let a_url = public(&a);
    let b = spawn_on(TestDatabase::external(&a.db.url), |c| {
        c.console.public_url = Some(a_url.clone());
    })
    .await;
    let client = register(&a, "keycloak").await;
    provider(&a, "keycloak", &op().issuer, (&client.0, &client.1), |_| {})
        .await
        .unwrap();
    let login = "logout-pg";
    let sub = "sub-logout-pg";
    account_at_op(login, sub, json!({"preferred_username": login})).await;
    // Started on A, finished on B (the state is in the database).
    let (code, state) = sign_in_at_op(&a, "keycloak", login).await;
    let pair = grant(&b, "keycloak", &code, &state).await.unwrap();
    let sid = control(
        &op().host,
        "GET",
        &format!("/test/last-sid?login={login}&client_id={}", client.0),
        Value::Null,
    )
    .await["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    // A second session at the provider (another browser: another sid).
    let other = {
        let (code, state) = sign_in_at_op(&a, "keycloak", login).await;
        grant(&a, "keycloak", &code, &state).await.unwrap()
    };
    b.token_login(&pair.access_token).await.unwrap();
    // The provider posts its logout token to A's back-channel address.
    let sent = control(
        &op().host,
        "POST",
        "/test/backchannel-logout",
        json!({"client_id": client.0, "sub": sub, "sid": sid}),
    )
    .await;
    assert_eq!(sent["ok"], true, "{sent}");
    // B refuses the session within a second, like any revocation; a
    // session of another sid is the user's still.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match b.token_login(&pair.access_token).await {
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated);
                break;
            }
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Ok(_) => panic!("the session outlived its back-channel logout on B"),
        }
    }
    let refreshed = tokens(&b)
        .create_token(pb::CreateTokenRequest {
            grant: Some(pb::create_token_request::Grant::RefreshToken(
                pair.refresh_token.clone(),
            )),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refreshed.code(), Code::Unauthenticated);
    // Without a sid: every session the provider started for that sub.
    a.token_login(&other.access_token).await.unwrap();
    b.token_login(&other.access_token).await.unwrap();
    let sent = control(
        &op().host,
        "POST",
        "/test/backchannel-logout",
        json!({"client_id": client.0, "sub": sub}),
    )
    .await;
    assert_eq!(sent["ok"], true, "{sent}");
    assert_eq!(
        a.token_login(&other.access_token).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

/// Forged and replayed logout tokens are refused with 400 and end nothing.
async fn forged_logout_tokens_end_nothing(backend: Backend) {
    let _turn = hostile_turn().await;
    control(&op().hostile_host, "POST", "/test/next", json!({})).await;
    let app = spawn(backend).await;
    provider(
        &app,
        "rogue",
        &op().hostile_issuer,
        ("rp", "rp-secret"),
        |_| {},
    )
    .await
    .unwrap();
    let started = start(&app, "rogue").await;
    let (_, path) = split_url(&started.redirect_url, &op().hostile_host);
    let (head, _) = http(&op().hostile_host, "GET", &path, &[], "").await;
    let query = query_of(header(&head, "location").unwrap());
    let pair = grant(&app, "rogue", &query["code"], &query["state"])
        .await
        .unwrap();
    let now = app.core.clock().now().timestamp();
    let logout = |claims: Value, key: &str| {
        let mut token = json!({
            "iss": op().hostile_issuer, "aud": "rp", "iat": now, "exp": now + 120,
            "jti": format!("jti-{}", rand::random::<u64>()), "sub": "hostile-sub",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        for (k, v) in claims.as_object().unwrap() {
            if v.is_null() {
                token.as_object_mut().unwrap().remove(k);
            } else {
                token[k] = v.clone();
            }
        }
        json!({"claims": token, "key": key, "typ": "logout+jwt"})
    };
    let post = async |spec: Value| {
        let jwt = control(&op().hostile_host, "POST", "/test/mint", spec).await["jwt"]
            .as_str()
            .unwrap()
            .to_owned();
        let body = serde_urlencoded::to_string([("logout_token", jwt.as_str())]).unwrap();
        let (head, text) = http(
            &app.http.to_string(),
            "POST",
            "/sso/oidc/rogue/backchannel-logout",
            &["Content-Type: application/x-www-form-urlencoded"],
            &body,
        )
        .await;
        (status(&head), text, jwt)
    };
    for spec in [
        logout(json!({"events": null}), "rsa"),
        logout(json!({"nonce": "n"}), "rsa"),
        logout(json!({"sub": null}), "rsa"),
        logout(json!({"jti": null}), "rsa"),
        logout(json!({"aud": "someone-else"}), "rsa"),
        logout(json!({}), "rogue"),
        logout(json!({}), "none"),
    ] {
        let (code, text, _) = post(spec.clone()).await;
        assert_eq!(code, 400, "{spec}: {text}");
        assert!(text.contains("invalid_request"), "{text}");
    }
    app.token_login(&pair.access_token).await.unwrap();
    // A good one ends the session; the same token again is a replay.
    let (code, _, jwt) = post(logout(json!({}), "rsa")).await;
    assert_eq!(code, 200);
    assert_eq!(
        app.token_login(&pair.access_token)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let body = serde_urlencoded::to_string([("logout_token", jwt.as_str())]).unwrap();
    let (head, _) = http(
        &app.http.to_string(),
        "POST",
        "/sso/oidc/rogue/backchannel-logout",
        &["Content-Type: application/x-www-form-urlencoded"],
        &body,
    )
    .await;
    assert_eq!(status(&head), 400, "{head}");
}

/// The console: "Sign in with", the provider, the callback's page posting
/// on from the console's origin, and a session only for the browser that
/// started the sign-in.
async fn the_console_signs_in_through_the_callback(backend: Backend) {
    let app = spawn(backend).await;
    let host = app.http.to_string();
    let client = register(&app, "keycloak").await;
    provider(
        &app,
        "keycloak",
        &op().issuer,
        (&client.0, &client.1),
        |_| {},
    )
    .await
    .unwrap();
    let (_, page) = http(&host, "GET", "/sign-in", &[], "").await;
    assert!(
        page.contains(&format!(
            r#"href="{}/sso/oidc/keycloak/login""#,
            public(&app)
        )),
        "{page}"
    );
    let login = format!("console-{}", backend_name(backend));
    account_at_op(
        &login,
        &format!("sub-{login}"),
        json!({"preferred_username": login}),
    )
    .await;
    let (head, _) = http(&host, "GET", "/sso/oidc/keycloak/login", &[], "").await;
    assert_eq!(status(&head), 303, "{head}");
    let binding = set_cookies(&head)
        .into_iter()
        .find(|c| c.starts_with("authzd-oidc="))
        .unwrap_or_else(|| panic!("no binding cookie: {head}"))
        .to_owned();
    for part in ["Path=/;", "HttpOnly", "SameSite=Strict"] {
        assert!(binding.contains(part), "{binding}");
    }
    let location = header(&head, "location").unwrap().to_owned();
    let back = walk_provider(
        &location,
        &login,
        &format!("{}/sso/oidc/keycloak/callback", public(&app)),
    )
    .await;
    // The callback sets and spends nothing; its page posts on.
    let (_, path) = split_url(&back, &host);
    let (head, hop) = http(&host, "GET", &path, &["Sec-Fetch-Site: cross-site"], "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(set_cookies(&head).is_empty(), "{head}");
    assert!(
        hop.contains(
            r#"<form id="sso-continue" method="post" action="/sso/oidc/keycloak/continue">"#
        ),
        "{hop}"
    );
    let query = query_of(&back);
    let form = serde_urlencoded::to_string([
        ("code", query["code"].as_str()),
        ("state", query["state"].as_str()),
        ("error", ""),
    ])
    .unwrap();
    let same_origin = |cookie: &str| vec![cookie.to_owned(), "Sec-Fetch-Site: same-origin".into()];
    // Another browser (no cookie, or another sign-in's): no session, and
    // the sign-in stays this browser's to finish.
    for cookie in [
        "Cookie: x=y".to_owned(),
        "Cookie: authzd-oidc=someone-elses".to_owned(),
    ] {
        let headers = same_origin(&cookie);
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let (head, page) = http(
            &host,
            "POST",
            "/sso/oidc/keycloak/continue",
            &headers,
            &form,
        )
        .await;
        assert_eq!(status(&head), 401, "{head}");
        assert!(
            page.contains("Signing in with keycloak did not succeed"),
            "{page}"
        );
    }
    let headers = same_origin(&jar(&[binding.as_str()]));
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let (head, _) = http(
        &host,
        "POST",
        "/sso/oidc/keycloak/continue",
        &headers,
        &form,
    )
    .await;
    assert_eq!(status(&head), 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/keys"));
    let cookies = set_cookies(&head);
    assert!(
        cookies.iter().any(|c| c.starts_with("authzd-oidc=;")),
        "the spent cookie is cleared: {head}"
    );
    let session = jar(&cookies);
    let (head, page) = http(&host, "GET", "/keys", &[&session], "").await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(page.contains(&login), "{page}");
}

/// The certified provider sends the client a logout token for all of
/// `sub`'s sessions.
pub async fn backchannel_logout(client_id: &str, sub: &str) {
    let sent = control(
        &op().host,
        "POST",
        "/test/backchannel-logout",
        json!({"client_id": client_id, "sub": sub}),
    )
    .await;
    assert_eq!(sent["ok"], true, "{sent}");
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

dual!(
    a_certified_provider_signs_in_a_just_in_time_user,
    a_code_needs_its_own_verifier,
    forged_id_tokens_are_refused_for_their_reason,
    providers_are_checked_when_configured,
    forged_logout_tokens_end_nothing,
    the_console_signs_in_through_the_callback,
);
