//! Decoding the child's output: cutting it into lines, delimited pieces or binary chunks, and
//! reading the JSON routing headers of the pieces that are objects (gwsocket frames are read by
//! [`FrameReader`]). The `--delimiters` and `--null` values are parsed here too.

use std::mem;

use bytes::Bytes;
use serde_json::{Map, Value};
use thiserror::Error;

use super::gwsocket::FrameReader;
use super::{ChildMessage, ErrorLog, FramingError};

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
    /// exactly that many payload bytes; see [`gwsocket_frame`](super::gwsocket_frame).
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
    gw: FrameReader,
    /// Problems not yet taken, and how many there were.
    errors: ErrorLog,
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
            gw: FrameReader::START,
            errors: ErrorLog::default(),
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
            Cutter::Gwsocket => self.gw.feed(bytes, self.max, out, &mut self.errors),
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
        self.gw.finish(&mut self.errors);
    }

    /// The problems found since the last call (at most
    /// [`MAX_PENDING_ERRORS`](super::MAX_PENDING_ERRORS); see
    /// [`Self::errors_total`] for the full count). Call it after each [`Self::feed`] and
    /// [`Self::finish`] to log them.
    pub fn take_errors(&mut self) -> Vec<FramingError> {
        self.errors.take()
    }

    /// How many problems were found since the decoder was made, including any not kept.
    pub fn errors_total(&self) -> u64 {
        self.errors.total
    }

    /// How many bytes of an unfinished message the decoder holds.
    pub fn buffered_len(&self) -> usize {
        self.pending.len() + self.gw.buffered_len()
    }

    /// Whether the decoder is between messages: nothing buffered, no frame half read.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.overflow == Overflow::No && self.gw.is_idle()
    }

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
                    self.errors
                        .report(FramingError::JsonTooLong { max: self.max });
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
                self.errors.report(FramingError::IgnoredHeader { field });
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
    use crate::room::framing::gwsocket_frame;
    use crate::room::framing::test_decode::*;

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
