//! A minimal HTTP/1.1 client for the load generator: one keep-alive
//! connection, one request at a time, responses parsed with `httparse` (the
//! parser hyper uses). It does only what `rime serve` answers with: bodies
//! framed by `Content-Length`, and `Connection: close`. Kept this small so
//! that a request costs the client a few microseconds of CPU, well under
//! what it costs the server (`rime-bench http` measures that ceiling
//! against `GET /health`).

use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers a response may have at most (the server sends about five).
const MAX_HEADERS: usize = 32;
/// Initial read buffer; grows for larger bodies.
const READ_CHUNK: usize = 16 << 10;

/// One response: its status and its whole body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A request's line and headers; the body is passed beside it.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    pub token: Option<&'a str>,
}

/// A keep-alive connection to `addr`, opened on first use and again after
/// the server closed it (counted in [`Conn::reconnects`]).
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// The request being written (reused).
    head: Vec<u8>,
    /// Connections opened after the first.
    pub reconnects: u64,
    opened: bool,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(READ_CHUNK),
            head: Vec::with_capacity(256),
            reconnects: 0,
            opened: false,
        }
    }

    /// Sends one request and reads its response. On an error the
    /// connection is dropped; the next request opens a new one.
    pub async fn request(&mut self, t: Target<'_>, body: &[u8]) -> io::Result<Response> {
        let r = self.round_trip(t, body).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn round_trip(&mut self, t: Target<'_>, body: &[u8]) -> io::Result<Response> {
        self.write_head(t, body.len());
        self.head.extend_from_slice(body);
        self.connect().await?;
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(&self.head).await?;
        let (resp, close) = self.read_response().await?;
        if close {
            self.stream = None;
        }
        Ok(resp)
    }

    /// Opens the connection unless it is open.
    async fn connect(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.reconnects += u64::from(self.opened);
            self.opened = true;
            self.buf.clear();
            self.stream = Some(s);
        }
        Ok(())
    }

    fn write_head(&mut self, t: Target<'_>, body_len: usize) {
        use std::io::Write as _;
        self.head.clear();
        let h = &mut self.head;
        // Writes into a Vec cannot fail.
        let _ = write!(h, "{} {} HTTP/1.1\r\nHost: rime\r\n", t.method, t.path);
        if body_len > 0 || t.method != "GET" {
            let _ = write!(h, "Content-Length: {body_len}\r\n");
        }
        if let Some(tok) = t.token {
            let _ = write!(h, "Authorization: Bearer {tok}\r\n");
        }
        h.extend_from_slice(b"\r\n");
    }

    /// Reads until one whole response is buffered; returns it and whether
    /// the server will close the connection after it.
    async fn read_response(&mut self) -> io::Result<(Response, bool)> {
        loop {
            if let Some(parsed) = parse(&self.buf)? {
                let end = parsed.head_len + parsed.body_len;
                if self.buf.len() >= end {
                    let body = self.buf[parsed.head_len..end].to_vec();
                    self.buf.drain(..end);
                    let resp = Response {
                        status: parsed.status,
                        body,
                    };
                    return Ok((resp, parsed.close));
                }
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes; an end of stream here is an error (the response is
    /// incomplete).
    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        // Into the spare capacity: nothing is zeroed first.
        match stream.read_buf(&mut self.buf).await? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before a whole response",
            )),
            _ => Ok(()),
        }
    }
}

/// A response head as far as framing goes.
struct Parsed {
    status: u16,
    head_len: usize,
    body_len: usize,
    close: bool,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The head of the response at the start of `buf`, `None` if it has not
/// all arrived.
fn parse(buf: &[u8]) -> io::Result<Option<Parsed>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let head_len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(format!("bad response head: {e}"))),
    };
    let status = r.code.unwrap_or(0);
    let mut body_len = None;
    let mut close = r.version == Some(0);
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).ok();
            body_len = Some(
                v.and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| bad(format!("bad Content-Length {:?}", h.value)))?,
            );
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked responses are not supported".into()));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= h.value.eq_ignore_ascii_case(b"close");
        }
    }
    let body_len = match (body_len, status) {
        (Some(n), _) => n,
        (None, 100..=199 | 204 | 304) => 0,
        (None, s) => return Err(bad(format!("{s} response without Content-Length"))),
    };
    Ok(Some(Parsed {
        status,
        head_len,
        body_len,
        close,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_framed_by_content_length() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n12";
        let p = parse(r).unwrap().unwrap();
        assert_eq!(
            (p.status, p.head_len, p.body_len, p.close),
            (200, 38, 3, false)
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap().is_none());
        let c =
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\ncontent-length: 0\r\n\r\n";
        let p = parse(c).unwrap().unwrap();
        assert_eq!((p.status, p.body_len, p.close), (503, 0, true));
        assert!(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert_eq!(
            parse(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap()
                .unwrap()
                .body_len,
            0
        );
    }
}
