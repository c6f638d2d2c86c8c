//! Room history (`--cache`): the last messages a room's program sent to everyone, replayed to
//! each client that joins (pure).
//!
//! Unlike ScaleSocket, messages for one connection (`_to`) and metadata (`_meta`) are never
//! kept, so a later joiner cannot read what was meant for someone else; and any size from 1 to
//! [`MAX_CACHE_SIZE`] is accepted, with or without a type.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;

use super::framing::ChildMessage;

/// The largest `--cache` size.
pub const MAX_CACHE_SIZE: usize = 65_536;

/// A `--cache <[TYPE:]SIZE>` value: which messages to keep and how many.
///
/// ```
/// use sockyard::room::cache::CacheSpec;
///
/// assert_eq!("tagged:8".parse::<CacheSpec>().unwrap(), CacheSpec { tagged: true, size: 8 });
/// assert_eq!("100".parse::<CacheSpec>().unwrap(), CacheSpec { tagged: false, size: 100 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSpec {
    /// `tagged`: keep only messages marked `"_cache": true`; `all` (or no type): keep every
    /// message sent to everyone.
    pub tagged: bool,
    /// How many messages to keep, the newest ones (1 to [`MAX_CACHE_SIZE`] when parsed).
    pub size: usize,
}

/// A `--cache` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CacheSpecError {
    /// The value is empty.
    #[error("--cache needs a size, as in `64`, `all:64` or `tagged:64`")]
    Empty,
    /// The type is neither `all` nor `tagged`.
    #[error("--cache: unknown type `{0}`; use `all` or `tagged`, as in `all:64` or `tagged:64`")]
    UnknownType(String),
    /// A type with no size after it.
    #[error("--cache: `{0}` needs a size too, as in `{0}:64`")]
    MissingSize(String),
    /// The size is not a whole number.
    #[error("--cache: size `{0}` is not a whole number from 1 to 65536")]
    NotANumber(String),
    /// The size is a whole number outside 1 to [`MAX_CACHE_SIZE`].
    #[error("--cache: size {0} is out of range; use 1 to 65536")]
    OutOfRange(String),
}

impl FromStr for CacheSpec {
    type Err = CacheSpecError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.is_empty() {
            return Err(CacheSpecError::Empty);
        }
        let (kind, size) = match value.split_once(':') {
            Some((kind, size)) => (Some(kind), size),
            None if matches!(value, "all" | "tagged") => {
                return Err(CacheSpecError::MissingSize(value.to_owned()))
            }
            None => (None, value),
        };
        let tagged = match kind {
            None | Some("all") => false,
            Some("tagged") => true,
            Some(other) => return Err(CacheSpecError::UnknownType(other.to_owned())),
        };
        if size.is_empty() {
            let kind = kind.unwrap_or_default().to_owned();
            return Err(CacheSpecError::MissingSize(kind));
        }
        if !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CacheSpecError::NotANumber(size.to_owned()));
        }
        let size = size
            .parse::<usize>()
            .ok()
            .filter(|size| (1..=MAX_CACHE_SIZE).contains(size))
            .ok_or_else(|| CacheSpecError::OutOfRange(size.to_owned()))?;
        Ok(Self { tagged, size })
    }
}

impl fmt::Display for CacheSpec {
    /// The `--cache` value this came from, in its full form (`all:8`, `tagged:64`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.tagged { "tagged" } else { "all" };
        write!(f, "{kind}:{}", self.size)
    }
}

/// The last [`CacheSpec::size`] messages of a room that went to everyone, oldest first.
///
/// Memory is allocated as messages arrive, never for the full size up front; payloads are
/// shared with the messages that were sent, not copied.
#[derive(Debug, Clone)]
pub struct HistoryCache {
    spec: CacheSpec,
    messages: VecDeque<ChildMessage>,
}

impl HistoryCache {
    /// An empty history following `spec` (a size of 0 keeps nothing).
    pub fn new(spec: CacheSpec) -> Self {
        Self {
            spec,
            messages: VecDeque::new(),
        }
    }

