//! Real `redis-server` processes in cluster mode, for tests (never a mock):
//! [`RedisCluster::start`] runs `masters` servers on free loopback ports in
//! a temporary directory, each with `appendonly yes` and `appendfsync
//! always` (nothing for invalidations: `CLIENT TRACKING` needs no
//! configuration), joins them with `redis-cli
//! --cluster create`, and waits until every node says `cluster_state:ok`.
//! [`RedisCluster::start_with_replicas`] adds replicas (same settings) and
//! waits until each is in sync; [`RedisCluster::kill_master_of`] and
//! [`RedisCluster::wait_for_failover`] stop the master of a namespace's
//! slot with SIGKILL and wait for its replica's promotion; a server
//! stopped with [`RedisCluster::pause`] (SIGSTOP) is left out of those
//! waits, so a failover from a paused master can be waited for too.
//! Dropping it kills the servers.
//!
//! Without `redis-server` on `PATH` it returns `None` (the test skips,
//! saying so), or panics when `CI` or `RIME_REQUIRE_REDIS` is set.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Stopped with SIGSTOP ([`RedisCluster::pause`]): running, but it
    /// answers nothing, so waits on the cluster leave it out.
    paused: AtomicBool,
}

/// `--cluster-node-timeout` of a cluster without replicas (nothing to fail
/// over to) and of one with replicas (small: the failover tests wait for
/// it; a master is declared failed after this, then its replica promotes
/// itself within about a second).
const NODE_TIMEOUT_MS: u32 = 2000;
const FAILOVER_NODE_TIMEOUT_MS: u32 = 1000;

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct NodeLine {
    pub id: String,
    pub port: u16,
    /// `master`, `slave`, `myself`, `fail`, `fail?`, ...
    pub flags: Vec<String>,
    /// The master's id, for a replica.
    pub master: Option<String>,
    /// Slot ranges served (masters), inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl NodeLine {
    pub fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }
    pub fn failed(&self) -> bool {
        self.flags.iter().any(|f| f == "fail" || f == "fail?")
    }
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

/// Ports a server is tried on before the cluster gives up.
const MAX_PORT_TRIES: usize = 5;

/// How long `redis-cli --cluster create` may take: it waits for the nodes
/// to agree on the configuration, a second or two here.
const CREATE_LIMIT: Duration = Duration::from_secs(60);

