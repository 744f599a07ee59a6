//! What every subcommand shares: logging, opening a data directory, finding
//! the example guests, parsing sizes and durations.

use rime_faas::{Runtime, RuntimeConfig};
use rime_storage::{Db, Durability, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// The data directory argument every subcommand shares.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("rime-data")
}

/// `tracing` to stderr: `--log` if given, else `RUST_LOG`, else `default`.
pub fn init_logging(flag: Option<&str>, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match flag {
        Some(f) => EnvFilter::try_new(f),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(default)),
    }
    .unwrap_or_else(|e| {
        eprintln!("rime: bad log filter ({e}); using {default:?}");
        EnvFilter::new(default)
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Storage options of the binary: the defaults, with `pool_bytes` and
/// `durability` if given, and log segments of at most
/// `$RIME_WAL_SEGMENT_MIB` MiB if set (default 64 MiB; the first segment
/// is 64 KiB either way, each next one doubles).
pub fn db_options(pool_bytes: Option<usize>, durability: Option<Durability>) -> Options {
    let mut opts = Options::default();
    if let Some(mib) = std::env::var("RIME_WAL_SEGMENT_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&m| m > 0)
    {
        opts = opts.segment_size(mib << 20);
    }
    if let Some(d) = durability {
        opts = opts.durability(d);
    }
    match pool_bytes {
        Some(b) => opts.pool_bytes(b),
        None => opts,
    }
}

/// Largest new log segment a one-shot command writes. Opening a Db reads
/// the newest segment whole, so a directory used only by commands keeps
/// each open's read at most this (a few ms) however long its log grows;
/// without the cap the segments would double up to 64 MiB after about
/// ten thousand commands and every command would read 64 MiB again.
pub const ONE_SHOT_SEGMENT_BYTES: u64 = 4 << 20;

/// `opts` for a one-shot command: segments capped at
/// [`ONE_SHOT_SEGMENT_BYTES`] (and the first one no larger).
pub fn one_shot(opts: Options) -> Options {
    let cap = opts.segment_size.min(ONE_SHOT_SEGMENT_BYTES);
    let first = opts.initial_segment_size.min(cap);
    opts.segment_size(cap).initial_segment_size(first)
}

/// Opens (creating if missing) the Db of `dir`.
pub fn open_db(dir: &Path, opts: Options) -> Result<Arc<Db>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let db = Db::open(dir, opts).map_err(|e| format!("opening {}: {e}", dir.display()))?;
    Ok(Arc::new(db))
}

/// The runtime over `db`, its module cache in `dir/cache`.
pub fn open_runtime(dir: &Path, db: Arc<Db>, cfg: RuntimeConfig) -> Result<Runtime> {
    let cfg = cfg.cache_dir(dir.join("cache"));
    Runtime::open(db, cfg)
        .map_err(|e| format!("opening the runtime on {}: {e}", dir.display()).into())
}

/// Instance slots of the runtime of a one-shot command (deploy, invoke,
/// ...): every slot of the pooling allocator costs setup (guard pages, a
/// fiber stack), which the default's thousands of slots made most of a
/// command's time. One is enough, because:
///
/// 1. a one-shot command runs its invocations one at a time, on its own
///    thread (`Runtime::invoke`; none of them uses `invoke_async`);
/// 2. an invocation holds one slot while an attempt runs, whatever it is:
///    the pool gives each slot a component's maximum of core instances,
///    tables and memories (`rime_faas::MAX_CORE_INSTANCES_PER_COMPONENT`
///    and the rest), so a Python component of 14 core instances takes one
///    slot, not 14 (it took 14 before, and this was 16 for it);
/// 3. an attempt drops its instance before the next attempt (a re-run
///    after a conflict) begins, and deploying instantiates nothing.
pub const ONE_SHOT_INSTANCES: u32 = 1;

/// The runtime configuration of a one-shot command.
pub fn one_shot_runtime() -> RuntimeConfig {
    RuntimeConfig::default()
        .max_instances(ONE_SHOT_INSTANCES)
        .workers(1)
}

/// Opens the Db (with `opts`) and a runtime sized for one command.
pub fn open_all(dir: &Path, opts: Options) -> Result<Runtime> {
    open_all_with(dir, opts, one_shot_runtime())
}

/// Opens the Db (with `opts`) and a runtime configured by `cfg`.
pub fn open_all_with(dir: &Path, opts: Options, cfg: RuntimeConfig) -> Result<Runtime> {
    let db = open_db(dir, opts)?;
    open_runtime(dir, db, cfg)
}

/// Checkpoints and closes the Db behind `rt` (dropping `rt`). If something
/// else still holds the Db, checkpoints and leaves the close to the drop.
pub fn close(rt: Runtime) -> Result<()> {
    let db = rt.db().clone();
    drop(rt);
    match Arc::try_unwrap(db) {
        Ok(db) => db
            .close()
            .map_err(|e| format!("closing the database: {e}").into()),
        Err(db) => db
            .checkpoint()
            .map_err(|e| format!("checkpoint: {e}").into()),
    }
}

const GUESTS_SUBDIR: &str = "guests/target/wasm32-unknown-unknown/release";

/// The directory of the example guests: `$RIME_GUESTS_DIR`, else
/// `guests/target/wasm32-unknown-unknown/release` under the current
/// directory or its ancestors, else under the ancestors of the executable
/// (a `target/release/rime` inside a checkout).
pub fn guests_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("RIME_GUESTS_DIR") {
        let d = PathBuf::from(d);
        if d.is_dir() {
            return Ok(d);
        }
        return Err(format!("RIME_GUESTS_DIR={} is not a directory", d.display()).into());
    }
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    for start in &starts {
        for dir in start.ancestors() {
            let candidate = dir.join(GUESTS_SUBDIR);
            if candidate.join("counter.wasm").is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "the example guests are not built (no {GUESTS_SUBDIR}/counter.wasm here or above, and \
         RIME_GUESTS_DIR is not set): run scripts/build-guests (the README's first command does it)"
    )
    .into())
}

/// The bytes of example guest `name` (`counter`, `bank`, ...).
pub fn guest(name: &str) -> Result<Vec<u8>> {
    let path = guests_dir()?.join(format!("{name}.wasm"));
    std::fs::read(&path).map_err(|e| {
        format!(
            "reading {}: {e}: run scripts/build-guests (the README's first command does it)",
            path.display()
        )
        .into()
    })
}

/// The units [`parse_size`] accepts, for its errors.
const SIZE_UNITS: &str = "B, KiB, MiB or GiB, e.g. 64MiB";
/// The units [`parse_duration`] accepts, for its errors.
const DURATION_UNITS: &str = "us, ms, s, m or h, e.g. 500ms or 2s";

/// `4096B`, `64KiB`, `16MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, ... as
/// powers of 1024). The unit is required: a bare `64` could mean bytes or
/// MiB, so it is refused, naming the units.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" => return Err(format!("size {s:?} needs a unit: {SIZE_UNITS}")),
        "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("unknown size unit in {s:?} (use {SIZE_UNITS})")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {s:?} overflows"))
}

