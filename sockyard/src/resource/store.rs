//! Storage of resource records in SQLite (a file, WAL; the embedded default) or PostgreSQL (by
//! URL), through sqlx: tables created and migrated from the declarations, writes in
//! transactions, optimistic concurrency on `version`.
//!
//! Every table has `id` (integer key), `version`, and, as declared, `ctime`/`mtime`, `owner`,
//! `<parent>_id` (a foreign key) and `extra` (JSON text of undeclared fields); then one column
//! per declared field. Column and table names come only from checked declarations and values
//! are always bound, never spliced into SQL.

use std::collections::HashMap;
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
// Every SQL string here is built from checked identifiers and placeholders; values are bound.
use sqlx::{AnyPool, AssertSqlSafe, Row as _};
use thiserror::Error;

use super::query::{Filter, Op, Query};
use super::schema::{FieldType, ResourceDef};
use crate::error::ApiError;

/// A stored record: a JSON object with `id`, `version` and the fields.
pub type Record = Map<String, Value>;

/// Why a storage operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No record with that id.
    #[error("{resource} {id} does not exist")]
    NotFound {
        /// The resource.
        resource: String,
        /// The id.
        id: i64,
    },
    /// The record changed since the version the caller named.
    #[error("{resource} {id} is at version {actual}, not {expected}")]
    Conflict {
        /// The resource.
        resource: String,
        /// The id.
        id: i64,
        /// The version the caller named.
        expected: i64,
        /// The version stored.
        actual: i64,
    },
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(String),
    /// The declarations do not fit the existing tables in a way that would lose data.
    #[error("cannot migrate table `{table}`: {message}")]
    Migration {
        /// The table.
        table: String,
        /// What would be lost.
        message: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        Self::Database(err.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// How a column is stored and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Text,
    Bool,
    Json,
}

impl Kind {
    fn of(ty: FieldType) -> Self {
        match ty {
            FieldType::String | FieldType::Enum => Self::Text,
            FieldType::Integer | FieldType::Timestamp => Self::Int,
            FieldType::Number => Self::Float,
            FieldType::Boolean => Self::Bool,
            FieldType::Array | FieldType::Object => Self::Json,
        }
    }

    fn sql_type(self, dialect: Dialect) -> &'static str {
        match (self, dialect) {
            (Self::Int, Dialect::Sqlite) => "INTEGER",
            (Self::Int, Dialect::Postgres) => "BIGINT",
            (Self::Float, Dialect::Sqlite) => "REAL",
            (Self::Float, Dialect::Postgres) => "DOUBLE PRECISION",
            // An integer column (SQLite has no booleans) under a name of its own, so that a
            // type change between integer and boolean is still seen.
            (Self::Bool, Dialect::Sqlite) => "INT_BOOL",
            (Self::Bool, Dialect::Postgres) => "BOOLEAN",
            (Self::Text | Self::Json, _) => "TEXT",
        }
    }
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

/// A value to bind; NULLs keep their type (PostgreSQL checks parameter types).
#[derive(Debug, Clone, PartialEq)]
enum Bind {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

/// A statement and its values.
#[derive(Debug, Default)]
struct Statement {
    sql: String,
    binds: Vec<Bind>,
}

impl Statement {
    fn push(&mut self, dialect: Dialect, bind: Bind) {
        self.binds.push(bind);
        match dialect {
            Dialect::Sqlite => self.sql.push('?'),
            Dialect::Postgres => {
                self.sql.push('$');
                self.sql.push_str(&self.binds.len().to_string());
            }
        }
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.sql.as_str()));
        for bind in &self.binds {
            query = match bind {
                Bind::Int(i) => query.bind(*i),
                Bind::Float(f) => query.bind(*f),
                Bind::Text(t) => query.bind(t.clone()),
                Bind::Bool(b) => query.bind(*b),
            };
        }
        query
    }
}

