//! `sockyard wrap`: a program as a WebSocket server, one process per room. Every flag of
//! ScaleSocket 0.2.4 is accepted with the same meaning (and its older names as aliases), so an
//! existing command line works with the program name replaced.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use sockyard::auth::Authenticator;
use sockyard::config::LogFormat;
use sockyard::room::cache::CacheSpec;
use sockyard::room::framing::parse_delimiters;
use sockyard::room::{Frame, Restart, RoomOptions, RoomServer, RoomServerSettings, Rooms};
use sockyard::tls::Tls;

/// Framing modes for `--frame`, `--clientframe` and `--serverframe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FrameMode {
    /// JSON objects: `_from` added to client messages; `_to`, `_meta`, `_cache` read from
    /// program messages.
    Json,
    /// gwsocket's 12-byte big-endian header (id, type, length).
    Gwsocket,
}

impl From<FrameMode> for Frame {
    fn from(mode: FrameMode) -> Self {
        match mode {
            FrameMode::Json => Self::Json,
            FrameMode::Gwsocket => Self::Gwsocket,
        }
    }
}

/// Restart policies for `--restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RestartMode {
    /// Close the room's clients when the program exits.
    Never,
    /// Start it again when it fails (non-zero status or a signal).
    OnFailure,
    /// Start it again whenever it exits.
    Always,
}

