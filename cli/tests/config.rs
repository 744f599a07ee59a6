//! Per-function configuration and secrets (`--env`, `--secret`, and
//! `env=`/`secret=` of `POST /functions`) through the real binary and a
//! real server: the guest reads them, and no listing, answer, error or
//! metric shows a secret's value. Needs the example guests
//! (`scripts/build-guests`, or `RIME_GUESTS_DIR`).

mod common;

use common::{Server, TOKEN, auth, guest, send, text};
use std::process::Command;

const SECRET: &str = "hunter2-do-not-print";

fn rime(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rime"))
        .args(args)
        .env("RIME_WAL_SEGMENT_MIB", "1")
        .output()
        .expect("run rime");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn counter_wasm(dir: &std::path::Path) -> String {
    let p = dir.join("counter.wasm");
    std::fs::write(&p, guest("counter")).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn cli_deploy_with_env_and_secret_files() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let wasm = counter_wasm(dir.path());
    let secret_file = dir.path().join("token");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let secret_arg = format!("TOKEN=@{}", secret_file.display());

    let deploy = [
        "deploy",
        "--data",
        data,
        "counter",
        &wasm,
        "--env",
        "STEP=5",
        "--secret",
        &secret_arg,
    ];
    let (ok, out) = rime(&deploy);
    assert!(ok, "{out}");
    assert!(!out.contains(SECRET), "{out}");
    let (ok, out) = rime(&["functions", "--data", data]);
    assert!(ok, "{out}");
    assert!(out.contains("config [STEP=5 TOKEN=<secret>]"), "{out}");
    assert!(!out.contains(SECRET), "{out}");
    // The guest reads its entry: STEP=5 makes the counter count by 5.
    let (ok, out) = rime(&["invoke", "--data", data, "counter"]);
    assert_eq!((ok, out.as_str()), (true, "5\n"));

    // A secret given inline is refused, without echoing it.
    let inline = format!("TOKEN={SECRET}");
    let (ok, out) = rime(&[
        "deploy", "--data", data, "counter", &wasm, "--secret", &inline,
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("--secret TOKEN: give the value as KEY=@FILE"),
        "{out}"
    );
    assert!(!out.contains(SECRET), "{out}");
    // A bad key is named; nothing changes.
    let (ok, out) = rime(&["deploy", "--data", data, "counter", &wasm, "--env", "2FA=x"]);
    assert!(!ok, "{out}");
    assert!(out.contains("invalid configuration: key \"2FA\""), "{out}");
    let (_, out) = rime(&["functions", "--data", data]);
    assert!(out.contains("generation 1"), "{out}");
}

#[test]
fn http_deploy_with_env_and_secret_fields() {
    let dir = tempfile::TempDir::new().unwrap();
    let s = Server::start(dir.path(), &["--token", TOKEN]);
    let url = s.url(&format!(
        "/functions/counter?env=STEP%3D3&secret=TOKEN%3D{SECRET}"
    ));
    let (st, body) = send(auth(ureq::post(&url)), Some(&guest("counter")));
    assert_eq!(st, 201, "{}", text(&body));
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        info["config"],
        serde_json::json!(["STEP=3", "TOKEN=<secret>"])
    );
    assert!(!text(&body).contains(SECRET));

    let (st, body) = send(auth(ureq::post(&s.url("/invoke/counter"))), Some(b""));
    assert_eq!((st, text(&body)), (200, "3".to_string()));
    let (st, body) = send(auth(ureq::get(&s.url("/functions"))), None);
    assert_eq!(st, 200);
    assert!(text(&body).contains("TOKEN=<secret>"), "{}", text(&body));
    assert!(!text(&body).contains(SECRET));
    let metrics = ureq::get(&s.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(!metrics.contains(SECRET));

    // A malformed secret field is refused without echoing its bytes.
    let url = s.url("/functions/counter?secret=TOKEN%3Dab%zzcd");
    let (st, body) = send(auth(ureq::post(&url)), Some(&guest("counter")));
    assert_eq!(st, 400, "{}", text(&body));
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("parameter \"secret\": malformed percent-escape"),
        "{message}"
    );
    assert!(!message.contains("zz"), "{message}");
    s.terminate();
}
