//! SocketCluster invokes and replies in each codec Sockyard speaks (JSON, MessagePack in the
//! `sc-codec-min-bin` form, protobuf in the `sc-codec-protobuf` form), for the load generator.
//!
//! Everything is derived once from the library's own encoders: an invoke or a reply is the
//! same bytes around its call id whatever the id, so the bytes before and after it are taken
//! from two encodings and checked against the library for ids of every width. Per message the
//! load generator then only writes the id between them, and checks a reply by comparing the
//! bytes around its id: nothing is decoded or allocated.

use std::sync::Arc;

use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};
use sockyard::codec::protobuf::Schema;
use sockyard::codec::{CodecState, Decoded, Encoding, FrameKind};
use sockyard::protocol::socketcluster::{encode_event, encode_reply};

use sockyard::ws::OpCode;

/// How a codec writes a call id (`cid` of an invoke, `rid` of a reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdFormat {
    /// JSON: decimal digits.
    Decimal,
    /// MessagePack: an unsigned integer in its shortest form.
    MsgpackUint,
    /// Protobuf: a base-128 varint (after the field's tag).
    Varint,
}

impl IdFormat {
    fn of(encoding: &Encoding) -> Self {
        match encoding {
            Encoding::Json => Self::Decimal,
            Encoding::Msgpack => Self::MsgpackUint,
            Encoding::Protobuf(_) => Self::Varint,
        }
    }

