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
    /// Why the engine has no numbers in this cell (it failed to open or load).
    pub note: Option<String>,
}

impl Row {
    pub fn data_over_pool(&self) -> f64 {
        self.data_bytes as f64 / self.pool_bytes.max(1) as f64
    }
    /// The cell this row is compared within (everything but the engine).
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

/// The Markdown table (one line per row, grouped as given).
pub fn markdown(rows: &[Row]) -> String {
    let base = baseline(rows).unwrap_or("-");
    let ratio = ratios(rows);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| preset | workload | dist | durability | threads | data/pool | engine | ops/s | p50 µs | p99 µs | p99.9 µs | ×{base} | notes |"
    );
    s.push_str("|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|\n");
    for (r, q) in rows.iter().zip(ratio) {
        let mut notes = Vec::new();
        if let Some(n) = &r.note {
            notes.push(n.replace('|', "/"));
        }
        if r.errors > 0 {
            notes.push(format!("{} errors", r.errors));
        }
        if r.not_found > 0 && r.workload != "E" {
            notes.push(format!("{} not found", r.not_found));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.2} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} |",
            r.preset,
            r.workload,
            r.distribution,
            r.durability,
            r.threads,
            r.data_over_pool(),
            r.engine,
            if r.note.is_some() {
                "—".to_string()
            } else {
                human(r.ops_per_sec)
            },
            r.p50_us,
            r.p99_us,
            r.p999_us,
            q.map(|q| format!("{q:.2}")).unwrap_or_else(|| "-".into()),
            notes.join(", ")
        );
    }
    s
}

pub fn csv(rows: &[Row]) -> String {
    let ratio = ratios(rows);
    let mut s = String::from(
        "preset,workload,distribution,durability,threads,records,data_mib,pool_mib,data_over_pool,engine,load_secs,ops,secs,ops_per_sec,p50_us,p99_us,p999_us,ratio_to_baseline,not_found,note,errors\n",
    );
    for (r, q) in rows.iter().zip(ratio) {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{:.3},{},{:.3},{},{:.3},{:.1},{:.2},{:.2},{:.2},{},{},\"{}\",{}",
            r.preset,
            r.workload,
            r.distribution,
            r.durability,
            r.threads,
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
            r.not_found,
            r.note.as_deref().unwrap_or("").replace('"', "'"),
            r.errors
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
    // durability, pool), a line per engine.
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
            .entry(r.engine.clone())
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
    // threads), a line per engine, over presets/pools that differ in ratio.
    let mut by_ratio: BTreeMap<(String, String, usize), Series> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.note.is_none()) {
        by_ratio
            .entry((r.workload.clone(), r.durability.clone(), r.threads))
            .or_default()
            .entry(r.engine.clone())
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
