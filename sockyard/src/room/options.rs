//! What a room runs and how it behaves: the program, its framing, its lifecycle and its limits.
//! The same options come from `sockyard wrap` flags and from `[[room]]` tables in a `serve`
//! configuration.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cache::CacheSpec;
use super::framing::{ClientFraming, OutputMode, ServerFraming};

/// Framing of one direction between clients and the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Frame {
    /// Plain messages: lines (or chunks in binary mode).
    #[default]
    None,
    /// JSON objects: client messages gain `_from`; program messages may carry `_to`, `_meta`
    /// and `_cache`.
    Json,
    /// gwsocket's 12-byte header (id, type, length; big-endian) before each message.
    Gwsocket,
}

/// When a program that exited is started again (while the room still has clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never: clients are closed when the program exits.
    #[default]
    Never,
    /// When it exits with a non-zero status or is killed by a signal.
    OnFailure,
    /// Whenever it exits.
    Always,
}

/// Room options that cannot work together, found by [`RoomOptions::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// `command` is empty.
    #[error("no command to run")]
    NoCommand,
    /// `binary` and `delimiters` are both set.
    #[error("binary mode reads output as it comes: it takes no delimiters")]
    BinaryWithDelimiters,
    /// `tcp_ports` holds no port.
    #[error("the port range {start}:{end} is empty (the end is exclusive)")]
    EmptyPortRange {
        /// The first port.
        start: u16,
        /// The end of the range, exclusive.
        end: u16,
    },
    /// `client_queue` or `input_queue` is 0.
    #[error("queues must hold at least one message")]
    EmptyQueue,
    /// `max_message_bytes` is 0.
    #[error("max_message_bytes must be at least 1")]
    ZeroMessageSize,
}

/// How a room runs its program.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RoomOptions {
    /// In a `serve` configuration: where the rooms are, as `<path><room>` (starts and ends
    /// with `/`). Default `/rooms/`. `sockyard wrap` serves rooms at `/<room>`.
    pub path: String,
    /// In a `serve` configuration: clients must present a token signed with `[auth]`'s key
    /// (`?token=` or `Authorization: Bearer`); a token with a `room` or `rooms` claim opens
    /// only those rooms. Default false.
    pub require_token: bool,
    /// In a `serve` configuration: allowed `Origin`s of WebSocket upgrades (full origins or
    /// `host[:port]`); empty: any. Others get 403.
    pub origins: Vec<String>,
    /// The program (looked up in `PATH`).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Binary mode: program output is sent in binary messages as it is read (no delimiting),
    /// client messages are written without a newline. Default false.
    pub binary: bool,
    /// Replay the room's last messages to each new client: `[all|tagged:]SIZE`.
    #[serde(
        serialize_with = "serialize_cache",
        deserialize_with = "deserialize_cache"
    )]
    pub cache: Option<CacheSpec>,
    /// Keep a room's history after its program ends. Default false.
    pub cache_persist: bool,
    /// Milliseconds to wait after starting the program before talking to it. Default 0 (1000
    /// with `tcp`).
    pub delay_ms: Option<u64>,
    /// Bytes that end a program output message. Default a newline.
    pub delimiters: Option<Vec<u8>>,
    /// Also end program output messages at NUL (alone: only at NUL). Default false.
    pub null: bool,
    /// Line written to the program when a client joins (`#ID`, `#ROOM`, `#REMOTE_ADDR`,
    /// `#QUERY_STRING`, `#QUERY_<NAME>`).
    pub join_message: Option<String>,
    /// Line written to the program when a client leaves.
    pub leave_message: Option<String>,
    /// Framing of client messages to the program.
    pub client_frame: Frame,
    /// Framing of program messages to clients.
    pub server_frame: Frame,
    /// Serve a single client, then stop. Default false.
    pub oneshot: bool,
    /// Environment variables passed from the server to the program (the rest is cleared).
    /// Default `PATH`, `LD_LIBRARY_PATH`, `DYLD_LIBRARY_PATH`.
    pub passenv: Vec<String>,
    /// Room names allowed; empty: any name.
    pub rooms: Vec<String>,
    /// Rooms (programs) running at once; beyond it a new room is refused with HTTP 429.
    pub max_rooms: Option<usize>,
    /// Clients in one room; beyond it a client is refused with HTTP 429.
    pub max_clients: Option<usize>,
    /// Talk to the program over TCP: it listens on `127.0.0.1:$PORT`. Default false.
    pub tcp: bool,
    /// Ports handed to programs with `tcp`: `START:END`, END exclusive. Default `9001:9999`.
    pub tcp_ports: (u16, u16),
    /// After the last client leaves: milliseconds the program has to exit once its input is
    /// closed, before SIGTERM. Default 2000.
    pub grace_ms: u64,
    /// Milliseconds between SIGTERM and SIGKILL. Default 2000.
    pub kill_after_ms: u64,
    /// Whether an exited program is started again. Default never.
    pub restart: Restart,
    /// Milliseconds a room with no clients keeps its program running (a client that joins in
    /// that time finds it as it was). Default 0.
    pub idle_timeout_ms: u64,
    /// Messages queued for one client before the room waits for it. Default 1024.
    pub client_queue: usize,
    /// Milliseconds a room waits for a client whose queue is full before disconnecting it
    /// (close 4400). Default 10000.
    pub slow_client_timeout_ms: u64,
    /// Drop messages for a client whose queue is full instead of waiting (counted in
    /// `sockyard_room_messages_dropped_total`). Default false: nothing is lost.
    pub drop_when_full: bool,
    /// Client messages queued for the program before clients are made to wait. Default 1024.
    pub input_queue: usize,
    /// Largest message in either direction, in bytes; longer program output is delivered in
    /// pieces of this size, a longer client message closes that client with 1009. Default
    /// 1048576.
    pub max_message_bytes: usize,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            path: "/rooms/".to_owned(),
            require_token: false,
            origins: Vec::new(),
            command: String::new(),
            args: Vec::new(),
            binary: false,
            cache: None,
            cache_persist: false,
            delay_ms: None,
            delimiters: None,
            null: false,
            join_message: None,
            leave_message: None,
            client_frame: Frame::None,
            server_frame: Frame::None,
            oneshot: false,
            passenv: ["PATH", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH"]
                .map(str::to_owned)
                .to_vec(),
            rooms: Vec::new(),
            max_rooms: None,
            max_clients: None,
            tcp: false,
            tcp_ports: (9001, 9999),
            grace_ms: 2000,
            kill_after_ms: 2000,
            restart: Restart::Never,
            idle_timeout_ms: 0,
            client_queue: 1024,
            slow_client_timeout_ms: 10_000,
            drop_when_full: false,
            input_queue: 1024,
            max_message_bytes: 1 << 20,
        }
    }
}

