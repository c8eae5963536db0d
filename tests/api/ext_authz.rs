//! Envoy ext_authz: the HTTP requests a proxy forwards are decided by the
//! route table and the same decision function as the admin RPCs, and every
//! refusal the request causes is an `Ok` reply with a denied HTTP response.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use authzd::pb;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use tonic::Code;
use tonic::transport::Channel;

use crate::dual;
use crate::support::*;

/// The built-in table, as the tests read it: one row per operation.
struct Row {
    method: String,
    path: String,
    id: String,
    action: String,
    accepts: bool,
    access: String,
    account_param: bool,
}

fn rows() -> Vec<Row> {
    include_str!("../../src/domain/gate/anchore-routes.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("method\t"))
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Row {
                method: c[0].into(),
                path: c[1].into(),
                id: c[2].into(),
                action: c[3].into(),
                accepts: c[4] == "True",
                access: c[6].into(),
                account_param: !c[7].is_empty(),
            }
        })
        .collect()
}

/// The template with sample parameters: the account `acme`, the user `bob`.
fn sample(template: &str, account: &str) -> String {
    template
        .split('/')
        .map(|s| match s {
            "{account_name}" => account.to_owned(),
            "{username}" => "bob".to_owned(),
            s if s.starts_with('{') => format!("sample-{}", &s[1..s.len() - 1]),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// What Envoy sends for one HTTP request.
pub fn http(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "203.0.113.7".into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn envoy(app: &TestApp) -> AuthorizationClient<Channel> {
    AuthorizationClient::new(app.channel.clone())
}

/// An Ok reply's HTTP side: allowed with the headers set, or the status.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub set: HashMap<String, (String, i32)>,
    pub removed: Vec<String>,
    pub body: String,
    pub metadata: Vec<String>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.set.get(name).map(|(v, _)| v.as_str())
    }
}

pub fn answer(reply: CheckResponse) -> Answer {
    let code = reply.status.as_ref().map_or(0, |s| s.code);
    let mut metadata: Vec<String> = reply
        .dynamic_metadata
        .map(|m| m.fields.into_keys().collect())
        .unwrap_or_default();
    metadata.sort();
    let headers = |hs: Vec<envoy_types::pb::envoy::config::core::v3::HeaderValueOption>| {
        hs.into_iter()
            .filter_map(|h| {
                let v = h.header?;
                Some((v.key, (v.value, h.append_action)))
            })
            .collect::<HashMap<_, _>>()
    };
    match reply.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            assert_eq!(code, 0);
            Answer {
                status: 200,
                set: headers(ok.headers),
                removed: ok.headers_to_remove,
                body: String::new(),
                metadata,
            }
        }
        Some(HttpResponse::DeniedResponse(denied)) => {
            assert_ne!(code, 0, "a denial with an OK status");
            Answer {
                status: denied.status.map_or(0, |s| s.code as u16),
                set: headers(denied.headers),
                removed: Vec::new(),
                body: denied.body,
                metadata,
            }
        }
        other => panic!("no HTTP response: {other:?}"),
    }
}

pub async fn check(app: &TestApp, request: CheckRequest) -> Answer {
    answer(
        envoy(app)
            .check(as_service(request))
            .await
            .unwrap()
            .into_inner(),
    )
}

async fn call(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    check(app, http(method, path, headers)).await
}

/// A request whose one header is `authorization`.
async fn call_as(app: &TestApp, method: &str, path: &str, authorization: &str) -> Answer {
    call(app, method, path, &[("authorization", authorization)]).await
}

fn admin_basic() -> String {
    basic("admin", ADMIN_PASSWORD)
}

async fn tenant(backend: Backend) -> TestApp {
    let app = spawn_app(backend).await;
    app.create_account("acme").await;
    app.create_account("beta").await;
    app.create_user("acme", "bob", "bob-password", &["read-only"])
        .await;
    app.create_user("acme", "uadmin", "uadmin-password", &["account-user-admin"])
        .await;
    app.create_user("acme", "carol", "carol-password", &[])
        .await;
    app
}

const OVERWRITE: i32 = 2;

