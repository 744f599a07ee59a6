//! The administrative subcommands: deploy, undeploy, functions, invoke,
//! state, stats, check. Each opens the data directory itself, so none runs
//! beside a server on the same directory (the directory lock refuses it:
//! use `--server` then, `crate::remote`). What they print is `crate::show`.

use crate::config::Settings;
use crate::env::{self, Result};
use crate::show;
use rime_faas::{FunctionConfig, Grant, LogSink, namespace_tree};
use rime_storage::{Db, TreeId, VerifyOnOpen};
use std::io::Write;
use std::ops::{Bound, ControlFlow};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args)]
pub struct NameArgs {
    /// Function name.
    pub(crate) name: String,
}

#[derive(clap::Args)]
pub struct DeployArgs {
    /// Function name: 1..=64 bytes of [a-z0-9_.-].
    pub(crate) name: String,
    /// The module (host ABI v1, docs/abi.md).
    pub(crate) file: PathBuf,
    /// Access to another namespace: `NS` (read-only) or `NS:rw` (writable).
    #[arg(long = "grant", value_name = "NS[:rw]", value_parser = env::parse_grant)]
    pub(crate) grants: Vec<Grant>,
    /// Linear-memory limit, e.g. `64MiB`.
    #[arg(long, value_parser = env::parse_size)]
    pub(crate) memory: Option<u64>,
    /// Wall-clock limit of one attempt, e.g. `500ms`, `2s`.
    #[arg(long, value_parser = env::parse_duration)]
    pub(crate) deadline: Option<Duration>,
    /// A configuration entry the function reads with `rime_sdk::config`.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub(crate) envs: Vec<String>,
    /// A secret entry, read from FILE; never shown (`KEY=<secret>`).
    #[arg(long = "secret", value_name = "KEY=@FILE")]
    pub(crate) secrets: Vec<String>,
    /// Declares namespace NS (the function's own or a grant) global: kept
    /// in the Redis Cluster of `rime serve --global` (docs/global.md). All
    /// of a function's namespaces are global, or none.
    #[arg(long = "global", value_name = "NS")]
    pub(crate) global: Vec<String>,
}

#[derive(clap::Args)]
pub struct InvokeArgs {
    /// Function name.
    pub(crate) name: String,
    /// The input, as text.
    #[arg(long, conflicts_with = "input_file")]
    input: Option<String>,
    /// The input, read from a file (`-`: standard input).
    #[arg(long)]
    input_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Function name.
    pub(crate) name: String,
    /// Keep printing new lines as the function logs them.
    #[arg(long, short)]
    pub(crate) follow: bool,
}

#[derive(clap::Args)]
pub struct StateArgs {
    /// The Redis Cluster of global namespaces (as `rime serve --global`),
    /// for a namespace a deployed function declares global: its data is
    /// there, not in the data directory. With `--server`, the server's own
    /// is used instead.
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub(crate) global: Vec<String>,
    #[command(subcommand)]
    pub(crate) op: StateOp,
}

#[derive(clap::Subcommand)]
pub(crate) enum StateOp {
    /// Prints the value of KEY (text as is, other bytes as 0x hex).
    Get { ns: String, key: String },
    /// Sets KEY to VALUE (text).
    Put {
        ns: String,
        key: String,
        value: String,
    },
    /// Deletes KEY.
    Del { ns: String, key: String },
    /// Prints `key<TAB>value` lines of [start, end), at most LIMIT.
    Scan {
        ns: String,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// The configuration entries of `--env` and `--secret`: parsed here
/// rather than by clap, whose errors echo the value.
pub(crate) fn settings(a: &DeployArgs) -> Result<Vec<rime_faas::Setting>> {
    let mut out = Vec::with_capacity(a.envs.len() + a.secrets.len());
    for e in &a.envs {
        out.push(env::parse_setting(e, false)?);
    }
    for s in &a.secrets {
        out.push(env::read_secret(s)?);
    }
    Ok(out)
}

pub fn deploy(a: &DeployArgs, s: &Settings) -> Result<()> {
    let wasm = std::fs::read(&a.file).map_err(|e| format!("reading {}: {e}", a.file.display()))?;
    let mut cfg = FunctionConfig::default();
    for g in &a.grants {
        cfg = cfg.grant(g.clone());
    }
    if let Some(m) = a.memory {
        cfg = cfg.memory_bytes(m);
    }
    if let Some(d) = a.deadline {
        cfg = cfg.deadline(d);
    }
    for setting in settings(a)? {
        cfg = cfg.setting(setting);
    }
    for ns in &a.global {
        cfg = cfg.global(ns.clone());
    }
    let rt = env::open_all(&s.data, s.one_shot_db_options())?;
    let info = rt
        .deploy(&a.name, &wasm, cfg)
        .map_err(|e| format!("deploying {}: {e}", a.name))?;
    println!("{}", show::deployed(&show::Function::from(&info)));
    env::close(rt)
}

/// Opens the existing data directory of `s` (refusing a missing one) and
/// its runtime.
fn open_existing(s: &Settings) -> Result<rime_faas::Runtime> {
    env::open_all(s.existing_data()?, s.one_shot_db_options())
}

pub fn undeploy(a: &NameArgs, s: &Settings) -> Result<()> {
    let rt = open_existing(s)?;
    rt.undeploy(&a.name)?;
    println!("{}", show::undeployed(&a.name));
    env::close(rt)
}

pub fn functions(s: &Settings) -> Result<()> {
    let rt = open_existing(s)?;
    for f in rt.functions() {
        println!("{}", show::function_line(&show::Function::from(&f)));
    }
    for (name, reason) in rt.unloadable() {
        println!("{}", show::unloadable_line(&name, &reason));
    }
    env::close(rt)
}

/// The input of `invoke`: `--input`, `--input-file` (`-`: stdin), or none.
pub(crate) fn invoke_input(a: &InvokeArgs) -> Result<Vec<u8>> {
    Ok(match (&a.input, &a.input_file) {
        (Some(s), _) => s.clone().into_bytes(),
        (None, Some(p)) if p.as_os_str() == "-" => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
            v
        }
        (None, Some(p)) => std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?,
        (None, None) => Vec::new(),
    })
}

/// The output of `invoke` on stdout, with a final newline.
pub(crate) fn print_output(out: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out)?;
    if !out.ends_with(b"\n") {
        stdout.write_all(b"\n")?;
    }
    Ok(())
}

