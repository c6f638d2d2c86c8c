//! The JSON codec, behaving as SocketCluster's `sc-formatter`: text frames, arrays as batches,
//! non-JSON text as raw messages, binary values as `{"base64":true,"data":"…"}` on the wire.

use base64::Engine as _;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{CodecError, Decoded, Envelope, FrameKind};

/// Decodes a frame the way `sc-formatter` does: text that does not start (after whitespace) with
/// `{` or `[`, or that fails to parse, is a raw message; a JSON array is a batch of packets.
///
/// Binary frames are read as text too (the official server does the same), with invalid UTF-8
/// replaced. Strings are read as in [`parse`].
pub fn decode(payload: &[u8]) -> Decoded {
    let first = payload
        .iter()
        .find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
    if !matches!(first, Some(b'{' | b'[')) {
        return raw(payload);
    }
    match parse(payload) {
        Ok(Value::Array(items)) => Decoded::Packets(items),
        Ok(value) => Decoded::Packets(vec![value]),
        Err(err) if is_too_deep(&err) && first == Some(&b'[') => deep_batch(payload),
        Err(err) if is_too_deep(&err) => too_deep(payload),
        Err(_) => raw(payload),
    }
}

/// Text frames were UTF-8-checked by the WebSocket layer; binary ones may need replacing.
fn raw(payload: &[u8]) -> Decoded {
    Decoded::Raw(String::from_utf8_lossy(payload).into_owned())
}

/// A packet too deep to parse, with its call id if it has one.
fn too_deep(packet: &[u8]) -> Decoded {
    Decoded::TooDeep {
        cid: top_level_scalar(packet, "cid").and_then(|cid| cid.as_u64()),
    }
}

/// A batch the parser found too deep as a whole: its packets are parsed one by one, so that a
/// packet nests as deeply inside a batch as alone, and one too deep does not cost the others.
fn deep_batch(payload: &[u8]) -> Decoded {
    let Some(items) = array_items(payload) else {
        return Decoded::TooDeep { cid: None };
    };
    let mut parts = Vec::with_capacity(items.len());
    for item in items {
        parts.push(match parse(item) {
            Ok(value) => Decoded::Packets(vec![value]),
            Err(err) if is_too_deep(&err) => too_deep(item),
            // Not JSON after all: the whole frame is raw, as `sc-formatter` sees it.
            Err(_) => return raw(payload),
        });
    }
    Decoded::Batch(parts)
}

/// Parses JSON text, reading a `\u` escape of a lone UTF-16 surrogate (which JavaScript's
/// `JSON.stringify` writes for a string holding one, and `JSON.parse` accepts) as U+FFFD
/// instead of refusing the text.
pub fn parse(text: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(text).or_else(|err| match without_lone_surrogates(text) {
        Some(repaired) => serde_json::from_slice(&repaired),
        None => Err(err),
    })
}

/// A copy of `text` with every `\u` escape of a lone surrogate turned into `\ufffd` (the same
/// length, so parser positions do not move); `None` when there is none.
fn without_lone_surrogates(text: &[u8]) -> Option<Vec<u8>> {
    let mut repaired: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'\\' {
            i += 1;
            continue;
        }
        match escaped_unit(text, i) {
            // Any other escape, `\\` included, is two bytes.
            None => i += 2,
            Some(0xD800..=0xDBFF) if matches!(escaped_unit(text, i + 6), Some(0xDC00..=0xDFFF)) => {
                i += 12;
            }
            Some(0xD800..=0xDFFF) => {
                repaired.get_or_insert_with(|| text.to_vec())[i..i + 6].copy_from_slice(b"\\ufffd");
                i += 6;
            }
            Some(_) => i += 6,
        }
    }
    repaired
}

