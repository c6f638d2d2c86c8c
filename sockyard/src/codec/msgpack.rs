//! The MessagePack codec, wire-compatible with SocketCluster's `sc-codec-min-bin`: packets are
//! compacted to `{e:[event, data, cid?]}`, `{p:[channel, data, cid?]}` (publications) and
//! `{r:[rid, error, data]}` (replies), a batch is an array of those, and frames are binary.
//!
//! Binary values travel as MessagePack `bin`; inside Sockyard they are `{"$binary":"…"}` objects
//! (see [`crate::codec::Binary`]), which no ordinary map is turned into. Decoding checks every declared length against the bytes actually present before
//! allocating, so a frame that claims gigabytes costs nothing.

use std::ops::Range;

use base64::Engine as _;
use rmp::Marker;
use serde_json::{Map, Number, Value};

use super::{CodecError, Decoded, Envelope, FrameKind};
use crate::error::ApiError;

/// Deepest nesting accepted in a decoded packet.
const MAX_DEPTH: usize = 128;

/// Why a frame is not valid MessagePack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

/// Decodes a frame: a packet, or an array of packets, in the compact form.
///
/// A packet that breaks the format only inside (invalid UTF-8, an extension type, nesting deeper
/// than 128 levels, bytes after it) is still walked to its end, so its call id can be read: it
/// is then [`Decoded::Malformed`], and in a batch the other packets are served. A frame that
/// cannot be walked (cut short, lengths beyond the frame, the reserved byte `c1`), or a broken
/// packet without a call id, is a raw message.
pub fn decode(payload: &[u8]) -> Decoded {
    let mut reader = Reader::new(payload);
    let Ok(frame) = reader.frame() else {
        return raw(payload);
    };
    let trailing = (!reader.bytes.is_empty()).then_some("bytes after the end of the message");
    match frame {
        // A bare string is what protocol v1 sends through the codec for its pings (`#1`, `#2`).
        Frame::One(Packet {
            value: Value::String(text),
            flaw: None,
            ..
        }) if trailing.is_none() => Decoded::Raw(text),
        Frame::One(packet) => packet.decoded(trailing, payload),
        Frame::Batch(packets)
            if trailing.is_none() && packets.iter().all(|packet| packet.flaw.is_none()) =>
        {
            Decoded::Packets(packets.into_iter().map(|p| expand(p.value)).collect())
        }
        Frame::Batch(packets) => Decoded::Batch(
            packets
                .into_iter()
                .map(|packet| packet.decoded(trailing, payload))
                .collect(),
        ),
    }
}

fn raw(bytes: &[u8]) -> Decoded {
    Decoded::Raw(String::from_utf8_lossy(bytes).into_owned())
}

/// A frame as read: one packet, or a batch.
enum Frame {
    One(Packet),
    Batch(Vec<Packet>),
}

/// One packet as read, still compact.
struct Packet {
    value: Value,
    /// The first thing wrong inside it; the value read as `null` in its place.
    flaw: Option<&'static str>,
    /// Where it is in the frame.
    span: Range<usize>,
}

impl Packet {
    /// What the packet is, read on its own; `frame_flaw` is what is wrong with the frame around
    /// it.
    fn decoded(self, frame_flaw: Option<&'static str>, payload: &[u8]) -> Decoded {
        let value = expand(self.value);
        let Some(flaw) = self.flaw.or(frame_flaw) else {
            return Decoded::Packets(vec![value]);
        };
        match value.get("cid").and_then(Value::as_u64) {
            Some(cid) => Decoded::Malformed {
                cid,
                reason: format!("invalid MessagePack: {flaw}"),
            },
            None => raw(&payload[self.span]),
        }
    }
}

/// Expands a compact packet into the ordinary `{event, data, cid}` / `{rid, error, data}` shape.
fn expand(value: Value) -> Value {
    let Value::Object(mut map) = value else {
        return value;
    };
    if let Some(Value::Array(parts)) = map.remove("e") {
        let mut parts = parts.into_iter();
        map.insert("event".to_owned(), parts.next().unwrap_or(Value::Null));
        insert_present(&mut map, "data", parts.next());
        insert_present(&mut map, "cid", parts.next());
    } else if let Some(Value::Array(parts)) = map.remove("p") {
        let mut parts = parts.into_iter();
        let mut data = Map::new();
        data.insert("channel".to_owned(), parts.next().unwrap_or(Value::Null));
        insert_present(&mut data, "data", parts.next());
        map.insert("event".to_owned(), Value::String("#publish".to_owned()));
        map.insert("data".to_owned(), Value::Object(data));
        insert_present(&mut map, "cid", parts.next());
    } else if let Some(Value::Array(parts)) = map.remove("r") {
        let mut parts = parts.into_iter();
        map.insert("rid".to_owned(), parts.next().unwrap_or(Value::Null));
        insert_present(&mut map, "error", parts.next());
        insert_present(&mut map, "data", parts.next());
    }
    Value::Object(map)
}