fn quote(name: &str) -> String {
    // Names are checked identifiers; quoting also keeps reserved words usable.
    format!("\"{name}\"")
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A change applied inside an update's transaction: the stored record in, the new fields out
/// (or a validation error, which rolls the transaction back).
pub type Change<'a> = Box<dyn FnOnce(&Record) -> Result<Record, ApiError> + Send + 'a>;

/// What an update ends in: the record before and after, or the change's own refusal.
pub type Updated = Result<(Record, Record), ApiError>;

/// Where records live. [`SqlStore`] keeps them in SQLite or PostgreSQL; another implementation
/// may keep them anywhere that offers the same guarantees: each write atomic, `version` raised
/// by one on every change and checked when the caller names one, children removed with their
/// parent.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Creates or migrates the storage for `defs` (parents first); refuses a change that would
    /// lose data.
    fn prepare<'a>(&'a self, defs: &'a [ResourceDef]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Inserts a record with `version` 1 (and `ctime`/`mtime`, owner and parent as declared).
    fn create<'a>(
        &'a self,
        def: &'a ResourceDef,
        fields: &'a Record,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Record, StoreError>>;

    /// The record `id`, if it exists within `scope`.
    fn get<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;

    /// One page of the records matching `query` within `scope`, and how many match in all.
    fn list<'a>(
        &'a self,
        def: &'a ResourceDef,
        query: &'a Query,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<(Vec<Record>, u64), StoreError>>;

    /// Replaces record `id`'s fields with what `change` makes of it, in one transaction; fails
    /// with [`StoreError::Conflict`] when `expected_version` is given and is not the stored one.
    /// Returns the record before and after.
    fn update<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        expected_version: Option<i64>,
        scope: &'a Scope,
        change: Change<'a>,
    ) -> BoxFuture<'a, Result<Updated, StoreError>>;

    /// Deletes record `id` and, first, its descendants (`descendants` lists their resources,
    /// each after its parent). Returns what was removed, the record itself last.
    fn destroy<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        scope: &'a Scope,
        descendants: &'a [&'a ResourceDef],
    ) -> BoxFuture<'a, Result<Vec<(String, Record)>, StoreError>>;
}

/// Records in SQLite or PostgreSQL through sqlx.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
}

impl Store for SqlStore {
    fn prepare<'a>(&'a self, defs: &'a [ResourceDef]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.prepare_tables(defs))
    }

    fn create<'a>(
        &'a self,
        def: &'a ResourceDef,
        fields: &'a Record,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Record, StoreError>> {
        Box::pin(self.insert(def, fields, scope))
    }

    fn get<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(self.select_one(def, id, scope))
    }

    fn list<'a>(
        &'a self,
        def: &'a ResourceDef,
        query: &'a Query,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<(Vec<Record>, u64), StoreError>> {
        Box::pin(self.select_page(def, query, scope))
    }

    fn update<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        expected_version: Option<i64>,
        scope: &'a Scope,
        change: Change<'a>,
    ) -> BoxFuture<'a, Result<Updated, StoreError>> {
        Box::pin(self.change(def, id, expected_version, scope, change))
    }

    fn destroy<'a>(
        &'a self,
        def: &'a ResourceDef,
        id: i64,
        scope: &'a Scope,
        descendants: &'a [&'a ResourceDef],
    ) -> BoxFuture<'a, Result<Vec<(String, Record)>, StoreError>> {
        Box::pin(self.delete(def, id, scope, descendants))
    }
}

/// Limits a list or a lookup to some records: an owner's, or one parent's children.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only records with this owner.
    pub owner: Option<Value>,
    /// Only children of this parent id.
    pub parent: Option<i64>,
}

