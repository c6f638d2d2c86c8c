//! The `sockyard` command: a thin front over the library (serve, call, config).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use sockyard::auth::{now_seconds, Authenticator, KeySource};
use sockyard::client::ctproto::CtClient;
use sockyard::client::{Client, ClientError, ClientEvent, ClientOptions};
use sockyard::codec::protobuf::Schema;
use sockyard::codec::Encoding;
use sockyard::config::{LogFormat, DEFAULT_TOML};
use sockyard::resource::ResourcesBuilder;
use sockyard::{Config, Router, Server};

mod wrap;

/// Sockyard: a realtime API server for WebSocket clients.
#[derive(Debug, Parser)]
#[command(name = "sockyard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The codec options of the client commands.
#[derive(Debug, Clone, clap::Args)]
struct CodecArgs {
    /// The endpoint's codec (SocketCluster endpoints).
    #[arg(long, value_enum, default_value_t = CodecName::Json)]
    codec: CodecName,
    /// With `--codec protobuf`: `.proto` files whose types the endpoint uses (repeatable).
    #[arg(long = "proto", value_name = "FILE")]
    protos: Vec<PathBuf>,
    /// With `--codec protobuf`: the endpoint registers socketcluster-api's `#api` (ids 8 and 9).
    #[arg(long)]
    api: bool,
}

/// Codec names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CodecName {
    /// JSON text frames.
    Json,
    /// MessagePack (sc-codec-min-bin).
    Msgpack,
    /// Protobuf (sc-codec-protobuf).
    Protobuf,
}

impl CodecArgs {
    /// The client encoding these options describe. Events are sent with Sockyard's generic
    /// protobuf event type unless the endpoint registers them.
    fn encoding(&self) -> anyhow::Result<Encoding> {
        Ok(match self.codec {
            CodecName::Json => Encoding::Json,
            CodecName::Msgpack => Encoding::Msgpack,
            CodecName::Protobuf => {
                let mut sources = Vec::new();
                for path in &self.protos {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    sources.push((path.display().to_string(), text));
                }
                Encoding::Protobuf(Arc::new(Schema::compile(&sources, self.api, &[])?))
            }
        })
    }
}

