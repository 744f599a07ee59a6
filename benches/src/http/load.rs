//! The load: N keep-alive connections, each a loop of one request at a
//! time, for a warm-up and then the measured part. A response counts in
//! the measured part when it completes inside it; its latency is the time
//! from writing the request to having the whole response.

use super::Res;
use super::client::{Conn, Response, Target};
use super::workload::{Acknowledged, Rng, Workload};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Pause after a transport error before the connection tries again, so a
/// dead server is not spun on.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/PID/stat`.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// One run's settings.
pub struct Plan {
    pub addr: SocketAddr,
    pub token: String,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub workload: Workload,
    /// Whose CPU time is reported beside the client's.
    pub server_pid: u32,
}

/// What a run measured.
pub struct Outcome {
    /// 200 responses completed in the measured part.
    pub ok: u64,
    pub secs: f64,
    /// Their latencies, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Other outcomes in the measured part, by status (`"io"`: transport
    /// errors).
    pub errors: BTreeMap<String, u64>,
    /// The whole run's 200s and transport errors, for the check.
    pub acked: Acknowledged,
    /// Connections reopened after the server closed one or it failed.
    pub reconnects: u64,
    /// The first transport error, if any.
    pub first_io_error: Option<String>,
    /// CPU time over the measured part, in cores (1.0 = one core busy).
    pub client_cores: Option<f64>,
    pub server_cores: Option<f64>,
}

impl Outcome {
    pub fn ok_per_sec(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
    /// Latency quantile `q` in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.latency_ns.value_at_quantile(q) as f64 / 1e3
    }
}

/// When the measured part starts and ends.
#[derive(Clone, Copy)]
struct Clock {
    measure_from: Instant,
    end: Instant,
}

/// One connection's counts.
#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    errors: BTreeMap<String, u64>,
    ok_all: u64,
    in_doubt: u64,
    bad_body: u64,
    reconnects: u64,
    first_io_error: Option<String>,
}

/// Runs `plan` on the current tokio runtime.
pub async fn run(plan: Plan) -> Res<Outcome> {
    let plan = Arc::new(plan);
    let t0 = Instant::now();
    let clock = Clock {
        measure_from: t0 + plan.warmup,
        end: t0 + plan.warmup + plan.duration,
    };
    let mut tasks = JoinSet::new();
    for i in 0..plan.connections {
        tasks.spawn(drive(i, plan.clone(), clock));
    }
    tokio::time::sleep_until(clock.measure_from.into()).await;
    let cpu_start = (cpu_secs("self"), cpu_secs(&plan.server_pid.to_string()));
    tokio::time::sleep_until(clock.end.into()).await;
    let cpu_end = (cpu_secs("self"), cpu_secs(&plan.server_pid.to_string()));
    let mut tallies = Vec::with_capacity(plan.connections);
    while let Some(t) = tasks.join_next().await {
        tallies.push(t.map_err(|e| format!("a connection's task failed: {e}"))?);
    }
    let secs = plan.duration.as_secs_f64();
    let cores = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / secs.max(1e-9));
    let mut out = merge(tallies, secs)?;
    out.client_cores = cores(cpu_start.0, cpu_end.0);
    out.server_cores = cores(cpu_start.1, cpu_end.1);
    Ok(out)
}