async fn every_row_resolves_to_its_operation_and_domain(backend: Backend) {
    let app = tenant(backend).await;
    let auth = admin_basic();
    let carol = basic("carol", "carol-password");
    let scopes: HashMap<&str, &str> = include_str!("../../migrations/src/data/actions.tsv")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .collect();
    let all = rows();
    assert_eq!(all.len(), 345);
    assert_eq!(all.iter().filter(|r| r.account_param).count(), 17);
    for row in &all {
        let path = format!("{}?page=2&limit=10", sample(&row.path, "acme"));
        let headers = [
            ("authorization", auth.as_str()),
            ("x-anchore-account", "beta"),
        ];
        let a = call(&app, &row.method, &path, &headers).await;
        let what = format!("{} {} ({})", row.method, row.path, row.id);
        match row.access.as_str() {
            "denied" => {
                assert_eq!(a.status, 403, "{what}: {a:?}");
                assert!(a.body.contains(&row.id), "{what}: {}", a.body);
            }
            "public" => {
                assert_eq!(a.status, 200, "{what}: {a:?}");
                assert_eq!(
                    a.header("x-authz-operation"),
                    Some(row.id.as_str()),
                    "{what}"
                );
                assert_eq!(a.header("x-authz-user"), None, "{what}");
            }
            _ => {
                assert_eq!(a.status, 200, "{what}: {a:?}");
                assert_eq!(
                    a.header("x-authz-operation"),
                    Some(row.id.as_str()),
                    "{what}"
                );
                assert_eq!(a.header("x-authz-user"), Some("admin"), "{what}");
                let domain = if row.account_param {
                    "acme"
                } else if row.accepts && row.access == "action" {
                    "beta"
                } else {
                    "admin"
                };
                assert_eq!(a.header("x-authz-account"), Some(domain), "{what}");
            }
        }
        // A user without roles is refused exactly the row's action (or
        // allowed it, for self-service actions in their own account).
        if matches!(row.access.as_str(), "action" | "system") {
            let a = call(
                &app,
                &row.method,
                &path,
                &[("authorization", carol.as_str())],
            )
            .await;
            // Self-service actions, and reading one's own account (carol's
            // is acme, the sample paths' account), are anyone's.
            if scopes[row.action.as_str()] == "self" || row.action == "getAccount" {
                assert_eq!(a.status, 200, "{what}: {a:?}");
            } else {
                assert_eq!(a.status, 403, "{what}: {a:?}");
                let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
                assert_eq!(body["action"], row.action.as_str(), "{what}");
            }
        }
        // Another method on the same path is never this operation.
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if method == row.method {
                continue;
            }
            let other = call(&app, method, &path, &headers).await;
            assert_ne!(
                other.header("x-authz-operation"),
                Some(row.id.as_str()),
                "{method} {path}"
            );
        }
        // Paths Envoy would have normalised are refused, never matched.
        let canonical = sample(&row.path, "acme");
        let mut variants = vec![
            format!("/{canonical}"),
            format!("{canonical}/../x"),
            format!("{canonical}/./x"),
            format!("{canonical}%2Fx"),
            format!("{canonical}%2fx"),
            format!("{canonical}%5Cx"),
            format!("{canonical}\\x"),
            format!("{canonical}/%2e%2e/x"),
        ];
        if canonical != "/" {
            variants.push(format!("{canonical}/"));
        }
        for variant in variants {
            let a = call(&app, &row.method, &variant, &headers).await;
            assert_eq!(a.status, 400, "{} {variant}: {a:?}", row.method);
        }
    }
}

async fn account_in_path_rows_decide_in_the_paths_account(backend: Backend) {
    let app = tenant(backend).await;
    let uadmin = basic("uadmin", "uadmin-password");
    // The user admin of acme creates users in acme, never in beta, whatever
    // context it names.
    let a = call_as(&app, "POST", "/accounts/acme/users", &uadmin).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-authz-account"), Some("acme"));
    for context in [None, Some("beta"), Some("acme")] {
        let mut headers = vec![("authorization", uadmin.as_str())];
        if let Some(c) = context {
            headers.push(("x-anchore-account", c));
        }
        let a = call(&app, "POST", "/accounts/beta/users", &headers).await;
        assert_eq!(a.status, 403, "{context:?}: {a:?}");
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["action"], "createUser");
    }
    // Every account-in-path row decided in that account: refused in beta;
    // in acme, exactly what Authorize decides for the same action there.
    // (A `system` row is decided in the system domain, as its RPC decides
    // it: tests/api/gate_parity.rs.)
    for row in rows()
        .iter()
        .filter(|r| r.account_param && r.access == "action")
    {
        let beta = call(
            &app,
            &row.method,
            &sample(&row.path, "beta"),
            &[("authorization", &uadmin)],
        )
        .await;
        assert_eq!(beta.status, 403, "{} {}", row.method, row.path);
        let acme = call(
            &app,
            &row.method,
            &sample(&row.path, "acme"),
            &[("authorization", &uadmin)],
        )
        .await;
        let decided = app
            .auth()
            .authorize(as_service(pb::AuthorizeRequest {
                subject: Some(pb::authorize_request::Subject::Username("uadmin".into())),
                account: "acme".into(),
                actions: vec![row.action.clone()],
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .allowed;
        assert_eq!(
            acme.status == 200,
            decided,
            "{} {}: {acme:?}",
            row.method,
            row.path
        );
    }
    // The tenant-isolation rule of the admin RPCs: bob also holds a role in
    // beta, so acme's user admin may no longer manage him.
    app.roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: "read-only".into(),
            username: "bob".into(),
            account: "beta".into(),
        }))
        .await
        .unwrap();
    let a = call_as(&app, "DELETE", "/accounts/acme/users/bob", &uadmin).await;
    assert_eq!(a.status, 403, "{a:?}");
    let a = call_as(&app, "DELETE", "/accounts/acme/users/carol", &uadmin).await;
    assert_eq!(a.status, 200, "{a:?}");
    // Reading him is not managing him.
    let a = call_as(&app, "GET", "/accounts/acme/users/bob", &uadmin).await;
    assert_eq!(a.status, 200, "{a:?}");
}

