//! The console's pages: each GET draws a page from the domain's answers,
//! each POST calls the domain function its RPC calls and redirects (or
//! draws the page again with the error next to its field).

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Days, NaiveDate};
use maud::{Markup, html};
use serde::Deserialize;

mod accounts;
mod groups;
mod keys;
mod listing;
mod roles;
mod sign_in;
mod users;

use accounts::*;

use listing::{ListQuery, Listing};

use super::views::{
    self, Frame, Problem, button_form, csrf, enc, field_error, maybe_time, text_field, time,
};
use super::{
    ACCESS, App, CONTEXT, Ctx, Form, NEW_KEY, OIDC_STARTED, Posted, REFRESH, SAML_STARTED,
};
use crate::domain::actions::{
    CREATE_ACCOUNT, CREATE_ROLE_MEMBER, CREATE_USER, CREATE_USER_GROUP, DELETE_ACCOUNT,
    DELETE_ROLE_MEMBER, DELETE_USER, DELETE_USER_GROUP, LIST_ACCOUNTS, LIST_ROLES,
    LIST_USER_GROUPS, LIST_USERS, UPDATE_ACCOUNT, UPDATE_USER, UPDATE_USER_GROUP,
};
use crate::domain::api_keys::{DESCRIPTION_MAX_CHARS, KeyUpdate, key_name};
use crate::domain::input::Field;
use crate::domain::model::{AccountState, AccountType, ApiKeyStatus, UserState};
use crate::domain::names::{self, AccountName, Email, GroupName};
use crate::domain::secret::Secret;
use crate::domain::users::{NewUser, check_password};
use crate::error::{Error, Result};
use crate::http::Table;

/// Every page and form of the console, each area adding its own.
pub fn routes() -> Table<App> {
    let table = Table::new("console:Page")
        .get("/", || async { Redirect::to("/keys") })
        .get("/static/console.css", stylesheet)
        .get("/static/console.js", script);
    [
        sign_in::routes,
        accounts::routes,
        roles::routes,
        users::routes,
        keys::routes,
        groups::routes,
    ]
    .into_iter()
    .fold(table, |table, area| area(table))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("console.js"),
    )
        .into_response()
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The redirect after a change: the page it lands on says what was done
/// (`views::notice_of` holds the texts).
fn done(to: &str, what: &str) -> Response {
    let join = if to.contains('?') { '&' } else { '?' };
    see_other(&format!("{to}{join}done={what}"))
}

fn account_href(account: &str) -> String {
    format!("/accounts/{}", enc(account))
}

fn user_href(account: &str, user: &str) -> String {
    format!("/accounts/{}/users/{}", enc(account), enc(user))
}

fn keys_href(account: &str, user: &str) -> String {
    if user.is_empty() {
        "/keys".to_owned()
    } else {
        format!("/keys?account={}&user={}", enc(account), enc(user))
    }
}

impl Ctx {
    /// `require` without a record: whether a control is drawn. The POST
    /// behind it is decided again, for real, by the domain.
    async fn may(&self, action: &str, account: Option<&str>) -> bool {
        self.core().may(&self.caller, action, account).await.is_ok()
    }

    fn context_account(&self) -> &str {
        self.caller
            .account_context
            .as_deref()
            .unwrap_or(self.caller.account())
    }

    async fn render(
        &self,
        status: StatusCode,
        title: &str,
        problem: Option<&Problem>,
        body: Markup,
    ) -> Response {
        let accounts_link = self.may(LIST_ACCOUNTS, None).await;
        let groups_link = self.may(LIST_USER_GROUPS, None).await;
        let users_link = self.may(LIST_USERS, Some(self.context_account())).await;
        let frame = Frame {
            username: self.caller.username(),
            account: self.caller.account(),
            csrf: &self.csrf,
            accounts_link,
            users_link,
            groups_link,
            context_field: accounts_link,
            context: self.caller.account_context.as_deref(),
            notice: self.notice,
        };
        views::page(&frame, status, title, problem, body)
    }

    /// A page that could not be drawn at all.
    async fn error_page(&self, e: &Error) -> Response {
        let problem = Problem::from(e);
        self.render(
            problem.status,
            "Something went wrong",
            Some(&problem),
            html! {},
        )
        .await
    }

    /// "Are you sure?": a page with one form and a way back.
    async fn confirm(
        &self,
        title: &str,
        question: Markup,
        action: &str,
        fields: &[(&str, &str)],
        label: &str,
        back: &str,
    ) -> Response {
        let body = html! {
            p { (question) }
            (button_form(&self.csrf, action, fields, label))
            " "
            a href=(back) { "Cancel" }
        };
        self.render(StatusCode::OK, title, None, body).await
    }
}

fn status_of(problem: Option<&Problem>) -> StatusCode {
    problem.map_or(StatusCode::OK, |p| p.status)
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_path_segments() {
        assert_eq!(super::enc("a b/c"), "a%20b%2Fc");
        assert_eq!(super::enc("plain-name_1.x"), "plain-name_1.x");
    }
}
