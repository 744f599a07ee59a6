//! `hello-http`: answers `200` with the body `hello` (`content-type:
//! text/plain`) to any request, whatever its method, path or body. The
//! HTTP trigger's floor: the `wasi:http/proxy` world's handler and
//! nothing else (no state), for `rime-bench http --guests hello`.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// The response body.
const BODY: &[u8] = b"hello";

struct Hello;

impl Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        // 1. The headers, then the response (its status defaults to 200).
        let headers = [("content-type".to_string(), b"text/plain".to_vec())];
        let fields = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
        let response = OutgoingResponse::new(fields);
        // 2. Its body resource, taken before the response is handed over.
        let Ok(body) = response.body() else {
            return;
        };
        // 3. Hand the response to the host, 4. write the body in one go,
        //    5. finish it (the stream is dropped first, as the WIT asks).
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(BODY);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(Hello with_types_in wasip2);
