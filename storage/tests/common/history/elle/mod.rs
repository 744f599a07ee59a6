//! An Elle-style checker for list-append histories (Kingsbury & Alvaro,
//! "Elle: Inferring Isolation Anomalies from Experimental Observations").
//!
//! Every key holds a list of transaction ids; a writing transaction appends
//! its own id to each key it writes, and a read returns the whole list. So a
//! read names the transaction that wrote the version it saw (the last id)
//! and the key's version order is the order of its final list: the checker
//! needs no hidden versions. [`check`] takes the committed transactions and
//! the final list of every key, and rejects:
//!
//! 1. a committed transaction's append missing from the final list (a lost
//!    write, or a commit that recovery brought back only in part);
//! 2. an id in a list that no committed transaction appended to that key
//!    (a read or a survivor of an aborted, in-flight or invented write: G1a);
//! 3. a read that is not a prefix of the final list (an append lost,
//!    duplicated or reordered);
//! 4. a cycle in the dependency graph — ww (consecutive appends of a key),
//!    wr (a read saw the writer's id last), rw (a read did not see the next
//!    append) — printed edge by edge with each transaction's operations.
//!    A fractured read (one of a writer's appends seen, another not) is such
//!    a cycle: wr on one key, rw on the other. Session order (po: the
//!    transaction a thread committed just before) is an edge too: the Db
//!    promises each commit acts at its instant, so a thread's next
//!    transaction must not act as if it came first (a stale read).
//!
//! The workload (`..`) produces such histories from a `Db`; `tests.rs`
//! proves the checker rejects hand-made anomalies.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

/// A transaction id; unique among the transactions of one history.
pub type Id = u64;

/// The final list of every key that has one (a missing key is `[]`).
pub type Lists = BTreeMap<String, Vec<Id>>;

/// One operation of a committed transaction, in program order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The whole list of `key` as the transaction saw it (`[]`: absent).
    Read { key: String, list: Vec<Id> },
    /// The transaction appended its own id to `key`.
    Append { key: String },
}

/// What a committed transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    pub id: Id,
    pub ops: Vec<Op>,
    /// The transaction its thread committed just before, if any.
    pub prev: Option<Id>,
}

impl Txn {
    pub fn new(id: Id) -> Self {
        Txn {
            id,
            ops: Vec::new(),
            prev: None,
        }
    }

    pub fn after(mut self, prev: Id) -> Self {
        self.prev = Some(prev);
        self
    }

    pub fn read(mut self, key: &str, list: &[Id]) -> Self {
        self.ops.push(Op::Read {
            key: key.into(),
            list: list.to_vec(),
        });
        self
    }

    pub fn append(mut self, key: &str) -> Self {
        self.ops.push(Op::Append { key: key.into() });
        self
    }

    pub fn writes(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().filter_map(|op| match op {
            Op::Append { key } => Some(key.as_str()),
            Op::Read { .. } => None,
        })
    }

    fn reads(&self) -> impl Iterator<Item = (&str, &[Id])> {
        self.ops.iter().filter_map(|op| match op {
            Op::Read { key, list } => Some((key.as_str(), list.as_slice())),
            Op::Append { .. } => None,
        })
    }
}

/// What a history that checked out contained.
#[derive(Debug, Default)]
pub struct Summary {
    pub txns: usize,
    pub keys: usize,
    pub ww: usize,
    pub wr: usize,
    pub rw: usize,
    pub po: usize,
}

/// Checks `txns` (the committed transactions) against `finals` (every
/// key's final list); see the module docs. `Err` explains the anomaly.
pub fn check(txns: &[Txn], finals: &Lists) -> Result<Summary, String> {
    let by_id = index(txns)?;
    check_finals(txns, &by_id, finals)?;
    check_reads(txns, &by_id, finals)?;
    let g = Graph::build(txns, &by_id, finals);
    match g.find_cycle() {
        Some(cycle) => Err(g.explain(txns, &cycle)),
        None => Ok(g.summary(txns.len(), finals.len())),
    }
}

/// Position of every transaction by id; rejects malformed histories.
fn index(txns: &[Txn]) -> Result<HashMap<Id, usize>, String> {
    let mut by_id = HashMap::with_capacity(txns.len());
    for (i, t) in txns.iter().enumerate() {
        if by_id.insert(t.id, i).is_some() {
            return Err(format!("malformed history: two transactions are T{}", t.id));
        }
        let mut appended: Vec<&str> = Vec::new();
        for op in &t.ops {
            let key = match op {
                Op::Read { key, .. } | Op::Append { key } => key.as_str(),
            };
            if appended.contains(&key) {
                return Err(format!(
                    "malformed history: T{} uses {key} after appending to it",
                    t.id
                ));
            }
            if matches!(op, Op::Append { .. }) {
                appended.push(key);
            }
        }
    }
    let stray = txns
        .iter()
        .find_map(|t| t.prev.filter(|p| !by_id.contains_key(p)).map(|p| (t.id, p)));
    if let Some((t, p)) = stray {
        return Err(format!(
            "malformed history: T{t} follows T{p}, which is not in it"
        ));
    }
    Ok(by_id)
}