impl SqlStore {
    /// Opens the store at `url`: `sqlite://path` (created when missing) or `postgres://…`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(StoreError::Database(format!(
                "unsupported storage URL `{url}` (use sqlite:// or postgres://)"
            )));
        };
        let (url, connections) = match dialect {
            // One connection: SQLite serialises writers anyway, and this keeps every
            // transaction free of lock upgrades that would fail under concurrency.
            Dialect::Sqlite => {
                let separator = if url.contains('?') { '&' } else { '?' };
                let url = if url.contains("mode=") {
                    url.to_owned()
                } else {
                    format!("{url}{separator}mode=rwc")
                };
                (url, 1)
            }
            Dialect::Postgres => (url.to_owned(), max_connections.max(1)),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        use sqlx::Executor as _;
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Self { pool, dialect })
    }

    fn columns(&self, def: &ResourceDef) -> Vec<Column> {
        let mut columns = vec![
            Column {
                name: "id".into(),
                kind: Kind::Int,
            },
            Column {
                name: "version".into(),
                kind: Kind::Int,
            },
        ];
        if def.timestamps {
            columns.push(Column {
                name: "ctime".into(),
                kind: Kind::Int,
            });
            columns.push(Column {
                name: "mtime".into(),
                kind: Kind::Int,
            });
        }
        if def.owner.is_some() {
            columns.push(Column {
                name: "owner".into(),
                kind: Kind::Text,
            });
        }
        if let Some(parent) = def.parent_column() {
            columns.push(Column {
                name: parent,
                kind: Kind::Int,
            });
        }
        if def.extra_fields {
            columns.push(Column {
                name: "extra".into(),
                kind: Kind::Json,
            });
        }
        for (name, field) in &def.fields {
            columns.push(Column {
                name: name.clone(),
                kind: Kind::of(field.ty),
            });
        }
        columns
    }

    /// Creates missing tables and adds new columns; refuses changes that would lose data
    /// (a removed field, a changed type). Parents must come before their children.
    async fn prepare_tables(&self, defs: &[ResourceDef]) -> Result<(), StoreError> {
        for def in defs {
            let table = &def.name;
            let existing = self.existing_columns(table).await?;
            if existing.is_empty() {
                self.create_table(def).await?;
                continue;
            }
            let wanted = self.columns(def);
            for column in &wanted {
                match existing.get(&column.name) {
                    None if column.name == "id" || column.name == "version" => {
                        return Err(StoreError::Migration {
                            table: table.clone(),
                            message: format!(
                                "it has no `{}` column: it was not made by Sockyard",
                                column.name
                            ),
                        });
                    }
                    None => {
                        let sql = format!(
                            "ALTER TABLE {} ADD COLUMN {} {}",
                            quote(table),
                            quote(&column.name),
                            self.column_definition(def, column)
                        );
                        sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await?;
                    }
                    Some(declared) if !self.same_type(declared, column.kind) => {
                        return Err(StoreError::Migration {
                            table: table.clone(),
                            message: format!(
                                "column `{}` holds {declared} but the declaration now wants {}; changing it could lose data — migrate it yourself",
                                column.name,
                                column.kind.sql_type(self.dialect)
                            ),
                        });
                    }
                    Some(_) => {}
                }
            }
            for name in existing.keys() {
                if !wanted.iter().any(|c| &c.name == name) {
                    return Err(StoreError::Migration {
                        table: table.clone(),
                        message: format!(
                            "column `{name}` is no longer declared; dropping it would lose data — declare it again, or drop it yourself"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn same_type(&self, stored: &str, kind: Kind) -> bool {
        let stored = stored.to_ascii_uppercase();
        let wanted = kind.sql_type(self.dialect);
        match self.dialect {
            Dialect::Sqlite => stored == wanted || (kind == Kind::Int && stored == "INTEGER"),
            Dialect::Postgres => match kind {
                Kind::Int => stored == "BIGINT" || stored == "INTEGER",
                Kind::Float => stored == "DOUBLE PRECISION",
                Kind::Bool => stored == "BOOLEAN",
                Kind::Text | Kind::Json => stored == "TEXT",
            },
        }
    }

    fn column_definition(&self, def: &ResourceDef, column: &Column) -> String {
        let base = column.kind.sql_type(self.dialect).to_owned();
        match (&def.parent, def.parent_column()) {
            (Some(parent), Some(parent_column)) if parent_column == column.name => {
                format!(
                    "{base} REFERENCES {}(\"id\") ON DELETE CASCADE",
                    quote(parent)
                )
            }
            _ => base,
        }
    }

    async fn create_table(&self, def: &ResourceDef) -> Result<(), StoreError> {
        let id = match self.dialect {
            Dialect::Sqlite => "\"id\" INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "\"id\" BIGSERIAL PRIMARY KEY",
        };
        let mut parts = vec![id.to_owned()];
        for column in self.columns(def).iter().skip(1) {
            let mut part = format!(
                "{} {}",
                quote(&column.name),
                self.column_definition(def, column)
            );
            if column.name == "version"
                || def.parent_column().as_deref() == Some(column.name.as_str())
            {
                part.push_str(" NOT NULL");
            }
            parts.push(part);
        }
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote(&def.name),
            parts.join(", ")
        );
        sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await?;
        if let Some(parent) = def.parent_column() {
            let sql = format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                quote(&format!("{}_{parent}", def.name)),
                quote(&def.name),
                quote(&parent)
            );
            sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn existing_columns(&self, table: &str) -> Result<HashMap<String, String>, StoreError> {
        let rows = match self.dialect {
            Dialect::Sqlite => {
                let sql = format!("SELECT name, type FROM pragma_table_info('{table}')");
                sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await?
            }
            Dialect::Postgres => {
                sqlx::query("SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1")
                    .bind(table)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut columns = HashMap::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            let ty: String = row.try_get(1)?;
            columns.insert(name, ty);
        }
        Ok(columns)
    }

    /// Inserts a record (its fields already validated).
    async fn insert(
        &self,
        def: &ResourceDef,
        fields: &Record,
        scope: &Scope,
    ) -> Result<Record, StoreError> {
        let now = now_millis();
        let mut names = vec!["version".to_owned()];
        let mut binds = vec![Bind::Int(Some(1))];
        if def.timestamps {
            names.extend(["ctime".to_owned(), "mtime".to_owned()]);
            binds.extend([Bind::Int(Some(now)), Bind::Int(Some(now))]);
        }
        if def.owner.is_some() {
            names.push("owner".to_owned());
            binds.push(scope.owner.as_ref().map_or(Bind::Text(None), owner_bind));
        }
        if let Some(parent) = def.parent_column() {
            names.push(parent);
            binds.push(Bind::Int(scope.parent));
        }
        let (field_names, field_binds) = self.field_values(def, fields);
        names.extend(field_names);
        binds.extend(field_binds);
        let columns: Vec<String> = names.iter().map(|n| quote(n)).collect();
        let mut statement = Statement {
            sql: format!(
                "INSERT INTO {} ({}) VALUES (",
                quote(&def.name),
                columns.join(", ")
            ),
            binds: Vec::new(),
        };
        for (i, bind) in binds.into_iter().enumerate() {
            if i > 0 {
                statement.sql.push_str(", ");
            }
            statement.push(self.dialect, bind);
        }
        statement.sql.push_str(") RETURNING *");
        let result = statement.query().fetch_one(&self.pool).await;
        match result {
            Ok(row) => self.record(def, &row),
            Err(err) if is_foreign_key_error(&err) => Err(StoreError::NotFound {
                resource: def.parent.clone().unwrap_or_default(),
                id: scope.parent.unwrap_or_default(),
            }),
            Err(err) => Err(err.into()),
        }
    }

    /// The column names and binds for a record's declared fields (and `extra`).
    fn field_values(&self, def: &ResourceDef, fields: &Record) -> (Vec<String>, Vec<Bind>) {
        let mut names = Vec::new();
        let mut binds = Vec::new();
        for (name, field) in &def.fields {
            names.push(name.clone());
            binds.push(to_bind(Kind::of(field.ty), fields.get(name)));
        }
        if def.extra_fields {
            let extra: Map<String, Value> = fields
                .iter()
                .filter(|(k, _)| !def.fields.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            names.push("extra".to_owned());
            binds.push(Bind::Text(
                (!extra.is_empty()).then(|| Value::Object(extra).to_string()),
            ));
        }
        (names, binds)
    }

    /// Reads one record.
    async fn select_one(
        &self,
        def: &ResourceDef,
        id: i64,
        scope: &Scope,
    ) -> Result<Option<Record>, StoreError> {
        let mut statement = Statement {
            sql: format!("SELECT * FROM {} WHERE \"id\" = ", quote(&def.name)),
            ..Statement::default()
        };
        statement.push(self.dialect, Bind::Int(Some(id)));
        self.push_scope(def, scope, &mut statement);
        match statement.query().fetch_optional(&self.pool).await? {
            Some(row) => Ok(Some(self.record(def, &row)?)),
            None => Ok(None),
        }
    }

    fn push_scope(&self, def: &ResourceDef, scope: &Scope, statement: &mut Statement) {
        if let Some(owner) = &scope.owner {
            statement.sql.push_str(" AND \"owner\" = ");
            statement.push(self.dialect, owner_bind(owner));
        }
        if let (Some(parent), Some(column)) = (scope.parent, def.parent_column()) {
            statement
                .sql
                .push_str(&format!(" AND {} = ", quote(&column)));
            statement.push(self.dialect, Bind::Int(Some(parent)));
        }
    }

    /// Lists records matching `query` within `scope`; also returns the total that match.
    async fn select_page(
        &self,
        def: &ResourceDef,
        query: &Query,
        scope: &Scope,
    ) -> Result<(Vec<Record>, u64), StoreError> {
        let kinds: HashMap<String, Kind> = self
            .columns(def)
            .into_iter()
            .map(|c| (c.name, c.kind))
            .collect();
        let mut filter = Statement {
            sql: " WHERE 1 = 1".to_owned(),
            ..Statement::default()
        };
        self.push_scope(def, scope, &mut filter);
        for condition in &query.filters {
            let kind = kinds.get(&condition.column).copied().unwrap_or(Kind::Text);
            self.push_filter(condition, kind, &mut filter);
        }
        let count_sql = format!("SELECT COUNT(*) FROM {}{}", quote(&def.name), filter.sql);
        let count = Statement {
            sql: count_sql,
            binds: filter.binds.clone(),
        };
        let total: i64 = count.query().fetch_one(&self.pool).await?.try_get(0)?;

        let mut select = filter;
        if let Some((key, after_id)) = &query.after {
            match query.sort.first() {
                None => {
                    select.sql.push_str(" AND \"id\" > ");
                    select.push(self.dialect, Bind::Int(Some(*after_id)));
                }
                Some((column, descending)) => {
                    // Ascending order puts NULLs last, descending first (the exact reverse);
                    // ties go by id. The condition selects what follows (key, id) in it.
                    let kind = kinds.get(column).copied().unwrap_or(Kind::Text);
                    let quoted = quote(column);
                    match (key.is_null(), *descending) {
                        (true, false) => {
                            select
                                .sql
                                .push_str(&format!(" AND ({quoted} IS NULL AND \"id\" > "));
                            select.push(self.dialect, Bind::Int(Some(*after_id)));
                            select.sql.push(')');
                        }
                        (true, true) => {
                            select
                                .sql
                                .push_str(&format!(" AND (({quoted} IS NULL AND \"id\" > "));
                            select.push(self.dialect, Bind::Int(Some(*after_id)));
                            select.sql.push_str(&format!(") OR {quoted} IS NOT NULL)"));
                        }
                        (false, descending) => {
                            let op = if descending { "<" } else { ">" };
                            select.sql.push_str(&format!(" AND ({quoted} {op} "));
                            select.push(self.dialect, to_bind(kind, Some(key)));
                            select.sql.push_str(&format!(" OR ({quoted} = "));
                            select.push(self.dialect, to_bind(kind, Some(key)));
                            select.sql.push_str(" AND \"id\" > ");
                            select.push(self.dialect, Bind::Int(Some(*after_id)));
                            select.sql.push(')');
                            if !descending {
                                select.sql.push_str(&format!(" OR {quoted} IS NULL"));
                            }
                            select.sql.push(')');
                        }
                    }
                }
            }
        }
        let mut order: Vec<String> = query
            .sort
            .iter()
            .map(|(column, descending)| {
                format!(
                    "{} {}",
                    quote(column),
                    if *descending {
                        "DESC NULLS FIRST"
                    } else {
                        "ASC NULLS LAST"
                    }
                )
            })
            .collect();
        order.push("\"id\" ASC".to_owned());
        let sql = format!(
            "SELECT * FROM {}{} ORDER BY {} LIMIT ",
            quote(&def.name),
            select.sql,
            order.join(", ")
        );
        select.sql = sql;
        select.push(
            self.dialect,
            Bind::Int(Some(i64::try_from(query.limit).unwrap_or(i64::MAX))),
        );
        select.sql.push_str(" OFFSET ");
        select.push(
            self.dialect,
            Bind::Int(Some(i64::try_from(query.skip).unwrap_or(i64::MAX))),
        );
        let rows = select.query().fetch_all(&self.pool).await?;
        let records = rows
            .iter()
            .map(|row| self.record(def, row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, u64::try_from(total).unwrap_or(0)))
    }

    fn push_filter(&self, condition: &Filter, kind: Kind, statement: &mut Statement) {
        let column = quote(&condition.column);
        let value = condition.values.first();
        let null = value.is_none_or(Value::is_null);
        match condition.op {
            Op::Eq if null => statement.sql.push_str(&format!(" AND {column} IS NULL")),
            Op::Ne if null => statement
                .sql
                .push_str(&format!(" AND {column} IS NOT NULL")),
            Op::In | Op::Nin => {
                let not = if condition.op == Op::Nin { " NOT" } else { "" };
                if condition.values.is_empty() {
                    statement
                        .sql
                        .push_str(if not.is_empty() { " AND 1 = 0" } else { "" });
                    return;
                }
                // As with `<>`, a missing value is "not in" any list.
                let or_null = if not.is_empty() {
                    String::new()
                } else {
                    format!("{column} IS NULL OR ")
                };
                statement
                    .sql
                    .push_str(&format!(" AND ({or_null}{column}{not} IN ("));
                for (i, value) in condition.values.iter().enumerate() {
                    if i > 0 {
                        statement.sql.push_str(", ");
                    }
                    statement.push(self.dialect, to_bind(kind, Some(value)));
                }
                statement.sql.push_str("))");
            }
            op => {
                let symbol = match op {
                    Op::Eq => "=",
                    Op::Ne => "<>",
                    Op::Lt => "<",
                    Op::Lte => "<=",
                    Op::Gt => ">",
                    _ => ">=",
                };
                // `<>` leaves out NULLs in SQL; a value that is NULL is "not equal" too.
                if op == Op::Ne {
                    statement
                        .sql
                        .push_str(&format!(" AND ({column} IS NULL OR {column} <> "));
                    statement.push(self.dialect, to_bind(kind, value));
                    statement.sql.push(')');
                } else {
                    statement.sql.push_str(&format!(" AND {column} {symbol} "));
                    statement.push(self.dialect, to_bind(kind, value));
                }
            }
        }
    }

    /// Replaces a record's fields (the new record is built by `change` from the stored one)
    /// if it is still at `expected_version` (when given). Returns the stored record before and
    /// after.
    async fn change(
        &self,
        def: &ResourceDef,
        id: i64,
        expected_version: Option<i64>,
        scope: &Scope,
        change: Change<'_>,
    ) -> Result<Updated, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut select = Statement {
            sql: format!("SELECT * FROM {} WHERE \"id\" = ", quote(&def.name)),
            ..Statement::default()
        };
        select.push(self.dialect, Bind::Int(Some(id)));
        self.push_scope(def, scope, &mut select);
        if self.dialect == Dialect::Postgres {
            select.sql.push_str(" FOR UPDATE");
        }
        let Some(row) = select.query().fetch_optional(&mut *tx).await? else {
            return Err(StoreError::NotFound {
                resource: def.name.clone(),
                id,
            });
        };
        let before = self.record(def, &row)?;
        let actual = before.get("version").and_then(Value::as_i64).unwrap_or(0);
        if let Some(expected) = expected_version {
            if expected != actual {
                return Err(StoreError::Conflict {
                    resource: def.name.clone(),
                    id,
                    expected,
                    actual,
                });
            }
        }
        let fields = match change(&before) {
            Ok(fields) => fields,
            Err(err) => return Ok(Err(err)),
        };
        let (names, binds) = self.field_values(def, &fields);
        let mut statement = Statement {
            sql: format!(
                "UPDATE {} SET \"version\" = \"version\" + 1",
                quote(&def.name)
            ),
            ..Statement::default()
        };
        if def.timestamps {
            statement.sql.push_str(", \"mtime\" = ");
            statement.push(self.dialect, Bind::Int(Some(now_millis())));
        }
        for (name, bind) in names.iter().zip(binds) {
            statement.sql.push_str(&format!(", {} = ", quote(name)));
            statement.push(self.dialect, bind);
        }
        statement.sql.push_str(" WHERE \"id\" = ");
        statement.push(self.dialect, Bind::Int(Some(id)));
        statement.sql.push_str(" AND \"version\" = ");
        statement.push(self.dialect, Bind::Int(Some(actual)));
        statement.sql.push_str(" RETURNING *");
        let Some(row) = statement.query().fetch_optional(&mut *tx).await? else {
            return Err(StoreError::Conflict {
                resource: def.name.clone(),
                id,
                expected: actual,
                actual: actual + 1,
            });
        };
        let after = self.record(def, &row)?;
        tx.commit().await?;
        Ok(Ok((before, after)))
    }

    /// Deletes a record and, through `children` (resource, its children…), every descendant.
    /// Returns everything deleted, descendants first, each with its resource's name.
    async fn delete(
        &self,
        def: &ResourceDef,
        id: i64,
        scope: &Scope,
        descendants: &[&ResourceDef],
    ) -> Result<Vec<(String, Record)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut select = Statement {
            sql: format!("SELECT * FROM {} WHERE \"id\" = ", quote(&def.name)),
            ..Statement::default()
        };
        select.push(self.dialect, Bind::Int(Some(id)));
        self.push_scope(def, scope, &mut select);
        let Some(row) = select.query().fetch_optional(&mut *tx).await? else {
            return Err(StoreError::NotFound {
                resource: def.name.clone(),
                id,
            });
        };
        let record = self.record(def, &row)?;
        // Collect descendants level by level (the database deletes them by cascade; the
        // records are needed for the change events).
        let mut removed = Vec::new();
        let mut frontier: Vec<(&ResourceDef, i64)> = vec![(def, id)];
        while let Some((parent, parent_id)) = frontier.pop() {
            for child in descendants
                .iter()
                .filter(|d| d.parent.as_deref() == Some(parent.name.as_str()))
            {
                let column = child.parent_column().unwrap_or_default();
                let mut statement = Statement {
                    sql: format!(
                        "SELECT * FROM {} WHERE {} = ",
                        quote(&child.name),
                        quote(&column)
                    ),
                    ..Statement::default()
                };
                statement.push(self.dialect, Bind::Int(Some(parent_id)));
                for row in statement.query().fetch_all(&mut *tx).await? {
                    let record = self.record(child, &row)?;
                    if let Some(child_id) = record.get("id").and_then(Value::as_i64) {
                        frontier.push((child, child_id));
                    }
                    removed.push((child.name.clone(), record));
                }
            }
        }
        let mut delete = Statement {
            sql: format!("DELETE FROM {} WHERE \"id\" = ", quote(&def.name)),
            ..Statement::default()
        };
        delete.push(self.dialect, Bind::Int(Some(id)));
        delete.query().execute(&mut *tx).await?;
        tx.commit().await?;
        removed.reverse();
        removed.push((def.name.clone(), record));
        Ok(removed)
    }

    /// Reads a row into a record: system columns, then fields, with `extra` merged in; NULL
    /// fields are left out.
    fn record(&self, def: &ResourceDef, row: &AnyRow) -> Result<Record, StoreError> {
        let mut record = Map::new();
        for column in self.columns(def) {
            let value = self.read(row, &column)?;
            if column.name == "extra" {
                if let Some(Value::Object(extra)) = value {
                    record.extend(extra);
                }
                continue;
            }
            if let Some(value) = value {
                record.insert(column.name, value);
            }
        }
        Ok(record)
    }

    fn read(&self, row: &AnyRow, column: &Column) -> Result<Option<Value>, StoreError> {
        let name = column.name.as_str();
        Ok(match column.kind {
            Kind::Int => row.try_get::<Option<i64>, _>(name)?.map(Value::from),
            Kind::Float => row
                .try_get::<Option<f64>, _>(name)?
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            Kind::Text => row.try_get::<Option<String>, _>(name)?.map(Value::String),
            Kind::Bool => match self.dialect {
                Dialect::Sqlite => row
                    .try_get::<Option<i64>, _>(name)?
                    .map(|i| Value::Bool(i != 0)),
                Dialect::Postgres => row.try_get::<Option<bool>, _>(name)?.map(Value::Bool),
            },
            Kind::Json => row
                .try_get::<Option<String>, _>(name)?
                .map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text))),
        })
    }
}

fn owner_bind(owner: &Value) -> Bind {
    match owner {
        Value::String(text) => Bind::Text(Some(text.clone())),
        other => Bind::Text(Some(other.to_string())),
    }
}

fn to_bind(kind: Kind, value: Option<&Value>) -> Bind {
    let value = value.filter(|v| !v.is_null());
    match kind {
        Kind::Int => Bind::Int(value.and_then(Value::as_i64)),
        Kind::Float => Bind::Float(value.and_then(Value::as_f64)),
        Kind::Bool => Bind::Bool(value.and_then(Value::as_bool)),
        Kind::Text => Bind::Text(value.map(|v| match v {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })),
        Kind::Json => Bind::Text(value.map(Value::to_string)),
    }
}

fn is_foreign_key_error(err: &sqlx::Error) -> bool {
    let text = err.to_string();
    text.contains("FOREIGN KEY") || text.contains("foreign key")
}