/// Wire protocols `call` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    /// SocketCluster (v2 client).
    Socketcluster,
    /// CTProto: authorize, then `{messageId, type, payload}`.
    Ctproto,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (with no --config: the demo application on 127.0.0.1:8000).
    Serve {
        /// TOML configuration file; keys it leaves out keep their defaults.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to listen on (overrides server.listen).
        #[arg(long, env = "SOCKYARD_LISTEN", value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Log filter (overrides server.log_level), e.g. `debug` or `sockyard=trace`.
        #[arg(long, env = "SOCKYARD_LOG_LEVEL", value_name = "LEVEL")]
        log_level: Option<String>,
        /// Where resource records live (overrides storage.url): `sqlite://FILE` or
        /// `postgres://user@host:port/database`.
        #[arg(long, env = "SOCKYARD_STORAGE", value_name = "URL")]
        storage: Option<String>,
        /// PEM certificate chain: serve `wss://` and `https://` (overrides server.tls_cert).
        #[arg(long, env = "SOCKYARD_TLS_CERT", value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert (overrides server.tls_key).
        #[arg(long, env = "SOCKYARD_TLS_KEY", value_name = "FILE")]
        tls_key: Option<PathBuf>,
    },
    /// Wrap a program as a WebSocket server: one process per room (ScaleSocket's flags).
    Wrap(Box<wrap::WrapArgs>),
    /// Print the embedded default configuration, every key with its default value.
    Config,
    /// Print a token signed with the configured auth key.
    Token {
        /// The token's claims, a JSON object; `iat` and (unless given) `exp` are added.
        #[arg(long, default_value = "{}")]
        claims: String,
        /// TOML configuration whose [auth] section holds the key (default: the embedded one).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Seconds until the token expires (default: auth.default_expiry_s).
        #[arg(long)]
        expiry: Option<u64>,
        /// Sign even when the claims' `exp` is in the past (a warning is printed).
        #[arg(long)]
        allow_expired: bool,
    },
    /// Subscribe to channels and print each publication as a JSON line {"channel","data"}.
    Listen {
        /// Endpoint URL, e.g. ws://127.0.0.1:8000/socketcluster/
        url: String,
        /// Channels to subscribe to.
        #[arg(required = true)]
        channels: Vec<String>,
        /// Auth token to present (for channels that need one).
        #[arg(long, env = "SOCKYARD_TOKEN")]
        token: Option<String>,
        /// Exit after this many publications (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
        /// How the endpoint encodes messages.
        #[command(flatten)]
        codec: CodecArgs,
    },
    /// Publish a JSON value on a channel.
    Publish {
        /// Endpoint URL, e.g. ws://127.0.0.1:8000/socketcluster/
        url: String,
        /// The channel.
        channel: String,
        /// JSON data; omitted means no data.
        data: Option<String>,
        /// Auth token to present (for channels that need one).
        #[arg(long, env = "SOCKYARD_TOKEN")]
        token: Option<String>,
        /// How the endpoint encodes messages.
        #[command(flatten)]
        codec: CodecArgs,
    },
    /// Call a procedure on a SocketCluster endpoint and print the reply as JSON.
    Call {
        /// Endpoint URL, e.g. ws://127.0.0.1:8000/socketcluster/
        url: String,
        /// Procedure (route) name, e.g. `echo` or `GET /creature/1`.
        route: String,
        /// JSON payload; omitted means no data.
        data: Option<String>,
        /// Seconds to wait for the reply.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Transmit instead of invoke: send and exit without waiting for a reply.
        #[arg(long)]
        transmit: bool,
        /// Wire protocol of the endpoint.
        #[arg(long, value_enum, default_value_t = Protocol::Socketcluster)]
        protocol: Protocol,
        /// CTProto: the `authorize` payload, e.g. '{"token":"…"}' or '{"username":"ann"}'.
        #[arg(long, default_value = "{}")]
        authorize: String,
        /// How the endpoint encodes messages.
        #[command(flatten)]
        codec: CodecArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                config,
                listen,
                log_level,
                storage,
                tls_cert,
                tls_key,
            } => {
                let overrides = ServeOverrides {
                    listen,
                    log_level,
                    storage,
                    tls_cert,
                    tls_key,
                };
                serve(config, overrides).await
            }
            Command::Wrap(args) => wrap::run(*args).await,
            Command::Config => {
                print!("{DEFAULT_TOML}");
                Ok(ExitCode::SUCCESS)
            }
            Command::Call {
                url,
                route,
                data,
                timeout,
                transmit,
                protocol: Protocol::Socketcluster,
                codec,
                ..
            } => call(&url, &route, data.as_deref(), timeout, transmit, &codec).await,
            Command::Call {
                url,
                route,
                data,
                timeout,
                authorize,
                protocol: Protocol::Ctproto,
                ..
            } => call_ctproto(&url, &route, data.as_deref(), timeout, &authorize).await,
            Command::Token {
                claims,
                config,
                expiry,
                allow_expired,
            } => token(&claims, config, expiry, allow_expired),
            Command::Listen {
                url,
                channels,
                token,
                count,
                codec,
            } => listen(&url, &channels, token, count, &codec).await,
            Command::Publish {
                url,
                channel,
                data,
                token,
                codec,
            } => publish(&url, &channel, data.as_deref(), token, &codec).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `serve` options that override keys of the configuration.
