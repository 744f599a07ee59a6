//! The `rime` binary.
//!
//! `rime demo` exercises the storage layers beneath the faaslet runtime: the buffer manager and a persistent B+tree,
//! shared by concurrent threads the way faaslets will share state.
#![deny(unsafe_code)]

mod demo;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "rime",
    version,
    about = "Faaslets against shared, persistent state"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Concurrent threads share a persistent tree on a data directory; run
    /// it twice and the state carries over.
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The data directory argument every subcommand shares.
fn default_data_dir() -> PathBuf {
    PathBuf::from("rime-data")
}
