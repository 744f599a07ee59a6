//! `rime_sdk::mock` against the real host.
//!
//! The mock calls itself the executable model of ABI v1: guests' native
//! tests run on it. Here the same scripts of raw host calls (the `probe`
//! guest, `guests/examples/probe`) run twice: natively on the mock (the
//! probe's interpreter calling `rime_sdk::raw`, served by the mock) and as
//! the probe's wasm32 build on rime-faas. Every call's result code and the
//! bytes it left in the guest's buffer, each invocation's result and
//! output, the state it committed (read back by later scripts), and the
//! guest's log lines must be the same.
//!
//! What the mock does not model is left out: traps (it has no linear
//! memory), conflicts and re-runs, the write-set limits, and `ERR_LIMIT`
//! (the host admits at most `MAX_OPEN_NAMESPACES - 1` grants, so it cannot
//! be reached there).

mod common;
use common::*;
use probe::script::{Bytes, Op, encode};
use rime_abi::{
    Level, MAX_LOG_LEN, MAX_NAMESPACE_LEN, MAX_OUTPUT_LEN, MAX_VALUE_LEN, SCAN_HI_INCLUSIVE,
    SCAN_LO_EXCLUSIVE,
};
use rime_faas::{FunctionConfig, Grant, InvokeError};
use rime_sdk::mock;
use std::time::Duration;

/// The function's name on the host: the mock's name for handle 0, so that
/// `ns_open("own")` is handle 0 on both.
const OWN: &str = mock::OWN_NAME;
/// Namespaces granted read-only and writable, on both.
const RO: &str = "ro";
const RW: &str = "rw";

/// The start of the host's warning when it cuts a guest's log short.
const TRUNCATED: &str = mock::LOG_TRUNCATED;

/// What one invocation showed.
#[derive(Debug, PartialEq)]
struct Seen {
    /// `rime_invoke`'s result.
    code: i32,
    /// The output (the probe's transcript).
    output: String,
    /// The guest's log lines, in order.
    logs: Vec<(Level, String)>,
    /// How many times the log was reported truncated.
    truncated: usize,
}

struct Both {
    e: Env,
}

impl Both {
    /// A host with the probe deployed as `own` (granted `ro` read-only and
    /// `rw` writable) and a fresh mock with the same grants.
    fn new() -> Both {
        let e = env();
        let cfg = FunctionConfig::default()
            .grant(Grant::read(RO))
            .grant(Grant::write(RW))
            // Far more than any script takes: time is not what is compared.
            .deadline(Duration::from_secs(120));
        e.rt.deploy(OWN, &guest("probe"), cfg).unwrap();
        mock::reset();
        mock::grant(RO, false);
        mock::grant(RW, true);
        Both { e }
    }

    /// Committed state written directly, on both.
    fn store(&self, ns: &str, key: &[u8], value: &[u8]) {
        mock::store(ns, key, value);
        let db = self.e.rt.db();
        let tree = db
            .open_or_create_tree(&rime_faas::namespace_tree(ns))
            .unwrap();
        db.put(tree, key, value).unwrap();
    }

    fn host(&self, script: &[u8]) -> Seen {
        let cap = Capture::default();
        let r = cap.during(|| self.e.rt.invoke(OWN, script));
        let (code, output) = match r {
            Ok(inv) => (0, String::from_utf8(inv.output).unwrap()),
            Err(InvokeError::Function { code, message }) => (code, message),
            Err(e) => panic!("the host failed the invocation: {e}"),
        };
        let mut seen = Seen {
            code,
            output,
            logs: Vec::new(),
            truncated: 0,
        };
        for ev in cap.events() {
            if ev.target != "rime::faaslet" {
                continue;
            }
            if ev.message.starts_with(TRUNCATED) {
                seen.truncated += 1;
                continue;
            }
            let level = match ev.level {
                tracing::Level::ERROR => Level::Error,
                tracing::Level::WARN => Level::Warn,
                tracing::Level::INFO => Level::Info,
                tracing::Level::DEBUG => Level::Debug,
                tracing::Level::TRACE => Level::Trace,
            };
            seen.logs.push((level, ev.message));
        }
        seen
    }

