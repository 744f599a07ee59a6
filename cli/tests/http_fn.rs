//! `rime serve`'s `/fn/{name}/...` through the real binary: the URL
//! shortener component (guests/components/url-shortener) deployed over
//! HTTP, storing a link and answering 302 to it (docs/components.md).

mod common;
use common::*;

fn component(name: &str) -> Vec<u8> {
    let p = component_file(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_url_shortener_answers_302_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--token", TOKEN, "--open-invoke"]);
    let (st, body) = send(
        auth(ureq::post(&s.url("/functions/short"))),
        Some(&component("url_shortener")),
    );
    assert_eq!(st, 201, "{}", text(&body));

    // No redirects followed: the test reads the 302 itself.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let (st, body) = send(
        agent
            .put(&s.url("/fn/short/docs"))
            .set("content-type", "text/uri-list"),
        Some(b"https://example.invalid/docs"),
    );
    assert_eq!((st, text(&body)), (201, "/docs".to_string()));
    let resp = agent.get(&s.url("/fn/short/docs")).call().unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.header("location"),
        Some("https://example.invalid/docs")
    );
    assert_eq!(resp.header("x-visits"), Some("1"));
    assert!(resp.header("x-rime-retries").is_some());
    // The query reaches the guest.
    let (st, body) = send(agent.get(&s.url("/fn/short/docs?preview")), None);
    assert_eq!(
        (st, text(&body)),
        (200, "https://example.invalid/docs".to_string())
    );
    // So do the headers: a link is PUT as text/uri-list only.
    let (st, _) = send(
        agent
            .put(&s.url("/fn/short/x"))
            .set("content-type", "text/plain"),
        Some(b"https://example.invalid/x"),
    );
    assert_eq!(st, 415);
    let (st, _) = send(agent.get(&s.url("/fn/short/x")), None);
    assert_eq!(st, 404);
    // The state is Rime's: the link is in the function's namespace.
    let (st, body) = send(auth(ureq::get(&s.url("/state/short/link:docs"))), None);
    assert_eq!(
        (st, text(&body)),
        (200, "https://example.invalid/docs".to_string())
    );
    // Each trigger refuses the other's way of calling.
    let (st, body) = send(ureq::post(&s.url("/invoke/short")), Some(b""));
    assert_eq!((st, code(&body)), (400, "wrong_trigger".to_string()));
    let (st, body) = send(agent.get(&s.url("/fn/nope/x")), None);
    assert_eq!((st, code(&body)), (404, "not_found".to_string()));
    s.terminate();
}

#[test]
fn fn_routes_need_the_token_unless_invoke_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--token", TOKEN]);
    let (st, body) = send(
        auth(ureq::post(&s.url("/functions/short"))),
        Some(&component("url_shortener")),
    );
    assert_eq!(st, 201, "{}", text(&body));
    let (st, body) = send(ureq::get(&s.url("/fn/short/x")), None);
    assert_eq!((st, code(&body)), (401, "unauthorized".to_string()));
    let (st, _) = send(auth(ureq::get(&s.url("/fn/short/x"))), None);
    assert_eq!(st, 404, "the guest's own 404: no link x");
    s.terminate();
}

/// `/fn/{name}` runs on the executors: a client that disconnects while
/// its request runs cancels it, at its next epoch yield, long before its
/// deadline (a component that loops and never answers).
#[test]
fn a_client_that_disconnects_from_fn_cancels_its_invocation() {
    use std::io::Write;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--token", TOKEN, "--open-invoke"]);
    let spin = include_str!("../../faas/tests/common/spin_http.wat");
    let (st, body) = send(
        auth(ureq::post(&s.url("/functions/spin?deadline=60s"))),
        Some(spin.as_bytes()),
    );
    assert_eq!(st, 201, "{}", text(&body));
    let mut conn = s.connect();
    conn.write_all(b"GET /fn/spin/x HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    // In flight on the executors (the blocking pool never counted here).
    wait_until(Duration::from_secs(10), "the request runs", || {
        s.metric("rime_invocations_in_flight") == 1
    });
    let t = std::time::Instant::now();
    drop(conn);
    wait_until(Duration::from_secs(10), "the request is cancelled", || {
        s.metric("rime_invocations_in_flight") == 0
    });
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(s.metric("rime_invocations_cancelled_total"), 1);
    assert_eq!(s.metric("rime_timeouts_total"), 0);
    s.terminate();
}
