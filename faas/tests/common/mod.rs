//! Shared set-up of the runtime's integration tests.
#![allow(dead_code)]

pub mod call_loop;
pub mod global_node;
pub mod kv_input;

use rime_faas::{FunctionConfig, Runtime, RuntimeConfig};
use rime_storage::{Db, Durability, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

/// The directory of the built guests: `RIME_GUESTS_DIR`, or the default
/// output of `scripts/build-guests`.
pub fn guests_dir() -> PathBuf {
    match std::env::var_os("RIME_GUESTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../guests/target/wasm32-unknown-unknown/release"),
    }
}

/// The freshly built module `name` (`counter`, `bank`, ...).
pub fn guest(name: &str) -> Vec<u8> {
    let path = guests_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read guest module {}: {e}\nbuild the guests first: run `scripts/build-guests` \
             (or set RIME_GUESTS_DIR to a directory holding {name}.wasm)",
            path.display()
        )
    })
}

/// The directory of the built component guests: `RIME_COMPONENTS_DIR`,
/// or the default output of `scripts/build-guests` for `guests/components`.
pub fn components_dir() -> PathBuf {
    match std::env::var_os("RIME_COMPONENTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../guests/components/target/wasm32-wasip2/release"),
    }
}

/// The freshly built component `name` (`wasi_kv_counter`, ...).
pub fn component(name: &str) -> Vec<u8> {
    let path = components_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read component {}: {e}\nbuild the guests first: run `scripts/build-guests` \
             (it needs the wasm32-wasip2 target: `rustup target add wasm32-wasip2`)",
            path.display()
        )
    })
}

pub fn db_options() -> Options {
    Options::default()
        .pool_bytes(64 << 20)
        .max_bytes(1 << 32)
        .checkpoint_interval(None)
        .durability(Durability::Sync)
}

pub fn open_db(dir: &Path) -> Arc<Db> {
    Arc::new(Db::open(dir.join("db"), db_options()).expect("open db"))
}

pub fn runtime_config(dir: &Path) -> RuntimeConfig {
    RuntimeConfig::default()
        .cache_dir(dir.join("cache"))
        .max_instances(64)
}

pub struct Env {
    pub rt: Runtime,
    pub dir: TempDir,
}

pub fn env() -> Env {
    env_with(|c| c)
}

/// [`env`] with the runtime's configuration changed by `f`.
pub fn env_with(f: impl FnOnce(RuntimeConfig) -> RuntimeConfig) -> Env {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::open(open_db(dir.path()), f(runtime_config(dir.path()))).unwrap();
    Env { rt, dir }
}

impl Env {
    pub fn deploy(&self, name: &str, guest_name: &str, cfg: FunctionConfig) {
        self.rt.deploy(name, &guest(guest_name), cfg).unwrap();
    }

    /// Invokes and returns the output as text, panicking on an error.
    pub fn call(&self, name: &str, input: impl AsRef<[u8]>) -> String {
        let inv = self.rt.invoke(name, input.as_ref()).unwrap_or_else(|e| {
            panic!("{name}({:?}): {e}", String::from_utf8_lossy(input.as_ref()))
        });
        String::from_utf8(inv.output).unwrap()
    }

    /// The committed value of `key` in namespace `ns`.
    pub fn load(&self, ns: &str, key: &[u8]) -> Option<Vec<u8>> {
        let db = self.rt.db();
        let tree = db.open_tree(&rime_faas::namespace_tree(ns)).unwrap()?;
        db.get(tree, key).unwrap()
    }
}

/// One event seen by [`Capture`].
#[derive(Debug, Clone)]
pub struct Captured {
    pub level: tracing::Level,
    pub target: String,
    pub message: String,
    /// The other fields, `name=value` separated by spaces.
    pub fields: String,
}

/// A `tracing` subscriber that records every event, for tests of what the
/// runtime logs. Install it on the test's thread with [`Capture::during`].
#[derive(Clone, Default)]
pub struct Capture(Arc<std::sync::Mutex<Vec<Captured>>>);

impl Capture {
    /// Runs `f` with this subscriber as the thread's default.
    pub fn during<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::subscriber::with_default(self.clone(), f)
    }

    pub fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

struct Fields<'a>(&'a mut Captured);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.message = format!("{value:?}");
        } else {
            self.0.fields += &format!("{}={value:?} ", field.name());
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.message = value.to_string();
        } else {
            self.0.fields += &format!("{}={value} ", field.name());
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut c = Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message: String::new(),
            fields: String::new(),
        };
        event.record(&mut Fields(&mut c));
        self.0.lock().unwrap().push(c);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
