//! Join and leave messages: the `--joinmsg`/`--leavemsg` templates filled in for one client, as
//! ScaleSocket does, but without letting a client's values inject placeholders (pure).
//!
//! # Placeholders
//!
//! | Placeholder | Replaced by |
//! |---|---|
//! | `#ID` | the connection id |
//! | `#QUERY_STRING` | the raw query string (still percent-encoded) |
//! | `#REMOTE_ADDR` | the client's address, as given (`ip:port`) |
//! | `#ROOM` | the room name, as given |
//! | `#QUERY_<NAME>` | the query parameter whose upper-cased name is `NAME`, re-encoded |
//!
//! They are matched in that order at each `#`, so `#QUERY_STRING` is always the query string
//! (a parameter named `string` cannot be reached) and `#IDX` is the id followed by `X`. Among
//! parameters the longest matching name wins (`#QUERY_AB` is `ab`, not `a` then `B`). Anything
//! else, including a parameter the client did not send, stays as written.
//!
//! The template is scanned once and replacements are never scanned again, so a room name, an
//! address or a value holding `#ID` comes out as written. Query values are also percent-decoded
//! then re-encoded (`bob+smith` and `bob%20smith` both give `bob%20smith`, `#` gives `%23`), so
//! they hold nothing but unreserved characters and `%XX` escapes: no quotes, spaces or newlines
//! can reach the child's input through them.

use std::collections::BTreeMap;

use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes a re-encoded query value keeps as they are: RFC 3986's unreserved characters, as
/// ScaleSocket's `urlencoding::encode` does.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What is known about a client when it joins or leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinInfo<'a> {
    /// The connection id.
    pub id: u32,
    /// The room name, as it will be shown.
    pub room: &'a str,
    /// The client's address (`ip:port`).
    pub remote_addr: &'a str,
    /// The query string of the request, without the `?`, still percent-encoded.
    pub query_string: &'a str,
}

