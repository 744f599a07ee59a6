//! The client against a real Redis Cluster (3 `redis-server` masters,
//! `testing::RedisCluster`): reads, the commit script's validation, the
//! local tier's stale copies, a model check, concurrent counters, and a
//! cluster that is gone.

use rime_global::testing::RedisCluster;
use rime_global::{Cluster, Commit, GlobalConfig, GlobalError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn client(c: &RedisCluster) -> Cluster {
    Cluster::new(GlobalConfig::new(c.urls())).expect("client")
}

/// A client whose tier is not invalidated (no `CLIENT TRACKING`): a stale
/// copy stays until a commit finds it (with invalidations, whether it is
/// still there when read depends on how fast the push came).
fn client_without_invalidations(c: &RedisCluster) -> Cluster {
    Cluster::new(GlobalConfig::new(c.urls()).invalidations(false)).expect("client")
}

/// Increments `key` of `ns` by one: read, commit; re-run on a conflict.
fn increment(cl: &Cluster, ns: &str, key: &[u8]) -> u32 {
    for retries in 0.. {
        let r = cl.read(ns, key, soon()).expect("read");
        let n = r
            .versioned
            .value
            .as_deref()
            .map_or(0, |v| i64::from_le_bytes(v.try_into().expect("8 bytes")));
        let new = (n + 1).to_le_bytes();
        match cl
            .commit(
                ns,
                &[(key, r.versioned.version)],
                &[(key, Some(&new))],
                soon(),
            )
            .expect("commit")
        {
            Commit::Committed { .. } => return retries,
            Commit::Conflict => continue,
        }
    }
    unreachable!()
}

#[test]
fn commit_validates_reads_and_applies_writes() {
    let Some(c) = RedisCluster::start(3) else {
        return;
    };
    let a = client_without_invalidations(&c);
    let b = client(&c);
    // Absent: version 0.
    let r = a.read("t1", b"k", soon()).unwrap();
    assert_eq!((r.versioned.version, r.versioned.value), (0, None));
    // `b` writes it; `a`'s tier copy (absent, 0) is now stale.
    let seq = match b
        .commit("t1", &[], &[(b"k", Some(b"one"))], soon())
        .unwrap()
    {
        Commit::Committed { seq } => seq,
        Commit::Conflict => panic!("blind write conflicted"),
    };
    assert_eq!(seq, 1);
    let stale = a.read("t1", b"k", soon()).unwrap();
    assert!(stale.from_tier);
    assert_eq!(stale.versioned.version, 0);
    // Its commit is refused and writes nothing ...
    let r = a
        .commit("t1", &[(b"k", 0)], &[(b"other", Some(b"x"))], soon())
        .unwrap();
    assert_eq!(r, Commit::Conflict);
    assert_eq!(a.fetch("t1", b"other", soon()).unwrap().value, None);
    // ... and the stale copy left the tier: the next read is fresh.
    let fresh = a.read("t1", b"k", soon()).unwrap();
    assert!(!fresh.from_tier);
    assert_eq!(fresh.versioned.version, 1);
    assert_eq!(fresh.versioned.value.as_deref(), Some(&b"one"[..]));
    // Delete, write again: the version never goes back.
    let Commit::Committed { seq: s2 } = a
        .commit("t1", &[(b"k", 1)], &[(b"k", None)], soon())
        .unwrap()
    else {
        panic!("delete conflicted")
    };
    let Commit::Committed { seq: s3 } = b
        .commit("t1", &[], &[(b"k", Some(b"two"))], soon())
        .unwrap()
    else {
        panic!("put conflicted")
    };
    assert!(s3 > s2 && s2 > 1);
    // `b`'s copy of version 1 is stale though the key was deleted in between.
    assert_eq!(
        b.commit("t1", &[(b"k", 1)], &[], soon()).unwrap(),
        Commit::Conflict
    );
    // A read-only commit of current versions commits as seq 0.
    let v = b.fetch("t1", b"k", soon()).unwrap().version;
    assert_eq!(
        b.commit("t1", &[(b"k", v)], &[], soon()).unwrap(),
        Commit::Committed { seq: 0 }
    );
}

/// Random commits of two clients against a BTreeMap model: a commit is
/// applied exactly when every version it read is still current.
#[test]
fn commits_match_a_model() {
    let Some(c) = RedisCluster::start(3) else {
        return;
    };
    let clients = [client(&c), client(&c)];
    let mut model: BTreeMap<Vec<u8>, (u64, Vec<u8>)> = BTreeMap::new();
    let mut seq = 0u64;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for step in 0..300u64 {
        let cl = &clients[next(2) as usize];
        let keys: Vec<Vec<u8>> = (0..1 + next(3))
            .map(|_| vec![b'a' + next(6) as u8])
            .collect();
        let reads: Vec<(Vec<u8>, u64)> = keys
            .iter()
            .map(|k| {
                (
                    k.clone(),
                    cl.read("model", k, soon()).unwrap().versioned.version,
                )
            })
            .collect();
        let mut writes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for _ in 0..next(3) {
            let k = vec![b'a' + next(6) as u8];
            let v = (next(4) != 0).then(|| step.to_le_bytes().to_vec());
            writes.insert(k, v);
        }
        let mut dedup: BTreeMap<&[u8], u64> = BTreeMap::new();
        for (k, v) in &reads {
            dedup.entry(k).or_insert(*v);
        }
        let valid = dedup
            .iter()
            .all(|(k, v)| model.get(*k).map_or(0, |(ver, _)| *ver) == *v);
        let r: Vec<(&[u8], u64)> = dedup.into_iter().collect();
        let w: Vec<(&[u8], Option<&[u8]>)> =
            writes.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
        let got = cl.commit("model", &r, &w, soon()).unwrap();
        if !valid {
            assert_eq!(got, Commit::Conflict, "step {step}");
            continue;
        }
        if w.is_empty() {
            assert_eq!(got, Commit::Committed { seq: 0 }, "step {step}");
            continue;
        }
        seq += 1;
        assert_eq!(got, Commit::Committed { seq }, "step {step}");
        for (k, v) in writes {
            match v {
                Some(v) => model.insert(k, (seq, v)),
                None => model.remove(&k),
            };
        }
    }
    for k in b'a'..b'a' + 6 {
        let got = clients[0].fetch("model", &[k], soon()).unwrap();
        let want = model.get(&vec![k]);
        assert_eq!(got.version, want.map_or(0, |w| w.0));
        assert_eq!(got.value.as_deref(), want.map(|w| &w.1[..]));
    }
}

#[test]
fn concurrent_increments_from_several_clients_are_exact() {
    let Some(c) = RedisCluster::start(3) else {
        return;
    };
    let clients: Vec<Arc<Cluster>> = (0..3).map(|_| Arc::new(client(&c))).collect();
    const PER_THREAD: usize = 200;
    let threads: Vec<_> = clients
        .iter()
        .flat_map(|cl| [cl.clone(), cl.clone()])
        .map(|cl| {
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|_| increment(&cl, "ctr", b"n"))
                    .sum::<u32>()
            })
        })
        .collect();
    let retries: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let v = clients[0].fetch("ctr", b"n", soon()).unwrap();
    let n = i64::from_le_bytes(v.value.as_deref().unwrap().try_into().unwrap());
    assert_eq!(n, (6 * PER_THREAD) as i64, "retries {retries}");
}

