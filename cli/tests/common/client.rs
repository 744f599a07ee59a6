//! What the client-mode tests share: the real `rime` binary run as a user
//! would (on a directory or through `--server`), the example guests, and
//! a probe script that logs.

use super::TOKEN;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn rime_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rime"));
    c.env("RIME_WAL_SEGMENT_MIB", "1")
        .env_remove("RIME_SERVER")
        .env_remove("RIME_TOKEN")
        .env_remove("RUST_LOG");
    c
}

pub fn run(args: &[&str]) -> Out {
    let o = rime_cmd().args(args).output().expect("run rime");
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

pub fn guest_path(name: &str) -> String {
    super::guest_file(name).to_string_lossy().into_owned()
}

/// The probe's op that ends the script with a result code (`i32` LE).
pub const RETURN: u8 = 11;

/// A probe script (guests/examples/probe) that logs `msg` at info level.
pub fn log_script(msg: &str) -> Vec<u8> {
    const LOG: u8 = 10;
    const LIT: u8 = 0;
    const INFO: i32 = 2;
    let mut s = vec![LOG];
    s.extend_from_slice(&INFO.to_le_bytes());
    s.push(LIT);
    s.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    s.extend_from_slice(msg.as_bytes());
    s
}

/// Runs `args` on a directory (`--data DIR` appended) or through a
/// server (`--server URL --token T` first).
pub enum Target<'a> {
    Dir(&'a Path),
    Server(&'a str),
}

impl Target<'_> {
    pub fn run(&self, args: &[&str]) -> Out {
        match self {
            Target::Dir(d) => {
                let mut a: Vec<&str> = args.to_vec();
                // `--data` belongs to the subcommand, and to `state`'s
                // parent: before the state op.
                let at = if a[0] == "state" { 1 } else { a.len() };
                let d = d.to_str().unwrap();
                a.splice(at..at, ["--data", d]);
                run(&a)
            }
            Target::Server(url) => {
                let mut a = vec!["--server", url, "--token", TOKEN];
                a.extend_from_slice(args);
                run(&a)
            }
        }
    }
}

/// Runs `args` both ways: both succeed or both fail, with the same stdout
/// and the same stderr.
pub fn same(dir: &Target, server: &Target, args: &[&str]) -> Out {
    let (d, s) = (dir.run(args), server.run(args));
    assert_eq!(
        d.ok, s.ok,
        "{args:?}: dir {:?} / server {:?}",
        d.stderr, s.stderr
    );
    assert_eq!(d.stdout, s.stdout, "{args:?}");
    assert_eq!(d.stderr, s.stderr, "{args:?}");
    s
}

/// Reads the follower's stdout lines into a channel.
pub fn lines_of(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

pub fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("no line from `rime logs --follow` ({what}): {e}"))
}

pub fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let t = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > within {
            let _ = child.kill();
            panic!("`rime logs --follow` still running {within:?} after the server stopped");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
