//! The audit chain (`audit_events`, `audit_head`). Appends take the head
//! row's lock, so concurrent appenders form one linear chain in commit
//! order; reads of the events never wait on it.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QueryResult, Value};

use super::{DbResultExt, StoreResult, sql};
use crate::error::Error;
use crate::model::audit::{Filter, Record, Stored, hash};

fn text(row: &QueryResult, column: &str) -> StoreResult<String> {
    row.try_get::<String>("", column).db()
}

fn optional(row: &QueryResult, column: &str) -> StoreResult<Option<String>> {
    row.try_get::<Option<String>>("", column).db()
}

fn big(row: &QueryResult, column: &str) -> StoreResult<i64> {
    row.try_get::<i64>("", column).db()
}

/// Records per INSERT statement (12 values each).
const ROWS_PER_INSERT: usize = 100;

/// The head: the last record's sequence number and hash; `None` when its
/// row is gone (only by someone deleting it: the migration writes it).
pub async fn head(db: &impl ConnectionTrait) -> StoreResult<Option<(i64, String)>> {
    let row = db
        .query_one_raw(sql(
            db,
            "SELECT seq, hash FROM audit_head WHERE id = 1",
            vec![],
        ))
        .await
        .db()?;
    row.map(|row| Ok((big(&row, "seq")?, text(&row, "hash")?)))
        .transpose()
}

/// Appends `records` after the head, in the caller's transaction.
pub async fn append(txn: &DatabaseTransaction, records: &[Record]) -> StoreResult<Vec<Stored>> {
    if records.is_empty() {
        return Ok(Vec::new());
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
    let mut stored = Vec::with_capacity(records.len());
    for record in records {
        seq += 1;
        let link = hash(seq, record, &prev);
        stored.push(Stored {
            seq,
            record: record.clone(),
            prev_hash: std::mem::replace(&mut prev, link.clone()),
            hash: link,
        });
    }
    // Many rows per statement: a batch of refusals is a few round trips,
    // not one per record (SQLite binds at most 32766 values a statement).
    for chunk in stored.chunks(ROWS_PER_INSERT) {
        let mut values = Vec::with_capacity(chunk.len() * 12);
        let mut rows = Vec::with_capacity(chunk.len());
        for s in chunk {
            let n = values.len();
            rows.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8,
                n + 9,
                n + 10,
                n + 11,
                n + 12
            ));
            let r = &s.record;
            values.extend([
                Value::from(s.seq),
                Value::from(r.at_ms),
                Value::from(r.kind.clone()),
                Value::from(r.rpc.clone()),
                Value::from(r.outcome.clone()),
                Value::from(r.actor_username.clone()),
                Value::from(r.target_kind.clone()),
                Value::from(r.target_name.clone()),
                Value::from(r.target_account.clone()),
                Value::from(r.detail.clone()),
                Value::from(s.prev_hash.clone()),
                Value::from(s.hash.clone()),
            ]);
        }
        txn.execute_raw(sql(
            txn,
            &format!(
                "INSERT INTO audit_events \
                     (seq, at_ms, kind, rpc, outcome, actor_username, target_kind, target_name, \
                      target_account, detail, prev_hash, hash) \
                 VALUES {}",
                rows.join(", ")
            ),
            values,
        ))
        .await
        .db()?;
    }
    txn.execute_raw(sql(
        txn,
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        vec![Value::from(seq), Value::from(prev)],
    ))
    .await
    .db()?;
    Ok(stored)
}

const COLUMNS: &str = "seq, at_ms, kind, rpc, outcome, actor_username, target_kind, target_name, \
                       target_account, detail, prev_hash, hash";

