# STUB for an offline check (.ci/nix-check): stands in for github:ipetkov/crane; `mkLib pkgs` returns the crane functions Rime's flake uses, with crane's names and arguments, building nothing.
{
  description = "offline-check stub of crane (not crane)";

  outputs =
    { self }:
    {
      mkLib = pkgs: import ./lib.nix { inherit pkgs; };
    };
}
