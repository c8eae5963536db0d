//! The change records (written by triggers; see the migration
//! `m20261129_000004_change_records`) and the index of existing key ids.

use sea_orm::ConnectionTrait;

use super::{DbResultExt, StoreResult, sql};

#[derive(Debug)]
pub struct ChangeRow {
    pub seq: i64,
    pub kind: String,
    /// `None` when the stored id is not text (a trigger that wrote the
    /// wrong type): the follower must not stop at such a record, nor trust it.
    pub id: Option<String>,
    /// Commit time (the trigger's clock), microseconds since the epoch.
    pub at_us: i64,
}

/// The last sequence number handed out.
pub async fn counter(db: &impl ConnectionTrait) -> StoreResult<i64> {
    let row = db
        .query_one_raw(sql(
            db,
            "SELECT seq FROM change_counter WHERE id = 1",
            vec![],
        ))
        .await
        .db()?;
    Ok(match row {
        Some(row) => row.try_get::<i64>("", "seq").db()?,
        None => 0,
    })
}

/// Records after `seq`, in order, at most `limit`.
pub async fn after(db: &impl ConnectionTrait, seq: i64, limit: u64) -> StoreResult<Vec<ChangeRow>> {
    let statement = sql(
        db,
        "SELECT seq, kind, id, at_us FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        vec![seq.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
    );
    let rows = db.query_all_raw(statement).await.db()?;
    rows.iter()
        .map(|row| {
            Ok(ChangeRow {
                seq: row.try_get("", "seq").db()?,
                kind: row.try_get("", "kind").db()?,
                id: row.try_get::<String>("", "id").ok(),
                at_us: row.try_get("", "at_us").db()?,
            })
        })
        .collect()
}

/// Removes records written before `before_us`.
pub async fn trim(db: &impl ConnectionTrait, before_us: i64) -> StoreResult<u64> {
    let result = db
        .execute_raw(sql(
            db,
            "DELETE FROM changes WHERE at_us < $1",
            vec![before_us.into()],
        ))
        .await
        .db()?;
    Ok(result.rows_affected())
}

/// Every key id, for the index that answers unknown keys without a query.
pub async fn all_key_ids(db: &impl ConnectionTrait) -> StoreResult<Vec<String>> {
    let rows = db
        .query_all_raw(sql(db, "SELECT key_id FROM api_keys", vec![]))
        .await
        .db()?;
    rows.iter()
        .map(|r| r.try_get::<String>("", "key_id").db())
        .collect()
}
