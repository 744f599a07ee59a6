//! Per-function configuration (`docs/abi.md`, `config_get`): entries set
//! at deploy time, read by the guest, kept across restarts, secrets never
//! shown; and registry entries stored before configuration existed still
//! load.

mod common;
use common::*;
use rime_faas::{DeployError, FunctionConfig, Runtime, Setting};

/// A guest that reads configuration entry `input` into an 8-byte buffer
/// and outputs `config_get`'s result (i32 LE) followed by that buffer.
const READER: &str = r#"(module
 (import "rime" "input" (func $input (param i32 i32) (result i32)))
 (import "rime" "output" (func $output (param i32 i32) (result i32)))
 (import "rime" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
 (memory (export "memory") 1)
 (func (export "rime_invoke") (result i32)
   (local $n i32)
   (local.set $n (call $input (i32.const 64) (i32.const 512)))
   (i32.store (i32.const 1020)
     (call $config_get (i32.const 64) (local.get $n) (i32.const 1024) (i32.const 8)))
   (drop (call $output (i32.const 1020) (i32.const 12)))
   (i32.const 0)))"#;

fn read(rt: &Runtime, key: &str) -> (i32, Vec<u8>) {
    let out = rt.invoke("reader", key.as_bytes()).unwrap().output;
    (
        i32::from_le_bytes(out[..4].try_into().unwrap()),
        out[4..].to_vec(),
    )
}

fn config() -> FunctionConfig {
    FunctionConfig::default()
        .setting(Setting::plain("GREETING", "hello"))
        .setting(Setting::secret("TOKEN", "s3cr3t"))
        .setting(Setting::plain("LONG", "twenty bytes of text"))
}

#[test]
fn the_guest_reads_its_entries_by_the_buffer_protocol() {
    let e = env();
    e.rt.deploy("reader", READER.as_bytes(), config()).unwrap();
    assert_eq!(read(&e.rt, "GREETING"), (5, b"hello\0\0\0".to_vec()));
    assert_eq!(read(&e.rt, "TOKEN"), (6, b"s3cr3t\0\0".to_vec()));
    // Too long for the buffer: the length, nothing copied.
    assert_eq!(read(&e.rt, "LONG"), (20, vec![0; 8]));
    assert_eq!(read(&e.rt, "MISSING").0, rime_abi::ERR_NOT_FOUND);
    assert_eq!(read(&e.rt, "not-a-key").0, rime_abi::ERR_INVALID);
}

#[test]
fn entries_survive_a_restart_and_secrets_are_never_shown() {
    let dir = tempfile::TempDir::new().unwrap();
    {
        let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
        let info = rt.deploy("reader", READER.as_bytes(), config()).unwrap();
        let shown = format!("{info:?}");
        assert!(shown.contains("TOKEN=<secret>"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
    let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
    assert_eq!(read(&rt, "TOKEN"), (6, b"s3cr3t\0\0".to_vec()));
    let f = &rt.functions()[0];
    let shown: Vec<_> = f.config.settings.iter().map(Setting::shown).collect();
    assert_eq!(
        shown,
        [
            "GREETING=hello",
            "LONG=twenty bytes of text",
            "TOKEN=<secret>"
        ]
    );
    assert!(!format!("{:?}", rt.functions()).contains("s3cr3t"));
    // A bad entry is refused by key, without echoing any value.
    let bad = FunctionConfig::default().setting(Setting::secret("2FA", "s3cr3t"));
    let err = rt.deploy("reader", READER.as_bytes(), bad).unwrap_err();
    assert!(matches!(err, DeployError::BadSetting(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("invalid configuration: key \"2FA\""),
        "{text}"
    );
    assert!(!text.contains("s3cr3t"), "{text}");
    // A redeploy replaces the entries.
    rt.deploy("reader", READER.as_bytes(), FunctionConfig::default())
        .unwrap();
    assert_eq!(read(&rt, "TOKEN").0, rime_abi::ERR_NOT_FOUND);
}

/// Deletes the `c/` entries of the registry, leaving exactly the layout
/// stored before configuration existed (meta format 1, grants, chunks),
/// or overwrites one of them with `damage`.
fn rewrite_settings(rt: &Runtime, damage: Option<&[u8]>) {
    let db = rt.db();
    let reg = db.open_tree("rime/functions").unwrap().unwrap();
    let mut keys = Vec::new();
    db.transaction(|tx| {
        tx.scan(
            reg,
            std::ops::Bound::Included(&b"c/"[..]),
            std::ops::Bound::Excluded(&b"c0"[..]),
            |k, _| {
                keys.push(k.to_vec());
                std::ops::ControlFlow::Continue(())
            },
        )
    })
    .unwrap();
    assert_eq!(keys.len(), 3, "the registry keeps entries under c/");
    for k in keys {
        match damage {
            None => db.delete(reg, &k).map(drop).unwrap(),
            Some(v) => db.put(reg, &k, v).unwrap(),
        }
    }
}

#[test]
fn an_entry_stored_before_configuration_existed_still_loads() {
    let dir = tempfile::TempDir::new().unwrap();
    {
        let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
        rt.deploy("reader", READER.as_bytes(), config()).unwrap();
        rewrite_settings(&rt, None);
    }
    let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
    assert!(rt.unloadable().is_empty(), "{:?}", rt.unloadable());
    assert!(rt.functions()[0].config.settings.is_empty());
    assert_eq!(read(&rt, "GREETING").0, rime_abi::ERR_NOT_FOUND);
}

#[test]
fn a_damaged_entry_makes_only_its_function_unloadable() {
    let dir = tempfile::TempDir::new().unwrap();
    {
        let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
        rt.deploy("reader", READER.as_bytes(), config()).unwrap();
        rewrite_settings(&rt, Some(&[9, 9]));
    }
    let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
    let unloadable = rt.unloadable();
    assert_eq!(unloadable.len(), 1, "{unloadable:?}");
    assert!(
        unloadable[0].1.contains("configuration entry"),
        "{unloadable:?}"
    );
}
