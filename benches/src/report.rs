//! Results: Markdown table, CSV, SVG plots (plotters, SVG backend only).

use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One measured cell of the matrix.
#[derive(Debug, Clone)]
pub struct Row {
    pub engine: String,
    pub workload: String,
    pub distribution: String,
    pub preset: String,
    pub durability: String,
    pub threads: usize,
    /// Lookups each thread had in flight: a batched engine's batch size,
    /// a device row's queue depth; 1 for one op per call. A batched row's
    /// latency columns are per batch.
    pub inflight: usize,
    pub records: u64,
    pub data_bytes: u64,
    pub pool_bytes: u64,
    pub load_secs: f64,
    pub ops: u64,
    pub secs: f64,
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub not_found: u64,
    pub errors: u64,
    /// The memory cgroup's limit the engine ran under (0: none).
    pub mem_limit_bytes: u64,
    /// The most memory (anonymous + page cache) the engine's process had
    /// charged at once, over load and every run (0: not measured).
    pub mem_peak_bytes: u64,
    /// Rounds of the matrix this row is the median of (`--repeat`): its
    /// numbers are the median round's ([`crate::repeat`]).
    pub runs: usize,
    /// The lowest and the highest ops/s of those rounds.
    pub ops_per_sec_min: f64,
    pub ops_per_sec_max: f64,
    /// Latency of the operations that commit a write (update, insert,
    /// read-modify-write); 0 where there were none.
    pub commit_p50_us: f64,
    pub commit_p99_us: f64,
    /// Commits per log sync over the measured part, where the engine counts
    /// both (Rime; RocksDB in durable modes).
    pub commits_per_sync: Option<f64>,
    /// The engine's remark on the build under test ([`crate::engine::Engine::note`]).
    pub engine_note: Option<String>,
    /// Why the engine has no numbers in this cell (it failed to open, load
    /// or reload).
    pub note: Option<String>,
}

/// Fields of [`Row::to_line`], in order.
const LINE_FIELDS: usize = 29;

/// A free-text field on one line: tabs and newlines as spaces, `-` for
/// none, else `+` and the text.
fn text_field(t: Option<&str>) -> String {
    t.map_or("-".into(), |n| {
        format!("+{}", n.replace(['\t', '\n', '\r'], " "))
    })
}

impl Row {
    /// One tab-separated line, floats exact (`{:?}`), the note last with
    /// tabs and newlines as spaces: how a child process hands rows back
    /// ([`crate::isolate`]).
    pub fn to_line(&self) -> String {
        [
            self.engine.clone(),
            self.workload.clone(),
            self.distribution.clone(),
            self.preset.clone(),
            self.durability.clone(),
            self.threads.to_string(),
            self.inflight.to_string(),
            self.records.to_string(),
            self.data_bytes.to_string(),
            self.pool_bytes.to_string(),
            format!("{:?}", self.load_secs),
            self.ops.to_string(),
            format!("{:?}", self.secs),
            format!("{:?}", self.ops_per_sec),
            format!("{:?}", self.p50_us),
            format!("{:?}", self.p99_us),
            format!("{:?}", self.p999_us),
            self.not_found.to_string(),
            self.errors.to_string(),
            self.mem_limit_bytes.to_string(),
            self.mem_peak_bytes.to_string(),
            self.runs.to_string(),
            format!("{:?}", self.ops_per_sec_min),
            format!("{:?}", self.ops_per_sec_max),
            format!("{:?}", self.commit_p50_us),
            format!("{:?}", self.commit_p99_us),
            self.commits_per_sync
                .map_or("-".into(), |c| format!("{c:?}")),
            text_field(self.engine_note.as_deref()),
            text_field(self.note.as_deref()),
        ]
        .join("\t")
    }