/// The `--json` shorthand's join and leave messages.
pub(super) const JSON_JOIN_MESSAGE: &str = r#"{"t":"Join","_from":#ID}"#;
/// See [`JSON_JOIN_MESSAGE`].
pub(super) const JSON_LEAVE_MESSAGE: &str = r#"{"t":"Leave","_from":#ID}"#;

impl RoomOptions {
    /// Options that run `command` with `args`, everything else default.
    pub fn new(command: impl Into<String>, args: Vec<String>) -> Self {
        Self {
            command: command.into(),
            args,
            ..Self::default()
        }
    }

    /// The `--json` shorthand: JSON framing both ways with join and leave messages.
    #[must_use]
    pub fn json(mut self) -> Self {
        self.client_frame = Frame::Json;
        self.server_frame = Frame::Json;
        self.join_message = Some(JSON_JOIN_MESSAGE.to_owned());
        self.leave_message = Some(JSON_LEAVE_MESSAGE.to_owned());
        self
    }

    /// Checks combinations that cannot work.
    pub fn check(&self) -> Result<(), OptionsError> {
        if self.command.is_empty() {
            return Err(OptionsError::NoCommand);
        }
        if self.binary && self.delimiters.is_some() {
            return Err(OptionsError::BinaryWithDelimiters);
        }
        let (start, end) = self.tcp_ports;
        if start >= end {
            return Err(OptionsError::EmptyPortRange { start, end });
        }
        if self.client_queue == 0 || self.input_queue == 0 {
            return Err(OptionsError::EmptyQueue);
        }
        if self.max_message_bytes == 0 {
            return Err(OptionsError::ZeroMessageSize);
        }
        Ok(())
    }

    /// The wait before talking to a newly started program.
    pub fn delay(&self) -> std::time::Duration {
        let default = if self.tcp { 1000 } else { 0 };
        std::time::Duration::from_millis(self.delay_ms.unwrap_or(default))
    }

