//! The WASI preview 1 example guests, built by `scripts/build-guests`:
//! `words` (Rust with std for `wasm32-wasip1`: `HashMap`, `format!`,
//! `println!`, the SDK's state calls) and `tally` (C with clang and
//! wasi-libc against `guests/c/rime.h`). Each is deployed, invoked on a
//! blocking caller's thread and on the executors, keeps its state from one
//! invocation to the next, and its stdout reaches the function's log.
//! `guests/c/rime.h` is checked against `rime-abi` here too.

mod common;
use common::*;
use rime_faas::{FunctionConfig, Setting};

/// Tests of this file one at a time: `tracing` caches per call site
/// whether anyone listens, and a test logging on threads with no
/// subscriber while another installs its `Capture` can leave that cache
/// saying "no one" (the captured log came back empty in 1 run of 3).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The guest's log lines (target `rime::faaslet`) of one blocking call,
/// with its output.
fn call_logged(e: &Env, name: &str, input: &str) -> (String, Vec<String>) {
    let cap = Capture::default();
    let out = cap.during(|| e.call(name, input));
    let lines = cap
        .events()
        .into_iter()
        .filter(|c| c.target == "rime::faaslet")
        .inspect(|c| assert!(c.fields.contains(&format!("function={name}")), "{c:?}"))
        .map(|c| c.message)
        .collect();
    (out, lines)
}

#[test]
fn the_rust_std_guest_counts_words_and_logs_with_println() {
    let _serial = serial();
    let e = env();
    e.deploy("words", "words", FunctionConfig::default());
    let (out, log) = call_logged(&e, "words", "the cat saw The dog");
    assert_eq!(out, "texts=1 the=2 cat=1 dog=1 saw=1");
    assert_eq!(log, ["words: text 1 has 5 words, 4 distinct"]);
    // State round trip: the totals carry over.
    let (out, _) = call_logged(&e, "words", "the end");
    assert_eq!(out, "texts=2 the=3 end=1");
    assert_eq!(e.load("words", b"the"), Some(3i64.to_le_bytes().to_vec()));
    // The executors' path (async WASI calls on a fiber).
    let all =
        e.rt.invoke_many((0..32).map(|_| ("words", b"dog".to_vec())));
    for r in all {
        r.expect("words on the executors");
    }
    assert_eq!(e.call("words", "dog"), "texts=35 dog=34");
}

/// A WASI module's environment is its function's configuration (plain
/// and secret entries): `std::env::var` reads what `--env` set.
#[test]
fn the_rust_std_guest_reads_its_configuration_from_the_environment() {
    let _serial = serial();
    let e = env();
    let cfg = FunctionConfig::default()
        .setting(Setting::plain("WORDS_LABEL", "ünï"))
        .setting(Setting::secret("UNUSED_TOKEN", "s3cret"));
    e.deploy("words", "words", cfg);
    assert_eq!(e.call("words", "a b a"), "label=ünï texts=1 a=2 b=1");
}

#[test]
fn the_c_guest_tallies_and_logs_with_printf() {
    let _serial = serial();
    let e = env();
    e.deploy("tally", "tally", FunctionConfig::default());
    let (out, log) = call_logged(&e, "tally", "a b a");
    assert_eq!(out, "a=1 b=1 a=2 (previous: -)");
    assert_eq!(
        log,
        [
            "tally: a is now 1",
            "tally: b is now 1",
            "tally: a is now 2"
        ]
    );
    let (out, _) = call_logged(&e, "tally", "b");
    assert_eq!(out, "b=2 (previous: a b a)");
    let all = e.rt.invoke_many((0..32).map(|_| ("tally", b"c".to_vec())));
    for r in all {
        r.expect("tally on the executors");
    }
    assert_eq!(e.call("tally", "c"), "c=33 (previous: c)");
}

