//! Client mode (`rime --server URL`) through the real binary against a
//! real `rime serve`: the same commands print the same thing as on a data
//! directory; token and reachability errors. Needs the example guests
//! (`scripts/build-guests`).

mod common;

use common::client::*;
use common::{Server, TOKEN};

#[test]
fn server_mode_prints_what_directory_mode_prints() {
    let (local, remote) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = Server::start(remote.path(), &["--token", TOKEN]);
    let url = server.base.clone();
    let (dir, srv) = (Target::Dir(local.path()), Target::Server(&url));
    let (counter, probe) = (guest_path("counter"), guest_path("probe"));
    let secrets = tempfile::TempDir::new().unwrap();
    let secret = secrets.path().join("token");
    std::fs::write(&secret, "hunter2\n").unwrap();

    let out = same(
        &dir,
        &srv,
        &["deploy", "counter", &counter, "--deadline", "2s"],
    );
    assert!(
        out.stdout.starts_with("deployed counter (generation 1, "),
        "{}",
        out.stdout
    );
    same(
        &dir,
        &srv,
        &[
            "deploy",
            "probe",
            &probe,
            "--grant",
            "counter:rw",
            "--memory",
            "32MiB",
            "--env",
            "MODE=a b&c=d",
            "--secret",
            &format!("TOKEN=@{}", secret.display()),
        ],
    );
    let out = same(&dir, &srv, &["functions"]);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(out.stdout.contains("grants [counter:rw]"), "{}", out.stdout);
    // Configuration crosses the HTTP API intact; the secret is never shown.
    assert!(
        out.stdout.contains("config [MODE=a b&c=d TOKEN=<secret>]"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("hunter2"), "{}", out.stdout);
    for expect in ["1", "2"] {
        let out = same(&dir, &srv, &["invoke", "counter", "--input", "hits"]);
        assert_eq!(out.stdout, format!("{expect}\n"));
    }
    same(&dir, &srv, &["state", "put", "counter", "a/b c", "hello"]);
    let out = same(&dir, &srv, &["state", "get", "counter", "hits"]);
    assert_eq!(out.stdout, "0x0200000000000000 (i64 2)\n");
    let out = same(&dir, &srv, &["state", "scan", "counter"]);
    assert_eq!(
        out.stdout,
        "a/b c\thello\nhits\t0x0200000000000000 (i64 2)\n"
    );
    let out = same(
        &dir,
        &srv,
        &["state", "scan", "counter", "--start", "b", "--limit", "1"],
    );
    assert_eq!(out.stdout, "hits\t0x0200000000000000 (i64 2)\n");
    same(&dir, &srv, &["state", "del", "counter", "a/b c"]);

    // Failures: the same message, the same exit status.
    let out = same(&dir, &srv, &["state", "get", "counter", "a/b c"]);
    assert_eq!(out.stderr, "rime: counter/a/b c: not found\n");
    let out = same(&dir, &srv, &["invoke", "nope"]);
    assert_eq!(
        out.stderr,
        "rime: invoking nope: no function named \"nope\"\n"
    );
    let out = same(&dir, &srv, &["state", "get", "Bad", "k"]);
    assert!(
        out.stderr.contains("invalid namespace \"Bad\""),
        "{}",
        out.stderr
    );
    let out = same(
        &dir,
        &srv,
        &["deploy", "x", &guest_path("counter"), "--memory", "8GiB"],
    );
    assert!(
        out.stderr.starts_with("rime: deploying x: memory limit"),
        "{}",
        out.stderr
    );

    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(big.path(), vec![b'x'; (1 << 20) + 1]).unwrap();
    let out = same(
        &dir,
        &srv,
        &[
            "invoke",
            "counter",
            "--input-file",
            big.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.stderr.contains("input of 1048577 bytes exceeds"),
        "{}",
        out.stderr
    );

    // The guest's log lines go to stderr, the output to stdout, both ways.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), log_script("hello from probe")).unwrap();
    let input = script.path().to_str().unwrap();
    let out = same(&dir, &srv, &["invoke", "probe", "--input-file", input]);
    assert_eq!(out.stdout, "log\n");
    assert_eq!(out.stderr, "log info: hello from probe\n");

    // A failed invocation's lines too, before its error.
    let mut failing = log_script("about to fail");
    failing.extend_from_slice(&[RETURN, 1, 0, 0, 0]);
    std::fs::write(script.path(), failing).unwrap();
    let out = same(&dir, &srv, &["invoke", "probe", "--input-file", input]);
    assert_eq!(
        out.stderr,
        "log info: about to fail\nrime: invoking probe: function error (1): log\n\n"
    );

    // Stats: the same lines, their values each process's own.
    let (d, s) = (dir.run(&["stats"]), srv.run(&["stats"]));
    assert!(d.ok && s.ok, "{} / {}", d.stderr, s.stderr);
    let heads = |t: &str| t.lines().map(|l| l[..17].to_string()).collect::<Vec<_>>();
    assert_eq!(heads(&d.stdout), heads(&s.stdout));
    assert!(
        s.stdout.contains("functions        2 deployed"),
        "{}",
        s.stdout
    );
    assert!(
        s.stdout.contains("invocations      3 committed, 1 failed"),
        "{}",
        s.stdout
    );

    // Per-function labels on the invocation metrics: deployed ones only.
    let page = ureq::get(&server.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for line in [
        "rime_function_invocations_total{function=\"counter\"} 2",
        "rime_function_invocations_total{function=\"probe\"} 2",
    ] {
        assert!(page.contains(line), "{line} not in\n{page}");
    }
    assert!(!page.contains("function=\"nope\""), "{page}");
    let errors = "rime_function_invocation_errors_total{function=\"probe\"} 1";
    assert!(page.contains(errors), "{errors} not in\n{page}");

    let out = same(&dir, &srv, &["undeploy", "counter"]);
    assert_eq!(
        out.stdout,
        "undeployed counter (its namespace's data stays)\n"
    );
    same(&dir, &srv, &["functions"]);
    let page = ureq::get(&server.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(!page.contains("function=\"counter\""), "{page}");
}

#[test]
fn token_and_reachability_errors() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &["--token", TOKEN]);
    let url = server.base.as_str();

    let out = run(&["--server", url, "functions"]);
    assert!(!out.ok);
    assert_eq!(
        out.stderr,
        format!(
            "rime: the server at {url} refused the request: missing Authorization: Bearer \
             <token> header (pass --token T or set RIME_TOKEN; a server keeps its token in \
             DATA/token)\n"
        )
    );
    let out = run(&["--server", url, "--token", "wrong", "functions"]);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("refused the request: wrong token"),
        "{}",
        out.stderr
    );
    // The environment works as the flags do.
    let o = rime_cmd()
        .args(["functions"])
        .env("RIME_SERVER", url)
        .env("RIME_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // RIME_TOKEN alone (for `rime serve`) leaves the commands on a directory.
    let o = rime_cmd()
        .args(["functions", "--data", data.path().to_str().unwrap()])
        .env("RIME_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("is in use"), "{stderr}");
    assert!(
        stderr.contains("use --server URL (or RIME_SERVER)"),
        "{stderr}"
    );

    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = format!("http://127.0.0.1:{port}");
    let out = run(&["--server", &dead, "--token", TOKEN, "stats"]);
    assert!(!out.ok);
    assert!(
        out.stderr
            .starts_with(&format!("rime: cannot reach the server at {dead}: ")),
        "{}",
        out.stderr
    );
    let out = run(&["--server", "https://example.com", "functions"]);
    assert!(out.stderr.contains("plain HTTP"), "{}", out.stderr);
}