/// The flags of `sockyard wrap`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Wrap a program as a WebSocket server: one process per room, shared by the room's clients",
    long_about = "Wrap a program as a WebSocket server. A room is the first path segment \
        (ws://HOST/<room>); the room's first client starts CMD, later clients share it, and the \
        last one leaving stops it gracefully (input closed, then SIGTERM, then SIGKILL). Each \
        client message becomes a line on the program's stdin; each line it prints goes to every \
        client of the room, without loss: slow clients and slow programs make the other side \
        wait instead of dropping messages."
)]
pub(crate) struct WrapArgs {
    /// Command to wrap.
    pub(crate) cmd: String,
    /// Arguments to the command (after `--`).
    #[arg(last = true)]
    pub(crate) args: Vec<String>,
    /// Interface to bind to.
    #[arg(long, default_value = "0.0.0.0:9000", value_name = "ADDR")]
    pub(crate) addr: SocketAddr,
    /// Binary mode: program output is sent in binary messages as it is read; client messages
    /// are written without a newline.
    #[arg(short = 'b', long, conflicts_with = "delimiters")]
    pub(crate) binary: bool,
    /// Replay the room's last messages to new clients: `[all|tagged:]SIZE` (`tagged` keeps only
    /// messages with `"_cache": true`).
    #[arg(long, value_name = "[TYPE:]SIZE")]
    pub(crate) cache: Option<CacheSpec>,
    /// Keep a room's history after its program ends.
    #[arg(long)]
    pub(crate) cachepersist: bool,
    /// Seconds to wait after starting the program before talking to it [default: 1 with --tcp].
    #[arg(long, value_name = "SECONDS", alias = "cmd-attach-delay")]
    pub(crate) delay: Option<f64>,
    /// Characters that end a program output message (escapes \n \t \r \0 \\ accepted)
    /// [default: "\n"].
    #[arg(long, value_name = "DELIMITERS", require_equals = true)]
    pub(crate) delimiters: Option<String>,
    /// Line written to the program when a client joins (#ID, #ROOM, #REMOTE_ADDR,
    /// #QUERY_STRING, #QUERY_<NAME>).
    #[arg(long, value_name = "MSG")]
    pub(crate) joinmsg: Option<String>,
    /// Shorthand for --frame=json --joinmsg '{"t":"Join","_from":#ID}' --leavemsg
    /// '{"t":"Leave","_from":#ID}'.
    #[arg(long, conflicts_with_all = ["frame", "clientframe", "serverframe"])]
    pub(crate) json: bool,
    /// Line written to the program when a client leaves.
    #[arg(long, value_name = "MSG")]
    pub(crate) leavemsg: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", value_name = "FMT")]
    pub(crate) log: LogFormatArg,
    /// Serve OpenMetrics at /metrics.
    #[arg(long)]
    pub(crate) metrics: bool,
    /// Also end program output messages at NUL (alone: only at NUL).
    #[arg(long)]
    pub(crate) null: bool,
    /// Serve one client, then exit.
    #[arg(long)]
    pub(crate) oneshot: bool,
    /// Environment variables passed to the program (comma-separated; the rest is cleared).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "PATH,LD_LIBRARY_PATH,DYLD_LIBRARY_PATH",
        value_name = "LIST"
    )]
    pub(crate) passenv: Vec<String>,
    /// Allowed room names (comma-separated); others are refused with 400.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub(crate) rooms: Vec<String>,
    /// Rooms (programs) running at once; a new room beyond it is refused with 429.
    #[arg(long, alias = "maxforks", value_name = "NUM")]
    pub(crate) maxrooms: Option<usize>,
    /// Framing both ways (bare --frame: json).
    #[arg(
        long,
        alias = "framing",
        value_enum,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "json",
        conflicts_with_all = ["clientframe", "serverframe"],
        value_name = "MODE"
    )]
    pub(crate) frame: Option<FrameMode>,
    /// Framing of client messages to the program.
    #[arg(long, alias = "client-framing", value_enum, value_name = "MODE")]
    pub(crate) clientframe: Option<FrameMode>,
    /// Framing of program messages to clients.
    #[arg(
        long,
        aliases = ["server-framing", "serverframing"],
        value_enum,
        value_name = "MODE"
    )]
    pub(crate) serverframe: Option<FrameMode>,
    /// Serve the files of this directory over HTTP (symbolic links that lead out of it are
    /// not followed, unless --follow-symlinks).
    #[arg(long, value_name = "DIR")]
    pub(crate) staticdir: Option<PathBuf>,
    /// Serve the room API under /api/ (/api/rooms, /api/<room>/, /api/<room>/<field>).
    #[arg(long, alias = "stats")]
    pub(crate) api: bool,
    /// Talk to the program over TCP: it must listen on 127.0.0.1:$PORT.
    #[arg(long)]
    pub(crate) tcp: bool,
    /// Ports for --tcp, END exclusive [default: 9001:9999].
    #[arg(long, requires = "tcp", value_name = "START:END", value_parser = parse_ports)]
    pub(crate) tcpports: Option<(u16, u16)>,
    /// More logging (-v debug, -vv trace).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    // Beyond ScaleSocket.
    /// With --staticdir: also serve files that symbolic links lead to outside the directory.
    #[arg(long, requires = "staticdir")]
    pub(crate) follow_symlinks: bool,
    /// Seconds the program has to exit once its input is closed (last client gone), before
    /// SIGTERM.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub(crate) grace: f64,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub(crate) kill_after: f64,
    /// Start the program again when it exits while clients remain.
    #[arg(long, value_enum, default_value = "never")]
    pub(crate) restart: RestartMode,
    /// Seconds a room with no clients keeps its program running.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    pub(crate) idle_timeout: f64,
    /// Clients per room; more are refused with 429.
    #[arg(long, value_name = "NUM")]
    pub(crate) max_clients: Option<usize>,
    /// Messages queued for one client before the room waits for it.
    #[arg(long, default_value_t = 1024, value_name = "NUM")]
    pub(crate) client_queue: usize,
    /// Seconds a room waits for a client that reads nothing before closing it with 4400.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub(crate) slow_client_timeout: f64,
    /// Drop messages for clients whose queue is full instead of waiting (counted).
    #[arg(long)]
    pub(crate) drop_when_full: bool,
    /// Client messages queued for the program before clients wait.
    #[arg(long, default_value_t = 1024, value_name = "NUM")]
    pub(crate) input_queue: usize,
    /// Largest message in bytes, either way.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub(crate) max_message_bytes: usize,
    /// Seconds a new connection has for its TLS handshake (with TLS on), and again for
    /// complete HTTP request headers; then it is dropped.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub(crate) header_timeout: f64,
    /// Allowed Origins for WebSocket upgrades (comma-separated; `host[:port]` or full
    /// origins); others get 403.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub(crate) origin: Vec<String>,
    /// PEM certificate chain: serve wss:// and https://.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Require a token (HS256, signed with this key) from every client, as ?token= or
    /// Authorization: Bearer; a token with a `room` or `rooms` claim opens only those rooms.
    #[arg(
        long,
        env = "SOCKYARD_ROOM_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub(crate) token_key: Option<String>,
}