    /// The inverse of [`to_line`](Self::to_line).
    pub fn from_line(line: &str) -> Result<Row, String> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != LINE_FIELDS {
            return Err(format!(
                "row has {} fields, not {LINE_FIELDS}: {line:?}",
                f.len()
            ));
        }
        fn p<T: std::str::FromStr>(f: &[&str], i: usize) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            f[i].parse()
                .map_err(|e| format!("row field {i} {:?}: {e}", f[i]))
        }
        Ok(Row {
            engine: f[0].into(),
            workload: f[1].into(),
            distribution: f[2].into(),
            preset: f[3].into(),
            durability: f[4].into(),
            threads: p(&f, 5)?,
            inflight: p(&f, 6)?,
            records: p(&f, 7)?,
            data_bytes: p(&f, 8)?,
            pool_bytes: p(&f, 9)?,
            load_secs: p(&f, 10)?,
            ops: p(&f, 11)?,
            secs: p(&f, 12)?,
            ops_per_sec: p(&f, 13)?,
            p50_us: p(&f, 14)?,
            p99_us: p(&f, 15)?,
            p999_us: p(&f, 16)?,
            not_found: p(&f, 17)?,
            errors: p(&f, 18)?,
            mem_limit_bytes: p(&f, 19)?,
            mem_peak_bytes: p(&f, 20)?,
            runs: p(&f, 21)?,
            ops_per_sec_min: p(&f, 22)?,
            ops_per_sec_max: p(&f, 23)?,
            commit_p50_us: p(&f, 24)?,
            commit_p99_us: p(&f, 25)?,
            commits_per_sync: match f[26] {
                "-" => None,
                _ => Some(p(&f, 26)?),
            },
            engine_note: f[27].strip_prefix('+').map(str::to_string),
            note: f[28].strip_prefix('+').map(str::to_string),
        })
    }
}

impl Row {
    pub fn data_over_pool(&self) -> f64 {
        self.data_bytes as f64 / self.pool_bytes.max(1) as f64
    }
    /// The cell this row is compared within: everything but the engine and
    /// the in-flight count, so batched and device rows get a ratio to the
    /// baseline's one-op-per-call row.
    fn group(&self) -> (String, String, String, String, usize, u64) {
        (
            self.preset.clone(),
            self.workload.clone(),
            self.distribution.clone(),
            self.durability.clone(),
            self.threads,
            self.pool_bytes,
        )
    }
    /// The line this row belongs to in a plot: the engine, and its
    /// in-flight count where that is not 1 (a device row's name has it).
    pub fn series(&self) -> String {
        if self.inflight == 1 || self.engine.starts_with("device-") {
            self.engine.clone()
        } else {
            format!("{} ×{}", self.engine, self.inflight)
        }
    }
}

/// The baseline engine ratios are against: `rime` if it ran, else
/// `rime-btree`.
pub fn baseline(rows: &[Row]) -> Option<&'static str> {
    ["rime", "rime-btree"]
        .into_iter()
        .find(|b| rows.iter().any(|r| r.engine == *b))
}

/// ops/s of each row divided by the baseline's in the same cell.
pub fn ratios(rows: &[Row]) -> Vec<Option<f64>> {
    let Some(base) = baseline(rows) else {
        return vec![None; rows.len()];
    };
    let mut base_ops = BTreeMap::new();
    for r in rows.iter().filter(|r| r.engine == base) {
        base_ops.insert(r.group(), r.ops_per_sec);
    }
    rows.iter()
        .map(|r| {
            base_ops
                .get(&r.group())
                .filter(|b| **b > 0.0)
                .map(|b| r.ops_per_sec / b)
        })
        .collect()
}

fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn mib(b: u64) -> String {
    format!("{}", b >> 20)
}

/// Which optional columns a table has: the spread over rounds where rows
/// are medians of several, the commit columns where a row is durable.
struct Columns {
    range: bool,
    commits: bool,
}