/// The UTF-16 code unit of the `\uXXXX` escape at `at`, if one is there.
fn escaped_unit(text: &[u8], at: usize) -> Option<u16> {
    let escape = text.get(at..at + 6)?;
    let (b'\\', b'u', digits) = (escape[0], escape[1], &escape[2..]) else {
        return None;
    };
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// How deeply arrays and objects may nest in a JSON message (the parser's fixed limit).
pub const MAX_DEPTH: usize = 128;

/// Whether parsing failed because the text nests deeper than [`MAX_DEPTH`].
pub fn is_too_deep(err: &serde_json::Error) -> bool {
    err.to_string().starts_with("recursion limit exceeded")
}

/// The value of `key` in the top-level object of `text` when it is a number or a string, found
/// without building any nested value: a message too deeply nested to parse can still be
/// answered by its call id.
pub fn top_level_scalar(text: &[u8], key: &str) -> Option<Value> {
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    if text[start] != b'{' {
        return None;
    }
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut key_matched = false;
    for token in Tokens::new(text, start) {
        match token.byte {
            b'"' if depth == 1 && expect_key => {
                let name = serde_json::from_slice::<String>(&text[token.at..token.end]).ok();
                key_matched = name.as_deref() == Some(key);
                expect_key = false;
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 1 => expect_key = true,
            b':' if depth == 1 && key_matched => return scalar_after(text, token.end),
            _ => {}
        }
    }
    None
}

/// The number or string that starts (after whitespace) at `from`.
fn scalar_after(text: &[u8], from: usize) -> Option<Value> {
    let from = from + text[from..].iter().position(|b| !b.is_ascii_whitespace())?;
    let to = match text[from] {
        b'"' => string_end(text, from)?,
        b'-' | b'0'..=b'9' => {
            from + text[from..]
                .iter()
                .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .unwrap_or(text.len() - from)
        }
        _ => return None,
    };
    serde_json::from_slice(&text[from..to]).ok()
}

/// The text of each element of the top-level array `text`, found without parsing them; `None`
/// unless `text` is one array, closed, with nothing but whitespace after it.
fn array_items(text: &[u8]) -> Option<Vec<&[u8]>> {
    let open = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let mut depth = 0usize;
    let mut from = open + 1;
    let mut items = Vec::new();
    for token in Tokens::new(text, open) {
        match token.byte {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    items.push(&text[from..token.at]);
                    let rest = &text[token.end..];
                    return rest.iter().all(u8::is_ascii_whitespace).then_some(items);
                }
            }
            b',' if depth == 1 => {
                items.push(&text[from..token.at]);
                from = token.end;
            }
            _ => {}
        }
    }
    None
}

/// One structural token of JSON text: a bracket, a brace, `,`, `:`, or a whole string.
struct Token {
    byte: u8,
    /// Where it starts.
    at: usize,
    /// Just past its end.
    end: usize,
}

/// The structural tokens of JSON text from a position on, strings skipped whole; ends at the end
/// of the text or at an unterminated string.
struct Tokens<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a [u8], at: usize) -> Self {
        Self { text, at }
    }
}

impl Iterator for Tokens<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        while let Some(&byte) = self.text.get(self.at) {
            let at = self.at;
            match byte {
                b'"' => {
                    let end = string_end(self.text, at)?;
                    self.at = end;
                    return Some(Token { byte, at, end });
                }
                b'{' | b'[' | b'}' | b']' | b',' | b':' => {
                    self.at += 1;
                    return Some(Token {
                        byte,
                        at,
                        end: at + 1,
                    });
                }
                _ => self.at += 1,
            }
        }
        None
    }
}

/// The index just past the string that starts with the quote at `start`.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Encodes an envelope as compact JSON text.
pub fn encode(envelope: &Envelope<'_>, out: &mut Vec<u8>) -> Result<FrameKind, CodecError> {
    serde_json::to_writer(out, envelope).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(FrameKind::Text)
}

/// The key of the one-entry object that stands for binary data inside a message:
/// `{"$binary":"<standard base64>"}`. Codecs with a native binary type (MessagePack) turn it into
/// that type; the JSON codec writes it in SocketCluster's `{"base64":true,"data":…}` form.
pub const BINARY_KEY: &str = "$binary";

/// The base64 text of a `{"$binary":"…"}` object, if `map` is one.
pub fn binary_text(map: &Map<String, Value>) -> Option<&str> {
    if map.len() != 1 {
        return None;
    }
    map.get(BINARY_KEY)?.as_str()
}

