# STUB for an offline check (.ci/nix-check): stands in for github:NixOS/nixpkgs; it has the attribute names and arguments Rime's flake uses, and builds nothing.
{
  description = "offline-check stub of nixpkgs (not nixpkgs)";

  outputs =
    { self }:
    let
      lib = import ./lib.nix;
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (system: import ./. { inherit system; });
    };
}
