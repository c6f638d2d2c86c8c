//! Test helpers for the framing tests: decoding output given in chunks, and checking that every
//! way of cutting the same output into chunks decodes alike.

use super::{ChildMessage, FramingError, OutputDecoder, OutputMode, ServerFraming};

/// The message limit of most tests (1 MiB).
pub(super) const MAX: usize = 1 << 20;

/// Decodes `chunks` in turn and finishes: the messages and the problems found.
pub(super) fn decode_with(
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

/// Decodes `input` in one chunk, without JSON framing, at the [`MAX`] limit.
pub(super) fn decode(mode: OutputMode, input: &[u8]) -> Vec<ChildMessage> {
    decode_with(mode, ServerFraming::None, MAX, &[input]).0
}

/// The payloads of `messages`.
pub(super) fn payloads(messages: &[ChildMessage]) -> Vec<&[u8]> {
    messages.iter().map(|m| &m.payload[..]).collect()
}

/// Decoding `input` in one chunk, byte by byte, and split in two at every position gives
/// the same messages and errors.
pub(super) fn same_at_every_split(
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

/// A text message for everyone.
pub(super) fn text(payload: &[u8]) -> ChildMessage {
    ChildMessage::new(payload.to_vec(), false)
}

/// A binary message for everyone.
pub(super) fn binary(payload: &[u8]) -> ChildMessage {
    ChildMessage::new(payload.to_vec(), true)
}

/// `message`, addressed to connection `id`.
pub(super) fn to(id: u32, message: ChildMessage) -> ChildMessage {
    ChildMessage {
        to: Some(id),
        ..message
    }
}
