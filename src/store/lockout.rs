//! Password failure ladders and locks (`login_ladders`), one per user and
//! source (`*`: every source not known for the user), and the sources known
//! for a user (`login_known_sources`). Single statements on the pool,
//! outside any unit of work: they leave no change record, since password
//! checks are never cached.

use sea_orm::{ConnectionTrait, Value};
use uuid::Uuid;

use super::{DbResultExt, StoreResult, sql};

/// The source of the ladder every source not known for the user shares.
pub const UNKNOWN_SOURCES: &str = "*";

/// One failure ladder: a user, and a known source or `UNKNOWN_SOURCES`.
#[derive(Debug, Clone, Copy)]
pub struct Ladder<'a> {
    pub user_id: Uuid,
    pub source: &'a str,
}

/// What a claimed attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Locked (or permanently locked): no attempt is allowed.
    Locked,
    /// This attempt is failure number `failures` since the last reset, of
    /// `total` since the last success, after `lockouts` locks.
    Attempt {
        failures: i64,
        lockouts: i64,
        total: i64,
    },
}

/// Counts an attempt as a failure *before* the password is checked, in one
/// statement, so parallel guesses each take a number and none can race
/// past the threshold. Nothing is counted while the user is locked.
/// Failures older than `reset_before_ms` start the count again.
pub async fn claim(
    db: &impl ConnectionTrait,
    ladder: Ladder<'_>,
    now_ms: i64,
    reset_before_ms: i64,
) -> StoreResult<Claim> {
    let statement = sql(
        db,
        "INSERT INTO login_ladders AS f \
             (user_id, source, failures, lockouts, total_failures, locked_until_ms, permanent, last_failure_ms) \
         VALUES ($1, $2, 1, 0, 1, NULL, FALSE, $3) \
         ON CONFLICT (user_id, source) DO UPDATE SET \
             failures = CASE WHEN f.last_failure_ms < $4 THEN 1 ELSE f.failures + 1 END, \
             lockouts = CASE WHEN f.last_failure_ms < $5 THEN 0 ELSE f.lockouts END, \
             total_failures = CASE WHEN f.last_failure_ms < $6 THEN 1 ELSE f.total_failures + 1 END, \
             last_failure_ms = $7 \
         WHERE NOT f.permanent AND (f.locked_until_ms IS NULL OR f.locked_until_ms <= $8) \
         RETURNING failures, lockouts, total_failures",
        // Each placeholder once: on SQLite they become `?` in order.
        vec![
            Value::from(ladder.user_id),
            Value::from(ladder.source),
            Value::from(now_ms),
            Value::from(reset_before_ms),
            Value::from(reset_before_ms),
            Value::from(reset_before_ms),
            Value::from(now_ms),
            Value::from(now_ms),
        ],
    );
    let row = db.query_one_raw(statement).await.db()?;
    let Some(row) = row else {
        return Ok(Claim::Locked);
    };
    let get = |column: &str| -> StoreResult<i64> {
        row.try_get::<i32>("", column)
            .map(i64::from)
            .or_else(|_| row.try_get::<i64>("", column))
            .db()
    };
    Ok(Claim::Attempt {
        failures: get("failures")?,
        lockouts: get("lockouts")?,
        total: get("total_failures")?,
    })
}

/// Gives back a claimed attempt that was not made (too many in flight).
pub async fn release(db: &impl ConnectionTrait, ladder: Ladder<'_>) -> StoreResult<()> {
    let statement = sql(
        db,
        "UPDATE login_ladders SET failures = failures - 1, total_failures = total_failures - 1 \
         WHERE user_id = $1 AND source = $2 AND failures > 0",
        vec![Value::from(ladder.user_id), Value::from(ladder.source)],
    );
    db.execute_raw(statement).await.db()?;
    Ok(())
}

