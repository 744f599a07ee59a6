//! Client mode (`rime --server URL`) through the real binary against a
//! real `rime serve`: the same commands print the same thing as on a data
//! directory; `logs --follow` streams a guest's lines; token and
//! reachability errors. Needs the example guests (`scripts/build-guests`).

mod common;

use common::{Server, TOKEN};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn rime_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rime"));
    c.env("RIME_WAL_SEGMENT_MIB", "1")
        .env_remove("RIME_SERVER")
        .env_remove("RIME_TOKEN")
        .env_remove("RUST_LOG");
    c
}

fn run(args: &[&str]) -> Out {
    let o = rime_cmd().args(args).output().expect("run rime");
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn guest_path(name: &str) -> String {
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
    p.to_string_lossy().into_owned()
}

/// The probe's op that ends the script with a result code (`i32` LE).
const RETURN: u8 = 11;

/// A probe script (guests/examples/probe) that logs `msg` at info level.
fn log_script(msg: &str) -> Vec<u8> {
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
enum Target<'a> {
    Dir(&'a Path),
    Server(&'a str),
}

impl Target<'_> {
    fn run(&self, args: &[&str]) -> Out {
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
fn same(dir: &Target, server: &Target, args: &[&str]) -> Out {
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

#[test]
fn server_mode_prints_what_directory_mode_prints() {
    let (local, remote) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Server::start(remote.path(), &["--token", TOKEN]);
    let url = server.base.clone();
    let (dir, srv) = (Target::Dir(local.path()), Target::Server(&url));
    let (counter, probe) = (guest_path("counter"), guest_path("probe"));

    let out = same(
        &dir,
        &srv,
        &["deploy", "counter", &counter, "--deadline", "2s"],
    );
    assert!(
        out.stdout.starts_with("deployed counter (generation 1, "),
        "{}",
        out.stdout
    );
    same(
        &dir,
        &srv,
        &[
            "deploy",
            "probe",
            &probe,
            "--grant",
            "counter:rw",
            "--memory",
            "32MiB",
        ],
    );
    let out = same(&dir, &srv, &["functions"]);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(out.stdout.contains("grants [counter:rw]"), "{}", out.stdout);
    for expect in ["1", "2"] {
        let out = same(&dir, &srv, &["invoke", "counter", "--input", "hits"]);
        assert_eq!(out.stdout, format!("{expect}\n"));
    }
    same(&dir, &srv, &["state", "put", "counter", "a/b c", "hello"]);
    let out = same(&dir, &srv, &["state", "get", "counter", "hits"]);
    assert_eq!(out.stdout, "0x0200000000000000 (i64 2)\n");
    let out = same(&dir, &srv, &["state", "scan", "counter"]);
    assert_eq!(
        out.stdout,
        "a/b c\thello\nhits\t0x0200000000000000 (i64 2)\n"
    );
    let out = same(
        &dir,
        &srv,
        &["state", "scan", "counter", "--start", "b", "--limit", "1"],
    );
    assert_eq!(out.stdout, "hits\t0x0200000000000000 (i64 2)\n");
    same(&dir, &srv, &["state", "del", "counter", "a/b c"]);

    // Failures: the same message, the same exit status.
    let out = same(&dir, &srv, &["state", "get", "counter", "a/b c"]);
    assert_eq!(out.stderr, "rime: counter/a/b c: not found\n");
    let out = same(&dir, &srv, &["invoke", "nope"]);
    assert_eq!(
        out.stderr,
        "rime: invoking nope: no function named \"nope\"\n"
    );
    let out = same(&dir, &srv, &["state", "get", "Bad", "k"]);
    assert!(
        out.stderr.contains("invalid namespace \"Bad\""),
        "{}",
        out.stderr
    );
    let out = same(
        &dir,
        &srv,
        &["deploy", "x", &guest_path("counter"), "--memory", "8GiB"],
    );
    assert!(
        out.stderr.starts_with("rime: deploying x: memory limit"),
        "{}",
        out.stderr
    );

    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(big.path(), vec![b'x'; (1 << 20) + 1]).unwrap();
    let out = same(
        &dir,
        &srv,
        &[
            "invoke",
            "counter",
            "--input-file",
            big.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.stderr.contains("input of 1048577 bytes exceeds"),
        "{}",
        out.stderr
    );

    // The guest's log lines go to stderr, the output to stdout, both ways.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), log_script("hello from probe")).unwrap();
    let input = script.path().to_str().unwrap();
    let out = same(&dir, &srv, &["invoke", "probe", "--input-file", input]);
    assert_eq!(out.stdout, "log\n");
    assert_eq!(out.stderr, "log info: hello from probe\n");

    // A failed invocation's lines too, before its error.
    let mut failing = log_script("about to fail");
    failing.extend_from_slice(&[RETURN, 1, 0, 0, 0]);
    std::fs::write(script.path(), failing).unwrap();
    let out = same(&dir, &srv, &["invoke", "probe", "--input-file", input]);
    assert_eq!(
        out.stderr,
        "log info: about to fail\nrime: invoking probe: function error (1): log\n\n"
    );

    // Stats: the same lines, their values each process's own.
    let (d, s) = (dir.run(&["stats"]), srv.run(&["stats"]));
    assert!(d.ok && s.ok, "{} / {}", d.stderr, s.stderr);
    let heads = |t: &str| t.lines().map(|l| l[..17].to_string()).collect::<Vec<_>>();
    assert_eq!(heads(&d.stdout), heads(&s.stdout));
    assert!(
        s.stdout.contains("functions        2 deployed"),
        "{}",
        s.stdout
    );
    assert!(
        s.stdout.contains("invocations      3 committed, 1 failed"),
        "{}",
        s.stdout
    );

    // Per-function labels on the invocation metrics: deployed ones only.
    let page = ureq::get(&server.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for line in [
        "rime_function_invocations_total{function=\"counter\"} 2",
        "rime_function_invocations_total{function=\"probe\"} 2",
    ] {
        assert!(page.contains(line), "{line} not in\n{page}");
    }
    assert!(!page.contains("function=\"nope\""), "{page}");
    let errors = "rime_function_invocation_errors_total{function=\"probe\"} 1";
    assert!(page.contains(errors), "{errors} not in\n{page}");

    let out = same(&dir, &srv, &["undeploy", "counter"]);
    assert_eq!(
        out.stdout,
        "undeployed counter (its namespace's data stays)\n"
    );
    same(&dir, &srv, &["functions"]);
    let page = ureq::get(&server.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(!page.contains("function=\"counter\""), "{page}");
}

/// Reads the follower's stdout lines into a channel.
fn lines_of(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
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

fn next_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("no line from `rime logs --follow` ({what}): {e}"))
}

#[test]
fn logs_follow_streams_new_lines_until_the_server_stops() {
    let data = tempfile::tempdir().unwrap();
    // A short idle timeout: a quiet follower must outlive it.
    let server = Server::start(data.path(), &["--token", TOKEN, "--idle-timeout", "1s"]);
    let srv = Target::Server(&server.base);
    assert!(srv.run(&["deploy", "probe", &guest_path("probe")]).ok);
    let script = tempfile::NamedTempFile::new().unwrap();
    let invoke_logging = |msg: &str| {
        std::fs::write(script.path(), log_script(msg)).unwrap();
        let out = srv.run(&[
            "invoke",
            "probe",
            "--input-file",
            script.path().to_str().unwrap(),
        ]);
        assert!(out.ok, "{}", out.stderr);
    };
    invoke_logging("before following");

    let mut follower = rime_cmd()
        .args([
            "--server",
            &server.base,
            "--token",
            TOKEN,
            "logs",
            "probe",
            "--follow",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(follower.stdout.take().unwrap());
    // The kept line first: once it is printed, the follower is subscribed.
    let first = next_line(&rx, "the kept line");
    assert!(first.ends_with(" INFO  before following"), "{first}");
    assert!(first.starts_with("20") && first.contains('T'), "{first}");
    std::thread::sleep(Duration::from_millis(2500));
    invoke_logging("after following");
    let second = next_line(&rx, "a line logged after it started");
    assert!(second.ends_with(" INFO  after following"), "{second}");

    // A follower that disconnects ends its stream and connection at once
    // (not at the next line): then only the metrics request is open.
    let mut quitter = rime_cmd()
        .args([
            "--server",
            &server.base,
            "--token",
            TOKEN,
            "logs",
            "probe",
            "-f",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let quitter_lines = lines_of(quitter.stdout.take().unwrap());
    next_line(&quitter_lines, "the quitter's first line");
    assert_eq!(server.metric("rime_http_connections"), 3);
    quitter.kill().unwrap();
    quitter.wait().unwrap();
    common::wait_until(
        Duration::from_secs(10),
        "the quitter's connection closes",
        || server.metric("rime_http_connections") == 2,
    );

    // Without --follow: the kept lines, then the command ends.
    let out = srv.run(&["logs", "probe"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    let out = srv.run(&["logs", "nope"]);
    assert_eq!(out.stderr, "rime: no function named \"nope\"\n");

    // A stopping server ends the stream: the follower exits, and so does
    // the server (the follower's connection does not hold it up).
    assert!(server.terminate().success());
    let status = wait_exit(&mut follower, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
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

#[test]
fn logs_need_a_server() {
    let data = tempfile::tempdir().unwrap();
    let out = run(&["logs", "probe"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("live in the running server"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--server URL"), "{}", out.stderr);
    let d = data.path().to_str().unwrap();
    let out = run(&["--server", "http://127.0.0.1:1", "check", "--data", d]);
    assert!(
        out.stderr.contains("work on a data directory"),
        "{}",
        out.stderr
    );
}

#[test]
fn token_and_reachability_errors() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--token", TOKEN]);
    let url = server.base.as_str();

    let out = run(&["--server", url, "functions"]);
    assert!(!out.ok);
    assert_eq!(
        out.stderr,
        format!(
            "rime: the server at {url} refused the request: missing Authorization: Bearer \
             <token> header (pass --token T or set RIME_TOKEN; a server keeps its token in \
             DATA/token)\n"
        )
    );
    let out = run(&["--server", url, "--token", "wrong", "functions"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("refused the request: wrong token"),
        "{}",
        out.stderr
    );
    // The environment works as the flags do.
    let o = rime_cmd()
        .args(["functions"])
        .env("RIME_SERVER", url)
        .env("RIME_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // RIME_TOKEN alone (for `rime serve`) leaves the commands on a directory.
    let o = rime_cmd()
        .args(["functions", "--data", data.path().to_str().unwrap()])
        .env("RIME_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("is in use"), "{stderr}");
    assert!(
        stderr.contains("use --server URL (or RIME_SERVER)"),
        "{stderr}"
    );

    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = format!("http://127.0.0.1:{port}");
    let out = run(&["--server", &dead, "--token", TOKEN, "stats"]);
    assert!(!out.ok);
    assert!(
        out.stderr
            .starts_with(&format!("rime: cannot reach the server at {dead}: ")),
        "{}",
        out.stderr
    );
    let out = run(&["--server", "https://example.com", "functions"]);
    assert!(out.stderr.contains("plain HTTP"), "{}", out.stderr);
}

/// One `info` line per request, with the function and the retries.
#[test]
fn every_request_logs_one_line() {
    let data = tempfile::tempdir().unwrap();
    let mut child = rime_cmd()
        .args([
            "--log",
            "rime::serve=info",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--token", TOKEN, "--data", data.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let log = lines_of(child.stderr.take().unwrap());
    let srv = Target::Server(&url);
    assert!(srv.run(&["deploy", "counter", &guest_path("counter")]).ok);
    assert!(srv.run(&["invoke", "counter"]).ok);
    assert!(!srv.run(&["invoke", "nope"]).ok);
    let mut requests = Vec::new();
    while requests.len() < 3 {
        let line = next_line(&log, "the request log");
        if line.contains("request") {
            requests.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let want: [&[&str]; 3] = [
        &[
            "INFO",
            "method=POST",
            "path=\"/functions/counter\"",
            "status=201",
            "function=\"counter\"",
        ],
        &[
            "method=POST",
            "path=\"/invoke/counter\"",
            "status=200",
            "function=\"counter\"",
            "retries=0",
        ],
        &["path=\"/invoke/nope\"", "status=404", "function=\"nope\""],
    ];
    for (line, fields) in requests.iter().zip(want) {
        for f in fields {
            assert!(line.contains(f), "{f} not in {line}");
        }
        assert!(line.contains("duration_us="), "{line}");
    }
}
