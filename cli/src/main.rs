//! The `rime` binary: the demo, the administrative subcommands and the HTTP
//! server (`docs/http.md`), all over one data directory:
//!
//! ```text
//! DATA/            the Db's files (LOCK, superblock, pages.db, wal/)
//! DATA/cache/      compiled modules (rime-faas's module cache)
//! DATA/token       the server's bearer token (created by the first `serve`)
//! ```
#![forbid(unsafe_code)]

mod cmd;
mod config;
mod conn;
mod demo;
mod env;
mod query;
mod serve;

use clap::{Parser, Subcommand};
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
    #[command(flatten)]
    global: config::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    env::init_logging(cli.log.as_deref(), default_level);
    let result = config::Settings::resolve(&cli.global).and_then(|s| match &cli.command {
        Command::Demo(args) => demo::run(args, &s),
        Command::Deploy(args) => cmd::deploy(args, &s),
        Command::Undeploy(args) => cmd::undeploy(args, &s),
        Command::Functions => cmd::functions(&s),
        Command::Invoke(args) => cmd::invoke(args, &s),
        Command::State(args) => cmd::state(args, &s),
        Command::Serve(args) => serve::run(args, &s),
        Command::Stats => cmd::stats(&s),
        Command::Check => cmd::check(&s),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rime: {e}");
            ExitCode::FAILURE
        }
    }
}
