//! `rime new` and `rime build`: a guest crate from the templates embedded
//! in the binary (`cli/templates/`), and its build for wasm32 with the
//! checks that turn cargo's silent surprises (an `.rlib` and no `.wasm`)
//! into a sentence saying what to fix.
//!
//! The SDK is not on crates.io, so a new crate's `rime-sdk` dependency is
//! the `--sdk DIR` given (a checkout's `guests/sdk`, for work on the SDK
//! itself), or by default a copy of the SDK written into the crate's
//! `vendor/` (`rime-sdk`, `rime-sdk-macros`, `rime-abi`, embedded in this
//! binary by `build.rs`): it builds offline, wherever the crate is, and
//! matches this binary's host ABI exactly.

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
    /// Default: a copy of this binary's SDK in the crate's `vendor/`.
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The guest crate's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// The SDK's sources for `vendor/`: (path in the new crate, text), from
/// `build.rs`.
const SDK_FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// The vendored crates' manifests that `build.rs` does not copy (theirs
/// inherit from the guests' workspace).
const SDK_MANIFESTS: [(&str, &str); 2] = [
    (
        "vendor/rime-sdk/Cargo.toml",
        include_str!("../../templates/vendor/rime-sdk.Cargo.toml.tmpl"),
    ),
    (
        "vendor/rime-sdk-macros/Cargo.toml",
        include_str!("../../templates/vendor/rime-sdk-macros.Cargo.toml.tmpl"),
    ),
];

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
    let (sdk_dep, sdk_note, vendored) = sdk_dependency(a.sdk.as_deref())?;
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
        write_file(&dir.join(path), &render(template, &vars))?;
    }
    if vendored {
        for (path, text) in SDK_FILES.iter().chain(&SDK_MANIFESTS) {
            write_file(&dir.join(path), text)?;
        }
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

/// Writes `text` to `file`, creating its directory.
fn write_file(file: &Path, text: &str) -> Result<()> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::write(file, text).map_err(|e| format!("writing {}: {e}", file.display()).into())
}

/// The `rime-sdk = ...` value, a sentence saying where it points, and
/// whether it is the copy in `vendor/` (to be written).
fn sdk_dependency(given: Option<&Path>) -> Result<(String, String, bool)> {
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
            false,
        ));
    }
    let note = "a copy of the SDK in vendor/, written by `rime new`: it builds offline, \
                wherever this crate is, and matches the host ABI of the `rime` that wrote it. \
                Keep it with the crate (commit it).";
    Ok(("{ path = \"vendor/rime-sdk\" }".into(), note.into(), true))
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

    /// The vendored SDK carries every source file of the SDK, its macros
    /// and the ABI crate, and its hand-written manifests ask for exactly
    /// the dependencies (versions, features) and features of the guests'
    /// own: a change there that the copy misses fails here.
    #[test]
    fn the_vendored_sdk_matches_the_guests_sdk() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (dir, to) in [
            ("guests/sdk/src", "vendor/rime-sdk/src"),
            ("guests/macros/src", "vendor/rime-sdk-macros/src"),
            ("abi/src", "vendor/rime-abi/src"),
        ] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy();
                let want = format!("{to}/{name}");
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    SDK_FILES.iter().any(|(p, t)| *p == want && *t == text),
                    "{want} is not vendored as it is in {dir}"
                );
            }
        }
        let table = |text: &str| -> toml::Table { text.parse().unwrap() };
        let workspace = table(&std::fs::read_to_string(root.join("guests/Cargo.toml")).unwrap());
        let shared = &workspace["workspace"]["dependencies"];
        for (member, (_, vendored)) in ["guests/sdk", "guests/macros"].iter().zip(SDK_MANIFESTS) {
            let own =
                table(&std::fs::read_to_string(root.join(member).join("Cargo.toml")).unwrap());
            let copy = table(vendored);
            assert_eq!(
                own.get("features"),
                copy.get("features"),
                "{member}: features"
            );
            assert_eq!(own.get("lib"), copy.get("lib"), "{member}: [lib]");
            let deps = own["dependencies"].as_table().unwrap();
            let copied = copy["dependencies"].as_table().unwrap();
            assert_eq!(
                deps.keys().collect::<Vec<_>>(),
                copied.keys().collect::<Vec<_>>(),
                "{member}: dependency names"
            );
            // `"1"` is `{ version = "1" }`.
            let spec_table = |v: &toml::Value| match v.clone() {
                toml::Value::String(v) => {
                    toml::Table::from_iter([("version".to_string(), toml::Value::String(v))])
                }
                toml::Value::Table(t) => t,
                other => panic!("{other:?}"),
            };
            for (name, spec) in deps {
                let c = spec_table(&copied[name]);
                if name.starts_with("rime-") {
                    assert!(
                        c.contains_key("path"),
                        "{member}: {name} is vendored by path"
                    );
                    continue;
                }
                // `name.workspace = true` (+ `optional`): the workspace's spec.
                let mut want = spec_table(&shared[name.as_str()]);
                if let Some(optional) = spec.get("optional") {
                    want.insert("optional".into(), optional.clone());
                }
                assert_eq!(c, want, "{member}: {name}");
            }
        }
    }
}