/// A port free on loopback whose cluster-bus port (+10000) is free too,
/// when it was looked at: another process (a parallel test's server or
/// client) may take it before the server binds it, so [`start_node`]
/// checks that the server answering there is its own.
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
        RedisCluster::start_with_replicas(masters, 0)
    }

    /// Starts `masters` masters with `replicas` replicas each (`redis-cli
    /// --cluster create --cluster-replicas`), every server with `appendonly
    /// yes` and `appendfsync always`, and waits until every node reports
    /// `cluster_state:ok` and every replica's link to its master is up and
    /// the master counts it (the initial sync done).
    pub fn start_with_replicas(masters: usize, replicas: usize) -> Option<RedisCluster> {
        Self::start_with_node_timeout(masters, replicas, None)
    }

    /// [`RedisCluster::start_with_replicas`] with the given
    /// `--cluster-node-timeout` (`None`: the default for the replica
    /// count): how long a stopped node goes unnoticed.
    pub fn start_with_node_timeout(
        masters: usize,
        replicas: usize,
        node_timeout_ms: Option<u32>,
    ) -> Option<RedisCluster> {
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
        let node_timeout = node_timeout_ms.unwrap_or(match replicas {
            0 => NODE_TIMEOUT_MS,
            _ => FAILOVER_NODE_TIMEOUT_MS,
        });
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut c = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..masters * (1 + replicas) {
            let node = start_node(c.dir.path(), node_timeout);
            c.nodes.push(node);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &c.nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        create
            .arg("--cluster-replicas")
            .arg(replicas.to_string())
            .arg("--cluster-yes");
        let log = c.dir.path().join("cluster-create.log");
        run_with_limit(create, CREATE_LIMIT, "redis-cli --cluster create", &log);
        for n in &c.nodes {
            wait_for(
                Duration::from_secs(20),
                || cluster_ok(n.port),
                "every node reports cluster_state:ok",
            );
        }
        if replicas > 0 {
            for n in &c.nodes {
                wait_for(
                    Duration::from_secs(20),
                    || in_sync(n.port, replicas),
                    "every replica is in sync with its master",
                );
            }
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

    /// The ports of the servers still running and not paused.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.paused.load(Ordering::SeqCst))
            .map(|n| n.port)
            .collect()
    }

    /// `CLUSTER NODES` as the first running server that answers sees it.
    pub fn cluster_nodes(&self) -> Option<Vec<NodeLine>> {
        self.live_ports()
            .into_iter()
            .find_map(|port| query::<String>(port, redis::cmd("CLUSTER").arg("NODES")))
            .map(|text| parse_nodes(&text))
    }

    /// The port of the master serving namespace `ns`'s slot (`CLUSTER
    /// KEYSLOT` of its keys, then `CLUSTER NODES`), as a running server
    /// sees it; panics if none does.
    pub fn master_of(&self, ns: &str) -> u16 {
        self.try_master_of(ns)
            .unwrap_or_else(|| panic!("no live master serves the slot of {ns:?}"))
    }

    fn try_master_of(&self, ns: &str) -> Option<u16> {
        let slot: u16 = self.live_ports().into_iter().find_map(|port| {
            query(
                port,
                redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(crate::keys::seq_key(ns)),
            )
        })?;
        assert_eq!(
            slot,
            crate::keys::slot(ns),
            "CLUSTER KEYSLOT and keys::slot agree"
        );
        self.cluster_nodes()?
            .into_iter()
            .find(|n| {
                n.is_master() && !n.failed() && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
            })
            .map(|n| n.port)
    }

    /// Kills (SIGKILL) the master serving namespace `ns`'s slot and waits
    /// for it; returns its port.
    pub fn kill_master_of(&mut self, ns: &str) -> u16 {
        let port = self.master_of(ns);
        self.kill(port);
        port
    }

    /// Kills (SIGKILL) the server on `port` and waits for it.
    pub fn kill(&mut self, port: u16) {
        let n = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a server of this cluster");
        let mut child = n.child.take().expect("a running server");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Waits (at most `limit`) until namespace `ns`'s slot is served by a
    /// running master other than `killed` and every running server reports
    /// `cluster_state:ok`; returns the new master's port.
    pub fn wait_for_failover(&self, ns: &str, killed: u16, limit: Duration) -> u16 {
        let live = self.live_ports();
        let mut master = 0;
        wait_for(
            limit,
            || {
                live.iter().all(|&p| cluster_ok(p)) && {
                    master = self.try_master_of(ns).unwrap_or(killed);
                    master != killed && live.contains(&master)
                }
            },
            "a replica is promoted and the cluster is ok again",
        );
        master
    }

    /// The port of a replica of the master on `master`, as the cluster
    /// sees it.
    pub fn replica_of(&self, master: u16) -> u16 {
        let nodes = self.cluster_nodes().expect("CLUSTER NODES");
        let id = &nodes
            .iter()
            .find(|n| n.port == master)
            .expect("the master")
            .id;
        nodes
            .iter()
            .find(|n| n.master.as_ref() == Some(id) && !n.failed())
            .map(|n| n.port)
            .expect("a replica of the master")
    }

    /// Stops (SIGSTOP, `pause: true`) or resumes (SIGCONT) the server on
    /// `port`: a server that neither answers nor dies.
    pub fn pause(&self, port: u16, pause: bool) {
        let n = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a server");
        let pid = n.child.as_ref().expect("a running server").id();
        let sig = if pause { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
        n.paused.store(pause, Ordering::SeqCst);
    }

    /// Closes the master on `master`'s links to its replicas (`CLIENT KILL
    /// TYPE replica`): until a replica reconnects, the master's writes
    /// reach no replica.
    pub fn cut_replication(&self, master: u16) {
        let n: Option<i64> = query(
            master,
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica"),
        );
        assert!(n.is_some_and(|n| n > 0), "CLIENT KILL TYPE replica: {n:?}");
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

/// A server of ours on a free port, answering. A port can be taken
/// between [`free_port`] and the server's bind: that server then exits
/// ("Address already in use") while whatever holds the port answers
/// `PING`, and `redis-cli --cluster create` given a stranger waits for
/// it forever (a CI run hung on it). So a server counts as up only when
/// the one answering on its port reports its process id; one that exits
/// or is not heard from in 10 s is replaced on another port.
fn start_node(dir: &Path, node_timeout_ms: u32) -> Node {
    start_node_on(dir, node_timeout_ms, free_port)
}

/// [`start_node`] on the ports `next_port` gives.
fn start_node_on(dir: &Path, node_timeout_ms: u32, mut next_port: impl FnMut() -> u16) -> Node {
    for _ in 0..MAX_PORT_TRIES {
        let port = next_port();
        let mut child = spawn_server(dir, port, node_timeout_ms);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            if server_pid(port) == Some(child.id()) {
                return Node {
                    port,
                    child: Some(child),
                    paused: AtomicBool::new(false),
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!(
        "no redis-server of this test came up in {MAX_PORT_TRIES} tries on free ports \
         (their logs: {})",
        dir.display()
    );
}

/// The process id the server answering on `port` reports (`INFO server`).
fn server_pid(port: u16) -> Option<u32> {
    let info: String = query(port, redis::cmd("INFO").arg("server"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// Runs `cmd` to completion, its output to the file `log`; kills it and
/// panics with that output if it takes longer than `limit` or fails.
fn run_with_limit(mut cmd: Command, limit: Duration, what: &str, log: &Path) {
    let out = std::fs::File::create(log).expect("a log file for a command");
    let err = out.try_clone().expect("a second handle to the log file");
    let mut child = cmd
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let printed = std::fs::read_to_string(log).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("{what} failed ({s}): {printed}"),
        None => panic!("{what} took over {limit:?}, killed: {printed}"),
    }
}

fn spawn_server(dir: &Path, port: u16, node_timeout_ms: u32) -> Child {
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
        .args(["--cluster-enabled", "yes", "--cluster-node-timeout"])
        .arg(node_timeout_ms.to_string())
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server")
}

fn query<T: redis::FromRedisValue>(port: u16, cmd: &mut redis::Cmd) -> Option<T> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut c = c
        .get_connection_with_timeout(Duration::from_millis(200))
        .ok()?;
    c.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    cmd.query(&mut c).ok()
}

fn cluster_ok(port: u16) -> bool {
    query::<String>(port, redis::cmd("CLUSTER").arg("INFO"))
        .is_some_and(|info| info.contains("cluster_state:ok"))
}

/// A replica: its link to the master is up and the initial sync done. A
/// master: `replicas` replicas connected and online.
fn in_sync(port: u16, replicas: usize) -> bool {
    let Some(info) = query::<String>(port, redis::cmd("INFO").arg("replication")) else {
        return false;
    };
    if info.contains("role:slave") {
        return info.contains("master_link_status:up")
            && info.contains("master_sync_in_progress:0");
    }
    let online = info
        .lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count();
    online >= replicas
}

fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let addr = f[1].split('@').next()?;
            let port = addr.rsplit_once(':')?.1.parse().ok()?;
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            Some(NodeLine {
                id: f[0].to_string(),
                port,
                flags: f[2].split(',').map(str::to_string).collect(),
                master: (f[3] != "-").then(|| f[3].to_string()),
                slots,
            })
        })
        .collect()
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a CI run hung in `redis-cli --cluster create` after a
    /// server's port was taken by another test's server before it bound
    /// it (the stranger answered PING for it).
    #[test]
    fn a_port_taken_before_the_server_binds_it_is_replaced() {
        if !have("redis-server") {
            assert!(
                !required(),
                "redis-server not found (scripts/setup installs it)"
            );
            eprintln!("SKIPPED: redis-server not found");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let stranger = start_node(dir.path(), NODE_TIMEOUT_MS);
        let mut ports = [stranger.port].into_iter();
        let mut ours = start_node_on(dir.path(), NODE_TIMEOUT_MS, || {
            ports.next().unwrap_or_else(free_port)
        });
        assert_ne!(ours.port, stranger.port);
        let child = ours.child.as_mut().unwrap();
        assert_eq!(server_pid(ours.port), Some(child.id()));
        for mut n in [ours, stranger] {
            let mut c = n.child.take().unwrap();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    #[test]
    fn a_command_past_its_limit_is_killed_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo waiting; sleep 30"]);
        let log = dir.path().join("log");
        let started = Instant::now();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_with_limit(cmd, Duration::from_millis(200), "the sleeper", &log)
        }))
        .expect_err("a command past its limit panics");
        assert!(started.elapsed() < Duration::from_secs(10));
        let msg = panicked.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("took over") && msg.contains("waiting"),
            "{msg}"
        );
    }
}
