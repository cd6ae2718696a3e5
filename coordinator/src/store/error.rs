//! Store errors, and the one place where database errors (SQLite result
//! codes, Postgres SQLSTATEs) become domain errors.

use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} not found")]
    JobNotFound(Uuid),
    #[error("shard {0} not found")]
    ShardNotFound(Uuid),
    #[error("no schedule named {0:?}; `shardline schedule list` lists them")]
    ScheduleNotFound(String),
    /// A uniqueness or reference constraint refused the write.
    #[error("conflicting write: {0}")]
    Conflict(String),
    /// Another writer held the database longer than the busy timeout.
    #[error("database is busy (another process holds the write lock): {0}; retry shortly")]
    Busy(String),
    #[error("cannot reach the database: {0}")]
    Unavailable(String),
    /// A row the store wrote cannot be read back (edited by hand, or written
    /// by a newer version).
    #[error("corrupt {table} row: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// True when the same call may succeed if made again shortly: the
    /// database was busy, a transaction lost a serialization race or a
    /// deadlock, or the connection dropped (e.g. Postgres restarting). The
    /// HTTP layer answers these with 503, which workers retry.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Busy(_) | StoreError::Unavailable(_))
    }
}

/// Postgres SQLSTATEs that mean "try again": serialization_failure,
/// deadlock_detected, lock_not_available, query_canceled (statement timeout).
const PG_RETRY: [&str; 4] = ["40001", "40P01", "55P03", "57014"];
/// Postgres SQLSTATEs that mean the server is going away or not there yet:
/// admin_shutdown, crash_shutdown, cannot_connect_now,
/// too_many_connections, and class 08 (connection exception).
const PG_UNAVAILABLE: [&str; 4] = ["57P01", "57P02", "57P03", "53300"];

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) => {
                use sqlx::error::ErrorKind;
                match db.kind() {
                    ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::CheckViolation
                    | ErrorKind::NotNullViolation => {
                        return StoreError::Conflict(db.message().to_string())
                    }
                    _ => {}
                }
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                // SQLite primary result codes 5 (BUSY) and 6 (LOCKED), possibly
                // extended (low byte).
                let sqlite_busy = code
                    .parse::<i64>()
                    .map(|c| matches!(c & 0xff, 5 | 6))
                    .unwrap_or(false);
                if sqlite_busy || PG_RETRY.contains(&code.as_str()) {
                    return StoreError::Busy(format!("{} (code {code})", db.message()));
                }
                if code.starts_with("08") || PG_UNAVAILABLE.contains(&code.as_str()) {
                    return StoreError::Unavailable(format!(
                        "{} (code {code}); retry once the database is back",
                        db.message()
                    ));
                }
                StoreError::Database(format!("{} (code {code})", db.message()))
            }
            // The connection broke or could not be made: nothing was
            // committed by a statement that failed this way before COMMIT,
            // and the pool replaces the connection on the next call.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
            sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => {
                StoreError::Unavailable(err.to_string())
            }
            _ => StoreError::Database(err.to_string()),
        }
    }
}
