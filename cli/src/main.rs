//! The `rime` binary: the demo, the administrative subcommands and the HTTP
//! server (`docs/http.md`), all over one data directory:
//!
//! ```text
//! DATA/            the Db's files (LOCK, superblock, pages.db, wal/)
//! DATA/cache/      compiled modules (rime-faas's module cache)
//! DATA/token       the server's bearer token (created by the first `serve`)
//! ```
//!
//! With `--server URL` (or `RIME_SERVER`), deploy, undeploy, functions,
//! invoke, state, stats and logs talk to a running `rime serve` instead
//! (`remote.rs` over `client.rs`); both print through `show.rs`.
#![forbid(unsafe_code)]

mod client;
mod cmd;
mod config;
mod conn;
mod demo;
mod env;
mod global_state;
mod query;
mod remote;
mod scaffold;
mod serve;
mod show;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use client::Client;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "rime",
    version,
    about = "Faaslets against shared, persistent state"
)]
struct Cli {
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a
    /// `tracing` directive such as `rime=debug`). Overrides `RUST_LOG`.
    #[arg(long, global = true)]
    log: Option<String>,
    /// A running `rime serve` (`http://HOST:PORT`): deploy, undeploy,
    /// functions, invoke, state, stats and logs go to it over HTTP instead
    /// of opening a data directory.
    #[arg(long, env = "RIME_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The server's bearer token (with `--server`).
    #[arg(long, env = "RIME_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    global: config::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a new function's crate: `rime new hello`, then `rime build`.
    New(scaffold::NewArgs),
    /// Builds the function's crate in DIR for wasm32 (release) and prints
    /// the path of its .wasm.
    Build(scaffold::BuildArgs),
    /// Deploys the example faaslets and runs concurrent counter increments
    /// and bank transfers on a data directory; run it twice and the state
    /// carries over.
    Demo(demo::Args),
    /// Deploys (or redeploys) a function from a .wasm file.
    Deploy(cmd::DeployArgs),
    /// Removes a function (its namespace's data stays).
    Undeploy(cmd::NameArgs),
    /// Lists the deployed functions.
    Functions,
    /// Runs a function once; prints its output.
    Invoke(cmd::InvokeArgs),
    /// Reads and writes a namespace's keys directly.
    State(cmd::StateArgs),
    /// Serves the HTTP API (docs/http.md).
    Serve(serve::Args),
    /// Counters of the data directory: pool, I/O, commits, functions.
    Stats,
    /// Offline check of a data directory: recovery, checksums, tree invariants.
    Check,
    /// Prints a function's recent log lines, kept by the running server
    /// (needs `--server`); `--follow` keeps printing new ones.
    Logs(cmd::LogsArgs),
    /// Prints a shell completion script, e.g.
    /// `rime completions bash > ~/.local/share/bash-completion/completions/rime`.
    Completions {
        /// bash, zsh, fish (also elvish, powershell).
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let server_flag = matches.value_source("server") == Some(ValueSource::CommandLine);
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        // Guest log lines go to stderr through the runtime's sink: not twice.
        Command::Invoke(_) => "warn,rime::faaslet=off",
        _ => "warn",
    };
    env::init_logging(cli.log.as_deref(), default_level);
    let client = match cli
        .server
        .as_deref()
        .map(|url| Client::new(url, cli.token.clone()))
    {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => return fail(e),
    };
    let result = match client {
        Some(c) => on_server(&c, cli.command, &cli.global, server_flag),
        None => on_directory(cli.command, &cli.global).map_err(with_server_hint),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// A directory held by another process is most often a running server's:
/// say how to reach it instead.
fn with_server_hint(e: env::Error) -> env::Error {
    let m = e.to_string();
    if m.contains("is in use by another process") {
        format!("{m}; if `rime serve` runs on it, use --server URL (or RIME_SERVER)").into()
    } else {
        e
    }
}

fn fail(e: env::Error) -> ExitCode {
    eprintln!("rime: {e}");
    ExitCode::FAILURE
}

/// The commands on a data directory (`--data`, `RIME_DATA`, `rime.toml`;
/// resolved only by those that use one), and those that need none.
fn on_directory(command: Command, global: &config::GlobalArgs) -> env::Result<()> {
    let data = || config::Settings::resolve(global);
    match command {
        Command::Demo(args) => demo::run(&args, &data()?),
        Command::Deploy(args) => cmd::deploy(&args, &data()?),
        Command::Undeploy(args) => cmd::undeploy(&args, &data()?),
        Command::Functions => cmd::functions(&data()?),
        Command::Invoke(args) => cmd::invoke(&args, &data()?),
        Command::State(args) => cmd::state(&args, &data()?),
        Command::Serve(args) => serve::run(&args, &data()?),
        Command::Stats => cmd::stats(&data()?),
        Command::Check => cmd::check(&data()?),
        Command::Logs(_) => remote::logs_without_server(),
        Command::New(args) => scaffold::new(&args),
        Command::Build(args) => scaffold::build(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rime", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The commands through a running server. `demo`, `serve` and `check`
/// work on a directory: with `RIME_SERVER` set they ignore it, with
/// `--server` they say so.
fn on_server(
    c: &Client,
    command: Command,
    global: &config::GlobalArgs,
    server_flag: bool,
) -> env::Result<()> {
    match command {
        Command::Deploy(args) => remote::deploy(c, &args),
        Command::Undeploy(args) => remote::undeploy(c, &args),
        Command::Functions => remote::functions(c),
        Command::Invoke(args) => remote::invoke(c, &args),
        Command::State(args) => remote::state(c, &args),
        Command::Stats => remote::stats(c),
        Command::Logs(args) => remote::logs(c, &args),
        Command::Demo(_) | Command::Serve(_) | Command::Check if server_flag => Err(
            "--server: demo, serve and check work on a data directory (--data), not \
                 through a server"
                .into(),
        ),
        other => on_directory(other, global),
    }
}