impl Columns {
    fn of(rows: &[Row]) -> Columns {
        Columns {
            range: rows.iter().any(|r| r.runs > 1),
            commits: rows.iter().any(|r| r.durability != "nosync"),
        }
    }
    fn header(&self, base: &str) -> String {
        let mut head = vec![
            "preset",
            "workload",
            "dist",
            "durability",
            "threads",
            "in flight",
            "data/pool",
            "engine",
            "ops/s",
        ];
        let mut align = vec![
            "---", "---", "---", "---", "---:", "---:", "---:", "---", "---:",
        ];
        if self.range {
            head.push("ops/s range");
            align.push("---:");
        }
        head.extend(["p50 µs", "p99 µs", "p99.9 µs"]);
        align.extend(["---:"; 3]);
        if self.commits {
            head.extend(["commit p50 µs", "commit p99 µs", "commits/sync"]);
            align.extend(["---:"; 3]);
        }
        let ratio = format!("×{base}");
        head.extend([ratio.as_str(), "peak MiB", "notes"]);
        align.extend(["---:", "---:", "---"]);
        format!("| {} |\n|{}|\n", head.join(" | "), align.join("|"))
    }
}

fn notes(r: &Row) -> String {
    let mut notes = Vec::new();
    if let Some(n) = &r.note {
        notes.push(n.replace('|', "/"));
    }
    if let Some(n) = &r.engine_note {
        notes.push(n.replace('|', "/"));
    }
    if r.errors > 0 {
        notes.push(format!("{} errors", r.errors));
    }
    if r.not_found > 0 && r.workload != "E" {
        notes.push(format!("{} not found", r.not_found));
    }
    notes.join(", ")
}

fn markdown_line(r: &Row, ratio: Option<f64>, cols: &Columns) -> String {
    let measured = r.note.is_none();
    let mut cells = vec![
        r.preset.clone(),
        r.workload.clone(),
        r.distribution.clone(),
        r.durability.clone(),
        r.threads.to_string(),
        r.inflight.to_string(),
        format!("{:.2}", r.data_over_pool()),
        r.engine.clone(),
        if measured {
            human(r.ops_per_sec)
        } else {
            "—".to_string()
        },
    ];
    if cols.range {
        cells.push(if measured && r.runs > 1 {
            format!("{}–{}", human(r.ops_per_sec_min), human(r.ops_per_sec_max))
        } else {
            "-".to_string()
        });
    }
    cells.extend([r.p50_us, r.p99_us, r.p999_us].map(|v| format!("{v:.1}")));
    if cols.commits {
        cells.extend([r.commit_p50_us, r.commit_p99_us].map(|v| format!("{v:.1}")));
        cells.push(r.commits_per_sync.map_or("-".into(), |c| format!("{c:.1}")));
    }
    cells.push(ratio.map_or("-".into(), |q| format!("{q:.2}")));
    cells.push(match (r.mem_peak_bytes, r.mem_limit_bytes) {
        (0, _) => "-".to_string(),
        (p, 0) => mib(p),
        (p, l) => format!("{} / {}", mib(p), mib(l)),
    });
    cells.push(notes(r));
    format!("| {} |\n", cells.join(" | "))
}

/// The Markdown table (one line per row, grouped as given).
pub fn markdown(rows: &[Row]) -> String {
    let base = baseline(rows).unwrap_or("-");
    let cols = Columns::of(rows);
    let mut s = cols.header(base);
    for (r, q) in rows.iter().zip(ratios(rows)) {
        s.push_str(&markdown_line(r, q, &cols));
    }
    s
}

/// A free-text CSV field: quoted, its quotes as `'`.
fn csv_text(t: Option<&str>) -> String {
    format!("\"{}\"", t.unwrap_or("").replace('"', "'"))
}

