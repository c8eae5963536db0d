//! The accounts list and an account's page: its users, e-mail, state and
//! deletion.

use super::*;

pub(super) fn routes(table: Table<App>) -> Table<App> {
    table
        .get("/accounts", accounts_page)
        .post("/accounts", "console:CreateAccount", create_account)
        .get("/accounts/{account}", account_page)
        .post(
            "/accounts/{account}/email",
            "console:UpdateAccount",
            update_email,
        )
        .post(
            "/accounts/{account}/state",
            "console:SetAccountState",
            account_state,
        )
        .get("/accounts/{account}/delete", delete_account_page)
        .post(
            "/accounts/{account}/delete",
            "console:DeleteAccount",
            delete_account,
        )
}

pub(super) async fn accounts_page(ctx: Ctx, Query(q): Query<ListQuery>) -> Response {
    accounts_view(&ctx, &q, None, &Form::default()).await
}

pub(super) async fn accounts_view(
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

pub(super) async fn create_account(posted: Posted) -> Response {
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

pub(super) async fn account_page(
    ctx: Ctx,
    Path(account): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    account_view(&ctx, &account, &q, None, &Form::default()).await
}

pub(super) fn role_names(ctx: &Ctx) -> Vec<String> {
    ctx.core()
        .catalog()
        .roles()
        .map(|r| r.name.clone())
        .collect()
}

/// The account page's tabs, as the seed's: the account with its users,
/// and its roles (for those who may list them).
pub(super) async fn account_tabs(ctx: &Ctx, account: &str, roles: bool) -> Markup {
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

pub(super) async fn account_view(
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

pub(super) async fn update_email(Path(account): Path<String>, posted: Posted) -> Response {
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

pub(super) async fn account_state(Path(account): Path<String>, posted: Posted) -> Response {
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

pub(super) async fn delete_account_page(ctx: Ctx, Path(account): Path<String>) -> Response {
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

pub(super) async fn delete_account(Path(account): Path<String>, posted: Posted) -> Response {
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
