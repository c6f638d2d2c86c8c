//! A statement under construction: SQL text with the dialect's placeholders, and the values
//! bound to them, in order (pure: nothing here touches a database).

use serde_json::Value;

use super::dialect::SqlDialect;
use super::table::Kind;

/// A value to bind; NULLs keep their type (PostgreSQL checks parameter types).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Bind {
    /// A 64-bit integer.
    Int(Option<i64>),
    /// A 64-bit float.
    Float(Option<f64>),
    /// Text (also JSON, as its text).
    Text(Option<String>),
    /// A boolean.
    Bool(Option<bool>),
}

impl Bind {
    /// A known integer.
    pub(super) fn int(value: i64) -> Self {
        Self::Int(Some(value))
    }

    /// `value` as a column of `kind` stores it; JSON `null` (or no value) is a typed NULL.
    pub(super) fn of(kind: Kind, value: Option<&Value>) -> Self {
        let value = value.filter(|v| !v.is_null());
        match kind {
            Kind::Int => Self::Int(value.and_then(Value::as_i64)),
            Kind::Float => Self::Float(value.and_then(Value::as_f64)),
            Kind::Bool => Self::Bool(value.and_then(Value::as_bool)),
            Kind::Text => Self::Text(value.map(text_of)),
            Kind::Json => Self::Text(value.map(Value::to_string)),
        }
    }

    /// An owner value, kept as text (a string as it is, anything else as its JSON).
    pub(super) fn owner(owner: &Value) -> Self {
        Self::Text(Some(text_of(owner)))
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// SQL text and the values its placeholders stand for.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Statement {
    dialect: SqlDialect,
    /// The SQL text.
    pub(super) sql: String,
    /// The values, in placeholder order.
    pub(super) binds: Vec<Bind>,
}

impl Statement {
    /// A statement in `dialect` starting with `sql` and no values yet.
    pub(super) fn new(dialect: SqlDialect, sql: impl Into<String>) -> Self {
        Self {
            dialect,
            sql: sql.into(),
            binds: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub(super) fn push_sql(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for `bind`.
    pub(super) fn push_bind(&mut self, bind: Bind) -> &mut Self {
        self.binds.push(bind);
        let placeholder = self.dialect.placeholder(self.binds.len());
        self.sql.push_str(&placeholder);
        self
    }

    /// Appends placeholders for `binds`, separated by commas.
    pub(super) fn push_binds(&mut self, binds: impl IntoIterator<Item = Bind>) -> &mut Self {
        for (i, bind) in binds.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.push_bind(bind);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_follow_the_dialect() {
        let mut sqlite = Statement::new(SqlDialect::Sqlite, "SELECT ");
        sqlite.push_binds([Bind::int(1), Bind::int(2)]);
        assert_eq!(sqlite.sql, "SELECT ?, ?");
        let mut postgres = Statement::new(SqlDialect::Postgres, "SELECT ");
        postgres.push_binds([Bind::int(1), Bind::int(2)]);
        assert_eq!(postgres.sql, "SELECT $1, $2");
        assert_eq!(postgres.binds, [Bind::int(1), Bind::int(2)]);
    }

    #[test]
    fn values_bind_as_their_column_stores_them() {
        assert_eq!(Bind::of(Kind::Int, Some(&json!(3))), Bind::Int(Some(3)));
        assert_eq!(Bind::of(Kind::Int, Some(&json!(null))), Bind::Int(None));
        assert_eq!(Bind::of(Kind::Bool, None), Bind::Bool(None));
        assert_eq!(
            Bind::of(Kind::Text, Some(&json!("a"))),
            Bind::Text(Some("a".into()))
        );
        assert_eq!(
            Bind::of(Kind::Json, Some(&json!(["a"]))),
            Bind::Text(Some(r#"["a"]"#.into()))
        );
        assert_eq!(Bind::owner(&json!(7)), Bind::Text(Some("7".into())));
    }
}
