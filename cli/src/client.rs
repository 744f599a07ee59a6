//! The HTTP client of client mode (`rime --server URL`): one method per
//! endpoint of `docs/http.md`, returning what the commands print
//! (`crate::show`). Error responses become the messages the local
//! commands give for the same failure; a server that cannot be reached is
//! named with its URL.

use crate::env::{self, Result};
use crate::query::MAX_SCAN_LIMIT;
use crate::show;
use std::io::{BufRead, Write};
use std::time::Duration;

/// How long a connection to the server may take to open: a server on the
/// same network answers in milliseconds; past this it is down or filtered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest JSON body the client reads (a scan page of 1000 items of
/// 512-byte keys and values, hex and text, is well under it).
const MAX_JSON_BYTES: u64 = 64 << 20;

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Why a request failed: the server's error, or no answer at all.
enum Failure {
    /// `{"error": {"code", "message"}}` (and `function_code` for a guest's
    /// error).
    Api {
        status: u16,
        code: String,
        message: String,
        function_code: Option<i64>,
        /// A failed invocation's guest log lines (`?logs=1`).
        logs: LogLines,
    },
    /// Anything else: already the message to print.
    Other(String),
}

type Outcome<T> = std::result::Result<T, Failure>;

/// A guest's log lines as `(level, message)`.
pub type LogLines = Vec<(String, String)>;
/// Unloadable functions as `(name, reason)`.
pub type Unloadable = Vec<(String, String)>;

