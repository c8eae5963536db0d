//! The page frame and the pieces every page uses: errors next to their
//! fields, the CSRF field, confirmation pages.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use crate::error::Error;

/// What went wrong with a request, as the page shows it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// The field of an `INVALID_ARGUMENT`, named as the RPCs name it.
    pub field: Option<String>,
    pub message: String,
}

/// A status and a message for any error; never the text of an internal one.
pub fn describe(e: &Error) -> (StatusCode, String) {
    let status = match e {
        Error::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::AlreadyExists(_) | Error::FailedPrecondition(_) => StatusCode::CONFLICT,
        Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
        Error::LimitReached(_) | Error::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match e {
        Error::InvalidArgument { reason, .. } => reason.clone(),
        Error::PermissionDenied(_) => "Permission denied.".to_owned(),
        // Error's Display hides internal detail already.
        other => capitalised(&other.to_string()),
    };
    (status, message)
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!(
            "{}{}.",
            first.to_uppercase(),
            chars.as_str().trim_end_matches('.')
        ),
        None => String::new(),
    }
}

impl From<&Error> for Problem {
    fn from(e: &Error) -> Self {
        let (status, message) = describe(e);
        let field = match e {
            Error::InvalidArgument { field, .. } => Some(field.clone()),
            _ => None,
        };
        Problem {
            status,
            field,
            message,
        }
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        Problem::from(&e)
    }
}

/// Every page's `<head>`: the stylesheet, and the script on signed-in pages.
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · authzd" }
            link rel="stylesheet" href="/static/console.css";
            @if script { script src="/static/console.js" defer {} }
        }
    }
}

/// A page standing alone (no session needed): errors before sign-in.
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body {
                header class="bar" { span class="brand" { "authzd" } }
                main { h1 { (title) } (body) }
            }
        }
    };
    (status, Html(page.into_string())).into_response()
}

/// The page for an error reached before any page could be drawn.
pub fn failure(e: &Error) -> Response {
    let problem = Problem::from(e);
    bare(problem.status, "Something went wrong", banner(&problem))
}

/// The error at the top of a page, naming the field it concerns.
fn banner(p: &Problem) -> Markup {
    html! {
        p class="problem" role="alert" id="problem" {
            @if let Some(field) = &p.field {
                "Please correct " strong { (field_label(field)) } ": "
            }
            (p.message)
        }
    }
}

/// A form post without this session's token, or from another site.
pub fn refused_form() -> Response {
    bare(
        StatusCode::FORBIDDEN,
        "Form refused",
        html! {
            p role="alert" { "This form did not come from this console's page, or the page is too old. Nothing was changed." }
            p { a href="/" { "Back to the console" } }
        },
    )
}

pub fn bad_form(why: &str) -> Response {
    bare(
        StatusCode::BAD_REQUEST,
        "Bad form",
        html! { p role="alert" { (why) } },
    )
}

/// The frame of a signed-in page.
pub struct Frame<'a> {
    pub username: &'a str,
    pub account: &'a str,
    pub csrf: &'a str,
    pub accounts_link: bool,
    /// Only for those who may list the context account's users: the link
    /// would otherwise lead to a refusal.
    pub users_link: bool,
    pub groups_link: bool,
    /// The account context field, for those who may list accounts.
    pub context_field: bool,
    pub context: Option<&'a str>,
    /// The message of the change that led here, if any.
    pub notice: Option<&'static str>,
}

pub fn page(
    frame: &Frame<'_>,
    status: StatusCode,
    title: &str,
    problem: Option<&Problem>,
    body: Markup,
) -> Response {
    let context = frame.context.unwrap_or(frame.account);
    let own_page = format!(
        "/accounts/{}/users/{}",
        enc(frame.account),
        enc(frame.username)
    );
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body {
                header class="bar" {
                    span class="brand" { "authzd" }
                    nav aria-label="Main" {
                        ul {
                            li { a href="/keys" { "API Keys" } }
                            @if frame.accounts_link { li { a href="/accounts" { "Accounts" } } }
                            @if frame.users_link { li { a href={ "/accounts/" (enc(context)) } { "Users" } } }
                            @if frame.groups_link { li { a href="/groups" { "Groups" } } }
                        }
                    }
                    @if frame.context_field {
                        // A name typed, not chosen from a list: a list cannot
                        // hold every account of a large installation.
                        form method="post" action="/context" class="context" {
                            (csrf(frame.csrf))
                            label for="context-account" { "Account context" }
                            " "
                            input type="text" id="context-account" name="account" value=(context) size="14" required;
                            " "
                            button type="submit" { "Switch" }
                        }
                    }
                    form method="post" action="/sign-out" class="who" {
                        (csrf(frame.csrf))
                        span { "Signed in as " a id="whoami" href=(own_page) { strong { (frame.username) } } " (" (frame.account) ")" }
                        " "
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(notice) = frame.notice {
                        p class="notice" role="status" id="notice" { (notice) }
                    }
                    @if let Some(p) = problem { (banner(p)) }
                    (body)
                }
            }
        }
    };
    (status, Html(page.into_string())).into_response()
}