/// Longest duration [`parse_duration`] accepts: a day. Nothing here waits
/// longer (function deadlines stop at `rime_faas::limits::MAX_DEADLINE`),
/// and `Instant + Duration` must not overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// `250ms`, `2s`, `1m`, `1h`, `500us`. The unit is required (a bare `10`
/// once meant 10 ms to some and 10 s to others). At most
/// [`MAX_DURATION`]; overflow is an error, never a wrap.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = match num.parse() {
        Ok(n) => n,
        Err(_) if !num.is_empty() => return Err(format!("duration {s:?} is too long")),
        Err(_) => return Err(format!("not a duration: {s:?}")),
    };
    let secs = |per: u64| n.checked_mul(per).map(Duration::from_secs);
    let d = match unit.trim() {
        "" => return Err(format!("duration {s:?} needs a unit: {DURATION_UNITS}")),
        "ms" => Some(Duration::from_millis(n)),
        "us" => Some(Duration::from_micros(n)),
        "s" => secs(1),
        "m" | "min" => secs(60),
        "h" => secs(3600),
        _ => {
            return Err(format!(
                "unknown duration unit in {s:?} (use {DURATION_UNITS})"
            ));
        }
    };
    match d {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!(
            "duration {s:?} is too long (at most {}h)",
            MAX_DURATION.as_secs() / 3600
        )),
    }
}

/// A [`parse_duration`] that is not zero (timeouts of the server).
pub fn parse_timeout(s: &str) -> std::result::Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("timeout {s:?} must be positive")),
        d => Ok(d),
    }
}

