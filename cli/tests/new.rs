//! `rime new` → `rime build` → `rime deploy` → `rime invoke`, through the
//! real binary, real cargo and the real wasm32 toolchain. The new crates
//! depend on this checkout's `guests/sdk` (`--sdk`) and build offline with
//! the versions of `guests/Cargo.lock`. Needs the wasm32 target
//! (`scripts/setup`) and the crates of `scripts/build-guests` in cargo's
//! cache.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Nix build sandbox vendors only the host workspace's crates, not the
/// guests' (dlmalloc), so a new crate cannot build there: say so and skip.
fn skipped_in_nix_sandbox(test: &str) -> bool {
    let skip = std::env::var_os("RIME_IN_NIX_SANDBOX").is_some();
    if skip {
        eprintln!(
            "{test}: SKIPPED in the Nix sandbox (RIME_IN_NIX_SANDBOX): building a new guest crate \
             needs the guests' crates, which the sandbox does not vendor"
        );
    }
    skip
}

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The binary, with 1 MiB log segments (fast opens in a debug build), and
/// cargo building into a target directory of this test alone, offline.
fn rime(cwd: &Path, args: &[&str]) -> Output {
    offline_cargo(Command::new(env!("CARGO_BIN_EXE_rime")).current_dir(cwd))
        .args(args)
        .env("RIME_WAL_SEGMENT_MIB", "1")
        .output()
        .expect("run rime")
}

/// What every cargo these tests start (through `rime build` or directly)
/// gets: a target directory of this test alone, and no network.
fn offline_cargo(cmd: &mut Command) -> &mut Command {
    cmd.env(
        "CARGO_TARGET_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("new-guests"),
    )
    .env_remove("CARGO_BUILD_BUILD_DIR")
    .env("CARGO_NET_OFFLINE", "true")
}

