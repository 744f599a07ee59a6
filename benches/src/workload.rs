//! YCSB core workloads A–F (`workloads/workload[a-f]` in YCSB), key and
//! value formats, and the presets.

use crate::engine::Durability;
use crate::generator::fnvhash64;
use std::fmt;
use std::str::FromStr;

/// One operation of the transaction phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
}

impl Op {
    pub const ALL: [Op; 5] = [
        Op::Read,
        Op::Update,
        Op::Insert,
        Op::Scan,
        Op::ReadModifyWrite,
    ];
    /// Whether the operation writes, i.e. commits a write transaction
    /// (or batch) in every engine.
    pub fn writes(self) -> bool {
        matches!(self, Op::Update | Op::Insert | Op::ReadModifyWrite)
    }
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::Scan => "scan",
            Op::ReadModifyWrite => "rmw",
        }
    }
}

/// YCSB's `requestdistribution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Scrambled zipfian, θ = 0.99 (YCSB's `zipfian`).
    Zipfian,
    Uniform,
    Latest,
}

impl FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "zipfian" => Ok(Distribution::Zipfian),
            "uniform" => Ok(Distribution::Uniform),
            "latest" => Ok(Distribution::Latest),
            _ => Err(format!(
                "unknown distribution {s:?} (zipfian|uniform|latest)"
            )),
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Zipfian => "zipfian",
            Distribution::Uniform => "uniform",
            Distribution::Latest => "latest",
        })
    }
}

/// A workload: the operation mix and the request distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub name: String,
    /// (op, proportion); proportions sum to 1.
    pub mix: Vec<(Op, f64)>,
    pub distribution: Distribution,
    /// YCSB `maxscanlength` (scan length uniform in 1..=max).
    pub max_scan_len: usize,
}

impl Workload {
    /// YCSB's core workload `letter` (A–F).
    pub fn ycsb(letter: char) -> Option<Workload> {
        use Op::*;
        let (mix, distribution) = match letter.to_ascii_uppercase() {
            // Update heavy: session store recording recent actions.
            'A' => (vec![(Read, 0.5), (Update, 0.5)], Distribution::Zipfian),
            // Read mostly: photo tagging.
            'B' => (vec![(Read, 0.95), (Update, 0.05)], Distribution::Zipfian),
            // Read only: user profile cache.
            'C' => (vec![(Read, 1.0)], Distribution::Zipfian),
            // Read latest: user status updates.
            'D' => (vec![(Read, 0.95), (Insert, 0.05)], Distribution::Latest),
            // Short ranges: threaded conversations.
            'E' => (vec![(Scan, 0.95), (Insert, 0.05)], Distribution::Zipfian),
            // Read-modify-write: user database.
            'F' => (
                vec![(Read, 0.5), (ReadModifyWrite, 0.5)],
                Distribution::Zipfian,
            ),
            _ => return None,
        };
        Some(Workload {
            name: letter.to_ascii_uppercase().to_string(),
            mix,
            distribution,
            max_scan_len: 100,
        })
    }

    /// Whether the workload inserts records (YCSB D and E): a run of it
    /// leaves more records than were loaded.
    pub fn inserts(&self) -> bool {
        self.insert_share() > 0.0
    }

    /// The share of operations that insert a record.
    pub fn insert_share(&self) -> f64 {
        self.mix
            .iter()
            .filter(|&&(op, _)| op == Op::Insert)
            .map(|&(_, share)| share)
            .sum()
    }

    /// vmcache's "rndread": uniform point lookups only.
    pub fn rndread() -> Workload {
        Workload {
            name: "rndread".into(),
            mix: vec![(Op::Read, 1.0)],
            distribution: Distribution::Uniform,
            max_scan_len: 100,
        }
    }

    pub fn parse(s: &str) -> Result<Workload, String> {
        if s.eq_ignore_ascii_case("rndread") {
            return Ok(Workload::rndread());
        }
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Workload::ycsb(c).ok_or(()),
            _ => Err(()),
        }
        .map_err(|()| format!("unknown workload {s:?} (A-F or rndread)"))
    }

    pub fn has(&self, op: Op) -> bool {
        self.mix.iter().any(|&(o, p)| o == op && p > 0.0)
    }

    /// Cumulative thresholds for choosing an op from a uniform [0,1) draw.
    pub fn chooser(&self) -> OpChooser {
        let mut acc = 0.0;
        let cum = self
            .mix
            .iter()
            .map(|&(op, p)| {
                acc += p;
                (acc, op)
            })
            .collect();
        OpChooser { cum }
    }
}

/// YCSB's `DiscreteGenerator` over the op mix.
#[derive(Debug, Clone)]
pub struct OpChooser {
    cum: Vec<(f64, Op)>,
}

impl OpChooser {
    #[inline]
    pub fn pick(&self, u: f64) -> Op {
        for &(c, op) in &self.cum {
            if u < c {
                return op;
            }
        }
        self.cum.last().map(|&(_, op)| op).unwrap_or(Op::Read)
    }
}

