//! `rime serve` through a real server on 127.0.0.1 and a real HTTP client.
//! Needs the example guests (`scripts/build-guests`, or `RIME_GUESTS_DIR`).

mod common;

use common::{Server, TOKEN, auth, code, guest, send, text, wait_until};
use std::time::{Duration, Instant};

#[test]
fn api_round_trip_auth_limits_and_errors() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(dir.path(), &["--token", TOKEN]);
    let counter = guest("counter");

    // Health and metrics need no token.
    let (st, body) = send(ureq::get(&s.url("/health")), None);
    assert_eq!((st, text(&body).contains("ok")), (200, true));

    // Deploy: token required, and right.
    let deploy_url = s.url("/functions/counter?grant=stats:rw&memory=32MiB&deadline=2s");
    let (st, body) = send(ureq::post(&deploy_url), Some(&counter));
    assert_eq!((st, code(&body)), (401, "unauthorized".into()));
    let (st, body) = send(
        ureq::post(&deploy_url).set("Authorization", "Bearer wrong"),
        Some(&counter),
    );
    assert_eq!((st, code(&body)), (401, "unauthorized".into()));
    let (st, body) = send(auth(ureq::post(&deploy_url)), Some(&counter));
    assert_eq!(st, 201, "{}", text(&body));
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["generation"], 1);
    assert_eq!(info["grants"][0]["namespace"], "stats");
    assert_eq!(info["memory_bytes"], 32 << 20);

    // Malformed wasm: refused with a clear error, nothing deployed.
    let (st, body) = send(
        auth(ureq::post(&s.url("/functions/bad"))),
        Some(b"\0asm junk"),
    );
    assert_eq!(
        (st, code(&body)),
        (400, "malformed_module".into()),
        "{}",
        text(&body)
    );
    let (st, body) = send(auth(ureq::get(&s.url("/functions"))), None);
    assert_eq!(st, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["functions"].as_array().unwrap().len(), 1);
    assert_eq!(list["functions"][0]["name"], "counter");

    // Invoke: output is the body; the state is the guest's.
    for expected in ["1", "2"] {
        let (st, body) = send(auth(ureq::post(&s.url("/invoke/counter"))), Some(b"hits"));
        assert_eq!((st, text(&body)), (200, expected.to_string()));
    }
    let (st, body) = send(
        auth(ureq::post(&s.url("/invoke/counter"))),
        Some(b"secret:x"),
    );
    assert_eq!((st, code(&body)), (422, "function_error".into()));
    assert!(
        text(&body).contains("namespace access denied"),
        "{}",
        text(&body)
    );
    let (st, body) = send(auth(ureq::post(&s.url("/invoke/nope"))), Some(b""));
    assert_eq!((st, code(&body)), (404, "not_found".into()));
    let (st, body) = send(ureq::post(&s.url("/invoke/counter")), Some(b"hits"));
    assert_eq!((st, code(&body)), (401, "unauthorized".into()));

    // Oversized bodies are refused.
    let big = vec![b'x'; (1 << 20) + 1];
    let (st, body) = send(auth(ureq::post(&s.url("/invoke/counter"))), Some(&big));
    assert_eq!((st, code(&body)), (413, "too_large".into()));

    // State: get, put, delete, scan.
    let (st, body) = send(auth(ureq::get(&s.url("/state/counter/hits"))), None);
    assert_eq!((st, body), (200, 2i64.to_le_bytes().to_vec()));
    for (k, v) in [
        ("a/1", "one"),
        ("a/2", "two"),
        ("a/3", "three"),
        ("b", "bee"),
    ] {
        let (st, body) = send(
            auth(ureq::put(&s.url(&format!("/state/kv/{k}")))),
            Some(v.as_bytes()),
        );
        assert_eq!(st, 204, "{}", text(&body));
    }
    let (st, body) = send(ureq::put(&s.url("/state/kv/x")), Some(b"v"));
    assert_eq!((st, code(&body)), (401, "unauthorized".into()));
    let (st, body) = send(auth(ureq::get(&s.url("/state/kv/a/2"))), None);
    assert_eq!((st, text(&body)), (200, "two".into()));
    let (st, body) = send(
        auth(ureq::get(&s.url("/state/kv?start=a/&end=a0&limit=2"))),
        None,
    );
    assert_eq!(st, 200, "{}", text(&body));
    let scan: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let keys: Vec<_> = scan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["a/1", "a/2"]);
    assert_eq!(scan["items"][1]["value"], "two");
    assert_eq!(scan["next"], "a/3");
    let (st, body) = send(auth(ureq::get(&s.url("/state/kv?start=a/3"))), None);
    let scan: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (
            st,
            scan["items"].as_array().unwrap().len(),
            scan["next"].clone()
        ),
        (200, 2, serde_json::Value::Null)
    );
    let (st, _) = send(auth(ureq::delete(&s.url("/state/kv/b"))), None);
    assert_eq!(st, 204);
    let (st, body) = send(auth(ureq::get(&s.url("/state/kv/b"))), None);
    assert_eq!((st, code(&body)), (404, "not_found".into()));
    let (st, body) = send(auth(ureq::get(&s.url("/state/Bad%20NS/k"))), None);
    assert_eq!((st, code(&body)), (400, "bad_request".into()));

    // Metrics, in Prometheus text format.
    let (st, body) = send(ureq::get(&s.url("/metrics")), None);
    let m = text(&body);
    assert_eq!(st, 200);
    assert!(m.contains("# TYPE rime_invocations_total counter"), "{m}");
    assert!(m.contains("rime_invocations_total 4"), "{m}");
    assert!(
        m.contains("rime_invocation_errors_total{code=\"function_error\"} 1"),
        "{m}"
    );
    assert!(m.contains("rime_commits_total "), "{m}");
    // The commits above were acknowledged once synced (`Sync`, the
    // default): at least one sync round ran.
    let syncs: u64 = (m.lines())
        .find_map(|l| l.strip_prefix("rime_log_syncs_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rime_log_syncs_total in {m}"));
    assert!(syncs >= 1, "{m}");

    // Undeploy; unknown endpoints are JSON errors too.
    let (st, _) = send(ureq::delete(&s.url("/functions/counter")), None);
    assert_eq!(st, 401);
    let (st, _) = send(auth(ureq::delete(&s.url("/functions/counter"))), None);
    assert_eq!(st, 204);
    let (st, body) = send(auth(ureq::delete(&s.url("/functions/counter"))), None);
    assert_eq!((st, code(&body)), (404, "not_found".into()));
    let (st, body) = send(ureq::get(&s.url("/nowhere")), None);
    assert_eq!((st, code(&body)), (404, "not_found".into()));
    assert!(s.terminate().success());
}

