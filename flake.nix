{
  description = "Rime: an embedded storage engine and a WebAssembly function runtime in one process";

  # No flake.lock is committed yet: see nix/README.md ("Lock file") for why and
  # for the one command that creates it on a machine with network access.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

    # crane: incremental cargo builds (dependencies built once in their own
    # derivation) and ready-made clippy/fmt/nextest checks. No inputs of its own.
    crane.url = "github:ipetkov/crane";

    # rust-overlay: pinned upstream toolchains with extra targets
    # (wasm32-unknown-unknown) and no hash to maintain per toolchain.
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      crane,
      rust-overlay,
    }:
    let
      # Linux only: the buffer manager needs io_uring, O_DIRECT and
      # Linux madvise semantics.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      perSystem = nixpkgs.lib.genAttrs systems (
        system:
        import ./nix {
          inherit
            nixpkgs
            crane
            rust-overlay
            system
            ;
        }
      );

      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f perSystem.${system});
    in
    {
      packages = forAllSystems (r: {
        default = r.rime;
        rime = r.rime;
        guests = r.guests;
      });

      apps = forAllSystems (r: {
        # `nix run .#demo` is the README's `cargo run --release -- demo`.
        demo = {
          type = "app";
          program = "${r.demo}/bin/rime-demo";
        };
        default = {
          type = "app";
          program = "${r.rime}/bin/rime";
        };
      });

      devShells = forAllSystems (r: {
        default = r.devShell;
      });

      # `nix flake check`: build, tests (nextest + doctests), clippy, rustfmt,
      # for the host workspace and for the wasm32 guests workspace.
      checks = forAllSystems (r: r.checks);
    };
}
