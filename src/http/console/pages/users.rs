//! A user's page: roles, password, state and deletion.

use super::*;

pub(super) fn routes(table: Table<App>) -> Table<App> {
    table
        .post(
            "/accounts/{account}/users",
            "console:CreateUser",
            create_user,
        )
        .get("/accounts/{account}/users/{user}", user_page)
        .post(
            "/accounts/{account}/users/{user}/roles/add",
            "console:AddRoleMember",
            add_role,
        )
        .post(
            "/accounts/{account}/users/{user}/roles/remove",
            "console:RemoveRoleMember",
            remove_role,
        )
        .post(
            "/accounts/{account}/users/{user}/password",
            "console:SetPassword",
            set_password,
        )
        .post(
            "/accounts/{account}/users/{user}/state",
            "console:SetUserState",
            user_state,
        )
        .get("/accounts/{account}/users/{user}/delete", delete_user_page)
        .post(
            "/accounts/{account}/users/{user}/delete",
            "console:DeleteUser",
            delete_user,
        )
}

pub(super) async fn create_user(Path(account): Path<String>, posted: Posted) -> Response {
    let Posted { ctx, form } = posted;
    let result = async {
        let new = NewUser::native(
            account.clone(),
            form.get("username"),
            Secret::new(form.get("password").to_owned()),
            form.all("roles"),
        )?;
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

pub(super) async fn user_page(ctx: Ctx, Path((account, user)): Path<(String, String)>) -> Response {
    user_view(&ctx, &account, &user, None).await
}

pub(super) async fn user_view(
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
        .filter(|g| g.via.is_direct() && g.account == account)
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
                            td data-label="Through" { (through(&g.via)) }
                            @if can_remove_role {
                                td {
                                    @if g.via.is_direct() && g.account == account {
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

pub(super) async fn add_role(
    Path((account, user)): Path<(String, String)>,
    posted: Posted,
) -> Response {
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

pub(super) async fn remove_role(
    Path((account, user)): Path<(String, String)>,
    posted: Posted,
) -> Response {
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

pub(super) async fn set_password(
    Path((account, user)): Path<(String, String)>,
    posted: Posted,
) -> Response {
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

pub(super) async fn user_state(
    Path((account, user)): Path<(String, String)>,
    posted: Posted,
) -> Response {
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

pub(super) async fn delete_user_page(
    ctx: Ctx,
    Path((account, user)): Path<(String, String)>,
) -> Response {
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

pub(super) async fn delete_user(
    Path((account, user)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let Posted { ctx, .. } = posted;
    match ctx.core().delete_user(&ctx.caller, &account, &user).await {
        Ok(()) => done(&account_href(&account), "user-deleted"),
        Err(e) => user_view(&ctx, &account, &user, Some(&Problem::from(e))).await,
    }
}

/// How a grant is held, as the user's page says it.
fn through(via: &crate::model::Via) -> String {
    match via {
        crate::model::Via::Direct => "direct".to_owned(),
        crate::model::Via::Group(group) => format!("group {group}"),
        crate::model::Via::SsoGroup(group) => format!("group {group} (from the identity provider)"),
    }
}
