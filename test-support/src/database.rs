//! Databases of one test's own: a SQLite file and a PostgreSQL schema, each removed when
//! dropped, whatever way the test ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::tempdir::unique_name;

/// The PostgreSQL database tests use (each test in a schema of its own).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A SQLite database file under the system's temporary directory, removed with its journals
/// (`-wal`, `-shm`, `-journal`) when dropped. The file itself is left to whoever opens it.
#[derive(Debug)]
pub struct SqliteFile(PathBuf);

impl SqliteFile {
    /// A path no other test uses, named after `tag`.
    pub fn new(tag: &str) -> Self {
        Self(std::env::temp_dir().join(format!("{}.db", unique_name(tag))))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `sqlite://PATH`, the storage URL for it.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A pool of one connection to [`POSTGRES_URL`], for setting up and checking; an error when
/// no server answers within 3 s.
pub async fn postgres_admin() -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(POSTGRES_URL)
        .await
}

/// A fresh schema in [`POSTGRES_URL`], dropped with everything in it when dropped.
#[derive(Debug)]
pub struct PostgresSchema {
    name: String,
}

impl PostgresSchema {
    /// Creates a schema named after `tag`; an error when PostgreSQL is not reachable.
    pub async fn create(tag: &str) -> Result<Self, sqlx::Error> {
        // Letters, digits and underscores only: safe to splice into SQL.
        let name = unique_name(tag).replace('-', "_");
        let admin = postgres_admin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        )))
        .execute(&admin)
        .await?;
        admin.close().await;
        Ok(Self { name })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The storage URL whose connections work in this schema: `options` is passed to the
    /// server at connection start, so every connection of a pool gets this search path.
    pub fn url(&self) -> String {
        format!("{POSTGRES_URL}?options=-c%20search_path%3D{}", self.name)
    }
}

impl Drop for PostgresSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        // Drop may run inside the test's runtime: clean up on a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(admin) = postgres_admin().await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}
