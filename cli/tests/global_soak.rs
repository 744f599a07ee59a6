//! The bank at its size (issue 20, `docs/global.md`), not CI:
//! `scripts/global-soak` runs it in a release build. A Redis Cluster of 3
//! masters, 3 `rime serve` nodes on the global namespace `bank`, 10,000
//! transfers over HTTP from clients spread over the nodes, optionally one
//! node SIGKILLed halfway. Checked: the total is exact and every node
//! (the killed one restarted) answers balances that are the acknowledged
//! transfers plus some of those of unknown outcome.
//!
//! Settings (environment): `RIME_SOAK_TRANSFERS` (10000),
//! `RIME_SOAK_CLIENTS_PER_NODE` (4), `RIME_SOAK_ACCOUNTS` (64),
//! `RIME_SOAK_KILL` (1: SIGKILL node 2 halfway; 0: no kill),
//! `RIME_SOAK_REPLICAS` (0: replicas per master).

mod common;

use common::bank::{Ledger, Outcome, Rng, balances_on, bank_ok, open_account, send_bank};
use common::{Server, TOKEN, auth, send, text};
use rime_global::testing::RedisCluster;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const NODES: usize = 3;
const VICTIM: usize = 2;
const INITIAL: i64 = 1000;
/// A transfer that failed clearly (nothing committed) is sent again, at
/// most this many times.
const MAX_TRIES: usize = 20;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a number"))
    })
}

fn start_node(cluster: &RedisCluster, dir: &TempDir) -> Server {
    let urls = cluster.url_list();
    Server::start(dir.path(), &["--token", TOKEN, "--global", &urls])
}

fn deploy_bank(s: &Server) {
    let url = s.url("/functions/bank?global=bank");
    let (st, body) = send(auth(ureq::post(&url)), Some(&common::guest("bank")));
    assert_eq!(st, 201, "{}", text(&body));
}

/// What the clients did, summed.
#[derive(Default)]
struct Tally {
    ledger: Ledger,
    refused: usize,
    /// Transfers that still failed clearly after `MAX_TRIES`.
    failed: usize,
    /// Sends again after a clear failure, by error code.
    retries: std::collections::BTreeMap<String, usize>,
}

/// The shared run: where the transfers' slots are counted and the kill
/// announced.
struct Run<'a> {
    bases: &'a [String],
    accounts: usize,
    transfers: usize,
    next: AtomicUsize,
    killed: AtomicBool,
}

