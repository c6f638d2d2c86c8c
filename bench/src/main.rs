//! `sockyard-bench`: measures Sockyard against a minimal fastwebsockets echo server with our
//! own lean load generator, and reports ratios (see `bench/README.md`).

mod args;
mod baseline;
mod bench_config;
mod client;
mod codecs;
mod cpu;
mod fanout;
mod frames;
mod idle;
mod load;
mod pinning;
mod resources;
mod run;
mod runtime;
mod servers;
mod standalone;
mod table;
mod wrap;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmark tools for Sockyard.
#[derive(Debug, Parser)]
#[command(name = "sockyard-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole benchmark: baseline and Sockyard, echo and idle memory, one table.
    Run(run::RunArgs),
    /// Run the codec comparison: Sockyard's echo over JSON, MessagePack and protobuf, one
    /// server with its default endpoints, one table with ratios to JSON.
    Codecs(codecs::CodecsArgs),
    /// Run the resources benchmark: creature/create and creature/get per second over
    /// WebSocket on SQLite and PostgreSQL, beside echo on the same server.
    Resources(resources::ResourcesArgs),
    /// Run the wrap benchmark: `cat` wrapped by sockyard wrap, ScaleSocket 0.2.4 and
    /// websocketd, one room per client and one shared room, one table.
    Wrap(wrap::WrapArgs),
    /// Run the fan-out benchmark: socketcluster-server (Node) and Sockyard, one publisher to
    /// 1,000 and 10,000 subscribers, one table.
    Fanout(fanout::command::FanoutArgs),
    /// Fan-out load on one running server: subscribers on one channel and one publisher.
    FanoutLoad(standalone::FanoutLoadArgs),
    /// Run the baseline echo server (hyper + fastwebsockets defaults, one thread).
    BaselineServer {
        /// Address to listen on; port 0 picks a free port. The bound address is printed.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Load one running server and print what was measured.
    Load(standalone::LoadArgs),
    /// Open idle connections to one running server and print its RSS growth per connection.
    Idle(standalone::IdleArgs),
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::main(&args),
        Command::Codecs(args) => codecs::main(&args),
        Command::Resources(args) => resources::main(&args),
        Command::Wrap(args) => wrap::main(&args),
        Command::Fanout(args) => fanout::command::main(&args),
        Command::FanoutLoad(args) => standalone::fanout_load(&args),
        Command::BaselineServer { listen } => baseline::serve(listen),
        Command::Load(args) => standalone::load(&args),
        Command::Idle(args) => standalone::idle(&args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every subcommand's options with their defaults, as `--help` shows them (the README
    /// quotes these commands).
    #[test]
    fn subcommands_keep_their_flags_and_defaults() {
        let expected: [(&str, &str); 9] = [
            (
                "run",
                "sockyard duration=5 warmup=1 reps=3 idle_connections=5000 payload_bytes=64 \
                 stall_timeout=10 client_cpu=0 server_cpu=1 no_pin",
            ),
            (
                "codecs",
                "sockyard duration=4 warmup=1 reps=3 payload_bytes=64 stall_timeout=10 \
                 client_cpu=0 server_cpu=1 no_pin retries=1",
            ),
            (
                "resources",
                "sockyard duration=4 warmup=1 reps=3 connections=16 \
                 postgres=postgres://postgres@127.0.0.1:5432/test",
            ),
            (
                "wrap",
                "sockyard duration=4 warmup=1 reps=3 scalesocket=scalesocket \
                 websocketd=websocketd clients=50 window=8 shared_clients=100 client_cpu=0 \
                 server_cpu=1 no_pin",
            ),
            (
                "fanout",
                "sockyard duration=5 warmup=1 reps=1 node=node node_dir servers=node,sockyard \
                 subscribers=1000,10000 window=auto max_window=256 step=1 stall_timeout=5 \
                 client_cpu=0 server_cpu=1 no_pin retries=1",
            ),
            (
                "fanout-load",
                "url subscribers=1000 window=auto max_window=256 step=1 stall_timeout=5 \
                 latency_budget_us rate duration=5 warmup=1 server_pid",
            ),
            ("baseline-server", "listen=127.0.0.1:0"),
            (
                "load",
                "url mode=sc connections=50 window=10 payload_bytes=64 stall_timeout=10 \
                 duration=5 warmup=1 server_pid",
            ),
            ("idle", "url mode=sc connections=5000 server_pid"),
        ];
        let mut cli = Cli::command();
        cli.build();
        for (name, flags) in expected {
            let command = cli
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no subcommand {name}"));
            let shown: Vec<String> = command
                .get_arguments()
                .filter(|arg| arg.get_id() != "help")
                .map(|arg| {
                    let defaults: Vec<_> = arg
                        .get_default_values()
                        .iter()
                        .map(|value| value.to_string_lossy().into_owned())
                        .collect();
                    if defaults.is_empty() || !arg.get_action().takes_values() {
                        arg.get_id().to_string()
                    } else {
                        format!("{}={}", arg.get_id(), defaults.join(","))
                    }
                })
                .collect();
            let mut shown = shown;
            shown.sort();
            let mut flags: Vec<String> = flags.split_whitespace().map(String::from).collect();
            flags.sort();
            assert_eq!(shown, flags, "{name}");
        }
    }
}