/// Serialises a value for a JSON wire: `{"$binary":"…"}` objects come out as
/// `{"base64":true,"data":"…"}`, the form `sc-formatter` gives a Buffer; everything else as is.
#[derive(Debug, Clone, Copy)]
pub struct Wire<'a>(pub &'a Value);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Wire(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                if let Some(data) = binary_text(map) {
                    return Base64Form { base64: true, data }.serialize(serializer);
                }
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, item) in map {
                    out.serialize_entry(key, &Wire(item))?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// Bytes that travel as a binary value: `{"$binary":"<standard base64>"}` inside a message,
/// `bin` in MessagePack and `{"base64":true,"data":"…"}` (how SocketCluster's JSON codec
/// represents a Buffer or ArrayBuffer) on a JSON wire. Either object form deserialises.
///
/// ```
/// use sockyard::codec::Binary;
/// let json = serde_json::to_string(&Binary(b"hi".to_vec())).unwrap();
/// assert_eq!(json, r#"{"$binary":"aGk="}"#);
/// let back: Binary = serde_json::from_str(&json).unwrap();
/// assert_eq!(back.0, b"hi");
/// let wire: Binary = serde_json::from_str(r#"{"base64":true,"data":"aGk="}"#).unwrap();
/// assert_eq!(wire.0, b"hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Binary(pub Vec<u8>);

#[derive(Serialize)]
struct Base64Form<'a> {
    base64: bool,
    data: &'a str,
}

