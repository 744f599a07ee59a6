//! The `rime` binary, run as a user would.

use std::process::Command;

fn rime(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rime"))
        .args(args)
        .output()
        .expect("run rime");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn demo_twice_carries_the_state_over() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let small = [
        "--threads",
        "4",
        "--increments",
        "500",
        "--records",
        "20000",
    ];
    let (ok, first) = rime(&[&["demo", "--data", data][..], &small].concat());
    assert!(ok, "{first}");
    assert!(first.contains("run 1 on this directory"), "{first}");
    assert!(first.contains("counter 0 -> 2000"), "{first}");
    let (ok, second) = rime(&[&["demo", "--data", data][..], &small].concat());
    assert!(ok, "{second}");
    assert!(second.contains("run 2 on this directory"), "{second}");
    assert!(second.contains("counter 2000 -> 4000"), "{second}");
    assert!(!second.contains("FAIL"), "{second}");
}

#[test]
fn a_damaged_root_file_is_a_clear_error() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_str().unwrap();
    let (ok, out) = rime(&[
        "demo",
        "--data",
        data,
        "--records",
        "100",
        "--increments",
        "1",
    ]);
    assert!(ok, "{out}");
    std::fs::write(dir.path().join("demo-root"), "not a number").unwrap();
    let (ok, out) = rime(&["demo", "--data", data]);
    assert!(!ok);
    assert!(out.contains("not a page id"), "{out}");
}

#[test]
fn bad_arguments_are_refused() {
    let (ok, out) = rime(&["demo", "--threads", "0"]);
    assert!(!ok);
    assert!(out.contains("--threads must be at least 1"), "{out}");
}
