//! WASI preview 1 faaslets through the `rime` binary, as a user runs
//! them: the Rust std guest and the C guest deploy, answer, keep their
//! state, and their stdout shows in the log; a module Rime cannot run is
//! refused with what it is. Needs the example guests (`scripts/build-guests`,
//! or `RIME_GUESTS_DIR`).

mod common;
use common::rime_output as rime;

#[test]
fn wasi_guests_deploy_invoke_and_log() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_str().unwrap();
    for name in ["words", "tally"] {
        let path = common::guest_file(name);
        let (ok, out, err) = rime(&["deploy", "--data", data, name, path.to_str().unwrap()]);
        assert!(ok, "{out}{err}");
    }
    let log = ["--log", "rime::faaslet=info"];
    let (ok, out, err) = rime(
        &[
            &log[..],
            &[
                "invoke",
                "--data",
                data,
                "words",
                "--input",
                "to be or not to be",
            ],
        ]
        .concat(),
    );
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "texts=1 be=2 to=2 not=1 or=1");
    assert!(
        err.contains("words: text 1 has 6 words, 4 distinct"),
        "{err}"
    );
    let (ok, out, err) = rime(&["invoke", "--data", data, "words", "--input", "be"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "texts=2 be=3");

    let (ok, out, err) = rime(
        &[
            &log[..],
            &["invoke", "--data", data, "tally", "--input", "x y"],
        ]
        .concat(),
    );
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "x=1 y=1 (previous: -)");
    assert!(err.contains("tally: y is now 1"), "{err}");
    let (ok, out, err) = rime(&["invoke", "--data", data, "tally", "--input", "x"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "x=2 (previous: x y)");
}

#[test]
fn a_module_with_sockets_is_refused_with_what_it_is() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    let module = dir.path().join("server.wat");
    std::fs::write(
        &module,
        r#"(module
          (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "rime_invoke") (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let (ok, out, err) = rime(&[
        "deploy",
        "--data",
        data.to_str().unwrap(),
        "server",
        module.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains(
            "this is a WASI preview 1 module importing `wasi_snapshot_preview1.sock_accept`, \
             which Rime does not grant"
        ),
        "{out}{err}"
    );
}