/// Runs the function; its log lines go to stderr as it logs them (those
/// of a failed invocation too).
pub fn invoke(a: &InvokeArgs, s: &Settings) -> Result<()> {
    let input = invoke_input(a)?;
    let sink = LogSink::new(|l| eprintln!("{}", show::guest_log_line(l)));
    let rt = env::open_all_with(
        s.existing_data()?,
        s.one_shot_db_options(),
        env::one_shot_runtime().log_sink(sink),
    )?;
    let r = rt.invoke(&a.name, &input);
    let out = match r {
        Ok(inv) => {
            tracing::info!(retries = inv.retries, duration = ?inv.duration, "invoked");
            inv.output
        }
        Err(e) => {
            env::close(rt)?;
            return Err(format!("invoking {}: {e}", a.name).into());
        }
    };
    env::close(rt)?;
    print_output(&out)
}

pub(crate) fn check_ns(ns: &str) -> Result<()> {
    if rime_faas::limits::valid_name(ns.as_bytes()) {
        Ok(())
    } else {
        Err(format!("invalid namespace {ns:?}: names are 1..=64 bytes of [a-z0-9_.-]").into())
    }
}

/// The tree of namespace `ns`, if it exists.
pub fn ns_tree(db: &Db, ns: &str) -> Result<Option<TreeId>> {
    check_ns(ns)?;
    Ok(db.open_tree(&namespace_tree(ns))?)
}

/// Up to `limit` pairs of `ns` in [start, end).
pub fn scan(
    db: &Db,
    tree: TreeId,
    start: Option<&[u8]>,
    end: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let lo = start.map_or(Bound::Unbounded, Bound::Included);
    let hi = end.map_or(Bound::Unbounded, Bound::Excluded);
    let out = db.transaction(|tx| {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        tx.scan(tree, lo, hi, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(out)
    })?;
    Ok(out)
}

pub fn state(a: &StateArgs, s: &Settings) -> Result<()> {
    let dir = s.existing_data()?;
    let db = env::open_db(dir, s.one_shot_db_options())?;
    let result = state_store(&db, a).and_then(|store| state_op(&store, &a.op));
    match Arc::try_unwrap(db) {
        Ok(db) => db.close()?,
        Err(_) => unreachable!("the state subcommand holds the only handle"),
    }
    result
}

use std::sync::Arc;

/// Where `rime state` reads and writes a namespace: the data directory's
/// tree, or the Redis Cluster for a namespace a deployed function
/// declares global (`docs/global.md`, "State commands").
enum Store<'a> {
    Local(&'a Db),
    Global(rime_global::Cluster),
}

fn state_store<'a>(db: &'a Db, a: &StateArgs) -> Result<Store<'a>> {
    let ns = a.op.ns();
    check_ns(ns)?;
    if !rime_faas::declared_global(db, ns)? {
        return Ok(Store::Local(db));
    }
    if a.global.is_empty() {
        return Err(format!(
            "namespace {ns:?} is global (a deployed function declares it): its data is in \
             the Redis Cluster, not in this directory; pass --global redis://HOST:PORT[,...] \
             (or use --server)"
        )
        .into());
    }
    Ok(Store::Global(crate::global_state::connect(&a.global)?))
}

