//! Throwaway Postgres databases for tests and benchmarks: created fresh on a
//! server, dropped again when the value goes out of scope (best effort, also
//! after a panic).

use sqlx::{Connection, Executor, PgConnection};
use std::time::Duration;

use super::redact_url;
use crate::store::StoreError;

/// Environment variable naming the server (any database on it) that tests
/// and benchmarks create their databases on.
pub const TEST_DATABASE_URL_ENV: &str = "SHARDLINE_TEST_DATABASE_URL";
/// The server `scripts/ensure-postgres.sh` makes sure of (trust auth).
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

const ADMIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A database `<prefix>_<uuid>` on the server of `admin_url`.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

/// `url` with its database (the path) replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{scheme}://{authority}/{database}{query}")
}

async fn admin_connection(admin_url: &str) -> Result<PgConnection, StoreError> {
    let connect = PgConnection::connect(admin_url);
    match tokio::time::timeout(ADMIN_TIMEOUT, connect).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(StoreError::Unavailable(format!(
            "cannot connect to Postgres at {}: {e}",
            redact_url(admin_url)
        ))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from Postgres at {} within {}s",
            redact_url(admin_url),
            ADMIN_TIMEOUT.as_secs()
        ))),
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    let mut conn = admin_connection(admin_url).await?;
    // FORCE ends the connections still open on it (a pool not yet closed).
    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await?;
    let _ = conn.close().await;
    Ok(())
}

impl ScratchDatabase {
    /// The server named by `SHARDLINE_TEST_DATABASE_URL`, else the local
    /// default.
    pub fn admin_url_from_env() -> String {
        std::env::var(TEST_DATABASE_URL_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TEST_DATABASE_URL.to_string())
    }

    /// Creates an empty database named `<prefix>_<uuid>`. `prefix` must be
    /// lowercase letters, digits and underscores.
    pub async fn create(admin_url: &str, prefix: &str) -> Result<Self, StoreError> {
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(StoreError::Database(format!(
                "scratch database prefix {prefix:?} must be lowercase letters, digits and _"
            )));
        }
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin_connection(admin_url).await?;
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await?;
        let _ = conn.close().await;
        Ok(ScratchDatabase {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
            dropped: false,
        })
    }

    /// URL of the scratch database (with the admin URL's credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now and reports failures (dropping the value
    /// does the same silently).
    pub async fn drop_now(mut self) -> Result<(), StoreError> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await, and may run inside a runtime: use a thread with
        // its own small runtime.
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => {
                    if let Err(e) = rt.block_on(drop_database(&admin_url, &name)) {
                        eprintln!("warning: could not drop scratch database {name}: {e}");
                    }
                }
                Err(e) => eprintln!("warning: could not drop scratch database {name}: {e}"),
            }
        });
        let _ = worker.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }
}