#[test]
fn a_cluster_gone_fails_fast_with_a_clear_error() {
    let Some(mut c) = RedisCluster::start(3) else {
        return;
    };
    let cl = client(&c);
    assert!(cl.fetch("gone", b"k", soon()).is_ok());
    c.kill_all();
    let start = Instant::now();
    let deadline = start + Duration::from_millis(500);
    let e = cl.fetch("gone", b"k", deadline).unwrap_err();
    assert!(
        matches!(e, GlobalError::Unavailable(_) | GlobalError::Timeout),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(800),
        "{:?}",
        start.elapsed()
    );
    let e = cl
        .commit("gone", &[], &[(b"k", Some(b"v"))], deadline)
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(800),
        "{e}: {:?}",
        start.elapsed()
    );
}

/// A commit script run twice for one commit (what a client library that
/// resends after a connection reset would do; `Cluster` sends commits
/// once) answers the first run's outcome the second time, rather than
/// failing validation against its own writes.
#[test]
fn a_commit_sent_twice_is_applied_once() {
    let Some(c) = RedisCluster::start(3) else {
        return;
    };
    let cl = client(&c);
    let Commit::Committed { seq } = cl
        .commit("twice", &[], &[(b"k", Some(b"1"))], soon())
        .unwrap()
    else {
        panic!("blind write conflicted")
    };
    let lua = include_str!("../src/script.rs");
    let body = lua
        .split("pub const COMMIT_LUA: &str = r#\"")
        .nth(1)
        .and_then(|s| s.split("\"#;").next())
        .expect("the script in script.rs");
    let mut con = redis::cluster::ClusterClient::new(c.urls())
        .unwrap()
        .get_connection()
        .unwrap();
    // {ok, seq, replicas to wait for}: none here (no replicas).
    let run = |con: &mut redis::cluster::ClusterConnection| -> (i64, i64, i64) {
        redis::cmd("EVAL")
            .arg(body)
            .arg(5)
            .arg(rime_global::keys::seq_key("twice"))
            .arg(rime_global::keys::done_key("twice", "test-1"))
            .arg(rime_global::keys::index_key("twice"))
            .arg(rime_global::keys::value_key("twice", b"k"))
            .arg(rime_global::keys::value_key("twice", b"k"))
            .arg(1) // keys read
            .arg(0) // ranges scanned
            .arg(rime_global::keys::value_prefix("twice").len())
            .arg(seq)
            .arg("p")
            .arg("2")
            .query(con)
            .unwrap()
    };
    let first = run(&mut con);
    assert_eq!(first, (1, seq as i64 + 1, 0));
    assert_eq!(run(&mut con).0, 1, "the resend answers as the first run");
    assert_eq!(
        run(&mut con).1,
        first.1,
        "the resend answers as the first run"
    );
    let v = cl.fetch("twice", b"k", soon()).unwrap();
    assert_eq!((v.version, v.value.as_deref()), (seq + 1, Some(&b"2"[..])));
}

