//! HTTP-triggered components (`docs/components.md`, "HTTP triggers"):
//! components exporting `wasi:http/incoming-handler` (0.2.x). One request
//! is one invocation: the request is its input and the response its output,
//! encoded by [`encode_request`] / [`encode_response`], so the transaction
//! loop of `crate::invoke` (retries included) is the same as for every
//! other faaslet. A response is kept whole until the commit is durable;
//! only then does the caller see it, and a re-run's response replaces a
//! conflicting attempt's.
//!
//! Outgoing requests are refused: the `wasi:http/outgoing-handler` import
//! is refused at deploy, and [`NoOutgoing`] refuses any request anyway.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The export that makes a component HTTP-triggered (any 0.2 version).
pub(crate) const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2.";

/// Writes to a response body the host buffers before the guest's next
/// write waits for them to be read (they are read only after the handler
/// returns, so a handler writing more times than this runs into its
/// deadline). A response writes its body once or a few times.
const MAX_BODY_WRITES: usize = 1024;

/// Hooks of `wasi:http` for faaslets: no outgoing request is ever sent.
pub(crate) struct NoOutgoing;

impl wasmtime_wasi_http::WasiHttpHooks for NoOutgoing {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        MAX_BODY_WRITES
    }
}

/// Appends `bytes` with a u32 length before it.
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads what [`put`] wrote.
fn take<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(input.get(..4)?.try_into().ok()?) as usize;
    let bytes = input.get(4..4 + len)?;
    *input = &input[4 + len..];
    Some(bytes)
}

fn put_headers(out: &mut Vec<u8>, headers: &http::HeaderMap) {
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (name, value) in headers {
        put(out, name.as_str().as_bytes());
        put(out, value.as_bytes());
    }
}

fn take_headers(input: &mut &[u8]) -> Option<http::HeaderMap> {
    let n = u32::from_le_bytes(input.get(..4)?.try_into().ok()?);
    *input = &input[4..];
    let mut headers = http::HeaderMap::new();
    for _ in 0..n {
        let name = http::HeaderName::from_bytes(take(input)?).ok()?;
        let value = http::HeaderValue::from_bytes(take(input)?).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

/// A request as an invocation's input: method, target (path and query, as
/// the guest sees it), headers, then the body.
pub(crate) fn encode_request(req: &http::Request<Bytes>) -> Vec<u8> {
    let mut out = Vec::with_capacity(req.body().len() + 256);
    put(&mut out, req.method().as_str().as_bytes());
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    put(&mut out, target.as_bytes());
    put_headers(&mut out, req.headers());
    out.extend_from_slice(req.body());
    out
}

/// The request [`encode_request`] encoded, for `new_incoming_request`.
/// The authority is the `host` header's, `localhost` without one.
pub(crate) fn decode_request(mut input: &[u8]) -> Option<http::Request<Full<Bytes>>> {
    let method = http::Method::from_bytes(take(&mut input)?).ok()?;
    let target = std::str::from_utf8(take(&mut input)?).ok()?;
    let mut headers = take_headers(&mut input)?;
    if !headers.contains_key(http::header::HOST) {
        headers.insert(
            http::header::HOST,
            http::HeaderValue::from_static("localhost"),
        );
    }
    let mut req = http::Request::builder()
        .method(method)
        .uri(target)
        .body(Full::new(Bytes::copy_from_slice(input)))
        .ok()?;
    *req.headers_mut() = headers;
    Some(req)
}

/// A response as an invocation's output: status (u16 LE), headers, body.
pub(crate) fn encode_response(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(&status.as_u16().to_le_bytes());
    put_headers(&mut out, headers);
    out.extend_from_slice(body);
    out
}

/// The response [`encode_response`] encoded.
pub(crate) fn decode_response(output: &[u8]) -> Option<http::Response<Bytes>> {
    let status =
        http::StatusCode::from_u16(u16::from_le_bytes(output.get(..2)?.try_into().ok()?)).ok()?;
    let mut rest = &output[2..];
    let headers = take_headers(&mut rest)?;
    let mut resp = http::Response::new(Bytes::copy_from_slice(rest));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Some(resp)
}

/// What the guest handed its response-outparam, if anything.
pub(crate) type Sent = Result<
    Result<http::Response<HyperOutgoingBody>, ErrorCode>,
    tokio::sync::oneshot::error::TryRecvError,
>;

/// What the guest handed its response-outparam, read once its handler
/// returned: the encoded response, or why there is none.
pub(crate) async fn collect(sent: Sent, max_body_bytes: usize) -> Result<Vec<u8>, String> {
    let resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(code)) => return Err(format!("the handler answered with error {code:?}")),
        Err(_) => return Err("the handler returned without setting a response".into()),
    };
    let (parts, body) = resp.into_parts();
    // Every chunk is buffered already (the guest's end is gone): this
    // never waits.
    let body = Limited::new(body, max_body_bytes)
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes();
    Ok(encode_response(parts.status, &parts.headers, &body))
}

/// A committed HTTP invocation's response, decoded from its output.
pub(crate) fn response_of(
    inv: crate::Invocation,
) -> Result<(http::Response<Bytes>, crate::Invocation), crate::InvokeError> {
    let resp = decode_response(&inv.output)
        .ok_or_else(|| crate::InvokeError::Internal("a response that does not decode".into()))?;
    Ok((resp, inv))
}

/// An HTTP-triggered invocation in flight (`Runtime::invoke_http_async`):
/// a future of the response and the committed invocation, or
/// [`InvokingHttp::wait`] to block. Dropping it cancels the invocation
/// unless it already began to commit, as dropping an [`Invoking`] does.
///
/// [`Invoking`]: crate::Invoking
#[must_use = "dropping an InvokingHttp cancels its invocation"]
pub struct InvokingHttp(crate::Invoking);

type HttpResult = Result<(http::Response<Bytes>, crate::Invocation), crate::InvokeError>;

impl InvokingHttp {
    pub(crate) fn new(invoking: crate::Invoking) -> Self {
        InvokingHttp(invoking)
    }

    /// Blocks the calling thread until the response is there.
    pub fn wait(self) -> HttpResult {
        crate::exec::block_on(self)
    }
}

impl Future for InvokingHttp {
    type Output = HttpResult;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<HttpResult> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.and_then(response_of))
    }
}