    /// Appends `id`.
    fn push(self, out: &mut Vec<u8>, id: u64) {
        match self {
            Self::Decimal => push_decimal(out, id),
            Self::MsgpackUint => {
                if id < 0x80 {
                    out.push(id as u8);
                } else if let Ok(id) = u8::try_from(id) {
                    out.extend_from_slice(&[0xcc, id]);
                } else if let Ok(id) = u16::try_from(id) {
                    out.push(0xcd);
                    out.extend_from_slice(&id.to_be_bytes());
                } else if let Ok(id) = u32::try_from(id) {
                    out.push(0xce);
                    out.extend_from_slice(&id.to_be_bytes());
                } else {
                    out.push(0xcf);
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
            Self::Varint => {
                let mut id = id;
                while id >= 0x80 {
                    out.push(id as u8 | 0x80);
                    id >>= 7;
                }
                out.push(id as u8);
            }
        }
    }

    /// Reads an id from the front of `bytes`: the id and the bytes it took.
    fn parse(self, bytes: &[u8]) -> Option<(u64, usize)> {
        match self {
            Self::Decimal => {
                let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                let id = bytes[..digits].iter().try_fold(0u64, |n, d| {
                    n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                })?;
                Some((id, digits))
            }
            Self::MsgpackUint => {
                let (&marker, rest) = bytes.split_first()?;
                let width = match marker {
                    0x00..=0x7f => return Some((u64::from(marker), 1)),
                    0xcc => 1,
                    0xcd => 2,
                    0xce => 4,
                    0xcf => 8,
                    _ => return None,
                };
                let value = rest.get(..width)?;
                let id = value.iter().fold(0, |n, b| (n << 8) | u64::from(*b));
                Some((id, 1 + width))
            }
            Self::Varint => {
                let mut id = 0u64;
                for (i, &byte) in bytes.iter().enumerate().take(10) {
                    id |= u64::from(byte & 0x7f) << (7 * i);
                    if byte & 0x80 == 0 {
                        return Some((id, i + 1));
                    }
                }
                None
            }
        }
    }
}

/// Ids every derived template is checked with: each width of each format.
const CHECKED_IDS: [u64; 14] = [
    1,
    9,
    10,
    99,
    127,
    128,
    255,
    256,
    999,
    16_383,
    16_384,
    65_535,
    65_536,
    4_294_967_295,
];

/// An encoded packet split around its call id.
#[derive(Debug, Clone)]
struct AroundId {
    opcode: OpCode,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl AroundId {
    /// Finds the bytes around the id in what `encode` makes of ids 5 and 6 (one byte each in
    /// every format), then checks the split against `encode` for [`CHECKED_IDS`].
    fn derive(
        format: IdFormat,
        what: &str,
        encode: impl Fn(u64) -> anyhow::Result<(FrameKind, Vec<u8>)>,
    ) -> anyhow::Result<Self> {
        let (kind, five) = encode(5)?;
        let (_, six) = encode(6)?;
        ensure!(
            five.len() == six.len(),
            "{what}: ids 5 and 6 encode to different lengths"
        );
        let head = five.iter().zip(&six).take_while(|(a, b)| a == b).count();
        ensure!(head < five.len(), "{what}: the id is not in the frame");
        let tail = five.len() - head - 1;
        ensure!(
            five[head + 1..] == six[head + 1..],
            "{what}: ids 5 and 6 differ in more than one byte"
        );
        let split = Self {
            opcode: opcode_of(kind),
            head: five[..head].to_vec(),
            tail: five[five.len() - tail..].to_vec(),
        };
        for id in CHECKED_IDS {
            let mut ours = Vec::new();
            split.push(format, &mut ours, id);
            let (_, theirs) = encode(id)?;
            ensure!(
                ours == theirs,
                "{what} with id {id}: built {} but the library encodes {}",
                show_bytes(&ours),
                show_bytes(&theirs)
            );
        }
        Ok(split)
    }

    fn push(&self, format: IdFormat, out: &mut Vec<u8>, id: u64) {
        out.extend_from_slice(&self.head);
        format.push(out, id);
        out.extend_from_slice(&self.tail);
    }

    /// The id of `payload` if it is exactly head, id, tail.
    fn parse(&self, format: IdFormat, payload: &[u8]) -> Option<u64> {
        let rest = payload.strip_prefix(self.head.as_slice())?;
        let (id, used) = format.parse(rest)?;
        (rest[used..] == self.tail[..]).then_some(id)
    }
}

/// What a server frame that is not the expected reply turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unexpected {
    /// One or more events (a server push): ignored.
    Event,
    /// Anything else, described.
    Other(String),
}

/// The frames of one codec for `echo`-style invokes with a fixed string payload.
#[derive(Debug, Clone)]
pub(crate) struct ScFrames {
    encoding: Encoding,
    format: IdFormat,
    /// The event invoked.
    event: String,
    /// The data sent, and expected back.
    data: Value,
    invoke: AroundId,
    reply: AroundId,
    /// The protocol-v1 ping as this codec sends it.
    v1_ping: (OpCode, Vec<u8>),
}

impl ScFrames {
    /// Frames invoking `event` with the string `payload`, each answered by a reply carrying
    /// the same string.
    pub(crate) fn new(encoding: Encoding, event: &str, payload: &str) -> anyhow::Result<Self> {
        let format = IdFormat::of(&encoding);
        let data = Value::String(payload.to_owned());
        let name = codec_name(&encoding);
        let invoke = AroundId::derive(format, &format!("{name} invoke"), |cid| {
            let mut out = Vec::new();
            let kind = encode_event(&encoding, event, Some(&data), Some(cid), &mut out)?;
            Ok((kind, out))
        })?;
        let reply = AroundId::derive(format, &format!("{name} reply"), |rid| {
            let mut out = Vec::new();
            let kind = encode_reply(&encoding, rid, Ok(Some(&data)), &mut out)?;
            Ok((kind, out))
        })?;
        let (kind, ping) = encoding.v1_ping();
        let v1_ping = (opcode_of(kind), ping);
        Ok(Self {
            encoding,
            format,
            event: event.to_owned(),
            data,
            invoke,
            reply,
            v1_ping,
        })
    }

    /// The opcode invokes travel in.
    pub(crate) fn invoke_opcode(&self) -> OpCode {
        self.invoke.opcode
    }

    /// Appends the payload of the invoke with call id `cid`.
    pub(crate) fn push_invoke(&self, out: &mut Vec<u8>, cid: u64) {
        self.invoke.push(self.format, out, cid);
    }

    /// Appends the payload of the reply a server must send to `rid`.
    #[cfg(test)]
    pub(crate) fn push_reply(&self, out: &mut Vec<u8>, rid: u64) {
        self.reply.push(self.format, out, rid);
    }

    /// The rid of a frame that is exactly the expected reply (right opcode, right bytes).
    pub(crate) fn reply_rid(&self, opcode: OpCode, payload: &[u8]) -> Option<u64> {
        if opcode != self.reply.opcode {
            return None;
        }
        self.reply.parse(self.format, payload)
    }

    /// Whether a frame is a SocketCluster ping: an empty text frame (v2), `#1` as text, or the
    /// codec's own v1 ping.
    pub(crate) fn is_ping(&self, opcode: OpCode, payload: &[u8]) -> bool {
        match opcode {
            OpCode::Text if payload.is_empty() || payload == b"#1" => true,
            _ => opcode == self.v1_ping.0 && payload == self.v1_ping.1,
        }
    }

    /// The `#handshake` invoke with call id `cid` (no auth token): opcode and payload.
    pub(crate) fn handshake(&self, cid: u64) -> anyhow::Result<(OpCode, Vec<u8>)> {
        let mut out = Vec::new();
        let data = json!({ "authToken": null });
        let kind = encode_event(
            &self.encoding,
            "#handshake",
            Some(&data),
            Some(cid),
            &mut out,
        )
        .context("encoding #handshake")?;
        Ok((opcode_of(kind), out))
    }

    /// Decodes a frame with the library's decoder (slow; for checks outside the hot loop).
    pub(crate) fn decode(&self, opcode: OpCode, payload: &[u8]) -> Decoded {
        self.encoding.decode(
            payload,
            opcode == OpCode::Binary,
            &mut CodecState::default(),
        )
    }

    /// Checks that `payload` decodes to the successful reply to `#handshake` call `cid`.
    pub(crate) fn check_handshake_reply(
        &self,
        opcode: OpCode,
        payload: &[u8],
        cid: u64,
    ) -> anyhow::Result<bool> {
        let Decoded::Packets(packets) = self.decode(opcode, payload) else {
            bail!("not a packet: {}", show_frame(opcode, payload));
        };
        let [packet] = packets.as_slice() else {
            bail!("{} packets in the reply", packets.len());
        };
        if packet.get("rid").and_then(Value::as_u64) != Some(cid) {
            return Ok(false);
        }
        ensure!(
            packet["data"]["id"].is_string(),
            "handshake reply without an id: {packet}"
        );
        Ok(true)
    }

    /// Checks with the library's decoder that `payload` is the reply to invoke `cid`:
    /// exactly `{rid: cid, data: <the payload>}`.
    pub(crate) fn check_reply_fully(
        &self,
        opcode: OpCode,
        payload: &[u8],
        cid: u64,
    ) -> anyhow::Result<()> {
        let expected = json!({ "rid": cid, "data": self.data });
        match self.decode(opcode, payload) {
            Decoded::Packets(packets) if packets == [expected.clone()] => Ok(()),
            decoded => bail!(
                "the reply to {} (cid {cid}) decodes to {decoded:?}, expected {expected}; frame {}",
                self.event,
                show_frame(opcode, payload)
            ),
        }
    }

    /// What a frame that is neither the expected reply nor a ping is.
    pub(crate) fn classify(&self, opcode: OpCode, payload: &[u8]) -> Unexpected {
        match self.decode(opcode, payload) {
            Decoded::Packets(packets)
                if !packets.is_empty() && packets.iter().all(|p| p.get("event").is_some()) =>
            {
                Unexpected::Event
            }
            Decoded::Packets(packets) => Unexpected::Other(format!(
                "{} (decodes to {})",
                show_frame(opcode, payload),
                Value::Array(packets)
            )),
            other => Unexpected::Other(format!("{} ({other:?})", show_frame(opcode, payload))),
        }
    }
}

/// The WebSocket opcode of a frame of `kind`.
fn opcode_of(kind: FrameKind) -> OpCode {
    match kind {
        FrameKind::Text => OpCode::Text,
        FrameKind::Binary => OpCode::Binary,
    }
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let start = out.len();
    loop {
        out.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out[start..].reverse();
}

/// The name the benchmark uses for an encoding.
pub(crate) fn codec_name(encoding: &Encoding) -> &'static str {
    match encoding {
        Encoding::Json => "json",
        Encoding::Msgpack => "msgpack",
        Encoding::Protobuf(_) => "protobuf",
    }
}

/// The schema of the default config's protobuf endpoint: the demo `.proto` with
/// socketcluster-api's `#api`, no events of its own.
pub(crate) fn demo_schema() -> anyhow::Result<Arc<Schema>> {
    let sources = [(
        "inline[0].proto".to_owned(),
        sockyard::config::DEMO_PROTO.to_owned(),
    )];
    let schema = Schema::compile(&sources, true, &[]).context("compiling the demo .proto")?;
    Ok(Arc::new(schema))
}

/// A frame for error messages: its text when it is text, else its bytes in hex.
pub(crate) fn show_frame(opcode: OpCode, payload: &[u8]) -> String {
    match opcode {
        OpCode::Binary => format!("binary {}", show_bytes(payload)),
        _ => crate::client::show(payload),
    }
}

/// Bytes in hex, cut to a readable length.
pub(crate) fn show_bytes(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().take(160).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 160 {
        format!("[{}…] ({} bytes)", hex.join(" "), bytes.len())
    } else {
        format!("[{}]", hex.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01";

    fn all() -> Vec<ScFrames> {
        [
            Encoding::Json,
            Encoding::Msgpack,
            Encoding::Protobuf(demo_schema().unwrap()),
        ]
        .into_iter()
        .map(|encoding| ScFrames::new(encoding, "echo", PAYLOAD).unwrap())
        .collect()
    }

    #[test]
    fn decimals() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, 9_876_543_210);
        assert_eq!(out, b"0 9876543210");
    }

    #[test]
    fn ids_round_trip_in_every_format() {
        for format in [IdFormat::Decimal, IdFormat::MsgpackUint, IdFormat::Varint] {
            for id in CHECKED_IDS.into_iter().chain([0, u64::MAX]) {
                let mut out = Vec::new();
                format.push(&mut out, id);
                out.push(0xc1);
                assert_eq!(
                    format.parse(&out),
                    Some((id, out.len() - 1)),
                    "{format:?} {id}"
                );
            }
        }
        assert_eq!(IdFormat::Decimal.parse(b"x1"), None);
        assert_eq!(IdFormat::MsgpackUint.parse(&[0xcd, 1]), None);
        assert_eq!(IdFormat::Varint.parse(&[0x80, 0x80]), None);
    }

    #[test]
    fn json_frames_are_the_usual_text() {
        let json = &all()[0];
        let mut out = Vec::new();
        json.push_invoke(&mut out, 42);
        assert_eq!(
            out,
            format!("{{\"event\":\"echo\",\"data\":\"{PAYLOAD}\",\"cid\":42}}").as_bytes()
        );
        assert_eq!(json.invoke_opcode(), OpCode::Text);
        let reply = format!("{{\"rid\":1234,\"data\":\"{PAYLOAD}\"}}");
        assert_eq!(json.reply_rid(OpCode::Text, reply.as_bytes()), Some(1234));
        assert_eq!(json.reply_rid(OpCode::Binary, reply.as_bytes()), None);
        assert_eq!(
            json.reply_rid(OpCode::Text, b"{\"rid\":12,\"error\":{}}"),
            None
        );
    }

    #[test]
    fn binary_codecs_use_binary_frames_and_their_compact_forms() {
        let frames = all();
        let (msgpack, protobuf) = (&frames[1], &frames[2]);
        let mut out = Vec::new();
        msgpack.push_invoke(&mut out, 300);
        // {e: ["echo", "<64 chars>", 300]}
        assert_eq!(
            &out[..10],
            [0x81, 0xa1, b'e', 0x93, 0xa4, b'e', b'c', b'h', b'o', 0xd9]
        );
        assert_eq!(&out[out.len() - 3..], [0xcd, 0x01, 0x2c]);
        out.clear();
        protobuf.push_invoke(&mut out, 300);
        // 0x01, 254 (sockyard.protocol.Event), event = 1, data = 2, cid = 3
        assert_eq!(&out[..8], [0x01, 254, 0x0a, 4, b'e', b'c', b'h', b'o']);
        assert_eq!(&out[out.len() - 3..], [0x18, 0xac, 0x02]);
        for frames in [msgpack, protobuf] {
            assert_eq!(frames.invoke_opcode(), OpCode::Binary);
            let mut reply = Vec::new();
            frames.push_reply(&mut reply, 70_000);
            assert_eq!(frames.reply_rid(OpCode::Binary, &reply), Some(70_000));
            frames
                .check_reply_fully(OpCode::Binary, &reply, 70_000)
                .unwrap();
            assert!(frames.check_reply_fully(OpCode::Binary, &reply, 7).is_err());
            reply.pop();
            assert_eq!(frames.reply_rid(OpCode::Binary, &reply), None);
            assert!(frames.is_ping(OpCode::Text, b""));
            assert!(!frames.is_ping(OpCode::Binary, b""));
        }
        assert!(msgpack.is_ping(OpCode::Binary, &[0xa2, b'#', b'1']));
        assert!(protobuf.is_ping(OpCode::Binary, &[0x01, 0x03]));
    }

    #[test]
    fn events_are_told_from_garbage() {
        for frames in all() {
            let mut event = Vec::new();
            let data = json!({"channel": "x", "data": 1});
            let kind =
                encode_event(&frames.encoding, "#publish", Some(&data), None, &mut event).unwrap();
            assert_eq!(frames.classify(opcode_of(kind), &event), Unexpected::Event);
            assert!(matches!(
                frames.classify(OpCode::Binary, &[0xc1, 0xff]),
                Unexpected::Other(_)
            ));
        }
    }

    #[test]
    fn handshakes_are_encoded_by_the_library() {
        let frames = all();
        let (opcode, json) = frames[0].handshake(1).unwrap();
        assert_eq!(opcode, OpCode::Text);
        assert_eq!(
            json,
            b"{\"event\":\"#handshake\",\"data\":{\"authToken\":null},\"cid\":1}"
        );
        let (opcode, protobuf) = frames[2].handshake(1).unwrap();
        assert_eq!(opcode, OpCode::Binary);
        assert_eq!(&protobuf[..2], [0x01, 0x00]);
    }
}