/// `guests/c/rime.h` defines every import of `rime-abi` and the same
/// numbers.
#[test]
fn the_c_header_matches_the_abi() {
    let _serial = serial();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../guests/c/rime.h");
    let h = std::fs::read_to_string(path).unwrap();
    let define = |name: &str| -> i64 {
        let line = h
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("rime.h defines no {name}"));
        let value = line[format!("#define {name} ").len()..]
            .split("/*")
            .next()
            .unwrap()
            .trim()
            .trim_matches(|c| c == '(' || c == ')');
        parse_c(value).unwrap_or_else(|| panic!("{name}: cannot read {value:?}"))
    };
    for (code, name) in rime_abi::ERRORS {
        assert_eq!(define(&format!("RIME_{name}")), i64::from(code), "{name}");
    }
    use rime_abi::*;
    let numbers: [(&str, i64); 20] = [
        ("RIME_RESULT_OK", RESULT_OK.into()),
        ("RIME_RESULT_ERROR", RESULT_ERROR.into()),
        ("RIME_MAX_KEY_LEN", MAX_KEY_LEN as i64),
        ("RIME_MAX_VALUE_LEN", MAX_VALUE_LEN as i64),
        ("RIME_MAX_INPUT_LEN", MAX_INPUT_LEN as i64),
        ("RIME_MAX_OUTPUT_LEN", MAX_OUTPUT_LEN as i64),
        ("RIME_MAX_NAMESPACE_LEN", MAX_NAMESPACE_LEN as i64),
        ("RIME_MAX_OPEN_NAMESPACES", MAX_OPEN_NAMESPACES as i64),
        ("RIME_MAX_WRITE_SET_BYTES", MAX_WRITE_SET_BYTES as i64),
        (
            "RIME_WRITE_SET_ENTRY_OVERHEAD",
            WRITE_SET_ENTRY_OVERHEAD as i64,
        ),
        ("RIME_MAX_WRITTEN_BYTES", MAX_WRITTEN_BYTES as i64),
        ("RIME_MAX_LOG_LEN", MAX_LOG_LEN as i64),
        (
            "RIME_MAX_LOG_BYTES_PER_INVOCATION",
            MAX_LOG_BYTES_PER_INVOCATION as i64,
        ),
        (
            "RIME_MAX_LOG_LINES_PER_INVOCATION",
            MAX_LOG_LINES_PER_INVOCATION as i64,
        ),
        ("RIME_NONE", NONE.into()),
        ("RIME_CAS_MISMATCH", CAS_MISMATCH.into()),
        ("RIME_SCAN_LO_EXCLUSIVE", SCAN_LO_EXCLUSIVE.into()),
        ("RIME_SCAN_HI_INCLUSIVE", SCAN_HI_INCLUSIVE.into()),
        ("RIME_SCAN_END", SCAN_END.into()),
        ("RIME_SCAN_ENTRY_HEADER", SCAN_ENTRY_HEADER as i64),
    ];
    for (name, want) in numbers {
        assert_eq!(define(name), want, "{name}");
    }
    for (level, name) in [
        (Level::Error, "ERROR"),
        (Level::Warn, "WARN"),
        (Level::Info, "INFO"),
        (Level::Debug, "DEBUG"),
        (Level::Trace, "TRACE"),
    ] {
        assert_eq!(define(&format!("RIME_LOG_{name}")), level as i64);
    }
    for imp in &IMPORTS {
        let decl = format!("RIME_IMPORT({}) ", imp.name);
        assert!(
            h.contains(&decl),
            "rime.h does not declare rime.{}",
            imp.name
        );
    }
    assert_eq!(h.matches("RIME_IMPORT(").count() - 1, IMPORTS.len());
}

/// A C integer constant of the forms rime.h uses: `-11`, `512u`,
/// `0xFFFFFFFFu`, `(16u << 20) - 8u`, `(1u << 20)`.
fn parse_c(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some((a, b)) = s.rsplit_once(" - ") {
        return Some(parse_c(a)? - parse_c(b)?);
    }
    let s = s.trim_matches(|c| c == '(' || c == ')');
    if let Some((a, b)) = s.split_once(" << ") {
        return Some(parse_c(a)? << parse_c(b)?);
    }
    let s = s.trim_end_matches('u');
    match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}
