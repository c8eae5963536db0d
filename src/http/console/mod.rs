//! The web console: server-rendered pages over the same domain functions
//! and the same decision function as the RPCs (docs/console.md).
//!
//! A session is the token pair of the password grant, in two `HttpOnly;
//! SameSite=Strict` cookies: any replica that verifies tokens serves it,
//! and sign-out revokes the family. Every form carries a CSRF token bound
//! to the family by the token signing key, and every POST must come from
//! the console's own origin.

mod forms;
mod pages;
mod views;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::Core;
use crate::domain::authn::credentials::Credential;
use crate::domain::authn::sources::Source;
use crate::domain::caller::{Caller, Origin};
use crate::domain::secret::Secret;
use crate::error::Error;

pub use forms::Form;

/// Form bodies are small; anything larger is refused before parsing.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// How long a refresh exchange is remembered: a second request of the
/// same browser that presents the same (now used) refresh token within it
/// gets the new access token instead of tripping reuse detection, which
/// would revoke the session.
const REFRESH_MEMORY: Duration = Duration::from_secs(30);

/// What a renewal gives: the access token, the refresh token (only to the
/// request that exchanged it, never to one answered from memory) and the
/// cookies' lifetime.
type Renewed = (Secret, Option<Secret>, i64);

/// An exchange remembered, bound to the client that made it: its address
/// and the digest of its `User-Agent`. Anyone else presenting the used
/// token is a replay, and meets reuse detection.
struct Exchange {
    at: std::time::Instant,
    source: Source,
    agent: [u8; 32],
    access: Secret,
    age: i64,
}

/// One lock per refresh token (by digest), so a slow or bogus exchange
/// holds up only requests presenting the same token.
type Exchanges = std::collections::HashMap<[u8; 32], Arc<tokio::sync::Mutex<Option<Exchange>>>>;

/// The console's shared state.
#[derive(Clone)]
pub struct App {
    core: Core,
    /// Served over TLS: cookies get `Secure` and the `__Host-` prefix.
    secure: bool,
    /// Recent refresh exchanges, by the digest of the refresh token used.
    /// A token's lock is held across its exchange, so concurrent requests
    /// of one browser (two tabs, a double submit) exchange it once.
    renewed: Arc<Mutex<Exchanges>>,
}

impl App {
    /// Under TLS, `__Host-` (Secure, `Path=/`, no Domain: no other host or
    /// plain-HTTP page can set it); `__Secure-` for the one cookie scoped
    /// to a narrower path.
    fn cookie_name(&self, base: &'static str) -> String {
        match (self.secure, path_of(base) == "/") {
            (false, _) => base.to_owned(),
            (true, true) => format!("__Host-{base}"),
            (true, false) => format!("__Secure-{base}"),
        }
    }

    /// A `Set-Cookie` value: `HttpOnly; SameSite=Strict`, `Secure` under
    /// TLS. `max_age` 0 clears it. `value` must be cookie-safe (tokens and
    /// base64url are).
    fn set_cookie(&self, base: &'static str, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let path = path_of(base);
        let text = format!(
            "{}={value}; Max-Age={max_age}; Path={path}; HttpOnly; SameSite=Strict{secure}",
            self.cookie_name(base)
        );
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
    }

    /// The tokens that renew a session's `refresh` token: exchanged once;
    /// the same client presenting it again within `REFRESH_MEMORY` gets
    /// the new access token (not the refresh token) from memory.
    async fn renew(
        &self,
        refresh: &str,
        source: Source,
        agent: [u8; 32],
    ) -> Result<Renewed, Error> {
        // A source past its limit waits out its delay here, holding no
        // lock another browser needs.
        if let Some(Err(refused)) = self.core.limiter().map(|l| l.check(source)) {
            return Err(crate::domain::authn::sources::held(
                refused,
                crate::domain::authn::sources::MAX_HOLD,
            )
            .await);
        }
        let digest: [u8; 32] = Sha256::digest(refresh.as_bytes()).into();
        let slot = {
            let mut renewed = self
                .renewed
                .lock()
                .map_err(|_| Error::internal("console renewals: lock poisoned"))?;
            // Forget exchanges past the memory that nobody is waiting on.
            renewed.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot.try_lock().map_or(true, |e| {
                        e.as_ref().is_some_and(|e| e.at.elapsed() < REFRESH_MEMORY)
                    })
            });
            renewed.entry(digest).or_default().clone()
        };
        let mut exchange = slot.lock().await;
        // Another client with a used token is exchanged below, where
        // reuse detection revokes the family.
        if let Some(e) = exchange
            .as_ref()
            .filter(|e| e.at.elapsed() < REFRESH_MEMORY)
            && e.source == source
            && bool::from(e.agent.ct_eq(&agent))
        {
            return Ok((e.access.clone(), None, e.age));
        }
        let issued = self
            .core
            .create_token_with_refresh(&Secret::new(refresh.to_owned()), source)
            .await?;
        *exchange = Some(Exchange {
            at: std::time::Instant::now(),
            source,
            agent,
            access: issued.access_token.clone(),
            age: issued.refresh_expires_in,
        });
        Ok((
            issued.access_token,
            Some(issued.refresh_token),
            issued.refresh_expires_in,
        ))
    }

    /// The values of the cookies of that name the browser sent, in order.
    fn cookies_named<'h>(
        &self,
        headers: &'h HeaderMap,
        base: &'static str,
    ) -> impl Iterator<Item = &'h str> {
        let name = self.cookie_name(base);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(move |(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// How many cookies of that name the browser sent: more than one is
    /// someone else's planted beside ours.
    fn cookie_count(&self, headers: &HeaderMap, base: &'static str) -> usize {
        self.cookies_named(headers, base).count()
    }

    fn cookie<'h>(&self, headers: &'h HeaderMap, base: &'static str) -> Option<&'h str> {
        self.cookies_named(headers, base)
            .next()
            .filter(|v| !v.is_empty())
    }
}

const ACCESS: &str = "authzd-access";
const REFRESH: &str = "authzd-refresh";
const CONTEXT: &str = "authzd-context";
const NEW_KEY: &str = "authzd-new-key";
/// The one page the new-key cookie is sent to.
const NEW_KEY_PATH: &str = "/keys/reveal";
/// The SAML sign-in this browser started (the AuthnRequest's ID). At `/`
/// so that under TLS it is `__Host-`: a sibling host cannot toss in one of
/// its own (with a longer path, it would be sent first) to plant its
/// sign-in in this browser.
const SAML_STARTED: &str = "authzd-saml";
/// The state of the OIDC sign-in this browser started (at `/` for the
/// same reason).
const OIDC_STARTED: &str = "authzd-oidc";

/// The path a cookie is scoped to.
fn path_of(base: &str) -> &'static str {
    match base {
        NEW_KEY => NEW_KEY_PATH,
        _ => "/",
    }
}

