//! The bytes of a publication: the publisher's `#publish` invoke carrying its send time and
//! sequence number, and how a subscriber finds them again in what a server delivers.

use super::{CHANNEL, PAYLOAD_BYTES};
use crate::frames::push_decimal;

/// The sequence number of the last publication, which tells subscribers to close.
pub(super) const END_SEQ: u64 = 999_999_999_999;

/// What a server sends each subscriber, up to the published data.
const DELIVERY_HEAD: &[u8] = b"{\"event\":\"#publish\",\"data\":{\"channel\":\"bench\",\"data\":\"";
/// What follows the published data in a delivery.
const DELIVERY_TAIL: &[u8] = b"\"}}";

/// The published data: `~T` + 16-digit send time in µs + `~S` + 12-digit sequence number +
/// `~`, padded with `x` to [`PAYLOAD_BYTES`].
const STAMP_BYTES: usize = 33;

/// Appends the published data for `seq` sent at `sent_us`.
pub(super) fn push_payload(out: &mut Vec<u8>, sent_us: u64, seq: u64) {
    let start = out.len();
    out.extend_from_slice(b"~T");
    push_fixed(out, sent_us, 16);
    out.extend_from_slice(b"~S");
    push_fixed(out, seq, 12);
    out.push(b'~');
    out.resize(start + PAYLOAD_BYTES, b'x');
}

/// Appends the last `width` decimal digits of `n`, zero-padded.
fn push_fixed(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for digit in out[start..].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The send time and sequence number of a delivery. The data is found at its usual offset
/// when the frame has the usual length, and searched for otherwise (a server may order the
/// keys differently); `None` if the frame carries no publication of ours.
pub(super) fn parse_delivery(frame: &[u8]) -> Option<(u64, u64)> {
    let usual = DELIVERY_HEAD.len() + PAYLOAD_BYTES + DELIVERY_TAIL.len();
    let start = if frame.len() == usual && frame[DELIVERY_HEAD.len()..].starts_with(b"~T") {
        DELIVERY_HEAD.len()
    } else {
        frame.windows(3).position(|w| w == b"\"~T")? + 1
    };
    let stamp = frame.get(start..start + STAMP_BYTES)?;
    if &stamp[18..20] != b"~S" || stamp[32] != b'~' {
        return None;
    }
    Some((digits(&stamp[2..18])?, digits(&stamp[20..32])?))
}

/// The decimal number `text` spells, if it is all digits.
pub(super) fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Replaces `text` with the `#publish` invoke of publication `seq` sent at `sent_us`.
pub(super) fn publish_text(text: &mut Vec<u8>, sent_us: u64, seq: u64, cid: u64) {
    text.clear();
    text.extend_from_slice(b"{\"event\":\"#publish\",\"data\":{\"channel\":\"");
    text.extend_from_slice(CHANNEL.as_bytes());
    text.extend_from_slice(b"\",\"data\":\"");
    push_payload(text, sent_us, seq);
    text.extend_from_slice(b"\"},\"cid\":");
    push_decimal(text, cid);
    text.push(b'}');
}

/// A delivery of publication `seq` sent at `sent_us`, as a server sends it.
#[cfg(test)]
pub(super) fn delivery(sent_us: u64, seq: u64) -> Vec<u8> {
    let mut frame = DELIVERY_HEAD.to_vec();
    push_payload(&mut frame, sent_us, seq);
    frame.extend_from_slice(DELIVERY_TAIL);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_fixed_size_and_parses_back() {
        let mut payload = Vec::new();
        push_payload(&mut payload, 1_234_567, 42);
        assert_eq!(payload.len(), PAYLOAD_BYTES);
        assert!(payload.starts_with(b"~T0000000001234567~S000000000042~x"));
        assert_eq!(
            parse_delivery(&delivery(1_234_567, 42)),
            Some((1_234_567, 42))
        );
        assert_eq!(parse_delivery(&delivery(7, END_SEQ)), Some((7, END_SEQ)));
    }

    #[test]
    fn publish_invoke_is_valid_json() {
        let mut text = Vec::new();
        publish_text(&mut text, 5, 6, 8);
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(value["event"], "#publish");
        assert_eq!(value["data"]["channel"], CHANNEL);
        assert_eq!(value["cid"], 8);
        let data = value["data"]["data"].as_str().unwrap();
        assert_eq!(data.len(), PAYLOAD_BYTES);
        // What a server sends on is found again.
        let mut delivery = DELIVERY_HEAD.to_vec();
        delivery.extend_from_slice(data.as_bytes());
        delivery.extend_from_slice(DELIVERY_TAIL);
        assert_eq!(parse_delivery(&delivery), Some((5, 6)));
    }

    #[test]
    fn other_key_orders_are_searched() {
        let mut frame = b"{\"data\":{\"data\":\"".to_vec();
        push_payload(&mut frame, 99, 3);
        frame.extend_from_slice(b"\",\"channel\":\"bench\"},\"event\":\"#publish\"}");
        assert_eq!(parse_delivery(&frame), Some((99, 3)));
        assert_eq!(parse_delivery(b"{\"event\":\"other\",\"data\":1}"), None);
        assert_eq!(parse_delivery(b"\"~T12\""), None);
    }

    #[test]
    fn digits_reject_non_digits() {
        assert_eq!(digits(b"0012"), Some(12));
        assert_eq!(digits(b"12a"), None);
    }
}
