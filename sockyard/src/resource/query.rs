//! The list query language — `{field: value}` for equality, `{field: {$lt: v}}` for operators,
//! `$sort`, `$limit`, `$skip` and `$after` (cursor) — parsed and checked against a resource's
//! declaration (pure: no IO).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::schema::{FieldDef, FieldType, ResourceDef};
use crate::error::ApiError;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=` (`$eq`, or a bare value)
    Eq,
    /// `<>` (`$ne`)
    Ne,
    /// `<` (`$lt`)
    Lt,
    /// `<=` (`$lte`)
    Lte,
    /// `>` (`$gt`)
    Gt,
    /// `>=` (`$gte`)
    Gte,
    /// one of (`$in`)
    In,
    /// none of (`$nin`)
    Nin,
}

impl Op {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "$eq" => Self::Eq,
            "$ne" => Self::Ne,
            "$lt" => Self::Lt,
            "$lte" => Self::Lte,
            "$gt" => Self::Gt,
            "$gte" => Self::Gte,
            "$in" => Self::In,
            "$nin" => Self::Nin,
            _ => return None,
        })
    }
}

/// One condition on a column.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The column (a declared scalar field or a system column).
    pub column: String,
    /// The comparison.
    pub op: Op,
    /// The value(s), already checked against the column's type (several for `$in`/`$nin`).
    pub values: Vec<Value>,
}

/// A checked list query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Conditions, all of which must hold.
    pub filters: Vec<Filter>,
    /// Sort keys, in order, `true` for descending; `id` ascending ends every sort.
    pub sort: Vec<(String, bool)>,
    /// Rows to return.
    pub limit: u64,
    /// Rows to skip.
    pub skip: u64,
    /// Resume after this row (cursor pagination): the sort key's value and the id.
    pub after: Option<(Value, i64)>,
}

/// The type of a column: declared fields have theirs; system columns are integers except
/// `owner`, which is text.
fn column_type<'a>(
    def: &'a ResourceDef,
    column: &str,
) -> Option<(FieldType, Option<&'a FieldDef>)> {
    if let Some(field) = def.fields.get(column) {
        return field.ty.is_scalar().then_some((field.ty, Some(field)));
    }
    let system = match column {
        "id" | "version" => FieldType::Integer,
        "ctime" | "mtime" if def.timestamps => FieldType::Timestamp,
        "owner" if def.owner.is_some() => FieldType::String,
        _ if def.parent_column().as_deref() == Some(column) => FieldType::Integer,
        _ => return None,
    };
    Some((system, None))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// Parses a list query against `def`; `max_limit` caps `$limit` (default page size
/// `default_limit`).
pub fn parse(
    def: &ResourceDef,
    query: &Map<String, Value>,
    default_limit: u64,
    max_limit: u64,
) -> Result<Query, ApiError> {
    let mut parsed = Query {
        filters: Vec::new(),
        sort: Vec::new(),
        limit: default_limit.min(max_limit),
        skip: 0,
        after: None,
    };
    for (key, value) in query {
        match key.as_str() {
            "$limit" => {
                parsed.limit = value.as_u64().filter(|l| *l <= max_limit).ok_or_else(|| {
                    bad(format!("$limit must be an integer from 0 to {max_limit}"))
                })?;
            }
            "$skip" => {
                parsed.skip = value
                    .as_u64()
                    .filter(|s| *s <= i64::MAX as u64)
                    .ok_or_else(|| bad("$skip must be a non-negative integer"))?;
            }
            "$sort" => {
                let Value::Object(keys) = value else {
                    return Err(bad("$sort must be an object such as {\"age\": -1}"));
                };
                for (column, direction) in keys {
                    if column_type(def, column).is_none() {
                        return Err(bad(format!(
                            "cannot sort by `{column}`: not a scalar field of {}",
                            def.name
                        )));
                    }
                    let descending = match direction.as_i64() {
                        Some(1) => false,
                        Some(-1) => true,
                        _ => return Err(bad("$sort directions must be 1 or -1")),
                    };
                    parsed.sort.push((column.clone(), descending));
                }
            }
            "$after" => {}
            key if key.starts_with('$') => {
                return Err(bad(format!("unknown query operator `{key}`")))
            }
            column => {
                let (ty, field) = column_type(def, column).ok_or_else(|| {
                    bad(format!(
                        "cannot filter on `{column}`: not a scalar field of {}",
                        def.name
                    ))
                })?;
                parse_condition(def, column, ty, field, value, &mut parsed.filters)?;
            }
        }
    }
    if let Some(cursor) = query.get("$after") {
        if parsed.sort.len() > 1 {
            return Err(bad("$after works with at most one $sort key"));
        }
        parsed.after = Some(decode_cursor(cursor)?);
    }
    Ok(parsed)
}

fn parse_condition(
    def: &ResourceDef,
    column: &str,
    ty: FieldType,
    field: Option<&FieldDef>,
    value: &Value,
    filters: &mut Vec<Filter>,
) -> Result<(), ApiError> {
    let Value::Object(operators) = value else {
        filters.push(Filter {
            column: column.to_owned(),
            op: Op::Eq,
            values: vec![typed(def, column, ty, field, value)?],
        });
        return Ok(());
    };
    if operators.is_empty() {
        return Err(bad(format!("empty condition on `{column}`")));
    }
    for (name, operand) in operators {
        let op = Op::parse(name)
            .ok_or_else(|| bad(format!("unknown operator `{name}` on `{column}`")))?;
        let values = match (op, operand) {
            (Op::In | Op::Nin, Value::Array(items)) => {
                if items.len() > 1000 {
                    return Err(bad(format!("`{name}` takes at most 1000 values")));
                }
                items
                    .iter()
                    .map(|v| typed(def, column, ty, field, v))
                    .collect::<Result<_, _>>()?
            }
            (Op::In | Op::Nin, _) => {
                return Err(bad(format!("`{name}` on `{column}` takes an array")))
            }
            (_, operand) => vec![typed(def, column, ty, field, operand)?],
        };
        filters.push(Filter {
            column: column.to_owned(),
            op,
            values,
        });
    }
    Ok(())
}

/// Checks a filter value's type (constraints such as `min` do not apply to filters).
fn typed(
    def: &ResourceDef,
    column: &str,
    ty: FieldType,
    field: Option<&FieldDef>,
    value: &Value,
) -> Result<Value, ApiError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let loose = FieldDef::new(if ty == FieldType::Enum {
        FieldType::String
    } else {
        ty
    });
    let _ = field;
    def.check_value(column, &loose, value)
        .map_err(|errors| bad(format!("`{column}` {}", errors[0].message)))
}

/// The cursor for resuming after `record`, given the query's sort key.
/// `None` when the list is sorted by more than one key (a cursor resumes after one key only).
pub fn encode_cursor(query: &Query, record: &Map<String, Value>) -> Option<String> {
    if query.sort.len() > 1 {
        return None;
    }
    let id = record.get("id")?.as_i64()?;
    let key = match query.sort.first() {
        Some((column, _)) => record.get(column).cloned().unwrap_or(Value::Null),
        None => Value::from(id),
    };
    let text = Value::Array(vec![key, Value::from(id)]).to_string();
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text))
}

fn decode_cursor(cursor: &Value) -> Result<(Value, i64), ApiError> {
    let invalid = || bad("$after is not a cursor from this list");
    let text = cursor.as_str().ok_or_else(invalid)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| invalid())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(parts)) if parts.len() == 2 => {
            let id = parts[1].as_i64().ok_or_else(invalid)?;
            Ok((parts[0].clone(), id))
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::schema::FieldDef;
    use serde_json::json;

    fn def() -> ResourceDef {
        let mut def = ResourceDef::new(
            "creature",
            [
                ("name", FieldDef::new(FieldType::String)),
                ("age", FieldDef::new(FieldType::Integer)),
            ],
        );
        def.fields
            .insert("tags".into(), FieldDef::new(FieldType::Array));
        def
    }

    fn parse_json(value: Value) -> Result<Query, ApiError> {
        parse(&def(), value.as_object().unwrap(), 100, 1000)
    }

    #[test]
    fn parses_equality_operators_sort_and_paging() {
        let query = parse_json(json!({"name": "Smaug", "age": {"$gte": 10, "$lt": 200}, "id": {"$in": [1, 2]}, "$sort": {"age": -1}, "$limit": 5, "$skip": 10})).unwrap();
        assert_eq!(
            query.filters,
            vec![
                Filter {
                    column: "name".into(),
                    op: Op::Eq,
                    values: vec![json!("Smaug")]
                },
                Filter {
                    column: "age".into(),
                    op: Op::Gte,
                    values: vec![json!(10)]
                },
                Filter {
                    column: "age".into(),
                    op: Op::Lt,
                    values: vec![json!(200)]
                },
                Filter {
                    column: "id".into(),
                    op: Op::In,
                    values: vec![json!(1), json!(2)]
                },
            ]
        );
        assert_eq!(query.sort, vec![("age".to_owned(), true)]);
        assert_eq!((query.limit, query.skip), (5, 10));
        assert_eq!(parse_json(json!({})).unwrap().limit, 100);
    }

    #[test]
    fn rejects_what_it_cannot_answer() {
        for (query, needle) in [
            (json!({"$limit": 1_000_000_000}), "$limit must be"),
            (json!({"$limit": -1}), "$limit must be"),
            (json!({"colour": "red"}), "cannot filter on `colour`"),
            (json!({"tags": [1]}), "cannot filter on `tags`"),
            (json!({"name; DROP TABLE creature": 1}), "cannot filter"),
            (json!({"age": {"$regex": ".*"}}), "unknown operator"),
            (json!({"age": "old"}), "`age` must be of integer type"),
            (json!({"age": {"$in": 5}}), "takes an array"),
            (json!({"$sort": {"tags": 1}}), "cannot sort"),
            (json!({"$sort": {"age": 2}}), "directions"),
            (json!({"$where": "1=1"}), "unknown query operator"),
            (json!({"$after": "!!"}), "not a cursor"),
        ] {
            let err = parse_json(query.clone()).unwrap_err();
            assert_eq!(err.name, "BadRequest");
            assert!(err.message.contains(needle), "{query}: {}", err.message);
        }
    }

    #[test]
    fn cursors_round_trip() {
        let query = parse_json(json!({"$sort": {"age": 1}})).unwrap();
        let record = json!({"id": 7, "age": 30}).as_object().unwrap().clone();
        let cursor = encode_cursor(&query, &record).unwrap();
        let resumed = parse_json(json!({"$sort": {"age": 1}, "$after": cursor})).unwrap();
        assert_eq!(resumed.after, Some((json!(30), 7)));
    }
}