impl Client {
    pub fn new(url: &str, token: Option<String>) -> Result<Client> {
        let base = url.trim().trim_end_matches('/').to_string();
        if base.starts_with("https://") {
            return Err(format!(
                "--server {url}: this client speaks plain HTTP (the server does too: TLS belongs \
                 to a proxy in front of it); use http://HOST:PORT"
            )
            .into());
        }
        if !base.starts_with("http://") || base.len() == "http://".len() {
            return Err(format!("--server {url:?}: expected http://HOST:PORT").into());
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .build();
        let token = token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        Ok(Client { base, token, agent })
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.set("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    /// Sends `req` (with `body` if any); a non-2xx answer is a [`Failure`].
    fn send(&self, req: ureq::Request, body: Option<&[u8]>) -> Outcome<ureq::Response> {
        let r = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        match r {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => Err(api_failure(status, resp)),
            Err(ureq::Error::Transport(t)) => {
                let why = std::error::Error::source(&t)
                    .map(|s| s.to_string())
                    .or_else(|| t.message().map(str::to_string))
                    .unwrap_or_else(|| t.kind().to_string());
                Err(Failure::Other(format!(
                    "cannot reach the server at {}: {why}",
                    self.base
                )))
            }
        }
    }

    /// A failure as the error the local command gives: `context` prefixes
    /// the server's message; a refused token says how to pass one.
    fn error(&self, f: Failure, context: impl FnOnce(&str, &str) -> String) -> env::Error {
        match f {
            Failure::Other(m) => m.into(),
            Failure::Api {
                status: 401,
                message,
                ..
            } => format!(
                "the server at {} refused the request: {message} (pass --token T or set \
                 RIME_TOKEN; a server keeps its token in DATA/token)",
                self.base
            )
            .into(),
            Failure::Api {
                code,
                message,
                function_code,
                ..
            } => match function_code {
                Some(c) => context(&code, &format!("function error ({c}): {message}")).into(),
                None => context(&code, &message).into(),
            },
        }
    }

    pub fn deploy(
        &self,
        name: &str,
        wasm: &[u8],
        a: &crate::cmd::DeployArgs,
        settings: &[rime_faas::Setting],
    ) -> Result<show::Function> {
        let mut q: Vec<String> = (a.grants.iter())
            .map(|g| {
                let mode = if g.writable { ":rw" } else { "" };
                format!("grant={}{mode}", encode(g.namespace.as_bytes()))
            })
            .collect();
        q.extend(a.memory.map(|m| format!("memory={m}B")));
        q.extend(a.deadline.map(|d| format!("deadline={}us", d.as_micros())));
        q.extend(
            a.global
                .iter()
                .map(|ns| format!("global={}", encode(ns.as_bytes()))),
        );
        for s in settings {
            let field = if s.secret { "secret" } else { "env" };
            let mut entry = s.key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(&s.value);
            q.push(format!("{field}={}", encode(&entry)));
        }
        let path = format!("/functions/{}?{}", encode(name.as_bytes()), q.join("&"));
        let req = self
            .request("POST", &path)
            .set("Content-Type", "application/wasm");
        let ctx = |_: &str, m: &str| format!("deploying {name}: {m}");
        let resp = self.send(req, Some(wasm)).map_err(|f| self.error(f, ctx))?;
        function_of(&read_json(resp)?)
    }

    pub fn undeploy(&self, name: &str) -> Result<()> {
        let req = self.request("DELETE", &format!("/functions/{}", encode(name.as_bytes())));
        self.send(req, None)
            .map_err(|f| self.error(f, |_, m| m.to_string()))?;
        Ok(())
    }

    /// The deployed functions, and the unloadable ones with why.
    pub fn functions(&self) -> Result<(Vec<show::Function>, Unloadable)> {
        let resp = (self.send(self.request("GET", "/functions"), None))
            .map_err(|f| self.error(f, |_, m| m.to_string()))?;
        let v = read_json(resp)?;
        let fs = (v["functions"].as_array().into_iter().flatten())
            .map(function_of)
            .collect::<Result<Vec<_>>>()?;
        let bad = (v["unloadable"].as_array().into_iter().flatten())
            .map(|u| (text(&u["name"]), text(&u["reason"])))
            .collect();
        Ok((fs, bad))
    }

    /// The output; the guest's log lines, `(level, message)`, go to
    /// `on_log` first, those of a failed invocation too.
    pub fn invoke(
        &self,
        name: &str,
        input: &[u8],
        on_log: &mut dyn FnMut(&str, &str),
    ) -> Result<Vec<u8>> {
        let path = format!("/invoke/{}?logs=1", encode(name.as_bytes()));
        let resp = match self.send(self.request("POST", &path), Some(input)) {
            Ok(resp) => resp,
            Err(f) => {
                if let Failure::Api { logs, .. } = &f {
                    logs.iter().for_each(|(level, m)| on_log(level, m));
                }
                return Err(self.error(f, |_, m| format!("invoking {name}: {m}")));
            }
        };
        let v = read_json(resp)?;
        log_lines(&v).iter().for_each(|(level, m)| on_log(level, m));
        unhex(v["output_hex"].as_str().unwrap_or_default())
    }

    fn state_path(ns: &str, key: &str) -> String {
        format!(
            "/state/{}/{}",
            encode(ns.as_bytes()),
            encode(key.as_bytes())
        )
    }

    /// The value of `ns/key`; `None` if there is none.
    pub fn state_get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>> {
        match self.send(self.request("GET", &Self::state_path(ns, key)), None) {
            Ok(resp) => Ok(Some(read_bytes(resp)?)),
            Err(Failure::Api { status: 404, .. }) => Ok(None),
            Err(f) => Err(self.error(f, |_, m| m.to_string())),
        }
    }

    pub fn state_put(&self, ns: &str, key: &str, value: &[u8]) -> Result<()> {
        let req = self.request("PUT", &Self::state_path(ns, key));
        self.send(req, Some(value))
            .map_err(|f| self.error(f, |_, m| m.to_string()))?;
        Ok(())
    }

    /// Whether `ns/key` existed.
    pub fn state_delete(&self, ns: &str, key: &str) -> Result<bool> {
        match self.send(self.request("DELETE", &Self::state_path(ns, key)), None) {
            Ok(_) => Ok(true),
            Err(Failure::Api { status: 404, .. }) => Ok(false),
            Err(f) => Err(self.error(f, |_, m| m.to_string())),
        }
    }

    /// Up to `limit` pairs of `ns` in `[start, end)`, page by page.
    pub fn state_scan(
        &self,
        ns: &str,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut from = start.map(<[u8]>::to_vec);
        while out.len() < limit {
            let page = (limit - out.len()).min(MAX_SCAN_LIMIT);
            let mut q = vec![format!("limit={page}")];
            q.extend(from.as_deref().map(|s| format!("start={}", encode(s))));
            q.extend(end.map(|e| format!("end={}", encode(e))));
            let path = format!("/state/{}?{}", encode(ns.as_bytes()), q.join("&"));
            let resp = (self.send(self.request("GET", &path), None))
                .map_err(|f| self.error(f, |_, m| m.to_string()))?;
            let v = read_json(resp)?;
            for item in v["items"].as_array().into_iter().flatten() {
                let k = unhex(item["key_hex"].as_str().unwrap_or_default())?;
                out.push((k, unhex(item["value_hex"].as_str().unwrap_or_default())?));
            }
            match v["next_hex"].as_str() {
                Some(next) => from = Some(unhex(next)?),
                None => break,
            }
        }
        Ok(out)
    }

    pub fn stats(&self) -> Result<show::Stats> {
        let resp = (self.send(self.request("GET", "/stats"), None))
            .map_err(|f| self.error(f, |_, m| m.to_string()))?;
        stats_of(&read_json(resp)?)
    }

    /// Copies the log lines of `name` to `out` as they arrive; with
    /// `follow`, until the server ends the stream (it stops) or the
    /// process is interrupted.
    pub fn logs(&self, name: &str, follow: bool, out: &mut dyn Write) -> Result<()> {
        let mut path = format!("/functions/{}/logs", encode(name.as_bytes()));
        if follow {
            path.push_str("?follow=1");
        }
        let resp = (self.send(self.request("GET", &path), None))
            .map_err(|f| self.error(f, |_, m| m.to_string()))?;
        let mut reader = std::io::BufReader::new(resp.into_reader());
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("reading the logs from {}: {e}", self.base))?;
            if n == 0 {
                return Ok(());
            }
            out.write_all(&line)?;
            out.flush()?;
        }
    }
}

fn api_failure(status: u16, resp: ureq::Response) -> Failure {
    let body = resp.into_string().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let e = &v["error"];
    match (e["code"].as_str(), e["message"].as_str()) {
        (Some(code), Some(message)) => Failure::Api {
            status,
            code: code.to_string(),
            message: message.to_string(),
            function_code: e["function_code"].as_i64(),
            logs: log_lines(&v),
        },
        _ => Failure::Other(format!(
            "the server answered {status} without a Rime error (is --server a Rime server?): {}",
            body.chars().take(200).collect::<String>()
        )),
    }
}

/// The `logs` of an invocation's answer, as `(level, message)`.
fn log_lines(v: &serde_json::Value) -> LogLines {
    (v["logs"].as_array().into_iter().flatten())
        .map(|l| (text(&l["level"]), text(&l["message"])))
        .collect()
}

fn read_bytes(resp: ureq::Response) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut v = Vec::new();
    resp.into_reader()
        .take(MAX_JSON_BYTES)
        .read_to_end(&mut v)
        .map_err(|e| format!("reading the server's answer: {e}"))?;
    Ok(v)
}