/// Either object form of a binary value.
#[derive(Deserialize)]
#[serde(untagged)]
enum BinaryForm {
    Marked {
        #[serde(rename = "$binary")]
        data: String,
    },
    Formatter {
        base64: bool,
        data: String,
    },
}

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(
            BINARY_KEY,
            &base64::engine::general_purpose::STANDARD.encode(&self.0),
        )?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let data = match BinaryForm::deserialize(deserializer)? {
            BinaryForm::Marked { data } | BinaryForm::Formatter { base64: true, data } => data,
            BinaryForm::Formatter { base64: false, .. } => {
                return Err(serde::de::Error::custom(
                    "expected {\"$binary\":…} or {\"base64\":true,\"data\":…}",
                ))
            }
        };
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map(Binary)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use serde_json::json;

    fn encoded(envelope: Envelope<'_>) -> String {
        let mut out = Vec::new();
        assert_eq!(encode(&envelope, &mut out).unwrap(), FrameKind::Text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decodes_objects_and_batches() {
        assert_eq!(
            decode(br#"{"event":"hello","data":{"w":"world"}}"#),
            Decoded::Packets(vec![json!({"event":"hello","data":{"w":"world"}})])
        );
        assert_eq!(
            decode(br#" [{"event":"hello","data":1},{"event":"hello","data":2}]"#),
            Decoded::Packets(vec![
                json!({"event":"hello","data":1}),
                json!({"event":"hello","data":2})
            ])
        );
    }

    fn nested(depth: usize) -> String {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    }

    #[test]
    fn too_deep_messages_keep_their_call_id() {
        let frame = format!(r#"{{"event":"echo","data":{},"cid":7}}"#, nested(1000));
        assert_eq!(decode(frame.as_bytes()), Decoded::TooDeep { cid: Some(7) });
        let frame = format!(r#"{{"cid" : 8, "data":{}}}"#, nested(200));
        assert_eq!(decode(frame.as_bytes()), Decoded::TooDeep { cid: Some(8) });
        // A nested `cid`, or a string one, is not the call id.
        let frame = format!(r#"{{"data":{{"cid":3,"x":{}}}}}"#, nested(200));
        assert_eq!(decode(frame.as_bytes()), Decoded::TooDeep { cid: None });
        let frame = format!(r#"{{"e\"v":"cid","cid":"9","d":{}}}"#, nested(200));
        assert_eq!(decode(frame.as_bytes()), Decoded::TooDeep { cid: None });
        // Within the limit, nothing changes.
        let frame = format!(r#"{{"event":"echo","data":{},"cid":7}}"#, nested(100));
        assert!(matches!(decode(frame.as_bytes()), Decoded::Packets(_)));
    }

    /// The deepest packet the parser reads alone: `data` nests `levels` arrays.
    fn packet_nesting(cid: u64, levels: usize) -> String {
        let data = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        format!(r#"{{"event":"echo","data":{data},"cid":{cid}}}"#)
    }

    #[test]
    fn a_too_deep_packet_in_a_batch_spares_the_others() {
        let frame = format!(
            r#"[{{"event":"echo","data":1,"cid":2}}, {} ,{{"event":"echo","cid":4}}]"#,
            packet_nesting(3, 1000)
        );
        assert_eq!(
            decode(frame.as_bytes()),
            Decoded::Batch(vec![
                Decoded::Packets(vec![json!({"event":"echo","data":1,"cid":2})]),
                Decoded::TooDeep { cid: Some(3) },
                Decoded::Packets(vec![json!({"event":"echo","cid":4})]),
            ])
        );
        // A deep packet without a call id, or one that is an array, has no id to answer.
        let frame = format!("[{}, {}]", nested(200), "[".repeat(200) + &"]".repeat(200));
        assert_eq!(
            decode(frame.as_bytes()),
            Decoded::Batch(vec![
                Decoded::TooDeep { cid: None },
                Decoded::TooDeep { cid: None },
            ])
        );
    }

    #[test]
    fn packets_nest_as_deeply_in_a_batch_as_alone() {
        // The deepest packet read alone, one level short of one refused.
        let levels = (0..MAX_DEPTH)
            .take_while(|&levels| {
                matches!(
                    decode(packet_nesting(2, levels).as_bytes()),
                    Decoded::Packets(_)
                )
            })
            .last()
            .unwrap();
        assert!(levels >= MAX_DEPTH - 2, "{levels}");
        assert!(matches!(
            decode(packet_nesting(2, levels + 1).as_bytes()),
            Decoded::TooDeep { cid: Some(2) }
        ));
        let deepest = packet_nesting(2, levels);
        // In a batch it is one level deeper, and still read.
        let frame = format!(r#"[{deepest},{{"event":"echo","cid":3}}]"#);
        let Decoded::Batch(parts) = decode(frame.as_bytes()) else {
            panic!("a batch read packet by packet")
        };
        assert!(
            matches!(&parts[..], [Decoded::Packets(a), Decoded::Packets(b)]
            if a[0]["cid"] == 2 && b[0]["cid"] == 3)
        );
    }

    #[test]
    fn a_deep_batch_that_is_not_json_is_raw() {
        // One element is not JSON: the whole frame is not, as sc-formatter sees it.
        let frame = format!("[{}, {{oops}}]", nested(200));
        assert_eq!(decode(frame.as_bytes()), Decoded::Raw(frame.clone()));
        // An array that never closes cannot be split: too deep, without a call id.
        let frame = format!(r#"[{{"cid":1}}, {}"#, nested(200));
        assert_eq!(decode(frame.as_bytes()), Decoded::TooDeep { cid: None });
        // Nor can one with text after it.
        let frame = format!("[{}] x", nested(200));
        assert_eq!(decode(frame.as_bytes()), Decoded::TooDeep { cid: None });
    }

    #[test]
    fn lone_surrogate_escapes_become_replacement_characters() {
        let decoded = |text: &str| match decode(text.as_bytes()) {
            Decoded::Packets(values) => values[0]["data"].clone(),
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            decoded(r#"{"event":"echo","data":"\ud800","cid":1}"#),
            json!("\u{fffd}")
        );
        // A lone low surrogate, a high one followed by no low one, then a valid pair after a
        // lone high one.
        assert_eq!(
            decoded(r#"{"data":["\uDC00x", "\ud800\u0041", "\ud800\ud83d\ude00"]}"#),
            json!(["\u{fffd}x", "\u{fffd}A", "\u{fffd}\u{1F600}"])
        );
        // An escaped backslash before `ud800` is no escape; valid pairs are untouched.
        assert_eq!(
            decoded(r#"{"data":["\\ud800", "\ud83d\ude00"]}"#),
            json!(["\\ud800", "\u{1F600}"])
        );
        // In a deep batch too, and in map keys.
        let frame = format!(
            r#"[{}, {{"event":"echo","data":{{"\udfff":"\ud800"}},"cid":5}}]"#,
            nested(200)
        );
        let Decoded::Batch(parts) = decode(frame.as_bytes()) else {
            panic!()
        };
        assert_eq!(
            parts[1],
            Decoded::Packets(vec![
                json!({"event":"echo","data":{"\u{fffd}":"\u{fffd}"},"cid":5})
            ])
        );
        // Text that is not JSON stays raw, and keeps the parser's own error.
        assert_eq!(
            decode(br#"{"data":"\ud800"#),
            Decoded::Raw(r#"{"data":"\ud800"#.into())
        );
        let err = parse(br#"{"a":"\ud800" x}"#).unwrap_err();
        assert!(err.to_string().contains("column 15"), "{err}");
    }

    #[test]
    fn finds_top_level_scalars() {
        let text = br#" {"a": {"cid": 1}, "b": [",", "cid"], "messageId" : "m\"1", "cid": -2.5e1}"#;
        assert_eq!(top_level_scalar(text, "cid"), Some(json!(-25.0)));
        assert_eq!(top_level_scalar(text, "messageId"), Some(json!("m\"1")));
        assert_eq!(top_level_scalar(text, "a"), None);
        assert_eq!(top_level_scalar(br#"[{"cid": 1}]"#, "cid"), None);
        assert_eq!(top_level_scalar(br#"{"cid": "#, "cid"), None);
        assert_eq!(top_level_scalar(br#"{"x": "unterminated"#, "cid"), None);
    }

    #[test]
    fn treats_non_json_as_raw() {
        assert_eq!(decode(b"hello"), Decoded::Raw("hello".into()));
        assert_eq!(decode(b"{not json"), Decoded::Raw("{not json".into()));
        assert_eq!(decode(b"42"), Decoded::Raw("42".into()));
        assert_eq!(decode(b""), Decoded::Raw(String::new()));
        assert_eq!(decode(&[0xff, b'{']), Decoded::Raw("\u{fffd}{".into()));
    }

    #[test]
    fn reads_json_in_binary_frames_like_the_official_server() {
        assert_eq!(
            decode(br#"{"event":"x"}"#),
            Decoded::Packets(vec![json!({"event":"x"})])
        );
    }

    #[test]
    fn survives_deep_nesting() {
        let deep = "[".repeat(100_000);
        assert_eq!(decode(deep.as_bytes()), Decoded::TooDeep { cid: None });
        let deep = format!(r#"{{"cid":1,"data":{}"#, "{\"a\":".repeat(100_000));
        assert_eq!(decode(deep.as_bytes()), Decoded::TooDeep { cid: Some(1) });
    }

    #[test]
    fn encodes_envelopes_in_socketcluster_shape() {
        let data = json!({"a":1,"b":2});
        assert_eq!(
            encoded(Envelope::Event {
                event: "add",
                data: Some(&data),
                cid: Some(2)
            }),
            r#"{"event":"add","data":{"a":1,"b":2},"cid":2}"#
        );
        assert_eq!(
            encoded(Envelope::Event {
                event: "callme",
                data: None,
                cid: None
            }),
            r#"{"event":"callme"}"#
        );
        let three = json!(3);
        assert_eq!(
            encoded(Envelope::Reply {
                rid: 2,
                result: Ok(Some(&three))
            }),
            r#"{"rid":2,"data":3}"#
        );
        assert_eq!(
            encoded(Envelope::Reply {
                rid: 5,
                result: Ok(None)
            }),
            r#"{"rid":5}"#
        );
        let err = ApiError::new("CustomError", "bad thing").with("extra", 42);
        assert_eq!(
            encoded(Envelope::Reply {
                rid: 3,
                result: Err(&err)
            }),
            r#"{"rid":3,"error":{"name":"CustomError","message":"bad thing","extra":42}}"#
        );
    }

    #[test]
    fn binary_values_use_the_base64_form() {
        let data = json!({"b": Binary(b"hi".to_vec())});
        assert_eq!(
            encoded(Envelope::Event {
                event: "x",
                data: Some(&data),
                cid: None
            }),
            r#"{"event":"x","data":{"b":{"base64":true,"data":"aGk="}}}"#
        );
        assert!(serde_json::from_value::<Binary>(json!({"base64":false,"data":""})).is_err());
        // Objects that merely resemble a binary value pass through untouched.
        let lookalikes = json!([{"$binary": "aGk=", "x": 1}, {"$binary": 5}]);
        assert_eq!(serde_json::to_value(Wire(&lookalikes)).unwrap(), lookalikes);
    }
}
