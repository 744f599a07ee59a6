//! The module cache does not trust its files: a damaged, truncated, empty
//! or swapped entry is rejected (with a warning naming it), recompiled and
//! rewritten, and the function runs its own code (`faas/src/cache.rs`).

mod common;
use common::*;
use rime_faas::{FunctionConfig, Runtime};
use std::path::{Path, PathBuf};

/// Bytes before the artifact in an entry (the layout in `cache.rs`).
const HEADER_LEN: usize = 112;

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    v.sort();
    v
}

fn open(dir: &Path) -> Runtime {
    Runtime::open(open_db(dir), runtime_config(dir)).unwrap()
}

/// Deploys `bank` (two accounts, total 105) and `counter` (counted to 2);
/// returns their cache entries.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let rt = open(dir);
    rt.deploy("bank", &guest("bank"), FunctionConfig::default())
        .unwrap();
    let bank = entries(dir);
    assert_eq!(bank.len(), 1);
    rt.deploy("counter", &guest("counter"), FunctionConfig::default())
        .unwrap();
    let counter: Vec<_> = entries(dir).into_iter().filter(|p| *p != bank[0]).collect();
    assert_eq!(counter.len(), 1);
    for input in ["open alice 100", "open bob 5"] {
        rt.invoke("bank", input.as_bytes()).unwrap();
    }
    rt.invoke("counter", b"").unwrap();
    rt.invoke("counter", b"").unwrap();
    (bank[0].clone(), counter[0].clone())
}

/// Reopens the runtime, expecting `rejected` entries to be refused with a
/// warning naming each and recompiled, and every function to run its own
/// code; then reopens again, expecting every entry to load (rewritten).
fn reopen_expecting(dir: &Path, rejected: &[&Path], counter_before: i64) {
    let log = Capture::default();
    let rt = log.during(|| open(dir));
    let s = rt.stats();
    assert_eq!(
        (s.compiles, s.cache_hits),
        (rejected.len() as u64, 2 - rejected.len() as u64),
        "rejected entries are recompiled, the others loaded"
    );
    let events = log.events();
    for p in rejected {
        let name = p.display().to_string();
        assert!(
            events.iter().any(|e| e.level == tracing::Level::WARN
                && e.fields.contains(&name)
                && e.message.contains("rejected")),
            "a warning names {name}: {events:#?}"
        );
    }
    // Each function runs its own code.
    assert_eq!(rt.invoke("bank", b"total").unwrap().output, b"105");
    assert_eq!(rt.invoke("bank", b"balance bob").unwrap().output, b"5");
    let n = rt.invoke("counter", b"").unwrap().output;
    assert_eq!(n, (counter_before + 1).to_string().as_bytes());
    drop(rt);
    let rt = open(dir);
    let s = rt.stats();
    assert_eq!(
        (s.compiles, s.cache_hits),
        (0, 2),
        "the rejected entries were rewritten"
    );
}

#[test]
fn a_flipped_byte_in_a_cached_module_is_recompiled_not_run() {
    let dir = tempfile::TempDir::new().unwrap();
    let (bank, _) = setup(dir.path());
    let len = std::fs::metadata(&bank).unwrap().len() as usize;
    assert!(len > HEADER_LEN + 1000, "an artifact follows the header");
    // The header's module hash, a byte in the artifact's middle, its last
    // byte. (Every header byte: `cache::tests`, on a tiny module.)
    // The counter stood at 2 after `setup`; each reopen counts once.
    for (count, at) in (2..).zip([8, (HEADER_LEN + len) / 2, len - 1]) {
        let mut bytes = std::fs::read(&bank).unwrap();
        assert_eq!(bytes.len(), len, "rewritten in the same layout");
        bytes[at] ^= 0x20;
        std::fs::write(&bank, &bytes).unwrap();
        reopen_expecting(dir.path(), &[&bank], count);
    }
}

#[test]
fn swapped_cache_entries_each_run_their_own_code() {
    let dir = tempfile::TempDir::new().unwrap();
    let (bank, counter) = setup(dir.path());
    let tmp = dir.path().join("swap");
    std::fs::rename(&bank, &tmp).unwrap();
    std::fs::rename(&counter, &bank).unwrap();
    std::fs::rename(&tmp, &counter).unwrap();
    reopen_expecting(dir.path(), &[&bank, &counter], 2);
    // And a copy of one over the other.
    std::fs::copy(&counter, &bank).unwrap();
    reopen_expecting(dir.path(), &[&bank], 3);
}

#[test]
fn a_truncated_or_empty_cache_entry_is_recompiled() {
    let dir = tempfile::TempDir::new().unwrap();
    let (bank, _) = setup(dir.path());
    let full = std::fs::read(&bank).unwrap();
    let mut cases: Vec<Vec<u8>> = [0, 50, HEADER_LEN, full.len() - 1]
        .iter()
        .map(|&n| full[..n].to_vec())
        .collect();
    let mut longer = full.clone();
    longer.push(0);
    cases.push(longer);
    for (count, bytes) in (2..).zip(cases) {
        std::fs::write(&bank, &bytes).unwrap();
        reopen_expecting(dir.path(), &[&bank], count);
        assert_eq!(std::fs::read(&bank).unwrap(), full, "rewritten whole");
    }
}

#[test]
fn an_entry_of_the_old_bare_format_is_replaced() {
    let dir = tempfile::TempDir::new().unwrap();
    let (bank, _) = setup(dir.path());
    // What the cache wrote before entries had a header: the artifact alone.
    let full = std::fs::read(&bank).unwrap();
    std::fs::write(&bank, &full[HEADER_LEN..]).unwrap();
    reopen_expecting(dir.path(), &[&bank], 2);
}

#[test]
fn a_cache_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::TempDir::new().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    for _ in 0..2 {
        let log = Capture::default();
        let rt = log.during(|| open(dir.path()));
        assert!(
            log.events()
                .iter()
                .any(|e| e.message.contains("writable by group or others")),
            "{:#?}",
            log.events()
        );
        rt.deploy("bank", &guest("bank"), FunctionConfig::default())
            .unwrap();
        assert_eq!(rt.stats().cache_hits, 0);
    }
    assert!(entries(dir.path()).is_empty(), "nothing written there");
    // A fresh directory is created private.
    let dir = tempfile::TempDir::new().unwrap();
    drop(open(dir.path()));
    let mode = std::fs::metadata(dir.path().join("cache"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}
