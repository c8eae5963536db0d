//! Schema history of authzd. Each migration is frozen once released: it
//! describes tables as they were, never today's entities.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_identity;
mod m20261122_000002_predefined_roles;
mod m20261122_000003_api_keys;
mod m20261129_000004_change_records;
mod m20261130_000005_login_failures;
mod m20261130_000006_tokens;
mod m20261201_000007_audit;
mod m20261202_000008_audit_action;
mod m20261206_000009_group_change_ids;
mod m20261206_000010_login_sources;
mod m20261207_000012_folded_usernames;
mod m20261207_000013_identity_providers;
mod m20261207_000014_saml_sign_in;
mod m20261208_000015_oidc;
mod m20261209_000016_scim;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_identity::Migration),
            Box::new(m20261122_000002_predefined_roles::Migration),
            Box::new(m20261122_000003_api_keys::Migration),
            Box::new(m20261129_000004_change_records::Migration),
            Box::new(m20261130_000005_login_failures::Migration),
            Box::new(m20261130_000006_tokens::Migration),
            Box::new(m20261201_000007_audit::Migration),
            Box::new(m20261202_000008_audit_action::Migration),
            Box::new(m20261206_000009_group_change_ids::Migration),
            Box::new(m20261206_000010_login_sources::Migration),
            Box::new(m20261207_000012_folded_usernames::Migration),
            Box::new(m20261207_000013_identity_providers::Migration),
            Box::new(m20261207_000014_saml_sign_in::Migration),
            Box::new(m20261208_000015_oidc::Migration),
            Box::new(m20261209_000016_scim::Migration),
        ]
    }
}