/// How a record number becomes a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// YCSB's `"user" + fnvhash64(n)` (insertorder=hashed, no zero
    /// padding): 5–23 bytes, ~23 on average.
    YcsbString,
    /// 8 bytes, big-endian `fnvhash64(n)`: hashed order like YCSB.
    HashedU64,
    /// 8 bytes, big-endian `n`: key order = insert order (vmcache).
    OrderedU64,
}

impl KeyFormat {
    pub fn key_into(self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        match self {
            KeyFormat::YcsbString => {
                use std::io::Write;
                out.extend_from_slice(b"user");
                write!(out, "{}", fnvhash64(n)).expect("write to Vec");
            }
            KeyFormat::HashedU64 => out.extend_from_slice(&fnvhash64(n).to_be_bytes()),
            KeyFormat::OrderedU64 => out.extend_from_slice(&n.to_be_bytes()),
        }
    }
    pub fn avg_len(self) -> usize {
        match self {
            KeyFormat::YcsbString => 23,
            _ => 8,
        }
    }
}

impl FromStr for KeyFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ycsb-string" => Ok(KeyFormat::YcsbString),
            "hashed-u64" => Ok(KeyFormat::HashedU64),
            "ordered-u64" => Ok(KeyFormat::OrderedU64),
            _ => Err(format!(
                "unknown key format {s:?} (ycsb-string|hashed-u64|ordered-u64)"
            )),
        }
    }
}

impl fmt::Display for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyFormat::YcsbString => "ycsb-string",
            KeyFormat::HashedU64 => "hashed-u64",
            KeyFormat::OrderedU64 => "ordered-u64",
        })
    }
}

/// Fills `out` with `len` bytes derived from `seed` (cheap, not constant,
/// so compressing engines cannot shrink values to nothing).
pub fn value_into(seed: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&x.to_le_bytes()[..take]);
    }
}

/// Named sizes (`--preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// YCSB: ~23-byte keys, 1 KiB values (10 fields × 100 B ≈ 1000 B; one
    /// blob here), 1e5 records unless told.
    Ycsb,
    /// vmcache-sized: 8-byte keys, 120-byte values.
    Small,
    /// vmcache "rndread": 1e7 × (8 B, 120 B), ordered keys, uniform reads.
    Rndread,
    /// Larger than memory: `ycsb` sizes, pool = data / 3, 1e6 records
    /// unless told.
    Ltm,
    /// vmcache's rndread larger than memory: `rndread` sizes, 2e7 records,
    /// pool = data / 3; batched engines at 16, 64 and 256 lookups in flight
    /// per thread, and the device probe beside them.
    RndreadLtm,
    /// Durable commits at scale (issue 15): `ycsb` sizes, 2e5 records,
    /// `sync` at 1, 2, 8, 32, 128, 256 and 1024 threads, the
    /// `device-fsync` row beside them, 3 rounds of 5 s.
    Commit,
}

/// The thread counts of [`Preset::Commit`]: committers from one to a
/// thousand.
pub const COMMIT_THREADS: [usize; 7] = [1, 2, 8, 32, 128, 256, 1024];

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ycsb" => Ok(Preset::Ycsb),
            "small" => Ok(Preset::Small),
            "rndread" => Ok(Preset::Rndread),
            "ltm" => Ok(Preset::Ltm),
            "rndread-ltm" => Ok(Preset::RndreadLtm),
            "commit" => Ok(Preset::Commit),
            _ => Err(format!(
                "unknown preset {s:?} (ycsb|small|rndread|ltm|rndread-ltm|commit)"
            )),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preset::Ycsb => "ycsb",
            Preset::Small => "small",
            Preset::Rndread => "rndread",
            Preset::Ltm => "ltm",
            Preset::RndreadLtm => "rndread-ltm",
            Preset::Commit => "commit",
        })
    }
}

