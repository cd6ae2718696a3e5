//! Store errors, and the one place where database errors (SQLite result
//! codes, Postgres SQLSTATEs) become domain errors.

use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} not found")]
    JobNotFound(Uuid),
    #[error("shard {0} not found")]
    ShardNotFound(Uuid),
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
                // SQLite primary result codes 5 (BUSY) and 6 (LOCKED), possibly
                // extended (low byte); Postgres serialization failure and
                // deadlock.
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let sqlite_busy = code
                    .parse::<i64>()
                    .map(|c| matches!(c & 0xff, 5 | 6))
                    .unwrap_or(false);
                if sqlite_busy || code == "40001" || code == "40P01" {
                    return StoreError::Busy(db.message().to_string());
                }
                StoreError::Database(format!("{} (code {code})", db.message()))
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(err.to_string())
            }
            sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => {
                StoreError::Unavailable(err.to_string())
            }
            _ => StoreError::Database(err.to_string()),
        }
    }
}
