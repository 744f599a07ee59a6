//! What the connections send, per guest: the request, its setup (deploy,
//! bank accounts) and the check after the run that every acknowledged
//! invocation counted exactly once.
//!
//! * `health`: `GET /health`, no guest: the ceiling of the server's HTTP
//!   path and of the load generator together.
//! * `counter`: `POST /invoke/counter`, one key (empty input, key
//!   `counter`) or `--counter-keys N` keys `k0..kN` picked uniformly. Check:
//!   the counters' sum equals the number of 200 responses.
//! * `bank`: `POST /invoke/bank` with `transfer aX aY 1` between two
//!   distinct accounts picked uniformly of `--bank-accounts N`, each opened
//!   with [`INITIAL_BALANCE`] first (so no transfer overdraws). Check: the
//!   bank's `total` is unchanged.
//! * `hello`: `GET /fn/hello`, the HTTP-triggered component `hello_http`
//!   (guests/components/hello-http) deployed as `hello`: no state, a fresh
//!   instance per request. A 200 counts only with the body `hello` (else
//!   it is a `bad_body` error). Check: no such 200 in the whole run, and
//!   at least one right one.

use super::Res;
use super::api::{Api, text};
use std::net::SocketAddr;
use tokio::task::JoinSet;

/// Each bank account's opening balance.
pub const INITIAL_BALANCE: i64 = 1_000_000_000;
/// Connections that open the bank's accounts.
const SETUP_CONNECTIONS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Health,
    Counter,
    Bank,
    Hello,
}

impl Kind {
    pub fn parse(s: &str) -> Res<Kind> {
        match s.trim() {
            "health" => Ok(Kind::Health),
            "counter" => Ok(Kind::Counter),
            "bank" => Ok(Kind::Bank),
            "hello" => Ok(Kind::Hello),
            other => {
                Err(format!("unknown guest {other:?} (counter, bank, hello or health)").into())
            }
        }
    }
}

/// A guest with its sizes.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub kind: Kind,
    pub counter_keys: usize,
    pub bank_accounts: usize,
}

/// Where a guest's file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmDir {
    Modules,
    Components,
}

/// The outcome of the check after a run.
pub struct Check {
    pub passed: bool,
    /// `name=value` pairs, e.g. `value=120 ok=120 in_doubt=0`.
    pub detail: String,
}

/// Responses of a whole run (warm-up and measured part) the check needs.
pub struct Acknowledged {
    /// 200 responses.
    pub ok: u64,
    /// Requests that ended in a transport error: committed or not, the
    /// client cannot know.
    pub in_doubt: u64,
    /// 200 responses whose body was not [`Workload::expected_body`].
    pub bad_body: u64,
}

