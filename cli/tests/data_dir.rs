//! Choosing the data directory, through the real binary: `--data` (before
//! or after the subcommand), `RIME_DATA`, `rime.toml`, in that order; a
//! directory that does not exist is refused by every command but `serve`,
//! `demo` and `deploy`, and nothing is created; a new directory is lean.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The binary run in `cwd`, with no `RIME_DATA`/`RIME_TOKEN` inherited and
/// the default log segments (this file checks what a user gets).
fn rime_in(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rime"));
    c.current_dir(cwd)
        .env_remove("RIME_DATA")
        .env_remove("RIME_TOKEN")
        .env_remove("RIME_WAL_SEGMENT_MIB");
    c
}

fn run(mut c: Command) -> (bool, String) {
    let out = c.output().expect("run rime");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn rime(cwd: &Path, args: &[&str]) -> (bool, String) {
    let mut c = rime_in(cwd);
    c.args(args);
    run(c)
}

fn counter() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-unknown-unknown/release/counter.wasm");
    assert!(
        p.is_file(),
        "{} missing: run scripts/build-guests",
        p.display()
    );
    p.to_str().unwrap().to_string()
}

/// Bytes allocated on disk under `dir` (`du`, not apparent sizes).
fn allocated_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += m.blocks() * 512;
        if m.is_dir() {
            total += allocated_bytes(&e.path());
        }
    }
    total
}

#[test]
fn a_typo_in_data_creates_nothing_and_names_the_path() {
    let tmp = tempfile::TempDir::new().unwrap();
    let typo = tmp.path().join("rime-dta");
    let t = typo.to_str().unwrap();
    for args in [
        &["invoke", "counter", "--input", "x", "--data", t][..],
        &["functions", "--data", t],
        &["state", "get", "counter", "hits", "--data", t],
        &["state", "--data", t, "put", "counter", "k", "v"],
        &["stats", "--data", t],
        &["undeploy", "counter", "--data", t],
        &["check", "--data", t],
    ] {
        let (ok, out) = rime(tmp.path(), args);
        assert!(!ok, "{args:?}: {out}");
        assert!(
            out.contains(&format!("data directory {t} does not exist")),
            "{args:?}: {out}"
        );
        assert!(!typo.exists(), "{args:?} created {t}");
    }
    // Without --data, the default ./rime-data is not created either.
    let (ok, out) = rime(tmp.path(), &["functions"]);
    assert!(
        !ok && out.contains("data directory rime-data does not exist"),
        "{out}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn global_options_work_before_and_after_the_subcommand() {
    let tmp = tempfile::TempDir::new().unwrap();
    let d = tmp.path().join("d");
    let d = d.to_str().unwrap();
    let (ok, out) = rime(tmp.path(), &["deploy", "counter", &counter(), "--data", d]);
    assert!(ok, "{out}");
    let (ok, out) = rime(
        tmp.path(),
        &["--data", d, "invoke", "counter", "--input", "hits"],
    );
    assert!(ok && out.trim() == "1", "{out}");
    // After a nested subcommand: clap once answered "use -- --data".
    let (ok, out) = rime(
        tmp.path(),
        &["state", "get", "counter", "hits", "--data", d],
    );
    assert!(ok, "{out}");
    assert!(!out.contains("-- --data"), "{out}");
    let (ok, out) = rime(
        tmp.path(),
        &["state", "--data", d, "get", "counter", "hits"],
    );
    assert!(ok, "{out}");
}

#[test]
fn flags_override_rime_data_which_overrides_rime_toml() {
    let tmp = tempfile::TempDir::new().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("rime.toml"), "data = \"from-file\"\n").unwrap();
    // The config file's directory: deploy creates it, others find it.
    let (ok, out) = rime(cwd, &["deploy", "counter", &counter()]);
    assert!(ok, "{out}");
    assert!(cwd.join("from-file").join("superblock").is_file());
    let (ok, out) = rime(cwd, &["functions"]);
    assert!(ok && out.starts_with("counter\t"), "{out}");
    // RIME_DATA beats the file: it does not exist, so it is refused by name.
    let mut c = rime_in(cwd);
    c.env("RIME_DATA", "from-env").arg("functions");
    let (ok, out) = run(c);
    assert!(
        !ok && out.contains("data directory from-env does not exist"),
        "{out}"
    );
    // The flag beats both.
    let mut c = rime_in(cwd);
    c.env("RIME_DATA", "from-env")
        .args(["functions", "--data", "from-file"]);
    let (ok, out) = run(c);
    assert!(ok && out.starts_with("counter\t"), "{out}");
    // --config names another file; paths in it are relative to it.
    let sub = cwd.join("conf");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("other.toml"), "data = \"../from-file\"\n").unwrap();
    let (ok, out) = rime(cwd, &["stats", "--config", "conf/other.toml"]);
    assert!(ok && out.contains("1 deployed"), "{out}");
    assert!(!cwd.join("from-env").exists());
}

#[test]
fn a_bad_config_file_is_an_error_naming_the_key_or_the_file() {
    let tmp = tempfile::TempDir::new().unwrap();
    let cwd = tmp.path();
    std::fs::write(
        cwd.join("rime.toml"),
        "data = \"d\"\npool_size = \"1GiB\"\n",
    )
    .unwrap();
    let (ok, out) = rime(cwd, &["functions"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("config file rime.toml: unknown field `pool_size`, expected one of"),
        "{out}"
    );
    std::fs::write(cwd.join("rime.toml"), "pool = \"64\"\n").unwrap();
    let (ok, out) = rime(cwd, &["functions"]);
    assert!(
        !ok && out.contains("pool: size \"64\" needs a unit"),
        "{out}"
    );
    let (ok, out) = rime(cwd, &["functions", "--config", "missing.toml"]);
    assert!(
        !ok && out.contains("reading the config file missing.toml"),
        "{out}"
    );
}

#[test]
fn a_new_data_directory_takes_at_most_2_mb() {
    let tmp = tempfile::TempDir::new().unwrap();
    let d = tmp.path().join("d");
    let (ok, out) = rime(
        tmp.path(),
        &[
            "deploy",
            "counter",
            &counter(),
            "--data",
            d.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = rime(
        tmp.path(),
        &["invoke", "counter", "--data", d.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let bytes = allocated_bytes(&d);
    assert!(bytes <= 2_000_000, "{bytes} bytes on disk");
}

/// `rime serve` takes its address, data directory and token file from
/// `rime.toml`.
#[test]
fn serve_reads_listen_data_and_token_file_from_the_config_file() {
    let tmp = tempfile::TempDir::new().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("token.txt"), "file-token-5678\n").unwrap();
    std::fs::write(
        cwd.join("rime.toml"),
        "data = \"served\"\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token.txt\"\n\
         durability = \"group:1ms\"\npool = \"32MiB\"\n",
    )
    .unwrap();
    let mut child = rime_in(cwd)
        .args(["--log", "warn", "serve"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .map(str::to_string);
    let status = |token: &str| {
        let url = format!("{}/functions", base.as_deref().unwrap());
        match ureq::get(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .call()
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("{e}"),
        }
    };
    let (good, bad) = (status("file-token-5678"), status("wrong"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(base.is_some(), "first line {line:?}");
    assert_eq!((good, bad), (200, 401));
    assert!(PathBuf::from(cwd).join("served/superblock").is_file());
    assert!(
        !cwd.join("served/token").exists(),
        "the token file was used"
    );
}