#[test]
fn concurrent_invocations_then_sigterm_and_restart() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(dir.path(), &[]);
    // No --token: the server made one in the data directory.
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let token = token.trim().to_string();
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let bearer = format!("Bearer {token}");
    let (st, body) = send(
        ureq::post(&s.url("/functions/counter")).set("Authorization", &bearer),
        Some(&guest("counter")),
    );
    assert_eq!(st, 201, "{}", text(&body));

    // 64 concurrent invocations on one key: each counts exactly once.
    let url = s.url("/invoke/counter");
    let mut outputs: Vec<i64> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..64)
            .map(|_| {
                sc.spawn(|| {
                    let (st, body) =
                        send(ureq::post(&url).set("Authorization", &bearer), Some(b"c"));
                    assert_eq!(st, 200, "{}", text(&body));
                    text(&body).parse::<i64>().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    outputs.sort();
    assert_eq!(outputs, (1..=64).collect::<Vec<_>>());

    // SIGTERM: exit 0 after a checkpoint.
    let status = s.terminate();
    assert!(status.success(), "{status:?}");

    // Restart on the same directory, invocations open this time: the
    // function and its state are there, the token still guards writes.
    let s = Server::start(dir.path(), &["--open-invoke"]);
    let (st, body) = send(ureq::post(&s.url("/invoke/counter")), Some(b"c"));
    assert_eq!((st, text(&body)), (200, "65".into()));
    let (st, _) = send(ureq::put(&s.url("/state/counter/c")), Some(b"x"));
    assert_eq!(st, 401);
    let (st, body) = send(
        ureq::get(&s.url("/state/counter/c")).set("Authorization", &bearer),
        None,
    );
    assert_eq!((st, body), (200, 65i64.to_le_bytes().to_vec()));
    assert!(s.terminate().success());
}

#[test]
fn sigterm_lets_an_invocation_in_flight_finish() {
    const DEADLINE: Duration = Duration::from_millis(1500);
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(dir.path(), &["--token", TOKEN, "--open-invoke"]);
    let (st, body) = send(
        auth(ureq::post(&s.url(&format!(
            "/functions/hostile?deadline={}ms",
            DEADLINE.as_millis()
        )))),
        Some(&guest("hostile")),
    );
    assert_eq!(st, 201, "{}", text(&body));
    // `loop` spins until its deadline: in flight for 1.5 s.
    let url = s.url("/invoke/hostile");
    let requests = "rime_http_requests_total";
    let before = s.metric(requests);
    let t = Instant::now();
    let slow = std::thread::spawn(move || send(ureq::post(&url), Some(b"loop")));
    // SIGTERM once the server has the request: it is counted as it enters
    // the router, and from then on a stop lets it finish. Every poll of
    // /metrics counts itself, so the invocation is there once the count
    // is past `before` plus the polls; and it has not finished yet
    // (rime_invocations_total counts invocations that returned).
    let mut polls = 0;
    wait_until(
        Duration::from_secs(30),
        "the invocation never reached the server",
        || {
            polls += 1;
            let m = s.metrics().expect("GET /metrics");
            let arrived = m[requests] > before + polls;
            if arrived {
                assert_eq!(m["rime_invocations_total"], 0, "finished before SIGTERM");
            }
            arrived
        },
    );
    let status = s.terminate();
    let (st, body) = slow.join().unwrap();
    // The client got its answer (the deadline), not a dropped connection.
    assert_eq!((st, code(&body)), (504, "timeout".into()));
    assert!(t.elapsed() >= DEADLINE, "{:?}", t.elapsed());
    assert!(status.success(), "{status:?}");
}

/// The server said it was listening before it caught SIGTERM: a SIGTERM
/// right after that line killed it (no checkpoint, a non-zero status).
#[test]
fn sigterm_right_after_the_listening_line_is_a_clean_exit() {
    let dir = tempfile::TempDir::new().unwrap();
    for _ in 0..5 {
        let s = Server::start(dir.path(), &["--token", TOKEN]);
        let status = s.terminate();
        assert!(status.success(), "{status:?}");
    }
}
