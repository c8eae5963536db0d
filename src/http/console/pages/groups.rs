//! User groups: the list, a group's members and grants, and deletion.

use super::*;

pub(super) fn routes(table: Table<App>) -> Table<App> {
    table
        .get("/groups", groups_page)
        .post("/groups", "console:CreateGroup", create_group)
        .get("/groups/{group}", group_page)
        .post(
            "/groups/{group}/members",
            "console:AddGroupMembers",
            add_member,
        )
        .post(
            "/groups/{group}/members/remove",
            "console:RemoveGroupMembers",
            remove_member,
        )
        .post(
            "/groups/{group}/grants",
            "console:AddGroupGrants",
            add_grant,
        )
        .post(
            "/groups/{group}/grants/remove",
            "console:RemoveGroupGrants",
            remove_grant,
        )
        .get("/groups/{group}/delete", delete_group_page)
        .post(
            "/groups/{group}/delete",
            "console:DeleteGroup",
            delete_group,
        )
}

pub(super) async fn groups_page(ctx: Ctx, Query(q): Query<ListQuery>) -> Response {
    groups_view(&ctx, &q, None, &Form::default()).await
}

pub(super) async fn groups_view(
    ctx: &Ctx,
    q: &ListQuery,
    problem: Option<&Problem>,
    form: &Form,
) -> Response {
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

pub(super) async fn create_group(posted: Posted) -> Response {
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
pub(super) struct GroupQuery {
    /// The beginning of the name of the account to grant a role in.
    #[serde(default)]
    account_q: String,
}

pub(super) async fn group_page(
    ctx: Ctx,
    Path(group): Path<String>,
    Query(q): Query<GroupQuery>,
) -> Response {
    group_view(&ctx, &group, &q.account_q, None, &Form::default()).await
}

/// The accounts the grant form offers: those starting with `prefix`, the
/// first page of them, and how many match.
pub(super) async fn grant_accounts(ctx: &Ctx, prefix: &str) -> Result<(Vec<String>, u64)> {
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

pub(super) async fn group_view(
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

pub(super) async fn group_change(
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

pub(super) async fn add_member(Path(group): Path<String>, posted: Posted) -> Response {
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

pub(super) async fn remove_member(Path(group): Path<String>, posted: Posted) -> Response {
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

pub(super) fn grant_of(
    catalog: &crate::domain::catalog::Catalog,
    form: &Form,
    account_field: &str,
) -> Result<(String, String)> {
    let role = names::required("grants[0].role", form.get("role"))?.to_owned();
    catalog.require_role("grants[0].role", &role)?;
    let account = AccountName::parse("grants[0].account", form.get(account_field))?.into_string();
    Ok((role, account))
}

pub(super) async fn add_grant(Path(group): Path<String>, posted: Posted) -> Response {
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

pub(super) async fn remove_grant(Path(group): Path<String>, posted: Posted) -> Response {
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

pub(super) async fn delete_group_page(ctx: Ctx, Path(group): Path<String>) -> Response {
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

pub(super) async fn delete_group(Path(group): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    match ctx.core().delete_group(&ctx.caller, &group).await {
        Ok(()) => done("/groups", "group-deleted"),
        Err(e) => group_view(&ctx, &group, "", Some(&Problem::from(e)), &form).await,
    }
}