async fn unmapped_operations_behave_as_classified(backend: Backend) {
    let app = tenant(backend).await;
    let bob = basic("bob", "bob-password");
    let admin = admin_basic();
    let admin_key = app.create_key("admin", "admin", "gate", 1).await;
    let admin_key = basic("_api_key", &admin_key);
    let bob_key = app.create_key("acme", "bob", "gate", 1).await;
    let bob_key = basic("_api_key", &bob_key);
    let status = |a: Answer| a.status;

    // Public: no credentials needed.
    for path in ["/", "/health", "/version", "/rbac-manager/saml/login/okta"] {
        assert_eq!(status(call(&app, "GET", path, &[]).await), 200, "{path}");
    }
    assert_eq!(
        status(call(&app, "POST", "/rbac-manager/saml/sso/okta", &[]).await),
        200
    );
    // Any authenticated user, by any credential.
    for auth in [&bob, &bob_key] {
        for path in ["/user", "/status", "/system/feeds", "/my-user-groups"] {
            let a = call_as(&app, "GET", path, auth).await;
            assert_eq!(a.status, 200, "{path}: {a:?}");
        }
    }
    let a = call(&app, "GET", "/user", &[]).await;
    assert_eq!(a.status, 401);
    // Password change: not on an API key's authority.
    let a = call_as(&app, "POST", "/user/credentials", &bob).await;
    assert_eq!(a.status, 200, "{a:?}");
    let a = call_as(&app, "POST", "/user/credentials", &bob_key).await;
    assert_eq!(a.status, 403, "{a:?}");
    // Global administrators only.
    for (method, path) in [
        ("GET", "/rbac-manager/saml/idps"),
        ("POST", "/rbac-manager/saml/idps"),
        ("DELETE", "/rbac-manager/saml/idps/okta"),
        ("POST", "/system/webhooks/general/test"),
    ] {
        let a = call_as(&app, method, path, &bob).await;
        assert_eq!(a.status, 403, "{method} {path}: {a:?}");
        let a = call_as(&app, method, path, &admin).await;
        assert_eq!(a.status, 200, "{method} {path}: {a:?}");
    }
    // One's own roles, or anyone's for an administrator.
    let roles = |who: &str| format!("/rbac-manager/users/{who}/roles");
    let a = call_as(&app, "GET", &roles("bob"), &bob).await;
    assert_eq!(a.status, 200);
    let a = call_as(&app, "GET", &roles("carol"), &bob).await;
    assert_eq!(a.status, 403);
    let a = call_as(&app, "GET", &roles("carol"), &admin).await;
    assert_eq!(a.status, 200);
    // authzd issues its own tokens.
    let a = call_as(&app, "POST", "/oauth/token", &admin).await;
    assert_eq!(a.status, 403);
    // The API-key restriction applies: even an administrator's key may not
    // create accounts.
    let a = call_as(&app, "POST", "/accounts", &admin_key).await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.body.contains("createAccount"), "{}", a.body);
    let a = call_as(&app, "POST", "/accounts", &admin).await;
    assert_eq!(a.status, 200);
}

async fn each_credential_kind_is_allowed_and_denied(backend: Backend) {
    let app = tenant(backend).await;
    let key = app.create_key("acme", "bob", "gate", 1).await;
    let token = app.grant("bob", "bob-password").await.unwrap().access_token;
    let credentials = [
        (basic("bob", "bob-password"), "password"),
        (basic("_api_key", &key), "api_key"),
        (format!("Bearer {token}"), "token"),
    ];
    for (auth, kind) in &credentials {
        // A client's own identity headers never survive: they are
        // overwritten, not appended to.
        let a = call(
            &app,
            "GET",
            "/images?tag=latest",
            &[
                ("authorization", auth),
                ("x-authz-user", "admin"),
                ("x-authz-account", "admin"),
            ],
        )
        .await;
        assert_eq!(a.status, 200, "{kind}: {a:?}");
        assert_eq!(a.header("x-authz-user"), Some("bob"));
        assert_eq!(a.header("x-authz-account"), Some("acme"));
        assert_eq!(a.header("x-authz-credential"), Some(*kind));
        assert_eq!(a.header("x-authz-operation"), Some("list_images"));
        assert!(a.header("x-authz-user-id").is_some_and(|id| id.len() == 36));
        assert!(
            a.set.values().all(|(_, action)| *action == OVERWRITE),
            "{a:?}"
        );
        assert_eq!(
            a.metadata,
            ["account", "credential", "operation", "user", "user_id"]
        );
        // Read-only does not create images.
        let a = call_as(&app, "POST", "/images", auth).await;
        assert_eq!(a.status, 403, "{kind}: {a:?}");
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["action"], "createImage", "{kind}");
        assert_eq!(a.header("content-type"), Some("application/json"));
    }
    // Wrong credentials of each kind: 401 with the challenge.
    for auth in [
        basic("bob", "wrong-password"),
        basic("_api_key", "azk_nope"),
        "Bearer not.a.token".to_owned(),
        "Negotiate abc".to_owned(),
    ] {
        let a = call_as(&app, "GET", "/images", &auth).await;
        assert_eq!(a.status, 401, "{auth}: {a:?}");
        assert_eq!(
            a.header("www-authenticate"),
            Some("Basic realm=\"Authentication required\"")
        );
    }
    // A public route takes any identity a client claims away.
    let a = call(&app, "GET", "/health", &[("x-authz-user", "admin")]).await;
    assert_eq!(a.status, 200);
    for h in [
        "x-authz-user",
        "x-authz-user-id",
        "x-authz-account",
        "x-authz-credential",
    ] {
        assert!(a.removed.iter().any(|r| r == h), "{h}: {a:?}");
    }
}

