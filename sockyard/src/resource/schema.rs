//! Resource declarations — fields with types and constraints, parent, access rules — their
//! checks, and (in `validation`) the validation of records against them (pure: no IO).

mod validation;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use crate::auth::access::Rule;
use crate::auth::Claims;
use crate::error::ApiError;

pub use validation::FieldError;

/// The longest string (in characters) a field without its own `max_length` accepts: a record
/// cannot grow without bound through a field declared without one.
pub const DEFAULT_MAX_STRING_LENGTH: usize = 65_536;

/// Names every record has, which declared fields may not use.
pub const RESERVED: [&str; 6] = ["id", "version", "ctime", "mtime", "owner", "extra"];

/// The type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A UTF-8 string.
    String,
    /// A 64-bit integer.
    Integer,
    /// A 64-bit float.
    Number,
    /// `true` or `false`.
    Boolean,
    /// Milliseconds since the Unix epoch; RFC 3339 text is accepted on input.
    Timestamp,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
    /// One of `values`.
    Enum,
}

impl FieldType {
    fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Timestamp => "timestamp",
            Self::Array => "array",
            Self::Object => "object",
            Self::Enum => "enum",
        }
    }

    /// Whether values of this type can be filtered and sorted on.
    pub fn is_scalar(self) -> bool {
        !matches!(self, Self::Array | Self::Object)
    }
}

/// A string format checked on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `local@domain`.
    Email,
    /// An absolute URL (`scheme://…`).
    Url,
    /// RFC 3339 date and time.
    DateTime,
    /// 8-4-4-4-12 hexadecimal.
    Uuid,
}

/// One declared field.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// The type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Whether a value must be present (after defaults).
    #[serde(default)]
    pub required: bool,
    /// Smallest number allowed (integer, number, timestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest number allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Shortest string (in characters) or array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<usize>,
    /// Longest string (in characters) or array. Strings without one are held to
    /// [`DEFAULT_MAX_STRING_LENGTH`] characters; set a larger value to store more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// A regular expression strings must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// A format strings must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The values an `enum` field may take.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The value used when a create leaves the field out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

impl FieldDef {
    /// A field of type `ty` with no constraints.
    pub fn new(ty: FieldType) -> Self {
        Self {
            ty,
            required: false,
            min: None,
            max: None,
            min_length: None,
            max_length: None,
            pattern: None,
            format: None,
            values: Vec::new(),
            default: None,
        }
    }

    /// Marks the field required.
    #[must_use]
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Sets the smallest allowed number.
    #[must_use]
    pub fn min(mut self, min: f64) -> Self {
        self.min = Some(min);
        self
    }

    /// Sets the largest allowed number.
    #[must_use]
    pub fn max(mut self, max: f64) -> Self {
        self.max = Some(max);
        self
    }
}

/// Who may read or write a resource's records.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Access {
    /// A rule on the caller's claims (public, authenticated or a claim match).
    Rule(Rule),
    /// Only the record's owner (the claim named by the resource's `owner`).
    #[default]
    Owner,
}

impl<'de> Deserialize<'de> for Access {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value == json!("owner") {
            return Ok(Self::Owner);
        }
        Rule::deserialize(value)
            .map(Self::Rule)
            .map_err(|e| serde::de::Error::custom(format!("{e} (or \"owner\")")))
    }
}

impl Serialize for Access {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Rule(rule) => rule.serialize(serializer),
            Self::Owner => serializer.serialize_str("owner"),
        }
    }
}

fn public() -> Access {
    Access::Rule(Rule::Public)
}

fn yes() -> bool {
    true
}

/// A remote method declared in config: runs a command with the JSON payload on stdin and
/// answers with the JSON it prints.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecMethod {
    /// The method name: callable as `<resource>/<name>`.
    pub name: String,
    /// The program and its arguments.
    pub exec: Vec<String>,
    /// Milliseconds before the command is killed and the call fails. Default 10000.
    #[serde(default = "default_exec_timeout")]
    pub timeout_ms: u64,
}

