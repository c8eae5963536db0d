//! The console's pages: each GET draws a page from the domain's answers,
//! each POST calls the domain function its RPC calls and redirects (or
//! draws the page again with the error next to its field).

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Days, NaiveDate};
use maud::{Markup, html};
use serde::Deserialize;

mod listing;
mod roles;

use listing::{ListQuery, Listing};

use super::views::{
    self, Frame, Problem, button_form, csrf, enc, field_error, maybe_time, text_field, time,
};
use super::{ACCESS, App, CONTEXT, Ctx, Form, NEW_KEY, Posted, REFRESH};
use crate::domain::actions::{
    CREATE_ACCOUNT, CREATE_ROLE_MEMBER, CREATE_USER, CREATE_USER_GROUP, DELETE_ACCOUNT,
    DELETE_ROLE_MEMBER, DELETE_USER, DELETE_USER_GROUP, LIST_ACCOUNTS, LIST_ROLES,
    LIST_USER_GROUPS, LIST_USERS, UPDATE_ACCOUNT, UPDATE_USER, UPDATE_USER_GROUP,
};
use crate::domain::api_keys::{DESCRIPTION_MAX_CHARS, KeyUpdate, key_name};
use crate::domain::model::{AccountState, AccountType, ApiKeyStatus, UserState, UserType};
use crate::domain::names::{self, AccountName, Email, GroupName, Username};
use crate::domain::secret::Secret;
use crate::domain::users::{NewUser, check_password};
use crate::error::{Error, Result};
use crate::grpc::input;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/keys") }))
        .route("/static/console.css", get(stylesheet))
        .route("/static/console.js", get(script))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", axum::routing::post(sign_out))
        .route("/context", axum::routing::post(switch_context))
        .route("/accounts", get(accounts_page).post(create_account))
        .route("/accounts/{account}", get(account_page))
        .route("/accounts/{account}/roles", get(roles::roles_page))
        .route("/accounts/{account}/roles/{role}", get(roles::role_page))
        .route(
            "/accounts/{account}/email",
            axum::routing::post(update_email),
        )
        .route(
            "/accounts/{account}/state",
            axum::routing::post(account_state),
        )
        .route(
            "/accounts/{account}/delete",
            get(delete_account_page).post(delete_account),
        )
        .route(
            "/accounts/{account}/users",
            axum::routing::post(create_user),
        )
        .route("/accounts/{account}/users/{user}", get(user_page))
        .route(
            "/accounts/{account}/users/{user}/roles/add",
            axum::routing::post(add_role),
        )
        .route(
            "/accounts/{account}/users/{user}/roles/remove",
            axum::routing::post(remove_role),
        )
        .route(
            "/accounts/{account}/users/{user}/password",
            axum::routing::post(set_password),
        )
        .route(
            "/accounts/{account}/users/{user}/state",
            axum::routing::post(user_state),
        )
        .route(
            "/accounts/{account}/users/{user}/delete",
            get(delete_user_page).post(delete_user),
        )
        .route("/keys", get(keys_page).post(create_key))
        .route("/keys/reveal", get(reveal_key))
        .route("/keys/revoke", get(revoke_key_page).post(revoke_key))
        .route("/keys/rotate", get(rotate_key_page).post(rotate_key))
        .route("/groups", get(groups_page).post(create_group))
        .route("/groups/{group}", get(group_page))
        .route("/groups/{group}/members", axum::routing::post(add_member))
        .route(
            "/groups/{group}/members/remove",
            axum::routing::post(remove_member),
        )
        .route("/groups/{group}/grants", axum::routing::post(add_grant))
        .route(
            "/groups/{group}/grants/remove",
            axum::routing::post(remove_grant),
        )
        .route(
            "/groups/{group}/delete",
            get(delete_group_page).post(delete_group),
        )
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

// ---------------------------------------------------------------- sign-in

fn sign_in_form(status: StatusCode, message: Option<&str>, username: &str) -> Response {
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
        },
    )
}

async fn sign_in_page() -> Response {
    sign_in_form(StatusCode::OK, None, "")
}

async fn sign_in(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    body: axum::body::Body,
) -> Response {
    let form = match Form::read(body, super::MAX_FORM_BYTES).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let username = form.get("username");
    let password = Secret::new(form.get("password").to_owned());
    let source = crate::domain::authn::sources::Source::from_ip(peer.ip());
    // The login's own input rules, as CreateToken's: a malformed one fails
    // like any other.
    let login = "authz.v1.PasswordCredentials";
    let checked =
        input::check("username", username, input::rule_of(login, "username")).and_then(|()| {
            input::check(
                "password",
                password.expose(),
                input::rule_of(login, "password"),
            )
        });
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
            tracing::info!(user = username, "console sign-in");
            response
        }
        Err(e) => {
            let (status, message) = super::sign_in_failure(&e);
            sign_in_form(status, Some(&message), username)
        }
    }
}

