//! [`SqlStore`]: runs the store's statements on SQLite or PostgreSQL through sqlx, in
//! transactions where a write reads first, and reads rows back into records.

use std::collections::BTreeMap;
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
// Every SQL string run here was built from checked identifiers and placeholders; values are
// bound.
use sqlx::{AnyPool, AssertSqlSafe, Row as _};

use super::dialect::SqlDialect;
use super::statement::{Bind, Statement};
use super::table::{self, Column, Kind};
use super::{crud, Change, Record, Scope, Store, StoreError, Updated};
use crate::resource::query::Query;
use crate::resource::schema::ResourceDef;

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        Self::Database(err.to_string())
    }
}

/// Records in SQLite or PostgreSQL through sqlx.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: SqlDialect,
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

/// The statement as sqlx runs it, its values bound in order.
fn sqlx_query(statement: &Statement) -> sqlx::query::Query<'_, sqlx::Any, AnyArguments> {
    let mut query = sqlx::query(AssertSqlSafe(statement.sql.as_str()));
    for bind in &statement.binds {
        query = match bind {
            Bind::Int(i) => query.bind(*i),
            Bind::Float(f) => query.bind(*f),
            Bind::Text(t) => query.bind(t.clone()),
            Bind::Bool(b) => query.bind(*b),
        };
    }
    query
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl SqlStore {
    /// Opens the store at `url`: `sqlite://path` (created when missing) or `postgres://…`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let Some(dialect) = SqlDialect::of_url(url) else {
            return Err(StoreError::Database(format!(
                "unsupported storage URL `{url}` (use sqlite:// or postgres://)"
            )));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(dialect.pool_size(max_connections))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if let Some(setup) = dialect.session_setup() {
                        use sqlx::Executor as _;
                        conn.execute(setup).await?;
                    }
                    Ok(())
                })
            })
            .connect(&dialect.connect_url(url))
            .await?;
        Ok(Self { pool, dialect })
    }

    /// Creates missing tables and adds new columns; refuses changes that would lose data
    /// (a removed field, a changed type). Parents must come before their children.
    async fn prepare_tables(&self, defs: &[ResourceDef]) -> Result<(), StoreError> {
        for def in defs {
            let existing = self.existing_columns(&def.name).await?;
            for statement in table::migration(self.dialect, def, &existing)? {
                sqlx_query(&statement).execute(&self.pool).await?;
            }
        }
        Ok(())
    }

    /// The columns `table` has now (name → type), none when it does not exist.
    async fn existing_columns(&self, table: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let statement = self.dialect.table_columns(table);
        let mut columns = BTreeMap::new();
        for row in sqlx_query(&statement).fetch_all(&self.pool).await? {
            let name: String = row.try_get(0)?;
            let ty: String = row.try_get(1)?;
            columns.insert(name, ty);
        }
        Ok(columns)
    }

    /// Inserts a record (its fields already validated); a parent that does not exist is
    /// [`StoreError::NotFound`].
    async fn insert(
        &self,
        def: &ResourceDef,
        fields: &Record,
        scope: &Scope,
    ) -> Result<Record, StoreError> {
        let statement = crud::insert(self.dialect, def, fields, scope, now_millis());
        match sqlx_query(&statement).fetch_one(&self.pool).await {
            Ok(row) => self.record(def, &row),
            Err(err) if self.dialect.is_foreign_key_violation(&err) => Err(StoreError::NotFound {
                resource: def.parent.clone().unwrap_or_default(),
                id: scope.parent.unwrap_or_default(),
            }),
            Err(err) => Err(err.into()),
        }
    }

    /// Reads one record.
    async fn select_one(
        &self,
        def: &ResourceDef,
        id: i64,
        scope: &Scope,
    ) -> Result<Option<Record>, StoreError> {
        let statement = crud::select_one(self.dialect, def, id, scope);
        match sqlx_query(&statement).fetch_optional(&self.pool).await? {
            Some(row) => Ok(Some(self.record(def, &row)?)),
            None => Ok(None),
        }
    }

    /// Lists records matching `query` within `scope`; also returns the total that match.
    async fn select_page(
        &self,
        def: &ResourceDef,
        query: &Query,
        scope: &Scope,
    ) -> Result<(Vec<Record>, u64), StoreError> {
        let (count, select) = crud::select_page(self.dialect, def, query, scope);
        let total: i64 = sqlx_query(&count).fetch_one(&self.pool).await?.try_get(0)?;
        let rows = sqlx_query(&select).fetch_all(&self.pool).await?;
        let records = rows
            .iter()
            .map(|row| self.record(def, row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, u64::try_from(total).unwrap_or(0)))
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
        let select = crud::select_for_update(self.dialect, def, id, scope);
        let Some(row) = sqlx_query(&select).fetch_optional(&mut *tx).await? else {
            return Err(not_found(def, id));
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
        let update = crud::update(self.dialect, def, id, actual, &fields, now_millis());
        let Some(row) = sqlx_query(&update).fetch_optional(&mut *tx).await? else {
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

    /// Deletes a record and, by cascade, every descendant (`descendants` lists their
    /// resources). Returns everything deleted, descendants first, each with its resource's
    /// name.
    async fn delete(
        &self,
        def: &ResourceDef,
        id: i64,
        scope: &Scope,
        descendants: &[&ResourceDef],
    ) -> Result<Vec<(String, Record)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let select = crud::select_one(self.dialect, def, id, scope);
        let Some(row) = sqlx_query(&select).fetch_optional(&mut *tx).await? else {
            return Err(not_found(def, id));
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
                let children = crud::select_children(self.dialect, child, parent_id);
                for row in sqlx_query(&children).fetch_all(&mut *tx).await? {
                    let record = self.record(child, &row)?;
                    if let Some(child_id) = record.get("id").and_then(Value::as_i64) {
                        frontier.push((child, child_id));
                    }
                    removed.push((child.name.clone(), record));
                }
            }
        }
        sqlx_query(&crud::delete(self.dialect, def, id))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        removed.reverse();
        removed.push((def.name.clone(), record));
        Ok(removed)
    }

    /// Reads a row into a record: system columns, then fields, with `extra` merged in; NULL
    /// fields are left out.
    fn record(&self, def: &ResourceDef, row: &AnyRow) -> Result<Record, StoreError> {
        let mut record = Map::new();
        for column in table::columns(def) {
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
            Kind::Bool => self.dialect.read_bool(row, name)?.map(Value::Bool),
            Kind::Json => row
                .try_get::<Option<String>, _>(name)?
                .map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text))),
        })
    }
}

fn not_found(def: &ResourceDef, id: i64) -> StoreError {
    StoreError::NotFound {
        resource: def.name.clone(),
        id,
    }
}