/// One connection: requests one after another until the end.
async fn drive(index: usize, plan: Arc<Plan>, clock: Clock) -> Tally {
    let (method, path) = plan.workload.target();
    let target = Target {
        method,
        path,
        token: plan.workload.needs_token().then_some(plan.token.as_str()),
    };
    let mut conn = Conn::new(plan.addr);
    let mut rng = Rng::new(0x5eed_0000 + index as u64);
    let mut body = Vec::new();
    let mut t = Tally::default();
    loop {
        let start = Instant::now();
        if start >= clock.end {
            break;
        }
        plan.workload.body(&mut rng, &mut body);
        let r = conn.request(target, &body).await;
        let done = Instant::now();
        let measured = done >= clock.measure_from && done < clock.end;
        let failed = r.is_err();
        let answer = r.map(|r| answer(&r, plan.workload.expected_body()));
        t.record(answer, (done - start).as_nanos() as u64, measured);
        if failed {
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    t.reconnects = conn.reconnects;
    t
}

/// What a response was, for the tally.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// 200 (with the expected body, where there is one).
    Ok,
    /// 200 with another body.
    BadBody,
    /// Any other status.
    Status(u16),
}

/// The body is compared only where the workload fixes it.
fn answer(r: &Response, expected_body: Option<&[u8]>) -> Answer {
    match (r.status, expected_body) {
        (200, Some(b)) if r.body != b => Answer::BadBody,
        (200, _) => Answer::Ok,
        (status, _) => Answer::Status(status),
    }
}

impl Tally {
    fn record(&mut self, r: std::io::Result<Answer>, ns: u64, measured: bool) {
        let error = match r {
            Ok(Answer::Ok) => {
                self.ok_all += 1;
                if measured {
                    self.latencies_ns.push(ns);
                }
                return;
            }
            Ok(Answer::BadBody) => {
                self.bad_body += 1;
                "bad_body".to_string()
            }
            Ok(Answer::Status(status)) => status.to_string(),
            Err(e) => {
                self.in_doubt += 1;
                self.first_io_error.get_or_insert_with(|| e.to_string());
                "io".to_string()
            }
        };
        if measured {
            *self.errors.entry(error).or_default() += 1;
        }
    }
}

fn merge(tallies: Vec<Tally>, secs: f64) -> Res<Outcome> {
    let mut latency_ns = Histogram::new_with_bounds(1, 120_000_000_000, 3)?;
    let mut out_errors = BTreeMap::new();
    let (mut ok_all, mut in_doubt, mut bad_body, mut reconnects) = (0, 0, 0, 0);
    let mut first_io_error = None;
    for t in tallies {
        for ns in t.latencies_ns {
            latency_ns.saturating_record(ns.max(1));
        }
        for (k, n) in t.errors {
            *out_errors.entry(k).or_default() += n;
        }
        ok_all += t.ok_all;
        in_doubt += t.in_doubt;
        bad_body += t.bad_body;
        reconnects += t.reconnects;
        first_io_error = first_io_error.or(t.first_io_error);
    }
    Ok(Outcome {
        ok: latency_ns.len(),
        secs,
        latency_ns,
        errors: out_errors,
        acked: Acknowledged {
            ok: ok_all,
            in_doubt,
            bad_body,
        },
        reconnects,
        first_io_error,
        client_cores: None,
        server_cores: None,
    })
}

/// User + system CPU seconds of process `pid` (`"self"` for this one) so
/// far, from `/proc/PID/stat`; `None` where that cannot be read.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3
    // (state); utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_measured_responses_count_in_the_rate_and_all_in_the_check() {
        let mut t = Tally::default();
        t.record(Ok(Answer::Ok), 1000, false);
        t.record(Ok(Answer::Ok), 2000, true);
        t.record(Ok(Answer::Status(503)), 10, true);
        t.record(Ok(Answer::Status(409)), 10, false);
        t.record(Err(std::io::ErrorKind::ConnectionReset.into()), 10, true);
        t.record(Ok(Answer::BadBody), 10, false);
        t.record(Ok(Answer::BadBody), 10, true);
        let o = merge(vec![t], 1.0).unwrap();
        assert_eq!((o.ok, o.acked.ok, o.acked.in_doubt), (1, 2, 1));
        assert_eq!(o.acked.bad_body, 2, "bad bodies of the whole run");
        assert_eq!(o.errors.get("bad_body"), Some(&1), "measured ones");
        assert_eq!(o.error_count(), 3);
        assert_eq!(o.errors.get("503"), Some(&1));
        assert_eq!(o.errors.get("io"), Some(&1));
        assert!(o.first_io_error.is_some());
        assert!(cpu_secs("self").is_some());
    }

    #[test]
    fn a_200_counts_only_with_the_expected_body_where_there_is_one() {
        let r = |status, body: &[u8]| Response {
            status,
            body: body.to_vec(),
        };
        assert_eq!(answer(&r(200, b"hello"), Some(b"hello")), Answer::Ok);
        assert_eq!(answer(&r(200, b"hell"), Some(b"hello")), Answer::BadBody);
        assert_eq!(answer(&r(200, b""), Some(b"hello")), Answer::BadBody);
        assert_eq!(answer(&r(200, b"anything"), None), Answer::Ok);
        assert_eq!(
            answer(&r(404, b"hello"), Some(b"hello")),
            Answer::Status(404)
        );
    }
}
