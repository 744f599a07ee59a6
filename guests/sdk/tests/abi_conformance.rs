//! `docs/abi.md` against `rime-abi` (the ABI's one definition in code, which
//! the host and this SDK share): the import table, the limits and the error
//! codes say the same in both.
//!
//! Then the built example modules against both: every import is in the
//! table with exactly its signature, the documented exports exist with
//! their types, and together the examples use every import. That part
//! needs the modules: `cargo build --release` in `guests/` first (or
//! `RIME_GUESTS_DIR` pointing at them). Without them it says so and
//! passes, unless `RIME_REQUIRE_GUESTS=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use wasmparser::{CompositeInnerType, ExternalKind, Parser, Payload, TypeRef, ValType};

const EXAMPLES: [&str; 6] = ["counter", "bank", "pushdown", "kv", "hostile", "probe"];
/// Regression guard on module size: the examples are 20-37 KiB today.
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

fn abi_md() -> String {
    std::fs::read_to_string(manifest_dir().join("../../docs/abi.md")).expect("docs/abi.md")
}

/// The text of docs/abi.md's section `heading`, up to the next `## `.
fn section(doc: &str, heading: &str) -> String {
    let s = doc
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("docs/abi.md has no section {heading:?}"));
    s.split("\n## ").next().unwrap().to_string()
}

/// The cells of the table rows of `text` (header and rule rows included).
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            cells[1..cells.len() - 1]
                .iter()
                .map(|c| c.to_string())
                .collect()
        })
        .collect()
}

/// The import table of docs/abi.md: name -> signature.
fn documented_imports() -> BTreeMap<String, Sig> {
    let section = section(&abi_md(), "Imports (module `rime`)");
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
        rime_abi::IMPORTS.len(),
        "expected the {} imports of ABI v1, parsed {table:?}",
        rime_abi::IMPORTS.len()
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

/// `rime_abi::IMPORTS` as signatures.
fn crate_imports() -> BTreeMap<String, Sig> {
    let ty = |t: &rime_abi::ValType| match t {
        rime_abi::ValType::I32 => ValType::I32,
        rime_abi::ValType::I64 => ValType::I64,
    };
    rime_abi::IMPORTS
        .iter()
        .map(|i| {
            let sig = (
                i.params.iter().map(ty).collect(),
                i.results.iter().map(ty).collect(),
            );
            (i.name.to_string(), sig)
        })
        .collect()
}

#[test]
fn the_import_table_of_abi_md_is_rime_abi_s() {
    assert_eq!(documented_imports(), crate_imports());
    assert!(abi_md().contains(&format!(
        "## Imports (module `{}`)",
        rime_abi::IMPORT_MODULE
    )));
}

#[test]
fn the_error_codes_of_abi_md_are_rime_abi_s() {
    let documented: Vec<(i32, String)> = rows(&section(&abi_md(), "Error codes (negative `i32`)"))
        .into_iter()
        .filter_map(|r| Some((r[0].parse().ok()?, r[1].trim_matches('`').to_string())))
        .collect();
    let defined: Vec<(i32, String)> = rime_abi::ERRORS
        .iter()
        .map(|(c, n)| (*c, n.to_string()))
        .collect();
    assert_eq!(documented, defined);
}

/// A size as docs/abi.md writes it: `512 B`, `16 MiB − 8 B`, `16`.
fn size(text: &str) -> usize {
    let term = |t: &str| -> usize {
        let (n, unit) = t.trim().split_once(' ').unwrap_or((t.trim(), ""));
        let n: usize = n.parse().unwrap_or_else(|_| panic!("size {text:?}"));
        n * match unit {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            other => panic!("unit {other:?} in {text:?}"),
        }
    };
    match text.split_once(" − ") {
        Some((a, b)) => term(a) - term(b),
        None => term(text),
    }
}

#[test]
fn the_limits_of_abi_md_are_rime_abi_s() {
    use rime_abi::*;
    let documented: BTreeMap<String, usize> = rows(&section(&abi_md(), "Limits"))
        .into_iter()
        .skip(2)
        .map(|r| (r[0].trim_matches('`').to_string(), size(&r[1])))
        .collect();
    let defined: BTreeMap<String, usize> = [
        ("MAX_KEY_LEN", MAX_KEY_LEN),
        ("MAX_VALUE_LEN", MAX_VALUE_LEN),
        ("MAX_INPUT_LEN", MAX_INPUT_LEN),
        ("MAX_OUTPUT_LEN", MAX_OUTPUT_LEN),
        ("MAX_NAMESPACE_LEN", MAX_NAMESPACE_LEN),
        ("MAX_OPEN_NAMESPACES", MAX_OPEN_NAMESPACES),
        ("MAX_WRITE_SET_BYTES", MAX_WRITE_SET_BYTES),
        ("WRITE_SET_ENTRY_OVERHEAD", WRITE_SET_ENTRY_OVERHEAD),
        ("MAX_WRITTEN_BYTES", MAX_WRITTEN_BYTES),
        ("MAX_LOG_LEN", MAX_LOG_LEN),
        ("MAX_LOG_BYTES_PER_INVOCATION", MAX_LOG_BYTES_PER_INVOCATION),
        ("MAX_LOG_LINES_PER_INVOCATION", MAX_LOG_LINES_PER_INVOCATION),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    assert_eq!(documented, defined);
}

#[test]
fn examples_match_docs_abi_md() {
    let documented = crate_imports();
    assert_eq!(documented, documented_imports());
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
                import_module,
                rime_abi::IMPORT_MODULE,
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
            module.exports.get(rime_abi::EXPORT_MEMORY),
            Some(&(ExternalKind::Memory, None)),
            "{name}: memory export"
        );
        let invoke = (ExternalKind::Func, Some((vec![], vec![ValType::I32])));
        assert_eq!(
            module.exports.get(rime_abi::EXPORT_INVOKE),
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