async fn sign_out(State(app): State<App>, headers: HeaderMap, posted: Posted) -> Response {
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

async fn switch_context(posted: Posted) -> Response {
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

// ---------------------------------------------------------------- accounts

async fn accounts_page(ctx: Ctx, Query(q): Query<ListQuery>) -> Response {
    accounts_view(&ctx, &q, None, &Form::default()).await
}

async fn accounts_view(
    ctx: &Ctx,
    q: &ListQuery,
    problem: Option<&Problem>,
    form: &Form,
) -> Response {
    let listed = async {
        let request = q.request(1)?;
        let accounts = ctx
            .core()
            .list_accounts(&ctx.caller, None, &request)
            .await?;
        let total = ctx
            .core()
            .count_accounts(&ctx.caller, None, &request)
            .await?;
        Ok::<_, Error>((request, accounts, total))
    }
    .await;
    let (request, accounts, total) = match listed {
        Ok(l) => l,
        Err(e) => return ctx.error_page(&e).await,
    };
    let list = Listing {
        path: "/accounts",
        keep: Vec::new(),
        id: "accounts",
        noun: "accounts",
        query: q,
    };
    let can_create = ctx.may(CREATE_ACCOUNT, None).await;
    let body = html! {
        (list.search())
        (list.pager(&request, &accounts, total, |a| vec![a.name.as_str()]))
        table {
            caption { "Accounts" }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Type" } th scope="col" { "State" } th scope="col" { "Created" } } }
            tbody {
                @for a in &accounts.items {
                    tr {
                        td data-label="Name" { a href=(account_href(&a.name)) { (a.name) } }
                        td data-label="Email" { (a.email.as_deref().unwrap_or("")) }
                        td data-label="Type" { (a.account_type.as_str()) }
                        td data-label="State" class={ "state-" (a.state.as_str()) } { (a.state.as_str()) }
                        td data-label="Created" { (time(a.created_at)) }
                    }
                }
            }
        }
        @if can_create {
            section aria-labelledby="create-account" {
                h2 id="create-account" { "Create a new account" }
                form method="post" action="/accounts" {
                    (csrf(&ctx.csrf))
                    (text_field(problem, "account-name", "name", "Account name", "text", form.get("name"), true))
                    (text_field(problem, "account-email", "email", "Email (optional)", "email", form.get("email"), false))
                    button type="submit" { "Create account" }
                }
            }
        }
    };
    ctx.render(status_of(problem), "Accounts", problem, body)
        .await
}

async fn create_account(posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let result = async {
        let name = AccountName::parse_new("name", form.get("name"))?;
        let email = Email::parse_optional("email", form.get("email"))?;
        ctx.core()
            .create_account(&ctx.caller, name, email, AccountType::User)
            .await
    }
    .await;
    match result {
        Ok(account) => done(&account_href(&account.name), "account-created"),
        Err(e) => accounts_view(&ctx, &ListQuery::default(), Some(&Problem::from(e)), &form).await,
    }
}

async fn account_page(
    ctx: Ctx,
    Path(account): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    account_view(&ctx, &account, &q, None, &Form::default()).await
}

fn role_names(ctx: &Ctx) -> Vec<String> {
    ctx.core()
        .catalog()
        .roles()
        .map(|r| r.name.clone())
        .collect()
}

/// The account page's tabs, as the seed's: the account with its users,
/// and its roles (for those who may list them).
async fn account_tabs(ctx: &Ctx, account: &str, roles: bool) -> Markup {
    let may_roles = ctx.may(LIST_ROLES, Some(account)).await;
    let base = account_href(account);
    html! {
        nav class="tabs" aria-label="Account" {
            ul {
                li { a href=(base) aria-current=[(!roles).then_some("page")] { "Users" } }
                @if may_roles {
                    li { a href={ (base) "/roles" } id="roles-tab" aria-current=[roles.then_some("page")] { "Roles" } }
                }
            }
        }
    }
}

async fn account_view(
    ctx: &Ctx,
    name: &str,
    q: &ListQuery,
    problem: Option<&Problem>,
    form: &Form,
) -> Response {
    let account = match ctx.core().get_account(&ctx.caller, name).await {
        Ok(a) => a,
        Err(e) => return ctx.error_page(&e).await,
    };
    let request = match q.request(1) {
        Ok(p) => p,
        Err(e) => return ctx.error_page(&e).await,
    };
    let users = async {
        let users = ctx.core().list_users(&ctx.caller, name, &request).await?;
        let total = ctx.core().count_users(&ctx.caller, name, &request).await?;
        Ok::<_, Error>((users, total))
    }
    .await;
    let base = account_href(name);
    let list = Listing {
        path: &base,
        keep: Vec::new(),
        id: "users",
        noun: "users",
        query: q,
    };
    // The admin account is locked: no controls, as in the seed.
    let locked = account.account_type == AccountType::Admin;
    let can_update = !locked && ctx.may(UPDATE_ACCOUNT, Some(name)).await;
    let can_delete = !locked && ctx.may(DELETE_ACCOUNT, Some(name)).await;
    let can_add_user = ctx.may(CREATE_USER, Some(name)).await;
    let chosen = form.all("roles");
    let body = html! {
        (account_tabs(ctx, name, false).await)
        dl {
            dt { "Name" } dd { (account.name) }
            dt { "Email" } dd id="account-email" { (account.email.as_deref().unwrap_or("")) }
            dt { "Type" } dd { (account.account_type.as_str()) }
            dt { "State" } dd class={ "state-" (account.state.as_str()) } { (account.state.as_str()) }
            dt { "Created" } dd { (time(account.created_at)) }
        }
        @if can_update {
            section aria-labelledby="edit-account" {
                h2 id="edit-account" { "Edit account" }
                form method="post" action={ (base) "/email" } {
                    (csrf(&ctx.csrf))
                    (text_field(problem, "edit-email", "email", "Email", "email", if form.has("email") { form.get("email") } else { account.email.as_deref().unwrap_or("") }, false))
                    button type="submit" { "Save email" }
                }
                @match account.state {
                    AccountState::Enabled => (button_form(&ctx.csrf, &format!("{base}/state"), &[("state", "disabled")], "Disable account")),
                    AccountState::Disabled => (button_form(&ctx.csrf, &format!("{base}/state"), &[("state", "enabled")], "Enable account")),
                    AccountState::Deleting => {},
                }
            }
        }
        // Anchore's order: disable, then delete.
        @if can_delete && account.state == AccountState::Disabled {
            p { a href={ (base) "/delete" } class="danger" { "Delete account" } }
        }
        section aria-labelledby="users" {
            h2 id="users" { "Users" }
            @match &users {
                Ok((users, 0)) if users.items.is_empty() && q.q.trim().is_empty() => { p { "This account has no users. Let's add one!" } }
                Ok((users, total)) => {
                    (list.search())
                    (list.pager(&request, users, *total, |u| vec![u.user.username.as_str()]))
                    table {
                        thead { tr { th scope="col" { "Username" } th scope="col" { "Type" } th scope="col" { "State" } th scope="col" { "Roles" } th scope="col" { "Created" } } }
                        tbody {
                            @for u in &users.items {
                                tr {
                                    td data-label="Username" { a href=(user_href(name, &u.user.username)) { (u.user.username) } }
                                    td data-label="Type" { (u.user.user_type.as_str()) }
                                    td data-label="State" class={ "state-" (u.user.state.as_str()) } { (u.user.state.as_str()) }
                                    td data-label="Roles" { (u.grants.iter().filter(|g| g.account == name).map(|g| g.role.as_str()).collect::<Vec<_>>().join(", ")) }
                                    td data-label="Created" { (time(u.user.created_at)) }
                                }
                            }
                        }
                    }
                }
                Err(Error::PermissionDenied(_)) => { p { "You may not list this account's users." } }
                Err(e) => { p class="problem" role="alert" { (views::describe(e).1) } }
            }
        }
        @if can_add_user && account.state != AccountState::Deleting {
            section aria-labelledby="add-user" {
                h2 id="add-user" { "Add a user" }
                form method="post" action={ (base) "/users" } {
                    (csrf(&ctx.csrf))
                    (text_field(problem, "new-username", "username", "Username", "text", form.get("username"), true))
                    (text_field(problem, "new-password", "password", "Password", "password", "", true))
                    fieldset {
                        legend { "Roles" }
                        @for role in role_names(ctx) {
                            div class="check" {
                                input type="checkbox" id={ "role-" (role) } name="roles" value=(role) checked[chosen.contains(&role)];
                                label for={ "role-" (role) } { (role) }
                            }
                        }
                        (field_error(problem, "roles"))
                        @for i in 0..chosen.len() { (field_error(problem, &format!("roles[{i}]"))) }
                    }
                    button type="submit" { "Add user" }
                }
            }
        }
    };
    ctx.render(
        status_of(problem),
        &format!("Account {}", account.name),
        problem,
        body,
    )
    .await
}

async fn update_email(Path(account): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let result = async {
        let email = Email::parse_optional("email", form.get("email"))?;
        ctx.core()
            .update_account_email(&ctx.caller, &account, email)
            .await
    }
    .await;
    match result {
        Ok(_) => done(&account_href(&account), "email-saved"),
        Err(e) => {
            account_view(
                &ctx,
                &account,
                &ListQuery::default(),
                Some(&Problem::from(e)),
                &form,
            )
            .await
        }
    }
}

async fn account_state(Path(account): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let state = match form.get("state") {
        "enabled" => Ok((AccountState::Enabled, "account-enabled")),
        "disabled" => Ok((AccountState::Disabled, "account-disabled")),
        _ => Err(Error::invalid("state", "must be enabled or disabled")),
    };
    let result = match state {
        Ok((state, what)) => ctx
            .core()
            .set_account_state(&ctx.caller, &account, state)
            .await
            .map(|_| what),
        Err(e) => Err(e),
    };
    match result {
        Ok(what) => done(&account_href(&account), what),
        Err(e) => {
            account_view(
                &ctx,
                &account,
                &ListQuery::default(),
                Some(&Problem::from(e)),
                &form,
            )
            .await
        }
    }
}

async fn delete_account_page(ctx: Ctx, Path(account): Path<String>) -> Response {
    ctx.confirm(
        "Delete account",
        html! { "Delete account " strong { (account) } " and everything in it? Its users and their API keys stop working at once. The account must be disabled first." },
        &format!("{}/delete", account_href(&account)),
        &[],
        "Delete account",
        &account_href(&account),
    )
    .await
}

async fn delete_account(Path(account): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    match ctx.core().delete_account(&ctx.caller, &account).await {
        Ok(_) => done("/accounts", "account-deleted"),
        Err(e) => {
            account_view(
                &ctx,
                &account,
                &ListQuery::default(),
                Some(&Problem::from(e)),
                &form,
            )
            .await
        }
    }
}

// ---------------------------------------------------------------- users

async fn create_user(Path(account): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let result = async {
        let password = Secret::new(form.get("password").to_owned());
        check_password("password", &password)?;
        let new = NewUser {
            account: account.clone(),
            username: Username::parse_native("username", form.get("username"))?,
            user_type: UserType::Native,
            password: Some(password),
            idp_name: None,
            roles: form.all("roles"),
        };
        ctx.core().create_user(&ctx.caller, new).await
    }
    .await;
    match result {
        Ok(user) => done(&user_href(&account, &user.user.username), "user-created"),
        Err(e) => {
            account_view(
                &ctx,
                &account,
                &ListQuery::default(),
                Some(&Problem::from(e)),
                &form,
            )
            .await
        }
    }
}

async fn user_page(ctx: Ctx, Path((account, user)): Path<(String, String)>) -> Response {
    user_view(&ctx, &account, &user, None).await
}

async fn user_view(
    ctx: &Ctx,
    account: &str,
    username: &str,
    problem: Option<&Problem>,
) -> Response {
    let found = match ctx.core().get_user(&ctx.caller, account, username).await {
        Ok(u) => u,
        Err(e) => return ctx.error_page(&e).await,
    };
    let user = &found.user;
    let is_self = user.id == ctx.caller.user.id;
    let manage = !is_self
        && ctx
            .core()
            .may_over_user(&ctx.caller, UPDATE_USER, user)
            .await
            .is_ok();
    let can_add_role = ctx.may(CREATE_ROLE_MEMBER, Some(account)).await;
    let can_remove_role = ctx.may(DELETE_ROLE_MEMBER, Some(account)).await;
    let can_delete = !is_self
        && ctx
            .core()
            .may_over_user(&ctx.caller, DELETE_USER, user)
            .await
            .is_ok();
    let base = user_href(account, username);
    let held: Vec<&str> = found
        .grants
        .iter()
        .filter(|g| g.group.is_none() && g.account == account)
        .map(|g| g.role.as_str())
        .collect();
    let body = html! {
        dl {
            dt { "Username" } dd { (user.username) }
            dt { "Account" } dd { a href=(account_href(&user.account)) { (user.account) } }
            dt { "Type" } dd { (user.user_type.as_str()) }
            dt { "State" } dd class={ "state-" (user.state.as_str()) } { (user.state.as_str()) }
            dt { "Password last changed" } dd { (maybe_time(user.password_updated_at)) }
            dt { "Created" } dd { (time(user.created_at)) }
            @if let Some(lock) = &found.lock {
                dt { "Failed sign-ins" } dd { (lock.failures) @if lock.locked_until.is_some() || lock.permanent { " (locked)" } }
            }
        }
        section aria-labelledby="roles" {
            h2 id="roles" { "Roles" }
            table {
                thead { tr { th scope="col" { "Role" } th scope="col" { "Account" } th scope="col" { "Through" } @if can_remove_role { th scope="col" { span class="sr" { "Actions" } } } } }
                tbody {
                    @for g in &found.grants {
                        tr {
                            td data-label="Role" { (g.role) }
                            td data-label="Account" { (g.account) }
                            td data-label="Through" { (g.group.as_deref().map_or("direct".to_owned(), |grp| format!("group {grp}"))) }
                            @if can_remove_role {
                                td {
                                    @if g.group.is_none() && g.account == account {
                                        (button_form(&ctx.csrf, &format!("{base}/roles/remove"), &[("role", &g.role)], &format!("Remove role {}", g.role)))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if can_add_role {
                form method="post" action={ (base) "/roles/add" } {
                    (csrf(&ctx.csrf))
                    div class="field" {
                        label for="add-role" { "Add role" }
                        select id="add-role" name="role" {
                            @for role in role_names(ctx) {
                                @if !held.contains(&role.as_str()) { option value=(role) { (role) } }
                            }
                        }
                        (field_error(problem, "role"))
                    }
                    button type="submit" { "Add role" }
                }
            }
        }
        @if manage || is_self {
            section aria-labelledby="password" {
                h2 id="password" { @if is_self { "Change your password" } @else { "Set password" } }
                form method="post" action={ (base) "/password" } {
                    (csrf(&ctx.csrf))
                    @if is_self {
                        (text_field(problem, "current-password", "current_password", "Current password", "password", "", true))
                    }
                    (text_field(problem, "set-password", "password", "New password", "password", "", true))
                    button type="submit" { "Set password" }
                }
            }
        }
        @if manage {
            section aria-labelledby="user-state" {
                h2 id="user-state" { "State" }
                @match user.state {
                    UserState::Enabled => (button_form(&ctx.csrf, &format!("{base}/state"), &[("state", "disabled")], "Disable user")),
                    UserState::Disabled => (button_form(&ctx.csrf, &format!("{base}/state"), &[("state", "enabled")], "Enable user")),
                }
            }
        }
        p {
            a href=(keys_href(account, username)) { "API keys of " (username) }
            @if can_delete { " · " a class="danger" href={ (base) "/delete" } { "Delete user" } }
        }
    };
    ctx.render(
        status_of(problem),
        &format!("User {username}"),
        problem,
        body,
    )
    .await
}

async fn add_role(Path((account, user)): Path<(String, String)>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let role = form.get("role");
    match ctx
        .core()
        .add_role_member(&ctx.caller, role, &user, &account)
        .await
    {
        Ok(_) => done(&user_href(&account, &user), "role-added"),
        Err(e) => user_view(&ctx, &account, &user, Some(&Problem::from(e))).await,
    }
}

async fn remove_role(Path((account, user)): Path<(String, String)>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let role = form.get("role");
    match ctx
        .core()
        .remove_role_member(&ctx.caller, role, &user, &account)
        .await
    {
        Ok(_) => done(&user_href(&account, &user), "role-removed"),
        Err(e) => user_view(&ctx, &account, &user, Some(&Problem::from(e))).await,
    }
}

async fn set_password(Path((account, user)): Path<(String, String)>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let result = async {
        let password = Secret::new(form.get("password").to_owned());
        check_password("password", &password)?;
        let current = form.get("current_password");
        let current = (!current.is_empty()).then(|| Secret::new(current.to_owned()));
        ctx.core()
            .set_password(&ctx.caller, &account, &user, &password, current.as_ref())
            .await
    }
    .await;
    match result {
        Ok(_) => done(&user_href(&account, &user), "password-set"),
        Err(e) => user_view(&ctx, &account, &user, Some(&Problem::from(e))).await,
    }
}

async fn user_state(Path((account, user)): Path<(String, String)>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let state = match form.get("state") {
        "enabled" => Ok((UserState::Enabled, "user-enabled")),
        "disabled" => Ok((UserState::Disabled, "user-disabled")),
        _ => Err(Error::invalid("state", "must be enabled or disabled")),
    };
    let result = match state {
        Ok((state, what)) => ctx
            .core()
            .set_user_state(&ctx.caller, &account, &user, state)
            .await
            .map(|_| what),
        Err(e) => Err(e),
    };
    match result {
        Ok(what) => done(&user_href(&account, &user), what),
        Err(e) => user_view(&ctx, &account, &user, Some(&Problem::from(e))).await,
    }
}

async fn delete_user_page(ctx: Ctx, Path((account, user)): Path<(String, String)>) -> Response {
    ctx.confirm(
        "Delete user",
        html! { "Delete user " strong { (user) } " of account " strong { (account) } "? Their API keys and tokens stop working at once." },
        &format!("{}/delete", user_href(&account, &user)),
        &[],
        "Delete user",
        &user_href(&account, &user),
    )
    .await
}

async fn delete_user(Path((account, user)): Path<(String, String)>, posted: Posted) -> Response {
    let Posted { ctx, .. } = posted;
    match ctx.core().delete_user(&ctx.caller, &account, &user).await {
        Ok(()) => done(&account_href(&account), "user-deleted"),
        Err(e) => user_view(&ctx, &account, &user, Some(&Problem::from(e))).await,
    }
}

// ---------------------------------------------------------------- API keys

#[derive(Deserialize, Default)]
struct KeysQuery {
    #[serde(default)]
    account: String,
    #[serde(default)]
    user: String,
    /// `on`: expired and revoked keys too (the seed's default is active
    /// keys only).
    #[serde(default)]
    all: String,
    #[serde(default)]
    page: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    name: String,
}

/// The owner a keys page addresses: (account, username), the caller's own
/// when no user is named.
fn key_owner(ctx: &Ctx, account: &str, user: &str) -> Result<(String, String)> {
    if user.is_empty() || user == ctx.caller.username() {
        return Ok((
            ctx.caller.account().to_owned(),
            ctx.caller.username().to_owned(),
        ));
    }
    // The page names the account; the context is only its default.
    let account = if account.is_empty() {
        ctx.context_account()
    } else {
        account
    };
    AccountName::parse("account", account)?;
    input::check("user", user, input::rule_of("console", "username"))?;
    Ok((account.to_owned(), user.to_owned()))
}

async fn keys_page(ctx: Ctx, Query(q): Query<KeysQuery>) -> Response {
    keys_view(&ctx, &q, None, &Form::default()).await
}

async fn keys_view(ctx: &Ctx, q: &KeysQuery, problem: Option<&Problem>, form: &Form) -> Response {
    let (account, user) = match key_owner(ctx, &q.account, &q.user) {
        Ok(o) => o,
        Err(e) => return ctx.error_page(&e).await,
    };
    let own = user == ctx.caller.username();
    let all = q.all == "on";
    let search = ListQuery {
        q: q.q.clone(),
        page: q.page.clone(),
        before: q.before.clone(),
    };
    let listed = async {
        let request = search.request(1)?;
        let keys = ctx
            .core()
            .list_api_keys(&ctx.caller, &account, &user, all, all, &request)
            .await?;
        let total = ctx
            .core()
            .count_api_keys(&ctx.caller, &account, &user, all, all, &request)
            .await?;
        Ok::<_, Error>((request, keys, total))
    }
    .await;
    let (request, keys, total) = match listed {
        Ok(l) => l,
        Err(e) => return ctx.error_page(&e).await,
    };
    // An account administrator names whose keys: a user of the context
    // account (a global administrator switches the context first). A
    // typed name, looked up by the server: no list to cap.
    let context = ctx.context_account().to_owned();
    let pick_owner = ctx.may(LIST_USERS, Some(&context)).await;
    let now = ctx.core().now();
    let max_days = ctx.core().settings().api_keys.max_age_days;
    let today = now.date_naive();
    let ahead = |days: u32| {
        today
            .checked_add_days(Days::new(u64::from(days)))
            .unwrap_or(NaiveDate::MAX)
    };
    let (earliest, latest) = (ahead(1), ahead(max_days));
    let default = ahead(30.min(max_days));
    let fields = [("account", account.as_str()), ("user", user.as_str())];
    let mut keep: Vec<(&str, &str)> = if own { Vec::new() } else { fields.to_vec() };
    if all {
        keep.push(("all", "on"));
    }
    let list = Listing {
        path: "/keys",
        keep,
        id: "keys",
        noun: if all { "keys" } else { "active keys" },
        query: &search,
    };
    // The toggle is a link: it applies at once, with or without script.
    let toggle = Listing {
        path: "/keys",
        keep: if own { Vec::new() } else { fields.to_vec() },
        id: "keys",
        noun: "",
        query: &search,
    };
    let body = html! {
        @if pick_owner {
            form method="get" action="/keys" class="owner" {
                input type="hidden" name="account" value=(context);
                label for="key-owner" { "Show the keys of" }
                " "
                input type="text" id="key-owner" name="user" value=(if own { "" } else { user.as_str() }) placeholder="username" size="16" required;
                " "
                button type="submit" { "Show" }
                " "
                a href=(account_href(&context)) class="hint" { "Find a user in " (context) }
            }
        }
        @if !own { p { "Keys of user " strong { (user) } " in account " strong { (account) } "." } }
        p class="toggle" {
            @if all {
                "Showing all keys. "
                a href=(toggle.link(&[])) id="only-active" { "Show only active" }
            } @else {
                "Showing only active keys. "
                a href=(toggle.link(&[("all", "on")])) id="show-all" { "Show all keys (revoked and expired too)" }
            }
        }
        (list.search())
        (list.pager(&request, &keys, total, |k| vec![k.name.as_str()]))
        table {
            caption { @if own { "Your API keys" } @else { "API keys of " (user) } }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Description" } th scope="col" { "Status" } th scope="col" { "Key" } th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "Last used" } th scope="col" { span class="sr" { "Actions" } } } }
            tbody {
                @for k in &keys.items {
                    @let status = k.status(now);
                    tr {
                        td data-label="Name" { (k.name) }
                        td data-label="Description" { (k.description) }
                        td data-label="Status" class={ "status-" (status_name(status)) } { (status_name(status)) }
                        td data-label="Key" { code { "…" (k.last_four) } }
                        td data-label="Created" { (time(k.created_at)) }
                        td data-label="Expires" { (time(k.expires_at)) }
                        td data-label="Last used" { (maybe_time(k.last_used_at)) }
                        td class="actions" {
                            @if status == ApiKeyStatus::Active {
                                a href={ "/keys/revoke?" (key_query(&fields, &k.name)) } { "Revoke" span class="sr" { " " (k.name) } }
                                " "
                                a href={ "/keys/rotate?" (key_query(&fields, &k.name)) } { "Rotate" span class="sr" { " " (k.name) } }
                            }
                        }
                    }
                }
            }
        }
        @if keys.items.is_empty() { p { "No keys to show." } }
        section aria-labelledby="create-key" {
            h2 id="create-key" { "Create API key" }
            form method="post" action="/keys" {
                (csrf(&ctx.csrf))
                input type="hidden" name="account" value=(account);
                input type="hidden" name="user" value=(user);
                (text_field(problem, "key-name", "name", "Name", "text", form.get("name"), true))
                (text_field(problem, "key-description", "description", "Description (optional)", "text", form.get("description"), false))
                div class="field" {
                    label for="key-expires" { "Expires on" }
                    input id="key-expires" name="expires" type="date" required
                        min=(earliest.format("%Y-%m-%d")) max=(latest.format("%Y-%m-%d"))
                        value=(if form.has("expires") { form.get("expires").to_owned() } else { default.format("%Y-%m-%d").to_string() });
                    span class="hint" { "The key expires on that day (UTC) at this time of day, at most " (max_days) " days ahead." }
                    (field_error(problem, "expires_at"))
                }
                button type="submit" { "Create" }
            }
        }
    };
    ctx.render(status_of(problem), "API Keys", problem, body)
        .await
}

fn status_name(status: ApiKeyStatus) -> &'static str {
    match status {
        ApiKeyStatus::Active => "active",
        ApiKeyStatus::Expired => "expired",
        ApiKeyStatus::Revoked => "revoked",
    }
}

fn key_query(fields: &[(&str, &str)], name: &str) -> String {
    let mut q: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    q.push(format!("name={}", enc(name)));
    q.join("&")
}

fn keys_query_of(form: &Form) -> KeysQuery {
    KeysQuery {
        account: form.get("account").to_owned(),
        user: form.get("user").to_owned(),
        ..KeysQuery::default()
    }
}

/// The page after a key is made: the value rides in a short-lived cookie
/// to the one page that shows it (never in a URL), which clears it.
fn reveal(ctx: &Ctx, name: &str, value: &Secret, back: &str) -> Response {
    // Bound to the session: another session in the same browser (a shared
    // machine) cannot read it.
    let packed = format!(
        "{}.{}.{}.{}",
        URL_SAFE_NO_PAD.encode(name),
        URL_SAFE_NO_PAD.encode(value.expose()),
        URL_SAFE_NO_PAD.encode(back),
        URL_SAFE_NO_PAD.encode(&ctx.csrf)
    );
    let mut response = see_other("/keys/reveal");
    response.headers_mut().append(
        header::SET_COOKIE,
        ctx.app.set_cookie(NEW_KEY, &packed, 120),
    );
    response
}

async fn create_key(posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let result = async {
        let (account, user) = key_owner(&ctx, form.get("account"), form.get("user"))?;
        let name = key_name("name", form.get("name"))?;
        let description = names::description(
            "description",
            form.get("description"),
            DESCRIPTION_MAX_CHARS,
        )?;
        let expires = NaiveDate::parse_from_str(form.get("expires"), "%Y-%m-%d")
            .map_err(|_| Error::invalid("expires_at", "must be a date (YYYY-MM-DD)"))?;
        // That day at this time of day: "30 days ahead" is 30 days, and
        // the furthest day offered is within the limit.
        let expires_at = expires.and_time(ctx.core().now().time()).and_utc();
        let (key, value) = ctx
            .core()
            .create_api_key(&ctx.caller, &account, &user, name, description, expires_at)
            .await?;
        let own = user == ctx.caller.username();
        Ok::<_, Error>((
            key,
            value,
            keys_href(&account, if own { "" } else { &user }),
        ))
    }
    .await;
    match result {
        Ok((key, value, back)) => reveal(&ctx, &key.name, &value, &back),
        Err(e) => keys_view(&ctx, &keys_query_of(&form), Some(&Problem::from(e)), &form).await,
    }
}

async fn reveal_key(ctx: Ctx, headers: HeaderMap) -> Response {
    let unpacked = ctx.app.cookie(&headers, NEW_KEY).and_then(|packed| {
        let mut parts = packed.split('.').map(|p| {
            URL_SAFE_NO_PAD
                .decode(p)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        });
        let found = (parts.next()??, parts.next()??, parts.next()??);
        (parts.next()?? == ctx.csrf).then_some(found)
    });
    let mut response = match unpacked {
        Some((name, value, back)) => {
            let back = if back.starts_with("/keys") {
                back
            } else {
                "/keys".to_owned()
            };
            let body = html! {
                p class="warning" role="alert" {
                    "Copy this key now and store it safely. It is shown only once: authzd keeps only its hash, and neither you nor an administrator can see it again."
                }
                div class="field" {
                    label for="new-key-value" { "API key " strong { (name) } }
                    input id="new-key-value" type="text" readonly value=(value) size="60" class="secret";
                    button type="button" id="copy-key" data-copy="new-key-value" hidden { "Copy to clipboard" }
                }
                p { a href=(back) { "Done" } }
            };
            ctx.render(StatusCode::OK, "Your new API key", None, body)
                .await
        }
        None => {
            let body = html! {
                p { "A key's value is shown once, right after it is created or rotated, and cannot be shown again. Create or rotate a key to get a new value." }
                p { a href="/keys" { "Back to API keys" } }
            };
            ctx.render(StatusCode::GONE, "Nothing to show", None, body)
                .await
        }
    };
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, ctx.app.set_cookie(NEW_KEY, "", 0));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn key_action_page(ctx: Ctx, q: KeysQuery, rotate: bool) -> Response {
    let (account, user) = match key_owner(&ctx, &q.account, &q.user) {
        Ok(o) => o,
        Err(e) => return ctx.error_page(&e).await,
    };
    let own = user == ctx.caller.username();
    let back = keys_href(&account, if own { "" } else { &user });
    let fields = [
        ("account", account.as_str()),
        ("user", user.as_str()),
        ("name", q.name.as_str()),
    ];
    if rotate {
        ctx.confirm(
            "Rotate API key",
            html! { "Issue a new value for key " strong { (q.name) } " of " (user) "? The current value keeps working for an hour, then stops." },
            "/keys/rotate",
            &fields,
            "Rotate key",
            &back,
        )
        .await
    } else {
        ctx.confirm(
            "Revoke API key",
            html! { "Revoke key " strong { (q.name) } " of " (user) "? It stops working at once, and revoking cannot be undone." },
            "/keys/revoke",
            &fields,
            "Revoke key",
            &back,
        )
        .await
    }
}

async fn revoke_key_page(ctx: Ctx, Query(q): Query<KeysQuery>) -> Response {
    key_action_page(ctx, q, false).await
}

async fn rotate_key_page(ctx: Ctx, Query(q): Query<KeysQuery>) -> Response {
    key_action_page(ctx, q, true).await
}

async fn revoke_key(posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let result = async {
        let (account, user) = key_owner(&ctx, form.get("account"), form.get("user"))?;
        let name = key_name("name", form.get("name"))?;
        let update = KeyUpdate {
            new_name: None,
            description: None,
            status: Some(ApiKeyStatus::Revoked),
        };
        ctx.core()
            .update_api_key(&ctx.caller, &account, &user, &name, update)
            .await?;
        let own = user == ctx.caller.username();
        Ok::<_, Error>(keys_href(&account, if own { "" } else { &user }))
    }
    .await;
    match result {
        Ok(back) => done(&back, "key-revoked"),
        Err(e) => {
            keys_view(
                &ctx,
                &keys_query_of(&form),
                Some(&Problem::from(e)),
                &Form::default(),
            )
            .await
        }
    }
}

async fn rotate_key(posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let result = async {
        let (account, user) = key_owner(&ctx, form.get("account"), form.get("user"))?;
        let name = key_name("name", form.get("name"))?;
        let (key, value) = ctx
            .core()
            .rotate_api_key(&ctx.caller, &account, &user, &name, None)
            .await?;
        let own = user == ctx.caller.username();
        Ok::<_, Error>((
            key,
            value,
            keys_href(&account, if own { "" } else { &user }),
        ))
    }
    .await;
    match result {
        Ok((key, value, back)) => reveal(&ctx, &key.name, &value, &back),
        Err(e) => {
            keys_view(
                &ctx,
                &keys_query_of(&form),
                Some(&Problem::from(e)),
                &Form::default(),
            )
            .await
        }
    }
}

// ---------------------------------------------------------------- groups

async fn groups_page(ctx: Ctx, Query(q): Query<ListQuery>) -> Response {
    groups_view(&ctx, &q, None, &Form::default()).await
}

async fn groups_view(ctx: &Ctx, q: &ListQuery, problem: Option<&Problem>, form: &Form) -> Response {
    let listed = async {
        let request = q.request(1)?;
        let groups = ctx.core().list_groups(&ctx.caller, &request).await?;
        let total = ctx.core().count_groups(&ctx.caller, &request).await?;
        // A listing leaves members and grants out: counted apart, per page.
        let sizes = ctx.core().group_sizes(&ctx.caller, &groups.items).await?;
        Ok::<_, Error>((request, groups, total, sizes))
    }
    .await;
    let (request, groups, total, sizes) = match listed {
        Ok(l) => l,
        Err(e) => return ctx.error_page(&e).await,
    };
    let list = Listing {
        path: "/groups",
        keep: Vec::new(),
        id: "groups",
        noun: "groups",
        query: q,
    };
    let can_create = ctx.may(CREATE_USER_GROUP, None).await;
    let body = html! {
        (list.search())
        (list.pager(&request, &groups, total, |g| vec![g.name.as_str()]))
        table {
            caption { "Groups" }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Description" } th scope="col" { "Members" } th scope="col" { "Roles" } } }
            tbody {
                @for g in &groups.items {
                    @let (members, grants) = sizes.get(&g.id).copied().unwrap_or_default();
                    tr {
                        td data-label="Name" { a href={ "/groups/" (enc(&g.name)) } { (g.name) } }
                        td data-label="Description" { (g.description) }
                        td data-label="Members" class="members" { (members) }
                        td data-label="Roles" class="grants" { (grants) }
                    }
                }
            }
        }
        @if groups.items.is_empty() { p { "No groups to show." } }
        @if can_create {
            section aria-labelledby="create-group" {
                h2 id="create-group" { "Create a group" }
                form method="post" action="/groups" {
                    (csrf(&ctx.csrf))
                    (text_field(problem, "group-name", "name", "Name", "text", form.get("name"), true))
                    (text_field(problem, "group-description", "description", "Description (optional)", "text", form.get("description"), false))
                    button type="submit" { "Create group" }
                }
            }
        }
    };
    ctx.render(status_of(problem), "Groups", problem, body)
        .await
}

async fn create_group(posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let result = async {
        let name = GroupName::parse("name", form.get("name"))?;
        let description = names::description(
            "description",
            form.get("description"),
            DESCRIPTION_MAX_CHARS,
        )?;
        ctx.core()
            .create_group(&ctx.caller, name, description)
            .await
    }
    .await;
    match result {
        Ok(group) => done(&format!("/groups/{}", enc(&group.name)), "group-created"),
        Err(e) => groups_view(&ctx, &ListQuery::default(), Some(&Problem::from(e)), &form).await,
    }
}

#[derive(Deserialize, Default)]
struct GroupQuery {
    /// The beginning of the name of the account to grant a role in.
    #[serde(default)]
    account_q: String,
}

async fn group_page(ctx: Ctx, Path(group): Path<String>, Query(q): Query<GroupQuery>) -> Response {
    group_view(&ctx, &group, &q.account_q, None, &Form::default()).await
}

/// The accounts the grant form offers: those starting with `prefix`, the
/// first page of them, and how many match.
async fn grant_accounts(ctx: &Ctx, prefix: &str) -> Result<(Vec<String>, u64)> {
    let search = ListQuery {
        q: prefix.to_owned(),
        ..ListQuery::default()
    };
    let request = search.request(1)?;
    let accounts = ctx
        .core()
        .list_accounts(&ctx.caller, None, &request)
        .await?;
    let total = ctx
        .core()
        .count_accounts(&ctx.caller, None, &request)
        .await?;
    Ok((accounts.items.into_iter().map(|a| a.name).collect(), total))
}

async fn group_view(
    ctx: &Ctx,
    name: &str,
    account_q: &str,
    problem: Option<&Problem>,
    form: &Form,
) -> Response {
    let group = match ctx.core().get_group(&ctx.caller, name).await {
        Ok(g) => g,
        Err(e) => return ctx.error_page(&e).await,
    };
    let can_update = ctx.may(UPDATE_USER_GROUP, None).await;
    let can_delete = ctx.may(DELETE_USER_GROUP, None).await;
    let base = format!("/groups/{}", enc(name));
    // A picker over a server-side search, not a list of every account.
    let (choices, matching) = if can_update {
        match grant_accounts(ctx, account_q).await {
            Ok(found) => found,
            Err(e) => return ctx.error_page(&e).await,
        }
    } else {
        (Vec::new(), 0)
    };
    let chosen = if form.has("grants[0].account") {
        form.get("grants[0].account")
    } else {
        ctx.context_account()
    };
    let shown = u64::try_from(choices.len()).unwrap_or(u64::MAX);
    let body = html! {
        p { (group.description) }
        section aria-labelledby="members" {
            h2 id="members" { "Members" }
            ul {
                @for m in &group.members {
                    li { (m) " " @if can_update { (button_form(&ctx.csrf, &format!("{base}/members/remove"), &[("username", m)], &format!("Remove {m}"))) } }
                }
            }
            @if group.members.is_empty() { p { "No members." } }
            @if can_update {
                form method="post" action={ (base) "/members" } {
                    (csrf(&ctx.csrf))
                    (text_field(problem, "member-username", "usernames[0]", "Username", "text", form.get("usernames[0]"), true))
                    button type="submit" { "Add member" }
                }
            }
        }
        section aria-labelledby="grants" {
            h2 id="grants" { "Roles" }
            ul {
                @for (role, account) in &group.grants {
                    li { (role) " in " (account) " " @if can_update { (button_form(&ctx.csrf, &format!("{base}/grants/remove"), &[("role", role), ("account", account)], &format!("Remove {role} in {account}"))) } }
                }
            }
            @if group.grants.is_empty() { p { "No roles." } }
            @if can_update {
                form method="get" action=(base) class="search" role="search" {
                    label for="grant-account-q" { "Find accounts starting with" }
                    " "
                    input type="search" id="grant-account-q" name="account_q" value=(account_q) size="16";
                    " "
                    button type="submit" id="grant-account-search" { "Find" }
                }
                form method="post" action={ (base) "/grants" } {
                    (csrf(&ctx.csrf))
                    div class="field" {
                        label for="grant-role" { "Role" }
                        select id="grant-role" name="role" {
                            @for role in role_names(ctx) { option value=(role) selected[form.get("role") == role] { (role) } }
                        }
                        (field_error(problem, "grants[0].role"))
                    }
                    div class="field" {
                        label for="grant-account" { "In account" }
                        select id="grant-account" name="grants[0].account" required {
                            @for account in &choices { option value=(account) selected[account == chosen] { (account) } }
                        }
                        span class="hint" id="grant-account-count" {
                            @if matching > shown {
                                "The first " (shown) " of " (matching) " accounts; find by name to narrow."
                            } @else {
                                (matching) " accounts."
                            }
                        }
                        (field_error(problem, "grants[0].account"))
                    }
                    button type="submit" { "Add role" }
                }
            }
        }
        @if can_delete { p { a class="danger" href={ (base) "/delete" } { "Delete group" } } }
    };
    ctx.render(status_of(problem), &format!("Group {name}"), problem, body)
        .await
}

async fn group_change(
    ctx: Ctx,
    form: Form,
    group: String,
    what: &str,
    change: impl AsyncFnOnce(&Ctx, &Form) -> Result<()>,
) -> Response {
    match change(&ctx, &form).await {
        Ok(()) => done(&format!("/groups/{}", enc(&group)), what),
        Err(e) => group_view(&ctx, &group, "", Some(&Problem::from(e)), &form).await,
    }
}

async fn add_member(Path(group): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let name = group.clone();
    group_change(
        ctx,
        form,
        group,
        "member-added",
        async move |ctx: &Ctx, form: &Form| {
            let username = names::required("usernames[0]", form.get("usernames[0]"))?.to_owned();
            ctx.core()
                .add_group_members(&ctx.caller, &name, &[username])
                .await
                .map(drop)
        },
    )
    .await
}

async fn remove_member(Path(group): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let name = group.clone();
    group_change(
        ctx,
        form,
        group,
        "member-removed",
        async move |ctx: &Ctx, form: &Form| {
            let username = names::required("usernames[0]", form.get("username"))?.to_owned();
            ctx.core()
                .remove_group_members(&ctx.caller, &name, &[username])
                .await
                .map(drop)
        },
    )
    .await
}

fn grant_of(
    catalog: &crate::domain::catalog::Catalog,
    form: &Form,
    account_field: &str,
) -> Result<(String, String)> {
    let role = names::required("grants[0].role", form.get("role"))?.to_owned();
    catalog.require_role("grants[0].role", &role)?;
    let account = AccountName::parse("grants[0].account", form.get(account_field))?.into_string();
    Ok((role, account))
}

async fn add_grant(Path(group): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let name = group.clone();
    group_change(
        ctx,
        form,
        group,
        "grant-added",
        async move |ctx: &Ctx, form: &Form| {
            let grant = grant_of(ctx.core().catalog(), form, "grants[0].account")?;
            ctx.core()
                .add_group_grants(&ctx.caller, &name, &[grant])
                .await
                .map(drop)
        },
    )
    .await
}

async fn remove_grant(Path(group): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let name = group.clone();
    group_change(
        ctx,
        form,
        group,
        "grant-removed",
        async move |ctx: &Ctx, form: &Form| {
            let grant = grant_of(ctx.core().catalog(), form, "account")?;
            ctx.core()
                .remove_group_grants(&ctx.caller, &name, &[grant])
                .await
                .map(drop)
        },
    )
    .await
}

async fn delete_group_page(ctx: Ctx, Path(group): Path<String>) -> Response {
    let base = format!("/groups/{}", enc(&group));
    ctx.confirm(
        "Delete group",
        html! { "Delete group " strong { (group) } "? Its members lose the roles it grants at once." },
        &format!("{base}/delete"),
        &[],
        "Delete group",
        &base,
    )
    .await
}

async fn delete_group(Path(group): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    match ctx.core().delete_group(&ctx.caller, &group).await {
        Ok(()) => done("/groups", "group-deleted"),
        Err(e) => group_view(&ctx, &group, "", Some(&Problem::from(e)), &form).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_path_segments() {
        assert_eq!(super::enc("a b/c"), "a%20b%2Fc");
        assert_eq!(super::enc("plain-name_1.x"), "plain-name_1.x");
    }
}
