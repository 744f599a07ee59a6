//! CI's smoke run: the real CLI, Rime's engines only, tiny sizes; checks
//! that every workload ran without errors and the report was written.

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
