//! CI's smoke run: the real CLI, Rime's engines only, tiny sizes; checks
//! that every workload ran without errors and the report was written.
#![forbid(unsafe_code)]

use std::process::Command;

#[test]
fn cli_runs_all_workloads_on_rime_and_writes_the_report() {
    let tmp = tempfile::Builder::new()
        .prefix("rime-bench-smoke")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let out = tmp.path().join("out");
    let data = tmp.path().join("data");
    let status = Command::new(env!("CARGO_BIN_EXE_rime-bench"))
        .args(["ycsb", "--workload", "all", "--engines", "rime,rime-btree"])
        .args(["--preset", "small", "--records", "2000", "--ops", "3000"])
        .args(["--warmup", "0", "--threads", "1,2", "--no-progress"])
        .arg("--out")
        .arg(&out)
        .arg("--data-dir")
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    // 2 engines × 6 workloads × 2 thread counts.
    assert_eq!(csv.lines().count(), 1 + 24, "{csv}");
    for wl in ["A", "B", "C", "D", "E", "F"] {
        assert!(
            md.contains(&format!("| small | {wl} |")),
            "{wl} missing:\n{md}"
        );
    }
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.last(), Some(&"0"), "errors in {line}");
        let ops: u64 = f[11].parse().unwrap();
        assert_eq!(ops, 3000, "{line}");
        let ops_s: f64 = f[13].parse().unwrap();
        assert!(ops_s > 0.0, "{line}");
    }
    let svgs = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "svg")
        })
        .count();
    assert_eq!(svgs, 6, "one throughput-vs-threads plot per workload");
}

/// `--isolate`: each engine in a child process (in a memory cgroup where
/// this machine lets us make one); the rows come back through the child's
/// rows file, with the cgroup's peak when there is one.
#[test]
fn isolated_engines_report_from_child_processes() {
    let cgroup = rime_bench::cgroup::probe().is_ok();
    let tmp = tempfile::Builder::new()
        .prefix("rime-bench-isolate")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let out = tmp.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_rime-bench"))
        .args(["ycsb", "--workload", "A,D", "--engines", "rime,rime-btree"])
        .args(["--preset", "ltm", "--records", "2000", "--ops", "2000"])
        .args(["--pool-mib", "200"])
        .args(["--warmup", "0", "--threads", "1,2", "--no-progress"])
        .args(["--isolate", if cgroup { "cgroup" } else { "process" }])
        .arg("--out")
        .arg(&out)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .status()
        .unwrap();
    assert!(status.success());
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 8, "{csv}");
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.last(), Some(&"0"), "errors in {line}");
        assert_eq!(f[11], "2000", "{line}");
        let (limit_mib, peak_mib): (u64, u64) = (f[18].parse().unwrap(), f[19].parse().unwrap());
        if cgroup {
            assert!(
                limit_mib == 200 && peak_mib > 0 && peak_mib <= limit_mib,
                "{line}"
            );
        } else {
            eprintln!("no memory cgroup here: ran with --isolate process");
            assert_eq!((limit_mib, peak_mib), (0, 0), "{line}");
        }
        if line.starts_with("ltm,D,") {
            assert_eq!(f[20], "0", "D read an insert still in flight: {line}");
        }
    }
}
