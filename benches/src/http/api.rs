//! The few calls of `docs/http.md` the bench makes outside the measured
//! loop: waiting for `/health`, deploying, invoking, reading state.

use super::Res;
use super::client::{Conn, Response, Target};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a fresh server may take to answer `/health` with 200.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between `/health` polls.
const HEALTH_POLL: Duration = Duration::from_millis(20);

/// One connection to the server, with its token.
pub struct Api {
    conn: Conn,
    token: String,
}

impl Api {
    pub fn new(addr: SocketAddr, token: &str) -> Api {
        Api {
            conn: Conn::new(addr),
            token: token.to_string(),
        }
    }

    async fn call(&mut self, method: &str, path: &str, body: &[u8]) -> Res<Response> {
        let t = Target {
            method,
            path,
            token: Some(&self.token),
        };
        self.conn
            .request(t, body)
            .await
            .map_err(|e| format!("{method} {path}: {e}").into())
    }

    /// Polls `GET /health` until it answers 200.
    pub async fn wait_healthy(&mut self) -> Res<()> {
        let start = Instant::now();
        loop {
            match self.call("GET", "/health", b"").await {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) if start.elapsed() > HEALTH_TIMEOUT => {
                    return Err(format!("/health answered {}: {}", r.status, text(&r.body)).into());
                }
                Err(e) if start.elapsed() > HEALTH_TIMEOUT => return Err(e),
                _ => tokio::time::sleep(HEALTH_POLL).await,
            }
        }
    }

    /// `POST /functions/{name}` with the module; expects 201.
    pub async fn deploy(&mut self, name: &str, wasm: &[u8]) -> Res<()> {
        let r = self
            .call("POST", &format!("/functions/{name}"), wasm)
            .await?;
        expect(r, 201, &format!("deploying {name}")).map(drop)
    }

    /// `POST /invoke/{name}`; the output of a 200, else an error.
    pub async fn invoke(&mut self, name: &str, input: &[u8]) -> Res<Vec<u8>> {
        let r = self.call("POST", &format!("/invoke/{name}"), input).await?;
        expect(r, 200, &format!("invoking {name} with {:?}", text(input)))
    }

    /// `GET /state/{ns}/{key}` (key in plain URL-safe text): the value, or
    /// `None` on 404.
    pub async fn state(&mut self, ns: &str, key: &str) -> Res<Option<Vec<u8>>> {
        let r = self.call("GET", &format!("/state/{ns}/{key}"), b"").await?;
        if r.status == 404 {
            return Ok(None);
        }
        expect(r, 200, &format!("reading {ns}/{key}")).map(Some)
    }
}

fn expect(r: Response, status: u16, what: &str) -> Res<Vec<u8>> {
    if r.status == status {
        return Ok(r.body);
    }
    Err(format!("{what}: status {} {}", r.status, text(&r.body)).into())
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
