//! The statements that read and write records: insert, select one, select a page (filters,
//! sort, limit, skip, cursor) and count it, update under a version check, and delete with the
//! reads a cascade needs (pure: the caller runs them).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::dialect::{quote, SqlDialect};
use super::statement::{Bind, Statement};
use super::table::{columns, Kind};
use super::{Record, Scope};
use crate::resource::query::{Filter, Op, Query};
use crate::resource::schema::ResourceDef;

/// `INSERT` of a new record at version 1 with `fields` (already validated), the owner and
/// parent of `scope`, and `now` as `ctime` and `mtime`; returns the row.
pub(super) fn insert(
    dialect: SqlDialect,
    def: &ResourceDef,
    fields: &Record,
    scope: &Scope,
    now: i64,
) -> Statement {
    let mut names = vec!["version".to_owned()];
    let mut binds = vec![Bind::int(1)];
    if def.timestamps {
        names.extend(["ctime".to_owned(), "mtime".to_owned()]);
        binds.extend([Bind::int(now), Bind::int(now)]);
    }
    if def.owner.is_some() {
        names.push("owner".to_owned());
        binds.push(scope.owner.as_ref().map_or(Bind::Text(None), Bind::owner));
    }
    if let Some(parent) = def.parent_column() {
        names.push(parent);
        binds.push(Bind::Int(scope.parent));
    }
    for (name, bind) in field_values(def, fields) {
        names.push(name);
        binds.push(bind);
    }
    let columns: Vec<String> = names.iter().map(|n| quote(n)).collect();
    let mut statement = Statement::new(
        dialect,
        format!(
            "INSERT INTO {} ({}) VALUES (",
            quote(&def.name),
            columns.join(", ")
        ),
    );
    statement.push_binds(binds).push_sql(") RETURNING *");
    statement
}

/// `SELECT` of record `id` within `scope`.
pub(super) fn select_one(
    dialect: SqlDialect,
    def: &ResourceDef,
    id: i64,
    scope: &Scope,
) -> Statement {
    let mut statement = Statement::new(
        dialect,
        format!("SELECT * FROM {} WHERE \"id\" = ", quote(&def.name)),
    );
    statement.push_bind(Bind::int(id));
    push_scope(def, scope, &mut statement);
    statement
}

/// [`select_one`], keeping the row from other writers until the transaction ends.
pub(super) fn select_for_update(
    dialect: SqlDialect,
    def: &ResourceDef,
    id: i64,
    scope: &Scope,
) -> Statement {
    let mut statement = select_one(dialect, def, id, scope);
    statement.push_sql(dialect.row_lock());
    statement
}

/// The page `query` asks for within `scope`: the statement counting every match, and the one
/// selecting the page (sorted, then by id; after the cursor; limited and skipped).
pub(super) fn select_page(
    dialect: SqlDialect,
    def: &ResourceDef,
    query: &Query,
    scope: &Scope,
) -> (Statement, Statement) {
    let kinds: HashMap<String, Kind> = columns(def).into_iter().map(|c| (c.name, c.kind)).collect();
    let kind_of = |column: &str| kinds.get(column).copied().unwrap_or(Kind::Text);
    let mut select = Statement::new(dialect, " WHERE 1 = 1");
    push_scope(def, scope, &mut select);
    for condition in &query.filters {
        push_filter(condition, kind_of(&condition.column), &mut select);
    }
    let mut count = select.clone();
    count.sql = format!("SELECT COUNT(*) FROM {}{}", quote(&def.name), count.sql);

    if let Some((key, after_id)) = &query.after {
        let sort = query
            .sort
            .first()
            .map(|(column, descending)| (column.as_str(), kind_of(column), *descending));
        push_cursor(sort, key, *after_id, &mut select);
    }
    let mut order: Vec<String> = query
        .sort
        .iter()
        .map(|(column, descending)| {
            let direction = if *descending {
                "DESC NULLS FIRST"
            } else {
                "ASC NULLS LAST"
            };
            format!("{} {direction}", quote(column))
        })
        .collect();
    order.push("\"id\" ASC".to_owned());
    select.sql = format!(
        "SELECT * FROM {}{} ORDER BY {} LIMIT ",
        quote(&def.name),
        select.sql,
        order.join(", ")
    );
    select
        .push_bind(Bind::int(i64::try_from(query.limit).unwrap_or(i64::MAX)))
        .push_sql(" OFFSET ")
        .push_bind(Bind::int(i64::try_from(query.skip).unwrap_or(i64::MAX)));
    (count, select)
}

