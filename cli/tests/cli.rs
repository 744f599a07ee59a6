//! The `rime` binary, run as a user would. Needs the example guests
//! (`scripts/build-guests`, or `RIME_GUESTS_DIR`).

mod common;

use std::process::Command;

/// The binary, with log segments of at most 1 MiB (they start at 64 KiB
/// either way; `data_dir.rs` runs with the defaults).
fn rime_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rime"));
    c.env("RIME_WAL_SEGMENT_MIB", "1");
    c
}

fn rime(args: &[&str]) -> (bool, String) {
    let out = rime_cmd().args(args).output().expect("run rime");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn demo_twice_carries_the_state_over() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let small = ["--increments", "200", "--transfers", "200"];
    let (ok, first) = rime(&[&["demo", "--data", data][..], &small].concat());
    assert!(ok, "{first}");
    assert!(first.contains("run 1 on this directory"), "{first}");
    assert!(first.contains("counter demo/counter: 0 -> 200"), "{first}");
    assert!(first.contains("ok   bank total 16000 -> 16000"), "{first}");
    assert!(first.contains("ok   Db::verify"), "{first}");
    assert!(!first.contains("FAIL"), "{first}");
    let (ok, second) = rime(&[&["demo", "--data", data][..], &small].concat());
    assert!(ok, "{second}");
    assert!(second.contains("2 functions deployed"), "{second}");
    assert!(second.contains("run 2 on this directory"), "{second}");
    assert!(
        second.contains("counter demo/counter: 200 -> 400"),
        "{second}"
    );
    assert!(!second.contains("FAIL"), "{second}");
    // The demo leaves a directory that checks clean.
    let (ok, out) = rime(&["check", "--data", data]);
    assert!(ok, "{out}");
}

