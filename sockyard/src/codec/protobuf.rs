//! The protobuf codec, wire-compatible with `sc-codec-protobuf` 0.3: each frame is `0x01,
//! typeId` followed by one protobuf message, from a table built at start-up out of the built-in
//! types and the user's `.proto` text (compiled at run time: no code generation for the user).
//!
//! The original ids are kept: 0/1 `#handshake`, 2 `#disconnect`, 3/4 ping and pong, 5/6
//! `#subscribe`, 7 `#unsubscribe`, then socketcluster-api's `#api` (8/9) when enabled, then the
//! configured events in order. Beyond the original, ids 253–255 carry what it could not:
//! replies to events with no registered response type, error replies, and events with no
//! registered type (`#publish`, `#setAuthToken`, `#kickOut`, …), with their data as JSON text.
//! `HandshakeResponse` gains `authError` (field 4, JSON text), which older clients skip.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::encoding::WireType;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions};
use serde_json::{Map, Value};
use thiserror::Error;

use super::{CodecError, Decoded, Envelope, FrameKind};
use crate::error::ApiError;

/// SocketCluster's built-in types, as `sc-codec-protobuf` 0.3 defines them plus `authError`.
pub const BUILTIN_PROTO: &str = include_str!("builtin.proto");
/// socketcluster-api's types.
pub const API_PROTO: &str = include_str!("socketclusterapi.proto");
/// Sockyard's extension types (ids 253–255).
pub const EXTENSIONS_PROTO: &str = include_str!("extensions.proto");

/// Type id of [`Envelope::Reply`] errors: `sockyard.protocol.ErrorResponse`.
pub const EXT_ERROR: u8 = 255;
/// Type id of events without a registered type: `sockyard.protocol.Event`.
pub const EXT_EVENT: u8 = 254;
/// Type id of replies without a registered type: `sockyard.protocol.Response`.
pub const EXT_RESPONSE: u8 = 253;
/// Type id of the v1 ping (`#1`).
pub const PING: u8 = 3;
/// Type id of the v1 pong (`#2`).
pub const PONG: u8 = 4;
/// The first id of user events: everything below is built in.
const FIRST_USER_ID: usize = 8;

/// An event registered with its request and (optional) response types.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventTypes {
    /// Event (procedure) name, e.g. `echo`.
    pub event: String,
    /// Full name of the request message type, e.g. `.app.EchoRequest`.
    pub request: String,
    /// Full name of the response message type, if the event is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// Why a schema could not be built; start-up errors name the file and line.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SchemaError {
    /// A `.proto` text does not compile.
    #[error("{file}:{line}:{column}: {message}")]
    Proto {
        /// The file (or `inline[N]`).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The compiler's message.
        message: String,
    },
    /// An event names a type the `.proto` texts do not define.
    #[error("event `{event}`: unknown message type `{name}`")]
    UnknownType {
        /// The event.
        event: String,
        /// The type name.
        name: String,
    },
    /// More events than the one-byte id space holds.
    #[error("too many protobuf events: ids run out at {0}")]
    TooMany(usize),
}

#[derive(Debug, Clone)]
struct Entry {
    descriptor: MessageDescriptor,
    /// Whether it is a response (or error) type: decoded packets have `rid`.
    is_response: bool,
}

/// The type table of one protobuf endpoint.
#[derive(Debug)]
pub struct Schema {
    id: u64,
    pool: DescriptorPool,
    by_id: Vec<Option<Entry>>,
    requests: HashMap<String, (u8, Option<u8>)>,
}

/// Source of schema ids (publications are encoded once per schema).
static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(1);

/// Per-connection codec state: which response type answers each request id.
#[derive(Debug, Default)]
pub struct ReplyTypes {
    by_cid: HashMap<u64, u8>,
}

