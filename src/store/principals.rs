//! What a check needs, each in one statement (one round trip): a key with
//! its owner, the owner's account and effective grants; or a user with the
//! same. Plus the change records the cache follows.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};
use uuid::Uuid;

use super::{DbResultExt, StoreResult};
use crate::error::Error;
use crate::model::secret::stored_digest;
use crate::model::{
    Account, AccountState, AccountType, Grant, KeyEntry, User, UserEntry, UserState, UserType, Via,
};

/// A user as a check sees them, with their account and the password hash
/// (which the cache never keeps).
#[derive(Debug)]
pub struct LoadedUser {
    pub entry: UserEntry,
    pub account: Account,
    pub password_hash: Option<String>,
}

/// An API key as a check sees it, with its owner if the owner still exists.
#[derive(Debug)]
pub struct LoadedKey {
    pub key: KeyEntry,
    pub owner: Option<LoadedUser>,
}

/// The user columns, the account columns and the aggregated grants, for
/// `u` and `a`. The JSON functions differ per backend; the shape does not.
fn user_columns(backend: DbBackend) -> String {
    let (agg, arr, id_text) = match backend {
        DbBackend::Postgres => ("json_agg", "json_build_array", "m.group_id::text"),
        _ => ("json_group_array", "json_array", "hex(m.group_id)"),
    };
    format!(
        "u.id AS u_id, u.username, u.account_name, u.user_type, u.idp_name, u.state AS u_state, \
         u.password_hash, u.password_updated_at, u.created_at AS u_created_at, u.updated_at AS u_updated_at, \
         a.email, a.account_type, a.state AS a_state, a.created_at AS a_created_at, a.updated_at AS a_updated_at, \
         (SELECT {agg}({arr}(b.role, b.account_name)) FROM role_bindings b WHERE b.user_id = u.id) AS direct, \
         (SELECT {agg}({arr}(gg.role, gg.account_name, g.name, \
            CASE WHEN m.idp_id IS NULL THEN '' ELSE 'sso' END)) FROM group_members m \
            JOIN group_grants gg ON gg.group_id = m.group_id JOIN user_groups g ON g.id = m.group_id \
            WHERE m.user_id = u.id) AS via_groups, \
         (SELECT {agg}({id_text}) FROM group_members m WHERE m.user_id = u.id) AS member_of"
    )
}

fn placeholder(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "$1",
        _ => "?",
    }
}

fn by_username_sql(backend: DbBackend) -> String {
    format!(
        "SELECT {} FROM users u JOIN accounts a ON a.name = u.account_name WHERE u.username = {}",
        user_columns(backend),
        placeholder(backend)
    )
}

fn by_key_id_sql(backend: DbBackend) -> String {
    format!(
        "SELECT k.id AS k_id, k.key_id, k.user_id AS k_user_id, k.owner_username, k.name AS k_name, \
         k.secret_hash, k.expires_at, k.revoked_at, k.owner_deleted_at, \
         k.previous_secret_hash, k.previous_valid_until, {} \
         FROM api_keys k LEFT JOIN users u ON u.id = k.user_id \
         LEFT JOIN accounts a ON a.name = u.account_name WHERE k.key_id = {}",
        user_columns(backend),
        placeholder(backend)
    )
}

/// The statement texts, built once per backend.
pub struct Queries {
    backend: DbBackend,
    by_username: String,
    by_key_id: String,
    /// Statements run: tests count them to show that a flood of unknown
    /// keys never reaches the database.
    lookups: AtomicU64,
}