/// Locks the ladder until `until_ms` (or for good), and starts the next
/// count from zero.
pub async fn lock(
    db: &impl ConnectionTrait,
    ladder: Ladder<'_>,
    until_ms: i64,
    permanent: bool,
) -> StoreResult<()> {
    let statement = sql(
        db,
        "UPDATE login_ladders SET failures = 0, lockouts = lockouts + 1, \
             locked_until_ms = $1, permanent = (permanent OR $2) \
         WHERE user_id = $3 AND source = $4",
        // Placeholders in textual order: on SQLite they become `?`.
        vec![
            Value::from(until_ms),
            Value::from(permanent),
            Value::from(ladder.user_id),
            Value::from(ladder.source),
        ],
    );
    db.execute_raw(statement).await.db()?;
    Ok(())
}

/// Forgets every failure and lock of the user, on every ladder: an unlock,
/// a new password set by an administrator. Returns whether there was any.
pub async fn clear(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<bool> {
    let statement = sql(
        db,
        "DELETE FROM login_ladders WHERE user_id = $1",
        vec![Value::from(user_id)],
    );
    Ok(db.execute_raw(statement).await.db()?.rows_affected() > 0)
}

/// Forgets one ladder's failures: a success on it.
pub async fn clear_ladder(db: &impl ConnectionTrait, ladder: Ladder<'_>) -> StoreResult<()> {
    let statement = sql(
        db,
        "DELETE FROM login_ladders WHERE user_id = $1 AND source = $2",
        vec![Value::from(ladder.user_id), Value::from(ladder.source)],
    );
    db.execute_raw(statement).await.db()?;
    Ok(())
}

/// Whether `source` signed in as the user at `since_ms` or later.
pub async fn is_known(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    source: &str,
    since_ms: i64,
) -> StoreResult<bool> {
    let statement = sql(
        db,
        "SELECT 1 AS known FROM login_known_sources \
         WHERE user_id = $1 AND source = $2 AND last_success_ms >= $3",
        vec![
            Value::from(user_id),
            Value::from(source),
            Value::from(since_ms),
        ],
    );
    Ok(db.query_one_raw(statement).await.db()?.is_some())
}

/// Remembers that `source` signed in as the user at `now_ms`.
pub async fn remember(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    source: &str,
    now_ms: i64,
) -> StoreResult<()> {
    let statement = sql(
        db,
        "INSERT INTO login_known_sources (user_id, source, last_success_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, source) DO UPDATE SET last_success_ms = $4",
        vec![
            Value::from(user_id),
            Value::from(source),
            Value::from(now_ms),
            Value::from(now_ms),
        ],
    );
    db.execute_raw(statement).await.db()?;
    Ok(())
}

/// Forgets sources that last signed in before `before_ms`, and ladders
/// of forgotten sources with no failure since then.
pub async fn forget_before(db: &impl ConnectionTrait, before_ms: i64) -> StoreResult<u64> {
    let sources = sql(
        db,
        "DELETE FROM login_known_sources WHERE last_success_ms < $1",
        vec![Value::from(before_ms)],
    );
    let forgotten = db.execute_raw(sources).await.db()?.rows_affected();
    let ladders = sql(
        db,
        "DELETE FROM login_ladders WHERE source <> '*' AND last_failure_ms < $1 \
         AND NOT permanent AND (locked_until_ms IS NULL OR locked_until_ms < $2)",
        vec![Value::from(before_ms), Value::from(before_ms)],
    );
    db.execute_raw(ladders).await.db()?;
    Ok(forgotten)
}

/// The failures and lock of the user's ladder for unknown sources (what a
/// new device meets), if any are recorded.
pub async fn state(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> StoreResult<Option<crate::model::LockState>> {
    let statement = sql(
        db,
        "SELECT failures, locked_until_ms, permanent FROM login_ladders \
         WHERE user_id = $1 AND source = '*'",
        vec![Value::from(user_id)],
    );
    let Some(row) = db.query_one_raw(statement).await.db()? else {
        return Ok(None);
    };
    let failures = row
        .try_get::<i32>("", "failures")
        .map(i64::from)
        .or_else(|_| row.try_get::<i64>("", "failures"))
        .db()?;
    let until: Option<i64> = row.try_get("", "locked_until_ms").db()?;
    let permanent: bool = row.try_get("", "permanent").db()?;
    Ok(Some(crate::model::LockState {
        failures,
        locked_until: until.and_then(chrono::DateTime::from_timestamp_millis),
        permanent,
    }))
}
