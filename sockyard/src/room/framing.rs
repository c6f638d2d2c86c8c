//! Cuts a wrapped program's output into messages for its room, and encodes the room's client
//! messages as the program's input (pure: no IO).
//!
//! # Child → clients
//!
//! [`OutputDecoder`] takes the child's stdout in whatever chunks the pipe returned and yields
//! [`ChildMessage`]s, according to an [`OutputMode`]:
//!
//! - [`OutputMode::Lines`] (the default): one message per `\n`-terminated line, without the `\n`
//!   and without one `\r` just before it. Empty lines are (empty) messages.
//! - [`OutputMode::Delimiters`] (`--delimiters`, `--null`): one message per piece ending at any of
//!   the given bytes; nothing else is special, not even `\r` or `\n`.
//! - [`OutputMode::Binary`] (`--binary`): each chunk as read is one binary message.
//! - [`OutputMode::Gwsocket`]: gwsocket's length-prefixed frames (see [`gwsocket_frame`]).
//!
//! Nothing is lost and memory stays bounded: a piece longer than the decoder's maximum message
//! size is delivered as several messages of at most that size (cut, when possible, at a UTF-8
//! character boundary), and at end of output ([`OutputDecoder::finish`]) a last piece without a
//! delimiter is a message too. Pieces that are not valid UTF-8 go out as binary messages (where
//! ScaleSocket sent an empty string). Two exceptions drop data rather than misroute it, and are
//! reported through [`OutputDecoder::take_errors`]: a gwsocket frame over the limit, or of an
//! unknown type, is skipped as its bytes arrive (never buffered); and with JSON framing an
//! over-long piece that may be a JSON object is dropped, since its `_to` cannot be read and
//! sending it to everyone could leak a private message.
//!
//! With [`ServerFraming::Json`], each complete line or delimited piece that is a JSON object is
//! read for routing headers: `_to` (a connection id; missing or `null` means everyone), `_meta`
//! (store as room metadata instead of sending) and `_cache` (eligible for `--cache tagged`).
//! Messages are sent byte for byte as the program wrote them.
//!
//! # Clients → child
//!
//! [`encode_input`] writes one client message in the program's [`ClientFraming`]: a line, raw
//! bytes, a JSON object with `"_from"` set to the sender, or a gwsocket frame.

use std::mem;

use bytes::Bytes;
use serde_json::{Map, Value};
use thiserror::Error;

/// Length of a gwsocket frame header: destination id, type and payload length, each a
/// big-endian `u32`.
pub const GWSOCKET_HEADER_LEN: usize = 12;

/// The gwsocket frame type of a text payload.
pub const GWSOCKET_TEXT: u32 = 1;

/// The gwsocket frame type of a binary payload.
pub const GWSOCKET_BINARY: u32 = 2;

/// How many [`FramingError`]s an [`OutputDecoder`] keeps until they are taken; later ones are
/// only counted (see [`OutputDecoder::errors_total`]), so a misbehaving program cannot make the
/// decoder grow without bound.
pub const MAX_PENDING_ERRORS: usize = 64;

// ===== child → clients =====

/// How the child's output is cut into messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutputMode {
    /// One message per line: split at `\n`, dropping the `\n` and one `\r` right before it (as
    /// tokio's `lines()` does). Empty lines are empty messages. A `\r` at the very end of the
    /// output, with no `\n` after it, is kept.
    #[default]
    Lines,
    /// One message per piece ending at any of these bytes (`--delimiters`, `--null`); the
    /// delimiter is dropped and no other byte is special. With no bytes at all, pieces end only
    /// at the maximum message size and at end of output.
    Delimiters(Vec<u8>),
    /// Each chunk of output, as read, is one binary message (`--binary`); chunk boundaries are
    /// whatever the pipe returned.
    Binary,
    /// gwsocket frames: a 12-byte big-endian header (destination id, type, payload length) and
    /// exactly that many payload bytes; see [`gwsocket_frame`].
    Gwsocket,
}

impl OutputMode {
    /// The mode the `--delimiters=<CHARS>` and `--null` flags ask for: [`OutputMode::Lines`]
    /// when neither is given, otherwise [`OutputMode::Delimiters`] with the parsed characters
    /// (see [`parse_delimiters`]) plus NUL when `null` is set (`--null` alone: NUL only).
    pub fn from_delimiter_flags(
        delimiters: Option<&str>,
        null: bool,
    ) -> Result<Self, DelimiterError> {
        let mut bytes = match delimiters {
            Some(value) => parse_delimiters(value)?,
            None if null => Vec::new(),
            None => return Ok(Self::Lines),
        };
        if null && !bytes.contains(&0) {
            bytes.push(0);
        }
        Ok(Self::Delimiters(bytes))
    }
}

/// Whether the child's lines carry routing headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerFraming {
    /// Every message goes to everyone in the room.
    #[default]
    None,
    /// Lines (or delimited pieces) that are JSON objects are read for `_to`, `_meta` and
    /// `_cache`; anything else goes to everyone. `"_to": 0` addresses connection 0, which no
    /// client has (unlike gwsocket's destination 0, which means everyone). Pieces over the
    /// maximum message size are not read as JSON: those that may be objects are dropped
    /// ([`FramingError::JsonTooLong`]), the others go to everyone in fragments.
    ///
    /// Applies to [`OutputMode::Lines`] and [`OutputMode::Delimiters`] only: binary chunks have
    /// no message boundaries and gwsocket frames carry their own destination.
    Json,
}

/// One message from the child, ready to route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildMessage {
    /// The one connection to send it to, or `None` for everyone in the room. An id that is not
    /// in the room reaches nobody.
    pub to: Option<u32>,
    /// Whether it goes out as a binary WebSocket message: always in binary mode and for
    /// gwsocket type 2, and for any payload that is not valid UTF-8.
    pub binary: bool,
    /// The bytes to send, exactly as the child wrote them (for a `meta` message: the object
    /// without its `_meta` key, re-serialised).
    pub payload: Bytes,
    /// A JSON object with `"_meta": true`: store the payload as the room's metadata, do not
    /// send it to anyone (whatever `to` says).
    pub meta: bool,
    /// A JSON object with `"_cache": true`: kept by a `--cache tagged:N` history.
    pub cache: bool,
}

impl ChildMessage {
    /// A message for everyone in the room, with no metadata or cache flag.
    pub fn new(payload: impl Into<Bytes>, binary: bool) -> Self {
        Self {
            to: None,
            binary,
            payload: payload.into(),
            meta: false,
            cache: false,
        }
    }

    /// A text message for everyone, or a binary one if `payload` is not valid UTF-8.
    fn text(payload: Vec<u8>) -> Self {
        let binary = std::str::from_utf8(&payload).is_err();
        Self::new(payload, binary)
    }
}

/// Something in the child's output that could not be delivered as written. Nothing here stops
/// the room: the caller logs it (and may count it) and carries on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FramingError {
    /// A gwsocket frame's type was neither 1 (text) nor 2 (binary). Its payload was skipped and
    /// decoding went on with the next frame.
    #[error(
        "gwsocket frame (destination {to}) has unknown type {kind}; its {len} payload bytes were skipped"
    )]
    UnknownType {
        /// The destination id from the header.
        to: u32,
        /// The type from the header.
        kind: u32,
        /// The declared payload length.
        len: u32,
    },
    /// A gwsocket frame declared a payload longer than the maximum message size. Its payload was
    /// skipped as it arrived (never buffered) and decoding went on with the next frame.
    #[error(
        "gwsocket frame (destination {to}) declares {len} payload bytes, over the {max}-byte message limit; it was skipped"
    )]
    TooLong {
        /// The destination id from the header.
        to: u32,
        /// The declared payload length.
        len: u32,
        /// The maximum message size.
        max: usize,
    },
    /// The output ended inside a gwsocket frame; the partial frame was dropped.
    #[error(
        "output ended {received} bytes into a gwsocket frame of at least {expected} bytes; the partial frame was dropped"
    )]
    Truncated {
        /// Bytes of the frame (header included) that did arrive.
        received: usize,
        /// The frame's full length, header included (12 when the header itself was cut).
        expected: u64,
    },
    /// With JSON framing, a line (or delimited piece) that may be a JSON object grew over the
    /// maximum message size. Its headers cannot be read without holding all of it, and sending it
    /// to everyone could leak a message meant for one client, so it was dropped up to its
    /// delimiter. (Over-long pieces that cannot be objects are delivered in fragments.)
    #[error(
        "a JSON line longer than the {max}-byte message limit was dropped (its `_to` could not be read)"
    )]
    JsonTooLong {
        /// The maximum message size.
        max: usize,
    },
    /// A JSON line had a routing header of the wrong type (`_to` not a `u32` or `null`, `_meta`
    /// or `_cache` not a boolean or `null`). As in ScaleSocket the whole header was ignored: the
    /// line was sent, unchanged, to everyone.
    #[error(
        "JSON header `{field}` has the wrong type; the header was ignored and the line sent to everyone"
    )]
    IgnoredHeader {
        /// `"_to"`, `"_meta"` or `"_cache"`.
        field: &'static str,
    },
}

