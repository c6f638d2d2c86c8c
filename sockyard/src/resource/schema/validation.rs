//! Validation of records against their declaration (pure): each failure is `{attribute,
//! property, expected, actual, message}`, as resourceful/revalidator reports them, and they travel
//! in an error named `ValidationError`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::DEFAULT_MAX_STRING_LENGTH;
use super::{FieldDef, FieldType, Format, ResourceDef, RESERVED};
use crate::error::ApiError;

/// One validation failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Which constraint failed: `required`, `type`, `minimum`, `maximum`, `minLength`,
    /// `maxLength`, `pattern`, `format`, `enum`, `additionalProperties` or `readOnly` (a
    /// name the server keeps).
    pub attribute: &'static str,
    /// The field.
    pub property: String,
    /// What the constraint wants.
    pub expected: Value,
    /// What was given.
    pub actual: Value,
    /// A sentence about it.
    pub message: String,
}

impl ResourceDef {
    /// Validates the data of a create or an update: every field, defaults applied, required
    /// fields present. Returns the record's declared fields and, if allowed, the extra ones.
    /// The names the server keeps ([`RESERVED`], the parent column) are failures: an
    /// operation takes the ones it accepts (an update's `id` and `version`, a create's parent
    /// column) out of `data` first.
    pub fn validate_full(&self, data: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
        let mut errors = Vec::new();
        let mut record = Map::new();
        for (name, field) in &self.fields {
            let value = match data.get(name) {
                Some(Value::Null) | None => field.default.clone(),
                Some(value) => Some(value.clone()),
            };
            match value {
                None if field.required => errors.push(FieldError {
                    attribute: "required",
                    property: name.clone(),
                    expected: Value::Bool(true),
                    actual: data.get(name).cloned().unwrap_or(Value::Null),
                    message: "is required".to_owned(),
                }),
                None => {}
                Some(value) => match self.check_value(name, field, &value) {
                    Ok(value) => {
                        record.insert(name.clone(), value);
                    }
                    Err(mut errs) => errors.append(&mut errs),
                },
            }
        }
        self.check_extra(data, &mut record, &mut errors);
        self.finish(record, errors)
    }

