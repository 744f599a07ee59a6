//! Repetitions (`--repeat N`): the whole matrix runs N times over, each
//! round loading every engine afresh (so the rounds of a cell are apart in
//! time and in engine state, and every engine's rounds interleave with the
//! others'). Each cell's row is then its median round's row (by ops/s; the
//! lower of the two middle ones for an even count), with the lowest and
//! highest ops/s of all rounds beside it. Errors and not-found counts are
//! summed over the rounds, so none is hidden; peak memory is the highest.

use crate::report::Row;
use std::collections::HashMap;

/// What identifies a cell's row across rounds.
type CellKey = (String, String, String, String, String, usize, usize, u64);

fn key(r: &Row) -> CellKey {
    (
        r.engine.clone(),
        r.preset.clone(),
        r.workload.clone(),
        r.distribution.clone(),
        r.durability.clone(),
        r.threads,
        r.inflight,
        r.pool_bytes,
    )
}

/// One row per cell of `rounds`, in the order cells first appear.
pub fn median_of_rounds(rounds: Vec<Vec<Row>>) -> Vec<Row> {
    let mut cells: Vec<Vec<Row>> = Vec::new();
    let mut index: HashMap<CellKey, usize> = HashMap::new();
    for row in rounds.into_iter().flatten() {
        let i = *index.entry(key(&row)).or_insert_with(|| {
            cells.push(Vec::new());
            cells.len() - 1
        });
        cells[i].push(row);
    }
    cells.into_iter().map(median_row).collect()
}

/// The median of one cell's rounds (see the module's doc). Rounds without
/// numbers (a note says why) do not count; if none has numbers, the first
/// round's row stands, with `runs` 0.
fn median_row(rounds: Vec<Row>) -> Row {
    let all = rounds.len();
    let errors = rounds.iter().map(|r| r.errors).sum();
    let not_found = rounds.iter().map(|r| r.not_found).sum();
    let peak = rounds.iter().map(|r| r.mem_peak_bytes).max().unwrap_or(0);
    let (mut measured, failed): (Vec<Row>, Vec<Row>) =
        rounds.into_iter().partition(|r| r.note.is_none());
    let mut row = if measured.is_empty() {
        let mut r = failed[0].clone();
        r.runs = 0;
        r
    } else {
        measured.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
        let n = measured.len();
        let mut r = measured[(n - 1) / 2].clone();
        r.runs = n;
        r.ops_per_sec_min = measured[0].ops_per_sec;
        r.ops_per_sec_max = measured[n - 1].ops_per_sec;
        if let Some(f) = failed.first() {
            let why = f.note.as_deref().unwrap_or_default();
            let lost = format!("{} of {all} rounds had no numbers: {why}", failed.len());
            r.engine_note = Some(match r.engine_note.take() {
                Some(n) => format!("{n}; {lost}"),
                None => lost,
            });
        }
        r
    };
    row.errors = errors;
    row.not_found = not_found;
    row.mem_peak_bytes = peak;
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(engine: &str, threads: usize, ops_per_sec: f64) -> Row {
        Row {
            engine: engine.into(),
            workload: "A".into(),
            distribution: "zipfian".into(),
            preset: "commit".into(),
            durability: "sync".into(),
            threads,
            inflight: 1,
            records: 1000,
            data_bytes: 1 << 20,
            pool_bytes: 1 << 27,
            load_secs: 0.5,
            ops: ops_per_sec as u64,
            secs: 1.0,
            ops_per_sec,
            p50_us: ops_per_sec / 1000.0,
            p99_us: 0.0,
            p999_us: 0.0,
            not_found: 0,
            errors: 0,
            mem_limit_bytes: 0,
            mem_peak_bytes: 0,
            runs: 1,
            ops_per_sec_min: ops_per_sec,
            ops_per_sec_max: ops_per_sec,
            commit_p50_us: 0.0,
            commit_p99_us: 0.0,
            commits_per_sync: None,
            engine_note: None,
            note: None,
        }
    }

    #[test]
    fn each_cell_is_its_median_round_with_the_spread_beside_it() {
        let rounds = vec![
            vec![row("rime", 1, 300.0), row("rocksdb", 1, 50.0)],
            vec![row("rime", 1, 100.0), row("rocksdb", 1, 70.0)],
            vec![
                Row {
                    errors: 2,
                    ..row("rime", 1, 200.0)
                },
                row("rocksdb", 1, 60.0),
            ],
        ];
        let rows = median_of_rounds(rounds);
        assert_eq!(rows.len(), 2);
        let rime = &rows[0];
        assert_eq!(rime.engine, "rime");
        assert_eq!(rime.runs, 3);
        assert_eq!(rime.ops_per_sec, 200.0);
        // The whole row is the median round's: its latencies too.
        assert_eq!(rime.p50_us, 0.2);
        assert_eq!((rime.ops_per_sec_min, rime.ops_per_sec_max), (100.0, 300.0));
        assert_eq!(rime.errors, 2);
        assert_eq!(rows[1].ops_per_sec, 60.0);
    }

    #[test]
    fn an_even_count_takes_the_lower_middle_and_failed_rounds_are_named() {
        let failed = Row {
            note: Some("open failed: x".into()),
            ..row("rime", 2, 0.0)
        };
        let rounds = vec![
            vec![row("rime", 2, 40.0)],
            vec![failed.clone()],
            vec![row("rime", 2, 10.0)],
        ];
        let rows = median_of_rounds(rounds);
        assert_eq!((rows[0].ops_per_sec, rows[0].runs), (10.0, 2));
        let note = rows[0].engine_note.as_deref().unwrap();
        assert!(note.contains("1 of 3 rounds") && note.contains("open failed"));
        assert!(rows[0].note.is_none());
        let rows = median_of_rounds(vec![vec![failed.clone()], vec![failed]]);
        assert_eq!((rows[0].runs, rows[0].note.is_some()), (0, true));
    }
}
