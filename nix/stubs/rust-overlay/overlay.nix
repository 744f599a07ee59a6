# STUB for an offline check (.ci/nix-check): rust-overlay's `rust-bin` for the one pinned release Rime uses. Unknown components or targets are errors, as in rust-overlay.
final: prev:
let
  release = "1.95.0";
  hostTarget =
    {
      x86_64-linux = "x86_64-unknown-linux-gnu";
      aarch64-linux = "aarch64-unknown-linux-gnu";
    }
    .${prev.system} or (throw "rust-overlay stub: no host target for ${prev.system}");

  # Component names (and -preview aliases) of a current stable manifest.
  components = [
    "cargo"
    "clippy"
    "clippy-preview"
    "llvm-bitcode-linker"
    "llvm-tools"
    "llvm-tools-preview"
    "miri"
    "miri-preview"
    "rust-analysis"
    "rust-analyzer"
    "rust-analyzer-preview"
    "rust-docs"
    "rust-src"
    "rust-std"
    "rustc"
    "rustc-dev"
    "rustc-docs"
    "rustfmt"
    "rustfmt-preview"
  ];

  # A few tier 1/2 targets with a rust-std in the manifest.
  knownTargets = [
    "x86_64-unknown-linux-gnu"
    "aarch64-unknown-linux-gnu"
    "x86_64-unknown-linux-musl"
    "aarch64-unknown-linux-musl"
    "wasm32-unknown-unknown"
    "wasm32-wasip1"
    "wasm32-wasip2"
    "x86_64-apple-darwin"
    "aarch64-apple-darwin"
  ];

  profiles = {
    minimal = [
      "rustc"
      "cargo"
      "rust-std"
    ];
    default = [
      "rustc"
      "cargo"
      "rust-std"
      "rust-docs"
      "rustfmt"
      "clippy"
    ];
  };

  check =
    kind: known: xs:
    let
      bad = builtins.filter (x: !(builtins.elem x known)) xs;
    in
    if bad == [ ] then
      true
    else
      throw "rust-overlay stub: ${kind} `${builtins.concatStringsSep "`, `" bad}` doesn't exist in Rust ${release}";

  mkToolchain =
    profile:
    {
      extensions ? [ ],
      targets ? [ ],
      targetExtensions ? [ ],
    }:
    assert check "component" components extensions;
    assert check "target" knownTargets targets;
    assert check "component" components targetExtensions;
    prev.stdenv.mkDerivation {
      pname = "rust-${profile}";
      version = release;
      stubComponents = profiles.${profile} ++ extensions;
      passthru = {
        # Targets this toolchain has a std for; the crane stub checks
        # `--target` arguments against it.
        stubTargets = [ hostTarget ] ++ targets;
        override = mkToolchain profile;
      };
    };

  toolchainSet = {
    minimal = mkToolchain "minimal" { };
    default = mkToolchain "default" { };
    rustc = mkToolchain "minimal" { };
    cargo = mkToolchain "minimal" { };
  };
in
{
  rust-bin = {
    distRoot = "https://static.rust-lang.org/dist";
    stable = {
      ${release} = toolchainSet;
      latest = toolchainSet;
    };
  };
}