    fn mock(&self, script: &[u8]) -> Seen {
        mock::take_logs();
        let out = mock::invoke_with(script, probe::entry);
        let mut seen = Seen {
            code: out.code,
            output: out.text(),
            logs: Vec::new(),
            truncated: 0,
        };
        for (level, message) in mock::take_logs() {
            if message.starts_with(TRUNCATED) {
                seen.truncated += 1;
            } else {
                seen.logs.push((level, message));
            }
        }
        seen
    }
}

/// One invocation as text: each call with its transcript line, the
/// result, the log. Long lines are cut for reading; the comparison is of
/// the whole [`Seen`].
fn show(ops: &[Op], seen: &Seen) -> Vec<String> {
    let cut = |s: String| {
        if s.len() > 160 {
            format!(
                "{}... ({} bytes)",
                &s[..s.floor_char_boundary(160)],
                s.len()
            )
        } else {
            s
        }
    };
    let mut lines: Vec<String> = seen.output.lines().map(str::to_string).collect();
    let mut out = Vec::new();
    for op in ops {
        if matches!(op, Op::Return(_)) {
            break;
        }
        let got = if lines.is_empty() {
            "(no line)".to_string()
        } else {
            lines.remove(0)
        };
        out.push(cut(format!("{op} -> {got}")));
    }
    out.extend(lines.into_iter().map(|l| cut(format!("extra output: {l}"))));
    out.push(format!("result {}", seen.code));
    for (level, msg) in &seen.logs {
        out.push(cut(format!("log {level:?}: {msg}")));
    }
    out.push(format!("truncation warnings: {}", seen.truncated));
    out
}

fn k(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::lit(s)
}
fn fill(n: usize, b: u8) -> Bytes {
    Bytes::Fill(n as u32, b)
}
fn input(cap: u32) -> Op {
    Op::Input { cap }
}
fn output(b: Bytes) -> Op {
    Op::Output(b)
}
fn ns_open(name: Bytes) -> Op {
    Op::NsOpen(name)
}
fn get(ns: i32, key: Bytes, cap: u32) -> Op {
    Op::Get { ns, key, cap }
}
fn put(ns: i32, key: Bytes, val: Bytes) -> Op {
    Op::Put { ns, key, val }
}
fn delete(ns: i32, key: Bytes) -> Op {
    Op::Delete { ns, key }
}
fn add(ns: i32, key: Bytes, delta: i64) -> Op {
    Op::Add { ns, key, delta }
}
fn cas(ns: i32, key: Bytes, exp: Option<Bytes>, new: Option<Bytes>) -> Op {
    Op::Cas { ns, key, exp, new }
}
fn scan(ns: i32, lo: Bytes, hi: Option<Bytes>, flags: u32, cap: u32) -> Op {
    Op::Scan {
        ns,
        lo,
        hi,
        flags,
        cap,
    }
}
fn log(level: i32, msg: Bytes) -> Op {
    Op::Log { level, msg }
}