/// nil stands for "absent" in the compact form.
fn insert_present(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value.filter(|v| !v.is_null()) {
        map.insert(key.to_owned(), value);
    }
}

/// Encodes an envelope in the compact form.
pub fn encode(envelope: &Envelope<'_>, out: &mut Vec<u8>) -> Result<FrameKind, CodecError> {
    write(out, envelope).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(FrameKind::Binary)
}

/// Writing into memory does not fail; this only carries rmp's error types through `?`.
#[derive(Debug)]
pub struct WriteError(String);

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for WriteError {
    fn from(err: std::io::Error) -> Self {
        Self(err.to_string())
    }
}

impl From<rmp::encode::ValueWriteError> for WriteError {
    fn from(err: rmp::encode::ValueWriteError) -> Self {
        Self(err.to_string())
    }
}

fn write(out: &mut Vec<u8>, envelope: &Envelope<'_>) -> Result<(), WriteError> {
    rmp::encode::write_map_len(out, 1)?;
    match *envelope {
        Envelope::Event {
            event: "#publish",
            data: Some(Value::Object(body)),
            cid,
        } => {
            rmp::encode::write_str(out, "p")?;
            rmp::encode::write_array_len(out, 2 + u32::from(cid.is_some()))?;
            write_optional(out, body.get("channel"))?;
            write_optional(out, body.get("data"))?;
            if let Some(cid) = cid {
                rmp::encode::write_uint(out, cid)?;
            }
        }
        Envelope::Event { event, data, cid } => {
            rmp::encode::write_str(out, "e")?;
            rmp::encode::write_array_len(out, 2 + u32::from(cid.is_some()))?;
            rmp::encode::write_str(out, event)?;
            write_optional(out, data)?;
            if let Some(cid) = cid {
                rmp::encode::write_uint(out, cid)?;
            }
        }
        Envelope::Reply { rid, result } => {
            rmp::encode::write_str(out, "r")?;
            rmp::encode::write_array_len(out, 3)?;
            rmp::encode::write_uint(out, rid)?;
            match result {
                Ok(data) => {
                    rmp::encode::write_nil(out)?;
                    write_optional(out, data)?;
                }
                Err(error) => {
                    write_error(out, error)?;
                    rmp::encode::write_nil(out)?;
                }
            }
        }
    }
    Ok(())
}

fn write_optional(out: &mut Vec<u8>, value: Option<&Value>) -> Result<(), WriteError> {
    match value {
        Some(value) => write_value(out, value),
        None => Ok(rmp::encode::write_nil(out)?),
    }
}

fn write_error(out: &mut Vec<u8>, error: &ApiError) -> Result<(), WriteError> {
    let value = serde_json::to_value(error).unwrap_or(Value::Null);
    write_value(out, &value)
}

/// Writes a JSON value as MessagePack; `{"$binary":…}` objects become `bin`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), WriteError> {
    match value {
        Value::Null => rmp::encode::write_nil(out)?,
        Value::Bool(b) => rmp::encode::write_bool(out, *b)?,
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                rmp::encode::write_uint(out, u)?;
            } else if let Some(i) = n.as_i64() {
                rmp::encode::write_sint(out, i)?;
            } else {
                rmp::encode::write_f64(out, n.as_f64().unwrap_or(f64::NAN))?;
            }
        }
        Value::String(s) => rmp::encode::write_str(out, s)?,
        Value::Array(items) => {
            rmp::encode::write_array_len(out, len(items.len()))?;
            for item in items {
                write_value(out, item)?;
            }
        }
        Value::Object(map) => {
            if let Some(bytes) = binary_of(map) {
                rmp::encode::write_bin(out, &bytes)?;
            } else {
                rmp::encode::write_map_len(out, len(map.len()))?;
                for (key, item) in map {
                    rmp::encode::write_str(out, key)?;
                    write_value(out, item)?;
                }
            }
        }
    }
    Ok(())
}

