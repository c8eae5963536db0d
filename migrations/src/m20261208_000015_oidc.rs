//! OpenID Connect providers on the same model as SAML ones.
//!
//! - `identity_providers.oidc_config`: the provider's OIDC settings and
//!   the endpoints its discovery document named, as JSON; NULL for a SAML
//!   provider. `oidc_client_secret` apart (never shown), and the JWKS as
//!   last read with when it was read.
//! - `users.idp_subject`: the `sub` an OIDC provider asserted for the user.
//!   A later sign-in under the same username with another `sub` is someone
//!   else, refused.
//! - `oidc_logins`: the sign-ins started and not yet finished (state,
//!   nonce, PKCE verifier), so any replica can finish one, once.
//! - `token_families.idp_id`, `.idp_session`: the provider and its session
//!   (`sid`) that started a family, so a back-channel logout finds it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IdentityProviders {
    Table,
    OidcConfig,
    OidcClientSecret,
    OidcJwks,
    OidcJwksReadAtMs,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    IdpSubject,
}

#[derive(DeriveIden)]
enum TokenFamilies {
    Table,
    IdpId,
    IdpSession,
}

#[derive(DeriveIden)]
enum OidcLogins {
    Table,
    State,
    IdpId,
    Nonce,
    CodeVerifier,
    RelayState,
    ExpiresAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        for column in [
            text_null(IdentityProviders::OidcConfig),
            text_null(IdentityProviders::OidcClientSecret),
            text_null(IdentityProviders::OidcJwks),
            big_integer_null(IdentityProviders::OidcJwksReadAtMs),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(IdentityProviders::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(text_null(Users::IdpSubject))
                    .to_owned(),
            )
            .await?;
        for column in [
            uuid_null(TokenFamilies::IdpId),
            string_len_null(TokenFamilies::IdpSession, 256),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(TokenFamilies::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_token_families_idp_session")
                    .table(TokenFamilies::Table)
                    .col(TokenFamilies::IdpId)
                    .col(TokenFamilies::IdpSession)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OidcLogins::Table)
                    .col(string_len(OidcLogins::State, 64).primary_key())
                    .col(uuid(OidcLogins::IdpId))
                    .col(string_len(OidcLogins::Nonce, 64))
                    .col(string_len(OidcLogins::CodeVerifier, 128))
                    .col(string_len(OidcLogins::RelayState, 256))
                    .col(big_integer(OidcLogins::ExpiresAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oidc_logins_expiry")
                    .table(OidcLogins::Table)
                    .col(OidcLogins::ExpiresAtMs)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OidcLogins::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_token_families_idp_session")
                    .table(TokenFamilies::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            TokenFamilies::IdpSession.into_iden(),
            TokenFamilies::IdpId.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(TokenFamilies::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::IdpSubject)
                    .to_owned(),
            )
            .await?;
        for column in [
            IdentityProviders::OidcJwksReadAtMs.into_iden(),
            IdentityProviders::OidcJwks.into_iden(),
            IdentityProviders::OidcClientSecret.into_iden(),
            IdentityProviders::OidcConfig.into_iden(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(IdentityProviders::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