fn appended_to(t: &Txn, key: &str) -> bool {
    t.writes().any(|k| k == key)
}

/// Whose append `id` in the list of `key` is, or why it is nobody's.
fn writer(txns: &[Txn], by_id: &HashMap<Id, usize>, key: &str, id: Id) -> Result<usize, String> {
    match by_id.get(&id) {
        None => Err(format!(
            "{id} in {key} was written by no committed transaction \
             (an aborted, in-flight or invented write: G1a)"
        )),
        Some(&i) if !appended_to(&txns[i], key) => Err(format!(
            "{id} in {key}: T{id} committed but never appended to {key} (garbage write)"
        )),
        Some(&i) => Ok(i),
    }
}

/// Checks 1 and 2 on the final lists.
fn check_finals(txns: &[Txn], by_id: &HashMap<Id, usize>, finals: &Lists) -> Result<(), String> {
    for (key, list) in finals {
        let mut seen = std::collections::HashSet::new();
        for &id in list {
            writer(txns, by_id, key, id).map_err(|e| format!("final list: {e}"))?;
            if !seen.insert(id) {
                return Err(format!("final list of {key} holds T{id} twice: {list:?}"));
            }
        }
    }
    for t in txns {
        for key in t.writes() {
            if !finals.get(key).is_some_and(|l| l.contains(&t.id)) {
                return Err(format!(
                    "lost write: committed T{} appended to {key}, but the final list {} lacks it\n  {}",
                    t.id,
                    show_list(finals.get(key).map_or(&[][..], Vec::as_slice)),
                    show_txn(t)
                ));
            }
        }
    }
    Ok(())
}