fn ok(cwd: &Path, args: &[&str]) -> String {
    let out = rime(cwd, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rime {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fails(cwd: &Path, args: &[&str]) -> String {
    let out = rime(cwd, args);
    assert!(!out.status.success(), "rime {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `rime new NAME` in `dir` against this checkout's SDK, with the guests'
/// lock file so the build needs no network.
fn new_crate(dir: &Path, name: &str) -> PathBuf {
    let sdk = checkout().join("guests/sdk");
    let out = ok(dir, &["new", name, "--sdk", sdk.to_str().unwrap()]);
    assert!(out.contains(&format!("created {name}")), "{out}");
    let krate = dir.join(name);
    std::fs::copy(
        checkout().join("guests/Cargo.lock"),
        krate.join("Cargo.lock"),
    )
    .unwrap();
    krate
}

/// `rime build` in `krate`: the .wasm's path it printed.
fn build(krate: &Path) -> PathBuf {
    let out = ok(krate, &["build"]);
    let wasm = PathBuf::from(out.trim());
    assert!(wasm.is_file(), "rime build printed {out:?}");
    wasm
}

/// By default the crate carries a copy of the SDK in `vendor/`: it builds
/// with no checkout anywhere (and offline), and runs.
#[test]
fn a_new_crate_builds_on_its_vendored_sdk() {
    if skipped_in_nix_sandbox("a_new_crate_builds_on_its_vendored_sdk") {
        return;
    }
    let tmp = tempfile::TempDir::new().unwrap();
    let out = ok(tmp.path(), &["new", "solo"]);
    assert!(out.contains("created solo"), "{out}");
    let krate = tmp.path().join("solo");
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("rime-sdk = { path = \"vendor/rime-sdk\" }"),
        "{manifest}"
    );
    for f in [
        "vendor/rime-sdk/Cargo.toml",
        "vendor/rime-sdk/src/lib.rs",
        "vendor/rime-sdk/src/mock.rs",
        "vendor/rime-sdk-macros/Cargo.toml",
        "vendor/rime-sdk-macros/src/lib.rs",
        "vendor/rime-abi/Cargo.toml",
        "vendor/rime-abi/src/lib.rs",
    ] {
        assert!(krate.join(f).is_file(), "{f} missing");
    }
    // Nothing points back at this checkout.
    let checkout = checkout().canonicalize().unwrap();
    assert!(!manifest.contains(checkout.to_str().unwrap()), "{manifest}");
    std::fs::copy(checkout.join("guests/Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let wasm = build(&krate);
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    ok(
        tmp.path(),
        &["deploy", "--data", data, "solo", wasm.to_str().unwrap()],
    );
    let invoke = ["invoke", "--data", data, "solo", "--input", "ada"];
    assert_eq!(ok(tmp.path(), &invoke), "hello, ada (greeting number 1)\n");
}

#[test]
fn new_build_deploy_invoke() {
    if skipped_in_nix_sandbox("new_build_deploy_invoke") {
        return;
    }
    let tmp = tempfile::TempDir::new().unwrap();
    let krate = new_crate(tmp.path(), "hello");
    for f in [
        "Cargo.toml",
        "src/lib.rs",
        "README.md",
        ".cargo/config.toml",
        ".gitignore",
    ] {
        assert!(krate.join(f).is_file(), "{f} missing");
    }
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("crate-type = [\"cdylib\"]"), "{manifest}");
    assert!(manifest.contains("rime-sdk = { path = "), "{manifest}");

    let wasm = build(&krate);
    assert!(wasm.ends_with("wasm32-unknown-unknown/release/hello.wasm"));
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    let deployed = ok(
        tmp.path(),
        &["deploy", "--data", data, "hello", wasm.to_str().unwrap()],
    );
    assert!(deployed.contains("deployed hello"), "{deployed}");
    let invoke = ["invoke", "--data", data, "hello", "--input", "ada"];
    assert_eq!(ok(tmp.path(), &invoke), "hello, ada (greeting number 1)\n");
    assert_eq!(ok(tmp.path(), &invoke), "hello, ada (greeting number 2)\n");
    // The guest's `?` on a bad input is an error result, not a trap.
    let bad = tmp.path().join("bad-input");
    std::fs::write(&bad, [0xff, 0xfe]).unwrap();
    let bad = bad.to_str().unwrap();
    let err = fails(
        tmp.path(),
        &["invoke", "--data", data, "hello", "--input-file", bad],
    );
    assert!(err.contains("function error (1): invalid utf-8"), "{err}");

    // The same .wasm through a running server, in client mode.
    let served = tmp.path().join("served");
    let server = common::Server::start(&served, &["--token", common::TOKEN]);
    let url = server.base.clone();
    let client = |args: &[&str]| {
        let mut a = vec!["--server", url.as_str(), "--token", common::TOKEN];
        a.extend_from_slice(args);
        ok(tmp.path(), &a)
    };
    let deployed = client(&["deploy", "hello", wasm.to_str().unwrap()]);
    assert!(deployed.contains("deployed hello"), "{deployed}");
    let invoke = ["invoke", "hello", "--input", "bob"];
    assert_eq!(client(&invoke), "hello, bob (greeting number 1)\n");
    assert_eq!(client(&invoke), "hello, bob (greeting number 2)\n");
    server.terminate();

    // The template's own unit test, natively against the mock host.
    let test = offline_cargo(
        Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into())).current_dir(&krate),
    )
    .args(["test-host"])
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success() && text.contains("greets_and_counts_per_name ... ok"),
        "cargo test-host in the new crate:\n{text}\n{}",
        String::from_utf8_lossy(&test.stderr)
    );
}

/// A guest that links std: `?` into `Box<dyn Error>` on the SDK's errors,
/// and a panic whose message comes back in the caller's error.
const STD_GUEST: &str = r#"
use rime_sdk::{Namespace, faaslet};
use std::collections::HashMap;
use std::error::Error;

#[faaslet]
fn pick(input: &[u8]) -> Result<Vec<u8>, Box<dyn Error>> {
    let text = std::str::from_utf8(input)?;
    let items = vec!["a", "b", "c"];
    let index: usize = text.parse()?;
    let mut seen: HashMap<&str, i64> = HashMap::new();
    let item = items[index];
    let n = Namespace::OWN.add(item.as_bytes(), 1)?;
    seen.insert(item, n);
    Namespace::open("not-granted")?;
    Ok(format!("{seen:?}").into_bytes())
}
"#;

#[test]
fn std_guests_build_and_their_panics_reach_the_caller() {
    if skipped_in_nix_sandbox("std_guests_build_and_their_panics_reach_the_caller") {
        return;
    }
    let tmp = tempfile::TempDir::new().unwrap();
    let krate = new_crate(tmp.path(), "picker");
    std::fs::write(krate.join("src/lib.rs"), STD_GUEST).unwrap();
    let wasm = build(&krate);
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    ok(
        tmp.path(),
        &["deploy", "--data", data, "picker", wasm.to_str().unwrap()],
    );
    let call = |input: &str| {
        fails(
            tmp.path(),
            &["invoke", "--data", data, "picker", "--input", input],
        )
    };
    // An SDK error through `?` into Box<dyn Error>.
    let denied = call("1");
    assert!(denied.contains("namespace access denied"), "{denied}");
    // A panic: its message and place, not `unreachable`.
    let panic = call("10");
    assert!(
        panic.contains(
            "trap: panicked: index out of bounds: the len is 3 but the index is 10 (at src/lib.rs:"
        ),
        "{panic}"
    );
}

#[test]
fn build_says_what_to_fix() {
    let tmp = tempfile::TempDir::new().unwrap();
    let krate = new_crate(tmp.path(), "nolib");
    let manifest = krate.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("crate-type = [\"cdylib\"]\n", "")).unwrap();
    let err = fails(&krate, &["build"]);
    assert!(
        err.contains(
            "has no [lib] crate-type = [\"cdylib\"]: the build would make an .rlib, not a .wasm"
        ),
        "{err}"
    );
    let err = fails(tmp.path(), &["build", "nowhere"]);
    assert!(err.contains("no Cargo.toml in nowhere"), "{err}");
}

#[test]
fn new_refuses_bad_names_and_existing_directories() {
    let tmp = tempfile::TempDir::new().unwrap();
    let err = fails(tmp.path(), &["new", "Bad Name"]);
    assert!(err.contains("invalid name \"Bad Name\""), "{err}");
    std::fs::create_dir(tmp.path().join("taken")).unwrap();
    std::fs::write(tmp.path().join("taken/keep"), "mine").unwrap();
    let err = fails(tmp.path(), &["new", "taken"]);
    assert!(err.contains("taken already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("taken/keep")).unwrap(),
        "mine"
    );
    let err = fails(tmp.path(), &["new", "x", "--sdk", "/nonexistent"]);
    assert!(err.contains("no rime-sdk crate there"), "{err}");
    assert!(!tmp.path().join("x").exists());
}