fn default_exec_timeout() -> u64 {
    10_000
}

/// One `[[resource]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDef {
    /// The name: route prefix, table name, channel name. Lower case, digits and `_`.
    pub name: String,
    /// The declared fields.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldDef>,
    /// The parent resource: records then carry `<parent>_id`, are created under a parent and
    /// destroyed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Who may read. Default `public`.
    #[serde(default = "public")]
    pub read: Access,
    /// Who may create, update and destroy. Default `public`.
    #[serde(default = "public")]
    pub write: Access,
    /// The claim that identifies a record's owner (e.g. `sub` or `username`); set on create and
    /// used by the `owner` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Keep `ctime`/`mtime` (milliseconds since the epoch). Default true.
    #[serde(default = "yes")]
    pub timestamps: bool,
    /// Accept and store fields that are not declared. Default false (they are rejected).
    #[serde(default)]
    pub extra_fields: bool,
    /// `update` and `patch` must name the `version` they change. Default true.
    #[serde(default = "yes")]
    pub require_version: bool,
    /// Remote methods that run a command.
    #[serde(default, rename = "remote", skip_serializing_if = "Vec::is_empty")]
    pub remotes: Vec<ExecMethod>,
}

/// A declaration that cannot work.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("resource `{resource}`: {message}")]
pub struct DefinitionError {
    /// The resource.
    pub resource: String,
    /// What is wrong.
    pub message: String,
}

/// Checks a name used as a table, column or route segment.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 48
}

