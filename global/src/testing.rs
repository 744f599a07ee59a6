//! Real `redis-server` processes in cluster mode, for tests (never a mock):
//! [`RedisCluster::start`] runs `masters` servers on free loopback ports in
//! a temporary directory, each with `appendonly yes`, `appendfsync
//! always` and `notify-keyspace-events Kgh`, joins them with `redis-cli --cluster create`, and waits until
//! every node says `cluster_state:ok`. Dropping it kills the servers.
//!
//! Without `redis-server` on `PATH` it returns `None` (the test skips,
//! saying so), or panics when `CI` or `RIME_REQUIRE_REDIS` is set.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A running test cluster.
pub struct RedisCluster {
    dir: TempDir,
    nodes: Vec<Node>,
}

struct Node {
    port: u16,
    child: Option<Child>,
}

/// Whether a missing `redis-server` must fail the test.
fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("RIME_REQUIRE_REDIS").is_some()
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A port free on loopback whose cluster-bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local addr").port();
        if port < 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

impl RedisCluster {
    /// Starts a cluster of `masters` (at least 3, Redis's minimum) masters.
    pub fn start(masters: usize) -> Option<RedisCluster> {
        assert!(masters >= 3, "Redis Cluster needs at least 3 masters");
        if !have("redis-server") || !have("redis-cli") {
            let msg = "redis-server / redis-cli not found: install Debian's redis-server \
                       (scripts/setup does)";
            if required() {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut c = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..masters {
            let port = free_port();
            let child = spawn_server(c.dir.path(), port);
            c.nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        for n in &c.nodes {
            wait_for(
                Duration::from_secs(10),
                || ping(n.port),
                "redis-server answers PING",
            );
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &c.nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for n in &c.nodes {
            wait_for(
                Duration::from_secs(20),
                || cluster_ok(n.port),
                "every node reports cluster_state:ok",
            );
        }
        Some(c)
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The same, joined with commas (`rime serve --global`).
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills every server (SIGKILL) and waits for them.
    pub fn kill_all(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn spawn_server(dir: &Path, port: u16) -> Child {
    let p = port.to_string();
    let log = dir.join(format!("redis-{port}.log"));
    Command::new("redis-server")
        .args([
            "--port",
            &p,
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "no",
        ])
        .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
        .arg("--cluster-config-file")
        .arg(format!("nodes-{port}.conf"))
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--appendfilename")
        .arg(format!("aof-{port}.aof"))
        .arg("--appenddirname")
        .arg(format!("aof-{port}"))
        .args(["--save", "", "--daemonize", "no"])
        // Keyspace notifications of HSET and DEL: the local tier's
        // invalidations (`invalidate.rs`).
        .args(["--notify-keyspace-events", "Kgh"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server")
}

fn ping(port: u16) -> bool {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

fn cluster_ok(port: u16) -> bool {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
        .is_ok_and(|info| info.contains("cluster_state:ok"))
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