/// A write by another client drops this client's copy of the key (a
/// `CLIENT TRACKING` push), so its next read is fresh without a failed
/// commit.
#[test]
fn a_write_elsewhere_invalidates_the_local_copy() {
    let Some(c) = RedisCluster::start(3) else {
        return;
    };
    let a = client(&c);
    let b = client(&c);
    assert_eq!(a.read("inv", b"k", soon()).unwrap().versioned.version, 0);
    assert!(a.read("inv", b"k", soon()).unwrap().from_tier);
    let Commit::Committed { seq } = b.commit("inv", &[], &[(b"k", Some(b"v"))], soon()).unwrap()
    else {
        panic!("blind write conflicted")
    };
    let start = Instant::now();
    loop {
        let r = a.read("inv", b"k", soon()).unwrap();
        if !r.from_tier || r.versioned.version == seq {
            assert_eq!(r.versioned.version, seq);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no invalidation came"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Invalidations name only the keys this client read: another client's
/// writes of keys it never read (or read once and was told of already)
/// send it nothing; a key read again is tracked again.
#[test]
fn only_keys_this_client_read_are_invalidated() {
    let Some(c) = RedisCluster::start(3) else {
        return;
    };
    let (a, b) = (client(&c), client(&c));
    let put = |keys: &[&[u8]]| {
        let writes: Vec<(&[u8], Option<&[u8]>)> =
            keys.iter().map(|k| (*k, Some(&b"v"[..]))).collect();
        assert!(matches!(
            b.commit("only", &[], &writes, soon()).unwrap(),
            Commit::Committed { .. }
        ));
    };
    // Waits until `a` was told of `n` keys in all, then a little longer
    // for any it should not be told of.
    let told = |n: u64| {
        let start = Instant::now();
        while a.invalidated_keys() < n {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "no invalidation came"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(a.invalidated_keys(), n, "told of keys it did not read");
    };
    a.read("only", b"read", soon()).unwrap();
    put(&[b"read", b"unread-1", b"unread-2"]);
    told(1);
    assert!(!a.read("only", b"read", soon()).unwrap().from_tier);
    // Told once per read: the fresh read above tracks it again, once.
    put(&[b"read", b"unread-1"]);
    told(2);
    put(&[b"read"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(a.invalidated_keys(), 2, "told again without a read");
    // Other namespaces, other slots: nothing either.
    put(&[b"x"]);
    assert!(matches!(
        b.commit("elsewhere", &[], &[(b"read", Some(b"v"))], soon())
            .unwrap(),
        Commit::Committed { .. }
    ));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(a.invalidated_keys(), 2);
    assert_eq!(b.invalidated_keys(), 0, "b read nothing");
}

/// A tracked connection that breaks takes its invalidations with it: the
/// tier is emptied (a write in between would never be announced), the
/// next read is fresh and tracked again on the new connection, and a
/// later write is announced again.
#[test]
fn a_broken_tracked_connection_empties_the_tier_and_tracking_resumes() {
    let Some(c) = RedisCluster::start(3) else {
        return;
    };
    let (a, b) = (client(&c), client(&c));
    a.read("brk", b"k", soon()).unwrap();
    assert!(a.read("brk", b"k", soon()).unwrap().from_tier);
    // Close every client connection of the namespace's master (not the
    // caller's own: `SKIPME yes`).
    let master = c.master_of("brk");
    let mut admin = redis::Client::open(format!("redis://127.0.0.1:{master}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut admin)
        .unwrap();
    assert!(killed >= 1, "a's reads connection was open");
    let start = Instant::now();
    while a.tier_len() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the tier kept copies whose tracking ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A fresh read (the client reconnects), tracked again.
    let start = Instant::now();
    loop {
        match a.read("brk", b"k", soon()) {
            Ok(r) => {
                assert!(!r.from_tier);
                break;
            }
            Err(e) => assert!(start.elapsed() < Duration::from_secs(3), "{e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = a.invalidated_keys();
    assert!(matches!(
        b.commit("brk", &[], &[(b"k", Some(b"v"))], soon()).unwrap(),
        Commit::Committed { .. }
    ));
    let start = Instant::now();
    while a.invalidated_keys() == before {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no invalidation after the reconnection"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!a.read("brk", b"k", soon()).unwrap().from_tier);
}