#[test]
fn deploy_invoke_state_round_trip() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_str().unwrap();
    let counter = common::guest_file("counter");
    let (ok, out) = rime(&[
        "deploy",
        "--data",
        data,
        "counter",
        counter.to_str().unwrap(),
        "--grant",
        "stats:rw",
        "--memory",
        "32MiB",
        "--deadline",
        "2s",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("deployed counter (generation 1"), "{out}");
    for expected in ["1", "2"] {
        let (ok, out) = rime(&["invoke", "--data", data, "counter", "--input", "hits"]);
        assert!(ok, "{out}");
        assert_eq!(out.trim(), expected);
    }
    let input = dir.path().join("input");
    std::fs::write(&input, "stats:hits").unwrap();
    let (ok, out) = rime(&[
        "invoke",
        "--data",
        data,
        "counter",
        "--input-file",
        input.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "1");
    let (ok, out) = rime(&["functions", "--data", data]);
    assert!(
        ok && out.contains("counter\tgeneration 1") && out.contains("stats:rw"),
        "{out}"
    );

    // The guest's state, seen and changed directly.
    let (ok, out) = rime(&["state", "--data", data, "get", "counter", "hits"]);
    assert!(ok, "{out}");
    assert!(out.contains("(i64 2)"), "{out}");
    let (ok, out) = rime(&["state", "--data", data, "put", "counter", "note", "hello"]);
    assert!(ok, "{out}");
    let (ok, out) = rime(&["state", "--data", data, "scan", "counter"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("hits\t0x02") && out.contains("note\thello"),
        "{out}"
    );
    let (ok, out) = rime(&[
        "state", "--data", data, "scan", "counter", "--start", "i", "--limit", "5",
    ]);
    assert!(ok && !out.contains("hits") && out.contains("note"), "{out}");
    let (ok, out) = rime(&["state", "--data", data, "del", "counter", "note"]);
    assert!(ok, "{out}");
    let (ok, out) = rime(&["state", "--data", data, "get", "counter", "note"]);
    assert!(!ok && out.contains("not found"), "{out}");

    // A guest error is a clear failure; so is a module that is not wasm.
    let (ok, out) = rime(&["invoke", "--data", data, "counter", "--input", "secret:x"]);
    assert!(!ok && out.contains("namespace access denied"), "{out}");
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm at all").unwrap();
    let (ok, out) = rime(&["deploy", "--data", data, "bad", bogus.to_str().unwrap()]);
    assert!(
        !ok && out.contains("not a wasm module (bad magic): it starts with 6e 6f 74 20"),
        "{out}"
    );

    let (ok, out) = rime(&["undeploy", "--data", data, "counter"]);
    assert!(ok, "{out}");
    let (ok, out) = rime(&["invoke", "--data", data, "counter"]);
    assert!(!ok && out.contains("no function named"), "{out}");
    let (ok, out) = rime(&["stats", "--data", data]);
    assert!(ok && out.contains("0 deployed"), "{out}");
    assert!(out.contains("health           ok"), "{out}");
}

/// `--deadline 307445734561825861m` overflowed u64 milliseconds and wrapped
/// to a 44 s deadline; the flag parser is the one the HTTP API uses.
#[test]
fn a_deadline_flag_that_overflows_is_refused_not_wrapped() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_str().unwrap();
    let counter = common::guest_file("counter");
    let counter = counter.to_str().unwrap();
    for deadline in ["307445734561825861m", "25h"] {
        let (ok, out) = rime(&[
            "deploy",
            "--data",
            data,
            "counter",
            counter,
            "--deadline",
            deadline,
        ]);
        assert!(!ok && out.contains("too long"), "{deadline}: {out}");
    }
    let (ok, out) = rime(&["serve", "--data", data, "--idle-timeout", "0s"]);
    assert!(!ok && out.contains("must be positive"), "{out}");
}

#[test]
fn check_finds_a_flipped_page() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_str().unwrap();
    let (ok, out) = rime(&["state", "--data", data, "put", "kv", "k", "v"]);
    assert!(ok, "{out}");
    let (ok, out) = rime(&["check", "--data", data]);
    assert!(ok, "{out}");
    assert!(
        out.contains("verify: ok") && out.contains("tree ns/kv: 1 keys"),
        "{out}"
    );

    // Flip bytes in the middle of every page but the first.
    let pages = dir.path().join("pages.db");
    let mut bytes = std::fs::read(&pages).unwrap();
    assert!(bytes.len() >= 2 * 4096, "{}", bytes.len());
    for page in bytes.chunks_mut(4096).skip(1) {
        for b in &mut page[2000..2016] {
            *b ^= 0xff;
        }
    }
    std::fs::write(&pages, bytes).unwrap();
    let (ok, out) = rime(&["check", "--data", data]);
    assert!(!ok, "{out}");
    assert!(out.contains("check of") && out.contains("page"), "{out}");
    assert!(out.contains("corrupt") || out.contains("checksum"), "{out}");
}

#[test]
fn clear_errors() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_str().unwrap();
    let (ok, out) = rime(&["check", "--data", data]);
    assert!(!ok && out.contains("not a Rime data directory"), "{out}");
    let (ok, out) = rime(&["deploy", "--data", data, "x", "f.wasm", "--memory", "1TiB"]);
    assert!(!ok && out.contains("unknown size unit"), "{out}");
    let (ok, out) = rime(&["state", "--data", data, "put", "Bad NS", "k", "v"]);
    assert!(!ok && out.contains("invalid namespace"), "{out}");
    let out = rime_cmd()
        .args(["demo", "--data", data, "--increments", "1"])
        .env("RIME_GUESTS_DIR", dir.path().join("nowhere"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("RIME_GUESTS_DIR"),
        "{err}"
    );
}

#[test]
fn completions_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, script) = rime(&["completions", shell]);
        assert!(ok, "{shell}: {script}");
        for sub in ["deploy", "invoke", "new", "build"] {
            assert!(
                script.contains(sub),
                "{shell} script lacks {sub}:\n{script}"
            );
        }
    }
    let (ok, err) = rime(&["completions", "tcsh"]);
    assert!(!ok && err.contains("invalid value 'tcsh'"), "{err}");
}
