//! Client mode: the administrative commands against a running `rime
//! serve` (`rime --server URL [--token T]`, or `RIME_SERVER` and
//! `RIME_TOKEN`), over its HTTP API (`crate::client`). They take the same
//! arguments as on a directory (`--data` is ignored) and print the same
//! thing (`crate::show`).

use crate::client::Client;
use crate::cmd::{self, DeployArgs, InvokeArgs, LogsArgs, NameArgs, StateArgs, StateOp};
use crate::env::{self, Result};
use crate::show;

pub fn deploy(c: &Client, a: &DeployArgs) -> Result<()> {
    let wasm = std::fs::read(&a.file).map_err(|e| format!("reading {}: {e}", a.file.display()))?;
    let settings = cmd::settings(a)?;
    let f = c.deploy(&a.name, &wasm, a, &settings)?;
    println!("{}", show::deployed(&f));
    Ok(())
}

pub fn undeploy(c: &Client, a: &NameArgs) -> Result<()> {
    c.undeploy(&a.name)?;
    println!("{}", show::undeployed(&a.name));
    Ok(())
}

pub fn functions(c: &Client) -> Result<()> {
    let (fs, unloadable) = c.functions()?;
    for f in &fs {
        println!("{}", show::function_line(f));
    }
    for (name, reason) in unloadable {
        println!("{}", show::unloadable_line(&name, &reason));
    }
    Ok(())
}

/// The output on stdout, the guest's log lines on stderr (a failed
/// invocation's too, before its error).
pub fn invoke(c: &Client, a: &InvokeArgs) -> Result<()> {
    let input = cmd::invoke_input(a)?;
    // The server's body limit would answer first, in other words.
    let max = rime_faas::limits::MAX_INPUT_LEN;
    if input.len() > max {
        let e = rime_faas::InvokeError::InputTooLarge {
            len: input.len(),
            max,
        };
        return Err(format!("invoking {}: {e}", a.name).into());
    }
    let mut print = |level: &str, message: &str| {
        eprintln!("{}", show::invoke_log_line(level, message));
    };
    let output = c.invoke(&a.name, &input, &mut print)?;
    cmd::print_output(&output)
}

pub fn state(c: &Client, a: &StateArgs) -> Result<()> {
    match &a.op {
        StateOp::Get { ns, key } => {
            cmd::check_ns(ns)?;
            match c.state_get(ns, key)? {
                Some(v) => println!("{}", env::show_bytes(&v)),
                None => return Err(show::no_key(ns, key).into()),
            }
        }
        StateOp::Put { ns, key, value } => {
            cmd::check_ns(ns)?;
            c.state_put(ns, key, value.as_bytes())?;
        }
        StateOp::Del { ns, key } => {
            cmd::check_ns(ns)?;
            if !c.state_delete(ns, key)? {
                return Err(show::no_key(ns, key).into());
            }
        }
        StateOp::Scan {
            ns,
            start,
            end,
            limit,
        } => {
            cmd::check_ns(ns)?;
            let pairs = c.state_scan(
                ns,
                start.as_deref().map(str::as_bytes),
                end.as_deref().map(str::as_bytes),
                *limit,
            )?;
            for (k, v) in pairs {
                println!("{}", show::pair_line(&k, &v));
            }
        }
    }
    Ok(())
}

pub fn stats(c: &Client) -> Result<()> {
    for line in c.stats()?.lines() {
        println!("{line}");
    }
    Ok(())
}

pub fn logs(c: &Client, a: &LogsArgs) -> Result<()> {
    c.logs(&a.name, a.follow, &mut std::io::stdout().lock())
}

/// `rime logs` without `--server`: a directory keeps no logs.
pub fn logs_without_server() -> Result<()> {
    Err(
        "guest log lines live in the running server (a data directory keeps none): pass \
         --server URL (or set RIME_SERVER) to read them from `rime serve`"
            .into(),
    )
}
