# STUB for an offline check (.ci/nix-check): stands in for github:oxalica/rust-overlay; `overlays.default` adds a `rust-bin` with rust-overlay's names and `override` arguments, building nothing.
{
  description = "offline-check stub of rust-overlay (not rust-overlay)";

  # As the real flake: one input, nixpkgs, which Rime's flake makes follow its own.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";

  outputs =
    { self, nixpkgs }:
    {
      overlays.default = import ./overlay.nix;
      overlays.rust-overlay = import ./overlay.nix;
    };
}
