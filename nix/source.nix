# What of the tree goes into each build. Everything is filtered so that editing
# docs, Nix files or anything under target/ does not rebuild Rust code.
{ lib, craneLib }:
let
  root = ../.;

  # Besides what crane keeps (*.rs, *.toml, Cargo.lock, .cargo/config):
  # C and assembly for bufmgr's jump points (built by the `cc` crate),
  # Markdown for `include_str!` docs, WebAssembly text test fixtures, and
  # the `rime new` templates (cli/templates/, `include_str!`).
  extraSuffixes = [
    ".c"
    ".h"
    ".S"
    ".md"
    ".wat"
    ".tmpl"
  ];

  # Relative path of `path` below `base` ("" for base itself).
  relTo = base: path: lib.removePrefix "/" (lib.removePrefix (toString base) (toString path));

  isBuildOutput =
    rel:
    lib.any (dir: rel == dir || lib.hasPrefix "${dir}/" rel) [
      "target"
      "guests/target"
      "result"
      "rime-data"
    ];

  # What the guests build sees: its workspace and its path dependencies
  # outside it (guests/Cargo.toml, `[workspace.dependencies]`).
  guestsDirs = [
    "guests"
    "abi"
  ];

  isNixFile = rel: rel == "nix" || lib.hasPrefix "nix/" rel || lib.hasSuffix ".nix" rel || rel == "flake.lock";

  keep =
    base: path: type:
    let
      rel = relTo base path;
    in
    !(isBuildOutput rel)
    && !(isNixFile rel)
    && (craneLib.filterCargoSources path type || lib.any (s: lib.hasSuffix s rel) extraSuffixes);
in
{
  # The host workspace. guests/ sources are kept too (not their target/), in
  # case a host crate refers to a guest crate by path; they are small.
  workspace = lib.cleanSourceWith {
    src = root;
    filter = keep root;
    name = "rime-source";
  };

  # The wasm32 guests workspace (guests/, its own Cargo.lock, built on its
  # own) and the one crate outside it that it depends on by path: abi/
  # (rime-abi, the ABI's definition, shared with the host). cargo runs in
  # guests/ of this source (nix/guests.nix).
  guests = lib.cleanSourceWith {
    src = root;
    filter =
      path: type:
      let
        rel = relTo root path;
      in
      lib.any (dir: rel == dir || lib.hasPrefix "${dir}/" rel) guestsDirs && keep root path type;
    name = "rime-guests-source";
  };
}
