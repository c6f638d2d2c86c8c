//! The table a declaration makes — its columns and how each is stored — and the statements
//! that create it or migrate an existing one (pure: the caller runs them).

use std::collections::BTreeMap;

use super::dialect::{quote, SqlDialect};
use super::statement::Statement;
use super::StoreError;
use crate::resource::schema::{FieldType, ResourceDef};

/// How a column is stored and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A 64-bit integer.
    Int,
    /// A 64-bit float.
    Float,
    /// Text.
    Text,
    /// A boolean.
    Bool,
    /// JSON, stored as its text.
    Json,
}

impl Kind {
    /// How a field of type `ty` is stored.
    pub(super) fn of(ty: FieldType) -> Self {
        match ty {
            FieldType::String | FieldType::Enum => Self::Text,
            FieldType::Integer | FieldType::Timestamp => Self::Int,
            FieldType::Number => Self::Float,
            FieldType::Boolean => Self::Bool,
            FieldType::Array | FieldType::Object => Self::Json,
        }
    }
}

/// One column of a resource's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Column {
    /// The column's name.
    pub(super) name: String,
    /// How it is stored.
    pub(super) kind: Kind,
}

impl Column {
    fn new(name: impl Into<String>, kind: Kind) -> Self {
        Self {
            name: name.into(),
            kind,
        }
    }
}

/// The columns of `def`'s table, in order: `id`, `version`, then `ctime`/`mtime`, `owner`,
/// `<parent>_id` and `extra` as declared, then the fields.
pub(super) fn columns(def: &ResourceDef) -> Vec<Column> {
    let mut columns = vec![
        Column::new("id", Kind::Int),
        Column::new("version", Kind::Int),
    ];
    if def.timestamps {
        columns.push(Column::new("ctime", Kind::Int));
        columns.push(Column::new("mtime", Kind::Int));
    }
    if def.owner.is_some() {
        columns.push(Column::new("owner", Kind::Text));
    }
    if let Some(parent) = def.parent_column() {
        columns.push(Column::new(parent, Kind::Int));
    }
    if def.extra_fields {
        columns.push(Column::new("extra", Kind::Json));
    }
    for (name, field) in &def.fields {
        columns.push(Column::new(name.clone(), Kind::of(field.ty)));
    }
    columns
}

