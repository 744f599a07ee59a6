//! Redis, the network state store the Go project uses: a `redis-server`
//! the harness starts on 127.0.0.1 (a free port, a temp dir) and kills at
//! the end. `nosync`: no persistence (`--save '' --appendonly no`);
//! `group` and `sync`: `--appendonly yes --appendfsync always` (Redis
//! fsyncs the AOF before replying, once per event-loop pass, so
//! concurrent clients share it). Records are strings; scans use a sorted
//! set of all keys at score 0 read with ZRANGEBYLEX, then MGET — Redis's
//! documented lexicographic-index pattern (YCSB's binding keeps such an
//! index too). One connection per worker thread.

use crate::engine::{Durability, Engine, EngineConfig, Result};
use std::cell::Cell;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const INDEX: &str = "_ycsb_index";

pub struct Redis {
    server: Mutex<Option<Child>>,
    conns: Vec<Mutex<redis::Connection>>,
    durable: bool,
    port: u16,
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn slot() -> usize {
    SLOT.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_SLOT.fetch_add(1, Ordering::Relaxed));
        }
        s.get()
    })
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Redis {
    pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        let port = free_port()?;
        let durable = cfg.durability != Durability::NoSync;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--protected-mode", "yes", "--save", ""])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if durable {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting redis-server (apt-get install redis-server): {e}"))?;
        let mut me = Redis {
            server: Mutex::new(Some(child)),
            conns: Vec::new(),
            durable,
            port,
        };
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = loop {
            match client.get_connection() {
                Ok(mut c) => {
                    if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                        break c;
                    }
                }
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        me.conns.push(Mutex::new(first));
        for _ in 1..cfg.threads.max(1) {
            me.conns.push(Mutex::new(client.get_connection()?));
        }
        Ok(me)
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<R>,
    ) -> Result<R> {
        let mut c = self.conns[slot() % self.conns.len()].lock().unwrap();
        Ok(f(&mut c)?)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Engine for Redis {
    fn name(&self) -> &str {
        "redis"
    }
    fn describe(&self) -> String {
        format!(
            "redis-server on 127.0.0.1:{}, {}; SET + ZADD index, scans ZRANGEBYLEX + MGET; rmw = GET then SET",
            self.port,
            if self.durable {
                "appendonly yes, appendfsync always"
            } else {
                "no persistence"
            }
        )
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.with(|c| {
            redis::pipe()
                .cmd("SET")
                .arg(key)
                .arg(value)
                .ignore()
                .cmd("ZADD")
                .arg(INDEX)
                .arg(0)
                .arg(key)
                .ignore()
                .query::<()>(c)
        })
    }
    fn insert_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.with(|c| {
            let mut p = redis::pipe();
            for (k, v) in batch {
                p.cmd("SET").arg(k).arg(v).ignore();
                p.cmd("ZADD").arg(INDEX).arg(0).arg(k).ignore();
            }
            p.query::<()>(c)
        })
    }
    fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let v: Option<Vec<u8>> = self.with(|c| redis::cmd("GET").arg(key).query(c))?;
        Ok(match v {
            Some(v) => {
                *out = v;
                true
            }
            None => false,
        })
    }
    fn update(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.with(|c| redis::cmd("SET").arg(key).arg(value).query::<()>(c))
    }
    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let mut lo = Vec::with_capacity(start.len() + 1);
        lo.push(b'[');
        lo.extend_from_slice(start);
        let values: Vec<Option<Vec<u8>>> = self.with(|c| {
            let keys: Vec<Vec<u8>> = redis::cmd("ZRANGEBYLEX")
                .arg(INDEX)
                .arg(&lo)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(n)
                .query(c)?;
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut mget = redis::cmd("MGET");
            for k in &keys {
                mget.arg(k);
            }
            // MGET of one key returns a bare value in redis-rs; ask for a list.
            mget.query(c)
        })?;
        for v in values.iter().flatten() {
            super::consume(&[], v);
        }
        Ok(values.len())
    }
}