/// The scripts, in order, each one invocation, each named. State carries
/// over from one to the next on both sides.
fn scripts() -> Vec<(&'static str, Vec<Op>)> {
    const BAD: u32 = 4;
    let (lo_x, hi_i) = (SCAN_LO_EXCLUSIVE, SCAN_HI_INCLUSIVE);
    let over_key = || fill(513, b'k');
    let max_key = || fill(512, b'k');
    // A scan record of a one-byte key under "s/" and a two-byte value.
    let rec = 8 + 3 + 2;
    vec![
        (
            "input: the length, and a copy only if it fits",
            vec![input(0), input(4), input(4096)],
        ),
        (
            "output: refused over the limit, last call wins",
            vec![
                output(fill(MAX_OUTPUT_LEN + 1, b'o')),
                output(k("x")),
                output(fill(MAX_OUTPUT_LEN, b'o')),
            ],
        ),
        (
            "ns_open: own name, grants, denials, bad names",
            vec![
                ns_open(k(OWN)),
                ns_open(k(RO)),
                ns_open(k(RW)),
                ns_open(k(RO)),
                ns_open(k("secret")),
                ns_open(k("Ro")),
                ns_open(k("")),
                ns_open(k("a/b")),
                ns_open(fill(MAX_NAMESPACE_LEN, b'a')),
                ns_open(fill(MAX_NAMESPACE_LEN + 1, b'a')),
            ],
        ),
        (
            "get: missing keys, short buffers, handles, key sizes",
            vec![
                get(0, k("missing"), 8),
                put(0, k("k"), k("value!")),
                get(0, k("k"), 6),
                get(0, k("k"), 16),
                get(0, k("k"), 5),
                get(0, k("k"), 0),
                get(5, k("k"), 8),
                get(-1, k("k"), 8),
                get(1, k("a"), 8),
                get(0, over_key(), 8),
                get(9, over_key(), 8),
                get(0, max_key(), 8),
                get(0, k(""), 8),
                put(0, k("empty"), k("")),
                get(0, k("empty"), 4),
                ns_open(k(RO)),
                get(1, k("a"), 4),
                get(1, k("c"), 4),
                get(1, k("zzz"), 4),
            ],
        ),
        (
            "get after commit",
            vec![get(0, k("k"), 8), get(0, k("empty"), 0)],
        ),
        (
            "put and delete: sizes, grants, handles",
            vec![
                put(0, max_key(), k("v")),
                put(0, over_key(), k("v")),
                put(0, k("big"), fill(MAX_VALUE_LEN + 1, 0)),
                put(0, over_key(), fill(MAX_VALUE_LEN + 1, 0)),
                put(0, k("large"), fill(MAX_VALUE_LEN, 7)),
                get(0, k("large"), 0),
                get(0, k("large"), 3),
                delete(0, k("large")),
                get(0, k("large"), 0),
                ns_open(k(RO)),
                put(1, k("x"), k("y")),
                put(1, over_key(), k("y")),
                delete(1, k("a")),
                delete(0, k("nothing")),
                delete(0, over_key()),
                delete(9, k("x")),
                put(9, k("x"), k("y")),
                put(-3, k("x"), k("y")),
                ns_open(k(RW)),
                put(2, k("shared"), k("s")),
                get(2, k("shared"), 4),
            ],
        ),
        (
            "read your writes",
            vec![
                put(0, k("r"), k("1")),
                get(0, k("r"), 4),
                delete(0, k("r")),
                get(0, k("r"), 4),
                put(0, k("r"), k("2")),
                cas(0, k("r"), Some(k("2")), None),
                get(0, k("r"), 4),
                add(0, k("r"), 5),
                get(0, k("r"), 8),
                delete(0, max_key()),
                get(0, max_key(), 4),
            ],
        ),
        (
            "add: missing is 0, not 8 bytes, overflow, grants",
            vec![
                add(0, k("n"), 5),
                add(0, k("n"), -7),
                add(0, k("text"), 1),
                add(0, k("max"), 1),
                add(0, k("min"), -1),
                add(0, k("max"), 0),
                add(0, k("min"), i64::MIN + 1),
                add(0, k("empty"), 1),
                add(0, over_key(), 1),
                add(4, k("n"), 1),
                ns_open(k(RO)),
                add(1, k("a"), 1),
                get(0, k("n"), 8),
            ],
        ),
        (
            "cas: expected absent, match, mismatch, delete, sizes",
            vec![
                cas(0, k("c"), None, Some(k("v1"))),
                cas(0, k("c"), None, Some(k("v1"))),
                cas(0, k("c"), Some(k("v1")), Some(k("v2"))),
                cas(0, k("c"), Some(k("v1")), Some(k("v3"))),
                cas(0, k("c"), Some(k("")), Some(k("x"))),
                get(0, k("c"), 4),
                cas(0, k("c"), Some(k("v2")), None),
                get(0, k("c"), 4),
                cas(0, k("c"), None, None),
                cas(0, k("c"), Some(k("v2")), None),
                cas(0, k("empty"), None, Some(k("z"))),
                cas(0, k("empty"), Some(k("")), Some(k("z"))),
                get(0, k("empty"), 4),
                cas(0, over_key(), None, Some(k("x"))),
                cas(0, k("c"), None, Some(fill(MAX_VALUE_LEN + 1, 1))),
                cas(0, k("c"), Some(fill(MAX_VALUE_LEN + 1, 1)), Some(k("x"))),
                cas(0, k("c"), Some(fill(MAX_VALUE_LEN + 1, 1)), None),
                cas(3, k("c"), None, Some(k("x"))),
                ns_open(k(RO)),
                cas(1, k("a"), Some(k("1")), Some(k("2"))),
                cas(1, k("zz"), None, None),
            ],
        ),
        (
            "scan: records, paging, bounds, flags, sizes",
            vec![
                put(0, k("s/a"), k("xy")),
                put(0, k("s/b"), k("xy")),
                put(0, k("s/c"), k("xy")),
                scan(0, k("s/"), Some(k("s0")), 0, 200),
                scan(0, k("s/"), Some(k("s0")), 0, rec + 3),
                scan(0, k("s/a"), Some(k("s0")), lo_x, 2 * rec),
                scan(0, k("s/c"), Some(k("s0")), lo_x, 100),
                scan(0, k("s/"), Some(k("s0")), 0, 5),
                scan(0, k("s/"), Some(k("s0")), 0, 0),
                scan(0, k("zz"), None, 0, 3),
                scan(0, k("zz"), None, 0, 4),
                scan(0, k("s/a"), Some(k("s/c")), 0, 200),
                scan(0, k("s/a"), Some(k("s/c")), hi_i, 200),
                scan(0, k("s/a"), Some(k("s/c")), lo_x | hi_i, 200),
                scan(0, k("s/c"), Some(k("s/a")), hi_i, 200),
                scan(0, k("s/b"), Some(k("s/b")), 0, 200),
                scan(0, k("s/b"), Some(k("s/b")), hi_i, 200),
                scan(0, k("s/b"), Some(k("s/b")), lo_x | hi_i, 200),
                scan(0, k("s/"), Some(k("s0")), BAD, 200),
                scan(0, k("s/"), Some(k("s0")), lo_x | hi_i | 8, 200),
                scan(0, over_key(), None, 0, 200),
                scan(0, k("s/"), Some(over_key()), 0, 200),
                scan(0, over_key(), None, BAD, 200),
                scan(7, k("s/"), None, BAD, 200),
                scan(-1, k(""), None, 0, 200),
                delete(0, k("s/b")),
                put(0, k("s/bb"), k("z")),
                scan(0, k("s/"), Some(k("s0")), 0, 200),
                put(0, k(""), k("e")),
                scan(0, k(""), Some(k("a")), 0, 200),
                scan(0, k(""), Some(k("a")), lo_x, 200),
                scan(0, k(""), Some(k("")), hi_i, 200),
                scan(0, k(""), Some(k("")), 0, 200),
                ns_open(k(RO)),
                scan(1, k(""), None, 0, 200),
                scan(1, k("b"), None, lo_x, 200),
            ],
        ),
        (
            "scan after commit",
            vec![scan(0, k(""), Some(k("s0")), 0, 4096)],
        ),
        (
            "return 1 commits nothing",
            vec![
                put(0, k("gone"), k("x")),
                add(0, k("n"), 100),
                delete(0, k("k")),
                ns_open(k(RW)),
                put(2, k("gone"), k("y")),
                Op::Return(1),
                put(0, k("after-return"), k("never")),
            ],
        ),
        (
            "any other non-zero result commits nothing either",
            vec![put(0, k("gone"), k("x")), Op::Return(-7)],
        ),
        (
            "nothing of them committed",
            vec![
                get(0, k("gone"), 4),
                get(0, k("n"), 8),
                get(0, k("k"), 8),
                get(0, k("after-return"), 8),
                ns_open(k(RW)),
                get(2, k("gone"), 4),
                get(2, k("shared"), 4),
            ],
        ),
        (
            "log: levels clamped, long messages cut, invalid UTF-8 replaced",
            vec![
                log(2, k("hello")),
                log(-5, k("below error")),
                log(0, k("error")),
                log(1, k("warn")),
                log(3, k("debug")),
                log(4, k("trace")),
                log(9, k("above trace")),
                log(2, fill(MAX_LOG_LEN + 100, b'x')),
                log(2, k([0xff, 0xfe, b'a'])),
                log(2, k("")),
            ],
        ),
        (
            "log: at most 256 messages an invocation",
            (0..300).map(|i| log(2, k(format!("line {i}")))).collect(),
        ),
        (
            "log: at most 64 KiB an invocation, the crossing message cut",
            (0..16)
                .map(|_| log(2, fill(4000, b'y')))
                .chain([log(2, fill(4000, b'z')), log(2, k("dropped"))])
                .collect(),
        ),
        (
            "log: the budget ends exactly at a message",
            (0..17).map(|_| log(1, fill(5000, b'w'))).collect(),
        ),
        (
            "log: replacement characters cut to the budget",
            (0..16)
                .map(|_| log(2, fill(4000, b'y')))
                .chain([log(2, fill(2000, 0xff))])
                .collect(),
        ),
        (
            "the state at the end",
            vec![
                scan(0, k(""), None, 0, 8192),
                ns_open(k(RW)),
                scan(2, k(""), None, 0, 8192),
            ],
        ),
    ]
}