impl FramingError {
    /// Whether output was lost: true for every problem except [`FramingError::IgnoredHeader`],
    /// whose line was still delivered (to everyone). Count these as dropped messages.
    pub fn dropped(&self) -> bool {
        !matches!(self, Self::IgnoredHeader { .. })
    }
}

/// How [`OutputDecoder`] finds message boundaries (the [`OutputMode`] prepared for scanning).
#[derive(Debug)]
enum Cutter {
    /// Split at `\n`, strip one `\r` before it.
    Lines,
    /// Split at any byte whose entry is `true`.
    Any(Box<[bool; 256]>),
    /// Every chunk is a message.
    Binary,
    /// gwsocket frames.
    Gwsocket,
}

/// Where the gwsocket decoder is within the current frame.
#[derive(Debug)]
enum Gw {
    /// Reading the 12-byte header; `have` bytes of it are in `header`.
    Header {
        header: [u8; GWSOCKET_HEADER_LEN],
        have: usize,
    },
    /// Collecting a payload of `len` bytes (at most the maximum message size); it grows as
    /// bytes arrive rather than being allocated from the declared length.
    Payload {
        to: u32,
        binary: bool,
        len: usize,
        payload: Vec<u8>,
    },
    /// Dropping the payload of a rejected frame: `remaining` bytes still to skip.
    Skip { remaining: u32 },
}

impl Gw {
    const START: Self = Self::Header {
        header: [0; GWSOCKET_HEADER_LEN],
        have: 0,
    };
}

/// Incremental decoder of one child's output into [`ChildMessage`]s.
///
/// Feed it bytes in whatever chunks they arrive; it keeps at most one maximum-size message (plus
/// a few bytes) between calls, whatever the input.
///
/// ```
/// use sockyard::room::framing::{OutputDecoder, OutputMode, ServerFraming};
///
/// let mut decoder = OutputDecoder::new(OutputMode::Lines, ServerFraming::Json, 1 << 20);
/// let mut out = Vec::new();
/// decoder.feed(b"hello\r\n{\"_to\":2,\"text\":\"psst\"}\nbye", &mut out);
/// decoder.finish(&mut out);
/// assert_eq!(out.len(), 3);
/// assert_eq!(&out[0].payload[..], b"hello");
/// assert_eq!(out[1].to, Some(2));
/// assert_eq!(&out[2].payload[..], b"bye");
/// ```
#[derive(Debug)]
pub struct OutputDecoder {
    cutter: Cutter,
    framing: ServerFraming,
    /// The largest message delivered, at least 1.
    max: usize,
    /// Lines and delimiters: the start of the current piece (at most `max` bytes between calls).
    pending: Vec<u8>,
    /// Lines and delimiters: what became of the current piece if it grew over `max`.
    overflow: Overflow,
    /// gwsocket: the state within the current frame.
    gw: Gw,
    /// Problems not yet taken, at most [`MAX_PENDING_ERRORS`].
    errors: Vec<FramingError>,
    /// Every problem ever reported, taken or not.
    errors_total: u64,
}

impl OutputDecoder {
    /// A decoder cutting output as `mode` says, reading JSON headers if `framing` says so, and
    /// delivering messages of at most `max_message_bytes` (0 is taken as 1).
    pub fn new(mode: OutputMode, framing: ServerFraming, max_message_bytes: usize) -> Self {
        let cutter = match mode {
            OutputMode::Lines => Cutter::Lines,
            OutputMode::Delimiters(bytes) => {
                let mut table = Box::new([false; 256]);
                for byte in bytes {
                    if let Some(slot) = table.get_mut(usize::from(byte)) {
                        *slot = true;
                    }
                }
                Cutter::Any(table)
            }
            OutputMode::Binary => Cutter::Binary,
            OutputMode::Gwsocket => Cutter::Gwsocket,
        };
        Self {
            cutter,
            framing,
            max: max_message_bytes.max(1),
            pending: Vec::new(),
            overflow: Overflow::No,
            gw: Gw::START,
            errors: Vec::new(),
            errors_total: 0,
        }
    }

