//! API keys: the list of one owner's keys, creating (the value shown
//! once), revoking and rotating.

use super::*;

pub(super) fn routes(table: Table<App>) -> Table<App> {
    table
        .get("/keys", keys_page)
        .post("/keys", "console:CreateApiKey", create_key)
        .get("/keys/reveal", reveal_key)
        .get("/keys/revoke", revoke_key_page)
        .post("/keys/revoke", "console:RevokeApiKey", revoke_key)
        .get("/keys/rotate", rotate_key_page)
        .post("/keys/rotate", "console:RotateApiKey", rotate_key)
}

#[derive(Deserialize, Default)]
pub(super) struct KeysQuery {
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
pub(super) fn key_owner(ctx: &Ctx, account: &str, user: &str) -> Result<(String, String)> {
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
    Field::Name.check("user", user)?;
    Ok((account.to_owned(), user.to_owned()))
}

pub(super) async fn keys_page(ctx: Ctx, Query(q): Query<KeysQuery>) -> Response {
    keys_view(&ctx, &q, None, &Form::default()).await
}

pub(super) async fn keys_view(
    ctx: &Ctx,
    q: &KeysQuery,
    problem: Option<&Problem>,
    form: &Form,
) -> Response {
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

pub(super) fn status_name(status: ApiKeyStatus) -> &'static str {
    match status {
        ApiKeyStatus::Active => "active",
        ApiKeyStatus::Expired => "expired",
        ApiKeyStatus::Revoked => "revoked",
    }
}

pub(super) fn key_query(fields: &[(&str, &str)], name: &str) -> String {
    let mut q: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    q.push(format!("name={}", enc(name)));
    q.join("&")
}

pub(super) fn keys_query_of(form: &Form) -> KeysQuery {
    KeysQuery {
        account: form.get("account").to_owned(),
        user: form.get("user").to_owned(),
        ..KeysQuery::default()
    }
}

/// The page after a key is made: the value rides in a short-lived cookie
/// to the one page that shows it (never in a URL), which clears it.
pub(super) fn reveal(ctx: &Ctx, name: &str, value: &Secret, back: &str) -> Response {
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

pub(super) async fn create_key(posted: Posted) -> Response {
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

pub(super) async fn reveal_key(ctx: Ctx, headers: HeaderMap) -> Response {
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

pub(super) async fn key_action_page(ctx: Ctx, q: KeysQuery, rotate: bool) -> Response {
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

pub(super) async fn revoke_key_page(ctx: Ctx, Query(q): Query<KeysQuery>) -> Response {
    key_action_page(ctx, q, false).await
}

pub(super) async fn rotate_key_page(ctx: Ctx, Query(q): Query<KeysQuery>) -> Response {
    key_action_page(ctx, q, true).await
}

pub(super) async fn revoke_key(posted: Posted) -> Response {
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

pub(super) async fn rotate_key(posted: Posted) -> Response {
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