    /// Validates the data of a patch: only the fields given; `null` clears a field that is not
    /// required. The names the server keeps are failures, as for [`Self::validate_full`].
    pub fn validate_partial(
        &self,
        data: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ApiError> {
        let mut errors = Vec::new();
        let mut record = Map::new();
        for (name, value) in data {
            let Some(field) = self.fields.get(name) else {
                continue;
            };
            if value.is_null() {
                if field.required {
                    errors.push(FieldError {
                        attribute: "required",
                        property: name.clone(),
                        expected: Value::Bool(true),
                        actual: Value::Null,
                        message: "is required".to_owned(),
                    });
                } else {
                    record.insert(name.clone(), Value::Null);
                }
                continue;
            }
            match self.check_value(name, field, value) {
                Ok(value) => {
                    record.insert(name.clone(), value);
                }
                Err(mut errs) => errors.append(&mut errs),
            }
        }
        self.check_extra(data, &mut record, &mut errors);
        self.finish(record, errors)
    }

    fn finish(
        &self,
        record: Map<String, Value>,
        errors: Vec<FieldError>,
    ) -> Result<Map<String, Value>, ApiError> {
        if errors.is_empty() {
            return Ok(record);
        }
        let summary: Vec<String> = errors
            .iter()
            .map(|e| format!("{} {}", e.property, e.message))
            .collect();
        Err(ApiError::new(
            "ValidationError",
            format!(
                "Validation failed for {}: {}",
                self.name,
                summary.join(", ")
            ),
        )
        .with("errors", &errors))
    }

    /// Refuses the names the server keeps (see [`RESERVED`]) and the parent column in `data`:
    /// a `ValidationError` with one `readOnly` failure per name. The operations call it on
    /// what their payload holds besides the names they take (`get` and `destroy`: `id`).
    pub fn refuse_system_fields(&self, data: &Map<String, Value>) -> Result<(), ApiError> {
        let errors = data
            .iter()
            .filter_map(|(name, value)| self.system_field_error(name, value))
            .collect();
        self.finish(Map::new(), errors).map(drop)
    }

    /// The failure for `name` when it is a name the server keeps: a system field, or the
    /// parent column, which a child keeps for life (children do not move between parents).
    fn system_field_error(&self, name: &str, value: &Value) -> Option<FieldError> {
        let message = if Some(name) == self.parent_column().as_deref() {
            let parent = self.parent.as_deref().unwrap_or_default();
            format!(
                "cannot be changed: a {} stays under the {parent} it was created under",
                self.name
            )
        } else if name == "owner" {
            "is set by the server, from the caller's token".to_owned()
        } else if RESERVED.contains(&name) {
            "is set by the server".to_owned()
        } else {
            return None;
        };
        Some(FieldError {
            attribute: "readOnly",
            property: name.to_owned(),
            expected: Value::Bool(true),
            actual: value.clone(),
            message,
        })
    }

    /// Fields that are not declared: the names the server keeps are errors, others are kept
    /// when allowed, else errors.
    fn check_extra(
        &self,
        data: &Map<String, Value>,
        record: &mut Map<String, Value>,
        errors: &mut Vec<FieldError>,
    ) {
        for (name, value) in data {
            if self.fields.contains_key(name) {
                continue;
            }
            if let Some(error) = self.system_field_error(name, value) {
                errors.push(error);
                continue;
            }
            if self.extra_fields && !name.starts_with('$') {
                record.insert(name.clone(), value.clone());
            } else {
                errors.push(FieldError {
                    attribute: "additionalProperties",
                    property: name.clone(),
                    expected: Value::Bool(false),
                    actual: value.clone(),
                    message: "is not a field of this resource".to_owned(),
                });
            }
        }
    }

    /// Checks (and normalises) one value against its field.
    pub fn check_value(
        &self,
        name: &str,
        field: &FieldDef,
        value: &Value,
    ) -> Result<Value, Vec<FieldError>> {
        let error = |attribute: &'static str, expected: Value, message: String| FieldError {
            attribute,
            property: name.to_owned(),
            expected,
            actual: value.clone(),
            message,
        };
        let type_error = || {
            vec![error(
                "type",
                json!(field.ty.name()),
                format!("must be of {} type", field.ty.name()),
            )]
        };
        let value = match field.ty {
            FieldType::String | FieldType::Enum => match value {
                Value::String(_) => value.clone(),
                _ => return Err(type_error()),
            },
            FieldType::Integer => match value.as_i64() {
                Some(i) => Value::from(i),
                None => match value.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                    _ => return Err(type_error()),
                },
            },
            FieldType::Number => match value.as_f64() {
                Some(_) => value.clone(),
                None => return Err(type_error()),
            },
            FieldType::Boolean => match value {
                Value::Bool(_) => value.clone(),
                _ => return Err(type_error()),
            },
            FieldType::Timestamp => match value {
                Value::Number(n) if n.as_i64().is_some() => value.clone(),
                Value::String(text) => match humantime::parse_rfc3339_weak(text) {
                    Ok(time) => {
                        let millis = time
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64);
                        Value::from(millis)
                    }
                    Err(_) => return Err(type_error()),
                },
                _ => return Err(type_error()),
            },
            FieldType::Array => match value {
                Value::Array(_) => value.clone(),
                _ => return Err(type_error()),
            },
            FieldType::Object => match value {
                Value::Object(_) => value.clone(),
                _ => return Err(type_error()),
            },
        };
        let mut errors = Vec::new();
        if let Some(number) = value.as_f64() {
            if let Some(min) = field.min {
                if number < min {
                    errors.push(error(
                        "minimum",
                        json!(min),
                        format!("must be greater than or equal to {min}"),
                    ));
                }
            }
            if let Some(max) = field.max {
                if number > max {
                    errors.push(error(
                        "maximum",
                        json!(max),
                        format!("must be less than or equal to {max}"),
                    ));
                }
            }
        }
        let length = match &value {
            Value::String(text) => Some(text.chars().count()),
            Value::Array(items) => Some(items.len()),
            _ => None,
        };
        if let Some(length) = length {
            if let Some(min) = field.min_length {
                if length < min {
                    errors.push(error(
                        "minLength",
                        json!(min),
                        format!("is too short (minimum is {min})"),
                    ));
                }
            }
            let default_max =
                matches!(value, Value::String(_)).then_some(DEFAULT_MAX_STRING_LENGTH);
            if let Some(max) = field.max_length.or(default_max) {
                if length > max {
                    errors.push(error(
                        "maxLength",
                        json!(max),
                        format!("is too long (maximum is {max})"),
                    ));
                }
            }
        }
        if let Value::String(text) = &value {
            if let Some(pattern) = &field.pattern {
                if !pattern_matches(pattern, text) {
                    errors.push(error(
                        "pattern",
                        json!(pattern),
                        format!("does not match pattern {pattern}"),
                    ));
                }
            }
            if let Some(format) = field.format {
                if !format_ok(format, text) {
                    errors.push(error(
                        "format",
                        json!(format),
                        format!(
                            "is not a valid {}",
                            serde_json::to_value(format)
                                .unwrap_or_default()
                                .as_str()
                                .unwrap_or("")
                        ),
                    ));
                }
            }
            if field.ty == FieldType::Enum && !field.values.contains(text) {
                errors.push(error(
                    "enum",
                    json!(field.values),
                    "must be present in given enumerator".to_owned(),
                ));
            }
        }
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(errors)
        }
    }
}