    /// Decodes `bytes`, the next chunk of output, appending every message it completes to `out`.
    /// Bytes of an unfinished message are kept for the next call.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<ChildMessage>) {
        match self.cutter {
            Cutter::Lines | Cutter::Any(_) => self.feed_pieces(bytes, out),
            Cutter::Binary => {
                for chunk in bytes.chunks(self.max) {
                    out.push(ChildMessage::new(Bytes::copy_from_slice(chunk), true));
                }
            }
            Cutter::Gwsocket => self.feed_gwsocket(bytes, out),
        }
    }

    /// Ends the output: a last piece without a delimiter becomes a message, and a partial
    /// gwsocket frame is dropped and reported as [`FramingError::Truncated`] (a frame that was
    /// being skipped is not reported again). The decoder is then back at its initial state.
    pub fn finish(&mut self, out: &mut Vec<ChildMessage>) {
        let pending = mem::take(&mut self.pending);
        let overflow = mem::replace(&mut self.overflow, Overflow::No);
        if !pending.is_empty() && overflow != Overflow::Dropping {
            out.push(self.piece_message(pending, overflow));
        }
        match mem::replace(&mut self.gw, Gw::START) {
            Gw::Header { have: 0, .. } | Gw::Skip { .. } => {}
            Gw::Header { have, .. } => self.report(FramingError::Truncated {
                received: have,
                expected: GWSOCKET_HEADER_LEN as u64,
            }),
            Gw::Payload { len, payload, .. } => self.report(FramingError::Truncated {
                received: GWSOCKET_HEADER_LEN + payload.len(),
                expected: (GWSOCKET_HEADER_LEN + len) as u64,
            }),
        }
    }

    /// The problems found since the last call (at most [`MAX_PENDING_ERRORS`]; see
    /// [`Self::errors_total`] for the full count). Call it after each [`Self::feed`] and
    /// [`Self::finish`] to log them.
    pub fn take_errors(&mut self) -> Vec<FramingError> {
        mem::take(&mut self.errors)
    }

    /// How many problems were found since the decoder was made, including any not kept.
    pub fn errors_total(&self) -> u64 {
        self.errors_total
    }

    /// How many bytes of an unfinished message the decoder holds.
    pub fn buffered_len(&self) -> usize {
        let gw = match &self.gw {
            Gw::Header { have, .. } => *have,
            Gw::Payload { payload, .. } => payload.len(),
            Gw::Skip { .. } => 0,
        };
        self.pending.len() + gw
    }

    /// Whether the decoder is between messages: nothing buffered, no frame half read.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
            && self.overflow == Overflow::No
            && matches!(self.gw, Gw::Header { have: 0, .. })
    }

    fn report(&mut self, error: FramingError) {
        self.errors_total = self.errors_total.saturating_add(1);
        if self.errors.len() < MAX_PENDING_ERRORS {
            self.errors.push(error);
        }
    }

    // ----- lines and delimiters -----

    fn is_delimiter(&self, byte: u8) -> bool {
        match &self.cutter {
            Cutter::Lines => byte == b'\n',
            Cutter::Any(table) => table.get(usize::from(byte)).copied().unwrap_or(false),
            Cutter::Binary | Cutter::Gwsocket => false,
        }
    }

    fn feed_pieces(&mut self, bytes: &[u8], out: &mut Vec<ChildMessage>) {
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|&b| self.is_delimiter(b)) {
            let (head, tail) = rest.split_at(at);
            self.append(head, out);
            self.end_piece(out);
            rest = tail.get(1..).unwrap_or_default();
        }
        self.append(rest, out);
    }

    /// Adds bytes of the current piece, delivering `max`-byte fragments as soon as more than
    /// `max` bytes are held (only then: the byte after them decides whether a `\r` ends a line).
    /// With JSON framing, a piece that may be an object is dropped instead (see
    /// [`FramingError::JsonTooLong`]).
    fn append(&mut self, mut bytes: &[u8], out: &mut Vec<ChildMessage>) {
        while !bytes.is_empty() {
            if self.overflow == Overflow::Dropping {
                return;
            }
            let room = self
                .max
                .saturating_add(1)
                .saturating_sub(self.pending.len());
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.pending.extend_from_slice(now);
            bytes = later;
            if self.pending.len() > self.max {
                if self.overflow == Overflow::No
                    && self.framing == ServerFraming::Json
                    && may_be_object(&self.pending)
                {
                    self.pending = Vec::new();
                    self.overflow = Overflow::Dropping;
                    self.report(FramingError::JsonTooLong { max: self.max });
                    return;
                }
                let cut = fragment_cut(&self.pending, self.max);
                let rest = self.pending.split_off(cut);
                let fragment = mem::replace(&mut self.pending, rest);
                out.push(ChildMessage::text(fragment));
                self.overflow = Overflow::Fragments;
            }
        }
    }

    /// A delimiter ended the current piece.
    fn end_piece(&mut self, out: &mut Vec<ChildMessage>) {
        let mut piece = mem::take(&mut self.pending);
        if matches!(self.cutter, Cutter::Lines) && piece.last() == Some(&b'\r') {
            piece.pop();
        }
        match mem::replace(&mut self.overflow, Overflow::No) {
            Overflow::Dropping => {}
            // The end of a piece already delivered in fragments is not a message of its own.
            Overflow::Fragments if piece.is_empty() => {}
            overflow => out.push(self.piece_message(piece, overflow)),
        }
    }

    fn piece_message(&mut self, piece: Vec<u8>, overflow: Overflow) -> ChildMessage {
        if self.framing == ServerFraming::Json && overflow == Overflow::No {
            self.json_message(piece)
        } else {
            ChildMessage::text(piece)
        }
    }

    /// Reads the routing headers of a piece that is a JSON object; anything else goes to
    /// everyone as it is.
    fn json_message(&mut self, piece: Vec<u8>) -> ChildMessage {
        if first_json_byte(&piece) != Some(b'{') {
            return ChildMessage::text(piece);
        }
        let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&piece) else {
            return ChildMessage::text(piece);
        };
        let header = match Header::read(&object) {
            Ok(header) => header,
            Err(field) => {
                self.report(FramingError::IgnoredHeader { field });
                return ChildMessage::text(piece);
            }
        };
        let mut message = ChildMessage::text(piece);
        message.to = header.to;
        message.cache = header.cache;
        if header.meta {
            object.shift_remove("_meta");
            if let Ok(stripped) = serde_json::to_vec(&object) {
                message.payload = Bytes::from(stripped);
            }
            message.meta = true;
        }
        message
    }

    // ----- gwsocket -----

    fn feed_gwsocket(&mut self, bytes: &[u8], out: &mut Vec<ChildMessage>) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match &mut self.gw {
                Gw::Header { header, have } => {
                    let want = GWSOCKET_HEADER_LEN.saturating_sub(*have);
                    let (now, later) = rest.split_at(want.min(rest.len()));
                    if let Some(slot) = header.get_mut(*have..*have + now.len()) {
                        slot.copy_from_slice(now);
                    }
                    *have += now.len();
                    rest = later;
                    if *have >= GWSOCKET_HEADER_LEN {
                        let header = *header;
                        self.start_frame(header, out);
                    }
                }
                Gw::Payload {
                    to,
                    binary,
                    len,
                    payload,
                } => {
                    let want = len.saturating_sub(payload.len());
                    let (now, later) = rest.split_at(want.min(rest.len()));
                    payload.extend_from_slice(now);
                    rest = later;
                    if payload.len() >= *len {
                        let message = gwsocket_message(*to, *binary, mem::take(payload));
                        out.push(message);
                        self.gw = Gw::START;
                    }
                }
                Gw::Skip { remaining } => {
                    let skip = rest.len().min(*remaining as usize);
                    rest = rest.get(skip..).unwrap_or_default();
                    *remaining -= skip as u32;
                    if *remaining == 0 {
                        self.gw = Gw::START;
                    }
                }
            }
        }
    }

    /// A complete header arrived: decide what to do with the payload that follows.
    fn start_frame(&mut self, header: [u8; GWSOCKET_HEADER_LEN], out: &mut Vec<ChildMessage>) {
        let [a, b, c, d, e, f, g, h, i, j, k, l] = header;
        let to = u32::from_be_bytes([a, b, c, d]);
        let kind = u32::from_be_bytes([e, f, g, h]);
        let len = u32::from_be_bytes([i, j, k, l]);
        let fits = usize::try_from(len).ok().filter(|len| *len <= self.max);
        let binary = match kind {
            GWSOCKET_TEXT => false,
            GWSOCKET_BINARY => true,
            _ => {
                self.report(FramingError::UnknownType { to, kind, len });
                self.gw = skip(len);
                return;
            }
        };
        self.gw = match fits {
            None => {
                self.report(FramingError::TooLong {
                    to,
                    len,
                    max: self.max,
                });
                skip(len)
            }
            Some(0) => {
                out.push(gwsocket_message(to, binary, Vec::new()));
                Gw::START
            }
            Some(len) => Gw::Payload {
                to,
                binary,
                len,
                payload: Vec::new(),
            },
        };
    }
}

/// What happens to a line or delimited piece that grows over the maximum message size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    /// It has not (yet).
    No,
    /// It is delivered in fragments, to everyone, without reading JSON headers.
    Fragments,
    /// It is dropped up to its delimiter: with JSON framing it may be an object whose `_to`
    /// cannot be read, and sending it to everyone could leak a private message.
    Dropping,
}

/// Whether a JSON-framed piece that starts with `front` may be an object: its first byte other
/// than JSON whitespace is `{`, or there is no such byte yet.
fn may_be_object(front: &[u8]) -> bool {
    first_json_byte(front).is_none_or(|b| b == b'{')
}

/// The first byte of `bytes` that is not JSON whitespace.
fn first_json_byte(bytes: &[u8]) -> Option<u8> {
    bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// The state that skips a rejected frame's `len` payload bytes.
fn skip(len: u32) -> Gw {
    if len == 0 {
        Gw::START
    } else {
        Gw::Skip { remaining: len }
    }
}

/// A complete gwsocket payload as a message: destination 0 is everyone; text that is not valid
/// UTF-8 goes out as binary.
fn gwsocket_message(to: u32, binary: bool, payload: Vec<u8>) -> ChildMessage {
    let mut message = if binary {
        ChildMessage::new(payload, true)
    } else {
        ChildMessage::text(payload)
    };
    message.to = (to != 0).then_some(to);
    message
}

/// Where to cut a fragment off the front of `held` (more than `max` bytes): at `max`, or up to
/// three bytes earlier when `max` falls inside a UTF-8 character of otherwise valid text, so that
/// both sides of the cut stay text.
fn fragment_cut(held: &[u8], max: usize) -> usize {
    let front = held.get(..max).unwrap_or(held);
    match std::str::from_utf8(front) {
        // `error_len() == None`: valid up to a character that is only cut short by the end.
        Err(err) if err.error_len().is_none() && err.valid_up_to() > 0 => err.valid_up_to(),
        _ => max,
    }
}

/// The routing headers of a JSON line.
#[derive(Debug, Default)]
struct Header {
    to: Option<u32>,
    meta: bool,
    cache: bool,
}

impl Header {
    /// Reads `_to`, `_meta` and `_cache`; a header of the wrong type gives its name.
    fn read(object: &Map<String, Value>) -> Result<Self, &'static str> {
        let to = match object.get("_to") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or("_to")?,
            ),
        };
        Ok(Self {
            to,
            meta: flag(object, "_meta")?,
            cache: flag(object, "_cache")?,
        })
    }
}