    /// How program output is cut into messages.
    pub fn output_mode(&self) -> OutputMode {
        if self.server_frame == Frame::Gwsocket {
            return OutputMode::Gwsocket;
        }
        if self.binary {
            return OutputMode::Binary;
        }
        let mut delimiters = match &self.delimiters {
            Some(delimiters) => delimiters.clone(),
            None if self.null => Vec::new(),
            None => vec![b'\n'],
        };
        if self.null {
            delimiters.push(0);
        }
        if delimiters == [b'\n'] {
            OutputMode::Lines
        } else {
            OutputMode::Delimiters(delimiters)
        }
    }

    /// Whether program output is read as JSON headers.
    pub fn server_framing(&self) -> ServerFraming {
        match self.server_frame {
            Frame::Json => ServerFraming::Json,
            Frame::None | Frame::Gwsocket => ServerFraming::None,
        }
    }

    /// How client messages are written to the program.
    pub fn client_framing(&self) -> ClientFraming {
        match self.client_frame {
            Frame::Json => ClientFraming::Json,
            Frame::Gwsocket => ClientFraming::Gwsocket,
            Frame::None if self.binary => ClientFraming::Raw,
            Frame::None => ClientFraming::Lines,
        }
    }
}

fn serialize_cache<S: Serializer>(cache: &Option<CacheSpec>, s: S) -> Result<S::Ok, S::Error> {
    match cache {
        Some(spec) => s.serialize_str(&spec.to_string()),
        None => s.serialize_none(),
    }
}

fn deserialize_cache<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CacheSpec>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| t.parse().map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_modes_follow_the_flags() {
        let base = RoomOptions::new("cat", Vec::new());
        assert_eq!(base.output_mode(), OutputMode::Lines);
        let null = RoomOptions {
            null: true,
            ..base.clone()
        };
        assert_eq!(null.output_mode(), OutputMode::Delimiters(vec![0]));
        let both = RoomOptions {
            null: true,
            delimiters: Some(b",;".to_vec()),
            ..base.clone()
        };
        assert_eq!(both.output_mode(), OutputMode::Delimiters(b",;\0".to_vec()));
        let binary = RoomOptions {
            binary: true,
            ..base.clone()
        };
        assert_eq!(binary.output_mode(), OutputMode::Binary);
        assert_eq!(binary.client_framing(), ClientFraming::Raw);
        let json = base.clone().json();
        assert_eq!(json.server_framing(), ServerFraming::Json);
        assert_eq!(json.client_framing(), ClientFraming::Json);
        assert_eq!(json.join_message.as_deref(), Some(JSON_JOIN_MESSAGE));
        let gw = RoomOptions {
            server_frame: Frame::Gwsocket,
            client_frame: Frame::Gwsocket,
            ..base
        };
        assert_eq!(gw.output_mode(), OutputMode::Gwsocket);
        assert_eq!(gw.client_framing(), ClientFraming::Gwsocket);
    }

    #[test]
    fn bad_combinations_are_refused() {
        let base = RoomOptions::new("cat", Vec::new());
        assert!(base.check().is_ok());
        assert_eq!(RoomOptions::default().check(), Err(OptionsError::NoCommand));
        let bad = RoomOptions {
            binary: true,
            delimiters: Some(vec![b',']),
            ..base.clone()
        };
        let err = bad.check().unwrap_err();
        assert_eq!(err, OptionsError::BinaryWithDelimiters);
        assert!(err.to_string().contains("delimiters"));
        let bad = RoomOptions {
            tcp_ports: (5, 5),
            ..base.clone()
        };
        let err = bad.check().unwrap_err();
        assert_eq!(err, OptionsError::EmptyPortRange { start: 5, end: 5 });
        assert_eq!(
            err.to_string(),
            "the port range 5:5 is empty (the end is exclusive)"
        );
        let bad = RoomOptions {
            input_queue: 0,
            ..base.clone()
        };
        assert_eq!(bad.check(), Err(OptionsError::EmptyQueue));
        let bad = RoomOptions {
            max_message_bytes: 0,
            ..base
        };
        assert_eq!(bad.check(), Err(OptionsError::ZeroMessageSize));
    }

    #[test]
    fn delays_default_by_transport() {
        let mut options = RoomOptions::new("cat", Vec::new());
        assert_eq!(options.delay(), std::time::Duration::ZERO);
        options.tcp = true;
        assert_eq!(options.delay(), std::time::Duration::from_secs(1));
        options.delay_ms = Some(5);
        assert_eq!(options.delay(), std::time::Duration::from_millis(5));
    }
}
