//! `rime serve` against hostile clients, through a real server process:
//! each test is named after a failure hostile testing found. Needs the
//! example guests (`scripts/build-guests`, or `RIME_GUESTS_DIR`).

mod common;

use common::{
    Server, TOKEN, auth, code, exchange, guest, read_to_eof, samples, send, text, wait_until,
};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `GET /functions` with the token, retried while it is refused (a
/// refused connection, a 503), for at most `within`; how many times it
/// was refused before it was answered.
fn authenticated_request_succeeds(s: &Server, within: Duration) -> u32 {
    let mut refusals = 0;
    wait_until(within, "no answer", || {
        match auth(ureq::get(&s.url("/functions"))).call() {
            Ok(resp) if resp.status() == 200 => return true,
            Ok(resp) => panic!("unexpected {}", resp.status()),
            Err(ureq::Error::Status(503, _)) | Err(ureq::Error::Transport(_)) => refusals += 1,
            Err(e) => panic!("unexpected {e}"),
        }
        false
    });
    refusals
}

/// Waits until the server has closed every connection but the one asking
/// it (`GET /metrics` counts its own): all the slots they held are free.
fn wait_for_the_connections_to_close(s: &Server) {
    wait_until(Duration::from_secs(10), "connections stay open", || {
        // Refused (the cap is still full) is not there yet either.
        s.metrics().is_some_and(|m| m["rime_http_connections"] <= 1)
    });
}

/// How each of `conns` ends without the client doing anything: what the
/// server sent before it closed the connection, and when (since `t0`).
fn how_they_end(conns: Vec<TcpStream>, t0: Instant) -> Vec<(Vec<u8>, Duration)> {
    std::thread::scope(|sc| {
        let handles: Vec<_> = conns
            .into_iter()
            .map(|mut c| {
                sc.spawn(move || {
                    let got = read_to_eof(&mut c, Duration::from_secs(30))
                        .unwrap_or_else(|got| panic!("still open after 30 s: {}", text(&got)));
                    (got, t0.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// 1,100 idle connections that never sent a byte once exhausted the
/// server's 1,024 descriptors: the server accepted them all and kept them
/// forever. Now the connections over `--max-connections` are answered 503
/// and closed at once, the ones under it are closed by the header timeout,
/// and an authenticated request gets through once they are.
#[test]
fn idle_connections_no_longer_exhaust_the_servers_descriptors() {
    const CAP: usize = 8;
    const IDLE: usize = 20;
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--token",
            TOKEN,
            "--max-connections",
            "8",
            "--header-timeout",
            "2s",
            "--idle-timeout",
            "60s",
        ],
    );
    let t0 = Instant::now();
    let conns: Vec<TcpStream> = (0..IDLE).map(|_| s.connect()).collect();
    let ends = how_they_end(conns, t0);
    let (refused, held): (Vec<_>, Vec<_>) = ends.iter().partition(|(got, _)| !got.is_empty());
    assert_eq!(refused.len(), IDLE - CAP, "{ends:?}");
    for (got, _) in &refused {
        let got = text(got);
        assert!(got.starts_with("HTTP/1.1 503"), "{got}");
        assert!(got.contains("\"overloaded\""), "{got}");
    }
    // The ones over the cap were closed at once, the others only by the
    // header timeout.
    let last_refused = refused.iter().map(|(_, t)| *t).max().unwrap();
    let first_held = held.iter().map(|(_, t)| *t).min().unwrap();
    assert!(last_refused < first_held, "{ends:?}");
    assert!(first_held >= Duration::from_millis(1900), "{ends:?}");
    // Their slots are free again: once the server has closed them, a new
    // request is answered, not refused.
    wait_for_the_connections_to_close(&s);
    let (st, body) = send(auth(ureq::get(&s.url("/functions"))), None);
    assert_eq!(st, 200, "{}", text(&body));

    // Fill the cap again and keep the connections: a new request is refused
    // until the header timeout frees their slots, then answered. The first
    // of them asks, over keep-alive, until it is the only connection open
    // (every earlier one is gone), then begins a request head it never
    // finishes; the others take the rest of the cap.
    let t = Instant::now();
    let mut probe = s.connect();
    let metrics = b"GET /metrics HTTP/1.1\r\nhost: rime\r\n\r\n";
    wait_until(Duration::from_secs(10), "connections stay open", || {
        let (_, page) = exchange(&mut probe, metrics);
        samples(&text(&page))["rime_http_connections"] == 1
    });
    probe.write_all(b"G").unwrap();
    let hold: Vec<TcpStream> = std::iter::once(probe)
        .chain((1..CAP).map(|_| s.connect()))
        .collect();
    let refusals = authenticated_request_succeeds(&s, Duration::from_secs(20));
    assert!(refusals > 0, "answered while the cap was full");
    // Not before the header timeout freed a slot (from `t`, before any of
    // them was accepted or began its head).
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
    // All of them were held (no 503), until the header timeout.
    for (got, _) in how_they_end(hold, Instant::now()) {
        assert!(got.is_empty(), "{}", text(&got));
    }

    assert!(s.metric("rime_http_connections_refused_total") >= (IDLE - CAP) as u64);
    assert_eq!(s.metric("rime_http_header_timeouts_total"), 2 * CAP as u64);
    assert!(s.terminate().success());
}

/// The failure itself, scaled down: 1,100 idle connections against 1,024
/// descriptors becomes 300 against 200. With the default cap (512) the
/// server fits the cap to its limit (200 less 64 reserved: 136), refuses
/// the rest at once, and keeps answering; it used to accept until
/// `accept` failed with EMFILE and then serve no one.
#[test]
fn idle_connections_over_the_descriptor_limit_leave_the_server_answering() {
    const IDLE: usize = 300;
    const FITTED_CAP: usize = 200 - 64;
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start_with_ulimit(
        "-n 200",
        dir.path(),
        &["--token", TOKEN, "--header-timeout", "2s"],
    );
    assert_eq!(s.nofile_limits(), (200, 200));
    let t0 = Instant::now();
    let conns: Vec<TcpStream> = (0..IDLE).map(|_| s.connect()).collect();
    let ends = how_they_end(conns, t0);
    let refused = ends.iter().filter(|(got, _)| !got.is_empty()).count();
    assert_eq!(refused, IDLE - FITTED_CAP);
    // Once the server has closed them, a new request is answered.
    wait_for_the_connections_to_close(&s);
    let (st, body) = send(auth(ureq::get(&s.url("/functions"))), None);
    assert_eq!(st, 200, "{}", text(&body));
    assert!(s.terminate().success());
}

/// The server ran with whatever soft limit on open files it was given
/// (often 1,024) though the hard limit allowed more.
#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start_with_ulimit("-Sn 256", dir.path(), &[]);
    let (soft, hard) = s.nofile_limits();
    assert!(
        hard > 256,
        "the hard limit here is {hard}: nothing to raise"
    );
    assert_eq!(soft, hard);
    assert!(s.terminate().success());
}

/// Keep-alive connections were never closed: an idle one held its
/// descriptor for as long as the client liked.
#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(
        dir.path(),
        &["--idle-timeout", "1s", "--header-timeout", "60s"],
    );
    let mut c = s.connect();
    let request = b"GET /health HTTP/1.1\r\nhost: rime\r\n\r\n";
    // Two requests on one connection: it is kept alive.
    let mut last_sent = Instant::now();
    for _ in 0..2 {
        last_sent = Instant::now();
        let (head, body) = exchange(&mut c, request);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(text(&body), r#"{"status":"ok"}"#);
    }
    let got = read_to_eof(&mut c, Duration::from_secs(30))
        .unwrap_or_else(|got| panic!("idle connection still open after 30 s: {}", text(&got)));
    assert!(got.is_empty(), "{}", text(&got));
    // Not before the idle timeout: the connection's last traffic was the
    // answer to a request sent after `last_sent`.
    let idle = last_sent.elapsed();
    assert!(idle >= Duration::from_secs(1), "{idle:?}");
    assert_eq!(s.metric("rime_http_idle_closed_total"), 1);
    assert!(s.terminate().success());
}

/// A client could send half a request head and stop: the connection stayed
/// open for good (slowloris).
#[test]
fn a_request_head_never_finished_is_closed_after_the_header_timeout() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(
        dir.path(),
        &["--header-timeout", "1s", "--idle-timeout", "60s"],
    );
    // The header timeout runs from the accept, which is after `t`.
    let t = Instant::now();
    let mut c = s.connect();
    c.write_all(b"GET /health HTTP/1.1\r\nhost: rime\r\n")
        .unwrap();
    let got = read_to_eof(&mut c, Duration::from_secs(30))
        .unwrap_or_else(|got| panic!("half a head, still open after 30 s: {}", text(&got)));
    assert!(got.is_empty(), "{}", text(&got));
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(s.metric("rime_http_header_timeouts_total"), 1);
    assert!(s.terminate().success());
}

/// An unauthenticated 16 MiB upload was read in full before its 401 (24
/// of them held open took the server from 9 to 396 MiB). Now the token is
/// checked on the headers: the 401 arrives while the client has sent no
/// byte of the body, and the connection is closed rather than drained.
#[test]
fn unauthenticated_uploads_get_401_before_their_body_is_read() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(dir.path(), &["--token", TOKEN]);
    let uploads = [
        ("POST", "/functions/big", 16usize << 20),
        ("POST", "/invoke/counter", 1 << 20),
        ("PUT", "/state/kv/k", 1 << 20),
    ];
    for (method, path, len) in uploads {
        for authorization in ["", "authorization: Bearer wrong\r\n"] {
            let mut c = s.connect();
            let head = format!(
                "{method} {path} HTTP/1.1\r\nhost: rime\r\ncontent-length: {len}\r\n{authorization}\r\n"
            );
            c.write_all(head.as_bytes()).unwrap();
            // No body: the answer must come anyway, and the end of it.
            let got = read_to_eof(&mut c, Duration::from_secs(20)).unwrap_or_else(|got| {
                panic!(
                    "{method} {path}: no 401 and close without the body: {}",
                    text(&got)
                )
            });
            let got = text(&got);
            assert!(got.starts_with("HTTP/1.1 401"), "{method} {path}: {got}");
            assert!(got.contains("\"unauthorized\""), "{got}");
            assert!(got.to_lowercase().contains("connection: close"), "{got}");
        }
    }
    // A client that sends its whole body before it reads the response
    // still gets the 401, not a reset: the server reads and drops what is
    // in flight before it closes.
    for _ in 0..10 {
        let (st, body) = send(ureq::put(&s.url("/state/kv/k")), Some(&vec![b'x'; 1 << 20]));
        assert_eq!((st, code(&body)), (401, "unauthorized".into()));
    }
    // The token still lets uploads in.
    let (st, body) = send(
        auth(ureq::put(&s.url("/state/kv/k"))),
        Some(&vec![b'x'; 1 << 20]),
    );
    assert_eq!(st, 204, "{}", text(&body));
    assert!(s.terminate().success());
}

/// A scan bound over the key limit reached the storage layer and came
/// back as `500 storage`; it is a bad request.
#[test]
fn scan_bounds_over_the_key_limit_are_400_not_500() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(dir.path(), &["--token", TOKEN]);
    let (st, _) = send(auth(ureq::put(&s.url("/state/kv/a"))), Some(b"1"));
    assert_eq!(st, 204);
    let long = "a".repeat(rime_storage::MAX_KEY_LEN + 1);
    for param in ["start", "end"] {
        let (st, body) = send(
            auth(ureq::get(&s.url(&format!("/state/kv?{param}={long}")))),
            None,
        );
        assert_eq!((st, code(&body)), (400, "bad_request".into()));
        assert!(text(&body).contains("at most 512 bytes"), "{}", text(&body));
    }
    let max = "a".repeat(rime_storage::MAX_KEY_LEN);
    let (st, body) = send(
        auth(ureq::get(&s.url(&format!("/state/kv?end={max}")))),
        None,
    );
    assert_eq!(st, 200, "{}", text(&body));
    let scan: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(scan["items"][0]["key"], "a");
    assert!(s.terminate().success());
}

/// `start=%FF` was decoded as text and became U+FFFD (EF BF BD), so the
/// scan started at the wrong key; keys are bytes, and percent-escapes in
/// keys and bounds are now decoded to bytes, in the query and the path.
#[test]
fn percent_escaped_keys_are_raw_bytes_not_replacement_characters() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(dir.path(), &["--token", TOKEN]);
    for key in ["y", "z", "%F0", "%FF%00a", "%FF%01"] {
        let (st, body) = send(
            auth(ureq::put(&s.url(&format!("/state/kv/{key}")))),
            Some(key.as_bytes()),
        );
        assert_eq!(st, 204, "{key}: {}", text(&body));
    }
    let (st, body) = send(auth(ureq::get(&s.url("/state/kv/%FF%00a"))), None);
    assert_eq!((st, text(&body)), (200, "%FF%00a".into()));

    let scan = |q: &str| -> serde_json::Value {
        let (st, body) = send(auth(ureq::get(&s.url(&format!("/state/kv?{q}")))), None);
        assert_eq!(st, 200, "{q}: {}", text(&body));
        serde_json::from_slice(&body).unwrap()
    };
    let hexes = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key_hex"].as_str().unwrap().to_string())
            .collect()
    };
    // From 0xFF: not from EF BF BD, which would take in F0 as well.
    let v = scan("start=%FF");
    assert_eq!(hexes(&v), ["ff0061", "ff01"]);
    assert_eq!(v["items"][0]["key"], serde_json::Value::Null);
    let v = scan("start=%F0&end=%FF%01");
    assert_eq!(hexes(&v), ["f0", "ff0061"]);
    // Paging: `next` is the key as text if it is UTF-8, `next_hex` always.
    let v = scan("limit=1");
    assert_eq!(hexes(&v), ["79"]);
    assert_eq!(
        (v["next"].clone(), v["next_hex"].clone()),
        ("z".into(), "7a".into())
    );
    let v = scan("start=%F0&limit=1");
    assert_eq!(hexes(&v), ["f0"]);
    assert_eq!(v["next"], serde_json::Value::Null);
    assert_eq!(v["next_hex"], "ff0061");
    let v = scan("start=%FF%00a&limit=2");
    assert_eq!(hexes(&v), ["ff0061", "ff01"]);
    assert_eq!(v["next_hex"], serde_json::Value::Null);
    // A malformed escape is a bad request, not a literal.
    let (st, body) = send(auth(ureq::get(&s.url("/state/kv?start=%G0"))), None);
    assert_eq!((st, code(&body)), (400, "bad_request".into()));
    assert!(s.terminate().success());
}

/// `deadline=307445734561825861m` overflowed u64 milliseconds and wrapped
/// to a 44 s deadline; overflow is now a 400.
#[test]
fn a_deadline_that_overflows_is_400_not_wrapped_to_44s() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(dir.path(), &["--token", TOKEN]);
    let counter = guest("counter");
    for deadline in ["307445734561825861m", "18446744073709551616ms", "25h"] {
        let url = s.url(&format!("/functions/counter?deadline={deadline}"));
        let (st, body) = send(auth(ureq::post(&url)), Some(&counter));
        assert_eq!((st, code(&body)), (400, "bad_request".into()), "{deadline}");
        assert!(text(&body).contains("too long"), "{}", text(&body));
    }
    // Over the runtime's own limit (300 s), under the parser's.
    let url = s.url("/functions/counter?deadline=301s");
    let (st, body) = send(auth(ureq::post(&url)), Some(&counter));
    assert_eq!((st, code(&body)), (400, "bad_config".into()));
    let url = s.url("/functions/counter?deadline=5m");
    let (st, body) = send(auth(ureq::post(&url)), Some(&counter));
    assert_eq!(st, 201, "{}", text(&body));
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["deadline_ms"], 300_000);
    assert!(s.terminate().success());
}
