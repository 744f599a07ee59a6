//! `rime new` and `rime build`: a guest crate from the templates embedded
//! in the binary (`cli/templates/`), and its build for wasm32 with the
//! checks that turn cargo's silent surprises (an `.rlib` and no `.wasm`)
//! into a sentence saying what to fix.
//!
//! The SDK is not on crates.io, so a new crate's `rime-sdk` dependency is,
//! in order: the `--sdk DIR` given; else a path dependency on the SDK in
//! the source tree this binary was built from, when that tree is still
//! there (works offline and matches this binary's ABI exactly); else a git
//! dependency on the repository in the package metadata (needs the network
//! and a published repository).

mod meta;

use crate::env::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The only target faaslets are built for (host ABI v1).
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Longest crate/function name `rime new` accepts: a function name's limit.
const MAX_NAME_LEN: usize = rime_faas::limits::MAX_NAMESPACE_LEN;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on the `rime-sdk` guest SDK.
    Rust,
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// Function and crate name: a lowercase letter, then lowercase letters,
    /// digits, `_` or `-`
    /// (at most 64 bytes).
    name: String,
    /// The guest language.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Directory to create (default: ./NAME). Must not exist.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The SDK crate to depend on by path (a checkout's `guests/sdk`).
    /// Default: the source tree this binary was built from, else git.
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The guest crate's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// The Rust template's files: (path in the new crate, template text).
const RUST_TEMPLATE: [(&str, &str); 5] = [
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/lib.rs.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/rust/README.md.tmpl"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../templates/rust/cargo-config.toml.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/rust/gitignore.tmpl"),
    ),
];

pub fn new(a: &NewArgs) -> Result<()> {
    let Lang::Rust = a.lang;
    check_name(&a.name)?;
    let dir = a.dir.clone().unwrap_or_else(|| PathBuf::from(&a.name));
    if dir.exists() {
        return Err(format!(
            "{} already exists: choose another name or --dir (nothing was written)",
            dir.display()
        )
        .into());
    }
    let (sdk_dep, sdk_note) = sdk_dependency(a.sdk.as_deref())?;
    let lib = a.name.replace('-', "_");
    let vars = [
        ("name", a.name.as_str()),
        ("crate", a.name.as_str()),
        ("lib", lib.as_str()),
        ("sdk_dep", sdk_dep.as_str()),
        ("sdk_note", sdk_note.as_str()),
        ("sdk_comment", &comment(&sdk_note)),
        ("host", &host_triple()),
    ];
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    // create_dir, not create_dir_all: refuses a directory made meanwhile.
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for (path, template) in RUST_TEMPLATE {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&file, render(template, &vars))
            .map_err(|e| format!("writing {}: {e}", file.display()))?;
    }
    let shown = dir.display();
    println!("created {shown}: the Rust faaslet `{}`", a.name);
    println!("  cd {shown} && rime build");
    println!(
        "  rime deploy {} target/{WASM_TARGET}/release/{lib}.wasm",
        a.name
    );
    println!("  rime invoke {} --input ada", a.name);
    Ok(())
}

/// A name that is both a valid crate name and a valid function name.
fn check_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: use a lowercase letter, then lowercase letters, digits, `_` \
             or `-`, at most {MAX_NAME_LEN} bytes (it names the crate and the function)"
        )
        .into())
    }
}

