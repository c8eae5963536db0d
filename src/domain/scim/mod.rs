//! SCIM 2.0 provisioning (RFC 7643, RFC 7644; docs/scim.md): an identity
//! provider's client creates, changes, deactivates and deletes the
//! provider's users and the groups mapped to it, with a bearer token made
//! for that provider alone.
//!
//! Everything is written through the same store functions and change
//! records as the admin RPCs, so a deactivation reaches every replica's
//! cache as any revocation does. A request sees only its provider's
//! users and groups: native users, another provider's, admin and service
//! accounts are not there (404), whatever the id.

pub mod filter;
mod patch;
pub mod resources;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::Core;
use crate::domain::audit::{Actor, Change};
use crate::domain::authn::attempt::Attempt;
use crate::domain::authn::key_format;
use crate::domain::authn::sources::Source;
use crate::domain::caller::Caller;
use crate::domain::names::{GroupName, Username};
use crate::domain::secret::Secret;
use crate::error::{AuthFailure, Error, Result, quoted};
use crate::model::{Group, IdentityProvider, User, UserState};
use crate::store;
use crate::store::scim::{Narrow, Provisioned, ScimToken};

use resources::{GroupDoc, Member, UserDoc};

/// The prefix of a SCIM token's value: secret scanners can tell it from
/// an API key, and it is never looked up as one.
pub const TOKEN_PREFIX: &str = "authzdscim";

/// How often a token's last use is written (at most).
const LAST_USED_EVERY_MS: i64 = 60_000;

/// Settings of the SCIM endpoint.
#[derive(Debug, Clone)]
pub struct ScimSettings {
    /// Resources in one page of a listing, at most.
    pub max_page_size: usize,
    /// Characters in a filter, at most.
    pub max_filter_chars: usize,
}

/// A SCIM error (RFC 7644 §3.12): the HTTP status, the `scimType`, and a
/// detail for the provider's administrator. Never SQL or a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad("invalidFilter", detail)
    }

    fn status(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::status(404, format!("{what} not found"))
    }

    /// The error document.
    pub fn document(&self) -> Value {
        let mut doc = json!({
            "schemas": [resources::ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(kind) = self.scim_type {
            doc["scimType"] = kind.into();
        }
        doc
    }
}

impl From<Error> for ScimError {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { field, reason } => {
                Self::bad("invalidValue", format!("{field}: {reason}"))
            }
            Error::NotFound(what) => Self::status(404, format!("{what} not found")),
            Error::AlreadyExists(what) => Self {
                status: 409,
                scim_type: Some("uniqueness"),
                detail: format!("{what} already exists"),
            },
            Error::FailedPrecondition(why) => Self::bad("invalidValue", why),
            Error::PermissionDenied(why) => Self::status(403, why),
            Error::LimitReached(why) => Self::status(429, why),
            Error::Busy { why, .. } => Self::status(429, why),
            // The just-in-time rules refuse with a reason (the account is
            // an administrator's, ...): a value the provider must change.
            Error::Unauthenticated(AuthFailure::Sso(reason)) => {
                Self::bad("invalidValue", format!("refused: {reason}"))
            }
            Error::Unauthenticated(_) => Self::status(401, "invalid credentials"),
            Error::Unavailable => Self::status(503, "the database is unavailable"),
            Error::Internal(context) => {
                tracing::error!(error = context, "SCIM request failed");
                Self::status(500, "internal error")
            }
        }
    }
}

type ScimResult<T> = std::result::Result<T, ScimError>;

/// A SCIM token as an administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimTokenInfo {
    pub id: String,
    pub idp: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn info(token: &ScimToken, idp: &str) -> ScimTokenInfo {
    ScimTokenInfo {
        id: token.key_id.clone(),
        idp: idp.to_owned(),
        created_at: from_ms(token.created_at_ms),
        last_used_at: token.last_used_at_ms.map(from_ms),
    }
}

/// The provider a SCIM request was authenticated for.
#[derive(Debug, Clone)]
pub struct ScimClient {
    pub idp: IdentityProvider,
}

