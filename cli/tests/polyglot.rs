//! A Python component faaslet through the `rime` binary, as a user runs
//! it: `rime deploy` of guests/components/python-counter (componentize-py)
//! with a grant and a setting, then `rime invoke` in new processes, which
//! load its compiled code from the data directory's cache
//! (docs/components.md, "Python and JavaScript functions").

mod common;
use common::rime_output as rime;

#[test]
fn a_python_function_deploys_and_counts_through_the_binary() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_str().unwrap();
    let path = common::component_file("python_counter");
    let (ok, out, err) = rime(&[
        "deploy",
        "--data",
        data,
        "pycount",
        path.to_str().unwrap(),
        "--grant",
        "shared:rw",
        "--env",
        "GREETING=hi there",
    ]);
    assert!(ok, "{out}{err}");
    let invoke = |input: &str| {
        let (ok, out, err) = rime(&[
            "--log",
            "rime::faaslet=info",
            "invoke",
            "--data",
            data,
            "pycount",
            "--input",
            input,
        ]);
        assert!(ok, "{input}: {out}{err}");
        (out.trim().to_string(), err)
    };
    assert_eq!(invoke("incr shared hits").0, "1");
    assert_eq!(invoke("incr shared hits").0, "2");
    assert_eq!(invoke("env GREETING").0, "hi there");
    let (_, log) = invoke("now");
    assert!(log.contains("now called"), "{log}");
    let (ok, out, err) = rime(&[
        "invoke",
        "--data",
        data,
        "pycount",
        "--input",
        "fail shared hits",
    ]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("failed on purpose after incrementing to 3"),
        "{err}"
    );
    assert_eq!(
        invoke("incr shared hits").0,
        "3",
        "the failed increment left nothing"
    );
}