/// Up to `limit` records matching `filter` in `seqs` (sequence numbers:
/// from, inclusive, and before), newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &Filter,
    seqs: (Option<i64>, Option<i64>),
    limit: u64,
) -> StoreResult<Vec<Stored>> {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let mut condition = |clause: &str, value: Value| {
        values.push(value);
        conditions.push(clause.replace('?', &format!("${}", values.len())));
    };
    if let Some(seq) = seqs.0 {
        condition("seq >= ?", seq.into());
    }
    if let Some(seq) = seqs.1 {
        condition("seq < ?", seq.into());
    }
    if let Some(since) = filter.since_ms {
        condition("at_ms >= ?", since.into());
    }
    if let Some(until) = filter.until_ms {
        condition("at_ms < ?", until.into());
    }
    for (column, value) in [
        ("actor_username", &filter.actor),
        ("target_account", &filter.target_account),
        ("target_name", &filter.target_name),
        ("target_kind", &filter.target_kind),
        ("rpc", &filter.rpc),
        ("outcome", &filter.outcome),
        ("kind", &filter.kind),
    ] {
        if let Some(value) = value {
            condition(&format!("{column} = ?"), value.clone().into());
        }
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    values.push(Value::from(i64::try_from(limit).unwrap_or(i64::MAX)));
    let statement = format!(
        "SELECT {COLUMNS} FROM audit_events{clause} ORDER BY seq DESC LIMIT ${}",
        values.len()
    );
    let rows = db.query_all_raw(sql(db, &statement, values)).await.db()?;
    rows.iter().map(stored).collect()
}

/// The sequence number of the record of `account`'s latest creation: its
/// tenant's history starts there. Written in the creation's transaction,
/// so every record of an earlier tenant of the name comes before it.
/// (JSON escaping keeps a field value from faking the `op`.)
pub async fn account_created_seq(
    db: &impl ConnectionTrait,
    account: &str,
) -> StoreResult<Option<i64>> {
    let row = db
        .query_one_raw(sql(
            db,
            "SELECT MAX(seq) AS seq FROM audit_events WHERE target_account = $1 \
             AND kind = 'change' AND target_kind = 'account' AND target_name = $2 \
             AND detail LIKE '%\"op\":\"create\"%'",
            // Once per placeholder: SQLite's are positional.
            vec![Value::from(account), Value::from(account)],
        ))
        .await
        .db()?;
    Ok(match row {
        Some(row) => row.try_get::<Option<i64>>("", "seq").db()?,
        None => None,
    })
}

/// What a purge before `cutoff_ms` would remove: the last such record's
/// sequence number and hash, and how many there are. Records are removed
/// from the start of the chain up to the last record before the first one
/// that is still within the retention.
pub async fn purgeable(
    txn: &DatabaseTransaction,
    cutoff_ms: i64,
) -> StoreResult<Option<(i64, String, u64)>> {
    let row = txn
        .query_one_raw(sql(
            txn,
            "SELECT COALESCE((SELECT MIN(seq) FROM audit_events WHERE at_ms >= $1), \
                             (SELECT MAX(seq) + 1 FROM audit_events)) AS keep_from, \
                    (SELECT MIN(seq) FROM audit_events) AS first",
            vec![Value::from(cutoff_ms)],
        ))
        .await
        .db()?;
    let Some(row) = row else { return Ok(None) };
    let (Some(keep_from), Some(first)) = (
        row.try_get::<Option<i64>>("", "keep_from").db()?,
        row.try_get::<Option<i64>>("", "first").db()?,
    ) else {
        return Ok(None);
    };
    let through = keep_from - 1;
    if through < first {
        return Ok(None);
    }
    let last = txn
        .query_one_raw(sql(
            txn,
            "SELECT hash FROM audit_events WHERE seq = $1",
            vec![Value::from(through)],
        ))
        .await
        .db()?
        .ok_or_else(|| Error::internal("audit record vanished during a purge"))?;
    let count = u64::try_from(through - first + 1).unwrap_or(0);
    Ok(Some((through, text(&last, "hash")?, count)))
}

/// Removes every record up to `through`.
pub async fn delete_through(txn: &DatabaseTransaction, through: i64) -> StoreResult<u64> {
    let result = txn
        .execute_raw(sql(
            txn,
            "DELETE FROM audit_events WHERE seq <= $1",
            vec![Value::from(through)],
        ))
        .await
        .db()?;
    Ok(result.rows_affected())
}

fn stored(row: &QueryResult) -> StoreResult<Stored> {
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
}

/// Takes the head's row lock (Postgres) until the transaction ends.
pub async fn lock_head(txn: &DatabaseTransaction) -> StoreResult<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(sql(
            txn,
            "SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE",
            vec![],
        ))
        .await
        .db()?;
    }
    Ok(())
}

/// Up to `limit` records after `after` and up to `through`, in sequence
/// order.
pub async fn page(
    db: &impl ConnectionTrait,
    after: i64,
    through: i64,
    limit: u64,
) -> StoreResult<Vec<Stored>> {
    let rows = db
        .query_all_raw(sql(
            db,
            &format!(
                "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
            ),
            vec![
                Value::from(after),
                Value::from(through),
                Value::from(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        ))
        .await
        .db()?;
    rows.iter().map(stored).collect()
}
