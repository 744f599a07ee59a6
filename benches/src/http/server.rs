//! `rime serve` as a child process: where the binary and the guests are,
//! starting it on a fresh data directory and a free port, and stopping it
//! whatever happens ([`Server`]'s `Drop` kills it, on errors and panics
//! too).

use super::Res;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the server may take to print its `listening on` line (a debug
/// build compiles slowly and opens its log slowly).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of the server's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// The `rime` binary: `explicit` if given, else the one next to this
/// executable (the same target directory).
pub fn rime_binary(explicit: Option<&Path>) -> Res<PathBuf> {
    if let Some(p) = explicit {
        return match p.is_file() {
            true => Ok(p.to_path_buf()),
            false => Err(format!("--rime {}: no such file", p.display()).into()),
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let beside = exe.with_file_name("rime");
    if beside.is_file() {
        return Ok(beside);
    }
    Err(format!(
        "no `rime` binary at {} (build it first: `cargo build --release -p rime-cli`, \
         into the same target directory, or pass --rime PATH)",
        beside.display()
    )
    .into())
}

/// The directory of the built guests: `$RIME_GUESTS_DIR`, else the guests
/// workspace's release output (as `engines::rime_faas::kv_wasm_path`).
pub fn guests_dir() -> PathBuf {
    std::env::var_os("RIME_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../guests/target/wasm32-unknown-unknown/release")
        })
}

/// The module `name.wasm` from [`guests_dir`].
pub fn guest_wasm(name: &str) -> Res<Vec<u8>> {
    read_wasm(&guests_dir().join(format!("{name}.wasm")))
}

/// The directory of the built component guests: `$RIME_COMPONENTS_DIR`,
/// else the component workspace's release output (as faas's tests).
pub fn components_dir() -> PathBuf {
    std::env::var_os("RIME_COMPONENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../guests/components/target/wasm32-wasip2/release")
        })
}

/// The component `name.wasm` from [`components_dir`].
pub fn component_wasm(name: &str) -> Res<Vec<u8>> {
    read_wasm(&components_dir().join(format!("{name}.wasm")))
}

fn read_wasm(path: &Path) -> Res<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        format!(
            "{}: {e} (build the guests first: scripts/build-guests)",
            path.display()
        )
        .into()
    })
}

/// What a server is started with.
pub struct ServerConfig<'a> {
    pub rime: &'a Path,
    /// A fresh directory is made in here for each server.
    pub data_root: &'a Path,
    pub max_connections: usize,
    /// Passed to `rime serve` after the bench's own arguments.
    pub extra_args: &'a [String],
}

/// A running `rime serve`; killed (SIGKILL) and its data directory removed
/// when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub token: String,
    /// Holds the data directory and the server's log; removed on drop,
    /// after the child (fields drop after `Drop::drop`).
    dir: tempfile::TempDir,
}

impl Server {
    pub fn start(cfg: &ServerConfig) -> Res<Server> {
        std::fs::create_dir_all(cfg.data_root)
            .map_err(|e| format!("{}: {e}", cfg.data_root.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("rime-serve-http")
            .tempdir_in(cfg.data_root)
            .map_err(|e| format!("temp dir in {}: {e}", cfg.data_root.display()))?;
        let token = new_token();
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = Command::new(cfg.rime)
            .args(["--log", "warn", "serve", "--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--max-connections")
            .arg(cfg.max_connections.to_string())
            // Full-size log segments, as a production server runs.
            .arg("--wal-preallocate")
            .args(cfg.extra_args)
            .env("RIME_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", cfg.rime.display()))?;
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token,
            dir,
        };
        server.addr = server.listening_addr()?;
        Ok(server)
    }

    /// The process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the first line of standard output, `listening on http://ADDR`;
    /// the rest is drained on a thread so the server never blocks on it.
    fn listening_addr(&mut self) -> Res<SocketAddr> {
        let stdout = self.child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let first = r.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(self.failed(&format!("reading its output: {e}"))),
            Err(_) => return Err(self.failed("no `listening on` line in time")),
        };
        line.trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| self.failed(&format!("unexpected first line {line:?}")))
    }

    /// An error saying what went wrong with the server, with its exit status
    /// and the tail of its log.
    fn failed(&mut self, what: &str) -> Box<dyn std::error::Error + Send + Sync> {
        std::thread::sleep(Duration::from_millis(200));
        let status = match self.child.try_wait() {
            Ok(Some(s)) => format!("exited with {s}"),
            _ => "still running".to_string(),
        };
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("rime serve failed ({what}; {status}); the end of its log:\n{tail}").into()
    }

    /// `Err` if the server has exited.
    pub fn check_alive(&mut self) -> Res<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(s)) => Err(self.failed(&format!("it exited during the run: {s}"))),
            Err(e) => Err(format!("waiting for rime serve: {e}").into()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bearer token for this server only: 32 random bytes, hex.
fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
