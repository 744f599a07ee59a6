//! What `rime build` needs to know about a crate, from `cargo metadata`
//! (cargo's own reading of the manifest, so workspaces, `[lib] name` and
//! `CARGO_TARGET_DIR` are all accounted for).

use crate::env::Result;
use serde::Deserialize;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The crate at one manifest.
#[derive(Debug)]
pub struct Krate {
    /// Its library's name as a file name (`-` as `_`).
    pub lib_name: String,
    /// The library is a `cdylib`, which is what becomes a `.wasm`.
    pub cdylib: bool,
    /// Where cargo puts the build's outputs.
    pub target_dir: PathBuf,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

/// The crate of `manifest` (a `Cargo.toml`), or what is wrong with it.
pub fn read(cargo: &OsStr, manifest: &Path) -> Result<Krate> {
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .map_err(|e| format!("running cargo: {e} (is Rust installed? https://rustup.rs)"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo cannot read {}:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )
        .into());
    }
    let meta: Metadata = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("unexpected `cargo metadata` output: {e}"))?;
    let wanted = manifest.canonicalize()?;
    let package = meta
        .packages
        .iter()
        .find(|p| p.manifest_path.canonicalize().is_ok_and(|m| m == wanted))
        .ok_or_else(|| {
            format!(
                "{} has no [package]: give the directory of the function's crate, not its workspace",
                manifest.display()
            )
        })?;
    let lib = package
        .targets
        .iter()
        .find(|t| t.crate_types.iter().any(|k| k != "bin"))
        .ok_or_else(|| {
            format!(
                "{} has no library (src/lib.rs): a faaslet is a library with \
                 [lib] crate-type = [\"cdylib\"]",
                manifest.display()
            )
        })?;
    Ok(Krate {
        lib_name: lib.name.replace('-', "_"),
        cdylib: lib.crate_types.iter().any(|k| k == "cdylib"),
        target_dir: meta.target_directory,
    })
}