impl ScimClient {
    fn actor(&self) -> Actor<'_> {
        Actor::Federation {
            protocol: "scim",
            idp: &self.idp.name,
        }
    }
}

/// A listing's query parameters.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListQuery {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

/// The two resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Users,
    Groups,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Users => "user",
            Kind::Groups => "group",
        }
    }
}

impl Core {
    // ---- tokens (IdentityProviderService) --------------------------------

    pub async fn create_scim_token(
        &self,
        caller: &Caller,
        idp: &str,
    ) -> Result<(ScimTokenInfo, Secret)> {
        self.require_idp_admin(caller, "CreateScimToken")?;
        let idp = self.identity_provider(idp).await?;
        let key = key_format::generate(TOKEN_PREFIX);
        let token = ScimToken {
            id: Uuid::new_v4(),
            key_id: key.key_id.clone(),
            idp_id: idp.id,
            secret_hash: key.secret_hash.clone(),
            created_at_ms: self.now().timestamp_millis(),
            last_used_at_ms: None,
        };
        let change =
            Change::new("create", "scim_token", &token.key_id).to("idp", idp.name.as_str());
        self.change(Actor::Caller(caller), change, async |db| {
            store::scim::create_token(db, &token).await
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            idp = idp.name,
            token = token.key_id,
            "SCIM token created"
        );
        Ok((info(&token, &idp.name), key.value))
    }

    pub async fn list_scim_tokens(&self, caller: &Caller, idp: &str) -> Result<Vec<ScimTokenInfo>> {
        self.require_idp_admin(caller, "ListScimTokens")?;
        let idp = self.identity_provider(idp).await?;
        Ok(store::scim::list_tokens(self.db(), idp.id)
            .await?
            .iter()
            .map(|t| info(t, &idp.name))
            .collect())
    }

    pub async fn revoke_scim_token(&self, caller: &Caller, idp: &str, id: &str) -> Result<()> {
        self.require_idp_admin(caller, "RevokeScimToken")?;
        let idp = self.identity_provider(idp).await?;
        let change = Change::new("delete", "scim_token", id).to("idp", idp.name.as_str());
        self.change(Actor::Caller(caller), change, async |db| {
            if store::scim::delete_token(db, idp.id, id).await? {
                Ok(())
            } else {
                Err(Error::not_found(format!(
                    "SCIM token {} of identity provider {}",
                    quoted(id),
                    quoted(&idp.name)
                )))
            }
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            idp = idp.name,
            token = id,
            "SCIM token revoked"
        );
        Ok(())
    }

    // ---- authentication ----------------------------------------------------

    /// The provider `idp`'s client, if `authorization` carries one of its
    /// tokens. Every failure is the same 401 to the caller; it costs the
    /// source a limiter token and is recorded like any refused credential.
    pub async fn scim_client(
        &self,
        idp: &str,
        authorization: Option<&str>,
        source: Source,
    ) -> Result<ScimClient> {
        let verify = async {
            let value = authorization
                .and_then(|h| {
                    let (scheme, value) = h.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
                })
                .ok_or(Error::Unauthenticated(AuthFailure::MissingCredentials))?;
            let parsed = key_format::parse(value)?;
            if parsed.prefix != TOKEN_PREFIX {
                return Err(Error::Unauthenticated(AuthFailure::UnknownKey));
            }
            let token = store::scim::find_token(self.db(), parsed.key_id)
                .await?
                .ok_or(Error::Unauthenticated(AuthFailure::UnknownKey))?;
            let stored = key_format::stored_digest(&token.secret_hash);
            if !stored.is_some_and(|d| parsed.matches(&d)) {
                return Err(Error::Unauthenticated(AuthFailure::WrongSecret));
            }
            // Another provider's token is no token here.
            let idp = store::identity_providers::find(self.db(), idp)
                .await?
                .filter(|p| p.id == token.idp_id)
                .ok_or(Error::Unauthenticated(AuthFailure::UnknownKey))?;
            let now_ms = self.now().timestamp_millis();
            if token
                .last_used_at_ms
                .is_none_or(|at| now_ms - at >= LAST_USED_EVERY_MS)
            {
                store::scim::set_token_used(self.db(), token.id, now_ms).await?;
            }
            Ok(ScimClient { idp })
        };
        self.attempt(
            Attempt::fast("scim_token"),
            source,
            Duration::from_secs(1),
            verify,
        )
        .await
    }

    // ---- reading -------------------------------------------------------------

    /// The provider's SCIM base address (what `meta.location` starts with).
    pub fn scim_base(&self, idp: &str) -> String {
        format!("{}/scim/v2/{idp}", self.settings().sso.public_url)
    }

    async fn idp_users(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        client: &ScimClient,
        narrow: Option<Narrow<'_>>,
    ) -> Result<Vec<(User, Provisioned)>> {
        store::scim::idp_users(
            db,
            &client.idp.name,
            client.idp.user_type().as_str(),
            narrow,
        )
        .await
    }

    fn user_value(&self, client: &ScimClient, user: &User, p: &Provisioned) -> Value {
        resources::user(
            user,
            p.external_id.as_deref(),
            p.profile.as_deref(),
            &self.scim_base(&client.idp.name),
        )
    }

    async fn group_values(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        client: &ScimClient,
        only: Option<Uuid>,
    ) -> Result<Vec<(Group, Value)>> {
        let groups = store::scim::idp_groups(db, client.idp.id, only).await?;
        let users: std::collections::HashSet<Uuid> = self
            .idp_users(db, client, None)
            .await?
            .into_iter()
            .map(|(u, _)| u.id)
            .collect();
        let base = self.scim_base(&client.idp.name);
        Ok(groups
            .into_iter()
            .map(|(group, member_ids, p)| {
                let members: Vec<Member> = member_ids
                    .iter()
                    .filter(|id| users.contains(id))
                    .map(|id| Member { id: *id })
                    .collect();
                let value = resources::group(
                    &group,
                    &members,
                    p.external_id.as_deref(),
                    p.profile.as_deref(),
                    &base,
                );
                (group, value)
            })
            .collect())
    }

    /// `GET /Users` or `/Groups`: a page of what matches the filter.
    pub async fn scim_list(
        &self,
        client: &ScimClient,
        kind: Kind,
        query: &ListQuery,
    ) -> ScimResult<Value> {
        let scim = &self.settings().scim;
        let filter = query
            .filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(|f| filter::parse(f, scim.max_filter_chars))
            .transpose()?;
        let all: Vec<Value> = match kind {
            Kind::Users => {
                let narrow = filter.as_ref().and_then(|f| {
                    filter::required_eq(f, "userName")
                        .map(Narrow::Name)
                        .or_else(|| filter::required_eq(f, "externalId").map(Narrow::ExternalId))
                        .or_else(|| {
                            filter::required_eq(f, "id")
                                .map(|id| Narrow::Id(Uuid::parse_str(id).unwrap_or_default()))
                        })
                });
                self.idp_users(self.db(), client, narrow)
                    .await?
                    .iter()
                    .map(|(u, p)| self.user_value(client, u, p))
                    .collect()
            }
            Kind::Groups => self
                .group_values(self.db(), client, None)
                .await?
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
        };
        let matched: Vec<Value> = all
            .into_iter()
            .filter(|r| filter.as_ref().is_none_or(|f| filter::matches(f, r)))
            .collect();
        let start = query.start_index.unwrap_or(1).max(1);
        let count = query
            .count
            .map_or(scim.max_page_size, |c| {
                usize::try_from(c.max(0)).unwrap_or(0)
            })
            .min(scim.max_page_size);
        let total = matched.len();
        let page: Vec<Value> = matched
            .into_iter()
            .skip(usize::try_from(start - 1).unwrap_or(usize::MAX))
            .take(count)
            .map(|r| {
                resources::project(
                    r,
                    query.attributes.as_deref(),
                    query.excluded_attributes.as_deref(),
                )
            })
            .collect();
        Ok(json!({
            "schemas": [resources::LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        }))
    }

    /// One resource's representation, 404 if it is not the provider's.
    async fn scim_current(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        client: &ScimClient,
        kind: Kind,
        id: &str,
    ) -> ScimResult<Value> {
        let missing = || ScimError::not_found(&format!("{} {}", kind.noun(), quoted(id)));
        let id = Uuid::parse_str(id).map_err(|_| missing())?;
        match kind {
            Kind::Users => {
                let found = self.idp_users(db, client, Some(Narrow::Id(id))).await?;
                let (user, p) = found.first().ok_or_else(missing)?;
                Ok(self.user_value(client, user, p))
            }
            Kind::Groups => {
                let found = self.group_values(db, client, Some(id)).await?;
                found.into_iter().next().map(|(_, v)| v).ok_or_else(missing)
            }
        }
    }

    pub async fn scim_get(&self, client: &ScimClient, kind: Kind, id: &str) -> ScimResult<Value> {
        self.scim_current(self.db(), client, kind, id).await
    }

    // ---- writing -------------------------------------------------------------

    /// `POST /Users` or `/Groups`.
    pub async fn scim_create(
        &self,
        client: &ScimClient,
        kind: Kind,
        body: &Value,
    ) -> ScimResult<Value> {
        let id = match kind {
            Kind::Users => {
                self.scim_create_user(client, resources::user_doc(body)?)
                    .await?
            }
            Kind::Groups => {
                self.scim_create_group(client, resources::group_doc(body)?)
                    .await?
            }
        };
        self.scim_get(client, kind, &id.to_string()).await
    }

    /// `PUT`: the resource becomes the document (if `if_match` is the
    /// current version, when given).
    pub async fn scim_replace(
        &self,
        client: &ScimClient,
        kind: Kind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> ScimResult<Value> {
        let current = self.scim_get(client, kind, id).await?;
        check_version(&current, if_match)?;
        self.scim_write(client, kind, &current, body).await?;
        self.scim_get(client, kind, id).await
    }

    /// `PATCH`: the operations applied to the representation, and the
    /// result written as a `PUT` of it.
    pub async fn scim_patch(
        &self,
        client: &ScimClient,
        kind: Kind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> ScimResult<Value> {
        let ops = patch::read(body)?;
        let current = self.scim_get(client, kind, id).await?;
        check_version(&current, if_match)?;
        let mut object = current.as_object().cloned().unwrap_or_default();
        patch::apply(&ops, &mut object)?;
        // The representation lists members when there are any: after a
        // PATCH their absence means none are left (a PUT that leaves
        // `members` out leaves them as they are).
        if kind == Kind::Groups && !object.keys().any(|k| k.eq_ignore_ascii_case("members")) {
            object.insert("members".into(), Value::Array(Vec::new()));
        }
        self.scim_write(client, kind, &current, &Value::Object(object))
            .await?;
        self.scim_get(client, kind, id).await
    }

    async fn scim_write(
        &self,
        client: &ScimClient,
        kind: Kind,
        current: &Value,
        body: &Value,
    ) -> ScimResult<()> {
        let id = current["id"].as_str().and_then(|i| Uuid::parse_str(i).ok());
        let id =
            id.ok_or_else(|| ScimError::from(Error::internal("a representation without id")))?;
        match kind {
            Kind::Users => {
                self.scim_update_user(client, id, current, resources::user_doc(body)?)
                    .await
            }
            Kind::Groups => {
                self.scim_update_group(client, id, current, resources::group_doc(body)?)
                    .await
            }
        }
    }

    /// `DELETE`.
    pub async fn scim_delete(
        &self,
        client: &ScimClient,
        kind: Kind,
        id: &str,
        if_match: Option<&str>,
    ) -> ScimResult<()> {
        let current = self.scim_get(client, kind, id).await?;
        check_version(&current, if_match)?;
        let id = Uuid::parse_str(id).map_err(|_| ScimError::not_found(kind.noun()))?;
        match kind {
            Kind::Users => self.scim_delete_user(client, id).await,
            Kind::Groups => self.scim_delete_group(client, id).await,
        }
    }

    async fn scim_create_user(&self, client: &ScimClient, doc: UserDoc) -> ScimResult<Uuid> {
        let idp = &client.idp;
        let username = Username::parse("userName", &doc.user_name)?.into_string();
        if crate::domain::users::RESERVED_USERNAMES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&username))
        {
            return Err(ScimError::bad(
                "invalidValue",
                format!("userName {} is reserved", quoted(&username)),
            ));
        }
        // Anchore's just-in-time rules at provisioning time: the
        // provider's default account (nothing is asserted here), checked
        // as a sign-in checks it, with its default role.
        let home = idp.default_account.clone().ok_or_else(|| {
            ScimError::bad(
                "invalidValue",
                format!(
                    "identity provider {} names no default_account for its users",
                    quoted(&idp.name)
                ),
            )
        })?;
        let accounts: BTreeSet<String> = [home.clone()].into_iter().collect();
        self.judge_federated_accounts(&accounts).await?;
        let now = self.now();
        let user = User {
            id: Uuid::new_v4(),
            username: username.clone(),
            account: home.clone(),
            user_type: idp.user_type(),
            idp_name: Some(idp.name.clone()),
            state: if doc.active.unwrap_or(true) {
                UserState::Enabled
            } else {
                UserState::Disabled
            },
            password_updated_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut write = self.write().await?;
        crate::domain::sso::jit::create_federated_accounts(
            &mut write,
            client.actor(),
            &accounts,
            now,
        )
        .await?;
        store::users::create_user(write.db(), &user, None)
            .await
            .map_err(|e| match e {
                Error::AlreadyExists(_) => ScimError {
                    status: 409,
                    scim_type: Some("uniqueness"),
                    detail: format!("userName {} is taken", quoted(&username)),
                },
                other => other.into(),
            })?;
        let mut roles = Vec::new();
        if let Some(role) = &idp.default_role {
            store::users::create_binding(write.db(), user.id, role, &home, now).await?;
            roles.push(format!("{role}@{home}"));
        }
        let provisioned = Provisioned {
            external_id: doc.external_id.clone(),
            profile: doc.profile.clone(),
        };
        store::scim::set_user_provisioned(write.db(), user.id, &provisioned, now).await?;
        write.record(
            client.actor(),
            Change::new("create", "user", &user.username)
                .account(&user.account)
                .id(user.id)
                .to("type", user.user_type.as_str())
                .to("idp_name", idp.name.as_str())
                .to("roles", roles)
                .to("state", user.state.as_str()),
        );
        write.commit().await?;
        tracing::info!(
            idp = idp.name,
            user = user.username,
            "user provisioned over SCIM"
        );
        Ok(user.id)
    }

    async fn scim_update_user(
        &self,
        client: &ScimClient,
        id: Uuid,
        current: &Value,
        doc: UserDoc,
    ) -> ScimResult<()> {
        let username = current["userName"].as_str().unwrap_or_default();
        if doc.user_name.to_lowercase() != username.to_lowercase() {
            return Err(ScimError::bad(
                "mutability",
                "userName cannot change: it names the user in keys, grants and the audit trail",
            ));
        }
        let account = current_account(self, id).await?;
        let was_active = current["active"].as_bool().unwrap_or(false);
        let active = doc.active.unwrap_or(was_active);
        let now = self.now();
        let provisioned = Provisioned {
            external_id: doc.external_id.clone(),
            profile: doc.profile.clone(),
        };
        let mut write = self.write().await?;
        store::scim::set_user_provisioned(write.db(), id, &provisioned, now).await?;
        let mut change = Change::new("update", "user", username)
            .account(&account)
            .id(id);
        if was_active != active {
            let state = if active {
                UserState::Enabled
            } else {
                UserState::Disabled
            };
            store::users::set_user_state(write.db(), id, state, now).await?;
            // Deactivation ends every session at once; re-activation
            // brings keys back, never tokens: they sign in again.
            if !active {
                store::tokens::revoke_user_families(write.db(), id, now.timestamp_millis()).await?;
            }
            let from = if was_active { "enabled" } else { "disabled" };
            change = change.from_to("state", from, state.as_str());
        }
        write.record(client.actor(), change.to("profile", "replaced"));
        write.commit().await?;
        tracing::info!(
            idp = client.idp.name,
            user = username,
            active = doc.active,
            "user updated over SCIM"
        );
        Ok(())
    }

    async fn scim_delete_user(&self, client: &ScimClient, id: Uuid) -> ScimResult<()> {
        let found = self
            .idp_users(self.db(), client, Some(Narrow::Id(id)))
            .await?;
        let (user, _) = found.first().ok_or_else(|| ScimError::not_found("user"))?;
        let now = self.now();
        let mut write = self.write().await?;
        store::api_keys::mark_owner_deleted(write.db(), &[user.id], now).await?;
        store::tokens::revoke_user_families(write.db(), user.id, now.timestamp_millis()).await?;
        store::users::delete_user(write.db(), user.id).await?;
        write.record(
            client.actor(),
            Change::new("delete", "user", &user.username)
                .account(&user.account)
                .id(user.id),
        );
        write.commit().await?;
        tracing::info!(
            idp = client.idp.name,
            user = user.username,
            "user deprovisioned over SCIM"
        );
        Ok(())
    }

    /// The provider's users among `ids` (anyone else is refused).
    async fn scim_members(
        &self,
        client: &ScimClient,
        ids: &[String],
    ) -> ScimResult<BTreeSet<Uuid>> {
        let users: HashMap<Uuid, String> = self
            .idp_users(self.db(), client, None)
            .await?
            .into_iter()
            .map(|(u, _)| (u.id, u.username))
            .collect();
        ids.iter()
            .map(|raw| {
                Uuid::parse_str(raw)
                    .ok()
                    .filter(|id| users.contains_key(id))
                    .ok_or_else(|| {
                        ScimError::bad(
                            "invalidValue",
                            format!(
                                "members: {} is not a user of this identity provider",
                                quoted(raw)
                            ),
                        )
                    })
            })
            .collect()
    }

    async fn scim_create_group(&self, client: &ScimClient, doc: GroupDoc) -> ScimResult<Uuid> {
        let name = GroupName::parse("displayName", &doc.display_name)?.into_string();
        let members = self
            .scim_members(client, doc.members.as_deref().unwrap_or_default())
            .await?;
        let now = self.now();
        let group = Group {
            id: Uuid::new_v4(),
            name: name.clone(),
            description: format!("Provisioned over SCIM by {}", client.idp.name),
            created_at: now,
            updated_at: now,
            members: Vec::new(),
            grants: Vec::new(),
        };
        let idp = &client.idp;
        let mut write = self.write().await?;
        store::groups::create_group(write.db(), &group)
            .await
            .map_err(|e| match e {
                Error::AlreadyExists(_) => ScimError {
                    status: 409,
                    scim_type: Some("uniqueness"),
                    detail: format!("a group named {} exists", quoted(&name)),
                },
                other => other.into(),
            })?;
        store::identity_providers::add_mappings(write.db(), idp.id, &[group.id], now).await?;
        // A provisioned group's profile is never empty: it marks the group
        // as the provider's to delete.
        let provisioned = Provisioned {
            external_id: doc.external_id.clone(),
            profile: Some(doc.profile.clone().unwrap_or_else(|| "{}".to_owned())),
        };
        store::scim::set_group_provisioned(write.db(), group.id, &provisioned, now).await?;
        for user in &members {
            store::sso::add_membership(write.db(), *user, group.id, idp.id, now).await?;
        }
        write.record(
            client.actor(),
            Change::new("create", "group", &name)
                .id(group.id)
                .to("idp", idp.name.as_str())
                .to("members", members.len()),
        );
        write.commit().await?;
        tracing::info!(idp = idp.name, group = name, "group provisioned over SCIM");
        Ok(group.id)
    }

    async fn scim_update_group(
        &self,
        client: &ScimClient,
        id: Uuid,
        current: &Value,
        doc: GroupDoc,
    ) -> ScimResult<()> {
        let idp = &client.idp;
        let old_name = current["displayName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let new_name = GroupName::parse("displayName", &doc.display_name)?.into_string();
        let have: BTreeSet<Uuid> = current["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["value"].as_str().and_then(|v| Uuid::parse_str(v).ok()))
                    .collect()
            })
            .unwrap_or_default();
        let want = match &doc.members {
            Some(ids) => self.scim_members(client, ids).await?,
            None => have.clone(),
        };
        let now = self.now();
        let existing = store::scim::idp_groups(self.db(), idp.id, Some(id)).await?;
        let was_provisioned = existing
            .first()
            .map(|(_, _, p)| p.profile.is_some())
            .unwrap_or(false);
        let mut write = self.write().await?;
        if new_name != old_name {
            store::scim::rename_group(write.db(), id, &new_name, now)
                .await
                .map_err(|e| match e {
                    Error::AlreadyExists(_) => ScimError {
                        status: 409,
                        scim_type: Some("uniqueness"),
                        detail: format!("a group named {} exists", quoted(&new_name)),
                    },
                    other => other.into(),
                })?;
        }
        let profile = match (&doc.profile, was_provisioned) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => Some("{}".to_owned()),
            (None, false) => None,
        };
        let provisioned = Provisioned {
            external_id: doc.external_id.clone(),
            profile,
        };
        store::scim::set_group_provisioned(write.db(), id, &provisioned, now).await?;
        let joined: Vec<Uuid> = want.difference(&have).copied().collect();
        let left: Vec<Uuid> = have.difference(&want).copied().collect();
        for user in &joined {
            store::sso::add_membership(write.db(), *user, id, idp.id, now).await?;
        }
        for user in &left {
            store::sso::remove_membership(write.db(), *user, id, idp.id).await?;
        }
        if !joined.is_empty() || !left.is_empty() {
            store::groups::touch(write.db(), id, now).await?;
        }
        let mut change = Change::new("update", "group", &new_name)
            .id(id)
            .to("joined", joined.len())
            .to("left", left.len());
        if new_name != old_name {
            change = change.from_to("name", old_name.as_str(), new_name.as_str());
        }
        write.record(client.actor(), change);
        write.commit().await?;
        Ok(())
    }

    /// A group the provider made goes; one an administrator mapped to it
    /// loses the mapping and the provider's memberships, and stays.
    async fn scim_delete_group(&self, client: &ScimClient, id: Uuid) -> ScimResult<()> {
        let idp = &client.idp;
        let existing = store::scim::idp_groups(self.db(), idp.id, Some(id)).await?;
        let (group, members, provisioned) = existing
            .into_iter()
            .next()
            .ok_or_else(|| ScimError::not_found("group"))?;
        let mut write = self.write().await?;
        let op = if provisioned.profile.is_some() {
            store::groups::delete_group(write.db(), id).await?;
            "delete"
        } else {
            for user in &members {
                store::sso::remove_membership(write.db(), *user, id, idp.id).await?;
            }
            store::identity_providers::remove_mappings(write.db(), idp.id, &[id]).await?;
            "unmap"
        };
        write.record(
            client.actor(),
            Change::new(op, "group", &group.name)
                .id(id)
                .to("idp", idp.name.as_str()),
        );
        write.commit().await?;
        Ok(())
    }
}

/// The account of the user (for the audit record).
async fn current_account(core: &Core, id: Uuid) -> Result<String> {
    Ok(store::users::find_user_by_id(core.db(), id)
        .await?
        .map(|u| u.account)
        .unwrap_or_default())
}

/// A stale `If-Match` is refused (412) rather than overwriting a change
/// the client has not seen.
fn check_version(current: &Value, if_match: Option<&str>) -> ScimResult<()> {
    let Some(wanted) = if_match else {
        return Ok(());
    };
    let version = current["meta"]["version"].as_str().unwrap_or_default();
    let strip = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    let matches = wanted
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == strip(version));
    if matches {
        Ok(())
    } else {
        Err(ScimError::status(
            412,
            "the resource changed since that version: read it again",
        ))
    }
}
