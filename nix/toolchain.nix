# The Rust toolchain, from rust-overlay. One pinned stable release for every
# derivation and the dev shell, so `nix build` and `nix develop` agree with
# each other and with the release the project is developed on (1.95; wasmtime
# 48.x is the newest release that builds with it, see /DESIGN.md).
#
# Each attribute is a function of an instantiated nixpkgs that carries the
# rust-overlay overlay; crane's `overrideToolchain` accepts exactly that.
let
  release = "1.95.0";
  targets = [ "wasm32-unknown-unknown" ];
in
{
  inherit release targets;

  # rustc, cargo, rust-std (host + wasm32), clippy, rustfmt.
  build =
    p:
    p.rust-bin.stable.${release}.minimal.override {
      extensions = [
        "clippy"
        "rustfmt"
      ];
      inherit targets;
    };

  # The rustup "default" profile plus sources and the language server.
  dev =
    p:
    p.rust-bin.stable.${release}.default.override {
      extensions = [
        "rust-src"
        "rust-analyzer"
      ];
      inherit targets;
    };
}