/// `--log` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_ports(value: &str) -> Result<(u16, u16), String> {
    let (start, end) = value
        .split_once(':')
        .ok_or_else(|| format!("expected START:END, got `{value}`"))?;
    let start: u16 = start
        .parse()
        .map_err(|_| format!("`{start}` is not a port"))?;
    let end: u16 = end.parse().map_err(|_| format!("`{end}` is not a port"))?;
    if start >= end {
        return Err(format!("{start}:{end} holds no port (END is exclusive)"));
    }
    Ok((start, end))
}

fn millis(seconds: f64, flag: &str) -> anyhow::Result<u64> {
    anyhow::ensure!(
        seconds.is_finite() && seconds >= 0.0,
        "{flag} must be a number of seconds, 0 or more"
    );
    Ok((seconds * 1000.0).round() as u64)
}

impl WrapArgs {
    /// The room options these flags describe.
    pub(crate) fn room_options(&self) -> anyhow::Result<RoomOptions> {
        let mut options = RoomOptions::new(self.cmd.clone(), self.args.clone());
        if self.json {
            options = options.json();
        }
        if let Some(frame) = self.frame {
            options.client_frame = frame.into();
            options.server_frame = frame.into();
        }
        if let Some(frame) = self.clientframe {
            options.client_frame = frame.into();
        }
        if let Some(frame) = self.serverframe {
            options.server_frame = frame.into();
        }
        if self.joinmsg.is_some() {
            options.join_message = self.joinmsg.clone();
        }
        if self.leavemsg.is_some() {
            options.leave_message = self.leavemsg.clone();
        }
        options.binary = self.binary;
        options.cache = self.cache;
        options.cache_persist = self.cachepersist;
        options.delay_ms = self.delay.map(|d| millis(d, "--delay")).transpose()?;
        options.delimiters = self
            .delimiters
            .as_deref()
            .map(parse_delimiters)
            .transpose()
            .context("--delimiters")?;
        options.null = self.null;
        options.oneshot = self.oneshot;
        options.passenv = self
            .passenv
            .iter()
            .filter(|v| !v.is_empty())
            .cloned()
            .collect();
        options.rooms = self.rooms.clone();
        options.max_rooms = if self.oneshot { Some(1) } else { self.maxrooms };
        options.max_clients = if self.oneshot {
            Some(1)
        } else {
            self.max_clients
        };
        options.tcp = self.tcp;
        if let Some(ports) = self.tcpports {
            options.tcp_ports = ports;
        }
        options.grace_ms = millis(self.grace, "--grace")?;
        options.kill_after_ms = millis(self.kill_after, "--kill-after")?;
        options.restart = match self.restart {
            RestartMode::Never => Restart::Never,
            RestartMode::OnFailure => Restart::OnFailure,
            RestartMode::Always => Restart::Always,
        };
        options.idle_timeout_ms = millis(self.idle_timeout, "--idle-timeout")?;
        options.client_queue = self.client_queue;
        options.slow_client_timeout_ms = millis(self.slow_client_timeout, "--slow-client-timeout")?;
        options.drop_when_full = self.drop_when_full;
        options.input_queue = self.input_queue;
        options.max_message_bytes = self.max_message_bytes;
        options.check()?;
        Ok(options)
    }
}

/// Runs `sockyard wrap` until SIGINT/SIGTERM (or, with --oneshot, its one client is done).
pub(crate) async fn run(args: WrapArgs) -> anyhow::Result<ExitCode> {
    let level = match args.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let format = match args.log {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    crate::init_logging(level, format)?;
    let options = args.room_options()?;
    let auth = args
        .token_key
        .as_deref()
        .filter(|key| !key.is_empty())
        .map(|key| Authenticator::hs256(key.as_bytes(), Duration::from_secs(86_400)));
    let rooms = Rooms::new(options, auth)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::from_pem_files(cert, key)?),
        _ => None,
    };
    let mut settings = RoomServerSettings::default();
    settings.api = args.api;
    settings.metrics = args.metrics;
    settings.static_dir = args.staticdir.clone();
    settings.follow_symlinks = args.follow_symlinks;
    settings.origins = args.origin.clone();
    settings.header_timeout = Some(Duration::from_millis(millis(
        args.header_timeout,
        "--header-timeout",
    )?));
    let shutdown = crate::shutdown_signal().context("cannot listen for SIGINT and SIGTERM")?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    tracing::info!(%local, command = %args.cmd, "listening: rooms at {scheme}://{local}/<room>");
    RoomServer::new(rooms, settings, tls)
        .serve(listener, shutdown)
        .await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