fn len(n: usize) -> u32 {
    // A JSON value in memory cannot hold 4 billion elements in a frame we accept.
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The bytes of a `{"$binary":"…"}` object.
fn binary_of(map: &Map<String, Value>) -> Option<Vec<u8>> {
    let data = super::json::binary_text(map)?;
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

/// What a marker introduces, its length (if any) read.
enum Item {
    /// A whole value: nil, a boolean or a number.
    Scalar(Value),
    /// A string of this many bytes.
    Str(usize),
    /// Binary data of this many bytes.
    Bin(usize),
    /// An extension value of this many bytes (its type byte included); not supported.
    Ext(usize),
    /// An array of this many values.
    Array(usize),
    /// A map of this many pairs.
    Map(usize),
}

/// A cursor over the frame.
struct Reader<'a> {
    bytes: &'a [u8],
    /// The frame's length, to tell positions.
    len: usize,
    depth: usize,
    /// The first flaw of the packet being read.
    flaw: Option<&'static str>,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            len: bytes.len(),
            depth: 0,
            flaw: None,
        }
    }

    fn position(&self) -> usize {
        self.len - self.bytes.len()
    }

    /// Reads a whole frame: one packet, or an array of packets, each read as if it were alone
    /// (so a packet nests as deeply in a batch as outside it).
    fn frame(&mut self) -> Result<Frame, DecodeError> {
        match self.item()? {
            Item::Array(n) => {
                self.check_count(n)?;
                let mut packets = Vec::with_capacity(n);
                for _ in 0..n {
                    let from = self.position();
                    let item = self.item()?;
                    packets.push(self.packet(from, item)?);
                }
                Ok(Frame::Batch(packets))
            }
            item => Ok(Frame::One(self.packet(0, item)?)),
        }
    }

    fn packet(&mut self, from: usize, item: Item) -> Result<Packet, DecodeError> {
        self.flaw = None;
        let value = self.value_of(item)?;
        Ok(Packet {
            value,
            flaw: self.flaw.take(),
            span: from..self.position(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn uint(&mut self, size: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(size)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A length of `size` bytes.
    fn length(&mut self, size: usize) -> Result<usize, DecodeError> {
        usize::try_from(self.uint(size)?).map_err(|_| DecodeError("length too large"))
    }

    /// Reads a marker and what it needs to say what follows.
    fn item(&mut self) -> Result<Item, DecodeError> {
        let [first] = self.take(1)? else {
            return Err(DecodeError("truncated"));
        };
        Ok(match Marker::from_u8(*first) {
            Marker::FixPos(n) => Item::Scalar(Value::from(n)),
            Marker::FixNeg(n) => Item::Scalar(Value::from(n)),
            Marker::Null => Item::Scalar(Value::Null),
            Marker::False => Item::Scalar(Value::Bool(false)),
            Marker::True => Item::Scalar(Value::Bool(true)),
            Marker::U8 => Item::Scalar(Value::from(self.uint(1)?)),
            Marker::U16 => Item::Scalar(Value::from(self.uint(2)?)),
            Marker::U32 => Item::Scalar(Value::from(self.uint(4)?)),
            Marker::U64 => Item::Scalar(Value::from(self.uint(8)?)),
            Marker::I8 => Item::Scalar(Value::from(self.uint(1)? as u8 as i8)),
            Marker::I16 => Item::Scalar(Value::from(self.uint(2)? as u16 as i16)),
            Marker::I32 => Item::Scalar(Value::from(self.uint(4)? as u32 as i32)),
            Marker::I64 => Item::Scalar(Value::from(self.uint(8)? as i64)),
            Marker::F32 => Item::Scalar(float(f64::from(f32::from_bits(self.uint(4)? as u32)))),
            Marker::F64 => Item::Scalar(float(f64::from_bits(self.uint(8)?))),
            Marker::FixStr(n) => Item::Str(usize::from(n)),
            Marker::Str8 => Item::Str(self.length(1)?),
            Marker::Str16 => Item::Str(self.length(2)?),
            Marker::Str32 => Item::Str(self.length(4)?),
            Marker::Bin8 => Item::Bin(self.length(1)?),
            Marker::Bin16 => Item::Bin(self.length(2)?),
            Marker::Bin32 => Item::Bin(self.length(4)?),
            Marker::FixArray(n) => Item::Array(usize::from(n)),
            Marker::Array16 => Item::Array(self.length(2)?),
            Marker::Array32 => Item::Array(self.length(4)?),
            Marker::FixMap(n) => Item::Map(usize::from(n)),
            Marker::Map16 => Item::Map(self.length(2)?),
            Marker::Map32 => Item::Map(self.length(4)?),
            Marker::FixExt1 => Item::Ext(2),
            Marker::FixExt2 => Item::Ext(3),
            Marker::FixExt4 => Item::Ext(5),
            Marker::FixExt8 => Item::Ext(9),
            Marker::FixExt16 => Item::Ext(17),
            Marker::Ext8 => Item::Ext(self.length(1)?.saturating_add(1)),
            Marker::Ext16 => Item::Ext(self.length(2)?.saturating_add(1)),
            Marker::Ext32 => Item::Ext(self.length(4)?.saturating_add(1)),
            Marker::Reserved => return Err(DecodeError("the reserved byte c1")),
        })
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        let item = self.item()?;
        self.value_of(item)
    }

    /// The value `item` starts. What breaks the format only inside the packet is recorded as
    /// its flaw and read as `null`; what leaves the rest of the frame unreadable is an error.
    fn value_of(&mut self, item: Item) -> Result<Value, DecodeError> {
        Ok(match item {
            Item::Scalar(value) => value,
            Item::Str(n) => match std::str::from_utf8(self.take(n)?) {
                Ok(text) => Value::String(text.to_owned()),
                Err(_) => self.flawed("invalid UTF-8"),
            },
            Item::Bin(n) => self.binary(n)?,
            Item::Ext(n) => {
                self.take(n)?;
                self.flawed("extension types are not supported")
            }
            Item::Array(n) | Item::Map(n) if self.depth >= MAX_DEPTH => {
                let values = match item {
                    Item::Map(_) => n.saturating_mul(2),
                    _ => n,
                };
                self.skip(values)?;
                self.flawed("nested too deeply")
            }
            Item::Array(n) => self.array(n)?,
            Item::Map(n) => self.map(n)?,
        })
    }

    fn flawed(&mut self, flaw: &'static str) -> Value {
        self.flaw.get_or_insert(flaw);
        Value::Null
    }

    /// Walks past `pending` values without building them, however deeply they nest.
    fn skip(&mut self, mut pending: usize) -> Result<(), DecodeError> {
        while pending > 0 {
            self.check_count(pending)?;
            pending -= 1;
            match self.item()? {
                Item::Scalar(_) => {}
                Item::Str(n) | Item::Bin(n) | Item::Ext(n) => {
                    self.take(n)?;
                }
                Item::Array(n) => pending = pending.saturating_add(n),
                Item::Map(n) => pending = pending.saturating_add(n.saturating_mul(2)),
            }
        }
        Ok(())
    }

    fn binary(&mut self, n: usize) -> Result<Value, DecodeError> {
        let bytes = self.take(n)?;
        let mut map = Map::with_capacity(1);
        map.insert(
            super::json::BINARY_KEY.to_owned(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        );
        Ok(Value::Object(map))
    }

    /// Every value takes at least one byte: a count beyond the remaining bytes is a lie.
    fn check_count(&self, n: usize) -> Result<(), DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError("declared length exceeds the frame"));
        }
        Ok(())
    }

    fn array(&mut self, n: usize) -> Result<Value, DecodeError> {
        self.check_count(n)?;
        self.depth += 1;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value()?);
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize) -> Result<Value, DecodeError> {
        self.check_count(n.saturating_mul(2))?;
        self.depth += 1;
        let mut map = Map::new();
        for _ in 0..n {
            let key = match self.value()? {
                Value::String(key) => key,
                other => other.to_string(),
            };
            let value = self.value()?;
            map.insert(key, value);
        }
        self.depth -= 1;
        Ok(Value::Object(map))
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn encoded(envelope: Envelope<'_>) -> String {
        let mut out = Vec::new();
        assert_eq!(encode(&envelope, &mut out).unwrap(), FrameKind::Binary);
        hex(&out)
    }

    #[test]
    fn decodes_the_official_handshake_frame() {
        // {"e":["#handshake",{"authToken":null},1]} as sc-codec-min-bin sends it.
        let frame = unhex(
            "81 a1 65 93 aa 23 68 61 6e 64 73 68 61 6b 65 81 a9 61 75 74 68 54 6f 6b 65 6e c0 01",
        );
        assert_eq!(
            decode(&frame),
            Decoded::Packets(vec![
                json!({"event": "#handshake", "data": {"authToken": null}, "cid": 1})
            ])
        );
    }

    #[test]
    fn encodes_replies_events_and_publications_compactly() {
        // {"r":[1,nil,{"id":"x"}]}
        let data = json!({"id": "x"});
        assert_eq!(
            encoded(Envelope::Reply {
                rid: 1,
                result: Ok(Some(&data))
            }),
            "81 a1 72 93 01 c0 81 a2 69 64 a1 78"
        );
        // {"r":[5,nil,nil]}
        assert_eq!(
            encoded(Envelope::Reply {
                rid: 5,
                result: Ok(None)
            }),
            "81 a1 72 93 05 c0 c0"
        );
        // {"e":["hi",nil]}
        assert_eq!(
            encoded(Envelope::Event {
                event: "hi",
                data: None,
                cid: None
            }),
            "81 a1 65 92 a2 68 69 c0"
        );
        // {"e":["q",1,7]}
        let one = json!(1);
        assert_eq!(
            encoded(Envelope::Event {
                event: "q",
                data: Some(&one),
                cid: Some(7)
            }),
            "81 a1 65 93 a1 71 01 07"
        );
        // {"p":["ch",2]}
        let body = json!({"channel": "ch", "data": 2});
        assert_eq!(
            encoded(Envelope::Event {
                event: "#publish",
                data: Some(&body),
                cid: None
            }),
            "81 a1 70 92 a2 63 68 02"
        );
        // {"r":[3,{"name":"E","message":"m"},nil]}
        let err = ApiError::new("E", "m");
        assert_eq!(
            encoded(Envelope::Reply {
                rid: 3,
                result: Err(&err)
            }),
            "81 a1 72 93 03 82 a4 6e 61 6d 65 a1 45 a7 6d 65 73 73 61 67 65 a1 6d c0"
        );
    }

    #[test]
    fn expands_every_compact_form_and_batches() {
        let mut frame = Vec::new();
        rmp::encode::write_array_len(&mut frame, 3).unwrap();
        for envelope in [
            Envelope::Event {
                event: "#publish",
                data: Some(&json!({"channel": "c", "data": {"x": 1}})),
                cid: Some(6),
            },
            Envelope::Event {
                event: "echo",
                data: Some(&json!([1, "two"])),
                cid: Some(2),
            },
            Envelope::Reply {
                rid: 9,
                result: Ok(Some(&json!(true))),
            },
        ] {
            write(&mut frame, &envelope).unwrap();
        }
        assert_eq!(
            decode(&frame),
            Decoded::Packets(vec![
                json!({"event": "#publish", "data": {"channel": "c", "data": {"x": 1}}, "cid": 6}),
                json!({"event": "echo", "data": [1, "two"], "cid": 2}),
                json!({"rid": 9, "data": true}),
            ])
        );
    }

    #[test]
    fn binary_values_round_trip_as_bin() {
        let data = json!({
            "b": {"$binary": "AQID"},
            "lookalike": {"base64": true, "data": "AQID"},
            "n": -5,
            "f": 1.5
        });
        let mut out = Vec::new();
        write_value(&mut out, &data).unwrap();
        assert!(hex(&out).contains("c4 03 01 02 03"), "{}", hex(&out));
        let mut reader = Reader::new(&out);
        assert_eq!(reader.value().unwrap(), data);
    }

    /// `{e:["echo", <data>, 5]}` with `data` as raw bytes.
    fn echo_invoke(data: &[u8]) -> Vec<u8> {
        let mut frame = unhex("81 a1 65 93 a4 65 63 68 6f");
        frame.extend_from_slice(data);
        frame.push(5);
        frame
    }

    fn malformed(cid: u64, flaw: &str) -> Decoded {
        Decoded::Malformed {
            cid,
            reason: format!("invalid MessagePack: {flaw}"),
        }
    }

    /// `levels` nested one-element arrays around 1.
    fn nesting(levels: usize) -> Vec<u8> {
        let mut data = vec![0x91; levels];
        data.push(1);
        data
    }

    #[test]
    fn broken_packets_with_a_readable_cid_are_malformed() {
        // An extension type (fixext1, ext8), invalid UTF-8, nesting too deep: the packet is
        // walked past them and its cid read.
        for (data, flaw) in [
            ("d4 01 02", "extension types are not supported"),
            ("c7 02 01 aa bb", "extension types are not supported"),
            ("a2 ff fe", "invalid UTF-8"),
        ] {
            assert_eq!(
                decode(&echo_invoke(&unhex(data))),
                malformed(5, flaw),
                "{data}"
            );
        }
        assert_eq!(
            decode(&echo_invoke(&nesting(10_000))),
            malformed(5, "nested too deeply")
        );
        // Bytes after a whole packet.
        let mut frame = echo_invoke(&[1]);
        frame.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(
            decode(&frame),
            malformed(5, "bytes after the end of the message")
        );
        // A bomb inside what is skipped still ends the walk: no cid, raw.
        let bomb = [vec![0x91; 200], unhex("dd ff ff ff ff 01")].concat();
        assert!(matches!(decode(&echo_invoke(&bomb)), Decoded::Raw(_)));
        // A flaw in a reply, which has no cid: raw.
        assert!(matches!(
            decode(&unhex("81 a1 72 93 01 c0 d4 01 02")),
            Decoded::Raw(_)
        ));
    }

    #[test]
    fn a_broken_packet_in_a_batch_spares_the_others() {
        let mut frame = vec![0x93];
        frame.extend(echo_invoke(&[1]));
        frame.extend(echo_invoke(&unhex("d4 01 02")));
        // A transmit {e:["hi", <ext>]}: no cid, raw.
        let transmit = unhex("81 a1 65 92 a2 68 69 d4 01 02");
        frame.extend(&transmit);
        assert_eq!(
            decode(&frame),
            Decoded::Batch(vec![
                Decoded::Packets(vec![json!({"event": "echo", "data": 1, "cid": 5})]),
                malformed(5, "extension types are not supported"),
                Decoded::Raw(String::from_utf8_lossy(&transmit).into_owned()),
            ])
        );
        // Bytes after a batch spoil all of it.
        let mut frame = vec![0x91];
        frame.extend(echo_invoke(&[1]));
        frame.push(0);
        assert_eq!(
            decode(&frame),
            Decoded::Batch(vec![malformed(5, "bytes after the end of the message")])
        );
    }

    #[test]
    fn packets_nest_as_deeply_in_a_batch_as_alone() {
        // The packet's map and its `e` array are two levels.
        let deepest = echo_invoke(&nesting(MAX_DEPTH - 2));
        assert!(matches!(decode(&deepest), Decoded::Packets(_)));
        assert_eq!(
            decode(&echo_invoke(&nesting(MAX_DEPTH - 1))),
            malformed(5, "nested too deeply")
        );
        let mut batch = vec![0x91];
        batch.extend(&deepest);
        assert!(matches!(decode(&batch), Decoded::Packets(packets) if packets.len() == 1));
    }

    #[test]
    fn bombs_and_garbage_are_raw_not_crashes() {
        // bin32 claiming 4 GiB with three bytes present.
        assert!(matches!(
            decode(&unhex("c6 ff ff ff ff 01 02 03")),
            Decoded::Raw(_)
        ));
        // array32 claiming 4 billion elements.
        assert!(matches!(
            decode(&unhex("dd ff ff ff ff 01")),
            Decoded::Raw(_)
        ));
        // map32 claiming 2 billion pairs.
        assert!(matches!(
            decode(&unhex("df 7f ff ff ff 01 02")),
            Decoded::Raw(_)
        ));
        // Deep nesting.
        let deep = vec![0x91u8; 100_000];
        assert!(matches!(decode(&deep), Decoded::Raw(_)));
        // Truncated, trailing bytes, an extension type.
        assert!(matches!(decode(&unhex("92 01")), Decoded::Raw(_)));
        assert!(matches!(decode(&unhex("01 02")), Decoded::Raw(_)));
        assert!(matches!(decode(&unhex("d4 01 02")), Decoded::Raw(_)));
        // The v1 ping string through the codec.
        assert_eq!(decode(&unhex("a2 23 32")), Decoded::Raw("#2".into()));
    }
}
