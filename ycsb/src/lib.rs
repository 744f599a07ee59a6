//! Key choosers, ported from YCSB (`site.ycsb.generator`):
//!
//! * [`Zipfian`]: `ZipfianGenerator` — Gray et al., "Quickly generating
//!   billion-record synthetic databases" (SIGMOD '94), θ = 0.99, with YCSB's
//!   incremental ζ when the item count grows.
//! * [`ScrambledZipfian`]: `ScrambledZipfianGenerator` — a zipfian over
//!   10^10 items with YCSB's precomputed ζ = 26.46902820178302, then
//!   FNV-1a-64 hashed onto `[min, max]`, so the popular items are spread
//!   over the keyspace instead of clustered at its start.
//! * [`Latest`]: `SkewedLatestGenerator` — `last - zipfian(last)`, the most
//!   recently inserted record the most popular.
//! * [`Uniform`]: YCSB's `UniformLongGenerator`.
//!
//! Random numbers come from [`Rng64`] (SplitMix64): deterministic per seed,
//! cheap, one per thread, so a run is reproducible and threads do not share
//! a lock as YCSB's `ThreadLocalRandom` also avoids.
//!
//! Its own crate because the benchmarks, the tree's fill tests and the
//! storage space example all load YCSB's keys ([`user_key`]), and a lower
//! crate may not name `rime-bench`.
#![forbid(unsafe_code)]

/// YCSB's `ZipfianGenerator.ZIPFIAN_CONSTANT`.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;
/// YCSB's `ScrambledZipfianGenerator.ITEM_COUNT`.
pub const SCRAMBLED_ITEM_COUNT: u64 = 10_000_000_000;
/// YCSB's `ScrambledZipfianGenerator.ZETAN`: ζ(10^10, 0.99).
pub const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

const FNV_OFFSET_BASIS_64: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME_64: u64 = 1_099_511_628_211;

/// YCSB's `Utils.fnvhash64`: FNV-1a over the 8 little-endian bytes, then
/// `Math.abs` of the result read as a signed long.
pub fn fnvhash64(mut val: u64) -> u64 {
    let mut h = FNV_OFFSET_BASIS_64;
    for _ in 0..8 {
        let octet = val & 0xff;
        val >>= 8;
        h ^= octet;
        h = h.wrapping_mul(FNV_PRIME_64);
    }
    // Java's Math.abs(Long.MIN_VALUE) is Long.MIN_VALUE; keep that quirk.
    (h as i64).wrapping_abs() as u64
}

/// YCSB's key for record `n` (`insertorder=hashed`, no zero padding):
/// `"user" + fnvhash64(n)`, 5–23 bytes, ~23 on average.
pub fn user_key(n: u64) -> Vec<u8> {
    format!("user{}", fnvhash64(n)).into_bytes()
}

/// SplitMix64 (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub struct Rng64(u64);

impl Rng64 {
    pub fn new(seed: u64) -> Self {
        Rng64(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1), 53 bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [0, n) (Lemire's multiply-shift; bias < n / 2^64).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// ζ(n, θ) = Σ_{i=1..n} 1 / i^θ, continued from ζ(st, θ) = `initial`
/// (YCSB's `zetastatic(st, n, theta, initialsum)`).
pub fn zeta_from(st: u64, n: u64, theta: f64, initial: f64) -> f64 {
    let mut sum = initial;
    for i in st..n {
        sum += 1.0 / ((i + 1) as f64).powf(theta);
    }
    sum
}

pub fn zeta(n: u64, theta: f64) -> f64 {
    zeta_from(0, n, theta, 0.0)
}

/// YCSB's `ZipfianGenerator` over `[base, base + items)`; rank 0 (= `base`)
/// is the most popular. `next_with(itemcount)` lets the count grow (for
/// [`Latest`]), recomputing ζ incrementally as YCSB does.
#[derive(Debug, Clone)]
pub struct Zipfian {
    base: u64,
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    zeta2theta: f64,
    eta: f64,
    count_for_zeta: u64,
}

impl Zipfian {
    /// Items `min..=max`, θ = 0.99, ζ computed here (O(n)).
    pub fn new(min: u64, max: u64) -> Self {
        let items = max - min + 1;
        Self::with_zetan(min, max, ZIPFIAN_CONSTANT, zeta(items, ZIPFIAN_CONSTANT))
    }

    /// Items `min..=max` with a precomputed ζ(items, θ).
    pub fn with_zetan(min: u64, max: u64, theta: f64, zetan: f64) -> Self {
        let items = max - min + 1;
        let zeta2theta = zeta(2, theta);
        let mut z = Zipfian {
            base: min,
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            zeta2theta,
            eta: 0.0,
            count_for_zeta: items,
        };
        z.eta = z.eta_for(items);
        z
    }

    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2theta / self.zetan)
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    pub fn zetan(&self) -> f64 {
        self.zetan
    }

    /// A rank in `[base, base + items)`.
    #[inline]
    pub fn next(&mut self, rng: &mut Rng64) -> u64 {
        let items = self.items;
        self.next_with(rng, items)
    }

    /// YCSB's `nextLong(itemcount)`.
    pub fn next_with(&mut self, rng: &mut Rng64, itemcount: u64) -> u64 {
        if itemcount != self.count_for_zeta {
            if itemcount > self.count_for_zeta {
                self.zetan = zeta_from(self.count_for_zeta, itemcount, self.theta, self.zetan);
            } else {
                // YCSB warns that this is slow; the harness never shrinks.
                self.zetan = zeta(itemcount, self.theta);
            }
            self.count_for_zeta = itemcount;
            self.eta = self.eta_for(itemcount);
        }
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return self.base;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return self.base + 1;
        }
        self.base + (itemcount as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64
    }
}

/// YCSB's `ScrambledZipfianGenerator(min, max)` with θ = 0.99.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    min: u64,
    itemcount: u64,
    r#gen: Zipfian,
}

impl ScrambledZipfian {
    pub fn new(min: u64, max: u64) -> Self {
        ScrambledZipfian {
            min,
            itemcount: max - min + 1,
            r#gen: Zipfian::with_zetan(0, SCRAMBLED_ITEM_COUNT, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN),
        }
    }

