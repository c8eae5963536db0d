//! Single sign-on: the identity providers people sign in through, and the
//! user groups each may assert. Managing them is for global
//! administrators, never on an API key's authority: whoever configures an
//! IdP decides who can become which user.

pub mod fetch;
pub(crate) mod jit;
pub mod metadata;
pub mod oidc;
pub mod saml;
pub mod sign_in;

use uuid::Uuid;

use super::Core;
use super::audit::{Actor, Change, Refusal};
use super::caller::Caller;
use super::model::{AccountType, CredentialKind, IdentityProvider};
use super::names::{self, AccountName};
use super::page::{Page, PageRequest};
use crate::error::{Error, Result, quoted};
use crate::store;

pub use store::identity_providers::Deleted;

/// Where the SP endpoints are derived from.
#[derive(Debug, Clone)]
pub struct SsoSettings {
    /// The console's public base URL, without a trailing slash.
    pub public_url: String,
    /// How long an AuthnRequest waits for its answer.
    pub request_ttl: std::time::Duration,
    /// Clock skew allowed on an assertion's times.
    pub clock_skew: std::time::Duration,
    /// Log verified assertions at debug.
    pub log_assertions: bool,
    /// Only existing SAML users sign in (no just-in-time creation).
    pub require_existing_users: bool,
    /// Password sign-in is refused to every native user but `admin`.
    pub disallow_native_users: bool,
}

/// The groups attribute when a provider names none (Anchore's default).
pub const DEFAULT_GROUPS_ATTRIBUTE: &str = "memberOf";

/// The settable fields of a provider. `None` leaves a field as it is (on
/// create: its default); an empty string clears an optional one.
#[derive(Debug, Default, Clone)]
pub struct IdpFields {
    pub enabled: Option<bool>,
    pub sp_entity_id: Option<String>,
    pub acs_url: Option<String>,
    pub metadata_xml: Option<String>,
    pub metadata_url: Option<String>,
    pub username_attribute: Option<String>,
    pub account_attribute: Option<String>,
    pub role_attribute: Option<String>,
    pub groups_attribute: Option<String>,
    pub default_account: Option<String>,
    pub default_role: Option<String>,
    pub require_signed_assertions: Option<bool>,
    pub require_signed_response: Option<bool>,
    pub allow_idp_initiated: Option<bool>,
    /// Makes (on create) or keeps an OpenID Connect provider.
    pub oidc: Option<oidc::OidcFields>,
}

/// What a provider's configuration names by address, read beforehand.
#[derive(Default)]
struct Remote {
    /// The SAML metadata document at `idp_metadata_url`.
    metadata: Option<String>,
    /// The OIDC issuer's discovery document and JWKS.
    discovered: Option<oidc::Discovered>,
}

fn not_found(name: &str) -> Error {
    Error::not_found(format!("identity provider {}", quoted(name)))
}

/// `Some(value)` unless the value is empty.
fn non_empty(value: String) -> Option<String> {
    (!value.trim().is_empty()).then_some(value)
}