    /// What this history keeps.
    pub fn spec(&self) -> CacheSpec {
        self.spec
    }

    /// Remembers `message` if it is one to replay: sent to everyone (`to` is `None`), not
    /// metadata, and marked `_cache` when the history is `tagged`. The oldest message makes room
    /// when the history is full. Returns whether it was kept.
    pub fn push(&mut self, message: &ChildMessage) -> bool {
        let wanted = message.to.is_none() && !message.meta && (message.cache || !self.spec.tagged);
        if !wanted || self.spec.size == 0 {
            return false;
        }
        while self.messages.len() >= self.spec.size {
            self.messages.pop_front();
        }
        self.messages.push_back(message.clone());
        true
    }

    /// The kept messages, oldest first, to send to a client that just joined.
    pub fn replay(&self) -> impl ExactSizeIterator<Item = &ChildMessage> + '_ {
        self.messages.iter()
    }

    /// How many messages are kept.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether no message is kept.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Forgets every message (when the room's program exits, unless `--cachepersist`).
    pub fn clear(&mut self) {
        self.messages.clear();
    }
}

/// A room's history, as the room holds it and, with `--cachepersist`, hands it on: a room
/// that stops accepting clients gives it to the next room of its name at once, and keeps
/// adding what its program still prints while it stops, so the next clients get that too.
#[derive(Debug, Clone)]
pub(crate) struct SharedHistory(Arc<Mutex<HistoryCache>>);

impl SharedHistory {
    /// An empty history following `spec`.
    pub(crate) fn new(spec: CacheSpec) -> Self {
        Self(Arc::new(Mutex::new(HistoryCache::new(spec))))
    }