/// The `rime-sdk = ...` value and a sentence saying where it points.
fn sdk_dependency(given: Option<&Path>) -> Result<(String, String)> {
    if let Some(dir) = given {
        let dir = sdk_dir(dir).ok_or_else(|| {
            format!(
                "--sdk {}: no rime-sdk crate there (expected a checkout's guests/sdk)",
                dir.display()
            )
        })?;
        let dep = format!("{{ path = {} }}", toml_string(&dir.to_string_lossy()));
        return Ok((
            dep,
            "a path dependency on the SDK given to `rime new --sdk`.".into(),
        ));
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/sdk");
    if let Some(dir) = sdk_dir(&built_from) {
        let dep = format!("{{ path = {} }}", toml_string(&dir.to_string_lossy()));
        let note = "a path dependency on the SDK in the Rime source tree this `rime` was built \
                    from: it works offline and matches that binary's ABI. Moving the crate to \
                    another machine: point it at that machine's checkout, or use git.";
        return Ok((dep, note.into()));
    }
    let repo = env!("CARGO_PKG_REPOSITORY");
    let dep = format!("{{ git = {} }}", toml_string(repo));
    let note = "a git dependency on the Rime repository (needs the network); with a local \
                checkout, `{ path = \"CHECKOUT/guests/sdk\" }` works offline.";
    Ok((dep, note.into()))
}

/// `dir`, made absolute, if it holds the `rime-sdk` crate.
fn sdk_dir(dir: &Path) -> Option<PathBuf> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let is_sdk = manifest
        .lines()
        .any(|l| l.replace(' ', "") == "name=\"rime-sdk\"");
    if is_sdk {
        dir.canonicalize().ok()
    } else {
        None
    }
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// This machine's target triple (for the native `test-host` alias).
fn host_triple() -> String {
    let out = Command::new("rustc").arg("-vV").output().ok();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.as_deref()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("host: ")))
        .map(str::to_string)
        // Without rustc nothing builds anyway; the alias names the fix.
        .unwrap_or_else(|| "HOST-TRIPLE-FROM-rustc-vV".into())
}

/// Width of the comments `rime new` writes into `Cargo.toml`.
const COMMENT_COLUMNS: usize = 76;

/// `text` as `# ` comment lines of at most [`COMMENT_COLUMNS`].
fn comment(text: &str) -> String {
    let mut lines = vec![String::from("#")];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("one line at least");
        if last.len() > 1 && last.len() + 1 + word.len() > COMMENT_COLUMNS {
            lines.push(format!("# {word}"));
        } else {
            last.push(' ');
            last.push_str(word);
        }
    }
    lines.join("\n")
}

/// `template` with each `{{key}}` replaced.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

pub fn build(a: &BuildArgs) -> Result<()> {
    let manifest = a.dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!(
            "no Cargo.toml in {}: give the directory of a crate made by `rime new`",
            a.dir.display()
        )
        .into());
    }
    let krate = meta::read(&cargo(), &manifest)?;
    if !krate.cdylib {
        return Err(format!(
            "{} has no [lib] crate-type = [\"cdylib\"]: the build would make an .rlib, not a \
             .wasm. Add to it:\n\n[lib]\ncrate-type = [\"cdylib\"]",
            manifest.display()
        )
        .into());
    }
    check_wasm_target()?;
    let status = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status}); its errors are above").into());
    }
    let wasm = krate
        .target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", krate.lib_name));
    let bytes = std::fs::read(&wasm).map_err(|e| {
        format!(
            "cargo succeeded but {} is missing ({e}): is a target other than \
             {WASM_TARGET} forced (CARGO_BUILD_TARGET)?",
            wasm.display()
        )
    })?;
    if !bytes.starts_with(b"\0asm") {
        return Err(format!("{} is not a wasm module (bad magic)", wasm.display()).into());
    }
    println!("{}", wasm.display());
    Ok(())
}

/// The cargo that runs `rime` (when under cargo), else the one on PATH.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// With rustup: the wasm32 target must be installed (without it cargo's
/// error is "can't find crate for `core`"). Without rustup: cargo says.
fn check_wasm_target() -> Result<()> {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && !installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Err(format!(
            "the {WASM_TARGET} target is not installed: run `rustup target add {WASM_TARGET}`"
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_a_crate_and_a_function() {
        for good in ["hello", "url-shortener", "a_1"] {
            check_name(good).unwrap();
        }
        for bad in ["", "Hello", "1st", "a.b", "a b", &"x".repeat(65)] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("invalid name"), "{bad}: {e}");
        }
    }

    #[test]
    fn templates_render_every_placeholder() {
        let vars = [
            ("name", "n"),
            ("crate", "n"),
            ("lib", "n"),
            ("sdk_dep", "{ path = \"/x\" }"),
            ("sdk_note", "note"),
            ("sdk_comment", "# note"),
            ("host", "h"),
        ];
        for (path, template) in RUST_TEMPLATE {
            let text = render(template, &vars);
            assert!(!text.contains("{{"), "{path} keeps a placeholder:\n{text}");
        }
        assert_eq!(toml_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        let c = comment(&"word ".repeat(40));
        assert!(
            c.lines()
                .all(|l| l.starts_with("# ") && l.len() <= COMMENT_COLUMNS),
            "{c}"
        );
    }
}
