//! Deploy-time checks through the real binary and through HTTP: each bad
//! input gets an error that says what is wrong and what to do, and
//! nothing is deployed.

mod common;
use common::{Server, TOKEN, auth, code, guest, send, text};
use std::path::Path;
use std::process::Command;

fn rime(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rime"))
        .args(args)
        .env_remove("RIME_DATA")
        .output()
        .expect("run rime");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn counter_path() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-unknown-unknown/release/counter.wasm");
    assert!(
        p.is_file(),
        "{} missing: run scripts/build-guests",
        p.display()
    );
    p.to_str().unwrap().to_string()
}

/// The counter guest's memory: 17 pages (its declared minimum).
const COUNTER_MIN_BYTES: u64 = 17 << 16;

#[test]
fn the_cli_refuses_bare_numbers_and_a_memory_below_the_module_minimum() {
    let tmp = tempfile::TempDir::new().unwrap();
    let d = tmp.path().join("d");
    let d = d.to_str().unwrap();
    let counter = counter_path();
    let deploy =
        |extra: &[&str]| rime(&[&["deploy", "counter", &counter, "--data", d][..], extra].concat());
    let (ok, out) = deploy(&["--deadline", "10"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("duration \"10\" needs a unit: us, ms, s, m or h"),
        "{out}"
    );
    let (ok, out) = deploy(&["--memory", "64"]);
    assert!(
        !ok && out.contains("size \"64\" needs a unit: B, KiB, MiB or GiB"),
        "{out}"
    );
    let (ok, out) = rime(&["serve", "--data", d, "--idle-timeout", "60"]);
    assert!(!ok && out.contains("duration \"60\" needs a unit"), "{out}");
    let (ok, out) = rime(&["serve", "--data", d, "--pool", "256"]);
    assert!(!ok && out.contains("size \"256\" needs a unit"), "{out}");
    let (ok, out) = deploy(&["--memory", "1KiB"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "memory limit 1024 B is below the module's declared minimum memory of {COUNTER_MIN_BYTES} B (17 pages"
        )),
        "{out}"
    );
    let (ok, out) = rime(&["functions", "--data", d]);
    assert!(ok && out.trim().is_empty(), "nothing deployed: {out}");
    let (ok, out) = deploy(&["--memory", "2MiB", "--deadline", "10ms"]);
    assert!(ok, "{out}");
    let (ok, out) = rime(&["functions", "--data", d]);
    assert!(ok && out.contains("deadline 10ms"), "{out}");
}

#[test]
fn http_deploy_errors_name_the_fix() {
    let tmp = tempfile::TempDir::new().unwrap();
    let s = Server::start(tmp.path(), &["--token", TOKEN]);
    let url = |q: &str| s.url(&format!("/functions/counter{q}"));
    let wasm = guest("counter");

    // Not wasm at all.
    let (st, body) = send(auth(ureq::post(&url(""))), Some(b"\x7fELF\x02\x01\x01\x00"));
    assert_eq!(
        (st, code(&body)),
        (400, "malformed_module".into()),
        "{}",
        text(&body)
    );
    assert!(
        text(&body).contains("not a wasm module (bad magic): it starts with 7f 45 4c 46"),
        "{}",
        text(&body)
    );
    assert!(
        text(&body)
            .contains("send the .wasm file's bytes unchanged, e.g. curl --data-binary @FILE.wasm"),
        "{}",
        text(&body)
    );
    // What `curl -d @counter.wasm` sends: a form, newlines stripped.
    let mangled: Vec<u8> = wasm
        .iter()
        .copied()
        .filter(|&b| b != b'\n' && b != b'\r')
        .collect();
    assert_ne!(
        mangled.len(),
        wasm.len(),
        "the guest has newline bytes to strip"
    );
    let form = auth(ureq::post(&url(""))).set("Content-Type", "application/x-www-form-urlencoded");
    let (st, body) = send(form, Some(&mangled));
    assert_eq!(st, 400, "{}", text(&body));
    assert!(
        text(&body).contains("upload the module unchanged with curl --data-binary @FILE.wasm"),
        "{}",
        text(&body)
    );
    // Units on query parameters, and the module's memory minimum.
    let (st, body) = send(auth(ureq::post(&url("?deadline=10"))), Some(&wasm));
    assert_eq!(st, 400, "{}", text(&body));
    assert!(
        text(&body).contains("duration \\\"10\\\" needs a unit"),
        "{}",
        text(&body)
    );
    let (st, body) = send(auth(ureq::post(&url("?memory=64"))), Some(&wasm));
    assert_eq!(st, 400, "{}", text(&body));
    assert!(
        text(&body).contains("size \\\"64\\\" needs a unit"),
        "{}",
        text(&body)
    );
    let (st, body) = send(auth(ureq::post(&url("?memory=1KiB"))), Some(&wasm));
    assert_eq!(
        (st, code(&body)),
        (400, "bad_config".into()),
        "{}",
        text(&body)
    );
    assert!(
        text(&body).contains("below the module's declared minimum memory of 1114112 B"),
        "{}",
        text(&body)
    );
    // Nothing was deployed; the real module with units deploys.
    let (st, body) = send(auth(ureq::get(&s.url("/functions"))), None);
    assert_eq!(st, 200);
    assert!(text(&body).contains("\"functions\":[]"), "{}", text(&body));
    let (st, body) = send(
        auth(ureq::post(&url("?memory=2MiB&deadline=2s"))),
        Some(&wasm),
    );
    assert_eq!(st, 201, "{}", text(&body));
}
