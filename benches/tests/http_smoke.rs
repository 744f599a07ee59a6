//! `rime-bench http` end to end: the debug `rime` binary (beside
//! `rime-bench` in the target directory) serving a guest to two
//! connections for a second. `counter`: every 200 the bench counted must be
//! exactly one increment of the counter, read back over HTTP by the bench's
//! check. `hello`: the HTTP-triggered component answers `hello` at
//! `/fn/hello`, and a 200 with another body would fail the check.
//!
//! Without the `rime` binary (`cargo build -p rime-cli`) or the guests
//! (`scripts/build-guests`) the test is skipped with a message, unless `CI`
//! or `RIME_REQUIRE_GUESTS` is set: then it fails.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Columns of results.csv.
const WORKLOAD: usize = 1;
const ENGINE: usize = 10;
const OPS: usize = 12;
const ERRORS: usize = 23;

fn components_dir() -> PathBuf {
    std::env::var_os("RIME_COMPONENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../guests/components/target/wasm32-wasip2/release")
        })
}

fn guests_dir() -> PathBuf {
    std::env::var_os("RIME_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../guests/target/wasm32-unknown-unknown/release")
        })
}

/// What a run of `guest` (its file) needs and this build lacks.
fn missing(guest: &Path) -> Vec<String> {
    let rime = Path::new(env!("CARGO_BIN_EXE_rime-bench")).with_file_name("rime");
    [
        (rime, "cargo build -p rime-cli"),
        (guest.to_path_buf(), "scripts/build-guests"),
    ]
    .into_iter()
    .filter(|(p, _)| !p.is_file())
    .map(|(p, how)| format!("{} (build it: {how})", p.display()))
    .collect()
}

/// The `check guest=GUEST connections=2 ...: ok` line's field `name=`.
fn check_field(stdout: &str, guest: &str, name: &str) -> u64 {
    let prefix = format!("check guest={guest} connections=2 ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {guest} check line in:\n{stdout}"));
    assert!(line.ends_with(": ok"), "{line}");
    let value = line
        .split([' ', ':'])
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line}"));
    value
        .parse()
        .unwrap_or_else(|e| panic!("{name}={value}: {e}"))
}

/// `rime-bench http` with the health ceiling and `guest` on 2 connections
/// for a second, which must succeed: its stdout and results.csv's rows.
/// `None` (skipped, with a message) if the run's files are missing, unless
/// `CI` or `RIME_REQUIRE_GUESTS` is set: then it fails.
fn run_bench(guest: &str, guest_file: &Path) -> Option<(String, Vec<Vec<String>>)> {
    let missing = missing(guest_file);
    if !missing.is_empty() {
        let required = ["CI", "RIME_REQUIRE_GUESTS"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        assert!(!required, "rime-bench http needs {missing:?}");
        eprintln!("http_smoke: skipped, missing {missing:?}");
        return None;
    }
    let tmp = tempfile::Builder::new()
        .prefix("rime-bench-http")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let out = tmp.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_rime-bench"))
        .args(["http", "--connections", "2", "--duration", "1"])
        .args(["--warmup", "0", "--guests", guest])
        .arg("--out")
        .arg(&out)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        // Small log segments: a debug server opens them faster.
        .env("RIME_WAL_SEGMENT_MIB", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let workloads: Vec<&str> = rows.iter().map(|f| f[WORKLOAD].as_str()).collect();
    assert_eq!(workloads, ["health", guest], "{csv}");
    for f in &rows {
        assert_eq!(f[ENGINE], "rime-serve-http", "{f:?}");
        assert_eq!(f[ERRORS], "0", "{f:?}");
        assert!(f[OPS].parse::<u64>().unwrap() >= 1, "{f:?}");
    }
    Some((stdout, rows))
}

#[test]
fn http_counter_counts_every_acknowledged_invocation() {
    let Some((stdout, _)) = run_bench("counter", &guests_dir().join("counter.wasm")) else {
        return;
    };
    let field = |name| check_field(&stdout, "counter", name);
    let (value, ok, in_doubt) = (field("value"), field("ok"), field("in_doubt"));
    assert!(ok >= 1, "no successful invocation:\n{stdout}");
    assert_eq!(in_doubt, 0, "transport errors:\n{stdout}");
    assert_eq!(value, ok, "the counter is the number of 200s");
}

#[test]
fn http_hello_component_answers_hello_at_its_route() {
    let file = components_dir().join("hello_http.wasm");
    let Some((stdout, rows)) = run_bench("hello", &file) else {
        return;
    };
    let (ok, bad_body) = (
        check_field(&stdout, "hello", "ok"),
        check_field(&stdout, "hello", "bad_body"),
    );
    assert!(ok >= 1, "no 200 from the component:\n{stdout}");
    assert_eq!(bad_body, 0, "200s without the body `hello`:\n{stdout}");
    // The measured 200s are among the whole run's right ones.
    let measured: u64 = rows[1][OPS].parse().unwrap();
    assert!(measured <= ok, "{measured} measured > {ok} in the run");
}
