//! Host ABI v1 edge cases (`docs/abi.md`), driven by tiny text-format
//! guests: each calls one import with arguments taken from its input and
//! returns the result and a window of its memory.

mod common;
use common::*;
use rime_faas::{FunctionConfig, Grant};

const IMPORTS: &str = r#"
 (import "rime" "input" (func $input (param i32 i32) (result i32)))
 (import "rime" "output" (func $output (param i32 i32) (result i32)))
 (import "rime" "ns_open" (func $ns_open (param i32 i32) (result i32)))
 (import "rime" "get" (func $get (param i32 i32 i32 i32 i32) (result i32)))
 (import "rime" "add" (func $add (param i32 i32 i32 i64 i32) (result i32)))
 (import "rime" "cas" (func $cas (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
 (import "rime" "scan" (func $scan (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#;

/// A guest whose input is copied to address 0 (`a0..a7` are the i32s at
/// 4, 8, ..., `text` starts at 64), which evaluates `call` and outputs the
/// result (i32 LE) followed by memory 1024..1536.
fn probe(call: &str) -> Vec<u8> {
    let mut call = call.to_string();
    for k in 0..8 {
        call = call.replace(
            &format!("a{k}"),
            &format!("(i32.load (i32.const {}))", 4 + 4 * k),
        );
    }
    format!(
        r#"(module {IMPORTS}
 (memory (export "memory") 1)
 (func (export "rime_invoke") (result i32)
   (drop (call $input (i32.const 0) (i32.const 1024)))
   (i32.store (i32.const 1020) {call})
   (drop (call $output (i32.const 1020) (i32.const 516)))
   (i32.const 0)))"#
    )
    .into_bytes()
}

/// Input: `args` at 4.., `text` at 64...
fn args(a: &[i32], text: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 64];
    for (i, x) in a.iter().enumerate() {
        v[4 + 4 * i..8 + 4 * i].copy_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(text);
    v
}

struct Probe {
    e: Env,
}

impl Probe {
    fn new(calls: &[(&str, &str)]) -> Probe {
        let e = env();
        for (name, call) in calls {
            e.rt.deploy(
                name,
                &probe(call),
                FunctionConfig::default().grant(Grant::read("shared")),
            )
            .unwrap();
        }
        Probe { e }
    }

    /// (result, memory 1024..1536)
    fn run(&self, name: &str, a: &[i32], text: &[u8]) -> (i32, Vec<u8>) {
        let out = self.e.rt.invoke(name, &args(a, text)).unwrap().output;
        (
            i32::from_le_bytes(out[..4].try_into().unwrap()),
            out[4..].to_vec(),
        )
    }

    fn put(&self, ns: &str, key: &[u8], value: &[u8]) {
        let db = self.e.rt.db();
        let t = db.open_or_create_tree(&format!("ns/{ns}")).unwrap();
        db.put(t, key, value).unwrap();
    }
}

#[test]
fn get_copies_only_when_the_buffer_fits() {
    // get(ns=a0, key=64, key_len=a1, buf=1024, cap=a2)
    let p = Probe::new(&[("g", "(call $get a0 (i32.const 64) a1 (i32.const 1024) a2)")]);
    p.put("g", b"key", b"value!");
    assert_eq!(p.run("g", &[0, 3, 100], b"key").0, 6);
    let (r, mem) = p.run("g", &[0, 3, 100], b"key");
    assert_eq!((r, &mem[..6]), (6, &b"value!"[..]));
    let (r, mem) = p.run("g", &[0, 3, 5], b"key");
    assert_eq!(
        (r, &mem[..6]),
        (6, &[0u8; 6][..]),
        "short buffer: nothing copied"
    );
    assert_eq!(p.run("g", &[0, 3, 0], b"key").0, 6);
    assert_eq!(p.run("g", &[0, 3, 100], b"kez").0, -1, "ERR_NOT_FOUND");
    assert_eq!(p.run("g", &[5, 3, 100], b"key").0, -2, "ERR_BAD_HANDLE");
    assert_eq!(p.run("g", &[-1, 3, 100], b"key").0, -2, "ERR_BAD_HANDLE");
    assert_eq!(
        p.run("g", &[0, 513, 100], &[b'k'; 513]).0,
        -4,
        "ERR_KEY_TOO_LARGE"
    );
    // A buffer reaching exactly to the end of memory is fine; one byte more traps.
    assert_eq!(p.run("g", &[0, 3, 65536 - 1024], b"key").0, 6);
    let err =
        p.e.rt
            .invoke("g", &args(&[0, 3, 65536 - 1023], b"key"))
            .unwrap_err();
    assert!(matches!(err, rime_faas::InvokeError::Trap(_)), "{err:?}");
}

#[test]
fn ns_open_names_handles_and_grants() {
    let p = Probe::new(&[("o", "(call $ns_open (i32.const 64) a0)")]);
    assert_eq!(p.run("o", &[1], b"o").0, 0, "own name is handle 0");
    assert_eq!(p.run("o", &[6], b"shared").0, 1);
    assert_eq!(p.run("o", &[6], b"secret").0, -3, "ERR_DENIED");
    assert_eq!(p.run("o", &[6], b"Shared").0, -9, "ERR_INVALID");
    assert_eq!(p.run("o", &[0], b"").0, -9, "ERR_INVALID");
}

#[test]
fn add_and_cas_codes() {
    let p = Probe::new(&[
        // add(0, key=64, a0, delta=i64 at 40, out=1024)
        (
            "a",
            "(call $add (i32.const 0) (i32.const 64) a0 (i64.load (i32.const 40)) (i32.const 1024))",
        ),
        // cas(0, key=64, a0, exp=64+a0, a1, new=64+a0+a2, a3)
        (
            "c",
            "(call $cas (i32.const 0) (i32.const 64) a0 (i32.add (i32.const 64) a0) a1 (i32.add (i32.add (i32.const 64) a0) a2) a3)",
        ),
    ]);
    let add = |key: &[u8], delta: i64| {
        let mut a = args(&[key.len() as i32], key);
        a[40..48].copy_from_slice(&delta.to_le_bytes());
        let out = p.e.rt.invoke("a", &a).unwrap().output;
        (
            i32::from_le_bytes(out[..4].try_into().unwrap()),
            i64::from_le_bytes(out[4..12].try_into().unwrap()),
        )
    };
    assert_eq!(add(b"n", 5), (0, 5));
    assert_eq!(add(b"n", -7), (0, -2));
    p.put("a", b"s", b"abc");
    assert_eq!(add(b"s", 1).0, -7, "ERR_NOT_I64");
    p.put("a", b"m", &i64::MAX.to_le_bytes());
    assert_eq!(add(b"m", 1).0, -8, "ERR_OVERFLOW");
    // cas: expected absent (NONE) → created; again → mismatch; swap; delete.
    assert_eq!(p.run("c", &[1, -1, 0, 2], b"kv1").0, 0);
    assert_eq!(p.e.load("c", b"k"), Some(b"v1".to_vec()));
    assert_eq!(p.run("c", &[1, -1, 0, 2], b"kv1").0, 1, "CAS_MISMATCH");
    assert_eq!(p.run("c", &[1, 2, 2, 2], b"kv1v2").0, 0);
    assert_eq!(p.e.load("c", b"k"), Some(b"v2".to_vec()));
    assert_eq!(p.run("c", &[1, 2, 2, -1], b"kv2").0, 0, "delete on success");
    assert_eq!(p.e.load("c", b"k"), None);
}

fn records(mut buf: &[u8]) -> Vec<Option<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let kl = u32::from_le_bytes(buf[..4].try_into().unwrap());
        if kl == u32::MAX {
            out.push(None);
            break;
        }
        let vl = u32::from_le_bytes(buf[4..8].try_into().unwrap()) as usize;
        let kl = kl as usize;
        out.push(Some((
            buf[8..8 + kl].to_vec(),
            buf[8 + kl..8 + kl + vl].to_vec(),
        )));
        buf = &buf[8 + kl + vl..];
    }
    out
}

#[test]
fn scan_pages_whole_records_and_says_what_it_needs() {
    // scan(0, lo=64, a0, hi=64+a0, a1, flags=a2, buf=1024, cap=a3)
    let p = Probe::new(&[(
        "s",
        "(call $scan (i32.const 0) (i32.const 64) a0 (i32.add (i32.const 64) a0) a1 a2 (i32.const 1024) a3)",
    )]);
    for k in [&b"a"[..], b"b", b"c"] {
        p.put("s", k, b"xy");
    }
    let rec = 8 + 1 + 2;
    let (r, mem) = p.run("s", &[0, -1, 0, 100], b"");
    assert_eq!(r as usize, 3 * rec + 4);
    let want = |k: &[u8]| Some((k.to_vec(), b"xy".to_vec()));
    assert_eq!(
        records(&mem[..r as usize]),
        [want(b"a"), want(b"b"), want(b"c"), None]
    );
    // Room for one record: one record, no END; resume after "a" (exclusive).
    let (r, mem) = p.run("s", &[0, -1, 0, rec as i32 + 3], b"");
    assert_eq!(
        (r as usize, records(&mem[..r as usize])),
        (rec, vec![want(b"a")])
    );
    let (r, _) = p.run("s", &[1, -1, 1, 2 * rec as i32], b"a");
    assert_eq!(r as usize, 2 * rec, "b, c; END did not fit");
    let (r, mem) = p.run("s", &[1, -1, 1, 100], b"c");
    assert_eq!(
        (r, records(&mem[..4])),
        (4, vec![None]),
        "exhausted: END only"
    );
    // Too small for the first record: its size, nothing written.
    let (r, mem) = p.run("s", &[0, -1, 0, 5], b"");
    assert_eq!((r as usize, &mem[..5]), (rec, &[0u8; 5][..]));
    let (r, _) = p.run("s", &[1, 1, 0, 3], b"zz");
    assert_eq!(r, 4, "empty range, cap 3: END needs 4");
    // Bounds: [a, c) vs [a, c]; lo above hi is empty.
    assert_eq!(p.run("s", &[1, 1, 0, 100], b"ac").0 as usize, 2 * rec + 4);
    assert_eq!(p.run("s", &[1, 1, 2, 100], b"ac").0 as usize, 3 * rec + 4);
    assert_eq!(p.run("s", &[1, 1, 0, 100], b"ca").0, 4);
    assert_eq!(p.run("s", &[0, -1, 4, 100], b"").0, -9, "ERR_INVALID flags");
    assert_eq!(p.run("s", &[513, -1, 0, 100], &[b'k'; 513]).0, -4);
}

#[test]
fn every_import_of_rime_abi_is_linked_with_its_signature() {
    // One module importing the whole table of `rime_abi::IMPORTS` (the
    // ABI's one definition, shared with the SDK) deploys and runs: the
    // deploy-time check admits it and the linker defines every import
    // with exactly that type.
    let ty = |t: &rime_abi::ValType| match t {
        rime_abi::ValType::I32 => "i32",
        rime_abi::ValType::I64 => "i64",
    };
    let mut imports = String::new();
    for i in &rime_abi::IMPORTS {
        let params: Vec<_> = i.params.iter().map(ty).collect();
        let results: Vec<_> = i.results.iter().map(ty).collect();
        imports += &format!(
            "(import \"{}\" \"{}\" (func (param {}) (result {})))\n",
            rime_abi::IMPORT_MODULE,
            i.name,
            params.join(" "),
            results.join(" ")
        );
    }
    let wat = format!(
        "(module {imports} (memory (export \"{}\") 1) (func (export \"{}\") (result i32) (i32.const 0)))",
        rime_abi::EXPORT_MEMORY,
        rime_abi::EXPORT_INVOKE
    );
    let e = env();
    e.rt.deploy("all", wat.as_bytes(), FunctionConfig::default())
        .unwrap();
    assert_eq!(e.rt.invoke("all", b"").unwrap().output, b"");
}