impl Queries {
    pub fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            by_username: by_username_sql(backend),
            by_key_id: by_key_id_sql(backend),
            lookups: AtomicU64::new(0),
        }
    }

    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    fn statement(&self, sql: &str, value: &str) -> Statement {
        Statement::from_sql_and_values(self.backend, sql, [Value::from(value)])
    }

    pub async fn user_by_name(
        &self,
        db: &impl ConnectionTrait,
        username: &str,
    ) -> StoreResult<Option<LoadedUser>> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let row = db
            .query_one_raw(self.statement(&self.by_username, username))
            .await
            .db()?;
        row.map(|r| read_user(&r)).transpose()
    }

    pub async fn key_by_id(
        &self,
        db: &impl ConnectionTrait,
        key_id: &str,
    ) -> StoreResult<Option<LoadedKey>> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let Some(row) = db
            .query_one_raw(self.statement(&self.by_key_id, key_id))
            .await
            .db()?
        else {
            return Ok(None);
        };
        let owner = match get::<Option<Uuid>>(&row, "u_id")? {
            Some(_) => Some(read_user(&row)?),
            None => None,
        };
        let previous_hash: Option<String> = get(&row, "previous_secret_hash")?;
        let previous_until: Option<DateTime<Utc>> = get(&row, "previous_valid_until")?;
        let key = KeyEntry {
            id: get(&row, "k_id")?,
            key_id: get(&row, "key_id")?,
            user_id: get(&row, "k_user_id")?,
            owner_username: get(&row, "owner_username")?,
            name: get(&row, "k_name")?,
            digest: stored_digest(&get::<String>(&row, "secret_hash")?),
            expires_at: get(&row, "expires_at")?,
            revoked_at: get(&row, "revoked_at")?,
            owner_deleted_at: get(&row, "owner_deleted_at")?,
            previous: previous_hash
                .as_deref()
                .and_then(stored_digest)
                .zip(previous_until),
        };
        Ok(Some(LoadedKey { key, owner }))
    }
}

/// The page statement (Postgres placeholders, in the order: account,
/// after, limit — each only if used).
pub fn list_users_sql(backend: DbBackend, by_account: bool, after: bool) -> String {
    users_page_sql(backend, by_account, after.then_some(false), false)
}

/// The page statement with the console's options: `cursor` is
/// `Some(backwards)` when the page starts from a key, read by descending
/// username when backwards; `prefix` keeps usernames that start with a
/// value. Placeholders in the order: account, prefix (three: the value, its
/// length, the value), key, limit — each only if used.
pub fn users_page_sql(
    backend: DbBackend,
    by_account: bool,
    cursor: Option<bool>,
    prefix: bool,
) -> String {
    let mut conditions = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if by_account {
        conditions.push(format!("account_name = {}", next()));
    }
    if prefix {
        // Case-sensitive on both backends (SQLite's LIKE is not); the
        // lower bound lets the username index seek to the first match.
        let (from, length, value) = (next(), next(), next());
        conditions.push(format!(
            "username >= {from} AND substr(username, 1, {length}) = {value}"
        ));
    }
    let backwards = cursor == Some(true);
    if cursor.is_some() {
        let past = if backwards { "<" } else { ">" };
        conditions.push(format!("username {past} {}", next()));
    }
    let limit = next();
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let order = if backwards { " DESC" } else { "" };
    format!(
        "SELECT {} FROM (SELECT * FROM users {filter} ORDER BY username{order} LIMIT {limit}) u \
         JOIN accounts a ON a.name = u.account_name ORDER BY u.username{order}",
        user_columns(backend)
    )
}