    /// The history, for a push or a replay.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HistoryCache> {
        // Each critical section is one push or one replay: a poisoned lock is still consistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: &str) -> Result<CacheSpec, CacheSpecError> {
        value.parse()
    }

    #[test]
    fn parses_types_and_sizes() {
        let all = |size| CacheSpec {
            tagged: false,
            size,
        };
        assert_eq!(spec("all:8"), Ok(all(8)));
        assert_eq!(spec("all:1"), Ok(all(1)));
        assert_eq!(
            spec("tagged:64"),
            Ok(CacheSpec {
                tagged: true,
                size: 64
            })
        );
        // Bare sizes (documented by ScaleSocket, rejected by it) mean `all`.
        assert_eq!(spec("8"), Ok(all(8)));
        assert_eq!(spec("10"), Ok(all(10)));
        assert_eq!(spec("65536"), Ok(all(65536)));
        assert_eq!(spec("0064"), Ok(all(64)));
    }

    #[test]
    fn rejects_bad_values_clearly() {
        assert_eq!(spec(""), Err(CacheSpecError::Empty));
        assert_eq!(spec("0"), Err(CacheSpecError::OutOfRange("0".into())));
        assert_eq!(
            spec("all:65537"),
            Err(CacheSpecError::OutOfRange("65537".into()))
        );
        assert_eq!(
            spec("99999999999999999999999"),
            Err(CacheSpecError::OutOfRange("99999999999999999999999".into()))
        );
        assert_eq!(spec("-1"), Err(CacheSpecError::NotANumber("-1".into())));
        assert_eq!(spec("+8"), Err(CacheSpecError::NotANumber("+8".into())));
        assert_eq!(spec("all: 8"), Err(CacheSpecError::NotANumber(" 8".into())));
        assert_eq!(
            spec("tagged:x"),
            Err(CacheSpecError::NotANumber("x".into()))
        );
        assert_eq!(spec("all"), Err(CacheSpecError::MissingSize("all".into())));
        assert_eq!(
            spec("tagged:"),
            Err(CacheSpecError::MissingSize("tagged".into()))
        );
        assert_eq!(
            spec("some:8"),
            Err(CacheSpecError::UnknownType("some".into()))
        );
        assert_eq!(
            spec("ALL:8"),
            Err(CacheSpecError::UnknownType("ALL".into()))
        );
        assert_eq!(spec(":8"), Err(CacheSpecError::UnknownType("".into())));
        assert_eq!(
            spec("all:8:9"),
            Err(CacheSpecError::NotANumber("8:9".into()))
        );
        assert_eq!(
            CacheSpecError::OutOfRange("0".into()).to_string(),
            "--cache: size 0 is out of range; use 1 to 65536"
        );
    }

    #[test]
    fn displays_full_form() {
        assert_eq!(spec("8").unwrap().to_string(), "all:8");
        assert_eq!(spec("tagged:3").unwrap().to_string(), "tagged:3");
        assert_eq!(
            spec("tagged:3").unwrap().to_string().parse(),
            spec("tagged:3")
        );
    }

    fn text(payload: &'static str) -> ChildMessage {
        ChildMessage::new(payload.as_bytes(), false)
    }

    fn payloads(cache: &HistoryCache) -> Vec<&[u8]> {
        cache.replay().map(|m| &m.payload[..]).collect()
    }

    #[test]
    fn keeps_the_newest_oldest_first() {
        let mut cache = HistoryCache::new(spec("all:3").unwrap());
        assert!(cache.is_empty());
        for payload in ["1", "2", "3", "4", "5"] {
            assert!(cache.push(&text(payload)));
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(payloads(&cache), [b"3", b"4", b"5"]);
        assert_eq!(cache.replay().len(), 3);
    }

    #[test]
    fn keeps_binary_and_empty_messages() {
        let mut cache = HistoryCache::new(spec("2").unwrap());
        cache.push(&ChildMessage::new(&b"\xff\x00"[..], true));
        cache.push(&text(""));
        let kept: Vec<_> = cache.replay().cloned().collect();
        assert_eq!(
            kept,
            [
                ChildMessage::new(&b"\xff\x00"[..], true),
                ChildMessage::new(&b""[..], false)
            ]
        );
    }

    #[test]
    fn never_keeps_private_or_meta_messages() {
        let mut cache = HistoryCache::new(spec("all:8").unwrap());
        let private = ChildMessage {
            to: Some(2),
            ..text(r#"{"_to":2,"secret":1}"#)
        };
        let meta = ChildMessage {
            meta: true,
            ..text(r#"{"title":"lobby"}"#)
        };
        let private_tagged = ChildMessage {
            cache: true,
            ..private.clone()
        };
        assert!(!cache.push(&private));
        assert!(!cache.push(&meta));
        assert!(!cache.push(&private_tagged));
        assert!(cache.push(&text("public")));
        assert_eq!(payloads(&cache), [b"public"]);
    }

    #[test]
    fn tagged_keeps_only_cache_marked() {
        let mut cache = HistoryCache::new(spec("tagged:2").unwrap());
        let tagged = |payload| ChildMessage {
            cache: true,
            ..text(payload)
        };
        assert!(!cache.push(&text("plain")));
        assert!(cache.push(&tagged("a")));
        assert!(cache.push(&tagged("b")));
        assert!(cache.push(&tagged("c")));
        assert_eq!(payloads(&cache), [b"b", b"c"]);
        // `all` keeps tagged messages too.
        let mut all = HistoryCache::new(spec("all:2").unwrap());
        assert!(all.push(&tagged("t")));
    }

    #[test]
    fn clear_and_zero_size() {
        let mut cache = HistoryCache::new(spec("all:2").unwrap());
        cache.push(&text("a"));
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(cache.replay().count(), 0);
        assert!(cache.push(&text("b")));
        assert_eq!(payloads(&cache), [b"b"]);
        assert_eq!(cache.spec(), spec("all:2").unwrap());

        let mut none = HistoryCache::new(CacheSpec {
            tagged: false,
            size: 0,
        });
        assert!(!none.push(&text("a")));
        assert!(none.is_empty());
    }
}
