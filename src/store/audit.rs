//! The audit chain (`audit_events`, `audit_head`). Appends take the head
//! row's lock, so concurrent appenders form one linear chain in commit
//! order; reads of the events never wait on it.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QueryResult, Value};

use super::{DbResultExt, StoreResult, sql};
use crate::domain::audit::{Record, Stored, hash};
use crate::error::Error;

fn text(row: &QueryResult, column: &str) -> StoreResult<String> {
    row.try_get::<String>("", column).db()
}

fn optional(row: &QueryResult, column: &str) -> StoreResult<Option<String>> {
    row.try_get::<Option<String>>("", column).db()
}

fn big(row: &QueryResult, column: &str) -> StoreResult<i64> {
    row.try_get::<i64>("", column).db()
}

/// The head: the last record's sequence number and hash.
pub async fn head(db: &impl ConnectionTrait) -> StoreResult<(i64, String)> {
    let row = db
        .query_one_raw(sql(
            db,
            "SELECT seq, hash FROM audit_head WHERE id = 1",
            vec![],
        ))
        .await
        .db()?
        .ok_or_else(|| Error::internal("audit_head has no row"))?;
    Ok((big(&row, "seq")?, text(&row, "hash")?))
}

/// Appends `records` after the head, in the caller's transaction.
pub async fn append(txn: &DatabaseTransaction, records: &[Record]) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    // Postgres: the row lock serialises appenders until they commit. SQLite
    // has one writer at a time already.
    let lock = match txn.get_database_backend() {
        DbBackend::Postgres => " FOR UPDATE",
        _ => "",
    };
    let row = txn
        .query_one_raw(sql(
            txn,
            &format!("SELECT seq, hash FROM audit_head WHERE id = 1{lock}"),
            vec![],
        ))
        .await
        .db()?
        .ok_or_else(|| Error::internal("audit_head has no row"))?;
    let (mut seq, mut prev) = (big(&row, "seq")?, text(&row, "hash")?);
    for record in records {
        seq += 1;
        let link = hash(seq, record, &prev);
        txn.execute_raw(sql(
            txn,
            "INSERT INTO audit_events \
                 (seq, at_ms, kind, rpc, outcome, actor_username, target_kind, target_name, \
                  target_account, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            vec![
                Value::from(seq),
                Value::from(record.at_ms),
                Value::from(record.kind.clone()),
                Value::from(record.rpc.clone()),
                Value::from(record.outcome.clone()),
                Value::from(record.actor_username.clone()),
                Value::from(record.target_kind.clone()),
                Value::from(record.target_name.clone()),
                Value::from(record.target_account.clone()),
                Value::from(record.detail.clone()),
                Value::from(prev.clone()),
                Value::from(link.clone()),
            ],
        ))
        .await
        .db()?;
        prev = link;
    }
    txn.execute_raw(sql(
        txn,
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        vec![Value::from(seq), Value::from(prev)],
    ))
    .await
    .db()?;
    Ok(())
}

/// Up to `limit` records after `after`, in sequence order.
pub async fn page(db: &impl ConnectionTrait, after: i64, limit: u64) -> StoreResult<Vec<Stored>> {
    let rows = db
        .query_all_raw(sql(
            db,
            "SELECT seq, at_ms, kind, rpc, outcome, actor_username, target_kind, target_name, \
                    target_account, detail, prev_hash, hash \
             FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            vec![
                Value::from(after),
                Value::from(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        ))
        .await
        .db()?;
    rows.iter()
        .map(|row| {
            Ok(Stored {
                seq: big(row, "seq")?,
                record: Record {
                    at_ms: big(row, "at_ms")?,
                    kind: text(row, "kind")?,
                    rpc: text(row, "rpc")?,
                    outcome: text(row, "outcome")?,
                    actor_username: optional(row, "actor_username")?,
                    target_kind: optional(row, "target_kind")?,
                    target_name: optional(row, "target_name")?,
                    target_account: optional(row, "target_account")?,
                    detail: text(row, "detail")?,
                },
                prev_hash: text(row, "prev_hash")?,
                hash: text(row, "hash")?,
            })
        })
        .collect()
}