impl Preset {
    pub fn key_format(self) -> KeyFormat {
        match self {
            Preset::Ycsb | Preset::Ltm | Preset::Commit => KeyFormat::YcsbString,
            Preset::Small => KeyFormat::HashedU64,
            Preset::Rndread | Preset::RndreadLtm => KeyFormat::OrderedU64,
        }
    }
    pub fn value_len(self) -> usize {
        match self {
            Preset::Ycsb | Preset::Ltm | Preset::Commit => 1024,
            Preset::Small | Preset::Rndread | Preset::RndreadLtm => 120,
        }
    }
    pub fn default_records(self) -> u64 {
        match self {
            Preset::Ycsb => 100_000,
            Preset::Small => 1_000_000,
            Preset::Rndread => 10_000_000,
            Preset::Ltm => 1_000_000,
            Preset::RndreadLtm => 20_000_000,
            Preset::Commit => 200_000,
        }
    }
    /// Data/pool ratio the preset asks for (`None`: pool holds everything).
    pub fn data_over_pool(self) -> Option<f64> {
        match self {
            Preset::Ltm | Preset::RndreadLtm => Some(3.0),
            _ => None,
        }
    }
    /// Lookups a batched engine keeps in flight per thread, one row each
    /// (`--inflight` overrides).
    pub fn default_inflight(self) -> Vec<usize> {
        match self {
            Preset::RndreadLtm => vec![16, 64, 256],
            _ => vec![64],
        }
    }
    /// Whether the matrix measures the device beside the engines
    /// (`--device-probe` overrides).
    pub fn device_probe(self) -> bool {
        self == Preset::RndreadLtm
    }
    /// Whether the matrix measures the device's 4 KiB write + `fdatasync`
    /// rate beside the engines (`--fsync-probe` overrides).
    pub fn fsync_probe(self) -> bool {
        self == Preset::Commit
    }
    /// Thread counts (`--threads` overrides).
    pub fn default_threads(self) -> Vec<usize> {
        match self {
            Preset::Commit => COMMIT_THREADS.to_vec(),
            _ => vec![1],
        }
    }
    /// Durability modes, a row each (`--durability` overrides).
    pub fn default_durabilities(self) -> Vec<Durability> {
        match self {
            Preset::Commit => vec![Durability::Sync],
            _ => vec![Durability::NoSync],
        }
    }
    /// Measured seconds per run (`--duration` overrides).
    pub fn default_duration_secs(self) -> f64 {
        match self {
            Preset::Commit => 5.0,
            _ => 10.0,
        }
    }
    /// Rounds of the matrix (`--repeat` overrides).
    pub fn default_repeat(self) -> usize {
        match self {
            Preset::Commit => 3,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::Rng64;

    /// The runs after one of these start from a fresh load (the matrix
    /// reloads the engine), so which workloads count matters.
    #[test]
    fn only_d_and_e_insert() {
        for (letter, inserts) in [
            ('A', false),
            ('B', false),
            ('C', false),
            ('D', true),
            ('E', true),
            ('F', false),
        ] {
            assert_eq!(
                Workload::ycsb(letter).unwrap().inserts(),
                inserts,
                "{letter}"
            );
        }
        assert!(!Workload::rndread().inserts());
    }

    #[test]
    fn mixes_sum_to_one_and_match_ycsb() {
        for c in "ABCDEF".chars() {
            let w = Workload::ycsb(c).unwrap();
            let s: f64 = w.mix.iter().map(|m| m.1).sum();
            assert!((s - 1.0).abs() < 1e-12, "{c}");
        }
        assert_eq!(
            Workload::ycsb('D').unwrap().distribution,
            Distribution::Latest
        );
        assert!(Workload::ycsb('E').unwrap().has(Op::Scan));
        assert!(Workload::ycsb('F').unwrap().has(Op::ReadModifyWrite));
    }

    #[test]
    fn chooser_follows_the_mix() {
        let w = Workload::ycsb('B').unwrap();
        let ch = w.chooser();
        let mut rng = Rng64::new(9);
        let n = 200_000;
        let updates = (0..n)
            .filter(|_| ch.pick(rng.next_f64()) == Op::Update)
            .count();
        let p = updates as f64 / n as f64;
        assert!((p - 0.05).abs() < 0.003, "{p}");
    }

    #[test]
    fn presets_parse_and_print_back() {
        for p in [
            Preset::Ycsb,
            Preset::Small,
            Preset::Rndread,
            Preset::Ltm,
            Preset::RndreadLtm,
            Preset::Commit,
        ] {
            assert_eq!(p.to_string().parse::<Preset>(), Ok(p));
        }
        let c = Preset::Commit;
        assert_eq!(c.default_threads(), COMMIT_THREADS.to_vec());
        assert_eq!(c.default_durabilities(), vec![Durability::Sync]);
        assert!(c.fsync_probe() && !Preset::Ycsb.fsync_probe());
        assert_eq!((c.default_repeat(), Preset::Ltm.default_repeat()), (3, 1));
        let p: Preset = "RNDREAD-LTM".parse().unwrap();
        assert_eq!(p, Preset::RndreadLtm);
        assert_eq!(p.key_format(), KeyFormat::OrderedU64);
        assert_eq!(p.value_len(), 120);
        assert_eq!(p.default_records(), 20_000_000);
        assert_eq!(p.data_over_pool(), Some(3.0));
        assert_eq!(p.default_inflight(), vec![16, 64, 256]);
        assert!(p.device_probe());
        assert_eq!(Preset::Ltm.default_inflight(), vec![64]);
        assert!(!Preset::Rndread.device_probe());
        assert!(
            "rndread_ltm"
                .parse::<Preset>()
                .unwrap_err()
                .contains("rndread-ltm")
        );
    }

    #[test]
    fn ycsb_keys_average_about_23_bytes() {
        let mut k = Vec::new();
        let total: usize = (0..10_000)
            .map(|n| {
                KeyFormat::YcsbString.key_into(n, &mut k);
                k.len()
            })
            .sum();
        let avg = total as f64 / 10_000.0;
        assert!((21.0..=23.5).contains(&avg), "{avg}");
    }
}