/// A boolean header: missing or `null` is `false`.
fn flag(object: &Map<String, Value>, key: &'static str) -> Result<bool, &'static str> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(set)) => Ok(*set),
        Some(_) => Err(key),
    }
}

// ===== clients → child =====

/// How a client's message is written to the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientFraming {
    /// The payload and a `\n` (a payload holding newlines becomes several input lines).
    #[default]
    Lines,
    /// The payload as is (binary mode).
    Raw,
    /// The payload must be a JSON object; `"_from"` is set to the sender's id and the object is
    /// written as one compact line.
    Json,
    /// A gwsocket frame: 12-byte big-endian header (sender id, type 1 text or 2 binary,
    /// length), then the payload.
    Gwsocket,
}

/// A client message that cannot be written in the child's framing. The caller drops the message
/// (and counts it); the client stays connected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InputError {
    /// JSON framing, but the payload is not JSON.
    #[error("message is not JSON: {0}")]
    NotJson(String),
    /// JSON framing, but the payload is JSON other than an object.
    #[error("message is JSON but not an object")]
    NotObject,
    /// gwsocket framing, but the payload does not fit a `u32` length.
    #[error("message of {0} bytes is too long for a gwsocket frame")]
    TooLong(usize),
}

/// Appends the input the child reads for a message from connection `from`: `payload`, sent as a
/// binary message when `binary` is set, written in `framing`. On error `out` is left as it was.
///
/// JSON framing parses the payload whatever its WebSocket type and writes it back compactly,
/// with `"_from"` first (replacing any `"_from"` the client sent) and the other keys in the
/// client's order; strings holding newlines stay escaped, so the result is always one line.
///
/// ```
/// use sockyard::room::framing::{encode_input, ClientFraming};
///
/// let mut out = Vec::new();
/// encode_input(ClientFraming::Json, 7, br#"{"msg": "hi", "_from": 1}"#, false, &mut out).unwrap();
/// assert_eq!(out, b"{\"_from\":7,\"msg\":\"hi\"}\n");
/// ```
pub fn encode_input(
    framing: ClientFraming,
    from: u32,
    payload: &[u8],
    binary: bool,
    out: &mut Vec<u8>,
) -> Result<(), InputError> {
    match framing {
        ClientFraming::Lines => {
            out.extend_from_slice(payload);
            out.push(b'\n');
        }
        ClientFraming::Raw => out.extend_from_slice(payload),
        ClientFraming::Json => {
            let value = serde_json::from_slice::<Value>(payload)
                .map_err(|err| InputError::NotJson(err.to_string()))?;
            let Value::Object(mut object) = value else {
                return Err(InputError::NotObject);
            };
            object.shift_remove("_from");
            object.shift_insert(0, "_from".to_owned(), Value::from(from));
            let start = out.len();
            if let Err(err) = serde_json::to_writer(&mut *out, &object) {
                out.truncate(start);
                return Err(InputError::NotJson(err.to_string()));
            }
            out.push(b'\n');
        }
        ClientFraming::Gwsocket => {
            let len =
                u32::try_from(payload.len()).map_err(|_| InputError::TooLong(payload.len()))?;
            write_gwsocket_header(from, binary, len, out);
            out.extend_from_slice(payload);
        }
    }
    Ok(())
}

/// A gwsocket frame (the same layout in both directions): the big-endian `u32`s `id` (the
/// destination from the child, 0 meaning everyone; the sender towards the child), type (1 text,
/// 2 binary) and payload length, then the payload. A payload over `u32::MAX` bytes is cut to
/// that length so the frame stays well formed.
///
/// ```
/// use sockyard::room::framing::gwsocket_frame;
///
/// assert_eq!(gwsocket_frame(2, false, b"hi"), b"\0\0\0\x02\0\0\0\x01\0\0\0\x02hi");
/// ```
pub fn gwsocket_frame(id: u32, binary: bool, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let payload = payload.get(..len as usize).unwrap_or(payload);
    let mut frame = Vec::with_capacity(GWSOCKET_HEADER_LEN + payload.len());
    write_gwsocket_header(id, binary, len, &mut frame);
    frame.extend_from_slice(payload);
    frame
}

fn write_gwsocket_header(id: u32, binary: bool, len: u32, out: &mut Vec<u8>) {
    let kind = if binary {
        GWSOCKET_BINARY
    } else {
        GWSOCKET_TEXT
    };
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
}

// ===== command-line values =====

/// A `--delimiters` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DelimiterError {
    /// The value is empty.
    #[error("--delimiters needs at least one character")]
    Empty,
    /// A character is not ASCII: delimiters are single bytes, and splitting at one byte of a
    /// multi-byte character would cut characters apart.
    #[error("--delimiters: `{0}` is not an ASCII character; delimiters are single bytes")]
    NotAscii(char),
    /// A backslash followed by something other than `n`, `t`, `r`, `0` or `\`.
    #[error("--delimiters: unknown escape `\\{0}` (known: \\n \\t \\r \\0 \\\\)")]
    UnknownEscape(char),
    /// The value ends with a lone backslash.
    #[error("--delimiters: the value ends with a lone `\\` (write `\\\\` for a backslash)")]
    TrailingBackslash,
}

