# STUB for an offline check (.ci/nix-check): the `import nixpkgs { system; overlays; }` entry point of the nixpkgs stub, with overlays applied as nixpkgs applies them (a fixpoint of final/prev layers).
{
  system,
  overlays ? [ ],
  config ? { },
  crossSystem ? null,
  localSystem ? null,
}:
let
  lib = import ./lib.nix;
  base = final: import ./pkgs.nix { inherit lib system final; };
  layered = builtins.foldl' (acc: overlay: lib.extends overlay acc) base overlays;
in
assert builtins.isList overlays;
assert builtins.all builtins.isFunction overlays;
lib.fix layered
