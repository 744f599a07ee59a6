//! Invokes a function N times on the calling thread, for instruction
//! counts of the local ABI v1 path under callgrind (`docs/global.md`,
//! "What global namespaces cost local ones"):
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/examples/local_path_cost empty 400
//! ```
//!
//! Modes: `empty` (the empty module), `get` (1000 `get`s of a 100-byte
//! value per invocation), `put` (1000 `put`s). Run it with two N and take
//! the difference over the difference in N: the per-invocation cost,
//! without the set-up.

use rime_faas::{FunctionConfig, Runtime, RuntimeConfig};
use rime_storage::{Db, Durability, Options};
use std::sync::Arc;

const EMPTY: &str = r#"(module (memory (export "memory") 1)
  (func (export "rime_invoke") (result i32) (i32.const 0)))"#;

#[path = "../tests/common/call_loop.rs"]
#[allow(dead_code)]
mod call_loop;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, n) = match &args[1..] {
        [m, n] => (m.as_str(), n.parse::<usize>().expect("N")),
        _ => panic!("usage: local_path_cost empty|get|put N"),
    };
    let dir = tempfile::TempDir::new().unwrap();
    let opts = Options::default()
        .durability(Durability::NoSync)
        .checkpoint_interval(None)
        .max_bytes(1 << 32)
        .pool_bytes(64 << 20);
    let db = Arc::new(Db::open(dir.path().join("db"), opts).unwrap());
    let rt = Runtime::open(db.clone(), RuntimeConfig::default().max_instances(8)).unwrap();
    rt.deploy("empty", EMPTY.as_bytes(), FunctionConfig::default())
        .unwrap();
    rt.deploy(
        "probe",
        call_loop::CALL_LOOP.as_bytes(),
        FunctionConfig::default(),
    )
    .unwrap();
    let tree = db.open_tree("ns/probe").unwrap().unwrap();
    db.put(tree, b"key", &[5u8; 100]).unwrap();
    let (name, input) = match mode {
        "empty" => ("empty", Vec::new()),
        "get" => ("probe", call_loop::input(1000, call_loop::GET)),
        "put" => ("probe", call_loop::input(1000, call_loop::PUT)),
        m => panic!("unknown mode {m}"),
    };
    for _ in 0..n {
        rt.invoke(name, &input).unwrap();
    }
}
