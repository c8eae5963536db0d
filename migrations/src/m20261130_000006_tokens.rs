//! Bearer tokens and API key rotation.
//!
//! - `token_signing_keys`: the signing key authzd generates when none is
//!   configured (PKCS#8, encrypted under the key-encryption key when one is
//!   set), shared by every replica on the database.
//! - `token_families`: one per password grant; every refresh token and
//!   access token descends from one. Revoking a family revokes them all.
//! - `refresh_tokens`: only the HMAC of the secret; `used_at_ms` marks a
//!   token already exchanged (a second use revokes the family).
//! - `revoked_tokens`: access tokens revoked one by one, until they expire.
//! - `api_keys` gains the previous secret of a rotated key and until when it
//!   still authenticates.
//!
//! Change records: kind `family` (id: the family id) when a family is
//! revoked or removed, or one of its access tokens is revoked; and the
//! api_keys trigger now also watches the previous secret.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TokenSigningKeys {
    Table,
    Name,
    Algorithm,
    PrivateKey,
    Encrypted,
    CreatedAtMs,
}

#[derive(DeriveIden)]
enum TokenFamilies {
    Table,
    Id,
    UserId,
    CreatedAtMs,
    ExpiresAtMs,
    RevokedAtMs,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenId,
    FamilyId,
    SecretHash,
    ExpiresAtMs,
    UsedAtMs,
}

