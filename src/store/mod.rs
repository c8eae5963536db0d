//! Storage: SeaORM entities and repository functions. Functions are generic
//! over `ConnectionTrait` so they run on the pool or inside a transaction.
//! Database errors are classified here and never leave as text.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod changes;
pub mod entity;
pub mod groups;
pub mod identity_providers;
pub mod listing;
pub mod lockout;
pub mod principals;
pub mod roles;
pub mod scim;
pub mod sso;
pub mod tokens;
pub mod users;

use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, RuntimeErr, SqlErr,
};

use crate::error::Error;

/// Opens the pool. SQLite gets one connection: writers never deadlock on
/// lock upgrades, and a single connection answers far faster than any
/// caller needs for an embedded deployment.
/// How the pool behaves; from the `database.*` settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub acquire_timeout: Duration,
    pub max_lifetime: Duration,
}

pub async fn connect(url: &str, pool: PoolSettings) -> Result<DatabaseConnection, Error> {
    let mut options = ConnectOptions::new(url.to_owned());
    let sqlite = url.starts_with("sqlite:");
    let statement_timeout = pool.statement_timeout.as_millis().to_string();
    let lock_timeout = pool.lock_timeout.as_millis().to_string();
    options
        .max_connections(if sqlite { 1 } else { pool.max_connections })
        .min_connections(if sqlite { 1 } else { 0 })
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(pool.acquire_timeout)
        .max_lifetime(pool.max_lifetime)
        // A stuck table or a slow plan must not hold a request (and its
        // connection) for longer than this: Postgres cancels the statement,
        // and the caller gets UNAVAILABLE. Long maintenance work lifts it
        // with `SET LOCAL` (see `without_statement_timeout`).
        .map_sqlx_postgres_opts(move |o| {
            o.options([
                ("statement_timeout", statement_timeout.as_str()),
                ("lock_timeout", lock_timeout.as_str()),
            ])
        })
        // A ping on every checkout costs a quarter of the throughput; broken
        // connections surface as errors and are replaced.
        .test_before_acquire(false)
        .sqlx_logging(false);
    Database::connect(options).await.map_err(classify)
}

/// The request-serving pool, counting the operations in flight on it
/// (statements, and transactions from `begin` to their end): those beyond
/// the connections in use are waiting for one. sqlx does not expose its
/// waiters, so this is how `authzd_db_pool_waiters` is known.
#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// One operation in flight on the pool, until dropped.
pub struct InFlight(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Db {
    pub fn new(conn: DatabaseConnection) -> Self {
        Self {
            conn,
            in_flight: std::sync::Arc::default(),
        }
    }

    pub fn enter(&self) -> InFlight {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::ops::Deref for Db {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        &self.conn
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> sea_orm::DbBackend {
        self.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: sea_orm::Statement) -> Result<sea_orm::ExecResult, DbErr> {
        let _in_flight = self.enter();
        self.conn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<sea_orm::ExecResult, DbErr> {
        let _in_flight = self.enter();
        self.conn.execute_unprepared(sql).await
    }

    async fn query_one_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> Result<Option<sea_orm::QueryResult>, DbErr> {
        let _in_flight = self.enter();
        self.conn.query_one_raw(stmt).await
    }

    async fn query_all_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> Result<Vec<sea_orm::QueryResult>, DbErr> {
        let _in_flight = self.enter();
        self.conn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.conn.support_returning()
    }
}

/// Lifts the request timeouts for the rest of a transaction (migrations,
/// purges): they may legitimately run long or wait on a lock.
pub async fn without_statement_timeout(db: &impl ConnectionTrait) -> Result<(), Error> {
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        db.execute_unprepared("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
            .await
            .map_err(classify)?;
    }
    Ok(())
}

/// Database error codes that mean "not now" rather than "not this".
fn unavailable_code(code: &str) -> bool {
    match code {
        // Postgres: admin shutdown / cannot connect now; a statement or lock
        // wait cut off by our timeouts; disk full, out of memory, too many
        // connections; the connection-exception class.
        "57P01" | "57P02" | "57P03" | "57014" | "55P03" | "53100" | "53200" | "53300" => true,
        c if c.len() == 5 && c.starts_with("08") => true,
        // SQLite (extended codes; the low byte is the primary one): busy,
        // I/O error, disk full, cannot open.
        c => c
            .parse::<i32>()
            .is_ok_and(|n| matches!(n & 0xff, 5 | 10 | 13 | 14)),
    }
}

/// True when the error means "the database did not answer", as opposed to
/// "the database refused this statement".
fn is_unavailable(err: &DbErr) -> bool {
    match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(
                e.as_ref(),
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
            ) || matches!(e.as_ref(), sqlx::Error::Database(d)
                if d.code().as_deref().is_some_and(unavailable_code))
        }
        _ => false,
    }
}

/// Logs an unavailable database once per second at most, with how many
/// errors the silence hid: a stuck table fails every request, and one line
/// per request would bury the log.
fn log_unavailable(err: &DbErr) {
    static THROTTLE: crate::telemetry::LogThrottle = crate::telemetry::LogThrottle::new();
    if let Some(suppressed) = THROTTLE.admit() {
        tracing::warn!(error = %err, suppressed, "database unavailable");
    }
}

/// Maps a database error to the domain: unavailability is reported as such,
/// everything else is internal (its text goes to the log only).
pub fn classify(err: DbErr) -> Error {
    if is_unavailable(&err) {
        log_unavailable(&err);
        Error::Unavailable
    } else if matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    ) {
        // A row this write refers to was deleted by a concurrent one: the
        // caller's target is gone, not a bug.
        Error::not_found("a record this change refers to (deleted meanwhile)")
    } else {
        Error::internal(format!("database: {err}"))
    }
}

/// Like `classify`, but a unique-constraint violation means `what` exists.
pub fn classify_conflict(err: DbErr, what: impl Into<String>) -> Error {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => Error::exists(what),
        _ => classify(err),
    }
}

/// A foreign-key violation means a referenced row vanished concurrently.
pub fn classify_missing_parent(err: DbErr, what: impl Into<String>) -> Error {
    match err.sql_err() {
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => Error::not_found(what),
        Some(SqlErr::UniqueConstraintViolation(_)) => Error::exists(what),
        _ => classify(err),
    }
}

/// A raw statement written with Postgres `$n` placeholders, for either backend.
pub(crate) fn sql(
    db: &impl sea_orm::ConnectionTrait,
    text: &str,
    values: Vec<sea_orm::Value>,
) -> sea_orm::Statement {
    let backend = db.get_database_backend();
    let text = match backend {
        sea_orm::DbBackend::Postgres => text.to_owned(),
        _ => {
            // `$n` placeholders are Postgres'; SQLite takes `?` in order.
            let mut out = String::with_capacity(text.len());
            let mut chars = text.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
                    while chars.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                    }
                    out.push('?');
                } else {
                    out.push(c);
                }
            }
            out
        }
    };
    sea_orm::Statement::from_sql_and_values(backend, text, values)
}

pub type StoreResult<T> = Result<T, Error>;

/// `?` on a `DbErr` inside store functions.
pub(crate) trait DbResultExt<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> DbResultExt<T> for Result<T, DbErr> {
    fn db(self) -> StoreResult<T> {
        self.map_err(classify)
    }
}