/// An absolute http(s) address.
fn check_url(field: &str, value: &str) -> Result<()> {
    let uri: http::Uri = value
        .parse()
        .map_err(|_| Error::invalid(field, "is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
        return Err(Error::invalid(field, "must be an absolute http(s) URL"));
    }
    Ok(())
}

impl Core {
    /// Global administrators only, and never on an API key's authority.
    pub(crate) fn require_idp_admin(&self, caller: &Caller, operation: &str) -> Result<()> {
        let why = if !caller.is_global_admin() {
            "is for global administrators only"
        } else if caller.credential == CredentialKind::ApiKey {
            "is never permitted to a request authenticated by an API key"
        } else {
            return Ok(());
        };
        self.refused(Refusal::operation(caller, operation));
        tracing::info!(caller = caller.username(), operation, "permission denied");
        Err(Error::denied(format!("{operation} {why}")))
    }

    /// The entity id authzd presents to `idp` and where it takes responses.
    pub fn sp_endpoints(&self, idp: &IdentityProvider) -> (String, String) {
        let base = &self.settings().sso.public_url;
        let name = &idp.name;
        (
            idp.sp_entity_id
                .clone()
                .unwrap_or_else(|| format!("{base}/sso/saml/{name}/metadata")),
            idp.acs_url
                .clone()
                .unwrap_or_else(|| format!("{base}/sso/saml/{name}/acs")),
        )
    }

    /// `fields` over `base`, checked as a whole (a field is judged with
    /// the others it depends on).
    ///
    /// `fetched`: the document at `fields.metadata_url`, read beforehand
    /// (`fetch_metadata`).
    fn apply(
        &self,
        mut idp: IdentityProvider,
        fields: IdpFields,
        remote: Remote,
    ) -> Result<IdentityProvider> {
        let is_oidc = idp.oidc.is_some();
        let IdpFields {
            enabled,
            sp_entity_id,
            acs_url,
            metadata_xml,
            metadata_url,
            username_attribute,
            account_attribute,
            role_attribute,
            groups_attribute,
            default_account,
            default_role,
            require_signed_assertions,
            require_signed_response,
            allow_idp_initiated,
            oidc: oidc_fields,
        } = fields;
        if is_oidc {
            // The SAML half of the model has no meaning here: refused, not
            // silently kept.
            for (field, given) in [
                (
                    "sp_entity_id",
                    sp_entity_id.as_deref().is_some_and(|v| !v.is_empty()),
                ),
                ("acs_url", acs_url.as_deref().is_some_and(|v| !v.is_empty())),
                (
                    "idp_metadata_xml",
                    metadata_xml.as_deref().is_some_and(|v| !v.is_empty()),
                ),
                (
                    "idp_metadata_url",
                    metadata_url.as_deref().is_some_and(|v| !v.is_empty()),
                ),
                (
                    "require_signed_assertions",
                    require_signed_assertions.is_some(),
                ),
                ("require_signed_response", require_signed_response.is_some()),
                ("allow_idp_initiated", allow_idp_initiated.is_some()),
            ] {
                if given {
                    return Err(Error::invalid(
                        field,
                        "is for SAML providers; this one is OpenID Connect",
                    ));
                }
            }
            self.apply_oidc(&mut idp, oidc_fields.unwrap_or_default(), remote.discovered)?;
        } else if oidc_fields.is_some() {
            return Err(Error::invalid(
                "oidc",
                "a SAML provider cannot become an OpenID Connect one: create another provider",
            ));
        }
        let metadata_xml = metadata_xml.and_then(non_empty);
        let metadata_url = metadata_url.and_then(non_empty);
        if metadata_xml.is_some() && metadata_url.is_some() {
            return Err(Error::invalid(
                "idp_metadata_url",
                "give idp_metadata_xml or idp_metadata_url, not both",
            ));
        }
        if let Some(xml) = metadata_xml {
            idp.metadata = metadata::parse_idp_metadata("idp_metadata_xml", &xml)?;
            idp.metadata_url = None;
        }
        if let Some(url) = metadata_url {
            let xml = remote
                .metadata
                .ok_or_else(|| Error::internal("identity provider metadata was not fetched"))?;
            idp.metadata = metadata::parse_idp_metadata("idp_metadata_url", &xml)?;
            idp.metadata_url = Some(url);
        }
        if idp.metadata.xml.is_empty() && !is_oidc {
            return Err(Error::invalid("idp_metadata_xml", "is required"));
        }
        if let Some(v) = enabled {
            idp.enabled = v;
        }
        if let Some(v) = sp_entity_id {
            idp.sp_entity_id = non_empty(v);
        }
        if let Some(v) = acs_url {
            idp.acs_url = non_empty(v);
        }
        if let Some(url) = &idp.acs_url {
            check_url("acs_url", url)?;
        }
        let pick = |saml: &'static str, oidc: &'static str| if is_oidc { oidc } else { saml };
        for (field, value, slot) in [
            (
                pick("idp_username_attribute", "oidc.username_claim"),
                username_attribute,
                &mut idp.username_attribute,
            ),
            (
                pick("idp_account_attribute", "oidc.account_claim"),
                account_attribute,
                &mut idp.account_attribute,
            ),
            (
                pick("idp_role_attribute", "oidc.roles_claim"),
                role_attribute,
                &mut idp.role_attribute,
            ),
            (
                pick("idp_groups_attribute", "oidc.groups_claim"),
                groups_attribute,
                &mut idp.groups_attribute,
            ),
        ] {
            if let Some(v) = value {
                if v.trim() != v {
                    return Err(Error::invalid(
                        field,
                        "must not begin or end with white space",
                    ));
                }
                *slot = non_empty(v);
            }
        }
        if let Some(v) = default_account {
            idp.default_account = match non_empty(v) {
                Some(name) => Some(AccountName::parse_new("default_account", &name)?.into_string()),
                None => None,
            };
        }
        if let Some(v) = default_role {
            idp.default_role = match non_empty(v) {
                Some(role) => {
                    self.catalog().require_role("default_role", &role)?;
                    Some(role)
                }
                None => None,
            };
        }
        if idp.default_role.is_some() && idp.role_attribute.is_some() {
            return Err(Error::invalid(
                "default_role",
                "cannot be set together with idp_role_attribute: the roles the IdP asserts \
                 replace the user's at every sign-in",
            ));
        }
        if let Some(v) = require_signed_assertions {
            idp.require_signed_assertions = v;
        }
        if let Some(v) = require_signed_response {
            idp.require_signed_response = v;
        }
        if let Some(v) = allow_idp_initiated {
            idp.allow_idp_initiated = v;
        }
        Ok(idp)
    }

    /// The OIDC half of a provider: `fields` over what it has, checked.
    /// `discovered`: what the issuer in `fields` published, read beforehand.
    fn apply_oidc(
        &self,
        idp: &mut IdentityProvider,
        fields: oidc::OidcFields,
        discovered: Option<oidc::Discovered>,
    ) -> Result<()> {
        let now = self.now();
        let Some(current) = idp.oidc.as_mut() else {
            return Err(Error::internal("not an OpenID Connect provider"));
        };
        if let Some(issuer) = fields.issuer.and_then(non_empty) {
            let found =
                discovered.ok_or_else(|| Error::internal("the OIDC issuer was not read"))?;
            current.issuer = issuer;
            current.endpoints = found.endpoints;
            current.jwks = found.jwks;
            current.jwks_read_at = now;
        }
        if current.issuer.is_empty() {
            return Err(Error::invalid("oidc.issuer", "is required"));
        }
        if let Some(client_id) = fields.client_id.and_then(non_empty) {
            if client_id.len() > 255 || client_id.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "oidc.client_id",
                    "must be at most 255 bytes, without control characters",
                ));
            }
            current.client_id = client_id;
        }
        if current.client_id.is_empty() {
            return Err(Error::invalid("oidc.client_id", "is required"));
        }
        if let Some(secret) = fields.client_secret.filter(|s| !s.is_empty()) {
            if secret.expose().len() > 1024 || secret.expose().chars().any(char::is_control) {
                return Err(Error::invalid(
                    "oidc.client_secret",
                    "must be at most 1024 bytes, without control characters",
                ));
            }
            current.client_secret = secret;
        }
        if current.client_secret.is_empty() {
            return Err(Error::invalid("oidc.client_secret", "is required"));
        }
        if let Some(scopes) = fields.scopes.filter(|s| !s.is_empty()) {
            // RFC 6749 3.3: scope tokens are printable ASCII but '"' and '\\'.
            if let Some(bad) = scopes.iter().find(|s| {
                s.is_empty()
                    || s.len() > 128
                    || !s
                        .bytes()
                        .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
            }) {
                return Err(Error::invalid(
                    "oidc.scopes",
                    format!("{} is not a scope", quoted(bad)),
                ));
            }
            if !scopes.iter().any(|s| s == "openid") {
                return Err(Error::invalid("oidc.scopes", "must include openid"));
            }
            let mut unique = Vec::new();
            for scope in scopes {
                if !unique.contains(&scope) {
                    unique.push(scope);
                }
            }
            current.scopes = unique;
        }
        Ok(())
    }

    /// What `fields` name by address, read (before anything is judged, so
    /// the rest is checked against what it says).
    async fn read_remote(fields: &IdpFields) -> Result<Remote> {
        let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        if given(&fields.metadata_xml) && given(&fields.metadata_url) {
            return Err(Error::invalid(
                "idp_metadata_url",
                "give idp_metadata_xml or idp_metadata_url, not both",
            ));
        }
        let mut remote = Remote::default();
        if let Some(url) = fields.metadata_url.as_deref()
            && given(&fields.metadata_url)
        {
            remote.metadata = Some(fetch::fetch(url).await?);
        }
        if let Some(issuer) = fields.oidc.as_ref().and_then(|o| o.issuer.as_deref())
            && !issuer.trim().is_empty()
        {
            remote.discovered = Some(oidc::discover(issuer).await?);
        }
        Ok(remote)
    }

    /// Reads again the metadata of every provider configured by address,
    /// and keeps what changed (new signing certificates, a moved SSO
    /// address). A provider whose document cannot be fetched or read keeps
    /// what it had, and says so in the log. Returns how many changed.
    pub async fn refresh_idp_metadata(&self) -> Result<u64> {
        let mut changed_count = 0;
        for before in store::identity_providers::with_metadata_url(self.db()).await? {
            let Some(url) = before.metadata_url.clone() else {
                continue;
            };
            let read = match fetch::fetch(&url).await {
                Ok(xml) => metadata::parse_idp_metadata("idp_metadata_url", &xml),
                Err(e) => Err(e),
            };
            let fresh = match read {
                Ok(fresh) => fresh,
                Err(e) => {
                    metrics::counter!("authzd_saml_metadata_refreshes_total", "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(idp = before.name, url, error = %e, "identity provider metadata not refreshed; the last document stays in use");
                    continue;
                }
            };
            if fresh.xml == before.metadata.xml {
                metrics::counter!("authzd_saml_metadata_refreshes_total", "outcome" => "unchanged")
                    .increment(1);
                continue;
            }
            let mut idp = before.clone();
            idp.metadata = fresh;
            idp.updated_at = self.now();
            let change = changed(
                Change::new("update", "identity_provider", &idp.name).id(idp.id),
                &before,
                &idp,
            );
            // Only the document changes, and only over what was read: an
            // administrator's change in between, or another replica's
            // refresh of the same document, wins and nothing is written.
            let written = async {
                self.check_entity_id(&idp).await?;
                let mut txn = self.write().await?;
                let written =
                    store::identity_providers::refresh_metadata(txn.db(), &before, &idp).await?;
                if written {
                    txn.record(Actor::Local("metadata refresh"), change);
                    txn.commit().await?;
                }
                Ok::<_, Error>(written)
            }
            .await;
            let outcome = match written {
                Ok(true) => {
                    tracing::info!(
                        idp = idp.name,
                        "identity provider metadata changed at its address"
                    );
                    changed_count += 1;
                    "changed"
                }
                Ok(false) => "unchanged",
                Err(e) => {
                    tracing::warn!(idp = before.name, error = %e, "refreshed identity provider metadata not written; the last document stays in use");
                    "failed"
                }
            };
            metrics::counter!("authzd_saml_metadata_refreshes_total", "outcome" => outcome)
                .increment(1);
        }
        Ok(changed_count)
    }

    /// What the database must agree with: the issuer is this provider's
    /// alone, and the default account, if it exists, is a user account.
    async fn check_against_store(&self, idp: &IdentityProvider) -> Result<()> {
        self.check_entity_id(idp).await?;
        if let Some(name) = &idp.default_account
            && let Some(account) = store::accounts::find_account(self.db(), name).await?
            && account.account_type != AccountType::User
        {
            return Err(Error::invalid(
                "default_account",
                format!("{} is not a user account", quoted(name)),
            ));
        }
        Ok(())
    }

    /// The issuer is this provider's alone.
    async fn check_entity_id(&self, idp: &IdentityProvider) -> Result<()> {
        if let Some(other) =
            store::identity_providers::find_by_entity_id(self.db(), &idp.metadata.entity_id).await?
            && other.id != idp.id
        {
            return Err(Error::invalid(
                "idp_metadata_xml",
                format!(
                    "entity id {} is already identity provider {}'s",
                    quoted(&idp.metadata.entity_id),
                    quoted(&other.name)
                ),
            ));
        }
        Ok(())
    }

    pub async fn create_identity_provider(
        &self,
        caller: &Caller,
        name: &str,
        fields: IdpFields,
    ) -> Result<IdentityProvider> {
        self.require_idp_admin(caller, "CreateIdentityProvider")?;
        let name = names::new_idp_name("name", name)?;
        let now = self.now();
        let blank = IdentityProvider {
            id: Uuid::new_v4(),
            name,
            enabled: true,
            sp_entity_id: None,
            acs_url: None,
            metadata: crate::model::IdpMetadata {
                xml: String::new(),
                entity_id: String::new(),
                sso_url: String::new(),
                certificates: Vec::new(),
            },
            metadata_url: None,
            username_attribute: None,
            account_attribute: None,
            role_attribute: None,
            groups_attribute: Some(DEFAULT_GROUPS_ATTRIBUTE.to_owned()),
            default_account: None,
            default_role: None,
            require_signed_assertions: true,
            require_signed_response: true,
            allow_idp_initiated: false,
            oidc: None,
            created_at: now,
            updated_at: now,
        };
        let blank = if fields.oidc.is_some() {
            // OIDC: the SAML half stays empty; the entity id, unique per
            // row, is a placeholder no SAML provider can claim.
            IdentityProvider {
                metadata: crate::model::IdpMetadata {
                    entity_id: format!("oidc:{}", blank.id),
                    ..blank.metadata.clone()
                },
                groups_attribute: Some(oidc::DEFAULT_GROUPS_CLAIM.to_owned()),
                oidc: Some(crate::model::OidcProvider {
                    issuer: String::new(),
                    client_id: String::new(),
                    client_secret: crate::domain::secret::Secret::default(),
                    scopes: oidc::DEFAULT_SCOPES.map(str::to_owned).to_vec(),
                    endpoints: crate::model::OidcEndpoints {
                        authorization_endpoint: String::new(),
                        token_endpoint: String::new(),
                        jwks_uri: String::new(),
                        userinfo_endpoint: None,
                    },
                    jwks: String::new(),
                    jwks_read_at: now,
                }),
                ..blank
            }
        } else {
            blank
        };
        let remote = Self::read_remote(&fields).await?;
        let idp = self.apply(blank, fields, remote)?;
        self.check_against_store(&idp).await?;
        let change = described(Change::new("create", "identity_provider", &idp.name), &idp);
        self.change(Actor::Caller(caller), change, async |db| {
            store::identity_providers::create(db, &idp).await
        })
        .await?;
        tracing::info!(
            caller = caller.username(),
            idp = idp.name,
            "identity provider created"
        );
        Ok(idp)
    }

    pub(crate) async fn identity_provider(&self, name: &str) -> Result<IdentityProvider> {
        store::identity_providers::find(self.db(), name)
            .await?
            .ok_or_else(|| not_found(name))
    }

    pub async fn get_identity_provider(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<IdentityProvider> {
        self.require_idp_admin(caller, "GetIdentityProvider")?;
        self.identity_provider(name).await
    }

    pub async fn list_identity_providers(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<IdentityProvider>> {
        self.require_idp_admin(caller, "ListIdentityProviders")?;
        store::identity_providers::list(self.db(), page).await
    }

    pub async fn update_identity_provider(
        &self,
        caller: &Caller,
        name: &str,
        fields: IdpFields,
    ) -> Result<IdentityProvider> {
        self.require_idp_admin(caller, "UpdateIdentityProvider")?;
        let before = self.identity_provider(name).await?;
        let remote = Self::read_remote(&fields).await?;
        let mut idp = self.apply(before.clone(), fields, remote)?;
        idp.updated_at = self.now();
        self.check_against_store(&idp).await?;
        let mut change = changed(
            Change::new("update", "identity_provider", name).id(idp.id),
            &before,
            &idp,
        );
        let secret = |p: &IdentityProvider| p.oidc.as_ref().map(|o| o.client_secret.clone());
        if secret(&before) != secret(&idp) {
            change = change.to("oidc_client_secret", "replaced");
        }
        self.change(Actor::Caller(caller), change, async |db| {
            if store::identity_providers::replace(db, &idp).await? {
                Ok(())
            } else {
                Err(not_found(name))
            }
        })
        .await?;
        Ok(idp)
    }

    /// Deletes the provider and every user it signed in, in one
    /// transaction (Anchore deletes an IdP's users with it).
    pub async fn delete_identity_provider(&self, caller: &Caller, name: &str) -> Result<Deleted> {
        self.require_idp_admin(caller, "DeleteIdentityProvider")?;
        let idp = self.identity_provider(name).await?;
        let now = self.now();
        let mut txn = self.write().await?;
        let deleted = store::identity_providers::delete_with_users(txn.db(), &idp, now).await?;
        txn.record(
            Actor::Caller(caller),
            Change::new("delete", "identity_provider", name)
                .id(idp.id)
                .to("users_deleted", deleted.users)
                .to("api_keys_deleted", deleted.api_keys)
                .to("token_families_ended", deleted.token_families),
        );
        txn.commit().await?;
        tracing::info!(
            caller = caller.username(),
            idp = name,
            users = deleted.users,
            api_keys = deleted.api_keys,
            "identity provider deleted with its users"
        );
        Ok(deleted)
    }

    pub async fn list_user_group_mappings(
        &self,
        caller: &Caller,
        idp: &str,
    ) -> Result<Vec<String>> {
        self.require_idp_admin(caller, "ListUserGroupMappings")?;
        let idp = self.identity_provider(idp).await?;
        store::identity_providers::mapped_groups(self.db(), idp.id).await
    }

    /// All the named groups' ids, or NOT_FOUND naming the first missing.
    async fn group_ids(&self, groups: &[String]) -> Result<Vec<Uuid>> {
        let mut ids = Vec::with_capacity(groups.len());
        for name in groups {
            let group = store::groups::find_group(self.db(), name)
                .await?
                .ok_or_else(|| Error::not_found(format!("user group {}", quoted(name))))?;
            ids.push(group.id);
        }
        Ok(ids)
    }

    pub async fn add_user_group_mappings(
        &self,
        caller: &Caller,
        idp: &str,
        groups: &[String],
    ) -> Result<Vec<String>> {
        self.require_idp_admin(caller, "AddUserGroupMappings")?;
        let provider = self.identity_provider(idp).await?;
        let ids = self.group_ids(groups).await?;
        let now = self.now();
        let change = Change::new("add_group_mappings", "identity_provider", idp)
            .id(provider.id)
            .to("user_groups", groups.to_vec());
        self.change(Actor::Caller(caller), change, async |db| {
            store::identity_providers::add_mappings(db, provider.id, &ids, now).await
        })
        .await?;
        store::identity_providers::mapped_groups(self.db(), provider.id).await
    }

    pub async fn remove_user_group_mappings(
        &self,
        caller: &Caller,
        idp: &str,
        groups: &[String],
    ) -> Result<Vec<String>> {
        self.require_idp_admin(caller, "RemoveUserGroupMappings")?;
        let provider = self.identity_provider(idp).await?;
        let ids = self.group_ids(groups).await?;
        let change = Change::new("remove_group_mappings", "identity_provider", idp)
            .id(provider.id)
            .to("user_groups", groups.to_vec());
        self.change(Actor::Caller(caller), change, async |db| {
            store::identity_providers::remove_mappings(db, provider.id, &ids).await
        })
        .await?;
        store::identity_providers::mapped_groups(self.db(), provider.id).await
    }

    /// The providers a sign-in page offers (enabled ones; names only, as
    /// any sign-in page shows them), each with its protocol.
    pub async fn sign_in_choices(&self) -> Result<Vec<(String, &'static str)>> {
        // A page of buttons, not a directory.
        store::identity_providers::enabled_names(self.db(), 20).await
    }

    /// The SP metadata of a provider, for anyone (an IdP's administrator
    /// pastes it): `None` when there is no such provider.
    pub async fn sp_metadata(&self, idp: &str) -> Result<Option<String>> {
        let Some(idp) = store::identity_providers::find(self.db(), idp)
            .await?
            .filter(|idp| idp.oidc.is_none())
        else {
            return Ok(None);
        };
        let (entity_id, acs) = self.sp_endpoints(&idp);
        Ok(Some(metadata::sp_metadata(
            &entity_id,
            &acs,
            idp.require_signed_assertions,
        )))
    }
}

/// The fields an audit record shows of a provider: the document itself
/// is long and says less than what was read from it.
fn fields_of(idp: &IdentityProvider) -> Vec<(&'static str, serde_json::Value)> {
    let opt = |v: &Option<String>| serde_json::json!(v);
    if let Some(o) = &idp.oidc {
        return vec![
            ("enabled", idp.enabled.into()),
            ("oidc_issuer", o.issuer.clone().into()),
            ("oidc_client_id", o.client_id.clone().into()),
            // Never the secret, nor anything derived from it.
            (
                "oidc_client_secret",
                if o.client_secret.is_empty() {
                    "unset"
                } else {
                    "set"
                }
                .into(),
            ),
            ("oidc_scopes", o.scopes.clone().into()),
            (
                "oidc_authorization_endpoint",
                o.endpoints.authorization_endpoint.clone().into(),
            ),
            (
                "oidc_token_endpoint",
                o.endpoints.token_endpoint.clone().into(),
            ),
            ("oidc_jwks_uri", o.endpoints.jwks_uri.clone().into()),
            ("oidc_username_claim", opt(&idp.username_attribute)),
            ("oidc_account_claim", opt(&idp.account_attribute)),
            ("oidc_roles_claim", opt(&idp.role_attribute)),
            ("oidc_groups_claim", opt(&idp.groups_attribute)),
            ("default_account", opt(&idp.default_account)),
            ("default_role", opt(&idp.default_role)),
        ];
    }
    vec![
        ("enabled", idp.enabled.into()),
        ("sp_entity_id", opt(&idp.sp_entity_id)),
        ("acs_url", opt(&idp.acs_url)),
        ("idp_entity_id", idp.metadata.entity_id.clone().into()),
        ("idp_sso_url", idp.metadata.sso_url.clone().into()),
        (
            "signing_certificate_sha256",
            idp.metadata
                .certificates
                .iter()
                .map(|c| metadata::fingerprint(c))
                .collect::<Vec<_>>()
                .into(),
        ),
        ("idp_metadata_url", opt(&idp.metadata_url)),
        ("idp_username_attribute", opt(&idp.username_attribute)),
        ("idp_account_attribute", opt(&idp.account_attribute)),
        ("idp_role_attribute", opt(&idp.role_attribute)),
        ("idp_groups_attribute", opt(&idp.groups_attribute)),
        ("default_account", opt(&idp.default_account)),
        ("default_role", opt(&idp.default_role)),
        (
            "require_signed_assertions",
            idp.require_signed_assertions.into(),
        ),
        (
            "require_signed_response",
            idp.require_signed_response.into(),
        ),
        ("allow_idp_initiated", idp.allow_idp_initiated.into()),
    ]
}

fn described(change: Change, idp: &IdentityProvider) -> Change {
    fields_of(idp)
        .into_iter()
        .fold(change.id(idp.id), |change, (field, value)| {
            change.to(field, value)
        })
}

fn changed(change: Change, before: &IdentityProvider, after: &IdentityProvider) -> Change {
    fields_of(before)
        .into_iter()
        .zip(fields_of(after))
        .filter(|((_, old), (_, new))| old != new)
        .fold(change, |change, ((field, old), (_, new))| {
            change.from_to(field, old, new)
        })
}