    #[inline]
    pub fn next(&mut self, rng: &mut Rng64) -> u64 {
        let r = self.r#gen.next(rng);
        self.min + fnvhash64(r) % self.itemcount
    }
}

/// YCSB's `SkewedLatestGenerator`: `last - zipfian(last)` where `last` is
/// the highest acknowledged insert (passed in on each call, since inserts
/// move it).
#[derive(Debug, Clone)]
pub struct Latest {
    r#gen: Zipfian,
}

impl Latest {
    /// `last`: the highest key number present at the start.
    pub fn new(last: u64) -> Self {
        Latest {
            r#gen: Zipfian::new(0, last.max(1) - 1),
        }
    }

    /// Built from an already computed ζ(last, θ) (shared by the threads).
    pub fn with_zetan(last: u64, zetan: f64) -> Self {
        Latest {
            r#gen: Zipfian::with_zetan(0, last.max(1) - 1, ZIPFIAN_CONSTANT, zetan),
        }
    }

    #[inline]
    pub fn next(&mut self, rng: &mut Rng64, last: u64) -> u64 {
        let max = last.max(1);
        max - self.r#gen.next_with(rng, max)
    }
}

/// YCSB's `UniformLongGenerator(lb, ub)`.
#[derive(Debug, Clone)]
pub struct Uniform {
    lb: u64,
    span: u64,
}

impl Uniform {
    pub fn new(lb: u64, ub: u64) -> Self {
        Uniform {
            lb,
            span: ub - lb + 1,
        }
    }
    #[inline]
    pub fn next(&mut self, rng: &mut Rng64) -> u64 {
        self.lb + rng.below(self.span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: usize = 1_000_000;

    /// Hurwitz-style Euler–Maclaurin estimate of ζ(n, θ) for large n:
    /// ζ_R(θ) + n^(1-θ)/(1-θ) + n^-θ/2, with the Riemann ζ near 1 from its
    /// Laurent series 1/(s-1) + γ − γ₁(s-1).
    fn zeta_asymptotic(n: f64, theta: f64) -> f64 {
        let s = theta;
        let riemann =
            1.0 / (s - 1.0) + 0.577_215_664_901_532_9 + 0.072_815_845_483_676_7 * (s - 1.0);
        riemann + n.powf(1.0 - s) / (1.0 - s) + 0.5 * n.powf(-s)
    }

    #[test]
    fn ycsb_zetan_constant_matches_asymptotic_zeta() {
        let est = zeta_asymptotic(SCRAMBLED_ITEM_COUNT as f64, ZIPFIAN_CONSTANT);
        assert!(
            (est - SCRAMBLED_ZETAN).abs() < 1e-3,
            "{est} vs {SCRAMBLED_ZETAN}"
        );
        // and the asymptotic form agrees with the exact sum where we can sum.
        let exact = zeta(1_000_000, ZIPFIAN_CONSTANT);
        let est = zeta_asymptotic(1e6, ZIPFIAN_CONSTANT);
        assert!((exact - est).abs() < 1e-3, "{exact} vs {est}");
    }

    #[test]
    fn incremental_zeta_equals_full_sum() {
        let a = zeta(5000, 0.99);
        let b = zeta_from(3000, 5000, 0.99, zeta(3000, 0.99));
        assert!((a - b).abs() < 1e-9);
    }

    #[test]
    fn fnv_matches_ycsb_first_key() {
        // YCSB's first loaded key with the default hashed insert order.
        assert_eq!(format!("user{}", fnvhash64(0)), "user6284781860667377211");
    }

    #[test]
    fn zipfian_head_frequencies_match_theory() {
        let n = 1000;
        let mut z = Zipfian::new(0, n - 1);
        let mut rng = Rng64::new(1);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..SAMPLES {
            let r = z.next(&mut rng);
            assert!(r < n);
            counts[r as usize] += 1;
        }
        let zn = zeta(n, ZIPFIAN_CONSTANT);
        let p0 = counts[0] as f64 / SAMPLES as f64;
        let p1 = counts[1] as f64 / SAMPLES as f64;
        // Ranks 0 and 1 are exact in Gray's method: 1/ζ and 2^-θ/ζ.
        assert!((p0 - 1.0 / zn).abs() < 0.003, "p0 {p0} vs {}", 1.0 / zn);
        assert!(
            (p1 - 0.5f64.powf(0.99) / zn).abs() < 0.003,
            "p1 {p1} vs {}",
            0.5f64.powf(0.99) / zn
        );
        // Frequencies fall with rank: over doubling buckets, strictly.
        let mut lo = 1;
        let mut prev = f64::INFINITY;
        while lo < n as usize {
            let hi = (lo * 2).min(n as usize);
            let mean = counts[lo..hi].iter().sum::<u64>() as f64 / (hi - lo) as f64;
            assert!(mean < prev, "bucket {lo}..{hi}: {mean} >= {prev}");
            prev = mean;
            lo = hi;
        }
        // Head mass: share of the top 10 ranks ≈ ζ(10)/ζ(n) (approximate
        // beyond rank 1 in Gray's method; 10% tolerance).
        let top10 = counts[..10].iter().sum::<u64>() as f64 / SAMPLES as f64;
        let want = zeta(10, 0.99) / zn;
        assert!((top10 - want).abs() / want < 0.1, "top10 {top10} vs {want}");
    }

    #[test]
    fn scrambled_zipfian_spreads_hot_keys_over_the_keyspace() {
        let n = 1000u64;
        let mut z = ScrambledZipfian::new(0, n - 1);
        let mut rng = Rng64::new(2);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..SAMPLES {
            let k = z.next(&mut rng);
            assert!(k < n);
            counts[k as usize] += 1;
        }
        // The hottest key holds at least rank 0's share, 1/ζ(10^10).
        let max = *counts.iter().max().unwrap() as f64 / SAMPLES as f64;
        assert!(max > 0.9 / SCRAMBLED_ZETAN && max < 0.08, "hottest {max}");
        // rank 0 lands where FNV says, not at the start of the keyspace.
        let hot = fnvhash64(0) % n;
        assert_eq!(
            counts.iter().enumerate().max_by_key(|c| c.1).unwrap().0 as u64,
            hot
        );
        // Every tenth of the keyspace gets a share (no clustering).
        for d in 0..10 {
            let share = counts[d * 100..(d + 1) * 100].iter().sum::<u64>() as f64 / SAMPLES as f64;
            assert!(share > 0.04 && share < 0.25, "decile {d}: {share}");
        }
        // The top 10 keys are spread: not all within one tenth.
        let mut idx: Vec<usize> = (0..n as usize).collect();
        idx.sort_by_key(|&i| std::cmp::Reverse(counts[i]));
        let span = idx[..10].iter().max().unwrap() - idx[..10].iter().min().unwrap();
        assert!(span > 300, "top-10 keys within {span}");
    }

    #[test]
    fn uniform_passes_chi_square() {
        let buckets = 100u64;
        let mut u = Uniform::new(0, buckets - 1);
        let mut rng = Rng64::new(3);
        let mut counts = vec![0u64; buckets as usize];
        for _ in 0..SAMPLES {
            counts[u.next(&mut rng) as usize] += 1;
        }
        let e = SAMPLES as f64 / buckets as f64;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        // df = 99: the 0.1% critical value is 148.2.
        assert!(chi2 < 148.2, "chi2 {chi2}");
        // and not suspiciously perfect (0.1% lower tail: 61.9).
        assert!(chi2 > 61.9, "chi2 {chi2}");
    }

    #[test]
    fn latest_prefers_the_newest_key_and_follows_inserts() {
        let mut last = 999u64;
        let mut l = Latest::new(last);
        let mut rng = Rng64::new(4);
        let mut newest = 0;
        for _ in 0..SAMPLES / 10 {
            let k = l.next(&mut rng, last);
            assert!(k <= last && k >= 1);
            if k == last {
                newest += 1;
            }
        }
        let p = newest as f64 / (SAMPLES / 10) as f64;
        let want = 1.0 / zeta(last, 0.99);
        assert!((p - want).abs() < 0.005, "{p} vs {want}");
        // After inserts the newest key is the new maximum.
        last = 1999;
        let mut hits = 0;
        for _ in 0..SAMPLES / 10 {
            let k = l.next(&mut rng, last);
            assert!(k <= last);
            if k == last {
                hits += 1;
            }
        }
        let p = hits as f64 / (SAMPLES / 10) as f64;
        let want = 1.0 / zeta(last, 0.99);
        assert!((p - want).abs() < 0.005, "{p} vs {want}");
    }
}
