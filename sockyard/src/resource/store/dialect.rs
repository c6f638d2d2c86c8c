//! The SQL dialects the store speaks, SQLite and PostgreSQL: each place where they differ is one
//! method here. What they share (double-quoted identifiers, `RETURNING *`, `NULLS FIRST|LAST`,
//! `LIMIT … OFFSET …`, cascading foreign keys) is written once, where the SQL is built.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::statement::{Bind, Statement};
use super::table::Kind;

/// A database's flavour of SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SqlDialect {
    /// SQLite: one file, one connection, `?` placeholders, booleans stored as integers.
    Sqlite,
    /// PostgreSQL: a pool, `$n` placeholders, row locks.
    Postgres,
}

impl SqlDialect {
    /// The dialect a storage URL names (`sqlite:`, `postgres:` or `postgresql:`).
    pub(super) fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    /// The URL to connect to: SQLite's file is created when missing (unless the URL names a
    /// `mode`).
    pub(super) fn connect_url(self, url: &str) -> String {
        match self {
            Self::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            Self::Sqlite | Self::Postgres => url.to_owned(),
        }
    }

    /// How many connections the pool opens, given the configured `max_connections`.
    pub(super) fn pool_size(self, max_connections: u32) -> u32 {
        match self {
            // One connection: SQLite serialises writers anyway, and this keeps every
            // transaction free of lock upgrades that would fail under concurrency.
            Self::Sqlite => 1,
            Self::Postgres => max_connections.max(1),
        }
    }

    /// What every new connection runs first, if anything.
    pub(super) fn session_setup(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => Some(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
            ),
            Self::Postgres => None,
        }
    }

    /// The placeholder of the `index`th bound value (counted from 1).
    pub(super) fn placeholder(self, index: usize) -> String {
        match self {
            Self::Sqlite => "?".to_owned(),
            Self::Postgres => format!("${index}"),
        }
    }

    /// The column type that stores values of `kind`.
    pub(super) fn column_type(self, kind: Kind) -> &'static str {
        match (kind, self) {
            (Kind::Int, Self::Sqlite) => "INTEGER",
            (Kind::Int, Self::Postgres) => "BIGINT",
            (Kind::Float, Self::Sqlite) => "REAL",
            (Kind::Float, Self::Postgres) => "DOUBLE PRECISION",
            // An integer column (SQLite has no booleans) under a name of its own, so that a
            // type change between integer and boolean is still seen.
            (Kind::Bool, Self::Sqlite) => "INT_BOOL",
            (Kind::Bool, Self::Postgres) => "BOOLEAN",
            (Kind::Text | Kind::Json, _) => "TEXT",
        }
    }

    /// The definition of the `id` column: an integer key the database assigns.
    pub(super) fn primary_key(self) -> &'static str {
        match self {
            Self::Sqlite => "\"id\" INTEGER PRIMARY KEY AUTOINCREMENT",
            Self::Postgres => "\"id\" BIGSERIAL PRIMARY KEY",
        }
    }

    /// Whether a column whose type the database reports as `stored` holds values of `kind`
    /// (PostgreSQL reports an `id` made by `BIGSERIAL` as `bigint`, an older one may be
    /// `integer`).
    pub(super) fn is_compatible(self, stored: &str, kind: Kind) -> bool {
        let stored = stored.to_ascii_uppercase();
        match self {
            Self::Sqlite => stored == self.column_type(kind),
            Self::Postgres => match kind {
                Kind::Int => stored == "BIGINT" || stored == "INTEGER",
                Kind::Float | Kind::Bool | Kind::Text | Kind::Json => {
                    stored == self.column_type(kind)
                }
            },
        }
    }

    /// The query listing `table`'s columns as (name, type) rows; no rows when it does not
    /// exist.
    pub(super) fn table_columns(self, table: &str) -> Statement {
        match self {
            // `table` is a checked identifier.
            Self::Sqlite => Statement::new(
                self,
                format!("SELECT name, type FROM pragma_table_info('{table}')"),
            ),
            Self::Postgres => {
                let mut statement = Statement::new(
                    self,
                    "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ",
                );
                statement.push_bind(Bind::Text(Some(table.to_owned())));
                statement
            }
        }
    }

    /// What ends a `SELECT` that keeps the row it reads from other writers until the
    /// transaction ends.
    pub(super) fn row_lock(self) -> &'static str {
        match self {
            // The single connection already keeps other writers out.
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// Reads the boolean column `name` of `row`.
    pub(super) fn read_bool(self, row: &AnyRow, name: &str) -> Result<Option<bool>, sqlx::Error> {
        Ok(match self {
            Self::Sqlite => row.try_get::<Option<i64>, _>(name)?.map(|i| i != 0),
            Self::Postgres => row.try_get::<Option<bool>, _>(name)?,
        })
    }

    /// Whether `err` is the database refusing a row whose foreign key names no row.
    pub(super) fn is_foreign_key_violation(self, err: &sqlx::Error) -> bool {
        // SQLite's extended result code SQLITE_CONSTRAINT_FOREIGNKEY; PostgreSQL's SQLSTATE
        // foreign_key_violation.
        let code = match self {
            Self::Sqlite => "787",
            Self::Postgres => "23503",
        };
        err.as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|c| c == code)
    }
}

/// Quotes a (checked) identifier; quoting also keeps reserved words usable. Both dialects quote
/// with double quotes.
pub(super) fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_dialect_and_connection() {
        assert_eq!(
            SqlDialect::of_url("sqlite://a.db"),
            Some(SqlDialect::Sqlite)
        );
        assert_eq!(
            SqlDialect::of_url("postgresql://h/db"),
            Some(SqlDialect::Postgres)
        );
        assert_eq!(SqlDialect::of_url("mysql://h/db"), None);
        assert_eq!(
            SqlDialect::Sqlite.connect_url("sqlite://a.db"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            SqlDialect::Sqlite.connect_url("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            SqlDialect::Sqlite.connect_url("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(
            SqlDialect::Postgres.connect_url("postgres://h/db"),
            "postgres://h/db"
        );
        assert_eq!(SqlDialect::Sqlite.pool_size(8), 1);
        assert_eq!(SqlDialect::Postgres.pool_size(0), 1);
    }

    #[test]
    fn stored_types_are_compared_per_dialect() {
        let sqlite = SqlDialect::Sqlite;
        assert!(sqlite.is_compatible("integer", Kind::Int));
        assert!(sqlite.is_compatible("INT_BOOL", Kind::Bool));
        assert!(!sqlite.is_compatible("INTEGER", Kind::Bool));
        assert!(!sqlite.is_compatible("TEXT", Kind::Float));
        let postgres = SqlDialect::Postgres;
        assert!(postgres.is_compatible("bigint", Kind::Int));
        assert!(postgres.is_compatible("integer", Kind::Int));
        assert!(postgres.is_compatible("double precision", Kind::Float));
        assert!(postgres.is_compatible("boolean", Kind::Bool));
        assert!(postgres.is_compatible("text", Kind::Json));
        assert!(!postgres.is_compatible("bigint", Kind::Bool));
    }

    #[test]
    fn table_columns_come_from_the_catalogue() {
        let sqlite = SqlDialect::Sqlite.table_columns("creature");
        assert_eq!(
            sqlite.sql,
            "SELECT name, type FROM pragma_table_info('creature')"
        );
        assert!(sqlite.binds.is_empty());
        let postgres = SqlDialect::Postgres.table_columns("creature");
        assert_eq!(
            postgres.sql,
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1"
        );
        assert_eq!(postgres.binds, [Bind::Text(Some("creature".into()))]);
    }
}