/// A field as its form labels it (the RPC's name when no form has it), for
/// the banner above the page.
pub fn field_label(field: &str) -> &str {
    match field {
        "name" => "Name",
        "email" => "Email",
        "username" | "usernames[0]" | "user" => "Username",
        "password" => "Password",
        "current_password" => "Current password",
        "description" => "Description",
        "expires_at" => "Expires on",
        "role" | "grants[0].role" => "Role",
        "account" | "grants[0].account" => "Account",
        "state" => "State",
        "q" => "Search",
        "page" | "before" | "page_token" => "Page",
        other if other.starts_with("roles") => "Roles",
        other => other,
    }
}

/// The message a page shows after a change redirected to it
/// (`?done=<what>`): a fixed text per change, so the address cannot put
/// words on the page.
pub fn notice_of(query: Option<&str>) -> Option<&'static str> {
    let done = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("done="))?;
    Some(match done {
        "account-created" => "Account created.",
        "email-saved" => "Email saved.",
        "account-enabled" => "Account enabled.",
        "account-disabled" => "Account disabled.",
        "account-deleted" => "Account deleted.",
        "context" => "Account context switched.",
        "user-created" => "User created.",
        "role-added" => "Role added.",
        "role-removed" => "Role removed.",
        "password-set" => "Password set.",
        "user-enabled" => "User enabled.",
        "user-disabled" => "User disabled.",
        "user-deleted" => "User deleted.",
        "key-revoked" => "API key revoked.",
        "group-created" => "Group created.",
        "member-added" => "Member added.",
        "member-removed" => "Member removed.",
        "grant-added" => "Role granted.",
        "grant-removed" => "Role grant removed.",
        "group-deleted" => "Group deleted.",
        _ => return None,
    })
}

pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// The error of `field`, under it, if the problem concerns it.
pub fn field_error(problem: Option<&Problem>, field: &str) -> Markup {
    html! {
        @if let Some(p) = problem.filter(|p| p.field.as_deref() == Some(field)) {
            span class="field-error" id={ (field) "-error" } { (p.message) }
        }
    }
}

/// A labelled text input with its error.
pub fn text_field(
    problem: Option<&Problem>,
    id: &str,
    name: &str,
    label: &str,
    kind: &str,
    value: &str,
    required: bool,
) -> Markup {
    let invalid = problem.is_some_and(|p| p.field.as_deref() == Some(name));
    html! {
        div class="field" {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(kind) value=(value) required[required]
                aria-invalid=[invalid.then_some("true")]
                aria-describedby=[invalid.then(|| format!("{name}-error"))]
                autocomplete=[(kind == "password").then_some("new-password")];
            (field_error(problem, name))
        }
    }
}

pub fn time(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M UTC")) } }
}

pub fn maybe_time(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { "never" },
    }
}

/// A one-button form: `fields` are hidden inputs.
pub fn button_form(token: &str, action: &str, fields: &[(&str, &str)], label: &str) -> Markup {
    html! {
        form method="post" action=(action) class="inline" {
            (csrf(token))
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button type="submit" { (label) }
        }
    }
}

/// A link that percent-encodes its path segments and query values.
pub fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AuthFailure;

    /// The console's one error mapping: each error its status, a field
    /// error its field, and never the text of an internal one.
    #[test]
    fn every_error_has_its_status_and_hides_internal_text() {
        let cases = [
            (
                Error::invalid("email", "is not an email"),
                StatusCode::BAD_REQUEST,
            ),
            (Error::not_found("user \"bob\""), StatusCode::NOT_FOUND),
            (
                Error::AlreadyExists("account \"acme\"".into()),
                StatusCode::CONFLICT,
            ),
            (
                Error::precondition("the account is enabled"),
                StatusCode::CONFLICT,
            ),
            (Error::denied("updateUser in acme"), StatusCode::FORBIDDEN),
            (
                Error::LimitReached("100 keys".into()),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                Error::Busy {
                    why: "too many attempts".into(),
                    retry_after: std::time::Duration::from_secs(1),
                },
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                Error::Unauthenticated(AuthFailure::WrongPassword),
                StatusCode::UNAUTHORIZED,
            ),
            (Error::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (
                Error::internal("SELECT secret FROM users"),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, status) in cases {
            let problem = Problem::from(&error);
            assert_eq!(problem.status, status, "{error:?}");
            assert!(!problem.message.contains("SELECT"), "{problem:?}");
            assert!(!problem.message.contains("updateUser"), "{problem:?}");
        }
        let field = Problem::from(&Error::invalid("email", "is not an email"));
        assert_eq!(field.field.as_deref(), Some("email"));
        assert_eq!(field.message, "is not an email");
        let wrong = Problem::from(&Error::Unauthenticated(AuthFailure::WrongPassword));
        let unknown = Problem::from(&Error::Unauthenticated(AuthFailure::UnknownUser));
        assert_eq!(wrong.message, unknown.message);
        assert_eq!(
            Problem::from(&Error::internal("x")).message,
            "Internal error."
        );
    }
}