impl Schema {
    /// Compiles `sources` (`(name, text)` pairs) with the built-in types and registers the
    /// built-in events, `#api` when `api` is set, then `events` in order.
    pub fn compile(
        sources: &[(String, String)],
        api: bool,
        events: &[EventTypes],
    ) -> Result<Self, SchemaError> {
        let mut files = vec![
            (
                "sockyard/builtin.proto".to_owned(),
                BUILTIN_PROTO.to_owned(),
            ),
            (
                "sockyard/socketclusterapi.proto".to_owned(),
                API_PROTO.to_owned(),
            ),
            (
                "sockyard/extensions.proto".to_owned(),
                EXTENSIONS_PROTO.to_owned(),
            ),
        ];
        files.extend(sources.iter().cloned());
        let pool = compile_sources(&files)?;
        let mut schema = Self {
            id: NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed),
            pool,
            by_id: vec![None; 256],
            requests: HashMap::new(),
        };
        let mut next = 0;
        let builtin = |name: &str| format!(".socketcluster.builtins.{name}");
        schema.register_event(
            &mut next,
            "#handshake",
            &builtin("HandshakeRequest"),
            Some(&builtin("HandshakeResponse")),
        )?;
        schema.register_event(&mut next, "#disconnect", &builtin("Disconnect"), None)?;
        schema.register_event(&mut next, "#ping", &builtin("Ping"), Some(&builtin("Pong")))?;
        schema.register_event(
            &mut next,
            "#subscribe",
            &builtin("SubscribeRequest"),
            Some(&builtin("SubscribeResponse")),
        )?;
        schema.register_event(&mut next, "#unsubscribe", &builtin("Unsubscribe"), None)?;
        debug_assert_eq!(next, FIRST_USER_ID);
        if api {
            schema.register_event(
                &mut next,
                "#api",
                ".socketclusterapi.ApiCall",
                Some(".socketclusterapi.ApiResponse"),
            )?;
        }
        for event in events {
            schema.register_event(
                &mut next,
                &event.event,
                &event.request,
                event.response.as_deref(),
            )?;
        }
        for (id, name) in [
            (EXT_RESPONSE, ".sockyard.protocol.Response"),
            (EXT_EVENT, ".sockyard.protocol.Event"),
            (EXT_ERROR, ".sockyard.protocol.ErrorResponse"),
        ] {
            let descriptor = schema.lookup("(built-in)", name)?;
            schema.by_id[usize::from(id)] = Some(Entry {
                descriptor,
                is_response: id != EXT_EVENT,
            });
        }
        Ok(schema)
    }

    fn register_event(
        &mut self,
        next: &mut usize,
        event: &str,
        request: &str,
        response: Option<&str>,
    ) -> Result<(), SchemaError> {
        let request_id = self.register(next, event, request, false)?;
        let response_id = match response {
            Some(response) => Some(self.register(next, event, response, true)?),
            None => None,
        };
        self.requests
            .insert(event.to_owned(), (request_id, response_id));
        Ok(())
    }

    fn register(
        &mut self,
        next: &mut usize,
        event: &str,
        name: &str,
        is_response: bool,
    ) -> Result<u8, SchemaError> {
        if *next >= usize::from(EXT_RESPONSE) {
            return Err(SchemaError::TooMany(*next));
        }
        let descriptor = self.lookup(event, name)?;
        let id = *next as u8;
        self.by_id[*next] = Some(Entry {
            descriptor,
            is_response,
        });
        *next += 1;
        Ok(id)
    }

    fn lookup(&self, event: &str, name: &str) -> Result<MessageDescriptor, SchemaError> {
        self.message(name).ok_or_else(|| SchemaError::UnknownType {
            event: event.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The message type with this full name (a leading `.` is allowed).
    pub fn message(&self, name: &str) -> Option<MessageDescriptor> {
        self.pool.get_message_by_name(name.trim_start_matches('.'))
    }

    /// Whether socketcluster-api's `#api` event is registered.
    pub fn has_api(&self) -> bool {
        self.requests.contains_key("#api")
    }

    /// A number identifying this schema within the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Decodes one frame. Requests with a `cid` record their response type in `replies`.
    pub fn decode(&self, payload: &[u8], replies: &mut ReplyTypes) -> Decoded {
        let raw = || Decoded::Raw(String::from_utf8_lossy(payload).into_owned());
        let [0x01, id, body @ ..] = payload else {
            return raw();
        };
        match *id {
            PING => return Decoded::Raw("#1".to_owned()),
            PONG => return Decoded::Raw("#2".to_owned()),
            _ => {}
        }
        let Some(entry) = &self.by_id[usize::from(*id)] else {
            return raw();
        };
        let decoded = DynamicMessage::decode(entry.descriptor.clone(), body)
            .map_err(|e| e.to_string())
            .and_then(|message| to_json(&message).map_err(|e| e.to_string()));
        let mut value = match decoded {
            Ok(value) => value,
            // A request whose call id can still be read is answered, with an error.
            Err(error) => {
                return match (entry.is_response, readable_cid(&entry.descriptor, body)) {
                    (false, Some(cid)) => Decoded::Malformed {
                        cid,
                        reason: format!("invalid {}: {error}", entry.descriptor.full_name()),
                    },
                    _ => raw(),
                };
            }
        };
        unpack_json_text(*id, &entry.descriptor, &mut value);
        if !entry.is_response {
            let event = value
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let cid = value.get("cid").and_then(Value::as_u64);
            if let (Some(cid), Some((_, Some(response)))) = (cid, self.requests.get(event)) {
                replies.by_cid.insert(cid, *response);
            }
        }
        Decoded::Packets(vec![value])
    }

    /// Encodes an envelope; `replies` says which type answers each request.
    pub fn encode(
        &self,
        envelope: &Envelope<'_>,
        replies: &mut ReplyTypes,
        out: &mut Vec<u8>,
    ) -> Result<FrameKind, CodecError> {
        let (id, value) = match *envelope {
            Envelope::Event { event, data, cid } => {
                let mut value = Map::new();
                value.insert("event".to_owned(), Value::String(event.to_owned()));
                if let Some(data) = data {
                    value.insert("data".to_owned(), data.clone());
                }
                if let Some(cid) = cid {
                    value.insert("cid".to_owned(), Value::from(cid));
                }
                match self.requests.get(event) {
                    Some((request, _)) => (*request, Value::Object(value)),
                    None => (EXT_EVENT, Value::Object(value)),
                }
            }
            Envelope::Reply {
                rid,
                result: Err(error),
            } => {
                replies.by_cid.remove(&rid);
                (EXT_ERROR, error_json(rid, error))
            }
            Envelope::Reply {
                rid,
                result: Ok(data),
            } => {
                let mut value = Map::new();
                value.insert("rid".to_owned(), Value::from(rid));
                if let Some(data) = data {
                    value.insert("data".to_owned(), data.clone());
                }
                let id = replies.by_cid.remove(&rid).unwrap_or(EXT_RESPONSE);
                (id, Value::Object(value))
            }
        };
        self.encode_value(id, value, out)
    }

    fn encode_value(
        &self,
        id: u8,
        value: Value,
        out: &mut Vec<u8>,
    ) -> Result<FrameKind, CodecError> {
        let entry = self.by_id[usize::from(id)]
            .as_ref()
            .ok_or_else(|| CodecError::Encode(format!("no protobuf type with id {id}")))?;
        let message = from_json(&entry.descriptor, value)?;
        out.extend_from_slice(&[0x01, id]);
        message
            .encode(out)
            .map_err(|e| CodecError::Encode(e.to_string()))?;
        Ok(FrameKind::Binary)
    }

    /// Encodes JSON `value` as a message of type `descriptor` (for socketcluster-api buffers).
    pub fn encode_message(
        &self,
        descriptor: &MessageDescriptor,
        value: Value,
    ) -> Result<Vec<u8>, CodecError> {
        Ok(from_json(descriptor, value)?.encode_to_vec())
    }

    /// Decodes `bytes` as a message of type `descriptor` into JSON.
    pub fn decode_message(
        &self,
        descriptor: &MessageDescriptor,
        bytes: &[u8],
    ) -> Result<Value, CodecError> {
        let message = DynamicMessage::decode(descriptor.clone(), bytes)
            .map_err(|e| CodecError::Encode(format!("invalid {}: {e}", descriptor.full_name())))?;
        to_json(&message)
    }
}

/// The call id of a request that does not decode, when its top-level `cid` field comes whole
/// before whatever breaks the message: the fields are walked by their wire types alone, and the
/// last `cid` met is decoded on its own.
fn readable_cid(descriptor: &MessageDescriptor, body: &[u8]) -> Option<u64> {
    let number = descriptor.get_field_by_name("cid")?.number();
    let mut rest = body;
    let mut cid_field = None;
    while !rest.is_empty() {
        let field = rest;
        let Ok((tag, wire_type)) = prost::encoding::decode_key(&mut rest) else {
            break;
        };
        let skip = match wire_type {
            WireType::Varint => match prost::encoding::decode_varint(&mut rest) {
                Ok(_) => 0,
                Err(_) => break,
            },
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => match prost::encoding::decode_varint(&mut rest) {
                Ok(len) => usize::try_from(len).unwrap_or(usize::MAX),
                Err(_) => break,
            },
            WireType::StartGroup | WireType::EndGroup => break,
        };
        let Some(after) = rest.get(skip..) else {
            break;
        };
        rest = after;
        if tag == number {
            cid_field = Some(&field[..field.len() - rest.len()]);
        }
    }
    let message = DynamicMessage::decode(descriptor.clone(), cid_field?).ok()?;
    to_json(&message).ok()?.get("cid")?.as_u64()
}

fn serialize_options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(true)
        .stringify_64_bit_integers(false)
}

fn to_json(message: &DynamicMessage) -> Result<Value, CodecError> {
    message
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

fn from_json(
    descriptor: &MessageDescriptor,
    mut value: Value,
) -> Result<DynamicMessage, CodecError> {
    fit(descriptor, &mut value);
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(false);
    DynamicMessage::deserialize_with_options(descriptor.clone(), value, &options)
        .map_err(|e| CodecError::Encode(format!("does not fit {}: {e}", descriptor.full_name())))
}

/// Shapes a JSON value to a message type: values of `string` fields that are not strings become
/// their JSON text (how untyped data travels), and `null`s are dropped.
fn fit(descriptor: &MessageDescriptor, value: &mut Value) {
    let Value::Object(map) = value else {
        return;
    };
    map.retain(|_, v| !v.is_null());
    for (key, item) in map.iter_mut() {
        let field = descriptor
            .get_field_by_name(key)
            .or_else(|| descriptor.get_field_by_json_name(key));
        let Some(field) = field else { continue };
        if field.is_list() || field.is_map() {
            continue;
        }
        match field.kind() {
            Kind::String if !item.is_string() => *item = Value::String(item.to_string()),
            Kind::Message(inner) => fit(&inner, item),
            _ => {}
        }
    }
}

/// The fields that carry JSON text, turned back into values after decoding.
fn unpack_json_text(id: u8, descriptor: &MessageDescriptor, value: &mut Value) {
    let parse = |slot: Option<&mut Value>| {
        if let Some(slot) = slot {
            if let Some(text) = slot.as_str() {
                *slot = serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()));
            }
        }
    };
    match (id, descriptor.full_name()) {
        (_, "socketcluster.builtins.SubscribeRequest") => {
            parse(value.get_mut("data").and_then(|d| d.get_mut("data")));
        }
        (_, "socketcluster.builtins.HandshakeResponse") => {
            parse(value.get_mut("data").and_then(|d| d.get_mut("authError")));
        }
        (EXT_EVENT | EXT_RESPONSE, _) => parse(value.get_mut("data")),
        (EXT_ERROR, _) => {
            let Value::Object(map) = value else { return };
            let mut error = match map
                .remove("extra")
                .and_then(|e| e.as_str().and_then(|t| serde_json::from_str(t).ok()))
            {
                Some(Value::Object(extra)) => extra,
                _ => Map::new(),
            };
            for key in ["name", "message"] {
                error.insert(
                    key.to_owned(),
                    map.remove(key).unwrap_or(Value::String(String::new())),
                );
            }
            map.insert("error".to_owned(), Value::Object(error));
        }
        _ => {}
    }
}