/// One client: takes transfer slots until there are none left, sending
/// each to its node (after the kill, a victim's client moves to the next
/// node); a clear failure is retried, a cut connection is an unknown
/// outcome (only on the killed node).
fn client(run: &Run, id: usize) -> Tally {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut rng = Rng::new(id as u64);
    let mut node = id % NODES;
    let mut tally = Tally::default();
    while run.next.fetch_add(1, Ordering::Relaxed) < run.transfers {
        let t = rng.transfer(run.accounts, 50);
        let input = format!("transfer a{} a{} {}", t.0, t.1, t.2);
        for attempt in 1.. {
            let sent = send_bank(&agent, &run.bases[node], &input);
            match sent.outcome {
                Outcome::Ok => tally.ledger.acknowledged.push(t),
                Outcome::Refused => tally.refused += 1,
                Outcome::Unknown(code) if code == "transport" => {
                    assert!(
                        node == VICTIM && run.killed.load(Ordering::SeqCst),
                        "node {node}: connection failed"
                    );
                    tally.ledger.unknown.push(t);
                    node = (node + 1) % NODES;
                }
                Outcome::Unknown(_) => tally.ledger.unknown.push(t),
                Outcome::Failed(code) if attempt < MAX_TRIES => {
                    *tally.retries.entry(code).or_default() += 1;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Outcome::Failed(_) => tally.failed += 1,
            }
            break;
        }
    }
    tally
}

fn merge(mut all: Tally, t: Tally) -> Tally {
    all.ledger.acknowledged.extend(t.ledger.acknowledged);
    all.ledger.unknown.extend(t.ledger.unknown);
    all.refused += t.refused;
    all.failed += t.failed;
    for (code, n) in t.retries {
        *all.retries.entry(code).or_default() += n;
    }
    all
}

#[test]
#[ignore = "soak scale: run by scripts/global-soak (release build)"]
fn ten_thousand_bank_transfers_over_three_nodes() {
    let transfers = setting("RIME_SOAK_TRANSFERS", 10_000);
    let per_node = setting("RIME_SOAK_CLIENTS_PER_NODE", 4);
    let accounts = setting("RIME_SOAK_ACCOUNTS", 64);
    let kill = setting("RIME_SOAK_KILL", 1) == 1;
    let replicas = setting("RIME_SOAK_REPLICAS", 0);
    let cluster = RedisCluster::start_with_replicas(3, replicas)
        .expect("the soak needs redis-server (RIME_REQUIRE_REDIS=1)");
    let dirs: Vec<TempDir> = (0..NODES).map(|_| TempDir::new().unwrap()).collect();
    let mut nodes: Vec<Option<Server>> =
        dirs.iter().map(|d| Some(start_node(&cluster, d))).collect();
    let bases: Vec<String> = nodes.iter().flatten().map(|n| n.base.clone()).collect();
    nodes.iter().flatten().for_each(deploy_bank);
    let agent = ureq::agent();
    for a in 0..accounts {
        open_account(&agent, &bases[a % NODES], &format!("a{a}"), INITIAL);
    }
    let run = Run {
        bases: &bases,
        accounts,
        transfers,
        next: AtomicUsize::new(0),
        killed: AtomicBool::new(false),
    };
    let start = Instant::now();
    let tally = std::thread::scope(|s| {
        let hs: Vec<_> = (0..NODES * per_node)
            .map(|id| {
                let run = &run;
                s.spawn(move || client(run, id))
            })
            .collect();
        if kill {
            while run.next.load(Ordering::Relaxed) < transfers / 2 {
                std::thread::sleep(Duration::from_millis(5));
            }
            run.killed.store(true, Ordering::SeqCst);
            drop(nodes[VICTIM].take()); // SIGKILL (Server's drop)
            eprintln!("node {VICTIM} SIGKILLed after {:?}", start.elapsed());
        }
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .fold(Tally::default(), merge)
    });
    let took = start.elapsed();
    report(&tally, transfers, took);
    if kill {
        nodes[VICTIM] = Some(start_node(&cluster, &dirs[VICTIM]));
    }
    check(&nodes, &tally.ledger, accounts);
    eprintln!("soak check: OK (total exact, every node answers the same balances)");
}

fn report(tally: &Tally, transfers: usize, took: Duration) {
    let retries: usize = tally.retries.values().sum();
    eprintln!(
        "soak: {transfers} transfers in {:.1} s ({:.0}/s): {} acknowledged, {} refused \
         (overdraft), {} failed after {MAX_TRIES} tries, {} unknown; {retries} retries {:?}",
        took.as_secs_f64(),
        transfers as f64 / took.as_secs_f64(),
        tally.ledger.acknowledged.len(),
        tally.refused,
        tally.failed,
        tally.ledger.unknown.len(),
        tally.retries
    );
}

/// Every node (the killed one restarted on its directory) answers the same
/// balances, their sum is exact, and they are the acknowledged transfers
/// plus some of the unknown ones.
fn check(nodes: &[Option<Server>], ledger: &Ledger, accounts: usize) {
    let agent = ureq::agent();
    let nodes: Vec<&Server> = nodes.iter().flatten().collect();
    assert_eq!(nodes.len(), NODES);
    let balances = balances_on(&agent, &nodes[0].base, accounts);
    assert_eq!(balances.iter().sum::<i64>(), accounts as i64 * INITIAL);
    for n in &nodes {
        assert_eq!(
            balances_on(&agent, &n.base, accounts),
            balances,
            "{}",
            n.base
        );
        let total = bank_ok(&agent, &n.base, "total");
        assert_eq!(total.trim(), (accounts as i64 * INITIAL).to_string());
    }
    assert!(
        ledger.explains(&balances, INITIAL),
        "balances {balances:?} are not the {} acknowledged transfers plus some of the {} of \
         unknown outcome {:?}: an acknowledged transfer was lost",
        ledger.acknowledged.len(),
        ledger.unknown.len(),
        ledger.unknown
    );
}
