# STUB for an offline check (.ci/nix-check): the package set of the nixpkgs stub. Every derivation is a real `derivation` (so it instantiates and its attributes must coerce to strings as in stdenv), but its builder only says it is a stub and fails.
{
  lib,
  system,
  final,
}:
let
  stubBuilder = [
    "-c"
    "echo 'stub derivation from nix/stubs (offline evaluation check): it cannot be built' >&2; exit 1"
  ];

  # stdenv.mkDerivation: attrs or (finalAttrs: attrs). passthru and meta stay
  # out of the derivation; every other attribute becomes an environment
  # variable, so (as in nixpkgs) a function or a plain attrset there is an error.
  mkDerivation =
    fnOrAttrs:
    let
      attrs = if builtins.isFunction fnOrAttrs then fnOrAttrs result else fnOrAttrs;
      name =
        attrs.name or (
          if attrs ? pname && attrs ? version then
            "${attrs.pname}-${attrs.version}"
          else
            throw "stub mkDerivation: neither `name` nor both `pname` and `version` were given"
        );
      envAttrs = removeAttrs attrs [
        "passthru"
        "meta"
        "env"
        "name"
      ];
      drv = derivation (
        envAttrs
        // (attrs.env or { })
        // {
          inherit name system;
          builder = "/bin/sh";
          args = stubBuilder;
        }
      );
      meta = attrs.meta or { };
      result =
        drv
        // (attrs.passthru or { })
        // {
          inherit meta;
          passthru = attrs.passthru or { };
          # f is prev: {..} or finalAttrs: prev: {..}; both get the old attrs.
          overrideAttrs =
            f:
            let
              r = f attrs;
            in
            mkDerivation (attrs // (if builtins.isFunction r then r attrs else r));
        };
    in
    assert builtins.isAttrs meta;
    result;

  simple =
    pname:
    mkDerivation {
      inherit pname;
      version = "stub";
      meta.mainProgram = pname;
    };
in
{
  inherit lib system;

  stdenv = {
    inherit mkDerivation;
    isLinux = lib.hasSuffix "-linux" system;
    isDarwin = lib.hasSuffix "-darwin" system;
    hostPlatform = {
      inherit system;
      isLinux = lib.hasSuffix "-linux" system;
      rust.rustcTarget =
        {
          x86_64-linux = "x86_64-unknown-linux-gnu";
          aarch64-linux = "aarch64-unknown-linux-gnu";
        }
        .${system} or (throw "nixpkgs stub: no Rust target for ${system}");
    };
    cc = simple "gcc-wrapper";
  };

  # callPackage: the function's formal arguments are filled from the package
  # set, then overridden by the caller's; a missing required one is an error.
  callPackage =
    fn: overrides:
    let
      f = if builtins.isFunction fn then fn else import fn;
      auto = builtins.intersectAttrs (builtins.functionArgs f) final;
      result = f (auto // overrides);
    in
    if builtins.isAttrs result then
      result
      // {
        override = more: final.callPackage fn (overrides // more);
      }
    else
      result;

  mkShell =
    {
      name ? "nix-shell",
      packages ? [ ],
      inputsFrom ? [ ],
      buildInputs ? [ ],
      nativeBuildInputs ? [ ],
      shellHook ? "",
      ...
    }@args:
    assert builtins.all lib.isDerivation packages;
    assert builtins.all lib.isDerivation inputsFrom;
    mkDerivation (
      removeAttrs args [
        "packages"
        "inputsFrom"
      ]
      // {
        inherit name;
        nativeBuildInputs = nativeBuildInputs ++ packages;
        stubInputsFrom = inputsFrom;
      }
    );

  writeShellScriptBin =
    name: text:
    assert builtins.isString text;
    mkDerivation {
      inherit name text;
      meta.mainProgram = name;
    };

  makeWrapper = simple "make-shell-wrapper-hook";
  rsync = simple "rsync";
  zstd = simple "zstd";
  cargo = simple "cargo";
  rustc = simple "rustc";
  clippy = simple "clippy";
  rustfmt = simple "rustfmt";
  cargo-nextest = simple "cargo-nextest";
  wasm-tools = simple "wasm-tools";
  curl = simple "curl";
  jq = simple "jq";
}