/// Parses a `--delimiters=<CHARS>` value into the delimiter bytes: each ASCII character stands
/// for itself, and since shells make some bytes awkward to type, `\n`, `\t`, `\r`, `\0` and `\\`
/// are read as newline, tab, carriage return, NUL and backslash. Repeats are dropped.
///
/// ```
/// use sockyard::room::framing::parse_delimiters;
///
/// assert_eq!(parse_delimiters(r",;\n").unwrap(), b",;\n");
/// ```
pub fn parse_delimiters(value: &str) -> Result<Vec<u8>, DelimiterError> {
    let mut bytes = Vec::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        let c = if c == '\\' {
            match chars.next() {
                Some('n') => '\n',
                Some('t') => '\t',
                Some('r') => '\r',
                Some('0') => '\0',
                Some('\\') => '\\',
                Some(other) => return Err(DelimiterError::UnknownEscape(other)),
                None => return Err(DelimiterError::TrailingBackslash),
            }
        } else {
            c
        };
        let byte = u8::try_from(c)
            .ok()
            .filter(u8::is_ascii)
            .ok_or(DelimiterError::NotAscii(c))?;
        if !bytes.contains(&byte) {
            bytes.push(byte);
        }
    }
    if bytes.is_empty() {
        return Err(DelimiterError::Empty);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn decode_with(
        mode: OutputMode,
        framing: ServerFraming,
        max: usize,
        chunks: &[&[u8]],
    ) -> (Vec<ChildMessage>, Vec<FramingError>) {
        let mut decoder = OutputDecoder::new(mode, framing, max);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out);
        }
        decoder.finish(&mut out);
        assert!(decoder.is_idle());
        (out, decoder.take_errors())
    }

    fn decode(mode: OutputMode, input: &[u8]) -> Vec<ChildMessage> {
        decode_with(mode, ServerFraming::None, MAX, &[input]).0
    }

    fn payloads(messages: &[ChildMessage]) -> Vec<&[u8]> {
        messages.iter().map(|m| &m.payload[..]).collect()
    }

    /// Decoding `input` in one chunk, byte by byte, and split in two at every position gives
    /// the same messages and errors.
    fn same_at_every_split(
        mode: OutputMode,
        framing: ServerFraming,
        max: usize,
        input: &[u8],
    ) -> (Vec<ChildMessage>, Vec<FramingError>) {
        let whole = decode_with(mode.clone(), framing, max, &[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            decode_with(mode.clone(), framing, max, &bytes),
            whole,
            "byte by byte"
        );
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(
                decode_with(mode.clone(), framing, max, &[a, b]),
                whole,
                "split at {at}"
            );
        }
        whole
    }

    fn text(payload: &[u8]) -> ChildMessage {
        ChildMessage::new(payload.to_vec(), false)
    }

    fn binary(payload: &[u8]) -> ChildMessage {
        ChildMessage::new(payload.to_vec(), true)
    }

    fn to(id: u32, message: ChildMessage) -> ChildMessage {
        ChildMessage {
            to: Some(id),
            ..message
        }
    }

    // ----- lines -----

    #[test]
    fn lines_split_at_newline() {
        assert_eq!(
            decode(OutputMode::Lines, b"one\ntwo\n"),
            [text(b"one"), text(b"two")]
        );
        assert_eq!(decode(OutputMode::Lines, b""), []);
    }

    #[test]
    fn empty_lines_are_messages() {
        assert_eq!(
            decode(OutputMode::Lines, b"\n\nabc\n\n"),
            [text(b""), text(b""), text(b"abc"), text(b"")]
        );
    }

    #[test]
    fn last_line_without_newline_is_a_message() {
        assert_eq!(decode(OutputMode::Lines, b"a\nb"), [text(b"a"), text(b"b")]);
        // A final newline does not make an extra empty message.
        assert_eq!(decode(OutputMode::Lines, b"a\n"), [text(b"a")]);
    }

    #[test]
    fn lines_strip_one_carriage_return() {
        assert_eq!(
            decode(OutputMode::Lines, b"x\r\ny"),
            [text(b"x"), text(b"y")]
        );
        assert_eq!(
            decode(OutputMode::Lines, b"a\r\r\n\r\nb\rc\n"),
            [text(b"a\r"), text(b""), text(b"b\rc")]
        );
        // Only a `\r` followed by `\n` ends a line.
        assert_eq!(decode(OutputMode::Lines, b"end\r"), [text(b"end\r")]);
    }

    #[test]
    fn lines_at_every_chunk_boundary() {
        let (out, errors) = same_at_every_split(
            OutputMode::Lines,
            ServerFraming::None,
            MAX,
            b"hello\r\nw\xc3\xb6rld\n\n\r\nlast\r",
        );
        assert_eq!(
            out,
            [
                text(b"hello"),
                text("wörld".as_bytes()),
                text(b""),
                text(b""),
                text(b"last\r")
            ]
        );
        assert_eq!(errors, []);
    }

    #[test]
    fn invalid_utf8_goes_out_as_binary() {
        assert_eq!(
            decode(OutputMode::Lines, b"ok\n\xff\xfe\n\xc3\n\xc3\xa9\n"),
            [
                text(b"ok"),
                binary(b"\xff\xfe"),
                binary(b"\xc3"),
                text("é".as_bytes())
            ]
        );
    }

    // ----- delimiters -----

    #[test]
    fn delimiters_split_at_any_given_byte() {
        // scalesocket.md §3: `--delimiters=,;` on `a,b\nc\0d;e\na`.
        assert_eq!(
            decode(OutputMode::Delimiters(b",;".to_vec()), b"a,b\nc\0d;e\na"),
            [text(b"a"), text(b"b\nc\0d"), text(b"e\na")]
        );
        assert_eq!(
            decode(OutputMode::Delimiters(b",".to_vec()), b",,x,"),
            [text(b""), text(b""), text(b"x")]
        );
    }

    #[test]
    fn delimiters_leave_carriage_return() {
        assert_eq!(
            decode(OutputMode::Delimiters(b"\n".to_vec()), b"x\r\ny\r"),
            [text(b"x\r"), text(b"y\r")]
        );
    }

    #[test]
    fn null_delimiter() {
        let null = OutputMode::from_delimiter_flags(None, true).unwrap();
        let (out, _) = same_at_every_split(null, ServerFraming::None, MAX, b"a,b\nc\0d;e\n\0\0");
        assert_eq!(out, [text(b"a,b\nc"), text(b"d;e\n"), text(b"")]);
    }

    #[test]
    fn no_delimiters_means_size_and_end_only() {
        let (out, _) = decode_with(
            OutputMode::Delimiters(Vec::new()),
            ServerFraming::None,
            4,
            &[b"ab\ncd\0ef"],
        );
        assert_eq!(out, [text(b"ab\nc"), text(b"d\0ef")]);
    }

    // ----- long pieces -----

    #[test]
    fn long_lines_come_in_pieces_without_loss() {
        let (out, errors) = same_at_every_split(
            OutputMode::Lines,
            ServerFraming::None,
            4,
            b"abcdefghij\nabcd\nabcdefgh\nxy\n",
        );
        assert_eq!(
            payloads(&out),
            [
                &b"abcd"[..],
                b"efgh",
                b"ij",
                b"abcd",
                b"abcd",
                b"efgh",
                b"xy"
            ]
        );
        assert_eq!(errors, []);
    }

    #[test]
    fn carriage_return_at_the_size_limit() {
        // The `\r` of `\r\n` is never delivered, even when it falls just past the limit.
        let (out, _) = same_at_every_split(
            OutputMode::Lines,
            ServerFraming::None,
            4,
            b"abcd\r\nabc\r\r\n",
        );
        assert_eq!(payloads(&out), [&b"abcd"[..], b"abc\r"]);
        let (out, _) = same_at_every_split(OutputMode::Lines, ServerFraming::None, 4, b"abcde\r");
        assert_eq!(payloads(&out), [&b"abcd"[..], b"e\r"]);
    }

    #[test]
    fn long_pieces_are_cut_between_characters() {
        // "aéb": the cut at 2 would split "é" (c3 a9), so the first piece is "a".
        let (out, _) = same_at_every_split(
            OutputMode::Lines,
            ServerFraming::None,
            2,
            "aéb\n".as_bytes(),
        );
        assert_eq!(out, [text(b"a"), text("é".as_bytes()), text(b"b")]);
        // Four-byte characters fit a limit of 4.
        let (out, _) = same_at_every_split(
            OutputMode::Lines,
            ServerFraming::None,
            4,
            "x🦀🦀".as_bytes(),
        );
        assert_eq!(
            out,
            [text(b"x"), text("🦀".as_bytes()), text("🦀".as_bytes())]
        );
        // A character longer than the limit cannot be kept whole: bytes, as binary.
        let (out, _) =
            same_at_every_split(OutputMode::Lines, ServerFraming::None, 1, "é".as_bytes());
        assert_eq!(out, [binary(b"\xc3"), binary(b"\xa9")]);
        // Invalid text is cut at the limit.
        let (out, _) = decode_with(
            OutputMode::Lines,
            ServerFraming::None,
            2,
            &[b"\xff\xc3\xa9"],
        );
        assert_eq!(out, [binary(b"\xff\xc3"), binary(b"\xa9")]);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut decoder = OutputDecoder::new(OutputMode::Lines, ServerFraming::None, 16);
        let mut out = Vec::new();
        decoder.feed(&[b'x'; 10_000], &mut out);
        assert!(decoder.buffered_len() <= 16);
        assert_eq!(out.len(), 624);
        assert!(out.iter().all(|m| m.payload.len() == 16));
        decoder.feed(b"\n", &mut out);
        assert_eq!(out.len(), 625);
        assert_eq!(out.iter().map(|m| m.payload.len()).sum::<usize>(), 10_000);
        assert!(decoder.is_idle());
    }

    #[test]
    fn zero_limit_is_one() {
        let (out, _) = decode_with(OutputMode::Lines, ServerFraming::None, 0, &[b"ab\n"]);
        assert_eq!(payloads(&out), [&b"a"[..], b"b"]);
    }

    // ----- binary -----

    #[test]
    fn binary_mode_sends_chunks_as_read() {
        let (out, _) = decode_with(
            OutputMode::Binary,
            ServerFraming::Json,
            MAX,
            &[b"go", b"", b"\x00\x01\x02\xff\n", br#"{"_to":1}"#],
        );
        assert_eq!(
            out,
            [
                binary(b"go"),
                binary(b"\x00\x01\x02\xff\n"),
                binary(br#"{"_to":1}"#)
            ]
        );
    }

    #[test]
    fn binary_chunks_respect_the_limit() {
        let (out, _) = decode_with(OutputMode::Binary, ServerFraming::None, 3, &[b"abcdefg"]);
        assert_eq!(out, [binary(b"abc"), binary(b"def"), binary(b"g")]);
    }

    // ----- JSON headers -----

    fn json(input: &[u8]) -> (Vec<ChildMessage>, Vec<FramingError>) {
        decode_with(OutputMode::Lines, ServerFraming::Json, MAX, &[input])
    }

    #[test]
    fn json_to_routes_and_payload_is_unchanged() {
        let line = br#"{ "_to" : 2 ,"text":"psst", "n": 1.50 }"#;
        let (out, errors) = json(&[&line[..], b"\n"].concat());
        assert_eq!(out, [to(2, text(line))]);
        assert_eq!(errors, []);
        let (out, _) = json(b"{\"_to\":4294967295}\n");
        assert_eq!(out[0].to, Some(u32::MAX));
    }

    #[test]
    fn json_to_missing_or_null_is_everyone() {
        let (out, errors) = json(b"{\"text\":\"hi\"}\n{\"_to\":null,\"text\":\"hi\"}\n");
        assert_eq!(
            out,
            [
                text(br#"{"text":"hi"}"#),
                text(br#"{"_to":null,"text":"hi"}"#)
            ]
        );
        assert_eq!(errors, []);
    }

    #[test]
    fn json_to_of_wrong_type_is_ignored() {
        for line in [
            &br#"{"_to":"2","_cache":true}"#[..],
            br#"{"_to":-1}"#,
            br#"{"_to":2.5}"#,
            br#"{"_to":2.0}"#,
            br#"{"_to":4294967296}"#,
            br#"{"_to":[2]}"#,
            br#"{"_to":true,"_meta":true}"#,
        ] {
            let (out, errors) = json(line);
            assert_eq!(out, [text(line)], "{}", String::from_utf8_lossy(line));
            assert_eq!(errors, [FramingError::IgnoredHeader { field: "_to" }]);
        }
        let (out, errors) = json(br#"{"_to":2,"_cache":"yes"}"#);
        assert_eq!(out, [text(br#"{"_to":2,"_cache":"yes"}"#)]);
        assert_eq!(errors, [FramingError::IgnoredHeader { field: "_cache" }]);
        let (out, errors) = json(br#"{"_meta":1}"#);
        assert_eq!(out, [text(br#"{"_meta":1}"#)]);
        assert_eq!(errors, [FramingError::IgnoredHeader { field: "_meta" }]);
    }

    #[test]
    fn json_meta_is_stored_without_its_flag() {
        let (out, errors) =
            json(b"{\"title\":\"lobby\",\"_meta\":true,\"players\":2,\"_from\":2}\r\n");
        assert_eq!(
            out,
            [ChildMessage {
                meta: true,
                ..text(br#"{"title":"lobby","players":2,"_from":2}"#)
            }]
        );
        assert_eq!(errors, []);
        // `_meta: false` (or null) is an ordinary message, sent unchanged.
        let (out, _) = json(br#"{"_meta":false,"a":1}"#);
        assert_eq!(out, [text(br#"{"_meta":false,"a":1}"#)]);
        let (out, _) = json(br#"{"_meta":null}"#);
        assert_eq!(out, [text(br#"{"_meta":null}"#)]);
    }

    #[test]
    fn json_cache_flag() {
        let (out, _) = json(b"{\"_cache\":true,\"a\":1}\n{\"_cache\":false}\n");
        assert_eq!(
            out,
            [
                ChildMessage {
                    cache: true,
                    ..text(br#"{"_cache":true,"a":1}"#)
                },
                text(br#"{"_cache":false}"#)
            ]
        );
        let (out, _) = json(br#"{"_to":3,"_cache":true}"#);
        assert_eq!((out[0].to, out[0].cache), (Some(3), true));
    }

    #[test]
    fn non_objects_go_to_everyone_as_they_are() {
        let input = b"hello\n[1,2]\n\"_to\"\n{\"_to\":2\n{\"_to\":2} x\n\n\xff{\n   \n42\n";
        let (out, errors) = json(input);
        assert_eq!(
            out,
            [
                text(b"hello"),
                text(b"[1,2]"),
                text(br#""_to""#),
                text(br#"{"_to":2"#),
                text(br#"{"_to":2} x"#),
                text(b""),
                binary(b"\xff{"),
                text(b"   "),
                text(b"42"),
            ]
        );
        assert_eq!(errors, []);
    }

    #[test]
    fn json_with_leading_space_and_delimiters() {
        let (out, _) = decode_with(
            OutputMode::Delimiters(vec![0]),
            ServerFraming::Json,
            MAX,
            &[b" \t{\"_to\":7}\0{\"_to\":8}"],
        );
        assert_eq!(
            out,
            [to(7, text(b" \t{\"_to\":7}")), to(8, text(b"{\"_to\":8}"))]
        );
    }

    #[test]
    fn json_too_deep_is_plain_text() {
        let deep = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200));
        let (out, errors) = json(deep.as_bytes());
        assert_eq!(out, [text(deep.as_bytes())]);
        assert_eq!(errors, []);
    }

    #[test]
    fn long_json_objects_are_dropped_not_broadcast() {
        // A private message over the limit must not reach everyone in fragments.
        let (out, errors) = same_at_every_split(
            OutputMode::Lines,
            ServerFraming::Json,
            9,
            b"{\"_to\":2,\"a\":1}\n{\"_to\":2}\n  {\"_to\":3,\"b\":2}\r\n          \nend",
        );
        assert_eq!(out, [to(2, text(br#"{"_to":2}"#)), text(b"end")]);
        assert_eq!(errors, vec![FramingError::JsonTooLong { max: 9 }; 3]);
        // Over-long pieces that cannot be objects still arrive, in fragments, unrouted.
        let (out, errors) = same_at_every_split(
            OutputMode::Lines,
            ServerFraming::Json,
            9,
            b"[{\"_to\":2},1]\nplain text line\n{\"_to\":2}\n",
        );
        assert_eq!(
            out,
            [
                text(br#"[{"_to":2"#),
                text(b"},1]"),
                text(b"plain tex"),
                text(b"t line"),
                to(2, text(br#"{"_to":2}"#))
            ]
        );
        assert_eq!(errors, []);
        // The dropped piece ends at end of output too.
        let (out, errors) =
            decode_with(OutputMode::Lines, ServerFraming::Json, 4, &[b"{\"_to\":1}"]);
        assert_eq!((out, errors.len()), (vec![], 1));
    }

    // ----- gwsocket -----

    fn gw(input: &[u8], max: usize) -> (Vec<ChildMessage>, Vec<FramingError>) {
        same_at_every_split(OutputMode::Gwsocket, ServerFraming::None, max, input)
    }

    #[test]
    fn gwsocket_frames_literal() {
        let input = b"\0\0\0\0\0\0\0\x01\0\0\0\x03all\
                      \0\0\0\x02\0\0\0\x01\0\0\0\x03two\
                      \0\0\0\x05\0\0\0\x02\0\0\0\x02\x00\xff";
        let (out, errors) = gw(input, MAX);
        assert_eq!(
            out,
            [
                text(b"all"),
                to(2, text(b"two")),
                to(5, binary(b"\x00\xff"))
            ]
        );
        assert_eq!(errors, []);
    }

    #[test]
    fn gwsocket_round_trips_its_own_frames() {
        let input = [
            gwsocket_frame(0, false, "héllo".as_bytes()),
            gwsocket_frame(9, true, b"\x01\x02"),
            gwsocket_frame(u32::MAX, false, b""),
        ]
        .concat();
        let (out, _) = gw(&input, MAX);
        assert_eq!(
            out,
            [
                text("héllo".as_bytes()),
                to(9, binary(b"\x01\x02")),
                to(u32::MAX, text(b""))
            ]
        );
    }

    #[test]
    fn gwsocket_newlines_are_ordinary_bytes() {
        // Destination 10, length 10, a payload of newlines: ScaleSocket cut this at every 0x0A.
        let mut input = b"\0\0\0\x0a\0\0\0\x01\0\0\0\x0a".to_vec();
        input.extend_from_slice(b"\n\n\n\n\n\n\n\n\n\n");
        input.extend_from_slice(b"\0\0\0\0\0\0\0\x02\0\0\0\x01\n");
        let (out, errors) = gw(&input, MAX);
        assert_eq!(out, [to(10, text(&[b'\n'; 10])), binary(b"\n")]);
        assert_eq!(errors, []);
    }

    #[test]
    fn gwsocket_ignores_json_framing() {
        let input = gwsocket_frame(0, false, br#"{"_to":3,"_meta":true}"#);
        let (out, _) = decode_with(OutputMode::Gwsocket, ServerFraming::Json, MAX, &[&input]);
        assert_eq!(out, [text(br#"{"_to":3,"_meta":true}"#)]);
    }

    #[test]
    fn gwsocket_invalid_utf8_text_is_binary() {
        let (out, _) = gw(b"\0\0\0\0\0\0\0\x01\0\0\0\x02\xc3\x28", MAX);
        assert_eq!(out, [binary(b"\xc3\x28")]);
    }

    #[test]
    fn gwsocket_unknown_type_is_skipped_and_reported() {
        let input = b"\0\0\0\x04\0\0\0\x03\0\0\0\x05\x01\x02\x03\x04\x05\
                      \0\0\0\0\0\0\0\x00\0\0\0\x00\
                      \0\0\0\0\0\0\0\x01\0\0\0\x02ok";
        let (out, errors) = gw(input, MAX);
        assert_eq!(out, [text(b"ok")]);
        assert_eq!(
            errors,
            [
                FramingError::UnknownType {
                    to: 4,
                    kind: 3,
                    len: 5
                },
                FramingError::UnknownType {
                    to: 0,
                    kind: 0,
                    len: 0
                }
            ]
        );
    }

    #[test]
    fn scalesocket_little_endian_frame_is_reported_not_misread() {
        // What ScaleSocket's scripts write: destination 2, text, 3 bytes, little-endian.
        let (out, errors) = gw(b"\x02\0\0\0\x01\0\0\0\x03\0\0\0two\n", MAX);
        assert_eq!(out, []);
        assert_eq!(
            errors,
            [FramingError::UnknownType {
                to: 0x0200_0000,
                kind: 0x0100_0000,
                len: 0x0300_0000
            }]
        );
    }

    #[test]
    fn gwsocket_oversized_frame_is_skipped_unbuffered() {
        let mut input = b"\0\0\0\x01\0\0\0\x01\0\0\0\x0a0123456789".to_vec();
        input.extend_from_slice(&gwsocket_frame(0, false, b"fits"));
        let (out, errors) = gw(&input, 4);
        assert_eq!(out, [text(b"fits")]);
        assert_eq!(
            errors,
            [FramingError::TooLong {
                to: 1,
                len: 10,
                max: 4
            }]
        );
        // The skipped payload is never held.
        let mut decoder = OutputDecoder::new(OutputMode::Gwsocket, ServerFraming::None, 4);
        let mut out = Vec::new();
        for byte in &input[..21] {
            decoder.feed(&[*byte], &mut out);
            assert!(decoder.buffered_len() <= GWSOCKET_HEADER_LEN);
        }
        assert_eq!(decoder.buffered_len(), 0);
        assert!(!decoder.is_idle());
    }

    #[test]
    fn gwsocket_huge_declared_length_allocates_nothing() {
        let mut decoder = OutputDecoder::new(OutputMode::Gwsocket, ServerFraming::None, MAX);
        let mut out = Vec::new();
        decoder.feed(b"\0\0\0\0\0\0\0\x02\xff\xff\xff\xff", &mut out);
        decoder.feed(&[0; 4096], &mut out);
        assert_eq!(decoder.buffered_len(), 0);
        assert_eq!(
            decoder.take_errors(),
            [FramingError::TooLong {
                to: 0,
                len: u32::MAX,
                max: MAX
            }]
        );
        // A frame within the limit grows with its bytes, not with its declared length.
        let mut decoder = OutputDecoder::new(OutputMode::Gwsocket, ServerFraming::None, MAX);
        decoder.feed(b"\0\0\0\0\0\0\0\x02\0\x10\0\0abc", &mut out);
        assert_eq!(decoder.buffered_len(), 3);
        match &decoder.gw {
            Gw::Payload { payload, .. } => assert!(payload.capacity() < 4096),
            other => panic!("unexpected state {other:?}"),
        }
    }

    #[test]
    fn gwsocket_truncated_frames_are_reported_at_finish() {
        let frame = gwsocket_frame(3, false, b"hello");
        for cut in 1..frame.len() {
            let (out, errors) = decode_with(
                OutputMode::Gwsocket,
                ServerFraming::None,
                MAX,
                &[&frame, &frame[..cut]],
            );
            assert_eq!(out, [to(3, text(b"hello"))], "cut at {cut}");
            assert_eq!(
                errors,
                [FramingError::Truncated {
                    received: cut,
                    expected: if cut < GWSOCKET_HEADER_LEN { 12 } else { 17 }
                }],
                "cut at {cut}"
            );
        }
        // A frame being skipped is reported once, not again at the end.
        let (_, errors) = decode_with(
            OutputMode::Gwsocket,
            ServerFraming::None,
            MAX,
            &[b"\0\0\0\0\0\0\0\x07\0\0\0\x09abc"],
        );
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn decoder_is_reusable_after_finish() {
        let mut decoder = OutputDecoder::new(OutputMode::Gwsocket, ServerFraming::None, MAX);
        let mut out = Vec::new();
        decoder.feed(b"\0\0\0\0\0", &mut out);
        decoder.finish(&mut out);
        decoder.feed(&gwsocket_frame(0, false, b"again"), &mut out);
        assert_eq!(out, [text(b"again")]);
        assert_eq!(decoder.take_errors().len(), 1);
        assert_eq!(decoder.take_errors(), []);
        assert_eq!(decoder.errors_total(), 1);
    }

    #[test]
    fn pending_errors_are_capped_but_counted() {
        let frame = b"\0\0\0\0\0\0\0\x09\0\0\0\0";
        let mut decoder = OutputDecoder::new(OutputMode::Gwsocket, ServerFraming::None, MAX);
        let mut out = Vec::new();
        for _ in 0..100 {
            decoder.feed(frame, &mut out);
        }
        assert_eq!(decoder.take_errors().len(), MAX_PENDING_ERRORS);
        assert_eq!(decoder.errors_total(), 100);
        decoder.feed(frame, &mut out);
        assert_eq!(decoder.take_errors().len(), 1);
    }

    #[test]
    fn only_ignored_headers_lose_nothing() {
        assert!(!FramingError::IgnoredHeader { field: "_to" }.dropped());
        assert!(FramingError::JsonTooLong { max: 1 }.dropped());
        assert!(FramingError::Truncated {
            received: 1,
            expected: 12
        }
        .dropped());
    }

    #[test]
    fn framing_errors_read_well() {
        assert_eq!(
            FramingError::TooLong {
                to: 1,
                len: 10,
                max: 4
            }
            .to_string(),
            "gwsocket frame (destination 1) declares 10 payload bytes, over the 4-byte message limit; it was skipped"
        );
    }

    // ----- any input -----

    /// A small deterministic generator (no dependency needed for a few thousand cases).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as usize) % n.max(1)
        }
    }

    #[test]
    fn arbitrary_output_in_arbitrary_chunks() {
        const ALPHABET: &[u8] = b"\n\r{}\":_tocahe1,\x00\x01\x02\x0a\xc3\xa9\xff";
        let modes = [
            OutputMode::Lines,
            OutputMode::Delimiters(b",\0".to_vec()),
            OutputMode::Binary,
            OutputMode::Gwsocket,
        ];
        let mut rng = Lcg(7);
        for mode in &modes {
            for framing in [ServerFraming::None, ServerFraming::Json] {
                for max in [1, 2, 3, 5, 16, MAX] {
                    for _ in 0..150 {
                        let len = rng.below(80);
                        let input: Vec<u8> = (0..len)
                            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                            .collect();
                        let mut chunks = Vec::new();
                        let mut rest = &input[..];
                        while !rest.is_empty() {
                            let (chunk, later) = rest.split_at(1 + rng.below(rest.len()));
                            chunks.push(chunk);
                            rest = later;
                        }
                        let whole = decode_with(mode.clone(), framing, max, &[&input]);
                        let chunked = decode_with(mode.clone(), framing, max, &chunks);
                        // Binary messages follow the chunks by design; the rest must not.
                        if *mode != OutputMode::Binary {
                            assert_eq!(chunked, whole, "{mode:?} {framing:?} {max} {input:?}");
                        }
                        for message in &whole.0 {
                            assert!(message.payload.len() <= max);
                            assert_eq!(
                                message.binary,
                                matches!(mode, OutputMode::Binary)
                                    || std::str::from_utf8(&message.payload).is_err()
                                    || (message.binary && matches!(mode, OutputMode::Gwsocket))
                            );
                        }
                        if framing == ServerFraming::None
                            && matches!(mode, OutputMode::Delimiters(_) | OutputMode::Binary)
                        {
                            // Lossless: every byte but the delimiters is delivered.
                            let delimiters = match mode {
                                OutputMode::Delimiters(set) => {
                                    input.iter().filter(|b| set.contains(b)).count()
                                }
                                _ => 0,
                            };
                            let delivered: usize = whole.0.iter().map(|m| m.payload.len()).sum();
                            assert_eq!(delivered + delimiters, input.len(), "{input:?}");
                        }
                    }
                }
            }
        }
    }

    // ----- client input -----

    fn input(framing: ClientFraming, from: u32, payload: &[u8], binary: bool) -> Vec<u8> {
        let mut out = b"prior".to_vec();
        encode_input(framing, from, payload, binary, &mut out).unwrap();
        out.split_off(5)
    }

    #[test]
    fn input_lines_and_raw() {
        assert_eq!(input(ClientFraming::Lines, 1, b"hi", false), b"hi\n");
        assert_eq!(input(ClientFraming::Lines, 1, b"", false), b"\n");
        assert_eq!(
            input(ClientFraming::Lines, 1, b"a\nb\n", false),
            b"a\nb\n\n"
        );
        assert_eq!(
            input(ClientFraming::Lines, 1, b"\x00\xff", true),
            b"\x00\xff\n"
        );
        assert_eq!(
            input(ClientFraming::Raw, 1, b"\x00\xff\n", true),
            b"\x00\xff\n"
        );
        assert_eq!(input(ClientFraming::Raw, 1, b"", false), b"");
    }

    #[test]
    fn input_json_sets_from() {
        assert_eq!(
            input(ClientFraming::Json, 1, br#"{"msg":"hi all"}"#, false),
            b"{\"_from\":1,\"msg\":\"hi all\"}\n"
        );
        // A client's own `_from` is replaced; key order is kept; output is compact.
        assert_eq!(
            input(
                ClientFraming::Json,
                7,
                br#" { "z" : 1, "_from" : 99, "a" : [ 1 , 2 ] } "#,
                true
            ),
            b"{\"_from\":7,\"z\":1,\"a\":[1,2]}\n"
        );
        assert_eq!(
            input(ClientFraming::Json, 0, b"{}", false),
            b"{\"_from\":0}\n"
        );
        // Newlines inside strings stay escaped: one message is one line.
        assert_eq!(
            input(ClientFraming::Json, 2, b"{\"m\":\"a\\nb\"}", false),
            b"{\"_from\":2,\"m\":\"a\\nb\"}\n"
        );
    }

    #[test]
    fn input_json_rejects_non_objects_without_writing() {
        for payload in [&b"[1,2]"[..], b"1", b"\"s\"", b"null"] {
            let mut out = b"prior".to_vec();
            assert_eq!(
                encode_input(ClientFraming::Json, 1, payload, false, &mut out),
                Err(InputError::NotObject)
            );
            assert_eq!(out, b"prior");
        }
        for payload in [&b""[..], b"hello", b"{\"a\":", b"{} {}", b"\xff"] {
            let mut out = b"prior".to_vec();
            let result = encode_input(ClientFraming::Json, 1, payload, false, &mut out);
            assert!(matches!(result, Err(InputError::NotJson(_))), "{payload:?}");
            assert_eq!(out, b"prior");
        }
    }

    #[test]
    fn input_gwsocket() {
        assert_eq!(
            input(ClientFraming::Gwsocket, 3, b"hi", false),
            b"\0\0\0\x03\0\0\0\x01\0\0\0\x02hi"
        );
        assert_eq!(
            input(ClientFraming::Gwsocket, 0x0102_0304, b"\n", true),
            b"\x01\x02\x03\x04\0\0\0\x02\0\0\0\x01\n"
        );
        assert_eq!(
            input(ClientFraming::Gwsocket, 1, b"", false),
            b"\0\0\0\x01\0\0\0\x01\0\0\0\0"
        );
    }

    #[test]
    fn gwsocket_frame_literal() {
        assert_eq!(
            gwsocket_frame(0, true, b"\xff"),
            b"\0\0\0\0\0\0\0\x02\0\0\0\x01\xff"
        );
        assert_eq!(
            gwsocket_frame(258, false, &[b'a'; 256]),
            [&b"\0\0\x01\x02\0\0\0\x01\0\0\x01\0"[..], &[b'a'; 256]].concat()
        );
    }

    // ----- command-line values -----

    #[test]
    fn parses_delimiters() {
        assert_eq!(parse_delimiters(",;"), Ok(b",;".to_vec()));
        assert_eq!(parse_delimiters(r"\n\t\r\0\\"), Ok(b"\n\t\r\0\\".to_vec()));
        assert_eq!(parse_delimiters("\n"), Ok(b"\n".to_vec()));
        assert_eq!(parse_delimiters(r",,\n\n,"), Ok(b",\n".to_vec()));
        assert_eq!(parse_delimiters(""), Err(DelimiterError::Empty));
        assert_eq!(parse_delimiters("é"), Err(DelimiterError::NotAscii('é')));
        assert_eq!(
            parse_delimiters(r"\x"),
            Err(DelimiterError::UnknownEscape('x'))
        );
        assert_eq!(
            parse_delimiters(r",\"),
            Err(DelimiterError::TrailingBackslash)
        );
    }

    #[test]
    fn delimiter_flags() {
        assert_eq!(
            OutputMode::from_delimiter_flags(None, false),
            Ok(OutputMode::Lines)
        );
        assert_eq!(
            OutputMode::from_delimiter_flags(None, true),
            Ok(OutputMode::Delimiters(vec![0]))
        );
        assert_eq!(
            OutputMode::from_delimiter_flags(Some(",;"), true),
            Ok(OutputMode::Delimiters(b",;\0".to_vec()))
        );
        assert_eq!(
            OutputMode::from_delimiter_flags(Some(r"\0,"), true),
            Ok(OutputMode::Delimiters(b"\0,".to_vec()))
        );
        assert_eq!(
            OutputMode::from_delimiter_flags(Some(r"\n"), false),
            Ok(OutputMode::Delimiters(b"\n".to_vec()))
        );
        assert_eq!(
            OutputMode::from_delimiter_flags(Some(""), true),
            Err(DelimiterError::Empty)
        );
    }
}
