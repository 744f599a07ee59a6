# Wires the package expressions of one system together. Called from flake.nix;
# every input is passed in, nothing is fetched here.
{
  nixpkgs,
  crane,
  rust-overlay,
  system,
}:
let
  pkgs = import nixpkgs {
    inherit system;
    overlays = [ rust-overlay.overlays.default ];
  };
  inherit (pkgs) lib;

  toolchains = import ./toolchain.nix;

  # Builds and checks use the lean toolchain; the dev shell adds rust-src and
  # rust-analyzer on top of the same pinned release.
  craneLib = (crane.mkLib pkgs).overrideToolchain toolchains.build;
  craneLibDev = (crane.mkLib pkgs).overrideToolchain toolchains.dev;

  workspaceToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  version = workspaceToml.workspace.package.version;

  sources = import ./source.nix { inherit lib craneLib; };

  guests = pkgs.callPackage ./guests.nix {
    inherit craneLib version;
    src = sources.guests;
  };

  # Arguments shared by every derivation over the host workspace, so that they
  # all reuse one dependency build (`cargoArtifacts`).
  commonArgs = {
    pname = "rime-workspace";
    inherit version;
    src = sources.workspace;
    strictDeps = true;
    # The lock file is the only source of crate versions; crane vendors the
    # crates it lists as fixed-output derivations before the build starts.
    cargoExtraArgs = "--locked";
    # The C compiler for bufmgr's `cc` build script comes from stdenv.
    nativeBuildInputs = [ ];
    buildInputs = [ ];
  };

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  rime = pkgs.callPackage ./rime.nix {
    inherit
      craneLib
      commonArgs
      cargoArtifacts
      guests
      ;
  };

  demo = pkgs.writeShellScriptBin "rime-demo" ''
    exec ${rime}/bin/rime demo "$@"
  '';

  checks = import ./checks.nix {
    inherit
      lib
      craneLib
      commonArgs
      cargoArtifacts
      rime
      guests
      sources
      version
      ;
  };

  devShell = pkgs.callPackage ./devshell.nix {
    craneLib = craneLibDev;
    inherit checks;
  };
in
{
  inherit
    pkgs
    rime
    guests
    demo
    checks
    devShell
    ;
}
