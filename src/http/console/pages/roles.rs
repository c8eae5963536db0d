//! The account's Roles tab (the seed's "Viewing Role Permissions"): each
//! role with its permissions, and behind **View** the account's members of
//! a role. Over `list_roles`, `get_role` and `list_role_members`, the
//! RPCs' own domain functions, so the same permissions decide.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::listing::{ListQuery, Listing};
use super::{App, Ctx, Table, account_href, account_tabs, user_href};
use crate::domain::actions::LIST_ROLE_MEMBERS;
use crate::domain::page::PageRequest;
use crate::error::Error;

pub(super) fn routes(table: Table<App>) -> Table<App> {
    table
        .get("/accounts/{account}/roles", roles_page)
        .get("/accounts/{account}/roles/{role}", role_page)
}

fn role_href(account: &str, role: &str) -> String {
    format!("{}/roles/{}", account_href(account), super::enc(role))
}

pub async fn roles_page(ctx: Ctx, Path(account): Path<String>) -> Response {
    let roles = match ctx.core().list_roles(&ctx.caller, &account).await {
        Ok(r) => r,
        Err(e) => return ctx.error_page(&e).await,
    };
    let may_view = ctx.may(LIST_ROLE_MEMBERS, Some(&account)).await;
    let body = html! {
        (account_tabs(&ctx, &account, true).await)
        table class="roles" {
            caption { "Roles in account " (account) }
            thead { tr { th scope="col" { "Role" } th scope="col" { "Description" } th scope="col" { "Permissions" } @if may_view { th scope="col" { span class="sr" { "Members" } } } } }
            tbody {
                @for role in &roles {
                    tr id={ "role-" (role.name) } {
                        th scope="row" data-label="Role" { (role.name) }
                        td data-label="Description" { (role.description) }
                        td data-label="Permissions" class="permissions" {
                            ul class="actions" { @for action in &role.actions { li { code { (action) } } } }
                        }
                        @if may_view {
                            td class="actions" {
                                a href=(role_href(&account, &role.name)) { "View" span class="sr" { " members of " (role.name) } }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.render(
        StatusCode::OK,
        &format!("Roles of account {account}"),
        None,
        body,
    )
    .await
}

pub async fn role_page(
    ctx: Ctx,
    Path((account, role)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    let role = match ctx.core().get_role(&ctx.caller, &account, &role).await {
        Ok(r) => r,
        Err(e) => return ctx.error_page(&e).await,
    };
    let members = async {
        let request: PageRequest = q.request(2)?;
        let members = ctx
            .core()
            .list_role_members(&ctx.caller, &role.name, Some(&account), &account, &request)
            .await?;
        let total = ctx
            .core()
            .count_role_members(&ctx.caller, &role.name, &account, &request)
            .await?;
        Ok::<_, Error>((request, members, total))
    }
    .await;
    let path = role_href(&account, &role.name);
    let list = Listing {
        path: &path,
        keep: Vec::new(),
        id: "members",
        noun: "members",
        query: &q,
    };
    let body = html! {
        (account_tabs(&ctx, &account, true).await)
        p { (role.description) }
        details {
            summary { "Permissions (" (role.actions.len()) ")" }
            ul class="actions" { @for action in &role.actions { li { code { (action) } } } }
        }
        section aria-labelledby="members" {
            h2 id="members" { "Members in " (account) }
            @match &members {
                Ok((request, members, total)) => {
                    (list.search())
                    (list.pager(request, members, *total, |m| vec![m.account.as_str(), m.username.as_str()]))
                    table {
                        thead { tr { th scope="col" { "Username" } th scope="col" { "User's account" } th scope="col" { "Since" } } }
                        tbody {
                            @for m in &members.items {
                                tr {
                                    td data-label="Username" { a href=(user_href(&m.user_account, &m.username)) { (m.username) } }
                                    td data-label="User's account" { (m.user_account) }
                                    td data-label="Since" { (super::time(m.created_at)) }
                                }
                            }
                        }
                    }
                    @if members.items.is_empty() { p { "No members to show." } }
                }
                Err(Error::PermissionDenied(_)) => { p { "You may not list this role's members." } }
                Err(e) => { p class="problem" role="alert" { (super::views::describe(e).1) } }
            }
        }
        p { a href={ (account_href(&account)) "/roles" } { "All roles" } }
    };
    ctx.render(
        StatusCode::OK,
        &format!("Role {} in {account}", role.name),
        None,
        body,
    )
    .await
}