/// Cookies a request's handler wants set, besides its own response's:
/// the pair a refresh issued on the way in.
#[derive(Clone, Default)]
struct PendingCookies(Arc<Mutex<Vec<HeaderValue>>>);

impl PendingCookies {
    fn push(&self, value: HeaderValue) {
        if let Ok(mut v) = self.0.lock() {
            v.push(value);
        }
    }

    fn take(&self) -> Vec<HeaderValue> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// A signed-in request: the caller as the RPCs would see it.
pub struct Ctx {
    app: App,
    caller: Caller,
    /// The form token of this session.
    csrf: String,
    /// The message of the change that redirected here (`?done=`).
    notice: Option<&'static str>,
}

impl Ctx {
    fn core(&self) -> &Core {
        &self.app.core
    }
}

/// The form token: a hash of the signing key's signature over the token
/// family, so it is fixed for a session, differs between sessions, cannot
/// be made without the key, and any replica computes the same one.
fn csrf_token(core: &Core, family: &str) -> Result<String, Error> {
    #[derive(serde::Serialize)]
    struct Bound<'a> {
        purpose: &'static str,
        fam: &'a str,
    }
    let signed = core.tokens().keys().sign(&Bound {
        purpose: "authzd console form",
        fam: family,
    })?;
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(signed.as_bytes())))
}

fn peer_of(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

fn origin_of(parts: &Parts) -> Origin {
    Origin {
        peer: peer_of(parts),
        client_subject: None,
        request_id: crate::telemetry::current_rpc().map(|r| r.request_id),
    }
}

fn to_sign_in(app: &App) -> Response {
    let mut response = Redirect::to("/sign-in").into_response();
    for base in [ACCESS, REFRESH] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, app.set_cookie(base, "", 0));
    }
    response
}

impl FromRequestParts<App> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Response> {
        let core = &app.core;
        let origin = origin_of(parts);
        let source = origin.source();
        let cookies = parts
            .extensions
            .get::<PendingCookies>()
            .cloned()
            .unwrap_or_default();
        let access = app.cookie(&parts.headers, ACCESS);
        // `verify` checks the signature; the expiry is checked here, a few
        // seconds early, so a token is renewed before it lapses mid-request.
        let now = core.now().timestamp();
        let claims = access
            .and_then(|a| core.tokens().verify(a).ok())
            .filter(|c| c.exp > now + 5);
        let (access, family) = match (access, claims) {
            (Some(access), Some(claims)) => (Secret::new(access.to_owned()), claims.fam.clone()),
            // Expired (or signed by a retired key): the refresh token renews it.
            _ => {
                let Some(refresh) = app.cookie(&parts.headers, REFRESH) else {
                    return Err(to_sign_in(app));
                };
                let agent: [u8; 32] = Sha256::digest(
                    parts
                        .headers
                        .get(header::USER_AGENT)
                        .map_or(&b""[..], HeaderValue::as_bytes),
                )
                .into();
                let (access, refresh, age) = match app.renew(refresh, source, agent).await {
                    Ok(pair) => pair,
                    Err(Error::Unauthenticated(_)) => return Err(to_sign_in(app)),
                    Err(e) => return Err(views::failure(&e)),
                };
                let Ok(claims) = core.tokens().verify(access.expose()) else {
                    return Err(to_sign_in(app));
                };
                cookies.push(app.set_cookie(ACCESS, access.expose(), age));
                if let Some(refresh) = refresh {
                    cookies.push(app.set_cookie(REFRESH, refresh.expose(), age));
                }
                (access, claims.fam.clone())
            }
        };
        let principal = match core.authenticate(&Credential::Token(access), source).await {
            Ok(p) => p,
            Err(Error::Unauthenticated(_)) => return Err(to_sign_in(app)),
            Err(e) => return Err(views::failure(&e)),
        };
        crate::telemetry::record_caller(principal.username());
        let csrf = csrf_token(core, &family).map_err(|e| views::failure(&e))?;
        // base64url: account names may hold `;` and spaces.
        let account_context = app
            .cookie(&parts.headers, CONTEXT)
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|c| crate::domain::names::AccountName::parse("account", c).is_ok());
        Ok(Ctx {
            app: app.clone(),
            caller: Caller {
                principal,
                account_context,
                origin,
            },
            csrf,
            notice: views::notice_of(parts.uri.query()),
        })
    }
}