/// The statements that bring `def`'s table from the `existing` columns (name → type as the
/// database reports it; none when there is no table) to the declaration: the table and its
/// parent index when missing, else one `ADD COLUMN` per new column. Refuses a change that
/// would lose data (a removed field, a changed type) or a table Sockyard did not make.
pub(super) fn migration(
    dialect: SqlDialect,
    def: &ResourceDef,
    existing: &BTreeMap<String, String>,
) -> Result<Vec<Statement>, StoreError> {
    if existing.is_empty() {
        return Ok(create_table(dialect, def));
    }
    let refuse = |message: String| StoreError::Migration {
        table: def.name.clone(),
        message,
    };
    let wanted = columns(def);
    let mut statements = Vec::new();
    for column in &wanted {
        match existing.get(&column.name) {
            None if column.name == "id" || column.name == "version" => {
                return Err(refuse(format!(
                    "it has no `{}` column: it was not made by Sockyard",
                    column.name
                )));
            }
            None => statements.push(add_column(dialect, def, column)),
            Some(declared) if !dialect.is_compatible(declared, column.kind) => {
                return Err(refuse(format!(
                    "column `{}` holds {declared} but the declaration now wants {}; changing it could lose data — migrate it yourself",
                    column.name,
                    dialect.column_type(column.kind)
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(name) = existing
        .keys()
        .find(|name| !wanted.iter().any(|c| &c.name == *name))
    {
        return Err(refuse(format!(
            "column `{name}` is no longer declared; dropping it would lose data — declare it again, or drop it yourself"
        )));
    }
    Ok(statements)
}

/// `CREATE TABLE` for `def`, then the index on its parent column (if it has a parent).
pub(super) fn create_table(dialect: SqlDialect, def: &ResourceDef) -> Vec<Statement> {
    let mut parts = vec![dialect.primary_key().to_owned()];
    for column in columns(def).iter().skip(1) {
        let mut part = format!(
            "{} {}",
            quote(&column.name),
            column_definition(dialect, def, column)
        );
        if column.name == "version" || def.parent_column().as_deref() == Some(column.name.as_str())
        {
            part.push_str(" NOT NULL");
        }
        parts.push(part);
    }
    let mut statements = vec![Statement::new(
        dialect,
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote(&def.name),
            parts.join(", ")
        ),
    )];
    if let Some(parent) = def.parent_column() {
        statements.push(Statement::new(
            dialect,
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
                quote(&format!("{}_{parent}", def.name)),
                quote(&def.name),
                quote(&parent)
            ),
        ));
    }
    statements
}

/// `ALTER TABLE … ADD COLUMN` for `column` of `def`.
pub(super) fn add_column(dialect: SqlDialect, def: &ResourceDef, column: &Column) -> Statement {
    Statement::new(
        dialect,
        format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            quote(&def.name),
            quote(&column.name),
            column_definition(dialect, def, column)
        ),
    )
}

/// A column's type, and for the parent column its foreign key (children go with the parent).
fn column_definition(dialect: SqlDialect, def: &ResourceDef, column: &Column) -> String {
    let base = dialect.column_type(column.kind);
    match (&def.parent, def.parent_column()) {
        (Some(parent), Some(parent_column)) if parent_column == column.name => {
            format!(
                "{base} REFERENCES {}(\"id\") ON DELETE CASCADE",
                quote(parent)
            )
        }
        _ => base.to_owned(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::resource::schema::FieldDef;

    /// `song {title, plays, rating, live, tags}` under `album`, owned, with extra fields.
    pub(in crate::resource::store) fn song() -> ResourceDef {
        let mut def = ResourceDef::new(
            "song",
            [
                ("title", FieldDef::new(FieldType::String)),
                ("plays", FieldDef::new(FieldType::Integer)),
                ("rating", FieldDef::new(FieldType::Number)),
                ("live", FieldDef::new(FieldType::Boolean)),
                ("tags", FieldDef::new(FieldType::Array)),
            ],
        )
        .parent("album");
        def.owner = Some("sub".into());
        def.extra_fields = true;
        def
    }

    /// `album {title}`: timestamps, nothing else.
    pub(in crate::resource::store) fn album() -> ResourceDef {
        ResourceDef::new("album", [("title", FieldDef::new(FieldType::String))])
    }

    fn sql(statements: &[Statement]) -> Vec<&str> {
        statements.iter().map(|s| s.sql.as_str()).collect()
    }

    fn stored(columns: &[(&str, &str)]) -> BTreeMap<String, String> {
        columns
            .iter()
            .map(|(name, ty)| ((*name).to_owned(), (*ty).to_owned()))
            .collect()
    }

    #[test]
    fn columns_follow_the_declaration() {
        let names: Vec<String> = columns(&song()).into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "id", "version", "ctime", "mtime", "owner", "album_id", "extra", "live", "plays",
                "rating", "tags", "title"
            ]
        );
    }

    #[test]
    fn create_table_in_sqlite() {
        assert_eq!(
            sql(&create_table(SqlDialect::Sqlite, &song())),
            [
                "CREATE TABLE IF NOT EXISTS \"song\" (\"id\" INTEGER PRIMARY KEY AUTOINCREMENT, \"version\" INTEGER NOT NULL, \"ctime\" INTEGER, \"mtime\" INTEGER, \"owner\" TEXT, \"album_id\" INTEGER REFERENCES \"album\"(\"id\") ON DELETE CASCADE NOT NULL, \"extra\" TEXT, \"live\" INT_BOOL, \"plays\" INTEGER, \"rating\" REAL, \"tags\" TEXT, \"title\" TEXT)",
                "CREATE INDEX IF NOT EXISTS \"song_album_id\" ON \"song\" (\"album_id\")",
            ]
        );
    }

    #[test]
    fn create_table_in_postgres() {
        assert_eq!(
            sql(&create_table(SqlDialect::Postgres, &song())),
            [
                "CREATE TABLE IF NOT EXISTS \"song\" (\"id\" BIGSERIAL PRIMARY KEY, \"version\" BIGINT NOT NULL, \"ctime\" BIGINT, \"mtime\" BIGINT, \"owner\" TEXT, \"album_id\" BIGINT REFERENCES \"album\"(\"id\") ON DELETE CASCADE NOT NULL, \"extra\" TEXT, \"live\" BOOLEAN, \"plays\" BIGINT, \"rating\" DOUBLE PRECISION, \"tags\" TEXT, \"title\" TEXT)",
                "CREATE INDEX IF NOT EXISTS \"song_album_id\" ON \"song\" (\"album_id\")",
            ]
        );
        assert_eq!(
            sql(&create_table(SqlDialect::Postgres, &album())),
            ["CREATE TABLE IF NOT EXISTS \"album\" (\"id\" BIGSERIAL PRIMARY KEY, \"version\" BIGINT NOT NULL, \"ctime\" BIGINT, \"mtime\" BIGINT, \"title\" TEXT)"]
        );
    }

    #[test]
    fn a_missing_table_is_created() {
        let statements = migration(SqlDialect::Sqlite, &album(), &BTreeMap::new()).unwrap();
        assert_eq!(statements, create_table(SqlDialect::Sqlite, &album()));
    }

    #[test]
    fn new_fields_become_new_columns() {
        // The table as PostgreSQL reports it: lower-case type names.
        let existing: BTreeMap<String, String> = columns(&song())
            .into_iter()
            .map(|c| {
                let ty = SqlDialect::Postgres.column_type(c.kind);
                (c.name, ty.to_ascii_lowercase())
            })
            .collect();
        let mut def = song();
        def.fields
            .insert("year".into(), FieldDef::new(FieldType::Integer));
        assert_eq!(
            sql(&migration(SqlDialect::Postgres, &def, &existing).unwrap()),
            ["ALTER TABLE \"song\" ADD COLUMN \"year\" BIGINT"]
        );
        assert!(migration(SqlDialect::Postgres, &song(), &existing)
            .unwrap()
            .is_empty());
        // A resource that gains a parent gains its foreign key.
        let mut child = ResourceDef::new("song", []).parent("album");
        child.timestamps = false;
        let old = stored(&[("id", "INTEGER"), ("version", "INTEGER")]);
        assert_eq!(
            sql(&migration(SqlDialect::Sqlite, &child, &old).unwrap()),
            ["ALTER TABLE \"song\" ADD COLUMN \"album_id\" INTEGER REFERENCES \"album\"(\"id\") ON DELETE CASCADE"]
        );
    }

    #[test]
    fn changes_that_lose_data_are_refused() {
        let mut def = album();
        def.timestamps = false;
        let refused = |existing: &[(&str, &str)]| {
            migration(SqlDialect::Sqlite, &def, &stored(existing))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(&[("id", "INTEGER"), ("title", "TEXT")]),
            "cannot migrate table `album`: it has no `version` column: it was not made by Sockyard"
        );
        assert_eq!(
            refused(&[("id", "INTEGER"), ("version", "INTEGER"), ("title", "REAL")]),
            "cannot migrate table `album`: column `title` holds REAL but the declaration now wants TEXT; changing it could lose data — migrate it yourself"
        );
        assert_eq!(
            refused(&[("id", "INTEGER"), ("version", "INTEGER"), ("title", "TEXT"), ("year", "INTEGER")]),
            "cannot migrate table `album`: column `year` is no longer declared; dropping it would lose data — declare it again, or drop it yourself"
        );
    }
}