impl ResourceDef {
    /// A resource with the given fields and the defaults (public, timestamps, versions).
    pub fn new(name: &str, fields: impl IntoIterator<Item = (&'static str, FieldDef)>) -> Self {
        Self {
            name: name.to_owned(),
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            parent: None,
            read: public(),
            write: public(),
            owner: None,
            timestamps: true,
            extra_fields: false,
            require_version: true,
            remotes: Vec::new(),
        }
    }

    /// Sets the parent resource.
    #[must_use]
    pub fn parent(mut self, parent: &str) -> Self {
        self.parent = Some(parent.to_owned());
        self
    }

    /// The column holding the parent's id (`album_id`).
    pub fn parent_column(&self) -> Option<String> {
        self.parent.as_ref().map(|p| format!("{p}_id"))
    }

    /// Checks names, types and constraints.
    pub fn check(&self) -> Result<(), DefinitionError> {
        let fail = |message: String| {
            Err(DefinitionError {
                resource: self.name.clone(),
                message,
            })
        };
        if !is_identifier(&self.name) {
            return fail(
                "the name must be lower case letters, digits and `_`, starting with a letter"
                    .to_owned(),
            );
        }
        let parent_column = self.parent_column();
        for (name, field) in &self.fields {
            if !is_identifier(name)
                || RESERVED.contains(&name.as_str())
                || Some(name) == parent_column.as_ref()
            {
                return fail(format!("`{name}` cannot be a field name"));
            }
            if field.ty == FieldType::Enum && field.values.is_empty() {
                return fail(format!("enum field `{name}` needs `values`"));
            }
            if let Some(pattern) = &field.pattern {
                if let Err(err) = regex::Regex::new(pattern) {
                    return fail(format!("field `{name}`: invalid pattern: {err}"));
                }
            }
            if let Some(default) = &field.default {
                if let Err(errors) = self.check_value(name, field, default) {
                    return fail(format!(
                        "field `{name}`: invalid default: {}",
                        errors[0].message
                    ));
                }
            }
        }
        if let Some(parent) = &self.parent {
            if !is_identifier(parent) || parent == &self.name {
                return fail(format!("invalid parent `{parent}`"));
            }
        }
        if (self.read == Access::Owner || self.write == Access::Owner) && self.owner.is_none() {
            return fail("the `owner` rule needs `owner = \"<claim>\"`".to_owned());
        }
        for remote in &self.remotes {
            if !is_identifier(&remote.name) || is_operation(&remote.name) {
                return fail(format!("invalid remote method name `{}`", remote.name));
            }
            if remote.exec.is_empty() {
                return fail(format!("remote method `{}` needs a command", remote.name));
            }
        }
        Ok(())
    }

    /// Whether the caller may read records (for `owner`: only their own; checked per record).
    pub fn check_read(&self, claims: Option<&Claims>) -> Result<(), ApiError> {
        check_access(&self.read, claims, &format!("read {}", self.name))
    }

    /// Whether the caller may write records (for `owner`: only their own; checked per record).
    pub fn check_write(&self, claims: Option<&Claims>) -> Result<(), ApiError> {
        check_access(&self.write, claims, &format!("change {}", self.name))
    }

    /// The caller's owner value (the claim named by `owner`), if any.
    pub fn owner_of(&self, claims: Option<&Claims>) -> Option<Value> {
        let claim = self.owner.as_ref()?;
        claims?.get(claim).cloned()
    }
}

fn check_access(access: &Access, claims: Option<&Claims>, action: &str) -> Result<(), ApiError> {
    match access {
        Access::Rule(rule) => rule.check(claims, action),
        // Whether the record is theirs is checked per record; here only sign-in is required.
        Access::Owner => Rule::Authenticated.check(claims, action),
    }
}

/// The names of the built-in operations (which remote methods may not take).
pub fn is_operation(name: &str) -> bool {
    matches!(
        name,
        "create" | "get" | "list" | "all" | "update" | "patch" | "destroy" | "find"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `creature {name (required), age ≥ 0, kind (dragon|unicorn, default dragon), email}`.
    pub(super) fn creature() -> ResourceDef {
        let mut def = ResourceDef::new(
            "creature",
            [
                ("name", FieldDef::new(FieldType::String).required()),
                ("age", FieldDef::new(FieldType::Integer).min(0.0)),
            ],
        );
        let mut kind = FieldDef::new(FieldType::Enum);
        kind.values = vec!["dragon".into(), "unicorn".into()];
        kind.default = Some(json!("dragon"));
        def.fields.insert("kind".into(), kind);
        let mut email = FieldDef::new(FieldType::String);
        email.format = Some(Format::Email);
        def.fields.insert("email".into(), email);
        def
    }

    #[test]
    fn definitions_are_checked() {
        let mut bad = creature();
        bad.fields
            .insert("id".into(), FieldDef::new(FieldType::String));
        assert!(bad.check().unwrap_err().message.contains("`id`"));
        let mut bad = creature();
        bad.fields
            .insert("Name; DROP".into(), FieldDef::new(FieldType::String));
        assert!(bad.check().is_err());
        let mut bad = creature();
        bad.read = Access::Owner;
        assert!(bad.check().unwrap_err().message.contains("owner"));
        assert!(creature().check().is_ok());
        assert!(!is_identifier("drop table") && !is_identifier("1x") && is_identifier("album_id"));
    }

    #[test]
    fn access_reads_from_toml() {
        #[derive(Deserialize)]
        struct Wrapper {
            resource: Vec<ResourceDef>,
        }
        let parsed: Wrapper = toml::from_str(
            r#"
            [[resource]]
            name = "note"
            owner = "username"
            read = "owner"
            write = { role = "editor" }
            [resource.fields]
            text = { type = "string", required = true, max_length = 500 }
            "#,
        )
        .unwrap();
        let note = &parsed.resource[0];
        assert_eq!(note.read, Access::Owner);
        assert!(matches!(note.write, Access::Rule(Rule::Claims(_))));
        assert!(note.check().is_ok());
        assert_eq!(note.fields["text"].max_length, Some(500));
    }
}