impl Workload {
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Health => "health",
            Kind::Counter => "counter",
            Kind::Bank => "bank",
            Kind::Hello => "hello",
        }
    }

    /// The file the guest is deployed from: a module in
    /// `server::guests_dir`, or a component in `server::components_dir`;
    /// `None` for `health`.
    pub fn wasm_file(&self) -> Option<(WasmDir, &'static str)> {
        match self.kind {
            Kind::Health => None,
            Kind::Counter | Kind::Bank => Some((WasmDir::Modules, self.name())),
            Kind::Hello => Some((WasmDir::Components, "hello_http")),
        }
    }

    /// The body every 200 must have, where the guest's answer is fixed.
    pub fn expected_body(&self) -> Option<&'static [u8]> {
        match self.kind {
            Kind::Hello => Some(b"hello"),
            _ => None,
        }
    }

    /// How requests pick their keys (the CSV's distribution column).
    pub fn distribution(&self) -> String {
        match self.kind {
            Kind::Health | Kind::Hello => "-".into(),
            Kind::Counter if self.counter_keys == 1 => "one-key".into(),
            Kind::Counter | Kind::Bank => "uniform".into(),
        }
    }

    /// Keys the requests spread over (the CSV's records column).
    pub fn records(&self) -> u64 {
        match self.kind {
            Kind::Health | Kind::Hello => 0,
            Kind::Counter => self.counter_keys as u64,
            Kind::Bank => self.bank_accounts as u64,
        }
    }

    /// Whether each request is a committing invocation (latencies go to
    /// the commit columns too): `hello` writes nothing.
    pub fn commits(&self) -> bool {
        matches!(self.kind, Kind::Counter | Kind::Bank)
    }

    /// Method and path of every request.
    pub fn target(&self) -> (&'static str, &'static str) {
        match self.kind {
            Kind::Health => ("GET", "/health"),
            Kind::Counter => ("POST", "/invoke/counter"),
            Kind::Bank => ("POST", "/invoke/bank"),
            Kind::Hello => ("GET", "/fn/hello"),
        }
    }

    /// Whether requests carry the token (`/health` is open).
    pub fn needs_token(&self) -> bool {
        self.kind != Kind::Health
    }

    /// The next request's body, into `out`.
    pub fn body(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        use std::io::Write as _;
        out.clear();
        match self.kind {
            Kind::Health | Kind::Hello => {}
            Kind::Counter if self.counter_keys == 1 => {}
            Kind::Counter => {
                let _ = write!(out, "k{}", rng.below(self.counter_keys));
            }
            Kind::Bank => {
                let from = rng.below(self.bank_accounts);
                let to = (from + 1 + rng.below(self.bank_accounts - 1)) % self.bank_accounts;
                let _ = write!(out, "transfer a{from} a{to} 1");
            }
        }
    }

    /// Deploys the guest and opens the bank's accounts.
    pub async fn setup(&self, addr: SocketAddr, token: &str, wasm: Option<&[u8]>) -> Res<()> {
        let mut api = Api::new(addr, token);
        api.wait_healthy().await?;
        if let Some(wasm) = wasm {
            api.deploy(self.name(), wasm).await?;
        }
        if self.kind == Kind::Bank {
            open_accounts(addr, token, self.bank_accounts).await?;
        }
        Ok(())
    }

    /// The check after a run (`None` for `health`).
    pub async fn check(&self, api: &mut Api, acked: &Acknowledged) -> Res<Option<Check>> {
        match self.kind {
            Kind::Health => Ok(None),
            Kind::Counter => self.check_counter(api, acked).await.map(Some),
            Kind::Bank => self.check_bank(api).await.map(Some),
            Kind::Hello => Ok(Some(check_hello(acked))),
        }
    }

    /// The counters' sum is the number of 200s, give or take the requests
    /// whose connection failed.
    async fn check_counter(&self, api: &mut Api, acked: &Acknowledged) -> Res<Check> {
        let mut value = 0i64;
        for k in 0..self.counter_keys {
            let key = match self.counter_keys {
                1 => "counter".to_string(),
                _ => format!("k{k}"),
            };
            if let Some(v) = api.state("counter", &key).await? {
                let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| {
                    format!("counter/{key} is {} bytes, not an 8-byte i64", v.len())
                })?;
                value += i64::from_le_bytes(bytes);
            }
        }
        let low = acked.ok as i64;
        let high = low + acked.in_doubt as i64;
        Ok(Check {
            passed: (low..=high).contains(&value),
            detail: format!("value={value} ok={} in_doubt={}", acked.ok, acked.in_doubt),
        })
    }

    /// Transfers move money, never make or lose it.
    async fn check_bank(&self, api: &mut Api) -> Res<Check> {
        let out = api.invoke("bank", b"total").await?;
        let expected = self.bank_accounts as i128 * INITIAL_BALANCE as i128;
        let total: i128 = text(&out)
            .trim()
            .parse()
            .map_err(|e| format!("bank total {:?}: {e}", text(&out)))?;
        Ok(Check {
            passed: total == expected,
            detail: format!("total={total} expected={expected}"),
        })
    }
}

/// Every 200 of the run said `hello`, and there was one at least.
fn check_hello(acked: &Acknowledged) -> Check {
    Check {
        passed: acked.bad_body == 0 && acked.ok > 0,
        detail: format!("ok={} bad_body={}", acked.ok, acked.bad_body),
    }
}

/// The name of bank account `i`.
fn account(i: usize) -> String {
    format!("a{i}")
}

/// Opens accounts `a0..a{n}` over [`SETUP_CONNECTIONS`] connections.
async fn open_accounts(addr: SocketAddr, token: &str, n: usize) -> Res<()> {
    let workers = SETUP_CONNECTIONS.min(n);
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let mut api = Api::new(addr, token);
        tasks.spawn(async move {
            for i in (w..n).step_by(workers) {
                let input = format!("open {} {INITIAL_BALANCE}", account(i));
                let out = api.invoke("bank", input.as_bytes()).await?;
                if out != b"ok" {
                    return Err(format!("{input}: answered {:?}", text(&out)).into());
                }
            }
            Res::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| format!("opening accounts: {e}"))??;
    }
    Ok(())
}

/// splitmix64: cheap, and good enough to pick keys.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` ≥ 1; the modulo bias is negligible here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_transfers_are_between_two_distinct_accounts() {
        let w = Workload {
            kind: Kind::Bank,
            counter_keys: 1,
            bank_accounts: 3,
        };
        let mut rng = Rng::new(7);
        let mut body = Vec::new();
        for _ in 0..1000 {
            w.body(&mut rng, &mut body);
            let s = String::from_utf8(body.clone()).unwrap();
            let words: Vec<&str> = s.split(' ').collect();
            assert_eq!((words[0], words[3]), ("transfer", "1"), "{s}");
            assert_ne!(words[1], words[2], "{s}");
        }
        let one = Workload {
            kind: Kind::Counter,
            ..w
        };
        one.body(&mut rng, &mut body);
        assert!(body.is_empty(), "one key: the guest's default key");
    }
}
