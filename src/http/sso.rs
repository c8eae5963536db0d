//! Single sign-on at `/sso/`: what identity providers and browsers on
//! their way back from one reach. Public (an IdP's administrator fetches
//! the metadata, an IdP's page posts the response, an OIDC provider sends
//! the browser back with a code or posts a logout token), no console
//! cookies, nothing kept.
//!
//! The ACS takes a POST from the IdP's site, so it cannot be refused as
//! cross-site, and the browser sends it no `SameSite` cookie: it reads
//! nothing and signs in no one. It answers a page that posts the response
//! on to the console (`/sso/saml/{idp}/continue`, under the console's
//! posture), from the console's own origin, where the cookie naming the
//! sign-in this browser started is sent and checked. The OIDC callback
//! does the same with the code and state the provider sent back.
//!
//! Back-channel logout is a POST from the provider's server, answered as
//! OpenID Connect Back-Channel Logout 1.0 says: 200, or 400 with an
//! error.

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, html};

use super::{Names, Table};
use crate::domain::Core;
use crate::error::Error;

/// The group's routes and their audit names.
pub fn router(core: Core) -> (axum::Router, Names) {
    let (router, names) = Table::new("sso:Document")
        .get("/sso/saml/{idp}/metadata", sp_metadata)
        .post("/sso/saml/{idp}/acs", "sso:SamlResponse", acs)
        .get("/sso/oidc/{idp}/callback", oidc_callback)
        .post(
            "/sso/oidc/{idp}/backchannel-logout",
            "sso:OidcBackchannelLogout",
            backchannel_logout,
        )
        .into_parts();
    (router.with_state(core), names)
}

/// The assertion consumer service (HTTP-POST binding): the response
/// handed on to the console from its own origin, unread.
async fn acs(Path(idp): Path<String>, body: axum::body::Body) -> Response {
    let form = match super::console::Form::read(body, super::MAX_BODY_BYTES_USIZE).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    // The name goes into the page's form action.
    if crate::domain::names::new_idp_name("idp", &idp).is_err() {
        return (StatusCode::NOT_FOUND, "no such identity provider\n").into_response();
    }
    let response = form.get("SAMLResponse");
    if response.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "SAMLResponse is missing: this address takes an identity provider's response\n",
        )
            .into_response();
    }
    hop(
        &format!("/sso/saml/{idp}/continue"),
        &[("SAMLResponse", response)],
    )
}

/// A page that posts `fields` on to `action` on the console's own origin
/// (console.js submits it; the button is there without script).
fn hop(action: &str, fields: &[(&str, &str)]) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Signing in · authzd" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                main {
                    h1 { "Signing in…" }
                    form id="sso-continue" method="post" action=(action) {
                        @for (name, value) in fields {
                            input type="hidden" name=(name) value=(value);
                        }
                        p { "If nothing happens, continue to finish signing in." }
                        button type="submit" { "Continue" }
                    }
                }
            }
        }
    };
    let mut answer = (StatusCode::OK, Html(page.into_string())).into_response();
    answer.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    answer
}

/// What an OIDC provider sends the browser back with.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Callback {
    code: String,
    state: String,
    error: String,
}

/// The redirect URI: the code and state handed on to the console from its
/// own origin, unread (the browser sends no `SameSite=Strict` cookie on a
/// navigation another site started).
async fn oidc_callback(Path(idp): Path<String>, Query(back): Query<Callback>) -> Response {
    if crate::domain::names::new_idp_name("idp", &idp).is_err() {
        return (StatusCode::NOT_FOUND, "no such identity provider\n").into_response();
    }
    if back.state.is_empty() || (back.code.is_empty() && back.error.is_empty()) {
        return (
            StatusCode::BAD_REQUEST,
            "code and state are missing: this address takes an OpenID provider's answer\n",
        )
            .into_response();
    }
    hop(
        &format!("/sso/oidc/{idp}/continue"),
        &[
            ("code", back.code.as_str()),
            ("state", back.state.as_str()),
            ("error", back.error.as_str()),
        ],
    )
}

/// OpenID Connect Back-Channel Logout: the provider posts a logout token;
/// the sessions it names end everywhere.
async fn backchannel_logout(
    State(core): State<Core>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(idp): Path<String>,
    body: axum::body::Body,
) -> Response {
    let form = match super::console::Form::read(body, super::MAX_BODY_BYTES_USIZE).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let source = crate::domain::authn::sources::Source::from_ip(peer.ip());
    let no_store = (header::CACHE_CONTROL, "no-store");
    let json = (header::CONTENT_TYPE, "application/json");
    match core
        .backchannel_logout(&idp, form.get("logout_token"), source)
        .await
    {
        Ok(_) => (StatusCode::OK, [no_store]).into_response(),
        Err(Error::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [no_store, json],
            r#"{"error":"temporarily_unavailable"}"#,
        )
            .into_response(),
        Err(Error::Unauthenticated(_)) | Err(Error::Busy { .. }) => (
            StatusCode::BAD_REQUEST,
            [no_store, json],
            r#"{"error":"invalid_request","error_description":"the logout token was not accepted"}"#,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "back-channel logout");
            (StatusCode::INTERNAL_SERVER_ERROR, [no_store, json], r#"{"error":"server_error"}"#)
                .into_response()
        }
    }
}

/// The SP metadata of one identity provider, to paste into the IdP.
async fn sp_metadata(State(core): State<Core>, Path(idp): Path<String>) -> Response {
    match core.sp_metadata(&idp).await {
        Ok(Some(xml)) => (
            [
                (header::CONTENT_TYPE, "application/samlmetadata+xml"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            xml,
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such identity provider\n").into_response(),
        Err(Error::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable; retry later\n",
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "SP metadata");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}