/// `UPDATE` of record `id`, still at `version`, to `fields` (validated), raising its version
/// and setting `mtime` to `now`; returns the row, or nothing when another write came first.
pub(super) fn update(
    dialect: SqlDialect,
    def: &ResourceDef,
    id: i64,
    version: i64,
    fields: &Record,
    now: i64,
) -> Statement {
    let mut statement = Statement::new(
        dialect,
        format!(
            "UPDATE {} SET \"version\" = \"version\" + 1",
            quote(&def.name)
        ),
    );
    if def.timestamps {
        statement
            .push_sql(", \"mtime\" = ")
            .push_bind(Bind::int(now));
    }
    for (name, bind) in field_values(def, fields) {
        statement
            .push_sql(&format!(", {} = ", quote(&name)))
            .push_bind(bind);
    }
    statement
        .push_sql(" WHERE \"id\" = ")
        .push_bind(Bind::int(id))
        .push_sql(" AND \"version\" = ")
        .push_bind(Bind::int(version))
        .push_sql(" RETURNING *");
    statement
}

/// `SELECT` of the `child` records under parent `parent_id`.
pub(super) fn select_children(
    dialect: SqlDialect,
    child: &ResourceDef,
    parent_id: i64,
) -> Statement {
    let column = child.parent_column().unwrap_or_default();
    let mut statement = Statement::new(
        dialect,
        format!(
            "SELECT * FROM {} WHERE {} = ",
            quote(&child.name),
            quote(&column)
        ),
    );
    statement.push_bind(Bind::int(parent_id));
    statement
}

/// `DELETE` of record `id` (the database removes its descendants by cascade).
pub(super) fn delete(dialect: SqlDialect, def: &ResourceDef, id: i64) -> Statement {
    let mut statement = Statement::new(
        dialect,
        format!("DELETE FROM {} WHERE \"id\" = ", quote(&def.name)),
    );
    statement.push_bind(Bind::int(id));
    statement
}