/// The lines where `host` and `mock` differ, with two lines of context.
fn diff(host: &[String], mock: &[String]) -> String {
    let n = host.len().max(mock.len());
    let same = |i: usize| host.get(i) == mock.get(i);
    let near = |i: usize| (i.saturating_sub(2)..(i + 3).min(n)).any(|j| !same(j));
    let mut out = String::new();
    let mut skipped = false;
    for i in 0..n {
        if !near(i) {
            skipped = true;
            continue;
        }
        if std::mem::take(&mut skipped) {
            out += "        ...\n";
        }
        let line = |l: Option<&String>| l.map_or("-", String::as_str).to_string();
        if same(i) {
            out += &format!("        {}\n", line(host.get(i)));
        } else {
            out += &format!(
                "  host  {}\n  mock  {}\n",
                line(host.get(i)),
                line(mock.get(i))
            );
        }
    }
    if skipped {
        out += "        ...\n";
    }
    out
}

#[test]
fn the_mock_and_the_host_give_the_same_results() {
    let both = Both::new();
    both.store(RO, b"a", b"1");
    both.store(RO, b"b", b"22");
    both.store(RO, b"c", b"");
    both.store(OWN, b"text", b"not eight bytes");
    both.store(OWN, b"max", &i64::MAX.to_le_bytes());
    both.store(OWN, b"min", &i64::MIN.to_le_bytes());

    let mut differ = Vec::new();
    for (name, ops) in scripts() {
        let script = encode(&ops);
        let host = both.host(&script);
        let mock = both.mock(&script);
        if host != mock {
            differ.push(format!(
                "{name}:\n{}",
                diff(&show(&ops, &host), &show(&ops, &mock))
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "the mock and the host differ in {} of {} scripts:\n\n{}",
        differ.len(),
        scripts().len(),
        differ.join("\n")
    );
}
