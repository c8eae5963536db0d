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
    let (status, message) = describe(e);
    bare(
        status,
        "Something went wrong",
        html! { p role="alert" { (message) } },
    )
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
    pub groups_link: bool,
    /// The account context selector: the choices, and the current one.
    pub contexts: Vec<String>,
    pub context: Option<&'a str>,
}

pub fn page(
    frame: &Frame<'_>,
    status: StatusCode,
    title: &str,
    problem: Option<&Problem>,
    body: Markup,
) -> Response {
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
                            li { a href={ "/accounts/" (enc(frame.context.unwrap_or(frame.account))) } { "Users" } }
                            @if frame.groups_link { li { a href="/groups" { "Groups" } } }
                        }
                    }
                    @if !frame.contexts.is_empty() {
                        form method="post" action="/context" class="context" {
                            (csrf(frame.csrf))
                            label for="context-account" { "Account context" }
                            select id="context-account" name="account" {
                                @for name in &frame.contexts {
                                    option value=(name) selected[Some(name.as_str()) == frame.context.or(Some(frame.account))] { (name) }
                                }
                            }
                            button type="submit" { "Switch" }
                        }
                    }
                    form method="post" action="/sign-out" class="who" {
                        (csrf(frame.csrf))
                        span { "Signed in as " strong { (frame.username) } " (" (frame.account) ")" }
                        " "
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(p) = problem {
                        p class="problem" role="alert" id="problem" {
                            @if p.field.is_some() { "Please correct the field marked below: " }
                            (p.message)
                        }
                    }
                    (body)
                }
            }
        }
    };
    (status, Html(page.into_string())).into_response()
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
