//! `rime-bench http` end to end: the debug `rime` binary (beside
//! `rime-bench` in the target directory) serving the `counter` guest to two
//! connections for a second. Every 200 the bench counted must be exactly
//! one increment of the counter, read back over HTTP by the bench's check.
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

fn guests_dir() -> PathBuf {
    std::env::var_os("RIME_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../guests/target/wasm32-unknown-unknown/release")
        })
}

/// What the run needs and this build lacks.
fn missing() -> Vec<String> {
    let rime = Path::new(env!("CARGO_BIN_EXE_rime-bench")).with_file_name("rime");
    let counter = guests_dir().join("counter.wasm");
    [
        (rime, "cargo build -p rime-cli"),
        (counter, "scripts/build-guests"),
    ]
    .into_iter()
    .filter(|(p, _)| !p.is_file())
    .map(|(p, how)| format!("{} (build it: {how})", p.display()))
    .collect()
}

/// The numbers of `check guest=counter connections=2 value=V ok=R
/// in_doubt=D: ok`.
fn counter_check(stdout: &str) -> (i64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("check guest=counter connections=2 "))
        .unwrap_or_else(|| panic!("no counter check line in:\n{stdout}"));
    assert!(line.ends_with(": ok"), "{line}");
    let field = |name: &str| -> &str {
        line.split([' ', ':'])
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (
        field("value=").parse().unwrap(),
        field("ok=").parse().unwrap(),
        field("in_doubt=").parse().unwrap(),
    )
}

#[test]
fn http_counter_counts_every_acknowledged_invocation() {
    let missing = missing();
    if !missing.is_empty() {
        let required = ["CI", "RIME_REQUIRE_GUESTS"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        assert!(!required, "rime-bench http needs {missing:?}");
        eprintln!("http_smoke: skipped, missing {missing:?}");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("rime-bench-http")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let out = tmp.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_rime-bench"))
        .args(["http", "--connections", "2", "--duration", "1"])
        .args(["--warmup", "0", "--guests", "counter"])
        .arg("--out")
        .arg(&out)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        // Small log segments: a debug server opens them faster.
        .env("RIME_WAL_SEGMENT_MIB", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");

    let (value, ok, in_doubt) = counter_check(&stdout);
    assert!(ok >= 1, "no successful invocation:\n{stdout}");
    assert_eq!(in_doubt, 0, "transport errors:\n{stdout}\n{stderr}");
    assert_eq!(value, ok as i64, "the counter is the number of 200s");

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let workloads: Vec<&str> = rows.iter().map(|f| f[WORKLOAD]).collect();
    assert_eq!(workloads, ["health", "counter"], "{csv}");
    for f in &rows {
        assert_eq!(f[ENGINE], "rime-serve-http", "{f:?}");
        assert_eq!(f[ERRORS], "0", "{f:?}");
        assert!(f[OPS].parse::<u64>().unwrap() >= 1, "{f:?}");
    }
}
