//! HTTP-triggered components (docs/components.md, "HTTP triggers"): the
//! URL shortener of guests/components/url-shortener, through
//! `Runtime::invoke_http`; `rime serve`'s route is tested in cli/tests.

mod common;
use bytes::Bytes;
use common::*;
use rime_faas::{FunctionConfig, InvokeError};

fn request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Request<Bytes> {
    let mut b = http::Request::builder().method(method).uri(target);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Bytes::from(body.to_string())).unwrap()
}

fn env_with_shortener() -> Env {
    let e = env();
    e.rt.deploy(
        "short",
        &component("url_shortener"),
        FunctionConfig::default(),
    )
    .unwrap();
    e
}

#[test]
fn the_shortener_stores_a_link_and_redirects_to_it() {
    let e = env_with_shortener();
    let uri_list = [("content-type", "text/uri-list")];
    let put = request("PUT", "/rime", &uri_list, "https://example.invalid/rime");
    let (resp, _) = e.rt.invoke_http("short", &put).unwrap();
    assert_eq!(
        (resp.status().as_u16(), &resp.body()[..]),
        (201, &b"/rime"[..])
    );
    for visit in 1..=2 {
        let (resp, _) =
            e.rt.invoke_http("short", &request("GET", "/rime", &[], ""))
                .unwrap();
        assert_eq!(resp.status().as_u16(), 302);
        assert_eq!(resp.headers()["location"], "https://example.invalid/rime");
        assert_eq!(resp.headers()["x-visits"], visit.to_string().as_str());
    }
    let (resp, _) =
        e.rt.invoke_http("short", &request("GET", "/rime?preview", &[], ""))
            .unwrap();
    assert_eq!(
        (resp.status().as_u16(), &resp.body()[..]),
        (200, &b"https://example.invalid/rime"[..])
    );
    // The guest sees the headers: no uri-list, no link.
    let wrong = request(
        "PUT",
        "/x",
        &[("content-type", "text/plain")],
        "https://a.invalid",
    );
    assert_eq!(
        e.rt.invoke_http("short", &wrong)
            .unwrap()
            .0
            .status()
            .as_u16(),
        415
    );
    let (resp, _) =
        e.rt.invoke_http("short", &request("GET", "/x", &[], ""))
            .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(
        e.load("short", b"link:rime").as_deref(),
        Some(&b"https://example.invalid/rime"[..])
    );
    assert_eq!(
        e.load("short", b"visits:rime"),
        Some(2i64.to_le_bytes().to_vec())
    );
}

#[test]
fn each_trigger_is_refused_the_others_way() {
    let e = env_with_shortener();
    e.rt.deploy(
        "kvc",
        &component("wasi_kv_counter"),
        FunctionConfig::default(),
    )
    .unwrap();
    match e.rt.invoke("short", b"incr default x") {
        Err(InvokeError::WrongTrigger(m)) => {
            assert!(
                m.contains("is HTTP-triggered") && m.contains("/fn/short/"),
                "{m}"
            )
        }
        other => panic!("expected WrongTrigger, got {other:?}"),
    }
    match e.rt.invoke_http("kvc", &request("GET", "/", &[], "")) {
        Err(InvokeError::WrongTrigger(m)) => {
            assert!(
                m.contains("does not export wasi:http/incoming-handler"),
                "{m}"
            )
        }
        other => panic!("expected WrongTrigger, got {other:?}"),
    }
}
