# STUB for an offline check (.ci/nix-check): crane's library as Rime's flake calls it. It checks what crane or cargo would reject at evaluation or build time and can be seen without building: a src without Cargo.lock or without a workspace member's Cargo.toml, a --target the toolchain lacks, a missing required argument.
{
  pkgs,
  toolchain ? null,
}:
let
  inherit (pkgs) lib;

  cargo = if toolchain == null then pkgs.cargo else toolchain;
  rustc = if toolchain == null then pkgs.rustc else toolchain;
  clippy = if toolchain == null then pkgs.clippy else toolchain;
  rustfmt = if toolchain == null then pkgs.rustfmt else toolchain;

  # Targets the toolchain carries (the rust-overlay stub records them).
  toolchainTargets = if toolchain == null then null else toolchain.stubTargets or null;

  srcDir = src: toString src;

  words = s: builtins.filter (w: builtins.isString w && w != "") (builtins.split "[ \t\n]+" s);
  targetsIn =
    s:
    let
      ws = words s;
      idx = builtins.genList (i: i) (builtins.length ws);
    in
    builtins.concatMap (
      i:
      let
        w = builtins.elemAt ws i;
      in
      if w == "--target" && i + 1 < builtins.length ws then
        [ (builtins.elemAt ws (i + 1)) ]
      else if lib.hasPrefix "--target=" w then
        [ (lib.removePrefix "--target=" w) ]
      else
        [ ]
    ) idx;

  checkTargets =
    args:
    let
      wanted = targetsIn (args.cargoExtraArgs or "");
      missing = builtins.filter (t: !(builtins.elem t toolchainTargets)) wanted;
    in
    if toolchainTargets == null || missing == [ ] then
      true
    else
      throw "crane stub: cargoExtraArgs asks for --target ${builtins.concatStringsSep "," missing}, which the toolchain (targets: ${builtins.concatStringsSep "," toolchainTargets}) lacks; rustc would fail";

  # cargo reads every workspace member's manifest and every path
  # dependency's (`[workspace.dependencies]`): all must be in src. The
  # workspace is at the root of src, or where `cargoToml` says (a workspace
  # in a subdirectory, entered in postUnpack).
  checkWorkspace =
    args:
    let
      dir = if args ? cargoToml then dirOf (toString args.cargoToml) else srcDir args.src;
      manifest = builtins.fromTOML (builtins.readFile "${dir}/Cargo.toml");
      members = (manifest.workspace or { }).members or [ ];
      plain = builtins.filter (m: !(lib.hasSuffix "*" m)) members;
      missing = builtins.filter (m: !(builtins.pathExists "${dir}/${m}/Cargo.toml")) plain;
      deps = builtins.attrValues ((manifest.workspace or { }).dependencies or { });
      paths = builtins.concatMap (d: if builtins.isAttrs d && d ? path then [ d.path ] else [ ]) deps;
      missingPaths = builtins.filter (p: !(builtins.pathExists "${dir}/${p}/Cargo.toml")) paths;
    in
    if !(builtins.pathExists "${dir}/Cargo.toml") then
      throw "crane stub: no Cargo.toml at ${dir} (the root of src, or cargoToml's directory)"
    else if missing != [ ] then
      throw "crane stub: workspace members without a Cargo.toml in src ${dir}: ${builtins.concatStringsSep ", " missing}; cargo would fail"
    else if missingPaths != [ ] then
      throw "crane stub: path dependencies without a Cargo.toml in src ${dir}: ${builtins.concatStringsSep ", " missingPaths}; cargo would fail"
    else
      true;

  # `--package P --bin B` must name a workspace member P that has binary B
  # (cargo: "package ID specification `P` did not match any packages").
  argAfter =
    flag: s:
    let
      ws = words s;
      idx = builtins.filter (i: builtins.elemAt ws i == flag && i + 1 < builtins.length ws) (
        builtins.genList (i: i) (builtins.length ws)
      );
    in
    if idx == [ ] then null else builtins.elemAt ws (builtins.head idx + 1);

  checkPackage =
    args:
    let
      extra = args.cargoExtraArgs or "";
      pkg = argAfter "--package" extra;
      bin = argAfter "--bin" extra;
      dir = srcDir args.src;
      manifest = builtins.fromTOML (builtins.readFile "${dir}/Cargo.toml");
      members = builtins.filter (m: !(lib.hasSuffix "*" m)) ((manifest.workspace or { }).members or [ ]);
      crates = map (m: builtins.fromTOML (builtins.readFile "${dir}/${m}/Cargo.toml")) members;
      named = builtins.filter (c: (c.package.name or null) == pkg) crates;
      bins = builtins.concatMap (c: map (b: b.name) (c.bin or [ ])) named;
    in
    if pkg == null then
      true
    else if named == [ ] then
      throw "crane stub: --package ${pkg} is not a workspace member; cargo would fail"
    else if bin != null && !(builtins.elem bin bins) then
      throw "crane stub: package ${pkg} has no [[bin]] named ${bin} (it has: ${builtins.concatStringsSep ", " bins}); cargo would fail"
    else
      true;

  vendorCargoDeps =
    args:
    let
      dir = srcDir args.src;
      lockPath = "${dir}/Cargo.lock";
      lock =
        if args ? cargoLock then
          builtins.fromTOML (builtins.readFile args.cargoLock)
        else if builtins.pathExists lockPath then
          builtins.fromTOML (builtins.readFile lockPath)
        else
          throw "crane stub: unable to find Cargo.lock at ${dir} (crane needs it to vendor dependencies; run `cargo generate-lockfile` and commit Cargo.lock)";
      packages = lock.package or [ ];
    in
    assert builtins.isList packages;
    pkgs.stdenv.mkDerivation {
      name = "vendor-cargo-deps";
      stubCrateCount = toString (builtins.length packages);
    };

  # crane's mkCargoDerivation: cargoArtifacts and buildPhaseCargoCommand are
  # required; crane-only arguments are removed before stdenv sees the rest.
  mkCargoDerivation =
    {
      cargoArtifacts,
      buildPhaseCargoCommand,
      checkPhaseCargoCommand ? "",
      installPhaseCommand ? "mkdir -p $out",
      ...
    }@args:
    assert cargoArtifacts == null || lib.isDerivation cargoArtifacts;
    assert checkWorkspace args;
    assert checkTargets args;
    assert checkPackage args;
    let
      cleaned = removeAttrs args [
        "buildPhaseCargoCommand"
        "cargoLock"
        "cargoLockContents"
        "cargoLockParsed"
        "cargoToml"
        "checkPhaseCargoCommand"
        "installPhaseCommand"
        "pnameSuffix"
        "outputHashes"
        "stdenv"
      ];
    in
    pkgs.stdenv.mkDerivation (
      cleaned
      // {
        pname = "${args.pname or "crate"}${args.pnameSuffix or ""}";
        version = args.version or "0.0.0";
        inherit cargoArtifacts;
        cargoVendorDir = args.cargoVendorDir or (vendorCargoDeps args);
        nativeBuildInputs = (args.nativeBuildInputs or [ ]) ++ [
          cargo
          rustc
          pkgs.rsync
          pkgs.zstd
        ];
        buildPhase = args.buildPhase or buildPhaseCargoCommand;
        checkPhase = args.checkPhase or checkPhaseCargoCommand;
        installPhase = args.installPhase or installPhaseCommand;
      }
    );

  cargoBuild =
    {
      cargoArtifacts,
      cargoBuildCommand ? "cargoWithProfile build",
      cargoExtraArgs ? "--locked",
      ...
    }@args:
    mkCargoDerivation (
      removeAttrs args [ "cargoBuildCommand" ]
      // {
        pnameSuffix = args.pnameSuffix or "-build";
        buildPhaseCargoCommand = "${cargoBuildCommand} ${cargoExtraArgs}";
      }
    );

  self = {
    inherit vendorCargoDeps mkCargoDerivation cargoBuild;

    overrideToolchain =
      t:
      import ./lib.nix {
        inherit pkgs;
        toolchain = if lib.isFunction t then t pkgs else t;
      };

    filterCargoSources =
      orig_path: type:
      let
        base = baseNameOf (toString orig_path);
        parentDir = baseNameOf (dirOf (toString orig_path));
      in
      type == "directory"
      || lib.hasSuffix ".rs" base
      || lib.hasSuffix ".toml" base
      || base == "Cargo.lock"
      || (parentDir == ".cargo" && base == "config");

    cleanCargoSource =
      src:
      lib.cleanSourceWith {
        inherit src;
        filter = self.filterCargoSources;
        name = "source";
      };

    buildDepsOnly =
      {
        cargoExtraArgs ? "",
        cargoCheckCommand ? "cargo check --workspace --release",
        cargoBuildCommand ? "cargo build --workspace --release",
        cargoTestCommand ? "cargo test --workspace --release",
        ...
      }@args:
      mkCargoDerivation (
        removeAttrs args [
          "cargoBuildCommand"
          "cargoCheckCommand"
          "cargoExtraArgs"
          "cargoTestCommand"
        ]
        // {
          pnameSuffix = "-deps";
          cargoArtifacts = null;
          buildPhaseCargoCommand = "${cargoCheckCommand} ${cargoExtraArgs}; ${cargoBuildCommand} ${cargoExtraArgs}";
          checkPhaseCargoCommand = "${cargoTestCommand} ${cargoExtraArgs}";
          doCheck = args.doCheck or true;
        }
        // {
          # Kept (crane drops it) so the --target check above sees it.
          inherit cargoExtraArgs;
        }
      );

    buildPackage =
      {
        cargoExtraArgs ? "--locked",
        ...
      }@args:
      let
        cargoArtifacts = args.cargoArtifacts or (self.buildDepsOnly args);
      in
      cargoBuild (
        args
        // {
          inherit cargoArtifacts cargoExtraArgs;
          pnameSuffix = "";
          doCheck = args.doCheck or true;
          checkPhaseCargoCommand = "cargoWithProfile test ${cargoExtraArgs}";
        }
      );

    cargoClippy =
      {
        cargoArtifacts,
        cargoClippyExtraArgs ? "--all-targets",
        cargoExtraArgs ? "",
        ...
      }@args:
      cargoBuild (
        removeAttrs args [ "cargoClippyExtraArgs" ]
        // {
          pnameSuffix = "-clippy";
          cargoBuildCommand = "cargoWithProfile clippy";
          cargoExtraArgs = "${cargoExtraArgs} ${cargoClippyExtraArgs}";
          nativeBuildInputs = (args.nativeBuildInputs or [ ]) ++ [ clippy ];
          doCheck = false;
        }
      );

    cargoFmt =
      {
        cargoExtraArgs ? "",
        rustFmtExtraArgs ? "",
        ...
      }@args:
      mkCargoDerivation (
        removeAttrs args [
          "cargoExtraArgs"
          "rustFmtExtraArgs"
        ]
        // {
          cargoArtifacts = null;
          cargoVendorDir = null;
          pnameSuffix = "-fmt";
          buildPhaseCargoCommand = "cargo fmt ${cargoExtraArgs} -- --check ${rustFmtExtraArgs}";
          nativeBuildInputs = (args.nativeBuildInputs or [ ]) ++ [ rustfmt ];
        }
      );

    cargoNextest =
      {
        cargoArtifacts,
        cargoExtraArgs ? "",
        cargoNextestExtraArgs ? "",
        doInstallCargoArtifacts ? true,
        partitions ? 1,
        partitionType ? "count",
        ...
      }@args:
      if partitions < 1 then
        throw "paritions must be at least 1 or greater"
      else
        assert builtins.elem partitionType [
          "count"
          "hash"
        ];
        mkCargoDerivation (
          removeAttrs args [
            "cargoExtraArgs"
            "cargoNextestExtraArgs"
            "partitions"
            "partitionType"
          ]
          // {
            pnameSuffix = "-nextest";
            doCheck = args.doCheck or true;
            buildPhaseCargoCommand = "mkdir -p $out; cargo nextest --version";
            checkPhaseCargoCommand = "cargo nextest run ${cargoExtraArgs} ${cargoNextestExtraArgs}";
            nativeBuildInputs = (args.nativeBuildInputs or [ ]) ++ [ pkgs.cargo-nextest ];
          }
        );

    cargoTest =
      {
        cargoArtifacts,
        cargoExtraArgs ? "--locked",
        cargoTestExtraArgs ? "",
        ...
      }@args:
      mkCargoDerivation (
        removeAttrs args [
          "cargoExtraArgs"
          "cargoTestExtraArgs"
        ]
        // {
          pnameSuffix = "-test";
          doCheck = args.doCheck or true;
          buildPhaseCargoCommand = "";
          checkPhaseCargoCommand = "cargoWithProfile test ${cargoExtraArgs} ${cargoTestExtraArgs}";
          # Kept (crane drops it) so the --target check sees it.
          inherit cargoExtraArgs;
        }
      );

    cargoDocTest =
      {
        cargoArtifacts,
        cargoExtraArgs ? "--locked",
        cargoTestExtraArgs ? "",
        ...
      }@args:
      mkCargoDerivation (
        removeAttrs args [
          "cargoExtraArgs"
          "cargoTestExtraArgs"
        ]
        // {
          pnameSuffix = "-doctest";
          doCheck = args.doCheck or true;
          buildPhaseCargoCommand = "";
          checkPhaseCargoCommand = "cargoWithProfile test --doc ${cargoExtraArgs} ${cargoTestExtraArgs}";
        }
      );

    devShell =
      {
        checks ? { },
        inputsFrom ? [ ],
        packages ? [ ],
        ...
      }@args:
      pkgs.mkShell (
        removeAttrs args [
          "checks"
          "inputsFrom"
          "nativeBuildInputs"
        ]
        // {
          inputsFrom = builtins.attrValues checks ++ inputsFrom;
          packages = [
            rustc
            cargo
            clippy
            rustfmt
          ]
          ++ packages;
        }
      );
  };
in
self