fn error_json(rid: u64, error: &ApiError) -> Value {
    let mut value = Map::new();
    value.insert("rid".to_owned(), Value::from(rid));
    value.insert("name".to_owned(), Value::String(error.name.to_string()));
    value.insert("message".to_owned(), Value::String(error.message.clone()));
    if !error.extra.is_empty() {
        value.insert(
            "extra".to_owned(),
            Value::String(Value::Object(error.extra.clone()).to_string()),
        );
    }
    Value::Object(value)
}

/// Compiles `.proto` texts held in memory.
fn compile_sources(files: &[(String, String)]) -> Result<DescriptorPool, SchemaError> {
    struct Sources(Vec<(String, String)>);
    impl protox::file::FileResolver for Sources {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            match self.0.iter().find(|(file, _)| file == name) {
                Some((file, text)) => protox::file::File::from_source(file, text),
                None => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let mut compiler = protox::Compiler::with_file_resolver(Sources(files.to_vec()));
    compiler.include_imports(true);
    for (name, _) in files {
        compiler
            .open_file(name)
            .map_err(|e| proto_error(&e, files))?;
    }
    Ok(compiler.descriptor_pool())
}

/// Locates a compiler error in its source: file, line and column.
fn proto_error(error: &protox::Error, files: &[(String, String)]) -> SchemaError {
    use miette::Diagnostic as _;
    let file = error.file().unwrap_or("(unknown)").to_owned();
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let text = files
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, text)| text.as_str());
    let (line, column) = match (offset, text) {
        (Some(offset), Some(text)) => {
            let before = &text[..offset.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column)
        }
        _ => (0, 0),
    };
    SchemaError::Proto {
        file,
        line,
        column,
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const APP: &str = r#"
        syntax = "proto3";
        package app;
        message RequestMessage { string a = 1; string b = 2; }
        message ResponseMessage { string c = 1; }
        message SomeError { uint32 code = 1; string message = 2; }
        message EchoRequest { string event = 1; RequestMessage data = 2; uint32 cid = 3; }
        message EchoResponse { uint32 rid = 1; ResponseMessage data = 2; }
    "#;

    fn schema(api: bool) -> Schema {
        let events = [EventTypes {
            event: "echo".into(),
            request: ".app.EchoRequest".into(),
            response: Some(".app.EchoResponse".into()),
        }];
        Schema::compile(&[("app.proto".into(), APP.into())], api, &events).unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn unhex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn encoded(schema: &Schema, envelope: Envelope<'_>, replies: &mut ReplyTypes) -> String {
        let mut out = Vec::new();
        assert_eq!(
            schema.encode(&envelope, replies, &mut out).unwrap(),
            FrameKind::Binary
        );
        hex(&out)
    }

    #[test]
    fn decodes_the_documented_handshake_frame_and_answers_with_the_response_type() {
        let schema = schema(false);
        let mut replies = ReplyTypes::default();
        // 01 00 | "#handshake", data {authToken: "tok"}, cid 1 (from sc-codec-protobuf 0.3).
        let frame = unhex("01 00 0a 0a 23 68 61 6e 64 73 68 61 6b 65 12 05 0a 03 74 6f 6b 18 01");
        assert_eq!(
            schema.decode(&frame, &mut replies),
            Decoded::Packets(vec![
                json!({"event": "#handshake", "data": {"authToken": "tok"}, "cid": 1})
            ])
        );
        let data = json!({"id": "abc", "pingTimeout": 5000, "isAuthenticated": false});
        // 01 01 | rid 1, data {id "abc", pingTimeout 5000}
        assert_eq!(
            encoded(
                &schema,
                Envelope::Reply {
                    rid: 1,
                    result: Ok(Some(&data))
                },
                &mut replies
            ),
            "01 01 08 01 12 08 0a 03 61 62 63 18 88 27"
        );
    }

    #[test]
    fn keeps_the_original_ids_and_numbers_user_events_after_them() {
        let plain = schema(false);
        assert_eq!(plain.requests["echo"], (8, Some(9)));
        let with_api = schema(true);
        assert_eq!(with_api.requests["#api"], (8, Some(9)));
        assert_eq!(with_api.requests["echo"], (10, Some(11)));
        assert_eq!(plain.requests["#unsubscribe"], (7, None));
        assert_eq!(
            plain.decode(&[1, 4], &mut ReplyTypes::default()),
            Decoded::Raw("#2".into())
        );
    }

    #[test]
    fn round_trips_user_events_with_their_types() {
        let schema = schema(false);
        let mut replies = ReplyTypes::default();
        let data = json!({"a": "x", "b": "y"});
        let mut out = Vec::new();
        schema
            .encode(
                &Envelope::Event {
                    event: "echo",
                    data: Some(&data),
                    cid: Some(7),
                },
                &mut replies,
                &mut out,
            )
            .unwrap();
        assert_eq!(&out[..2], [0x01, 8]);
        assert_eq!(
            schema.decode(&out, &mut replies),
            Decoded::Packets(vec![
                json!({"event": "echo", "data": {"a": "x", "b": "y"}, "cid": 7})
            ])
        );
        // The reply to cid 7 uses EchoResponse (id 9); unknown fields are dropped as protobufjs does.
        let result = json!({"c": "done", "ignored": 1});
        let reply = encoded(
            &schema,
            Envelope::Reply {
                rid: 7,
                result: Ok(Some(&result)),
            },
            &mut replies,
        );
        assert!(reply.starts_with("01 09"), "{reply}");
        assert_eq!(
            schema.decode(&unhex(&reply), &mut replies),
            Decoded::Packets(vec![json!({"rid": 7, "data": {"c": "done"}})])
        );
    }

    #[test]
    fn subscribe_with_and_without_data() {
        let schema = schema(false);
        let mut replies = ReplyTypes::default();
        for data in [
            json!({"channel": "ch", "data": {"hi": 1}}),
            json!({"channel": "ch"}),
        ] {
            let mut out = Vec::new();
            schema
                .encode(
                    &Envelope::Event {
                        event: "#subscribe",
                        data: Some(&data),
                        cid: Some(5),
                    },
                    &mut replies,
                    &mut out,
                )
                .unwrap();
            assert_eq!(&out[..2], [0x01, 5]);
            assert_eq!(
                schema.decode(&out, &mut replies),
                Decoded::Packets(vec![json!({"event": "#subscribe", "data": data, "cid": 5})])
            );
        }
        assert!(encoded(
            &schema,
            Envelope::Reply {
                rid: 5,
                result: Ok(None)
            },
            &mut replies
        )
        .starts_with("01 06"));
    }

    #[test]
    fn carries_what_the_original_could_not() {
        let schema = schema(false);
        let mut replies = ReplyTypes::default();
        // A publication: no registered type, so the generic event with JSON data.
        let body = json!({"channel": "news", "data": [1, 2]});
        let frame = encoded(
            &schema,
            Envelope::Event {
                event: "#publish",
                data: Some(&body),
                cid: None,
            },
            &mut replies,
        );
        assert!(frame.starts_with("01 fe"), "{frame}");
        assert_eq!(
            schema.decode(&unhex(&frame), &mut replies),
            Decoded::Packets(vec![
                json!({"event": "#publish", "data": {"channel": "news", "data": [1, 2]}})
            ])
        );
        // An error reply keeps its name, message and extra fields.
        let err = ApiError::new("CustomError", "bad thing").with("extra", 42);
        let frame = encoded(
            &schema,
            Envelope::Reply {
                rid: 4,
                result: Err(&err),
            },
            &mut replies,
        );
        assert!(frame.starts_with("01 ff"), "{frame}");
        assert_eq!(
            schema.decode(&unhex(&frame), &mut replies),
            Decoded::Packets(vec![
                json!({"rid": 4, "error": {"extra": 42, "name": "CustomError", "message": "bad thing"}})
            ])
        );
        // A reply to an event with no response type.
        let frame = encoded(
            &schema,
            Envelope::Reply {
                rid: 12,
                result: Ok(Some(&json!({"ok": true}))),
            },
            &mut replies,
        );
        assert!(frame.starts_with("01 fd"), "{frame}");
        // authError travels in the handshake reply.
        schema.decode(
            &unhex("01 00 0a 0a 23 68 61 6e 64 73 68 61 6b 65 18 01"),
            &mut replies,
        );
        let data = json!({"id": "x", "pingTimeout": 1, "authError": {"name": "AuthTokenInvalidError", "message": "m"}, "isAuthenticated": false});
        let frame = encoded(
            &schema,
            Envelope::Reply {
                rid: 1,
                result: Ok(Some(&data)),
            },
            &mut replies,
        );
        assert!(frame.starts_with("01 01"), "{frame}");
        let Decoded::Packets(packets) = schema.decode(&unhex(&frame), &mut replies) else {
            panic!()
        };
        assert_eq!(
            packets[0]["data"]["authError"],
            json!({"name": "AuthTokenInvalidError", "message": "m"})
        );
    }

    #[test]
    fn bad_frames_are_raw_not_crashes() {
        let schema = schema(false);
        let mut replies = ReplyTypes::default();
        for frame in ["", "01", "02 00", "01 64", "01 00 0a ff ff", "01 08 12 ff"] {
            assert!(
                matches!(schema.decode(&unhex(frame), &mut replies), Decoded::Raw(_)),
                "{frame}"
            );
        }
    }

    #[test]
    fn broken_requests_with_a_readable_cid_are_malformed() {
        let mut replies = ReplyTypes::default();
        let api = schema(true);
        // #api (id 8): cid 90 (field 1) whole, then `data` (field 3) declaring 127 bytes.
        let frame = unhex("01 08 08 5a 1a 7f 0a 01 2f");
        assert!(
            matches!(
                api.decode(&frame, &mut replies),
                Decoded::Malformed { cid: 90, reason } if reason.starts_with("invalid socketclusterapi.ApiCall: ")
            ),
            "{:?}",
            api.decode(&frame, &mut replies)
        );
        // echo (id 10 here): `data` whole but holding invalid UTF-8, then cid 7 (field 3).
        let frame = unhex("01 0a 0a 04 65 63 68 6f 12 03 0a 01 ff 18 07");
        assert!(matches!(
            api.decode(&frame, &mut replies),
            Decoded::Malformed { cid: 7, .. }
        ));
        // The last cid counts, as when the message decodes.
        let frame = unhex("01 0a 18 03 18 09 12 03 0a 01 ff");
        assert!(matches!(
            api.decode(&frame, &mut replies),
            Decoded::Malformed { cid: 9, .. }
        ));
        // No reply type is recorded for them: the error reply is the generic one.
        assert!(replies.by_cid.is_empty());
        // A cid after what breaks the walk cannot be read; a reply type has none: raw.
        for frame in [
            "01 0a 12 ff 01 0a 18 07",
            "01 0a 18",
            "01 0a 18 ff ff ff ff ff ff ff ff ff ff ff",
            "01 0b 08 07 12 03 0a 01 ff",
        ] {
            assert!(
                matches!(api.decode(&unhex(frame), &mut replies), Decoded::Raw(_)),
                "{frame}"
            );
        }
    }

    #[test]
    fn proto_errors_name_file_and_line() {
        let err = Schema::compile(
            &[(
                "bad.proto".into(),
                "syntax = \"proto3\";\nmessage A {\n  string a = ;\n}\n".into(),
            )],
            false,
            &[],
        )
        .unwrap_err();
        let SchemaError::Proto { file, line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((file.as_str(), *line), ("bad.proto", 3), "{err}");
        let err = Schema::compile(
            &[],
            false,
            &[EventTypes {
                event: "x".into(),
                request: ".nope.Missing".into(),
                response: None,
            }],
        )
        .unwrap_err();
        assert_eq!(
            err,
            SchemaError::UnknownType {
                event: "x".into(),
                name: ".nope.Missing".into()
            }
        );
    }
}
