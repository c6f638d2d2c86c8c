//! Encoding the room's client messages as the program's input: lines, raw bytes, JSON objects
//! with `"_from"` set to the sender, or gwsocket frames.

use serde_json::Value;
use thiserror::Error;

use super::gwsocket::write_gwsocket_header;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