async fn the_account_header_counts_only_where_accepted(backend: Backend) {
    let app = tenant(backend).await;
    let bob = basic("bob", "bob-password");
    // GET /images accepts it: bob has no role in beta.
    let a = call(
        &app,
        "GET",
        "/images",
        &[("authorization", &bob), ("x-anchore-account", "beta")],
    )
    .await;
    assert_eq!(a.status, 403, "{a:?}");
    // GET /archives does not: ignored, even when malformed.
    for context in ["beta", "not a name!"] {
        let a = call(
            &app,
            "GET",
            "/archives",
            &[("authorization", &bob), ("x-anchore-account", context)],
        )
        .await;
        assert_eq!(a.status, 200, "{context}: {a:?}");
        assert_eq!(a.header("x-authz-account"), Some("acme"));
    }
    // Where it counts, a malformed one is the request's fault.
    let a = call(
        &app,
        "GET",
        "/images",
        &[
            ("authorization", &bob),
            ("x-anchore-account", "not a name!"),
        ],
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
    // An administrator works in the context it names.
    let a = call(
        &app,
        "GET",
        "/images",
        &[
            ("authorization", &admin_basic()),
            ("x-anchore-account", "beta"),
        ],
    )
    .await;
    assert_eq!(a.header("x-authz-account"), Some("beta"));
}

/// Refusals by a rule that names no action (administrators only, oneself
/// only, never through the gate, no such route, no such user) are in the
/// audit trail, as the RPCs' refusals are.
async fn refusals_without_an_action_are_recorded(backend: Backend) {
    let app = tenant(backend).await;
    let bob = basic("bob", "bob-password");
    let key = app.create_key("acme", "bob", "gate", 1).await;
    let cases = [
        ("GET", "/rbac-manager/saml/idps", bob.clone(), "list_idps"),
        (
            "GET",
            "/rbac-manager/users/carol/roles",
            bob.clone(),
            "list_user_roles",
        ),
        (
            "POST",
            "/user/credentials",
            basic("_api_key", &key),
            "add_credential",
        ),
        ("POST", "/oauth/token", bob.clone(), "get_oauth_token"),
        (
            "GET",
            "/no/such/route",
            bob.clone(),
            "unknown: GET /no/such/route",
        ),
    ];
    for (method, path, auth, _) in &cases {
        let a = call_as(&app, method, path, auth).await;
        assert_eq!(a.status, 403, "{method} {path}: {a:?}");
    }
    let events = crate::audit::refusals(
        &app,
        pb::ListEventsRequest {
            actor: "bob".into(),
            ..Default::default()
        },
        cases.len(),
    )
    .await;
    let mut recorded: Vec<&str> = events
        .iter()
        .filter_map(|e| crate::audit::detail_text(e, "operation"))
        .collect();
    recorded.sort_unstable();
    let mut expected: Vec<&str> = cases.iter().map(|c| c.3).collect();
    expected.sort_unstable();
    assert_eq!(recorded, expected, "{events:#?}");
    for e in &events {
        assert_eq!(
            (e.rpc.as_str(), e.outcome.as_str()),
            ("Check", "permission_denied")
        );
    }
    // A user the path names who does not exist: the action is recorded,
    // with the user asked for.
    let uadmin = basic("uadmin", "uadmin-password");
    let a = call_as(&app, "DELETE", "/accounts/acme/users/nobody", &uadmin).await;
    assert_eq!(a.status, 403, "{a:?}");
    let events = crate::audit::refusals(
        &app,
        pb::ListEventsRequest {
            actor: "uadmin".into(),
            ..Default::default()
        },
        1,
    )
    .await;
    assert_eq!(
        (
            events[0].target_kind.as_str(),
            events[0].target.as_str(),
            crate::audit::detail_text(&events[0], "action")
        ),
        ("user", "nobody", Some("deleteUser")),
        "{events:#?}"
    );
}

dual!(
    every_row_resolves_to_its_operation_and_domain,
    refusals_without_an_action_are_recorded,
    path_parameters_are_read_as_the_upstream_reads_them,
    the_upstream_sees_one_account_and_the_classes_hold,
    account_in_path_rows_decide_in_the_paths_account,
    unmapped_operations_behave_as_classified,
    each_credential_kind_is_allowed_and_denied,
    the_account_header_counts_only_where_accepted,
);

/// With the shipped default prefix (`/v2`, where Anchore serves its API),
/// the Envoy page's example works as printed; paths that are no operation
/// answer 401 before 403, so the table cannot be mapped anonymously; and an
/// Envoy cluster health check naming the service is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_prefix_and_unknown_paths_without_credentials() {
    let default_prefix = authzd::config::Config::default().ext_authz.path_prefix;
    assert_eq!(default_prefix, "/v2");
    let app = spawn_app_with(Backend::Sqlite, move |c| {
        c.ext_authz.path_prefix = default_prefix;
    })
    .await;
    let admin = admin_basic();
    let a = call_as(&app, "GET", "/v2/images?page=1", &admin).await;
    assert_eq!(
        (a.status, a.header("x-authz-operation")),
        (200, Some("list_images"))
    );
    let a = call_as(&app, "GET", "/images", &admin).await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(
        a.body.contains("GET /images is not a known operation"),
        "{}",
        a.body
    );
    let wrong = basic("admin", "not-the-password");
    for path in ["/v2/no/such/route", "/no/such/route", "/images"] {
        assert_eq!(call(&app, "GET", path, &[]).await.status, 401, "{path}");
        assert_eq!(
            call_as(&app, "GET", path, &wrong).await.status,
            401,
            "{path}"
        );
        assert_eq!(
            call_as(&app, "GET", path, &admin).await.status,
            403,
            "{path}"
        );
    }
    // A row that is never allowed checks credentials first too.
    assert_eq!(call(&app, "POST", "/v2/oauth/token", &[]).await.status, 401);
    assert_eq!(
        call_as(&app, "POST", "/v2/oauth/token", &admin)
            .await
            .status,
        403
    );

    let mut health = pb_health::health_client::HealthClient::new(app.channel.clone());
    let envoy = pb_health::HealthCheckRequest {
        service: "envoy.service.auth.v3.Authorization".into(),
    };
    let status = health
        .check(envoy.clone())
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        status,
        pb_health::health_check_response::ServingStatus::Serving
    );
    // Not served, not listed.
    let app = app.restart_with(|c| c.ext_authz.enabled = false).await;
    let mut health = pb_health::health_client::HealthClient::new(app.channel.clone());
    assert_code(health.check(envoy).await, Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_an_http_answer_not_a_grpc_error() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.rate_limit.failures_per_second = 1;
        c.rate_limit.burst = 3;
    })
    .await;
    let long = format!("Basic {}", "A".repeat(9000));
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, u16);
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/images".into(),
            vec![("authorization", "Basic YWRt\u{1}".into())],
            400,
        ),
        ("GET", "/images".into(), vec![("authorization", long)], 400),
        (
            "GET",
            "/images".into(),
            vec![("authorization", "Basic %%%".into())],
            400,
        ),
        ("GET", "/images/a%2Fb".into(), vec![], 400),
        ("GET", "/images/../accounts".into(), vec![], 400),
        ("GET", format!("/{}", "a".repeat(5000)), vec![], 400),
        ("GET", "/ima\u{7}ges".into(), vec![], 400),
        ("GET", "/images;jsessionid=1".into(), vec![], 400),
        ("GET", "/%69mages".into(), vec![], 400),
        (
            "GET",
            "/images".into(),
            vec![
                ("authorization", admin_basic()),
                ("x-anchore-account", "a\u{1}b".into()),
            ],
            400,
        ),
        (
            "GET",
            "/images".into(),
            vec![
                ("authorization", admin_basic()),
                ("x-anchore-account", "a".repeat(9000)),
            ],
            400,
        ),
        // The limit is the path's: a long query string is fine.
        (
            "GET",
            format!("/images?tag={}", "a".repeat(5000)),
            vec![("authorization", admin_basic())],
            200,
        ),
        ("get", "/images".into(), vec![], 400),
        (
            "GET",
            "/no/such/route".into(),
            vec![("authorization", admin_basic())],
            403,
        ),
        ("GET", "/images".into(), vec![], 401),
    ];
    // A method override would have the upstream run another method than
    // the one decided: refused, whatever the credentials.
    let mut cases = cases;
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ] {
        cases.push((
            "GET",
            "/images".into(),
            vec![("authorization", admin_basic()), (name, "DELETE".into())],
            400,
        ));
    }
    for (method, path, headers, expected) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = call(&app, method, &path, &headers).await;
        assert_eq!(a.status, expected, "{method} {path:.40}: {a:?}");
    }
    // No HTTP attributes at all.
    let reply = envoy(&app)
        .check(as_service(CheckRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer(reply).status, 400);
    // Failures from one client address reach the per-source limit: 429
    // with Retry-After, still an Ok reply.
    let mut limited = None;
    for _ in 0..20 {
        let a = call(
            &app,
            "GET",
            "/images",
            &[("authorization", &basic("_api_key", "azk_x_y_z"))],
        )
        .await;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
        assert_eq!(a.status, 401);
    }
    let limited = limited.expect("no 429 after 20 failures");
    // Answered at once: Envoy gives up after 250 ms, and the other RPCs'
    // hold of a rate-limited refusal (up to its 1 s retry delay here)
    // would turn the 429 into Envoy's own failure.
    let mut fastest = Duration::from_secs(60);
    for _ in 0..3 {
        let started = Instant::now();
        let a = call(
            &app,
            "GET",
            "/images",
            &[("authorization", &basic("_api_key", "azk_x_y_z"))],
        )
        .await;
        fastest = fastest.min(started.elapsed());
        assert_eq!(a.status, 429, "{a:?}");
    }
    assert!(fastest < Duration::from_millis(500), "{fastest:?}");
    assert!(
        limited
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().unwrap() >= 1)
    );
    // Another client address is not limited.
    let mut other = http("GET", "/images", &[("authorization", &admin_basic())]);
    if let Some(address::Address::SocketAddress(s)) = other
        .attributes
        .as_mut()
        .and_then(|a| a.source.as_mut())
        .and_then(|s| s.address.as_mut())
        .and_then(|a| a.address.as_mut())
    {
        s.address = "198.51.100.9".into();
    }
    assert_eq!(check(&app, other).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_need_a_caller_key_or_an_allowed_certificate() {
    let app = spawn_app(Backend::Sqlite).await;
    let status = envoy(&app)
        .check(tonic::Request::new(http("GET", "/health", &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let pki = crate::ops::Pki::new();
    let (cert, key) = pki.issue("localhost");
    let ca_pem = pki.ca.pem();
    let mut config = test_config(&app.db.url);
    config.tls.cert_file = Some(pki.write("server.pem", &cert));
    config.tls.key_file = Some(pki.write("server.key", &key));
    config.tls.client_ca_file = Some(pki.write("ca.pem", &ca_pem));
    config.tls.allowed_client_subjects = vec![
        "envoy.mesh.internal".into(),
        "CN=envoy".into(),
        "spiffe://cluster.local/ns/mesh/sa/envoy".into(),
        "O=x, CN=envoy".into(),
    ];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(authzd::serve(
        listener,
        app.core.clone(),
        std::sync::Arc::new(config),
        async move {
            let _ = stopped.await;
        },
    ));
    let allowed = crate::ops::tls_channel(addr, &ca_pem, Some(pki.issue("envoy.mesh.internal")))
        .await
        .unwrap();
    let reply = AuthorizationClient::new(allowed)
        .check(tonic::Request::new(http("GET", "/health", &[])))
        .await
        .unwrap();
    assert_eq!(answer(reply.into_inner()).status, 200);
    let other = crate::ops::tls_channel(addr, &ca_pem, Some(pki.issue("someone-else")))
        .await
        .unwrap();
    let status = AuthorizationClient::new(other.clone())
        .check(tonic::Request::new(http("GET", "/health", &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // A subject entry matches the subject, a URI entry a URI SAN.
    let issue = |dn: &[(rcgen::DnType, &str)], sans: Vec<rcgen::SanType>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.subject_alt_names = sans;
        let cert = params.signed_by(&key, &pki.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let uri = |u: &str| rcgen::SanType::URI(u.try_into().unwrap());
    let cases = [
        (issue(&[(rcgen::DnType::CommonName, "envoy")], vec![]), true),
        (
            issue(
                &[(rcgen::DnType::CommonName, "x")],
                vec![uri("spiffe://cluster.local/ns/mesh/sa/envoy")],
            ),
            true,
        ),
        (
            issue(
                &[(rcgen::DnType::CommonName, "x")],
                vec![uri("spiffe://cluster.local/ns/mesh/sa/other")],
            ),
            false,
        ),
        // One O attribute whose value reads like two attributes.
        (
            issue(&[(rcgen::DnType::OrganizationName, "x, CN=envoy")], vec![]),
            false,
        ),
        (
            issue(
                &[(rcgen::DnType::CommonName, "envoy.mesh.internal")],
                vec![],
            ),
            false,
        ),
    ];
    for (i, (identity, admitted)) in cases.into_iter().enumerate() {
        let channel = crate::ops::tls_channel(addr, &ca_pem, Some(identity))
            .await
            .unwrap();
        let result = AuthorizationClient::new(channel)
            .check(tonic::Request::new(http("GET", "/health", &[])))
            .await;
        assert_eq!(result.is_ok(), admitted, "case {i}: {result:?}");
    }
    // With the caller key it may.
    let reply = AuthorizationClient::new(other)
        .check(as_service(http("GET", "/health", &[])))
        .await
        .unwrap();
    assert_eq!(answer(reply.into_inner()).status, 200);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_public_paths_and_an_operator_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("routes.tsv");
    std::fs::write(
        &table,
        "method\tpath\toperation_id\taction\taccepts_x_anchore_account\ttag\taccess\taccount_param\tuser_param\n\
         GET\t/reports/{id}\tget_report\tlistImages\tTrue\tReports\taction\t\t\n\
         GET\t/images\tlist_images\tNone\tFalse\tImages\tpublic\t\t\n",
    )
    .unwrap();
    let path = table.clone();
    let app = spawn_app_with(Backend::Sqlite, move |c| {
        c.ext_authz.path_prefix = "/v2".into();
        c.ext_authz.routes_file = Some(path);
        c.ext_authz.public_paths = vec!["/docs/{*rest}".into()];
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "bob", "bob-password", &["read-only"])
        .await;
    let bob = basic("bob", "bob-password");
    // The prefix is removed; outside it nothing is known.
    let a = call(
        &app,
        "GET",
        "/v2/accounts",
        &[("authorization", &admin_basic())],
    )
    .await;
    assert_eq!(a.header("x-authz-operation"), Some("list_accounts"));
    let a = call(
        &app,
        "GET",
        "/accounts",
        &[("authorization", &admin_basic())],
    )
    .await;
    assert_eq!(a.status, 403);
    // The operator's rows add to the table and replace the same route.
    let a = call_as(&app, "GET", "/v2/reports/7", &bob).await;
    assert_eq!(
        (a.status, a.header("x-authz-operation")),
        (200, Some("get_report"))
    );
    let a = call(&app, "GET", "/v2/images", &[]).await;
    assert_eq!(a.status, 200, "{a:?}");
    let a = call(&app, "GET", "/docs/guide/intro", &[]).await;
    assert_eq!(a.status, 200, "{a:?}");

    // Replace: only the file's rows; unknown routes for any authenticated
    // caller.
    let path = table.clone();
    let app = app
        .restart_with(move |c| {
            c.ext_authz.path_prefix = String::new();
            c.ext_authz.routes_file = Some(path);
            c.ext_authz.routes_mode = "replace".into();
            c.ext_authz.unknown_routes = "authenticate".into();
        })
        .await;
    let a = call_as(&app, "GET", "/accounts", &bob).await;
    assert_eq!(
        (a.status, a.header("x-authz-operation")),
        (200, Some("unknown"))
    );
    let a = call(&app, "GET", "/accounts", &[]).await;
    assert_eq!(a.status, 401);

    // A bad table stops the start with the line that is wrong.
    std::fs::write(&table, "GET\t/x\tx\tnoSuchAction\tFalse\tX\taction\t\t\n").unwrap();
    let mut config = test_config(&app.db.url);
    config.ext_authz.routes_file = Some(table.clone());
    let error = authzd::server::gate(&app.core, &config).unwrap_err();
    assert!(
        error.contains("routes.tsv:1") && error.contains("noSuchAction"),
        "{error}"
    );
    // The binary stops with that message.
    let output = crate::binary::authzd_command()
        .env("DATABASE_URL", &app.db.url)
        .env("AUTHZD_SERVER_LISTEN", "127.0.0.1:0")
        .env("AUTHZD_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("AUTHZD_EXT_AUTHZ_ROUTES_FILE", &table)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("routes.tsv:1") && stderr.contains("noSuchAction"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_down_with_nothing_cached_is_unavailable() {
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.database.lock_timeout_ms = 200;
    })
    .await;
    app.create_account("acme").await;
    app.create_user("acme", "bob", "bob-password", &["read-only"])
        .await;
    app.create_user("acme", "carol", "carol-password", &[])
        .await;
    let key = app.create_key("acme", "bob", "gate", 1).await;
    let key = basic("_api_key", &key);
    // Warm: bob's key is checked from memory even with the tables locked.
    assert_eq!(call_as(&app, "GET", "/images", &key).await.status, 200);
    let conn = sea_orm::Database::connect(&app.db.url).await.unwrap();
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let txn = conn.begin().await.unwrap();
    txn.execute_unprepared("LOCK TABLE users, api_keys, accounts IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    assert_eq!(call_as(&app, "GET", "/images", &key).await.status, 200);
    // carol was never seen: authzd cannot decide, and says so with the one
    // gRPC error Check returns.
    let status = envoy(&app)
        .check(as_service(http(
            "GET",
            "/images",
            &[("authorization", &basic("carol", "carol-password"))],
        )))
        .await;
    txn.rollback().await.unwrap();
    match status {
        Err(s) => assert_eq!(s.code(), Code::Unavailable, "{s:?}"),
        Ok(r) => panic!("expected UNAVAILABLE, got {:?}", answer(r.into_inner())),
    }
}

async fn path_parameters_are_read_as_the_upstream_reads_them(backend: Backend) {
    let app = tenant(backend).await;
    // ops@corp.com lives in acme and also holds a role in beta.
    app.create_user("acme", "ops@corp.com", "ops-password-1234", &["read-only"])
        .await;
    app.roles()
        .add_role_member(as_admin(pb::AddRoleMemberRequest {
            role: "read-only".into(),
            username: "ops@corp.com".into(),
            account: "beta".into(),
        }))
        .await
        .unwrap();
    let uadmin = basic("uadmin", "uadmin-password");
    // However the name is spelt, the rule finds the user the upstream will
    // act on: acme's user admin may not mint keys for, or delete, them.
    for (method, path) in [
        ("POST", "/accounts/acme/users/ops%40corp.com/api-keys"),
        ("POST", "/accounts/acme/users/ops@corp.com/api-keys"),
        ("DELETE", "/accounts/acme/users/ops%40corp.com"),
    ] {
        let a = call_as(&app, method, path, &uadmin).await;
        assert_eq!(a.status, 403, "{method} {path}: {a:?}");
    }
    // A user nobody can find: refused to those the rule could limit; a
    // global administrator goes on (the upstream answers 404).
    let a = call_as(&app, "DELETE", "/accounts/acme/users/ghost", &uadmin).await;
    assert_eq!(a.status, 403, "{a:?}");
    let a = call(
        &app,
        "DELETE",
        "/accounts/acme/users/ghost",
        &[("authorization", &admin_basic())],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    // One's own keys are self-service, as over gRPC; another's are not.
    let bob = basic("bob", "bob-password");
    let a = call_as(&app, "POST", "/accounts/acme/users/bob/api-keys", &bob).await;
    assert_eq!(a.status, 200, "{a:?}");
    let a = call_as(&app, "POST", "/accounts/acme/users/carol/api-keys", &bob).await;
    assert_eq!(a.status, 403, "{a:?}");
    // One's own roles, with the name encoded.
    let ops = basic("ops@corp.com", "ops-password-1234");
    let a = call_as(
        &app,
        "GET",
        "/rbac-manager/users/ops%40corp.com/roles",
        &ops,
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    // An account whose name is encoded is decided in that account.
    let a = call_as(&app, "GET", "/accounts/%62eta/users", &uadmin).await;
    assert_eq!(a.status, 400, "an encoded unreserved character: {a:?}");
}

async fn the_upstream_sees_one_account_and_the_classes_hold(backend: Backend) {
    let app = tenant(backend).await;
    let bob = basic("bob", "bob-password");
    let uadmin = basic("uadmin", "uadmin-password");
    // Where the operation reads x-anchore-account, it is set to the account
    // decided in; elsewhere it is removed.
    let a = call_as(&app, "GET", "/images", &bob).await;
    assert_eq!(
        a.set.get("x-anchore-account"),
        Some(&("acme".to_owned(), OVERWRITE))
    );
    let a = call(
        &app,
        "GET",
        "/images",
        &[
            ("authorization", &admin_basic()),
            ("x-anchore-account", "beta"),
        ],
    )
    .await;
    assert_eq!(a.header("x-anchore-account"), Some("beta"));
    for (method, path, auth) in [
        ("GET", "/archives", &bob),
        ("POST", "/accounts/acme/users", &uadmin),
        ("GET", "/health", &bob),
    ] {
        let a = call(
            &app,
            method,
            path,
            &[("authorization", auth), ("x-anchore-account", "beta")],
        )
        .await;
        assert_eq!(a.status, 200, "{path}: {a:?}");
        assert!(
            a.removed.iter().any(|h| h == "x-anchore-account"),
            "{path}: {a:?}"
        );
        assert_eq!(a.header("x-anchore-account"), None, "{path}");
    }
    // HEAD is the GET operation.
    let a = call_as(&app, "HEAD", "/images", &bob).await;
    assert_eq!(
        (a.status, a.header("x-authz-operation")),
        (200, Some("list_images"))
    );
    // More of each class.
    for path in [
        "/user/credentials",
        "/rbac-manager/my-roles",
        "/query/vulnerabilities",
        "/system",
    ] {
        let a = call_as(&app, "GET", path, &bob).await;
        assert_eq!(a.status, 200, "{path}: {a:?}");
    }
    for (method, path) in [
        ("GET", "/rbac-manager/saml/idps/okta/user-group-mappings"),
        ("POST", "/rbac-manager/saml/idps/okta/user-group-mappings"),
        ("PUT", "/rbac-manager/saml/idps/okta"),
        // Role membership names its account in the body: global
        // administrators only at the gate (RoleService decides it in the
        // right account).
        ("POST", "/rbac-manager/roles/read-only/members"),
        ("DELETE", "/rbac-manager/roles/read-only/members"),
    ] {
        let a = call_as(&app, method, path, &uadmin).await;
        assert_eq!(a.status, 403, "{method} {path}: {a:?}");
    }
    let a = call_as(&app, "POST", "/oauth/revoke", &bob).await;
    assert_eq!(a.status, 403);
    // An administrator's API key reads identity configuration, never
    // changes it.
    let key = app.create_key("admin", "admin", "gate", 1).await;
    let admin_key = basic("_api_key", &key);
    let a = call_as(&app, "GET", "/rbac-manager/saml/idps", &admin_key).await;
    assert_eq!(a.status, 200, "{a:?}");
    let a = call_as(&app, "POST", "/rbac-manager/saml/idps", &admin_key).await;
    assert_eq!(a.status, 403, "{a:?}");
    // A password change on a token's authority is fine.
    let token = app.grant("bob", "bob-password").await.unwrap().access_token;
    let a = call(
        &app,
        "POST",
        "/user/credentials",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(
        (a.status, a.header("x-authz-credential")),
        (200, Some("token"))
    );
    // A missing account is refused like any account without a grant.
    let a = call(
        &app,
        "GET",
        "/images",
        &[("authorization", &bob), ("x-anchore-account", "nosuch")],
    )
    .await;
    assert_eq!(a.status, 403, "{a:?}");
    // A locked user is the uniform 401, even with the right password.
    for _ in 0..5 {
        let a = call(
            &app,
            "GET",
            "/images",
            &[("authorization", &basic("carol", "wrong-password"))],
        )
        .await;
        assert_eq!(a.status, 401);
    }
    let a = call(
        &app,
        "GET",
        "/images",
        &[("authorization", &basic("carol", "carol-password"))],
    )
    .await;
    assert_eq!(a.status, 401, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_headers_and_source_addresses_are_checked() {
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    let app = spawn_app(Backend::Sqlite).await;
    let raw = |headers: Vec<(&str, &[u8])>| {
        let mut request = http("GET", "/images", &[]);
        let http = request
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .unwrap();
        http.header_map = Some(HeaderMap {
            headers: headers
                .into_iter()
                .map(|(k, v)| HeaderValue {
                    key: k.into(),
                    raw_value: v.to_vec(),
                    ..Default::default()
                })
                .collect(),
        });
        request
    };
    let admin = admin_basic();
    // Envoy's encode_raw_headers: read the same way.
    let a = check(&app, raw(vec![("authorization", admin.as_bytes())])).await;
    assert_eq!(a.status, 200, "{a:?}");
    // Not UTF-8, or sent twice: which value would the upstream read?
    let a = check(&app, raw(vec![("authorization", b"Basic \xff\xfe")])).await;
    assert_eq!(a.status, 400, "{a:?}");
    let a = check(
        &app,
        raw(vec![
            ("authorization", admin.as_bytes()),
            ("x-anchore-account", b"admin"),
            ("x-anchore-account", b"beta"),
        ]),
    )
    .await;
    assert_eq!(a.status, 400, "{a:?}");
    // A source address that is no address.
    let mut request = http("GET", "/images", &[("authorization", &admin)]);
    if let Some(address::Address::SocketAddress(s)) = request
        .attributes
        .as_mut()
        .and_then(|a| a.source.as_mut())
        .and_then(|s| s.address.as_mut())
        .and_then(|a| a.address.as_mut())
    {
        s.address = "not-an-address".into();
    }
    assert_eq!(check(&app, request).await.status, 400);
}

#[tokio::test]
async fn client_certificate_subjects_need_a_client_ca_and_no_empty_entry() {
    let mut config = test_config("sqlite::memory:");
    config.server.listen = "0.0.0.0:50051".parse().unwrap();
    config.server.caller_keys.clear();
    // Neither keys nor subjects, off loopback: refused.
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("server.caller_keys: none configured"),
        "{error}"
    );
    config.tls.allowed_client_subjects = vec!["CN=envoy".into()];
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("tls.client_ca_file"), "{error}");
    let pki = crate::ops::Pki::new();
    let (cert, key) = pki.issue("localhost");
    config.tls.client_ca_file = Some(pki.write("ca.pem", &pki.ca.pem()));
    config.tls.cert_file = Some(pki.write("server.pem", &cert));
    config.tls.key_file = Some(pki.write("server.key", &key));
    // Subjects alone admit Envoy off loopback, as a caller key would.
    config.validate().unwrap();
    // The example files load as written.
    let invocation = authzd::config::cli::parse(
        [
            "authzd",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/envoy/authzd.yaml"),
        ],
        &|_| None,
    )
    .unwrap();
    // Its certificate paths are the deployment's; here, the test's.
    let files = [
        ("AUTHZD_TLS_CERT_FILE", config.tls.cert_file.clone()),
        ("AUTHZD_TLS_KEY_FILE", config.tls.key_file.clone()),
        (
            "AUTHZD_TLS_CLIENT_CA_FILE",
            config.tls.client_ca_file.clone(),
        ),
    ];
    let env = |name: &str, extra: Option<(&str, &str)>| {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, p)| p.as_ref().map(|p| p.display().to_string()))
            .or_else(|| extra.filter(|(n, _)| *n == name).map(|(_, v)| v.to_owned()))
    };
    let loaded = authzd::config::Config::load(&invocation, &|name| env(name, None)).unwrap();
    assert_eq!(loaded.config.tls.allowed_client_subjects, ["CN=envoy"]);
    assert_eq!(loaded.config.ext_authz.path_prefix, "/v2");
    // An empty entry would match any certificate with an empty subject.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authzd.yaml");
    std::fs::write(
        &file,
        "tls:\n  allowed_client_subjects: [\"CN=envoy\", \" \"]\n",
    )
    .unwrap();
    let invocation =
        authzd::config::cli::parse(["authzd", "--config", file.to_str().unwrap()], &|_| None)
            .unwrap();
    let error = authzd::config::Config::load(&invocation, &|name| env(name, None)).unwrap_err();
    assert!(
        error.to_string().contains("allowed_client_subjects"),
        "{error}"
    );
}