fn read_json(resp: ureq::Response) -> Result<serde_json::Value> {
    let body = read_bytes(resp)?;
    serde_json::from_slice(&body)
        .map_err(|e| format!("the server's answer is not JSON: {e}").into())
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn num(v: &serde_json::Value, field: &str) -> Result<u64> {
    v[field]
        .as_u64()
        .ok_or_else(|| format!("the server's answer lacks {field:?}").into())
}

fn function_of(v: &serde_json::Value) -> Result<show::Function> {
    Ok(show::Function {
        name: text(&v["name"]),
        generation: num(v, "generation")?,
        module_len: num(v, "module_len")?,
        sha256: text(&v["sha256"]),
        memory_bytes: num(v, "memory_bytes")?,
        deadline_ms: num(v, "deadline_ms")?,
        grants: (v["grants"].as_array().into_iter().flatten())
            .map(|g| (text(&g["namespace"]), g["writable"].as_bool() == Some(true)))
            .collect(),
        config: (v["config"].as_array().into_iter().flatten())
            .map(text)
            .collect(),
    })
}

fn stats_of(v: &serde_json::Value) -> Result<show::Stats> {
    let inv = &v["invocations"];
    Ok(show::Stats {
        data_dir: text(&v["data_dir"]),
        poisoned: v["poisoned"].as_str().map(str::to_string),
        allocated_pages: num(v, "allocated_pages")?,
        resident_pages: num(v, "resident_pages")?,
        pool_hits: num(v, "pool_hits")?,
        pool_misses: num(v, "pool_misses")?,
        pool_evictions: num(v, "pool_evictions")?,
        pool_write_backs: num(v, "pool_write_backs")?,
        log_bytes: num(v, "log_bytes")?,
        durable_lsn: num(v, "durable_lsn")?,
        recovered_records: num(v, "recovered_records")?,
        commits: num(v, "commits")?,
        read_only: num(v, "read_only")?,
        conflicts: num(v, "conflicts")?,
        checkpoints: num(v, "checkpoints")?,
        functions: num(v, "functions")?,
        cache_hits: num(v, "cache_hits")?,
        compiles: num(v, "compiles")?,
        invocations: Some((
            num(inv, "committed")?,
            num(inv, "failed")?,
            num(inv, "retries")?,
        )),
    })
}

/// Percent-encodes every byte but `[A-Za-z0-9_.~-]` (path segments and
/// query values alike: `/`, `+`, `&` and `%` in a key stay the key's).
pub fn encode(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::with_capacity(b.len()), |mut s, &c| {
        if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'~' | b'-') {
            s.push(c as char);
        } else {
            let _ = write!(s, "%{c:02X}");
        }
        s
    })
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("the server sent odd-length hex {s:?}").into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| format!("the server sent bad hex {s:?}").into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_through_the_servers_decoder() {
        let key = b"a/b c+%&=\xff\x00.~";
        let e = encode(key);
        assert!(!e.contains(['/', ' ', '+', '&', '=']), "{e}");
        assert_eq!(crate::query::percent_decode(&e, true).unwrap(), key);
        assert_eq!(crate::query::percent_decode(&e, false).unwrap(), key);
        assert_eq!(unhex(&env::hex(key)).unwrap(), key);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
    }

    #[test]
    fn urls_are_checked() {
        assert!(Client::new("http://127.0.0.1:7878/", None).is_ok());
        let e = Client::new("https://x", None).err().unwrap().to_string();
        assert!(e.contains("plain HTTP"), "{e}");
        let e = Client::new("localhost:7878", None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("expected http://HOST:PORT"), "{e}");
    }
}
