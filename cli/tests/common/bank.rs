//! The `bank` guest on a global namespace, driven over HTTP: what the
//! failover test and the soak (`scripts/global-soak`) share. A transfer's
//! HTTP answer is classified into an [`Outcome`]; the balances after the
//! run are checked against the acknowledged transfers ([`Ledger`]).

use super::{TOKEN, text};
use std::io::Read;
use std::time::{Duration, Instant};

/// What one transfer request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200: committed and acknowledged.
    Ok,
    /// 422 `function_error` "overdraft ...": refused by the guest, nothing
    /// written.
    Refused,
    /// A clear error that committed nothing: 503 `global_unavailable`,
    /// 504 `timeout`, 409 `conflict` (the code).
    Failed(String),
    /// 503 `global_unknown`, or the connection cut (a Rime node killed):
    /// the commit may or may not have been applied.
    Unknown(String),
}

/// One HTTP request and what came of it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub start: Instant,
    pub took: Duration,
    pub outcome: Outcome,
}

/// A transfer `(from, to, amount)` between accounts `a<from>`, `a<to>`.
pub type Transfer = (usize, usize, i64);

/// POSTs `input` to `/invoke/bank` on `base`; a transport error is
/// `Unknown("transport")` (the caller decides whether one may happen).
pub fn send_bank(agent: &ureq::Agent, base: &str, input: &str) -> Sent {
    let start = Instant::now();
    let r = agent
        .post(&format!("{base}/invoke/bank"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_string(input);
    let outcome = match r {
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            Outcome::Ok
        }
        Err(ureq::Error::Status(status, resp)) => classify(status, resp),
        Err(ureq::Error::Transport(_)) => Outcome::Unknown("transport".into()),
    };
    Sent {
        start,
        took: start.elapsed(),
        outcome,
    }
}

/// The documented error body `{"error": {"code", "message"}}` of a
/// failed invocation, as an [`Outcome`]; any other answer fails the test.
fn classify(status: u16, resp: ureq::Response) -> Outcome {
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{status}: body not JSON ({e}): {}", text(&body)));
    let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{status} {code}: no message");
    match (status, code.as_str()) {
        (422, "function_error") if message.starts_with("overdraft") => Outcome::Refused,
        (503, "global_unavailable") | (504, "timeout") | (409, "conflict") => Outcome::Failed(code),
        (503, "global_unknown") => Outcome::Unknown(code),
        _ => panic!("not a clear global error: {status} {}", text(&body)),
    }
}

/// Opens account `name` with `initial` through `base`, before any fault:
/// a clear failure (503, 504, 409) is sent again, and "already exists"
/// after one means an earlier try of unknown outcome was applied (nothing
/// else opens accounts). On two loaded cores a replica can confirm a
/// commit later than a node's `--global-timeout`, so even an undisturbed
/// cluster answers some requests `global_unknown`.
pub fn open_account(agent: &ureq::Agent, base: &str, name: &str, initial: i64) {
    let input = format!("open {name} {initial}");
    let mut last = String::new();
    for _ in 0..50 {
        let r = agent
            .post(&format!("{base}/invoke/bank"))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .timeout(Duration::from_secs(30))
            .send_string(&input);
        match r {
            Ok(_) => return,
            Err(ureq::Error::Status(status, resp)) => {
                last = format!("{status} {}", resp.into_string().unwrap_or_default());
                match status {
                    422 if last.contains("already exists") => return,
                    409 | 503 | 504 => std::thread::sleep(Duration::from_millis(100)),
                    _ => break,
                }
            }
            Err(e) => panic!("{base} {input}: {e}"),
        }
    }
    panic!("{base} {input}: {last}");
}

/// The answer of one invocation of `bank` that must succeed.
pub fn bank_ok(agent: &ureq::Agent, base: &str, input: &str) -> String {
    let r = agent
        .post(&format!("{base}/invoke/bank"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .timeout(Duration::from_secs(30))
        .send_string(input);
    match r {
        Ok(resp) => resp.into_string().unwrap(),
        Err(e) => panic!("{base} {input}: {e}"),
    }
}

/// Each account's balance as the node at `base` answers it.
pub fn balances_on(agent: &ureq::Agent, base: &str, accounts: usize) -> Vec<i64> {
    (0..accounts)
        .map(|a| {
            let b = bank_ok(agent, base, &format!("balance a{a}"));
            b.trim().parse().unwrap_or_else(|_| panic!("balance {b:?}"))
        })
        .collect()
}

/// A small xorshift: the clients' random transfers, reproducible by seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0xff51_afd7_ed55_8ccd) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A transfer between two distinct accounts of `accounts`, of 1..=`max`.
    pub fn transfer(&mut self, accounts: usize, max: i64) -> Transfer {
        let x = self.next();
        let from = (x % accounts as u64) as usize;
        let to = (from + 1 + (x >> 16) as usize % (accounts - 1)) % accounts;
        (from, to, 1 + (x >> 40) as i64 % max)
    }
}

/// The transfers of a run by outcome: what the balances must show.
#[derive(Debug, Default)]
pub struct Ledger {
    pub acknowledged: Vec<Transfer>,
    pub unknown: Vec<Transfer>,
}

impl Ledger {
    /// The balances the acknowledged transfers give from `initial` each.
    pub fn model(&self, accounts: usize, initial: i64) -> Vec<i64> {
        let mut m = vec![initial; accounts];
        for &(f, t, amt) in &self.acknowledged {
            m[f] -= amt;
            m[t] += amt;
        }
        m
    }

    /// Whether `balances` are the acknowledged transfers plus some subset
    /// of those of unknown outcome (checked exhaustively: at most 16).
    pub fn explains(&self, balances: &[i64], initial: i64) -> bool {
        assert!(
            self.unknown.len() <= 16,
            "{} transfers of unknown outcome: too many to check",
            self.unknown.len()
        );
        let model = self.model(balances.len(), initial);
        (0u32..1 << self.unknown.len()).any(|applied| {
            let mut m = model.clone();
            for (i, &(f, t, amt)) in self.unknown.iter().enumerate() {
                if applied & (1 << i) != 0 {
                    m[f] -= amt;
                    m[t] += amt;
                }
            }
            m == balances
        })
    }
}