impl StateOp {
    /// The namespace the operation names.
    fn ns(&self) -> &str {
        match self {
            StateOp::Get { ns, .. }
            | StateOp::Put { ns, .. }
            | StateOp::Del { ns, .. }
            | StateOp::Scan { ns, .. } => ns,
        }
    }
}

impl Store<'_> {
    fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            Store::Local(db) => match ns_tree(db, ns)? {
                Some(t) => Ok(db.get(t, key)?),
                None => Ok(None),
            },
            Store::Global(c) => Ok(crate::global_state::get(c, ns, key)?),
        }
    }

    fn put(&self, ns: &str, key: &[u8], value: &[u8]) -> Result<()> {
        match self {
            Store::Local(db) => {
                let t = db.open_or_create_tree(&namespace_tree(ns))?;
                Ok(db.put(t, key, value)?)
            }
            Store::Global(c) => Ok(crate::global_state::put(c, ns, key, value)?),
        }
    }

    fn delete(&self, ns: &str, key: &[u8]) -> Result<bool> {
        match self {
            Store::Local(db) => match ns_tree(db, ns)? {
                Some(t) => Ok(db.delete(t, key)?),
                None => Ok(false),
            },
            Store::Global(c) => Ok(crate::global_state::delete(c, ns, key)?),
        }
    }

    fn scan(
        &self,
        ns: &str,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self {
            Store::Local(db) => match ns_tree(db, ns)? {
                Some(t) => scan(db, t, start, end, limit),
                None => Ok(Vec::new()),
            },
            Store::Global(c) => Ok(crate::global_state::scan(c, ns, start, end, limit)?),
        }
    }
}

fn state_op(store: &Store<'_>, op: &StateOp) -> Result<()> {
    match op {
        StateOp::Get { ns, key } => match store.get(ns, key.as_bytes())? {
            Some(v) => println!("{}", env::show_bytes(&v)),
            None => return Err(show::no_key(ns, key).into()),
        },
        StateOp::Put { ns, key, value } => store.put(ns, key.as_bytes(), value.as_bytes())?,
        StateOp::Del { ns, key } => {
            if !store.delete(ns, key.as_bytes())? {
                return Err(show::no_key(ns, key).into());
            }
        }
        StateOp::Scan {
            ns,
            start,
            end,
            limit,
        } => {
            let pairs = store.scan(
                ns,
                start.as_deref().map(str::as_bytes),
                end.as_deref().map(str::as_bytes),
                *limit,
            )?;
            for (k, v) in pairs {
                println!("{}", show::pair_line(&k, &v));
            }
        }
    }
    Ok(())
}

pub fn stats(s: &Settings) -> Result<()> {
    let dir = s.existing_data()?;
    let rt = open_existing(s)?;
    let s = show::Stats::new(dir.display().to_string(), &rt.db().stats(), &rt.stats());
    for line in s.lines() {
        println!("{line}");
    }
    env::close(rt)
}

pub fn check(s: &Settings) -> Result<()> {
    let dir: &Path = s.existing_data()?;
    if !dir.join(rime_storage::dir::SUPERBLOCK_FILE).is_file() {
        return Err(format!(
            "{} is not a Rime data directory (no superblock)",
            dir.display()
        )
        .into());
    }
    let opts = s
        .one_shot_db_options()
        .verify_on_open(VerifyOnOpen::Always)
        .checkpoint_interval(None);
    let db = Db::open(dir, opts).map_err(|e| format!("check of {} failed: {e}", dir.display()))?;
    let s = db.stats();
    println!(
        "recovery: ok ({} log records replayed, log at LSN {})",
        s.recovered_records, s.log_bytes
    );
    db.verify()
        .map_err(|e| format!("check of {} failed: {e}", dir.display()))?;
    let trees = db.list_trees()?;
    let (mut keys, mut bytes) = (0u64, 0u64);
    for (name, id) in &trees {
        let (n, b) = db
            .transaction(|tx| {
                let (mut n, mut b) = (0u64, 0u64);
                tx.scan(*id, Bound::Unbounded, Bound::Unbounded, |k, v| {
                    n += 1;
                    b += (k.len() + v.len()) as u64;
                    ControlFlow::Continue(())
                })?;
                Ok((n, b))
            })
            .map_err(|e| format!("check of {} failed: tree {name}: {e}", dir.display()))?;
        println!("tree {name}: {n} keys, {b} bytes of keys and values");
        keys += n;
        bytes += b;
    }
    let s = db.stats();
    println!(
        "verify: ok ({} trees, {keys} keys, {bytes} bytes; {} pages allocated, {} read and checksummed)",
        trees.len(),
        s.allocated_pages,
        s.pool.misses
    );
    db.close()
        .map_err(|e| format!("closing {}: {e}", dir.display()))?;
    println!("check of {}: ok", dir.display());
    Ok(())
}
