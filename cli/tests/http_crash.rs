//! SIGKILL through `rime serve` while 256 clients invoke at once: nothing
//! acknowledged is lost, nothing is applied twice. Each client increments
//! its own counter key over a keep-alive connection and remembers the last
//! value the server acknowledged; after the kill and a restart every key
//! holds that value, or one more (an increment committed whose answer the
//! kill cut off).

mod common;

use common::{Server, guest, send, text};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const CLIENTS: usize = 256;

/// Increments `key` until the server goes away; the last acknowledged
/// value.
fn client(url: &str, key: &str, stop: &AtomicBool, acked: &AtomicU64) -> i64 {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut last = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(resp) = agent.post(url).send_bytes(key.as_bytes()) else {
            break; // killed: the connection reset
        };
        let mut body = String::new();
        if std::io::Read::read_to_string(&mut resp.into_reader(), &mut body).is_err() {
            break;
        }
        let n: i64 = body
            .parse()
            .unwrap_or_else(|_| panic!("{key}: answer {body:?}"));
        assert_eq!(n, last + 1, "{key}: an increment skipped or repeated");
        last = n;
        acked.fetch_add(1, Ordering::Relaxed);
    }
    last
}

#[test]
fn sigkill_under_256_concurrent_clients_loses_nothing_acknowledged() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(dir.path(), &["--open-invoke", "--token", common::TOKEN]);
    let (st, body) = send(
        common::auth(ureq::post(&s.url("/functions/counter"))),
        Some(&guest("counter")),
    );
    assert_eq!(st, 201, "{}", text(&body));
    let url = s.url("/invoke/counter");
    let stop = AtomicBool::new(false);
    let acked = AtomicU64::new(0);
    let last: Vec<i64> = std::thread::scope(|sc| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (url, stop, acked) = (&url, &stop, &acked);
                sc.spawn(move || client(url, &format!("k{i}"), stop, acked))
            })
            .collect();
        // Kill once every client has been answered a few times.
        let t = std::time::Instant::now();
        while acked.load(Ordering::Relaxed) < 16 * CLIENTS as u64 {
            assert!(t.elapsed() < Duration::from_secs(60), "too slow to start");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(s); // SIGKILL
        stop.store(true, Ordering::Relaxed);
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let total: i64 = last.iter().sum();
    assert!(total >= 16 * CLIENTS as i64, "{total}");
    // Recovery: every acknowledged increment is there, none twice.
    let s = Server::start(dir.path(), &["--open-reads", "--token", common::TOKEN]);
    for (i, &acked) in last.iter().enumerate() {
        let (st, body) = send(ureq::get(&s.url(&format!("/state/counter/k{i}"))), None);
        let now = match st {
            200 => i64::from_le_bytes(body.as_slice().try_into().expect("an i64")),
            404 => 0,
            st => panic!("k{i}: {st} {}", text(&body)),
        };
        assert!(
            now == acked || now == acked + 1,
            "k{i}: {acked} acknowledged, {now} after recovery"
        );
    }
    eprintln!("{total} acknowledged increments from {CLIENTS} clients survived SIGKILL");
}

/// A client that disconnects while its invocation runs cancels it: the
/// invocation stops at its next epoch yield, long before its deadline, and
/// commits nothing (the `hostile` guest writes a marker, then spins).
#[test]
fn a_client_that_disconnects_cancels_its_invocation() {
    use std::io::Write;
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(
        dir.path(),
        &["--open-invoke", "--open-reads", "--token", common::TOKEN],
    );
    let (st, body) = send(
        common::auth(ureq::post(&s.url("/functions/hostile?deadline=60s"))),
        Some(&guest("hostile")),
    );
    assert_eq!(st, 201, "{}", text(&body));
    let mut conn = s.connect();
    conn.write_all(b"POST /invoke/hostile HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nloop")
        .unwrap();
    common::wait_until(Duration::from_secs(10), "the invocation runs", || {
        s.metric("rime_invocations_in_flight") == 1
    });
    let t = std::time::Instant::now();
    drop(conn);
    common::wait_until(
        Duration::from_secs(10),
        "the invocation is cancelled",
        || s.metric("rime_invocations_in_flight") == 0,
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(s.metric("rime_invocations_cancelled_total"), 1);
    assert_eq!(s.metric("rime_timeouts_total"), 0);
    let (st, _) = send(ureq::get(&s.url("/state/hostile/hostile-was-here")), None);
    assert_eq!(st, 404, "a cancelled invocation committed its write");
}
