//! Declarative access rules: who may subscribe to or publish on a channel, and who may call a
//! route, written in config as `public`, `authenticated`, or a table of claims to match.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::Claims;
use crate::error::ApiError;

/// Name of the error when an action needs a signed-in connection.
pub const AUTH_ERROR: &str = "AuthError";
/// Name of the error when the connection's claims do not match a rule.
pub const FORBIDDEN: &str = "Forbidden";

/// Who may do something.
///
/// In TOML: `"public"`, `"authenticated"`, or a table of claims such as `{ role = "admin" }`
/// (every listed claim must equal the token's, or be an element of it when the token's claim is
/// an array).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Rule {
    /// Anyone.
    #[default]
    Public,
    /// Any connection with a valid auth token.
    Authenticated,
    /// Connections whose token claims match these values.
    Claims(Map<String, Value>),
}

impl Rule {
    /// Checks the rule against a connection's claims; `action` completes the sentence "… is
    /// required to …" in the error message.
    pub fn check(&self, claims: Option<&Claims>, action: &str) -> Result<(), ApiError> {
        match (self, claims) {
            (Self::Public, _) => Ok(()),
            (_, None) => Err(ApiError::new(
                AUTH_ERROR,
                format!("Authentication is required to {action}"),
            )),
            (Self::Authenticated, Some(_)) => Ok(()),
            (Self::Claims(wanted), Some(claims)) => {
                let matches = wanted.iter().all(|(name, value)| match claims.get(name) {
                    Some(Value::Array(items)) if !value.is_array() => items.contains(value),
                    Some(actual) => actual == value,
                    None => false,
                });
                if matches {
                    Ok(())
                } else {
                    Err(ApiError::new(FORBIDDEN, format!("Not allowed to {action}")))
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(name) if name == "public" => Ok(Self::Public),
            Value::String(name) if name == "authenticated" => Ok(Self::Authenticated),
            Value::Object(claims) if !claims.is_empty() => Ok(Self::Claims(claims)),
            other => Err(serde::de::Error::custom(format!(
                "expected \"public\", \"authenticated\" or a table of claims such as {{ role = \"admin\" }}, found {other}"
            ))),
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Public => serializer.serialize_str("public"),
            Self::Authenticated => serializer.serialize_str("authenticated"),
            Self::Claims(claims) => claims.serialize(serializer),
        }
    }
}

/// A name pattern where `*` matches any run of characters (including `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    /// A pattern from its text, e.g. `private/*`.
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.text.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Self::new(&text))
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// `[[access.channel]]`: rules for channels whose names match `pattern`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    /// Channel names this rule covers (`*` matches anything).
    pub pattern: Pattern,
    /// Who may subscribe. Default `public`.
    #[serde(default)]
    pub subscribe: Rule,
    /// Who may publish from a client. Default `public`.
    #[serde(default)]
    pub publish: Rule,
}

/// `[[access.route]]`: who may call routes whose names match `pattern` (for path routes, the
/// pattern is matched against `METHOD /path`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Route names this rule covers.
    pub pattern: Pattern,
    /// Who may call. Default `public`.
    #[serde(default)]
    pub call: Rule,
}

/// `[access]`: the rules, checked in order; the first whose pattern matches decides, and a name
/// no rule matches is public.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessRules {
    /// Channel rules.
    #[serde(rename = "channel")]
    pub channels: Vec<ChannelRule>,
    /// Route rules.
    #[serde(rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteRule>,
}

impl AccessRules {
    /// May a connection with `claims` subscribe to `channel`?
    pub fn check_subscribe(&self, channel: &str, claims: Option<&Claims>) -> Result<(), ApiError> {
        match self.channels.iter().find(|r| r.pattern.matches(channel)) {
            Some(rule) => rule
                .subscribe
                .check(claims, &format!("subscribe to {channel}")),
            None => Ok(()),
        }
    }

    /// May a connection with `claims` publish on `channel`?
    pub fn check_publish(&self, channel: &str, claims: Option<&Claims>) -> Result<(), ApiError> {
        match self.channels.iter().find(|r| r.pattern.matches(channel)) {
            Some(rule) => rule.publish.check(claims, &format!("publish to {channel}")),
            None => Ok(()),
        }
    }

    /// May a connection with `claims` call `route`?
    pub fn check_call(&self, route: &str, claims: Option<&Claims>) -> Result<(), ApiError> {
        match self.routes.iter().find(|r| r.pattern.matches(route)) {
            Some(rule) => rule.call.check(claims, &format!("call {route}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn patterns_match_with_stars_anywhere() {
        let p = Pattern::new("private/*");
        assert!(p.matches("private/x") && p.matches("private/x/y") && p.matches("private/"));
        assert!(!p.matches("public/x") && !p.matches("private"));
        assert!(Pattern::new("*").matches("") && Pattern::new("*").matches("anything"));
        assert!(Pattern::new("a*b*c").matches("a-b-c") && !Pattern::new("a*b*c").matches("a-c-b"));
        assert!(
            Pattern::new("exact").matches("exact") && !Pattern::new("exact").matches("exactly")
        );
        assert!(Pattern::new("*.log").matches("x.log") && !Pattern::new("*.log").matches("x.logs"));
        assert!(!Pattern::new("ab*ba").matches("aba"));
    }

    #[test]
    fn rules_check_claims() {
        let ann = claims(json!({"username": "ann", "role": "admin", "groups": ["a", "b"]}));
        assert!(Rule::Public.check(None, "x").is_ok());
        let err = Rule::Authenticated
            .check(None, "subscribe to private/x")
            .unwrap_err();
        assert_eq!(
            err,
            ApiError::new(
                "AuthError",
                "Authentication is required to subscribe to private/x"
            )
        );
        assert!(Rule::Authenticated.check(Some(&ann), "x").is_ok());
        let admin = Rule::Claims(claims(json!({"role": "admin"})));
        assert!(admin.check(Some(&ann), "x").is_ok());
        let group = Rule::Claims(claims(json!({"groups": "b"})));
        assert!(group.check(Some(&ann), "x").is_ok());
        let other = Rule::Claims(claims(json!({"role": "owner"})));
        assert_eq!(other.check(Some(&ann), "x").unwrap_err().name, "Forbidden");
        assert_eq!(other.check(None, "x").unwrap_err().name, "AuthError");
    }

    #[test]
    fn rules_read_from_toml() {
        let rules: AccessRules = toml::from_str(
            r#"
            [[channel]]
            pattern = "private/*"
            subscribe = "authenticated"
            publish = { role = "admin" }
            [[route]]
            pattern = "GET /admin/*"
            call = "authenticated"
            "#,
        )
        .unwrap();
        let ann = claims(json!({"role": "user"}));
        assert!(rules.check_subscribe("news", None).is_ok());
        assert_eq!(
            rules.check_subscribe("private/x", None).unwrap_err().name,
            "AuthError"
        );
        assert!(rules.check_subscribe("private/x", Some(&ann)).is_ok());
        assert_eq!(
            rules
                .check_publish("private/x", Some(&ann))
                .unwrap_err()
                .name,
            "Forbidden"
        );
        assert_eq!(
            rules.check_call("GET /admin/users", None).unwrap_err().name,
            "AuthError"
        );
        assert!(rules.check_call("echo", None).is_ok());
        let bad = toml::from_str::<AccessRules>(
            "[[channel]]\npattern = \"x\"\nsubscribe = \"everyone\"\n",
        );
        assert!(bad.unwrap_err().to_string().contains("expected \"public\""));
    }
}
