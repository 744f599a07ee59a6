//! Embeds the guest SDK's sources for `rime new`, which copies them into a
//! new crate's `vendor/` (the SDK is not on crates.io): `rime-abi`
//! (`abi/`, whose manifest is self-contained), `rime-sdk` (`guests/sdk`)
//! and `rime-sdk-macros` (`guests/macros`), whose manifests inherit from
//! the guests' workspace and are written out in `cli/templates/vendor/`.
//! The result is `$OUT_DIR/sdk_files.rs`: `(path in the new crate, text)`
//! for every file, in a stable order.

use std::path::{Path, PathBuf};

/// (source directory below the repository root, path in the new crate).
const SOURCES: [(&str, &str); 3] = [
    ("abi/src", "vendor/rime-abi/src"),
    ("guests/sdk/src", "vendor/rime-sdk/src"),
    ("guests/macros/src", "vendor/rime-sdk-macros/src"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.join("..");
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    for (from, to) in SOURCES {
        let dir = root.join(from);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files = Vec::new();
        walk(&dir, &mut files);
        files.sort();
        for file in files {
            let rel = file.strip_prefix(&dir).expect("below its directory");
            entries.push((format!("{to}/{}", rel.display()), file));
        }
    }
    let abi_manifest = root.join("abi/Cargo.toml");
    println!("cargo:rerun-if-changed={}", abi_manifest.display());
    entries.push(("vendor/rime-abi/Cargo.toml".into(), abi_manifest));
    let mut out = String::from("&[\n");
    for (to, from) in &entries {
        let from = from.canonicalize().expect("an existing file");
        out += &format!(
            "    ({to:?}, include_str!({:?})),\n",
            from.display().to_string()
        );
    }
    out += "]\n";
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out_dir.join("sdk_files.rs"), out).expect("writing sdk_files.rs");
}

/// Every `.rs` file below `dir`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the guest SDK's sources)", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}