/// Fills in `template` for the client described by `info` (see the module docs).
///
/// ```
/// use sockyard::room::template::{render, JoinInfo};
///
/// let info = JoinInfo {
///     id: 3,
///     room: "lobby",
///     remote_addr: "127.0.0.1:5000",
///     query_string: "name=bob+smith",
/// };
/// assert_eq!(
///     render(r##"{"t":"Join","_from":#ID,"name":"#QUERY_NAME"}"##, &info),
///     r#"{"t":"Join","_from":3,"name":"bob%20smith"}"#
/// );
/// ```
pub fn render(template: &str, info: &JoinInfo<'_>) -> String {
    let params = query_params(info.query_string);
    let id = info.id.to_string();
    let fixed = [
        ("#ID", id.as_str()),
        ("#QUERY_STRING", info.query_string),
        ("#REMOTE_ADDR", info.remote_addr),
        ("#ROOM", info.room),
    ];
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('#') {
        let (before, from_hash) = rest.split_at(at);
        out.push_str(before);
        let fixed_match = fixed.iter().find_map(|(placeholder, value)| {
            from_hash
                .strip_prefix(placeholder)
                .map(|after| (*value, after))
        });
        let found = fixed_match.or_else(|| {
            let name_and_after = from_hash.strip_prefix("#QUERY_")?;
            params
                .iter()
                .filter_map(|(name, value)| {
                    let after = name_and_after.strip_prefix(name.as_str())?;
                    Some((name.len(), value.as_str(), after))
                })
                .max_by_key(|(len, _, _)| *len)
                .map(|(_, value, after)| (value, after))
        });
        match found {
            Some((value, after)) => {
                out.push_str(value);
                rest = after;
            }
            None => {
                out.push('#');
                rest = from_hash.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// The query parameters by upper-cased name (the last one wins when a name repeats; empty names
/// are left out), each value decoded as a form (`+` is a space, then `%XX`) and re-encoded.
fn query_params(query_string: &str) -> BTreeMap<String, String> {
    let query_string = query_string.strip_prefix('?').unwrap_or(query_string);
    let mut params = BTreeMap::new();
    for pair in query_string.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = String::from_utf8_lossy(&form_decode(name)).to_uppercase();
        if name.is_empty() {
            continue;
        }
        let value = percent_encode(&form_decode(value), UNRESERVED).to_string();
        params.insert(name, value);
    }
    params
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte, and
/// a `%` not followed by two hex digits stands for itself.
fn form_decode(component: &str) -> Vec<u8> {
    let spaced = component.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(query_string: &str) -> JoinInfo<'_> {
        JoinInfo {
            id: 1,
            room: "e1",
            remote_addr: "127.0.0.1:59568",
            query_string,
        }
    }

    #[test]
    fn scalesocket_example() {
        // scalesocket.md §6.4, `/e1?name=bob%20smith&x=%23ID&y=1`.
        let template =
            "join id=#ID room=#ROOM addr=#REMOTE_ADDR qs=#QUERY_STRING name=#QUERY_NAME x=#QUERY_X";
        assert_eq!(
            render(template, &info("name=bob%20smith&x=%23ID&y=1")),
            "join id=1 room=e1 addr=127.0.0.1:59568 qs=name=bob%20smith&x=%23ID&y=1 name=bob%20smith x=%23ID"
        );
    }

    #[test]
    fn json_default_join_message() {
        let template = r#"{"t":"Join","_from":#ID}"#;
        let info = JoinInfo { id: 42, ..info("") };
        assert_eq!(render(template, &info), r#"{"t":"Join","_from":42}"#);
    }

    #[test]
    fn unknown_and_absent_placeholders_stay() {
        let info = info("y=1");
        assert_eq!(render("name=#QUERY_NAME", &info), "name=#QUERY_NAME");
        assert_eq!(
            render("#NOPE #query_y #QUERY_", &info),
            "#NOPE #query_y #QUERY_"
        );
        assert_eq!(render("#", &info), "#");
        assert_eq!(render("a#", &info), "a#");
        assert_eq!(render("##ID", &info), "#1");
        assert_eq!(render("", &info), "");
        assert_eq!(render("no placeholders", &info), "no placeholders");
    }

    #[test]
    fn placeholders_are_prefixes() {
        let info = info("y=1");
        assert_eq!(render("#IDENT", &info), "1ENT");
        assert_eq!(render("#ROOMS", &info), "e1S");
        assert_eq!(render("#QUERY_YZ", &info), "1Z");
        assert_eq!(render("#QUERY_STRINGS", &info), "y=1S");
    }

    #[test]
    fn parameter_named_string_or_id_breaks_nothing() {
        let info = info("string=s&id=7&room=r");
        assert_eq!(
            render("#QUERY_STRING|#QUERY_ID|#ID|#QUERY_ROOM|#ROOM", &info),
            "string=s&id=7&room=r|7|1|r|e1"
        );
    }

    #[test]
    fn longest_parameter_name_wins() {
        let info = info("a=short&ab=long");
        assert_eq!(
            render("#QUERY_AB #QUERY_A #QUERY_ABC", &info),
            "long short longC"
        );
        let reversed = self::info("ab=long&a=short");
        assert_eq!(render("#QUERY_AB", &reversed), "long");
    }

    #[test]
    fn values_cannot_inject_placeholders() {
        // Raw `#` in the request (not legal in a URL, but a client can send it).
        let hostile = JoinInfo {
            id: 5,
            room: "#ID#QUERY_A",
            remote_addr: "#ROOM",
            query_string: "a=#ID&b=%23QUERY_A",
        };
        assert_eq!(
            render(
                "#ROOM|#REMOTE_ADDR|#QUERY_STRING|#QUERY_A|#QUERY_B",
                &hostile
            ),
            "#ID#QUERY_A|#ROOM|a=#ID&b=%23QUERY_A|%23ID|%23QUERY_A"
        );
    }

    #[test]
    fn values_are_decoded_then_encoded() {
        let info = info("a=bob+smith&b=%22quoted%22%0A&c=%zz&d=%FF%fe&e=caf%C3%A9&f=-_.~&g=a%2Bb");
        assert_eq!(
            render(
                "#QUERY_A|#QUERY_B|#QUERY_C|#QUERY_D|#QUERY_E|#QUERY_F|#QUERY_G",
                &info
            ),
            "bob%20smith|%22quoted%22%0A|%25zz|%FF%FE|caf%C3%A9|-_.~|a%2Bb"
        );
    }

    #[test]
    fn names_are_decoded_and_upper_cased() {
        let info = info("user%20name=x&Mixed=y&stra%C3%9Fe=z");
        assert_eq!(
            render(
                "#QUERY_USER NAME|#QUERY_MIXED|#QUERY_Mixed|#QUERY_STRASSE",
                &info
            ),
            "x|y|#QUERY_Mixed|z"
        );
    }

    #[test]
    fn empty_and_repeated_parameters() {
        let info = info("?e=&flag&=nameless&&r=1&r=2");
        assert_eq!(
            render("[#QUERY_E][#QUERY_FLAG][#QUERY_R][#QUERY_]", &info),
            "[][][2][#QUERY_]"
        );
    }

    #[test]
    fn multibyte_text_around_placeholders() {
        let info = info("n=1");
        assert_eq!(render("é#IDé#Ω#QUERY_Nü", &info), "é1é#Ω1ü");
    }
}
