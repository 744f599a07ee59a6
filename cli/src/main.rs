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
mod conn;
mod demo;
mod env;
mod query;
mod scaffold;
mod serve;

use clap::{CommandFactory, Parser, Subcommand};
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
    Functions(cmd::DataArgs),
    /// Runs a function once; prints its output.
    Invoke(cmd::InvokeArgs),
    /// Reads and writes a namespace's keys directly.
    State(cmd::StateArgs),
    /// Serves the HTTP API (docs/http.md).
    Serve(serve::Args),
    /// Counters of the data directory: pool, I/O, commits, functions.
    Stats(cmd::DataArgs),
    /// Offline check of a data directory: recovery, checksums, tree invariants.
    Check(cmd::DataArgs),
    /// Prints a shell completion script, e.g.
    /// `rime completions bash > ~/.local/share/bash-completion/completions/rime`.
    Completions {
        /// bash, zsh, fish (also elvish, powershell).
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    env::init_logging(cli.log.as_deref(), default_level);
    let result = match cli.command {
        Command::New(args) => scaffold::new(&args),
        Command::Build(args) => scaffold::build(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Deploy(args) => cmd::deploy(&args),
        Command::Undeploy(args) => cmd::undeploy(&args),
        Command::Functions(args) => cmd::functions(&args),
        Command::Invoke(args) => cmd::invoke(&args),
        Command::State(args) => cmd::state(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Stats(args) => cmd::stats(&args),
        Command::Check(args) => cmd::check(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rime", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rime: {e}");
            ExitCode::FAILURE
        }
    }
}