struct ServeOverrides {
    listen: Option<SocketAddr>,
    log_level: Option<String>,
    storage: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

async fn serve(
    config_path: Option<PathBuf>,
    overrides: ServeOverrides,
) -> anyhow::Result<ExitCode> {
    let mut config = match &config_path {
        Some(path) => Config::from_file(path)?,
        None => Config::from_toml_str(DEFAULT_TOML, "<embedded default>")?,
    };
    if let Some(listen) = overrides.listen {
        config.server.listen = listen;
    }
    if let Some(level) = overrides.log_level {
        config.server.log_level = level;
    }
    if let Some(url) = overrides.storage {
        config.storage.url = url;
    }
    if let Some(cert) = overrides.tls_cert {
        config.server.tls_cert = Some(cert);
    }
    if let Some(key) = overrides.tls_key {
        config.server.tls_key = Some(key);
    }
    config.validate()?;
    init_logging(&config.server.log_level, config.server.log_format)?;

    let mut router = Router::new();
    if config.demo.enabled {
        tracing::warn!("demo procedures are enabled: `login` gives a token to anyone who asks; set [demo] enabled = false for real use");
        router = router.nest("", sockyard::demo::router());
    }
    let mut builder = Server::builder(&config);
    if !config.resources.is_empty() {
        let resources = ResourcesBuilder::from_declarations(&config.resources, &config.storage)
            .open_storage(&config.storage)
            .await?;
        tracing::info!(storage = %config.storage.url, count = config.resources.len(), "resources ready");
        builder = builder.resources(resources);
    }
    let server = builder.routes(router.build()?).build()?;
    let shutdown = shutdown_signal().context("cannot listen for SIGINT and SIGTERM")?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let local = listener.local_addr()?;
    let (ws, http) = if config.server.tls_cert.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    for endpoint in &config.endpoints {
        tracing::info!(url = %format!("{ws}://{local}{}", endpoint.path), "endpoint ready");
    }
    for room in &config.rooms {
        tracing::info!(url = %format!("{ws}://{local}{}<room>", room.path), command = %room.command, "rooms ready");
    }
    tracing::info!(%local, "sockyard {} listening (health: {http}://{local}/health)", env!("CARGO_PKG_VERSION"));
    server.serve(listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("invalid log level `{level}`"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed now, not when the future is first
/// polled: a signal that comes right after the "listening" line must start a graceful shutdown,
/// not end the process with the default action.
pub(crate) fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

fn parse_json(text: Option<&str>) -> anyhow::Result<serde_json::Value> {
    match text {
        Some(text) => {
            serde_json::from_str(text).with_context(|| format!("payload is not valid JSON: {text}"))
        }
        None => Ok(serde_json::Value::Null),
    }
}

fn token(
    claims: &str,
    config: Option<PathBuf>,
    expiry: Option<u64>,
    allow_expired: bool,
) -> anyhow::Result<ExitCode> {
    let mut config = match &config {
        Some(path) => Config::from_file(path)?,
        None => Config::from_toml_str(DEFAULT_TOML, "<embedded default>")?,
    };
    if let Some(expiry) = expiry {
        config.auth.default_expiry_s = expiry;
    }
    let serde_json::Value::Object(claims) =
        serde_json::from_str(claims).context("--claims is not valid JSON")?
    else {
        anyhow::bail!("--claims must be a JSON object");
    };
    let (auth, source) = Authenticator::from_config_in(&config.auth, config.base_dir.as_deref())?;
    if source == KeySource::Random {
        anyhow::bail!("no auth key is configured (auth.key or ${}): a token signed with a random key would verify nowhere", config.auth.key_env);
    }
    let now = now_seconds();
    let expires = match claims.get("exp") {
        None => now.saturating_add(config.auth.default_expiry_s),
        Some(exp) => exp.as_u64().with_context(|| {
            format!(
                "--claims: `exp` must be a whole number of seconds since the Unix epoch, not {exp}"
            )
        })?,
    };
    if expires < now {
        let ago = now - expires;
        if !allow_expired {
            anyhow::bail!("--claims sets `exp` to {expires}, {ago} s in the past: every server would refuse the token as expired (--allow-expired signs it anyway)");
        }
        eprintln!("warning: the token is already expired: `exp` {expires} is {ago} s in the past");
    }
    let max_age = config.auth.max_token_age_s;
    if max_age > 0 && expires > now.saturating_add(max_age) {
        eprintln!("warning: auth.max_token_age_s = {max_age}: servers with this configuration refuse the token {max_age} s after it is issued, before its `exp`");
    }
    println!("{}", auth.sign(claims)?);
    Ok(ExitCode::SUCCESS)
}

/// Connects without reconnecting, presenting `token` in the handshake if given.
async fn connect(
    url: &str,
    token: Option<String>,
    codec: &CodecArgs,
) -> anyhow::Result<(Client, sockyard::client::Events)> {
    let mut options = ClientOptions::default()
        .auto_reconnect(false)
        .encoding(codec.encoding()?);
    options.auth_token = token;
    let (client, events) = Client::connect(url, options).await?;
    Ok((client, events))
}

async fn listen(
    url: &str,
    channels: &[String],
    token: Option<String>,
    count: Option<u64>,
    codec: &CodecArgs,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let (client, mut events) = connect(url, token, codec).await?;
    for channel in channels {
        client
            .subscribe(channel)
            .await
            .with_context(|| format!("cannot subscribe to {channel}"))?;
    }
    let mut seen = 0;
    let mut stdout = std::io::stdout();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = tokio::signal::ctrl_c() => break,
        };
        match event {
            Some(ClientEvent::Publication { channel, data }) => {
                let line = serde_json::json!({ "channel": channel, "data": data });
                writeln!(stdout, "{line}")?;
                stdout.flush()?;
                seen += 1;
                if count.is_some_and(|count| seen >= count) {
                    break;
                }
            }
            Some(ClientEvent::KickedOut { channel, message }) => {
                eprintln!("kicked out of {channel}: {}", message.unwrap_or_default());
            }
            Some(ClientEvent::Disconnected { code, reason }) => {
                anyhow::bail!("disconnected: {code} {reason}");
            }
            Some(_) => {}
            None => break,
        }
    }
    client.close(1000, "done").await;
    Ok(ExitCode::SUCCESS)
}

async fn publish(
    url: &str,
    channel: &str,
    data: Option<&str>,
    token: Option<String>,
    codec: &CodecArgs,
) -> anyhow::Result<ExitCode> {
    let data = parse_json(data)?;
    let (client, _events) = connect(url, token, codec).await?;
    let result = client.publish(channel, &data).await;
    client.close(1000, "done").await;
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(ClientError::Remote(err)) => {
            eprintln!("{}: {}", err.name, err.message);
            Ok(ExitCode::from(2))
        }
        Err(err) => Err(err.into()),
    }
}

async fn call_ctproto(
    url: &str,
    kind: &str,
    data: Option<&str>,
    timeout: f64,
    authorize: &str,
) -> anyhow::Result<ExitCode> {
    let payload = parse_json(data)?;
    let authorize: serde_json::Value =
        serde_json::from_str(authorize).context("--authorize is not valid JSON")?;
    let timeout = Duration::try_from_secs_f64(timeout)
        .context("--timeout must be a positive number of seconds")?;
    let (client, _updates) = CtClient::connect(url, authorize).await?;
    let client = client.with_timeout(timeout);
    let result = client.send(kind, payload).await;
    client.close();
    match result {
        Ok(reply) => {
            println!(
                "{}",
                serde_json::to_string(&reply.unwrap_or(serde_json::Value::Null))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Remote(err)) => {
            eprintln!("{}: {}", err.name, err.message);
            println!("{}", serde_json::to_string(&err)?);
            Ok(ExitCode::from(2))
        }
        Err(err) => Err(err.into()),
    }
}

async fn call(
    url: &str,
    route: &str,
    data: Option<&str>,
    timeout: f64,
    transmit: bool,
    codec: &CodecArgs,
) -> anyhow::Result<ExitCode> {
    let data = parse_json(data)?;
    let timeout = Duration::try_from_secs_f64(timeout)
        .context("--timeout must be a positive number of seconds")?;
    let options = ClientOptions::default()
        .auto_reconnect(false)
        .ack_timeout(timeout)
        .encoding(codec.encoding()?);
    let (client, _events) = Client::connect(url, options).await?;
    if transmit {
        client.transmit(route, &data)?;
        client.close(1000, "done").await;
        return Ok(ExitCode::SUCCESS);
    }
    let result = client.invoke(route, &data).await;
    client.close(1000, "done").await;
    match result {
        Ok(reply) => {
            println!(
                "{}",
                serde_json::to_string(&reply.unwrap_or(serde_json::Value::Null))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Remote(err)) => {
            eprintln!("{}: {}", err.name, err.message);
            println!("{}", serde_json::to_string(&err)?);
            Ok(ExitCode::from(2))
        }
        Err(err) => Err(err.into()),
    }
}
