//! Signing in and out, and the account context a global administrator
//! works in.

use super::*;
use crate::domain::sso::sign_in::Answering;

/// Signing in and out, and the account a session acts in.
pub(super) fn routes(table: Table<App>) -> Table<App> {
    table
        .get("/sign-in", sign_in_page)
        .post("/sign-in", "console:SignIn", sign_in)
        .post("/sign-out", "console:SignOut", sign_out)
        .post("/context", "console:SwitchAccount", switch_context)
        .get("/sso/saml/{idp}/login", saml_login)
        .post(
            "/sso/saml/{idp}/continue",
            "console:SamlSignIn",
            saml_continue,
        )
        .get("/sso/oidc/{idp}/login", oidc_login)
        .post(
            "/sso/oidc/{idp}/continue",
            "console:OidcSignIn",
            oidc_continue,
        )
}

/// The sign-in page: the password form, and a way in through each enabled
/// identity provider.
pub(super) async fn sign_in_form(
    app: &App,
    status: StatusCode,
    message: Option<&str>,
    username: &str,
) -> Response {
    // Without the list (the database down), password sign-in is offered
    // alone; it says itself what is wrong when tried.
    let providers = app.core.sign_in_choices().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "sign-in page without its identity providers");
        Vec::new()
    });
    // The sign-in starts where the IdP will send the browser back, so the
    // cookie naming it is there when the response arrives.
    let public_url = &app.core.settings().sso.public_url;
    views::bare(
        status,
        "Sign in",
        html! {
            @if let Some(m) = message { p class="problem" role="alert" { (m) } }
            form method="post" action="/sign-in" {
                div class="field" {
                    label for="username" { "Username" }
                    input id="username" name="username" type="text" value=(username) required autocomplete="username" autofocus;
                }
                div class="field" {
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" required autocomplete="current-password";
                }
                button type="submit" { "Sign in" }
            }
            p class="hint" { "API keys cannot sign in here: sign in with your username and password." }
            @if !providers.is_empty() {
                h2 { "Single sign-on" }
                ul class="sso" {
                    @for (idp, protocol) in &providers {
                        li { a class="button" href=(format!("{public_url}/sso/{protocol}/{}/login", enc(idp))) { "Sign in with " (idp) } }
                    }
                }
            }
        },
    )
}

pub(super) async fn sign_in_page(State(app): State<App>) -> Response {
    sign_in_form(&app, StatusCode::OK, None, "").await
}

/// A session's cookies and the way in, for a token pair just issued.
fn signed_in(app: &App, issued: &crate::domain::tokens::Issued) -> Response {
    let mut response = see_other("/keys");
    let age = issued.refresh_expires_in;
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        app.set_cookie(ACCESS, issued.access_token.expose(), age),
    );
    headers.append(
        header::SET_COOKIE,
        app.set_cookie(REFRESH, issued.refresh_token.expose(), age),
    );
    headers.append(header::SET_COOKIE, app.set_cookie(CONTEXT, "", 0));
    response
}

/// "Sign in with {idp}": an AuthnRequest out to the provider, and a cookie
/// naming it, so that only a response to this browser's own request signs
/// this browser in.
pub(super) async fn saml_login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(idp): Path<String>,
) -> Response {
    let source = crate::domain::authn::sources::Source::from_ip(peer.ip());
    let start = async || {
        app.core
            .start_saml_login(&idp, "", source)
            .await
            .map(|s| (s.redirect_url, s.request_id))
    };
    start_sign_in(&app, &idp, SAML_STARTED, start).await
}

/// "Sign in with {idp}" for an OpenID Connect provider: the authorization
/// request out, and a cookie holding its state, so that only the answer to
/// this browser's own request signs this browser in.
pub(super) async fn oidc_login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(idp): Path<String>,
) -> Response {
    let source = crate::domain::authn::sources::Source::from_ip(peer.ip());
    let start = async || {
        app.core
            .start_oidc_login(&idp, "", source)
            .await
            .map(|s| (s.redirect_url, s.state))
    };
    start_sign_in(&app, &idp, OIDC_STARTED, start).await
}

