//! The built example modules against `docs/abi.md`: every import is in the
//! documented table with exactly its signature, the documented exports exist
//! with their types, and together the examples use every import.
//!
//! Needs the modules: `cargo build --release` in `guests/` first (or
//! `RIME_GUESTS_DIR` pointing at them). Without them the test says so and
//! passes, unless `RIME_REQUIRE_GUESTS=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use wasmparser::{CompositeInnerType, ExternalKind, Parser, Payload, TypeRef, ValType};

const EXAMPLES: [&str; 5] = ["counter", "bank", "pushdown", "kv", "hostile"];
/// Regression guard on module size: the examples are 19-32 KiB today.
const SIZE_BUDGET: usize = 64 << 10;

/// (params, results)
type Sig = (Vec<ValType>, Vec<ValType>);

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn val_type(name: &str) -> ValType {
    match name {
        "i32" => ValType::I32,
        "i64" => ValType::I64,
        other => panic!("docs/abi.md uses unexpected type {other:?}"),
    }
}

/// Parses `(a: i32, b: i64) -> i32` into a signature.
fn parse_sig(text: &str) -> Sig {
    let (params, results) = text.split_once(" -> ").unwrap_or((text, ""));
    let params = params.trim_start_matches('(').trim_end_matches(')');
    let params = params
        .split(", ")
        .filter(|p| !p.is_empty())
        .map(|p| val_type(p.split_once(": ").unwrap().1));
    (
        params.collect(),
        results
            .split(", ")
            .filter(|r| !r.is_empty())
            .map(val_type)
            .collect(),
    )
}

/// The import table of docs/abi.md: name -> signature.
fn documented_imports() -> BTreeMap<String, Sig> {
    let doc =
        std::fs::read_to_string(manifest_dir().join("../../docs/abi.md")).expect("docs/abi.md");
    let section = doc
        .split("## Imports (module `rime`)")
        .nth(1)
        .expect("imports section");
    let section = section.split("\n## ").next().unwrap();
    let mut table = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, name, sig, _] = cells.as_slice() else {
            continue;
        };
        let (Some(name), Some(sig)) = (name.strip_prefix('`'), sig.strip_prefix("`(")) else {
            continue;
        };
        let sig = parse_sig(&format!("({}", sig.trim_end_matches('`')));
        table.insert(name.trim_end_matches('`').to_string(), sig);
    }
    assert_eq!(
        table.len(),
        10,
        "expected the 10 imports of ABI v1, parsed {table:?}"
    );
    table
}

/// What the checks need from one module.
#[derive(Default)]
struct Module {
    imports: Vec<(String, String, Sig)>,
    /// name -> (kind, signature for functions)
    exports: BTreeMap<String, (ExternalKind, Option<Sig>)>,
    memories: Vec<bool>, // memory64 flags
}

fn read_module(bytes: &[u8]) -> Module {
    let mut types = Vec::new();
    let mut func_types = Vec::new(); // type index per function index
    let mut exports = Vec::new();
    let mut module = Module::default();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.expect("valid wasm") {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for ty in group.unwrap().into_types() {
                        let CompositeInnerType::Func(f) = ty.composite_type.inner else {
                            panic!("non-func type")
                        };
                        types.push((f.params().to_vec(), f.results().to_vec()));
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.unwrap();
                    let TypeRef::Func(ty) = import.ty else {
                        panic!("non-function import {}", import.name)
                    };
                    func_types.push(ty);
                    let sig = types[ty as usize].clone();
                    module
                        .imports
                        .push((import.module.to_string(), import.name.to_string(), sig));
                }
            }
            Payload::FunctionSection(reader) => {
                func_types.extend(reader.into_iter().map(Result::unwrap))
            }
            Payload::MemorySection(reader) => module
                .memories
                .extend(reader.into_iter().map(|m| m.unwrap().memory64)),
            Payload::ExportSection(reader) => exports.extend(reader.into_iter().map(|e| {
                let e = e.unwrap();
                (e.name.to_string(), e.kind, e.index)
            })),
            _ => {}
        }
    }
    for (name, kind, index) in exports {
        let sig = (kind == ExternalKind::Func)
            .then(|| types[func_types[index as usize] as usize].clone());
        module.exports.insert(name, (kind, sig));
    }
    module
}

#[test]
fn examples_match_docs_abi_md() {
    let documented = documented_imports();
    let dir = std::env::var_os("RIME_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../target/wasm32-unknown-unknown/release"));
    if !EXAMPLES
        .iter()
        .any(|n| dir.join(format!("{n}.wasm")).exists())
    {
        assert!(
            std::env::var_os("RIME_REQUIRE_GUESTS").is_none(),
            "no modules in {}",
            dir.display()
        );
        eprintln!(
            "abi_conformance: no modules in {}; run `cargo build --release` in guests/ first",
            dir.display()
        );
        return;
    }

    let mut used = BTreeSet::new();
    for name in EXAMPLES {
        let path = dir.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            bytes.len() <= SIZE_BUDGET,
            "{name}.wasm is {} bytes",
            bytes.len()
        );
        let module = read_module(&bytes);

        for (import_module, import, sig) in &module.imports {
            assert_eq!(
                import_module, "rime",
                "{name}: import {import} from {import_module}"
            );
            let want = documented
                .get(import)
                .unwrap_or_else(|| panic!("{name}: undocumented import {import}"));
            assert_eq!(sig, want, "{name}: signature of {import}");
            used.insert(import.clone());
        }
        assert_eq!(module.memories, [false], "{name}: one 32-bit memory");
        assert_eq!(
            module.exports.get("memory"),
            Some(&(ExternalKind::Memory, None)),
            "{name}: memory export"
        );
        let invoke = (ExternalKind::Func, Some((vec![], vec![ValType::I32])));
        assert_eq!(
            module.exports.get("rime_invoke"),
            Some(&invoke),
            "{name}: rime_invoke() -> i32"
        );
        eprintln!(
            "{name}.wasm: {} bytes, imports {:?}",
            bytes.len(),
            module.imports.iter().map(|i| &i.1).collect::<Vec<_>>()
        );
    }
    let unused: Vec<_> = documented.keys().filter(|k| !used.contains(*k)).collect();
    assert!(unused.is_empty(), "no example uses {unused:?}");
}