/// Whether `text` matches `pattern`, compiling each pattern once per process (declarations
/// are checked to compile at start-up; one that does not never matches).
fn pattern_matches(pattern: &str, text: &str) -> bool {
    static COMPILED: OnceLock<Mutex<HashMap<String, Option<regex::Regex>>>> = OnceLock::new();
    let compiled = {
        let mut cache = COMPILED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .entry(pattern.to_owned())
            .or_insert_with(|| regex::Regex::new(pattern).ok())
            .clone()
    };
    compiled.is_some_and(|re| re.is_match(text))
}

/// Whether `text` has `format`.
fn format_ok(format: Format, text: &str) -> bool {
    match format {
        Format::Email => {
            let mut parts = text.split('@');
            matches!((parts.next(), parts.next(), parts.next()), (Some(local), Some(domain), None)
                if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !text.contains(char::is_whitespace))
        }
        Format::Url => text.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                && !rest.is_empty()
                && !text.contains(char::is_whitespace)
        }),
        Format::DateTime => humantime::parse_rfc3339_weak(text).is_ok(),
        Format::Uuid => {
            let groups: Vec<&str> = text.split('-').collect();
            groups.len() == 5
                && groups
                    .iter()
                    .zip([8, 4, 4, 4, 12])
                    .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::schema::tests::creature;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn full_validation_applies_defaults_and_reports_each_problem() {
        let def = creature();
        assert_eq!(
            def.validate_full(&map(json!({"name": "Smaug", "age": 171})))
                .unwrap(),
            map(json!({"age": 171, "kind": "dragon", "name": "Smaug"}))
        );
        let err = def
            .validate_full(&map(
                json!({"age": -1, "kind": "cat", "email": "nope", "colour": "red"}),
            ))
            .unwrap_err();
        assert_eq!(err.name, "ValidationError");
        let errors = err.extra["errors"].as_array().unwrap();
        let attributes: Vec<&str> = errors
            .iter()
            .map(|e| e["attribute"].as_str().unwrap())
            .collect();
        assert_eq!(
            attributes,
            [
                "minimum",
                "format",
                "enum",
                "required",
                "additionalProperties"
            ]
        );
        assert_eq!(
            errors[0],
            json!({"attribute": "minimum", "property": "age", "expected": 0.0, "actual": -1, "message": "must be greater than or equal to 0"})
        );
        assert!(
            err.message.starts_with("Validation failed for creature: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn types_are_checked_strictly() {
        let def = creature();
        for (data, property) in [
            (json!({"name": 5}), "name"),
            (json!({"name": "x", "age": "5"}), "age"),
            (json!({"name": "x", "age": 1.5}), "age"),
            (json!({"name": "x", "age": {"$gt": 1}}), "age"),
        ] {
            let err = def.validate_full(&map(data)).unwrap_err();
            assert_eq!(err.extra["errors"][0]["attribute"], "type");
            assert_eq!(err.extra["errors"][0]["property"], property);
        }
        // 3.0 is an integer.
        assert_eq!(
            def.validate_full(&map(json!({"name": "x", "age": 3.0})))
                .unwrap()["age"],
            3
        );
    }

    #[test]
    fn the_names_the_server_keeps_are_refused() {
        let mut def = creature();
        def.extra_fields = true;
        for name in RESERVED {
            let err = def
                .validate_full(&map(json!({"name": "x", name: 1})))
                .unwrap_err();
            assert_eq!(err.extra["errors"][0]["attribute"], "readOnly");
            assert_eq!(err.extra["errors"][0]["property"], name);
            assert!(def.validate_partial(&map(json!({ name: 1 }))).is_err());
            assert!(def.refuse_system_fields(&map(json!({ name: 1 }))).is_err());
        }
        assert!(def.refuse_system_fields(&map(json!({"colour": 1}))).is_ok());
        let song = ResourceDef::new("song", []).parent("album");
        let err = song
            .validate_partial(&map(json!({"album_id": 2})))
            .unwrap_err();
        assert_eq!(
            err.message,
            "Validation failed for song: album_id cannot be changed: a song stays under the \
             album it was created under"
        );
    }

    #[test]
    fn partial_validation_checks_only_what_is_given() {
        let def = creature();
        assert_eq!(
            def.validate_partial(&map(json!({"age": 5}))).unwrap(),
            map(json!({"age": 5}))
        );
        assert_eq!(
            def.validate_partial(&map(json!({"email": null}))).unwrap(),
            map(json!({"email": null}))
        );
        let err = def
            .validate_partial(&map(json!({"name": null})))
            .unwrap_err();
        assert_eq!(err.extra["errors"][0]["attribute"], "required");
    }

    #[test]
    fn timestamps_formats_and_lengths() {
        let mut def = ResourceDef::new("event", []);
        def.fields
            .insert("at".into(), FieldDef::new(FieldType::Timestamp));
        let mut id = FieldDef::new(FieldType::String);
        id.format = Some(Format::Uuid);
        def.fields.insert("ref".into(), id);
        let mut tags = FieldDef::new(FieldType::Array);
        tags.max_length = Some(2);
        def.fields.insert("tags".into(), tags);
        let record = def
            .validate_full(&map(json!({"at": "2026-01-02T03:04:05Z", "ref": "123e4567-e89b-12d3-a456-426614174000", "tags": [1]})))
            .unwrap();
        assert_eq!(record["at"], 1_767_323_045_000i64);
        let err = def
            .validate_full(&map(
                json!({"at": "yesterday", "ref": "x", "tags": [1, 2, 3]}),
            ))
            .unwrap_err();
        let attributes: Vec<&str> = err.extra["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["attribute"].as_str().unwrap())
            .collect();
        assert_eq!(attributes, ["type", "format", "maxLength"]);
    }

    #[test]
    fn strings_without_a_declared_length_have_a_default_maximum() {
        let mut def = ResourceDef::new("note", []);
        def.fields
            .insert("text".into(), FieldDef::new(FieldType::String));
        let mut long = FieldDef::new(FieldType::String);
        long.max_length = Some(DEFAULT_MAX_STRING_LENGTH * 2);
        def.fields.insert("body".into(), long);
        let fits = "x".repeat(DEFAULT_MAX_STRING_LENGTH);
        assert!(def.validate_full(&map(json!({"text": fits}))).is_ok());
        let over = "x".repeat(DEFAULT_MAX_STRING_LENGTH + 1);
        let err = def
            .validate_full(&map(json!({"text": over.clone()})))
            .unwrap_err();
        assert_eq!(err.extra["errors"][0]["attribute"], "maxLength");
        assert_eq!(
            err.extra["errors"][0]["expected"],
            json!(DEFAULT_MAX_STRING_LENGTH)
        );
        // A declared length wins.
        assert!(def.validate_full(&map(json!({"body": over}))).is_ok());
    }
}