/// A sign-in `start`ed (its redirect and the id the cookie names): the
/// browser sent to its provider with the cookie, or the sign-in page
/// saying why not.
async fn start_sign_in(
    app: &App,
    idp: &str,
    cookie: &'static str,
    start: impl AsyncFnOnce() -> Result<(String, String), Error>,
) -> Response {
    if crate::domain::names::new_idp_name("idp", idp).is_err() {
        return sign_in_form(
            app,
            StatusCode::NOT_FOUND,
            Some("No such identity provider is enabled."),
            "",
        )
        .await;
    }
    match start().await {
        Ok((redirect_url, id)) => {
            let mut response = see_other(&redirect_url);
            let age = i64::try_from(app.core.settings().sso.request_ttl.as_secs()).unwrap_or(300);
            response
                .headers_mut()
                .append(header::SET_COOKIE, app.set_cookie(cookie, &id, age));
            response
        }
        Err(Error::NotFound(_)) => {
            let message = format!("No identity provider named “{idp}” is enabled.");
            sign_in_form(app, StatusCode::NOT_FOUND, Some(&message), "").await
        }
        Err(e) => {
            let (status, message) = crate::http::console::sign_in_failure(&e);
            sign_in_form(app, status, Some(&message), "").await
        }
    }
}

/// The one cookie naming the sign-in this browser started: two of them
/// means one was planted beside ours, and neither is trusted.
fn started_cookie<'h>(
    app: &App,
    headers: &'h HeaderMap,
    cookie: &'static str,
) -> Result<Option<&'h str>, Error> {
    match app.cookie_count(headers, cookie) {
        0 | 1 => Ok(app.cookie(headers, cookie)),
        _ => Err(Error::Unauthenticated(crate::error::AuthFailure::Sso(
            "sso_binding_cookie_twice",
        ))),
    }
}

/// The outcome of a federated sign-in, as the browser sees it: a session
/// and the spent cookie cleared, or the sign-in page with one message
/// whatever failed (the reason is in the log and the audit trail).
async fn finished_sign_in(
    app: &App,
    idp: &str,
    cookie: &'static str,
    issued: Result<crate::domain::tokens::Issued, Error>,
) -> Response {
    match issued {
        Ok(issued) => {
            let mut response = signed_in(app, &issued);
            // Answered: the cookie is spent. (Not on a failure: any site can
            // send a bogus answer this way, and must not cancel a sign-in
            // this browser has under way.)
            response
                .headers_mut()
                .append(header::SET_COOKIE, app.set_cookie(cookie, "", 0));
            response
        }
        Err(e) => {
            let (status, message) = match &e {
                Error::Unauthenticated(_) => (
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "Signing in with {idp} did not succeed. Try again, or ask your administrator."
                    ),
                ),
                other => crate::http::console::sign_in_failure(other),
            };
            sign_in_form(app, status, Some(&message), "").await
        }
    }
}

/// Where the callback's page posts the provider's code and state, from
/// the console's own origin (so the cookie `oidc_login` set is sent): the
/// state must be this browser's, then the `oidc` grant.
pub(super) async fn oidc_continue(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(idp): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let form = match Form::read(body, crate::http::MAX_BODY_BYTES_USIZE).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let source = crate::domain::authn::sources::Source::from_ip(peer.ip());
    let state = form.get("state");
    let refused = |reason| {
        Err(Error::Unauthenticated(crate::error::AuthFailure::Sso(
            reason,
        )))
    };
    let issued = match started_cookie(&app, &headers, OIDC_STARTED) {
        Err(e) => Err(e),
        Ok(None) => refused("oidc_no_binding_cookie"),
        Ok(Some(started))
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                started.as_bytes(),
                state.as_bytes(),
            )) =>
        {
            refused("oidc_not_this_browser")
        }
        Ok(Some(_)) if !form.get("error").is_empty() => {
            tracing::info!(
                idp,
                error = form.get("error").chars().take(64).collect::<String>(),
                "the OpenID provider answered an error"
            );
            refused("oidc_provider_error")
        }
        Ok(Some(_)) => app
            .core
            .create_token_with_oidc(&idp, form.get("code"), state, source)
            .await
            .map(|signed_in| signed_in.issued),
    };
    if let Err(Error::Unauthenticated(reason)) = &issued {
        tracing::warn!(idp, reason = reason.as_str(), "OIDC sign-in refused");
    }
    finished_sign_in(&app, &idp, OIDC_STARTED, issued).await
}

