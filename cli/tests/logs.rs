//! Logs through the real binary against a real `rime serve`: `rime logs
//! --follow` streams a guest's lines as it logs them, past the idle
//! timeout, until the server stops; one request log line per request.
//! Needs the example guests (`scripts/build-guests`).

mod common;

use common::client::*;
use common::{Server, TOKEN};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

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