/// Check 3, and 2 for ids that only reads hold. (A prefix of a final
/// list holds only ids `check_finals` accepted.)
fn check_reads(txns: &[Txn], by_id: &HashMap<Id, usize>, finals: &Lists) -> Result<(), String> {
    for t in txns {
        for (key, list) in t.reads() {
            let fin = finals.get(key).map_or(&[][..], Vec::as_slice);
            if fin.starts_with(list) {
                continue;
            }
            for &id in list {
                writer(txns, by_id, key, id).map_err(|e| {
                    format!("T{} read {}: {e}\n  {}", t.id, show_list(list), show_txn(t))
                })?;
            }
            return Err(format!(
                "T{} read {key} = {}, not a prefix of its final list {} \
                 (an append lost, duplicated or reordered)\n  {}",
                t.id,
                show_list(list),
                show_list(fin),
                show_txn(t)
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ww,
    Wr,
    Po,
    Rw,
}

/// The dependency graph; nodes are positions in the transaction slice.
struct Graph {
    /// Every edge, with its strongest reason (see `add`).
    edges: BTreeMap<(usize, usize), (Kind, String)>,
    counts: [usize; 4],
}

impl Graph {
    fn build(txns: &[Txn], by_id: &HashMap<Id, usize>, finals: &Lists) -> Graph {
        let mut g = Graph {
            edges: BTreeMap::new(),
            counts: [0; 4],
        };
        let w = |id: Id| by_id[&id];
        for (key, list) in finals {
            for pair in list.windows(2) {
                g.add(w(pair[0]), w(pair[1]), Kind::Ww, key);
            }
        }
        for (i, t) in txns.iter().enumerate() {
            if let Some(p) = t.prev {
                g.add(w(p), i, Kind::Po, "");
            }
            for (key, seen) in t.reads() {
                let fin = finals.get(key).map_or(&[][..], Vec::as_slice);
                if let Some(&last) = seen.last() {
                    g.add(w(last), i, Kind::Wr, key);
                }
                if let Some(&next) = fin.get(seen.len()) {
                    g.add(i, w(next), Kind::Rw, key);
                }
            }
        }
        g
    }

    fn add(&mut self, from: usize, to: usize, kind: Kind, key: &str) {
        if from == to {
            return;
        }
        self.counts[kind as usize] += 1;
        let e = self.edges.entry((from, to)).or_insert((kind, key.into()));
        // Keep the strongest reason (ww < wr < po < rw), as Elle reports.
        if kind < e.0 {
            *e = (kind, key.into());
        }
    }

    fn summary(&self, txns: usize, keys: usize) -> Summary {
        let [ww, wr, po, rw] = self.counts;
        Summary {
            txns,
            keys,
            ww,
            wr,
            rw,
            po,
        }
    }

    /// A shortest cycle through some node that lies on one, if any.
    fn find_cycle(&self) -> Option<Vec<usize>> {
        let n = self.edges.keys().map(|&(a, b)| a.max(b) + 1).max()?;
        let (mut succ, mut pred) = (vec![Vec::new(); n], vec![Vec::new(); n]);
        let mut indeg = vec![0usize; n];
        for &(a, b) in self.edges.keys() {
            succ[a].push(b);
            pred[b].push(a);
            indeg[b] += 1;
        }
        // Kahn: what remains has a predecessor that remains.
        let mut queue: VecDeque<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
        let mut left = vec![true; n];
        while let Some(v) = queue.pop_front() {
            left[v] = false;
            for &s in &succ[v] {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    queue.push_back(s);
                }
            }
        }
        let start = (0..n).find(|&v| left[v])?;
        // Walking back through remaining predecessors must revisit a node.
        let mut on_walk = vec![false; n];
        let mut v = start;
        while !on_walk[v] {
            on_walk[v] = true;
            v = *pred[v]
                .iter()
                .find(|&&p| left[p])
                .expect("a remaining predecessor");
        }
        Some(shortest_cycle(&succ, &left, v))
    }

    fn explain(&self, txns: &[Txn], cycle: &[usize]) -> String {
        let hops: Vec<(usize, usize)> = (0..cycle.len())
            .map(|i| (cycle[i], cycle[(i + 1) % cycle.len()]))
            .collect();
        let kinds: Vec<Kind> = hops.iter().map(|h| self.edges[h].0).collect();
        let rw = kinds.iter().filter(|&&k| k == Kind::Rw).count();
        let class = match (rw, kinds.iter().all(|&k| k == Kind::Ww)) {
            (_, true) => "G0: write cycle",
            (0, _) => "G1c: circular information flow",
            (1, _) => "G-single: read skew / lost update",
            _ => "G2: anti-dependency cycle (write skew)",
        };
        let session = match kinds.contains(&Kind::Po) {
            true => ", through session order",
            false => "",
        };
        let mut s = format!(
            "not serializable ({class}{session}): a cycle of {} transactions\n",
            cycle.len()
        );
        for (&(a, b), kind) in hops.iter().zip(&kinds) {
            let (ta, tb, key) = (&txns[a], &txns[b], &self.edges[&(a, b)].1);
            let why = match kind {
                Kind::Ww => format!("T{} appended to {key} right after T{}", tb.id, ta.id),
                Kind::Wr => format!("T{} read T{}'s append to {key}", tb.id, ta.id),
                Kind::Rw => format!("T{} read {key} before T{}'s append", ta.id, tb.id),
                Kind::Po => format!("T{} ran after T{} in the same thread", tb.id, ta.id),
            };
            let on = if key.is_empty() {
                String::new()
            } else {
                format!("({key})")
            };
            let _ = writeln!(s, "  T{} -{kind:?}{on}-> T{}: {why}", ta.id, tb.id);
        }
        s.push_str("with\n");
        for &v in cycle {
            let _ = writeln!(s, "  {}", show_txn(&txns[v]));
        }
        s
    }
}

/// The shortest path from `v` back to `v` through nodes still `left`.
fn shortest_cycle(succ: &[Vec<usize>], left: &[bool], v: usize) -> Vec<usize> {
    let mut parent = vec![usize::MAX; succ.len()];
    let mut queue = VecDeque::from([v]);
    while let Some(u) = queue.pop_front() {
        for &s in &succ[u] {
            if s == v {
                let mut path = vec![u];
                while *path.last().unwrap() != v {
                    path.push(parent[*path.last().unwrap()]);
                }
                path.reverse();
                return path;
            }
            if left[s] && parent[s] == usize::MAX {
                parent[s] = u;
                queue.push_back(s);
            }
        }
    }
    unreachable!("node {v} lies on a cycle")
}

/// A list, long ones shortened to their length and tail.
pub fn show_list(list: &[Id]) -> String {
    let tail = &list[list.len().saturating_sub(5)..];
    let ids: Vec<String> = tail.iter().map(Id::to_string).collect();
    match list.len() - tail.len() {
        0 => format!("[{}]", ids.join(" ")),
        more => format!("[({more} more) … {}]", ids.join(" ")),
    }
}

/// `T7 (after T5): r x [1 3]; append x; r y []`.
pub fn show_txn(t: &Txn) -> String {
    let ops: Vec<String> = t
        .ops
        .iter()
        .map(|op| match op {
            Op::Read { key, list } => format!("r {key} {}", show_list(list)),
            Op::Append { key } => format!("append {key}"),
        })
        .collect();
    let after = t.prev.map(|p| format!(" (after T{p})")).unwrap_or_default();
    format!("T{}{after}: {}", t.id, ops.join("; "))
}