#[derive(DeriveIden)]
enum RevokedTokens {
    Table,
    Jti,
    FamilyId,
    ExpiresAtMs,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    PreviousSecretHash,
    PreviousValidUntil,
    RotatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

const POSTGRES_TRIGGERS: &str = r#"
CREATE OR REPLACE FUNCTION authzd_keys_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM authzd_record_changes('key', ARRAY(SELECT key_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM authzd_record_changes('key_gone', ARRAY(SELECT key_id FROM old_rows));
    ELSE
        PERFORM authzd_record_changes('key', ARRAY(
            SELECT n.key_id FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE (n.key_id, n.user_id, n.owner_username, n.owner_account, n.name, n.secret_hash,
                   n.expires_at, n.revoked_at, n.owner_deleted_at,
                   n.previous_secret_hash, n.previous_valid_until)
                  IS DISTINCT FROM
                  (o.key_id, o.user_id, o.owner_username, o.owner_account, o.name, o.secret_hash,
                   o.expires_at, o.revoked_at, o.owner_deleted_at,
                   o.previous_secret_hash, o.previous_valid_until)));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE FUNCTION authzd_families_changed() RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM authzd_record_changes('family', ARRAY(SELECT id FROM old_rows));
    ELSE
        PERFORM authzd_record_changes('family', ARRAY(
            SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.revoked_at_ms IS DISTINCT FROM o.revoked_at_ms));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE FUNCTION authzd_token_revoked() RETURNS TRIGGER AS $$
BEGIN
    PERFORM authzd_record_changes('family', ARRAY(SELECT DISTINCT family_id FROM new_rows));
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER authzd_families_updated AFTER UPDATE ON token_families REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_families_changed();
CREATE TRIGGER authzd_families_deleted AFTER DELETE ON token_families REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_families_changed();
CREATE TRIGGER authzd_tokens_revoked AFTER INSERT ON revoked_tokens REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION authzd_token_revoked();
"#;

/// The SQLite record statement of the change-records migration (frozen
/// there; repeated here because migrations never import one another).
fn sqlite_record(kind: &str, id: &str) -> String {
    format!(
        "UPDATE change_counter SET seq = seq + 1 WHERE id = 1; \
         INSERT INTO changes (seq, kind, id, at_us) \
         SELECT seq, '{kind}', {id}, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) \
         FROM change_counter WHERE id = 1 AND {id} IS NOT NULL;"
    )
}

fn sqlite_triggers() -> Vec<String> {
    let trigger = |name: &str, event: &str, table: &str, kind: &str, id: &str| {
        format!(
            "CREATE TRIGGER authzd_{name} AFTER {event} ON {table} FOR EACH ROW BEGIN {} END",
            sqlite_record(kind, id)
        )
    };
    vec![
        "DROP TRIGGER authzd_key_updated".to_owned(),
        trigger(
            "key_updated",
            "UPDATE OF key_id, user_id, owner_username, owner_account, name, secret_hash, expires_at, revoked_at, owner_deleted_at, previous_secret_hash, previous_valid_until",
            "api_keys",
            "key",
            "OLD.key_id",
        ),
        trigger(
            "family_revoked",
            "UPDATE OF revoked_at_ms",
            "token_families",
            "family",
            "OLD.id",
        ),
        trigger(
            "family_deleted",
            "DELETE",
            "token_families",
            "family",
            "OLD.id",
        ),
        trigger(
            "token_revoked",
            "INSERT",
            "revoked_tokens",
            "family",
            "NEW.family_id",
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TokenSigningKeys::Table)
                    .col(string_len(TokenSigningKeys::Name, 32).primary_key())
                    .col(string_len(TokenSigningKeys::Algorithm, 16))
                    .col(blob(TokenSigningKeys::PrivateKey))
                    .col(boolean(TokenSigningKeys::Encrypted))
                    .col(big_integer(TokenSigningKeys::CreatedAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TokenFamilies::Table)
                    .col(string_len(TokenFamilies::Id, 36).primary_key())
                    .col(uuid(TokenFamilies::UserId))
                    .col(big_integer(TokenFamilies::CreatedAtMs))
                    .col(big_integer(TokenFamilies::ExpiresAtMs))
                    .col(big_integer_null(TokenFamilies::RevokedAtMs))
                    .foreign_key(
                        ForeignKey::create()
                            .from(TokenFamilies::Table, TokenFamilies::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("token_families_user")
                    .table(TokenFamilies::Table)
                    .col(TokenFamilies::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(string_len(RefreshTokens::TokenId, 12).primary_key())
                    .col(string_len(RefreshTokens::FamilyId, 36))
                    .col(string_len(RefreshTokens::SecretHash, 64))
                    .col(big_integer(RefreshTokens::ExpiresAtMs))
                    .col(big_integer_null(RefreshTokens::UsedAtMs))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefreshTokens::Table, RefreshTokens::FamilyId)
                            .to(TokenFamilies::Table, TokenFamilies::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refresh_tokens_family")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::FamilyId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RevokedTokens::Table)
                    .col(string_len(RevokedTokens::Jti, 36).primary_key())
                    .col(string_len(RevokedTokens::FamilyId, 36))
                    .col(big_integer(RevokedTokens::ExpiresAtMs))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RevokedTokens::Table, RevokedTokens::FamilyId)
                            .to(TokenFamilies::Table, TokenFamilies::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("revoked_tokens_family")
                    .table(RevokedTokens::Table)
                    .col(RevokedTokens::FamilyId)
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per statement.
        for column in [
            ColumnDef::new(ApiKeys::PreviousSecretHash)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(ApiKeys::PreviousValidUntil)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(ApiKeys::RotatedAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(POSTGRES_TRIGGERS).await?;
            }
            _ => {
                for statement in sqlite_triggers() {
                    db.execute_unprepared(&statement).await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "DROP TRIGGER authzd_families_updated ON token_families; \
                 DROP TRIGGER authzd_families_deleted ON token_families; \
                 DROP TRIGGER authzd_tokens_revoked ON revoked_tokens; \
                 DROP FUNCTION authzd_families_changed(); \
                 DROP FUNCTION authzd_token_revoked();",
            )
            .await?;
        } else {
            for name in ["family_revoked", "family_deleted", "token_revoked"] {
                db.execute_unprepared(&format!("DROP TRIGGER authzd_{name}"))
                    .await?;
            }
        }
        for table in [
            "revoked_tokens",
            "refresh_tokens",
            "token_families",
            "token_signing_keys",
        ] {
            db.execute_unprepared(&format!("DROP TABLE {table}"))
                .await?;
        }
        // The rotation columns stay (SQLite cannot drop a column a trigger
        // names); they are harmless to an older version.
        Ok(())
    }
}