impl Queries {
    /// A page of users by username, of one account or of all, with their
    /// grants, in one statement. The grants are found per user of the page
    /// through the indexes on `user_id`, never by scanning the grant tables,
    /// so a page costs the same however many users there are.
    pub async fn list_users(
        &self,
        db: &impl ConnectionTrait,
        account: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<LoadedUser>> {
        let page = crate::model::page::PageRequest {
            limit,
            after: after.map(|a| vec![a.to_owned()]),
            ..Default::default()
        };
        self.list_users_window(db, account, &page).await
    }

    /// As `list_users`, for a console listing: `page.limit` rows are read
    /// as given (the caller asks for one more), by prefix, either way.
    pub async fn list_users_window(
        &self,
        db: &impl ConnectionTrait,
        account: Option<&str>,
        page: &crate::model::page::PageRequest,
    ) -> StoreResult<Vec<LoadedUser>> {
        let mut values: Vec<Value> = Vec::new();
        if let Some(account) = account {
            values.push(account.into());
        }
        let prefix = !page.prefix.is_empty();
        if prefix {
            let length = i32::try_from(page.prefix.chars().count()).unwrap_or(i32::MAX);
            values.push(page.prefix.as_str().into());
            values.push(length.into());
            values.push(page.prefix.as_str().into());
        }
        let (key, backwards) = page.cursor();
        let key = key.and_then(|k| k.first());
        if let Some(key) = key {
            values.push(key.as_str().into());
        }
        values.push(i64::try_from(page.limit).unwrap_or(i64::MAX).into());
        let sql = users_page_sql(
            self.backend,
            account.is_some(),
            key.map(|_| backwards),
            prefix,
        );
        let rows = db.query_all_raw(super::sql(db, &sql, values)).await.db()?;
        rows.iter().map(read_user).collect()
    }
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> StoreResult<T> {
    row.try_get("", column)
        .map_err(|e| Error::internal(format!("reading {column}: {e}")))
}

/// A JSON array of arrays of strings, as the aggregates return it (text on
/// SQLite, json on Postgres; NULL when there are no rows).
fn json_rows(row: &QueryResult, column: &str) -> StoreResult<Vec<Vec<String>>> {
    let text: Option<String> = match row.try_get::<Option<serde_json::Value>>("", column) {
        Ok(value) => value.map(|v| v.to_string()),
        Err(_) => get::<Option<String>>(row, column)?,
    };
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    serde_json::from_str::<Vec<serde_json::Value>>(&text)
        .map_err(|e| Error::internal(format!("reading {column}: {e}")))?
        .into_iter()
        .map(|v| match v {
            serde_json::Value::Array(items) => Ok(items
                .into_iter()
                .map(|i| i.as_str().unwrap_or_default().to_owned())
                .collect()),
            serde_json::Value::String(s) => Ok(vec![s]),
            other => Err(Error::internal(format!("reading {column}: {other}"))),
        })
        .collect()
}

fn read_user(row: &QueryResult) -> StoreResult<LoadedUser> {
    let mut grants = Vec::new();
    for direct in json_rows(row, "direct")? {
        if let [role, account] = direct.as_slice() {
            grants.push(Grant {
                role: role.clone(),
                account: account.clone(),
                via: Via::Direct,
            });
        }
    }
    for inherited in json_rows(row, "via_groups")? {
        if let [role, account, group, kind] = inherited.as_slice() {
            // A membership an identity provider made is its own kind.
            let via = if kind.is_empty() {
                Via::Group(group.clone())
            } else {
                Via::SsoGroup(group.clone())
            };
            grants.push(Grant {
                role: role.clone(),
                account: account.clone(),
                via,
            });
        }
    }
    crate::store::users::sort_grants(&mut grants);
    let groups = json_rows(row, "member_of")?
        .into_iter()
        .filter_map(|ids| ids.first().and_then(|id| Uuid::parse_str(id).ok()))
        .collect();
    let account_name: String = get(row, "account_name")?;
    Ok(LoadedUser {
        entry: UserEntry {
            user: User {
                id: get(row, "u_id")?,
                username: get(row, "username")?,
                account: account_name.clone(),
                user_type: UserType::from_stored(&get::<String>(row, "user_type")?)?,
                idp_name: get(row, "idp_name")?,
                state: UserState::from_stored(&get::<String>(row, "u_state")?)?,
                password_updated_at: get(row, "password_updated_at")?,
                created_at: get(row, "u_created_at")?,
                updated_at: get(row, "u_updated_at")?,
            },
            grants,
            groups,
        },
        account: Account {
            name: account_name,
            email: get(row, "email")?,
            account_type: AccountType::from_stored(&get::<String>(row, "account_type")?)?,
            state: AccountState::from_stored(&get::<String>(row, "a_state")?)?,
            created_at: get(row, "a_created_at")?,
            updated_at: get(row, "a_updated_at")?,
        },
        password_hash: get(row, "password_hash")?,
    })
}
