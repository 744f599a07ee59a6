//! What the tests of `rime serve` share: a real server process on
//! 127.0.0.1 and a real HTTP client, plus raw sockets for what a client
//! library will not do (idle connections, headers without their body).
#![allow(dead_code)]

pub mod bank;
pub mod client;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The built example guest `name` (`$RIME_GUESTS_DIR`, else the guests'
/// target directory); missing, the test fails saying what to run.
pub fn guest_file(name: &str) -> PathBuf {
    let dir = match std::env::var_os("RIME_GUESTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../guests/target/wasm32-unknown-unknown/release"),
    };
    let p = dir.join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-guests",
        p.display()
    );
    p
}

/// The built component guest `name` (`guests/components/`, built for
/// wasm32-wasip2 and by componentize-py / componentize-js); missing, the
/// test fails saying what to run.
pub fn component_file(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/components/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-guests (it needs the wasm32-wasip2 target, \
         python3 with venv and pip, node with npm)",
        p.display()
    );
    p
}

/// Runs the `rime` binary with `args` (1 MiB log segments: a debug build
/// scans the default 64 MiB at every open): success, stdout, stderr.
pub fn rime_output(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rime"))
        .env("RIME_WAL_SEGMENT_MIB", "1")
        .args(args)
        .output()
        .expect("run rime");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The bytes of [`guest_file`].
pub fn guest(name: &str) -> Vec<u8> {
    let p = guest_file(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::spawn(Command::new(env!("CARGO_BIN_EXE_rime")), data, extra)
    }

    /// [`Server::start`] under a shell's `ulimit` first (e.g. `-Sn 256`:
    /// a soft limit of 256 open files).
    pub fn start_with_ulimit(ulimit: &str, data: &Path, extra: &[&str]) -> Server {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("ulimit {ulimit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_rime"));
        Server::spawn(sh, data, extra)
    }

    fn spawn(mut cmd: Command, data: &Path, extra: &[&str]) -> Server {
        let mut child = cmd
            .args([
                "--log",
                "warn",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(data)
            .args(extra)
            .env("RIME_WAL_SEGMENT_MIB", "1")
            .env_remove("RIME_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rime serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Server {
            child,
            base: addr.to_string(),
        }
    }

    /// The server's (soft, hard) limits on open files.
    pub fn nofile_limits(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let mut n = line["Max open files".len()..]
            .split_whitespace()
            .map(|v| v.parse().unwrap());
        (n.next().unwrap(), n.next().unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A raw TCP connection to the server.
    pub fn connect(&self) -> TcpStream {
        let addr = self.base.strip_prefix("http://").unwrap();
        TcpStream::connect(addr).expect("connect")
    }

    /// The value of the unlabelled metric `name` in `GET /metrics`.
    pub fn metric(&self, name: &str) -> u64 {
        let m = self.metrics().expect("GET /metrics failed");
        *m.get(name).unwrap_or_else(|| panic!("no {name} in {m:?}"))
    }

    /// The unlabelled samples of `GET /metrics` by name; `None` if the
    /// request failed (a connection over the server's cap is refused).
    pub fn metrics(&self) -> Option<HashMap<String, u64>> {
        let resp = ureq::get(&self.url("/metrics")).call().ok()?;
        let page = resp.into_string().ok()?;
        Some(samples(&page))
    }

    /// SIGTERM, then the exit status (within 30 s).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of our own child, which has not been
        // waited for yet (so the pid cannot have been reused).
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (status, body) of any response, errors included.
pub fn send(req: ureq::Request, body: Option<&[u8]>) -> (u16, Vec<u8>) {
    let r = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let mut out = Vec::new();
    resp.into_reader().read_to_end(&mut out).unwrap();
    (status, out)
}

/// The unlabelled samples of a Prometheus text page, by name.
pub fn samples(page: &str) -> HashMap<String, u64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Calls `done` until it returns true: how a test waits for the server to
/// get somewhere, instead of sleeping for long enough. Panics with `what`
/// if that takes more than `within`.
pub fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < within, "{what} (waited {within:?})");
        std::thread::yield_now();
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The error code of a JSON error body.
pub fn code(b: &[u8]) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(b).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(b)));
    v["error"]["code"].as_str().unwrap().to_string()
}

pub const TOKEN: &str = "test-token-1234";

pub fn auth(req: ureq::Request) -> ureq::Request {
    req.set("Authorization", &format!("Bearer {TOKEN}"))
}

/// Everything `s` sends until it closes the connection; `Err` (with what
/// came so far) if it has not closed it `within`.
pub fn read_to_eof(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(out);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(out),
        }
    }
}

/// Sends `request` (a raw HTTP/1.1 head, and body if any) and reads one
/// response: its head (lowercased) and its body (by `content-length`).
pub fn exchange(s: &mut TcpStream, request: &[u8]) -> (String, Vec<u8>) {
    s.write_all(request).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).expect("reading a response head");
        assert!(n > 0, "closed before a response: {}", text(&got));
        got.extend_from_slice(&buf[..n]);
    };
    let head = text(&got[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = got[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).expect("reading a response body");
        assert!(n > 0, "closed in a response body");
        body.extend_from_slice(&buf[..n]);
    }
    (head, body)
}
