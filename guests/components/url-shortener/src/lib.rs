//! `url-shortener`: short links over `wasi:http` and `wasi:keyvalue`, and
//! nothing else of the host's (the `wasi:http/proxy` world's handler plus
//! `wasi:keyvalue/imports`). Links live in the bucket `default`.
//!
//! - `PUT /CODE` with `content-type: text/uri-list` and an `http://` or
//!   `https://` URL as the body: stores the link, `201` with `/CODE`
//!   (another content type: `415`; another body: `400`).
//! - `GET /CODE`: `302` to the URL, with `x-visits` the link's visits so
//!   far (this one included); `GET /CODE?preview`: `200` with the URL as
//!   text instead. A code without a link: `404`.
//! - Any other method: `405`.

wit_bindgen::generate!({
    path: "../../../faas/wit/deps/keyvalue",
    world: "wasi:keyvalue/imports",
});

use wasi::keyvalue::{atomics, store};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Bytes of a request body read at most (a URL).
const MAX_URL_BYTES: usize = 4096;

/// What one `blocking-write-and-flush` may write.
const WRITE_CHUNK_BYTES: usize = 4096;

struct Shortener;

/// A response: status, headers, body.
struct Reply(u16, Vec<(String, Vec<u8>)>, Vec<u8>);

fn text(status: u16, body: impl Into<String>) -> Reply {
    let headers = vec![("content-type".to_string(), b"text/plain".to_vec())];
    Reply(status, headers, body.into().into_bytes())
}

impl Guest for Shortener {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let reply = route(&request).unwrap_or_else(|e| text(500, e));
        send(out, reply);
    }
}

fn route(request: &IncomingRequest) -> Result<Reply, String> {
    let target = request.path_with_query().unwrap_or_else(|| "/".into());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let code = path.trim_start_matches('/');
    if code.is_empty() || code.contains('/') {
        return Ok(text(404, "no such link: use /CODE"));
    }
    let links = store::open("default").map_err(describe)?;
    let key = format!("link:{code}");
    match request.method() {
        Method::Put => {
            let types = request.headers().get("content-type");
            if !types.iter().any(|t| t.as_slice() == b"text/uri-list") {
                return Ok(text(415, "PUT a link as content-type text/uri-list"));
            }
            let url = read_body(request)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Ok(text(400, "the body must be one http:// or https:// URL"));
            }
            links.set(&key, url.trim().as_bytes()).map_err(describe)?;
            Ok(text(201, format!("/{code}")))
        }
        Method::Get => {
            let Some(url) = links.get(&key).map_err(describe)? else {
                return Ok(text(404, format!("no link {code}")));
            };
            if query == "preview" {
                return Ok(Reply(
                    200,
                    vec![("content-type".into(), b"text/plain".to_vec())],
                    url,
                ));
            }
            let visits =
                atomics::increment(&links, &format!("visits:{code}"), 1).map_err(describe)?;
            let headers = vec![
                ("location".to_string(), url),
                ("x-visits".to_string(), visits.to_string().into_bytes()),
            ];
            Ok(Reply(302, headers, Vec::new()))
        }
        _ => Ok(text(405, "GET or PUT")),
    }
}

fn read_body(request: &IncomingRequest) -> Result<String, String> {
    let body = request.consume().map_err(|()| "no request body")?;
    let mut bytes = Vec::new();
    {
        let stream = body.stream().map_err(|()| "no request body stream")?;
        while let Ok(chunk) = stream.blocking_read(MAX_URL_BYTES as u64) {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_URL_BYTES {
                return Err(format!("a URL is at most {MAX_URL_BYTES} bytes"));
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| "the URL is not UTF-8".into())
}

fn send(out: ResponseOutparam, Reply(status, headers, body): Reply) {
    let fields = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(fields);
    // A status from this file is always valid.
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.chunks(WRITE_CHUNK_BYTES) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

fn describe(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    }
}

wasip2::http::proxy::export!(Shortener with_types_in wasip2);