/// Where the ACS's page posts the provider's response, from the console's
/// own origin (so the cookie `saml_login` set is sent): the `saml` grant,
/// and a session when it succeeds.
pub(super) async fn saml_continue(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(idp): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let form = match Form::read(body, crate::http::MAX_BODY_BYTES_USIZE).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let source = crate::domain::authn::sources::Source::from_ip(peer.ip());
    let issued = match started_cookie(&app, &headers, SAML_STARTED) {
        Ok(started) => {
            app.core
                .create_token_with_saml(
                    &idp,
                    form.get("SAMLResponse"),
                    Answering::Browser(started),
                    source,
                )
                .await
        }
        Err(e) => {
            tracing::warn!(
                idp,
                "SAML sign-in refused: the sign-in cookie was sent twice"
            );
            Err(e)
        }
    };
    finished_sign_in(&app, &idp, SAML_STARTED, issued).await
}

pub(super) async fn sign_in(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    body: axum::body::Body,
) -> Response {
    let form = match Form::read(body, crate::http::console::MAX_FORM_BYTES).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let username = form.get("username");
    let password = Secret::new(form.get("password").to_owned());
    let source = crate::domain::authn::sources::Source::from_ip(peer.ip());
    // The login's own input rules, as CreateToken's: a malformed one fails
    // like any other.
    let checked = Field::LoginUsername
        .check("username", username)
        .and_then(|()| Field::LoginPassword.check("password", password.expose()));
    let issued = match checked {
        Ok(()) => {
            app.core
                .create_token_with_password(username, &password, source)
                .await
        }
        Err(e) => Err(e),
    };
    match issued {
        Ok(issued) => {
            tracing::info!(user = username, "console sign-in");
            signed_in(&app, &issued)
        }
        Err(e) => {
            let (status, message) = crate::http::console::sign_in_failure(&e);
            sign_in_form(&app, status, Some(&message), username).await
        }
    }
}

pub(super) async fn sign_out(
    State(app): State<App>,
    headers: HeaderMap,
    posted: Posted,
) -> Response {
    // The refresh token names the family: revoking it ends every token of
    // this session, the access token in the cookie included.
    let refresh = app
        .cookie(&headers, REFRESH)
        .map(|r| Secret::new(r.to_owned()));
    if let Some(refresh) = refresh
        && let Err(e) = app.core.revoke_token(&refresh).await
    {
        return posted.ctx.error_page(&e).await;
    }
    tracing::info!(user = posted.ctx.caller.username(), "console sign-out");
    let mut response = see_other("/sign-in");
    for base in [ACCESS, REFRESH, CONTEXT, NEW_KEY] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, app.set_cookie(base, "", 0));
    }
    response
}

pub(super) async fn switch_context(posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let account = form.get("account");
    let checked = match AccountName::parse("account", account) {
        Ok(_) => ctx.core().get_account(&ctx.caller, account).await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(found) => {
            let mut response = done(&account_href(&found.name), "context");
            // One's own account is no context at all.
            let value = if found.name == ctx.caller.account() {
                String::new()
            } else {
                URL_SAFE_NO_PAD.encode(&found.name)
            };
            response.headers_mut().append(
                header::SET_COOKIE,
                ctx.app
                    .set_cookie(CONTEXT, &value, if value.is_empty() { 0 } else { 86_400 }),
            );
            response
        }
        // A name not found: the accounts that start with it, to pick from.
        Err(Error::NotFound(_)) => {
            let problem = Problem {
                status: StatusCode::NOT_FOUND,
                field: Some("account".to_owned()),
                message: format!(
                    "No account is named “{account}”; accounts starting with it are listed below."
                ),
            };
            let search = ListQuery {
                q: account.to_owned(),
                ..ListQuery::default()
            };
            accounts_view(&ctx, &search, Some(&problem), &Form::default()).await
        }
        Err(e) => ctx.error_page(&e).await,
    }
}
