//! The checker proven able to fail: hand-made anomalies it must reject, and
//! serializable histories (small and large) it must accept.

use super::{Id, Lists, Txn, check};

fn t(id: Id) -> Txn {
    Txn::new(id)
}

fn lists(kv: &[(&str, &[Id])]) -> Lists {
    kv.iter()
        .map(|(k, l)| (k.to_string(), l.to_vec()))
        .collect()
}

/// The checker's verdict, which must be a rejection naming every `needle`.
fn rejects(txns: &[Txn], finals: &Lists, needles: &[&str]) {
    let err = match check(txns, finals) {
        Ok(s) => panic!("the checker accepted an anomaly: {s:?}"),
        Err(e) => e,
    };
    for n in needles {
        assert!(err.contains(n), "the verdict should name {n:?}:\n{err}");
    }
}

#[test]
fn a_serializable_history_passes() {
    let txns = [
        t(6).read("x", &[]),
        t(1).read("x", &[]).append("x"),
        t(2).read("x", &[1]).append("x").read("y", &[]).append("y"),
        t(3).read("x", &[1, 2]).read("y", &[2]),
        t(4).after(3).read("y", &[2]).append("y").read("z", &[]),
        t(5).after(4).read("z", &[]),
    ];
    let s = check(&txns, &lists(&[("x", &[1, 2]), ("y", &[2, 4])])).unwrap();
    assert_eq!((s.txns, s.keys, s.ww, s.wr, s.po), (6, 2, 2, 4, 2), "{s:?}");
    assert!(s.rw >= 2, "{s:?}");
}

#[test]
fn a_lost_update_is_a_g_single_cycle() {
    // Both read x empty and both appended: one overwrote the other's read.
    let txns = [
        t(1).read("x", &[]).append("x"),
        t(2).read("x", &[]).append("x"),
    ];
    rejects(
        &txns,
        &lists(&[("x", &[1, 2])]),
        &[
            "G-single",
            "T1 -Ww(x)-> T2",
            "T2 -Rw(x)-> T1",
            "T2: r x []; append x",
        ],
    );
}

#[test]
fn write_skew_is_a_g2_cycle() {
    let txns = [
        t(1).read("x", &[]).read("y", &[]).append("x"),
        t(2).read("x", &[]).read("y", &[]).append("y"),
    ];
    rejects(
        &txns,
        &lists(&[("x", &[1]), ("y", &[2])]),
        &["G2", "T1 -Rw(y)-> T2", "T2 -Rw(x)-> T1"],
    );
}

#[test]
fn circular_information_flow_is_g1c() {
    let txns = [
        t(1).append("x").read("y", &[2]),
        t(2).append("y").read("x", &[1]),
    ];
    rejects(&txns, &lists(&[("x", &[1]), ("y", &[2])]), &["G1c"]);
}

#[test]
fn a_stale_read_in_the_same_thread_is_a_cycle_through_session_order() {
    // T2 ran after T1 in T1's thread, yet missed T1's append: serializable
    // (T2 first) only if session order is ignored.
    let txns = [t(1).append("x"), t(2).after(1).read("x", &[])];
    let finals = lists(&[("x", &[1])]);
    let unordered = [txns[0].clone(), t(2).read("x", &[])];
    check(&unordered, &finals).expect("without session order T2 may come first");
    rejects(
        &txns,
        &finals,
        &[
            "through session order",
            "T1 -Po-> T2",
            "T2 -Rw(x)-> T1",
            "T2 (after T1): r x []",
        ],
    );
}

#[test]
fn a_write_cycle_is_g0() {
    let txns = [t(1).append("x").append("y"), t(2).append("x").append("y")];
    rejects(&txns, &lists(&[("x", &[1, 2]), ("y", &[2, 1])]), &["G0"]);
}

#[test]
fn a_fractured_read_of_one_commit_is_a_cycle() {
    // T2 saw T1's append to x but not its append to y.
    let txns = [
        t(1).append("x").append("y"),
        t(2).read("x", &[1]).read("y", &[]),
    ];
    rejects(
        &txns,
        &lists(&[("x", &[1]), ("y", &[1])]),
        &["G-single", "T1 -Wr(x)-> T2", "T2 -Rw(y)-> T1"],
    );
}

#[test]
fn a_read_of_an_aborted_write_is_g1a() {
    let txns = [t(1).append("x"), t(2).read("x", &[1, 9])];
    rejects(&txns, &lists(&[("x", &[1])]), &["T2 read", "9 in x", "G1a"]);
    // The aborted write survived into the final state as well.
    rejects(
        &txns,
        &lists(&[("x", &[1, 9])]),
        &["final list", "9 in x", "G1a"],
    );
}

#[test]
fn a_committed_transaction_seen_in_a_key_it_never_wrote_is_rejected() {
    let txns = [t(1).append("x"), t(2).read("y", &[1])];
    rejects(&txns, &lists(&[("x", &[1])]), &["never appended to y"]);
}

#[test]
fn a_non_prefix_read_is_rejected() {
    let txns = [t(1).append("x"), t(2).append("x"), t(3).read("x", &[2, 1])];
    rejects(&txns, &lists(&[("x", &[1, 2])]), &["T3", "not a prefix"]);
    // A duplicated append.
    let dup = [t(1).append("x"), t(3).read("x", &[1, 1])];
    rejects(&dup, &lists(&[("x", &[1])]), &["not a prefix"]);
}

#[test]
fn a_lost_write_is_rejected() {
    let txns = [t(1).append("x").append("y"), t(2).read("x", &[1])];
    rejects(
        &txns,
        &lists(&[("x", &[1])]),
        &["lost write", "T1 appended to y"],
    );
}

#[test]
fn malformed_histories_are_rejected() {
    rejects(&[t(1), t(1)], &Lists::new(), &["two transactions are T1"]);
    rejects(&[t(2).after(1)], &Lists::new(), &["T2 follows T1"]);
    rejects(
        &[t(1).append("x").read("x", &[1])],
        &lists(&[("x", &[1])]),
        &["after appending"],
    );
}

/// A long serial history run on a model: no false alarm, and quick.
#[test]
fn a_long_serial_history_passes() {
    let keys = ["a", "b", "c", "d", "e"];
    let mut state: Lists = Lists::new();
    let mut txns = Vec::new();
    let mut x: u64 = 0x2545_f491;
    for id in 1..=5_000u64 {
        let mut txn = t(id);
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = keys[(x % 5) as usize];
            if txn.writes().any(|k| k == key) {
                continue;
            }
            let cur = state.get(key).cloned().unwrap_or_default();
            txn = txn.read(key, &cur);
            if x.is_multiple_of(3) {
                txn = txn.append(key);
                state.entry(key.into()).or_default().push(id);
            }
        }
        txns.push(txn);
    }
    let s = check(&txns, &state).unwrap();
    assert_eq!(s.txns, 5_000);
}