/// `NS` (read-only) or `NS:rw` (writable), or `NS:r`.
pub fn parse_grant(s: &str) -> std::result::Result<rime_faas::Grant, String> {
    match s.rsplit_once(':') {
        None => Ok(rime_faas::Grant::read(s)),
        Some((ns, "r" | "ro")) => Ok(rime_faas::Grant::read(ns)),
        Some((ns, "rw" | "w")) => Ok(rime_faas::Grant::write(ns)),
        Some((_, m)) => Err(format!("grant mode {m:?} in {s:?}: use NS, NS:r or NS:rw")),
    }
}

/// `KEY=VALUE` as a configuration entry (`--env`, and `env=`/`secret=` of
/// `POST /functions`). Errors name the key only: the value may be a secret.
pub fn parse_setting(s: &str, secret: bool) -> std::result::Result<rime_faas::Setting, String> {
    let Some((key, value)) = s.split_once('=') else {
        let what = if secret { "secret" } else { "env" };
        return Err(format!("{what} entry without `=`: use KEY=VALUE"));
    };
    Ok(if secret {
        rime_faas::Setting::secret(key, value)
    } else {
        rime_faas::Setting::plain(key, value)
    })
}

/// `--secret KEY=@FILE`: the entry with the file's bytes (one trailing
/// newline dropped, as `echo` adds one). A value given inline is refused:
/// it would be in the shell's history and in `ps`.
pub fn read_secret(s: &str) -> std::result::Result<rime_faas::Setting, String> {
    let Some((key, file)) = s.split_once("=@") else {
        let key = s.split_once('=').map_or("", |(k, _)| k);
        return Err(format!(
            "--secret {key}: give the value as KEY=@FILE (a file keeps it out of shell history and ps)"
        ));
    };
    let mut value =
        std::fs::read(file).map_err(|e| format!("--secret {key}: reading {file}: {e}"))?;
    if value.ends_with(b"\n") {
        value.pop();
    }
    Ok(rime_faas::Setting::secret(key, value))
}

/// A value for people: UTF-8 text as is, anything else as `0x` hex.
pub fn show_bytes(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => s.to_string(),
        _ => match <[u8; 8]>::try_from(v) {
            Ok(n) => format!("0x{} (i64 {})", hex(v), i64::from_le_bytes(n)),
            Err(_) => format!("0x{}", hex(v)),
        },
    }
}

pub fn hex(v: &[u8]) -> String {
    use std::fmt::Write;
    v.iter()
        .fold(String::with_capacity(v.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_grants() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("123B"), Ok(123));
        assert_eq!(
            parse_size("10").unwrap_err(),
            "size \"10\" needs a unit: B, KiB, MiB or GiB, e.g. 64MiB"
        );
        assert_eq!(
            parse_duration("10").unwrap_err(),
            "duration \"10\" needs a unit: us, ms, s, m or h, e.g. 500ms or 2s"
        );
        assert!(parse_size("1TiB").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_timeout("0s").is_err());
        assert_eq!(
            parse_grant("stats:rw"),
            Ok(rime_faas::Grant::write("stats"))
        );
        assert_eq!(parse_grant("stats"), Ok(rime_faas::Grant::read("stats")));
        assert!(parse_grant("stats:x").is_err());
        assert_eq!(show_bytes(b"hi"), "hi");
        assert_eq!(show_bytes(&[1, 0]), "0x0100");
        assert_eq!(
            show_bytes(&2i64.to_le_bytes()),
            "0x0200000000000000 (i64 2)"
        );
    }

    #[test]
    fn one_shot_commands_cap_log_segments() {
        let o = one_shot(Options::default());
        assert_eq!(
            (o.segment_size, o.initial_segment_size),
            (ONE_SHOT_SEGMENT_BYTES, 64 << 10)
        );
        let small = one_shot(Options::default().segment_size(1 << 20).preallocate_log());
        assert_eq!(
            (small.segment_size, small.initial_segment_size),
            (1 << 20, 1 << 20)
        );
    }

    #[test]
    fn duration_overflow_is_an_error_not_a_wrap() {
        // 307445734561825861 * 60 wraps u64 to 44: once a 44 s deadline.
        let e = parse_duration("307445734561825861m").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert!(parse_duration("18446744073709551616ms").is_err());
        assert!(parse_duration("18446744073709551616").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("86401s").is_err());
        assert_eq!(parse_duration("1440m"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("m").unwrap_err(), "not a duration: \"m\"");
    }
}