pub fn csv(rows: &[Row]) -> String {
    let ratio = ratios(rows);
    let mut s = String::from(
        "preset,workload,distribution,durability,threads,inflight,records,data_mib,pool_mib,data_over_pool,engine,load_secs,ops,secs,ops_per_sec,p50_us,p99_us,p999_us,ratio_to_baseline,mem_limit_mib,mem_peak_mib,not_found,note,errors,runs,ops_per_sec_min,ops_per_sec_max,commit_p50_us,commit_p99_us,commits_per_sync,engine_note\n",
    );
    for (r, q) in rows.iter().zip(ratio) {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{:.3},{},{:.3},{},{:.3},{:.1},{:.2},{:.2},{:.2},{},{},{},{},{},{},{},{:.1},{:.1},{:.2},{:.2},{},{}",
            r.preset,
            r.workload,
            r.distribution,
            r.durability,
            r.threads,
            r.inflight,
            r.records,
            mib(r.data_bytes),
            mib(r.pool_bytes),
            r.data_over_pool(),
            r.engine,
            r.load_secs,
            r.ops,
            r.secs,
            r.ops_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            q.map(|q| format!("{q:.4}")).unwrap_or_default(),
            mib(r.mem_limit_bytes),
            mib(r.mem_peak_bytes),
            r.not_found,
            csv_text(r.note.as_deref()),
            r.errors,
            r.runs,
            r.ops_per_sec_min,
            r.ops_per_sec_max,
            r.commit_p50_us,
            r.commit_p99_us,
            r.commits_per_sync
                .map(|c| format!("{c:.2}"))
                .unwrap_or_default(),
            csv_text(r.engine_note.as_deref()),
        );
    }
    s
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

type Series = BTreeMap<String, Vec<(f64, f64)>>;

fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &Series,
) -> Result<(), Box<dyn std::error::Error>> {
    let xs: Vec<f64> = series.values().flatten().map(|p| p.0).collect();
    let ys: Vec<f64> = series.values().flatten().map(|p| p.1).collect();
    if xs.is_empty() {
        return Ok(());
    }
    let (x0, x1) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |a, &x| (a.0.min(x), a.1.max(x)));
    let (x0, x1) = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 0.5, x1 + 0.5)
    };
    let y1 = ys.iter().cloned().fold(0.0, f64::max) * 1.1 + 1.0;
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, 0.0..y1)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("ops/s")
        .y_label_formatter(&|y| human(*y))
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Writes `results.md`, `results.csv` and the SVG plots into `dir`;
/// returns the SVG file names.
pub fn write_all(dir: &Path, rows: &[Row]) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.md"), markdown(rows))?;
    std::fs::write(dir.join("results.csv"), csv(rows))?;
    let mut svgs = Vec::new();
    // Throughput against threads: one plot per (preset, workload,
    // durability, pool), a line per engine and in-flight count.
    let mut by_cell: BTreeMap<(String, String, String, u64), Series> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.note.is_none()) {
        by_cell
            .entry((
                r.preset.clone(),
                r.workload.clone(),
                r.durability.clone(),
                r.pool_bytes,
            ))
            .or_default()
            .entry(r.series())
            .or_default()
            .push((r.threads as f64, r.ops_per_sec));
    }
    for ((preset, wl, dur, pool), series) in &by_cell {
        if series.values().all(|p| p.len() < 2) {
            continue;
        }
        let name = format!("threads-{preset}-{wl}-{dur}-{}m.svg", pool >> 20);
        line_plot(
            &dir.join(&name),
            &format!("YCSB {wl}, {preset}, {dur}: throughput vs threads"),
            "threads",
            series,
        )?;
        svgs.push(name);
    }
    // Throughput against data/pool: one plot per (workload, durability,
    // threads), a line per engine and in-flight count, over presets/pools
    // that differ in ratio.
    let mut by_ratio: BTreeMap<(String, String, usize), Series> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.note.is_none()) {
        by_ratio
            .entry((r.workload.clone(), r.durability.clone(), r.threads))
            .or_default()
            .entry(r.series())
            .or_default()
            .push((r.data_over_pool(), r.ops_per_sec));
    }
    for ((wl, dur, threads), series) in &by_ratio {
        let distinct = |p: &Vec<(f64, f64)>| {
            let mut xs: Vec<u64> = p.iter().map(|x| (x.0 * 100.0) as u64).collect();
            xs.sort();
            xs.dedup();
            xs.len()
        };
        if series.values().all(|p| distinct(p) < 2) {
            continue;
        }
        let name = format!("pool-{wl}-{dur}-{threads}t.svg");
        line_plot(
            &dir.join(&name),
            &format!("YCSB {wl}, {dur}, {threads} threads: throughput vs data/pool"),
            "data / pool",
            series,
        )?;
        svgs.push(name);
    }
    Ok(svgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(note: Option<&str>) -> Row {
        Row {
            engine: "lmdb".into(),
            workload: "E".into(),
            distribution: "zipfian".into(),
            preset: "ltm".into(),
            durability: "nosync".into(),
            threads: 2,
            inflight: 64,
            records: 1_000_000,
            data_bytes: 1_047_000_000,
            pool_bytes: 349_000_000,
            load_secs: 12.345_678_9,
            ops: 98_765,
            secs: 1.000_000_1,
            ops_per_sec: 98_765.432_1,
            p50_us: 0.1 + 0.2,
            p99_us: 123.456,
            p999_us: 4_079.6,
            not_found: 3,
            errors: 1,
            mem_limit_bytes: 483 << 20,
            mem_peak_bytes: 480 << 20,
            runs: 3,
            ops_per_sec_min: 90_000.5,
            ops_per_sec_max: 99_000.25,
            commit_p50_us: 0.0,
            commit_p99_us: 0.0,
            commits_per_sync: None,
            engine_note: None,
            note: note.map(str::to_string),
        }
    }

    #[test]
    fn a_row_survives_the_trip_through_a_child_process_line() {
        for note in [None, Some(""), Some("killed:\tout of\nmemory")] {
            let r = Row {
                commits_per_sync: note.map(|_| 12.25),
                commit_p99_us: 1_234.5,
                engine_note: note.map(|n| format!("lib\t{n}")),
                ..row(note)
            };
            let back = Row::from_line(&r.to_line()).unwrap();
            assert_eq!(
                format!("{back:?}"),
                format!(
                    "{:?}",
                    Row {
                        note: note.map(|n| n.replace(['\t', '\n'], " ")),
                        engine_note: r.engine_note.as_ref().map(|n| n.replace(['\t', '\n'], " ")),
                        ..r.clone()
                    }
                )
            );
        }
    }

    #[test]
    fn a_truncated_row_line_is_an_error() {
        let line = row(None).to_line();
        let cut = &line[..line.rfind('\t').unwrap()];
        assert!(Row::from_line(cut).unwrap_err().contains("fields"));
        assert!(Row::from_line(&line.replace("98765\t", "x\t")).is_err());
    }

    #[test]
    fn markdown_shows_peak_and_limit_of_a_capped_engine() {
        let md = markdown(&[row(None)]);
        assert!(md.contains("| 480 / 483 |"), "{md}");
    }

    #[test]
    fn batched_and_device_rows_are_compared_with_the_blocking_baseline() {
        let base = Row {
            engine: "rime".into(),
            inflight: 1,
            ops_per_sec: 1000.0,
            ..row(None)
        };
        let batched = Row {
            engine: "rime-batched".into(),
            inflight: 256,
            ops_per_sec: 3000.0,
            ..row(None)
        };
        let device = Row {
            engine: "device-qd32".into(),
            inflight: 32,
            ops_per_sec: 5000.0,
            ..row(None)
        };
        assert_eq!(base.group(), batched.group());
        assert_eq!(base.group(), device.group());
        let q = ratios(&[base.clone(), batched.clone(), device.clone()]);
        assert_eq!(q, vec![Some(1.0), Some(3.0), Some(5.0)]);
        assert_eq!(base.series(), "rime");
        assert_eq!(batched.series(), "rime-batched ×256");
        assert_eq!(device.series(), "device-qd32");
        let csv = csv(&[base, batched]);
        let mut lines = csv.lines();
        let head: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(head[4..6], ["threads", "inflight"]);
        let f: Vec<&str> = lines.nth(1).unwrap().split(',').collect();
        assert_eq!(f.len(), head.len());
        assert_eq!((f[5], f[10]), ("256", "rime-batched"));
    }
}