/// A form posted by a signed-in user, its CSRF token checked.
pub struct Posted {
    ctx: Ctx,
    form: Form,
}

impl FromRequest<App> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, app: &App) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let ctx = Ctx::from_request_parts(&mut parts, app).await?;
        let form = Form::read(body, MAX_FORM_BYTES).await?;
        let sent = form.get("csrf").as_bytes();
        if sent.is_empty() || !bool::from(sent.ct_eq(ctx.csrf.as_bytes())) {
            tracing::warn!(
                user = ctx.caller.username(),
                "console form refused: missing or wrong CSRF token"
            );
            return Err(views::refused_form());
        }
        form.check().map_err(|e| views::failure(&e))?;
        Ok(Posted { ctx, form })
    }
}

/// A POST from another site is refused before anything reads it: the
/// browser's `Sec-Fetch-Site`, else `Origin`, must name this origin. (The
/// sign-in form has no session yet, so its CSRF guard is this.)
fn foreign_post(request: &Request) -> bool {
    if request.method() != Method::POST {
        return false;
    }
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, authority)| authority != host),
        _ => false,
    }
}

/// A path or query that decodes to a control character, or does not
/// decode at all (the gate's decoder).
fn has_control_escape(text: &str) -> bool {
    crate::domain::gate::routes::percent_decoded(text)
        .is_none_or(|bytes| bytes.iter().any(u8::is_ascii_control))
}

/// The console's posture, around each of its requests: cross-site POSTs
/// refused, no control characters in the address, the cookies a renewal
/// set, and the headers of pages that show account data.
async fn posture(request: Request, next: Next) -> Response {
    let mut response = if foreign_post(&request) {
        tracing::warn!("console POST from another origin refused");
        views::refused_form()
    } else if has_control_escape(request.uri().path())
        || has_control_escape(request.uri().query().unwrap_or(""))
    {
        // Names in the path reach the database: no control characters
        // (NUL would be a database error on PostgreSQL).
        views::bad_form("the address holds a control character")
    } else {
        renewed_cookies(request, next).await
    };
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    let headers = response.headers_mut();
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // Pages show account data: none of it is kept by the browser or a
    // proxy (the shared layer's default; the stylesheet sets its own).
    response
}

/// Runs the request, adding the cookies a renewal on the way in set.
async fn renewed_cookies(request: Request, next: Next) -> Response {
    let cookies = PendingCookies::default();
    let mut request = request;
    request.extensions_mut().insert(cookies.clone());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // A renewed pair never overrides what the handler set (sign-out's
    // clearing, above all).
    let set_by_handler: Vec<String> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split('=').next().map(str::to_owned))
        .collect();
    for cookie in cookies.take() {
        let name = cookie
            .to_str()
            .ok()
            .and_then(|c| c.split('=').next())
            .unwrap_or_default()
            .to_owned();
        if !set_by_handler.contains(&name) {
            headers.append(header::SET_COOKIE, cookie);
        }
    }
    response
}

/// The console's routes under its posture, and their audit names.
pub(crate) fn router(
    core: Core,
    secure: bool,
    hosts: crate::http::hosts::Hosts,
) -> (Router, crate::http::Names) {
    let app = App {
        core,
        secure,
        renewed: Arc::default(),
    };
    let (routes, names) = pages::routes().into_parts();
    let router = routes
        // A path no group knows gets the console's posture too.
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(middleware::from_fn(posture))
        .layer(middleware::from_fn_with_state(
            Arc::new(hosts),
            crate::http::hosts::known_host,
        ))
        .with_state(app);
    (router, names)
}

/// Why sign-in failed, in the one message a user sees whatever failed.
fn sign_in_failure(e: &Error) -> (StatusCode, String) {
    match e {
        Error::Busy { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts. Wait a moment and try again.".to_owned(),
        ),
        Error::Unauthenticated(_) => (
            StatusCode::UNAUTHORIZED,
            "Invalid username or password.".to_owned(),
        ),
        other => {
            let (status, message) = views::describe(other);
            (status, message)
        }
    }
}
