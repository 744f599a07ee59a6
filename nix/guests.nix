# The example guests: the guests/ cargo workspace built for
# wasm32-unknown-unknown. Output: $out/share/rime/guests/<name>.wasm
{
  lib,
  stdenv,
  craneLib,
  src,
  version,
}:
let
  names = [
    "counter"
    "bank"
    "pushdown"
    "kv"
    "hostile"
    "probe"
  ];
  target = "wasm32-unknown-unknown";

  # src holds guests/ and abi/ (a path dependency, ../abi from guests/);
  # the cargo workspace is guests/, so every build starts there.
  workspace = {
    cargoToml = "${src}/guests/Cargo.toml";
    cargoLock = "${src}/guests/Cargo.lock";
    postUnpack = ''
      cd "$sourceRoot/guests"
      sourceRoot=.
    '';
  };

  args = workspace // {
    pname = "rime-guests";
    inherit src version;
    strictDeps = true;
    cargoExtraArgs = "--locked --target ${target}";
    # wasm32-unknown-unknown test binaries cannot run on the build machine;
    # the guests are exercised by the host's end-to-end tests instead.
    doCheck = false;
  };

  cargoArtifacts = craneLib.buildDepsOnly args;

  # The same workspace built for the build machine, for its native tests
  # (guests/.cargo/config.toml makes wasm32 the default, so name the host).
  hostArgs = args // {
    pname = "rime-guests-host";
    cargoExtraArgs = "--locked --target ${stdenv.hostPlatform.rust.rustcTarget}";
    doCheck = true;
  };
  hostCargoArtifacts = craneLib.buildDepsOnly hostArgs;

  drv = craneLib.buildPackage (
    args
    // {
      inherit cargoArtifacts;
      installPhaseCommand = ''
        dir="''${CARGO_TARGET_DIR:-target}/${target}/release"
        mkdir -p $out/share/rime/guests
        for name in ${lib.concatStringsSep " " names}; do
          if [ ! -f "$dir/$name.wasm" ]; then
            echo "rime-guests: $dir/$name.wasm was not built; guests/ must produce ${lib.concatStringsSep ", " names}" >&2
            exit 1
          fi
          install -m 0444 "$dir/$name.wasm" $out/share/rime/guests/
        done
      '';
      passthru = {
        inherit
          names
          args
          cargoArtifacts
          hostArgs
          hostCargoArtifacts
          workspace
          ;
        # Shell snippet: copy the built guests to where `cargo build` in a
        # checkout's guests/ leaves them, for host builds and tests.
        installIntoCheckout = ''
          mkdir -p guests/target/${target}/release
          for name in ${lib.concatStringsSep " " names}; do
            install -m 0644 ${drv}/share/rime/guests/$name.wasm guests/target/${target}/release/
          done
        '';
      };
      meta = {
        description = "Rime's example faaslets (${lib.concatStringsSep ", " names}) as .wasm";
        platforms = lib.platforms.all;
      };
    }
  );
in
drv