/// The columns and values of a record's declared fields (and `extra`, the undeclared ones).
fn field_values(def: &ResourceDef, fields: &Record) -> Vec<(String, Bind)> {
    let mut values: Vec<(String, Bind)> = def
        .fields
        .iter()
        .map(|(name, field)| (name.clone(), Bind::of(Kind::of(field.ty), fields.get(name))))
        .collect();
    if def.extra_fields {
        let extra: Map<String, Value> = fields
            .iter()
            .filter(|(k, _)| !def.fields.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        values.push((
            "extra".to_owned(),
            Bind::Text((!extra.is_empty()).then(|| Value::Object(extra).to_string())),
        ));
    }
    values
}

fn push_scope(def: &ResourceDef, scope: &Scope, statement: &mut Statement) {
    if let Some(owner) = &scope.owner {
        statement
            .push_sql(" AND \"owner\" = ")
            .push_bind(Bind::owner(owner));
    }
    if let (Some(parent), Some(column)) = (scope.parent, def.parent_column()) {
        statement
            .push_sql(&format!(" AND {} = ", quote(&column)))
            .push_bind(Bind::int(parent));
    }
}

fn push_filter(condition: &Filter, kind: Kind, statement: &mut Statement) {
    let column = quote(&condition.column);
    let value = condition.values.first();
    let null = value.is_none_or(Value::is_null);
    match condition.op {
        Op::Eq if null => {
            statement.push_sql(&format!(" AND {column} IS NULL"));
        }
        Op::Ne if null => {
            statement.push_sql(&format!(" AND {column} IS NOT NULL"));
        }
        Op::In | Op::Nin => {
            let not = if condition.op == Op::Nin { " NOT" } else { "" };
            if condition.values.is_empty() {
                statement.push_sql(if not.is_empty() { " AND 1 = 0" } else { "" });
                return;
            }
            // As with `<>`, a missing value is "not in" any list.
            let or_null = if not.is_empty() {
                String::new()
            } else {
                format!("{column} IS NULL OR ")
            };
            statement
                .push_sql(&format!(" AND ({or_null}{column}{not} IN ("))
                .push_binds(condition.values.iter().map(|v| Bind::of(kind, Some(v))))
                .push_sql("))");
        }
        // `<>` leaves out NULLs in SQL; a value that is NULL is "not equal" too.
        Op::Ne => {
            statement
                .push_sql(&format!(" AND ({column} IS NULL OR {column} <> "))
                .push_bind(Bind::of(kind, value))
                .push_sql(")");
        }
        op => {
            let symbol = match op {
                Op::Eq => "=",
                Op::Lt => "<",
                Op::Lte => "<=",
                Op::Gt => ">",
                _ => ">=",
            };
            statement
                .push_sql(&format!(" AND {column} {symbol} "))
                .push_bind(Bind::of(kind, value));
        }
    }
}

/// The condition selecting what follows the cursor (`key`, `after_id`) in the order of `sort`
/// (its column, kind and direction; by id alone without one).
fn push_cursor(
    sort: Option<(&str, Kind, bool)>,
    key: &Value,
    after_id: i64,
    select: &mut Statement,
) {
    let Some((column, kind, descending)) = sort else {
        select
            .push_sql(" AND \"id\" > ")
            .push_bind(Bind::int(after_id));
        return;
    };
    // Ascending order puts NULLs last, descending first (the exact reverse); ties go by id.
    let quoted = quote(column);
    match (key.is_null(), descending) {
        (true, false) => {
            select
                .push_sql(&format!(" AND ({quoted} IS NULL AND \"id\" > "))
                .push_bind(Bind::int(after_id))
                .push_sql(")");
        }
        (true, true) => {
            select
                .push_sql(&format!(" AND (({quoted} IS NULL AND \"id\" > "))
                .push_bind(Bind::int(after_id))
                .push_sql(&format!(") OR {quoted} IS NOT NULL)"));
        }
        (false, descending) => {
            let op = if descending { "<" } else { ">" };
            select
                .push_sql(&format!(" AND ({quoted} {op} "))
                .push_bind(Bind::of(kind, Some(key)))
                .push_sql(&format!(" OR ({quoted} = "))
                .push_bind(Bind::of(kind, Some(key)))
                .push_sql(" AND \"id\" > ")
                .push_bind(Bind::int(after_id))
                .push_sql(")");
            if !descending {
                select.push_sql(&format!(" OR {quoted} IS NULL"));
            }
            select.push_sql(")");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::store::table::tests::{album, song};

    const BOTH: [SqlDialect; 2] = [SqlDialect::Sqlite, SqlDialect::Postgres];

    fn record(value: Value) -> Record {
        value.as_object().cloned().unwrap_or_default()
    }

    fn text(value: &str) -> Bind {
        Bind::Text(Some(value.to_owned()))
    }

    /// The SQL in SQLite's placeholders, and the same with PostgreSQL's.
    fn in_both(sqlite: &str, postgres: &str, statement: impl Fn(SqlDialect) -> Statement) {
        assert_eq!(statement(SqlDialect::Sqlite).sql, sqlite);
        assert_eq!(statement(SqlDialect::Postgres).sql, postgres);
    }

    fn query() -> Query {
        Query {
            filters: Vec::new(),
            sort: Vec::new(),
            limit: 10,
            skip: 0,
            after: None,
        }
    }

    #[test]
    fn insert_binds_system_columns_then_fields() {
        let scope = Scope {
            owner: Some(json!("ann")),
            parent: Some(4),
        };
        let fields = record(
            json!({"title": "Song", "plays": 3, "live": true, "tags": ["a"], "mood": "calm"}),
        );
        in_both(
            "INSERT INTO \"song\" (\"version\", \"ctime\", \"mtime\", \"owner\", \"album_id\", \"live\", \"plays\", \"rating\", \"tags\", \"title\", \"extra\") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            "INSERT INTO \"song\" (\"version\", \"ctime\", \"mtime\", \"owner\", \"album_id\", \"live\", \"plays\", \"rating\", \"tags\", \"title\", \"extra\") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *",
            |dialect| insert(dialect, &song(), &fields, &scope, 1000),
        );
        assert_eq!(
            insert(SqlDialect::Postgres, &song(), &fields, &scope, 1000).binds,
            [
                Bind::int(1),
                Bind::int(1000),
                Bind::int(1000),
                text("ann"),
                Bind::int(4),
                Bind::Bool(Some(true)),
                Bind::int(3),
                Bind::Float(None),
                text("[\"a\"]"),
                text("Song"),
                text("{\"mood\":\"calm\"}"),
            ]
        );
        let mut plain = album();
        plain.timestamps = false;
        let statement = insert(
            SqlDialect::Sqlite,
            &plain,
            &Record::new(),
            &Scope::default(),
            1,
        );
        assert_eq!(
            statement.sql,
            "INSERT INTO \"album\" (\"version\", \"title\") VALUES (?, ?) RETURNING *"
        );
        assert_eq!(statement.binds, [Bind::int(1), Bind::Text(None)]);
    }

    #[test]
    fn select_one_within_a_scope() {
        let scope = Scope {
            owner: Some(json!("ann")),
            parent: Some(4),
        };
        in_both(
            "SELECT * FROM \"song\" WHERE \"id\" = ? AND \"owner\" = ? AND \"album_id\" = ?",
            "SELECT * FROM \"song\" WHERE \"id\" = $1 AND \"owner\" = $2 AND \"album_id\" = $3",
            |dialect| select_one(dialect, &song(), 7, &scope),
        );
        assert_eq!(
            select_one(SqlDialect::Sqlite, &song(), 7, &scope).binds,
            [Bind::int(7), text("ann"), Bind::int(4)]
        );
        in_both(
            "SELECT * FROM \"album\" WHERE \"id\" = ?",
            "SELECT * FROM \"album\" WHERE \"id\" = $1 FOR UPDATE",
            |dialect| select_for_update(dialect, &album(), 7, &Scope::default()),
        );
    }

    #[test]
    fn a_page_counts_filters_sorts_and_pages() {
        let query = Query {
            filters: vec![
                Filter {
                    column: "plays".into(),
                    op: Op::Gte,
                    values: vec![json!(10)],
                },
                Filter {
                    column: "title".into(),
                    op: Op::Ne,
                    values: vec![json!("x")],
                },
                Filter {
                    column: "rating".into(),
                    op: Op::Eq,
                    values: vec![Value::Null],
                },
                Filter {
                    column: "id".into(),
                    op: Op::Nin,
                    values: vec![json!(1), json!(2)],
                },
            ],
            sort: vec![("plays".into(), true), ("title".into(), false)],
            limit: 5,
            skip: 20,
            after: None,
        };
        let scope = Scope {
            owner: Some(json!("ann")),
            parent: None,
        };
        let where_sqlite = " WHERE 1 = 1 AND \"owner\" = ? AND \"plays\" >= ? AND (\"title\" IS NULL OR \"title\" <> ?) AND \"rating\" IS NULL AND (\"id\" IS NULL OR \"id\" NOT IN (?, ?))";
        let where_postgres = " WHERE 1 = 1 AND \"owner\" = $1 AND \"plays\" >= $2 AND (\"title\" IS NULL OR \"title\" <> $3) AND \"rating\" IS NULL AND (\"id\" IS NULL OR \"id\" NOT IN ($4, $5))";
        for (dialect, filter, paging) in [
            (SqlDialect::Sqlite, where_sqlite, "LIMIT ? OFFSET ?"),
            (SqlDialect::Postgres, where_postgres, "LIMIT $6 OFFSET $7"),
        ] {
            let (count, select) = select_page(dialect, &song(), &query, &scope);
            assert_eq!(count.sql, format!("SELECT COUNT(*) FROM \"song\"{filter}"));
            assert_eq!(
                select.sql,
                format!("SELECT * FROM \"song\"{filter} ORDER BY \"plays\" DESC NULLS FIRST, \"title\" ASC NULLS LAST, \"id\" ASC {paging}")
            );
            let filter_binds = [
                text("ann"),
                Bind::int(10),
                text("x"),
                Bind::int(1),
                Bind::int(2),
            ];
            assert_eq!(count.binds, filter_binds);
            assert_eq!(select.binds[..5], filter_binds);
            assert_eq!(select.binds[5..], [Bind::int(5), Bind::int(20)]);
        }
    }

    #[test]
    fn empty_lists_match_nothing_or_everything() {
        let with = |op| Query {
            filters: vec![Filter {
                column: "plays".into(),
                op,
                values: Vec::new(),
            }],
            ..query()
        };
        for dialect in BOTH {
            let (count, _) = select_page(dialect, &song(), &with(Op::In), &Scope::default());
            assert_eq!(
                count.sql,
                "SELECT COUNT(*) FROM \"song\" WHERE 1 = 1 AND 1 = 0"
            );
            let (count, _) = select_page(dialect, &song(), &with(Op::Nin), &Scope::default());
            assert_eq!(count.sql, "SELECT COUNT(*) FROM \"song\" WHERE 1 = 1");
        }
        let (count, _) = select_page(
            SqlDialect::Postgres,
            &song(),
            &Query {
                filters: vec![Filter {
                    column: "title".into(),
                    op: Op::In,
                    values: vec![json!("a"), json!("b")],
                }],
                ..query()
            },
            &Scope::default(),
        );
        assert_eq!(
            count.sql,
            "SELECT COUNT(*) FROM \"song\" WHERE 1 = 1 AND (\"title\" IN ($1, $2))"
        );
    }

    #[test]
    fn a_cursor_resumes_after_its_row() {
        let after = |sort: Vec<(String, bool)>, key: Value| {
            let query = Query {
                sort,
                after: Some((key, 9)),
                ..query()
            };
            let (count, select) =
                select_page(SqlDialect::Postgres, &song(), &query, &Scope::default());
            assert!(count.binds.is_empty(), "the count ignores the cursor");
            let start = select.sql.find("WHERE 1 = 1").unwrap() + "WHERE 1 = 1".len();
            let end = select.sql.find(" ORDER BY").unwrap();
            (select.sql[start..end].to_owned(), select.binds)
        };
        assert_eq!(
            after(Vec::new(), json!(9)),
            (
                " AND \"id\" > $1".to_owned(),
                vec![Bind::int(9), Bind::int(10), Bind::int(0)]
            )
        );
        let (sql, binds) = after(vec![("plays".into(), false)], json!(3));
        assert_eq!(
            sql,
            " AND (\"plays\" > $1 OR (\"plays\" = $2 AND \"id\" > $3) OR \"plays\" IS NULL)"
        );
        assert_eq!(binds[..3], [Bind::int(3), Bind::int(3), Bind::int(9)]);
        assert_eq!(
            after(vec![("plays".into(), true)], json!(3)).0,
            " AND (\"plays\" < $1 OR (\"plays\" = $2 AND \"id\" > $3))"
        );
        assert_eq!(
            after(vec![("plays".into(), false)], Value::Null).0,
            " AND (\"plays\" IS NULL AND \"id\" > $1)"
        );
        assert_eq!(
            after(vec![("plays".into(), true)], Value::Null).0,
            " AND ((\"plays\" IS NULL AND \"id\" > $1) OR \"plays\" IS NOT NULL)"
        );
        let query = Query {
            sort: vec![("title".into(), false)],
            after: Some((json!("m"), 9)),
            ..query()
        };
        let (_, select) = select_page(SqlDialect::Sqlite, &song(), &query, &Scope::default());
        assert_eq!(
            select.sql,
            "SELECT * FROM \"song\" WHERE 1 = 1 AND (\"title\" > ? OR (\"title\" = ? AND \"id\" > ?) OR \"title\" IS NULL) ORDER BY \"title\" ASC NULLS LAST, \"id\" ASC LIMIT ? OFFSET ?"
        );
        assert_eq!(select.binds[..2], [text("m"), text("m")]);
    }

    #[test]
    fn update_checks_the_version_it_read() {
        let fields = record(json!({"title": "New"}));
        in_both(
            "UPDATE \"album\" SET \"version\" = \"version\" + 1, \"mtime\" = ?, \"title\" = ? WHERE \"id\" = ? AND \"version\" = ? RETURNING *",
            "UPDATE \"album\" SET \"version\" = \"version\" + 1, \"mtime\" = $1, \"title\" = $2 WHERE \"id\" = $3 AND \"version\" = $4 RETURNING *",
            |dialect| update(dialect, &album(), 7, 2, &fields, 1000),
        );
        assert_eq!(
            update(SqlDialect::Sqlite, &album(), 7, 2, &fields, 1000).binds,
            [Bind::int(1000), text("New"), Bind::int(7), Bind::int(2)]
        );
        // A field left out of the new fields is cleared.
        let mut plain = album();
        plain.timestamps = false;
        let statement = update(SqlDialect::Postgres, &plain, 7, 2, &Record::new(), 1000);
        assert_eq!(
            statement.sql,
            "UPDATE \"album\" SET \"version\" = \"version\" + 1, \"title\" = $1 WHERE \"id\" = $2 AND \"version\" = $3 RETURNING *"
        );
        assert_eq!(statement.binds[0], Bind::Text(None));
    }

    #[test]
    fn delete_and_the_reads_of_its_cascade() {
        in_both(
            "SELECT * FROM \"song\" WHERE \"album_id\" = ?",
            "SELECT * FROM \"song\" WHERE \"album_id\" = $1",
            |dialect| select_children(dialect, &song(), 4),
        );
        in_both(
            "DELETE FROM \"album\" WHERE \"id\" = ?",
            "DELETE FROM \"album\" WHERE \"id\" = $1",
            |dialect| delete(dialect, &album(), 4),
        );
        for dialect in BOTH {
            assert_eq!(select_children(dialect, &song(), 4).binds, [Bind::int(4)]);
            assert_eq!(delete(dialect, &album(), 4).binds, [Bind::int(4)]);
        }
    }
}
