# `nix flake check`: the package builds, the tests, clippy and rustfmt, for the
# host workspace and for the wasm32 guests workspace.
{
  lib,
  craneLib,
  commonArgs,
  cargoArtifacts,
  rime,
  guests,
  sources,
  version,
}:
let
  # Environment and set-up for every derivation that runs Rime's tests.
  #
  # RIME_IN_NIX_SANDBOX=1 always: tests may use it to explain a skip.
  # RIME_SKIP_IO_URING=1 only where the sandbox forbids real page I/O: the probe
  # (nix/sandbox-probe.c) tries io_uring_setup/io_uring_enter and an O_DIRECT
  # 4 KiB write+read in $TMPDIR, prints what it found, and the variable is
  # exported only if something failed. A value already in the environment
  # (overrideAttrs) wins. Tests that honour the variable must say they skipped.
  testEnv = {
    RIME_IN_NIX_SANDBOX = "1";
    RIME_GUESTS_DIR = "${guests}/share/rime/guests";
    RUST_BACKTRACE = "1";
    preCheck = ''
      ${guests.installIntoCheckout}

      echo "rime-checks: probing what this build sandbox allows (nix/sandbox-probe.c)"
      $CC -O1 -o "$TMPDIR/rime-sandbox-probe" ${./sandbox-probe.c}
      rime_probe_rc=0
      "$TMPDIR/rime-sandbox-probe" "$TMPDIR" || rime_probe_rc=$?
      if [ -n "''${RIME_SKIP_IO_URING:-}" ]; then
        echo "rime-checks: RIME_SKIP_IO_URING=$RIME_SKIP_IO_URING was set before the probe; keeping it"
      elif [ "$rime_probe_rc" -ne 0 ]; then
        export RIME_SKIP_IO_URING=1
        echo "rime-checks: RIME_SKIP_IO_URING=1 (probe exit $rime_probe_rc): tests that need io_uring or O_DIRECT will report themselves as skipped"
      else
        echo "rime-checks: io_uring and O_DIRECT work here; io_uring tests run"
      fi
    '';
  };
in
{
  # The packages themselves.
  inherit rime guests;

  # Unit and integration tests of the host workspace, with cargo-nextest.
  # `--no-tests=fail`: a run that finds no test is an error, never a pass.
  nextest = craneLib.cargoNextest (
    commonArgs
    // testEnv
    // {
      inherit cargoArtifacts;
      cargoNextestExtraArgs = "--workspace --no-tests=fail";
      partitions = 1;
      partitionType = "count";
    }
  );

  # nextest does not run doctests.
  doctests = craneLib.cargoDocTest (
    commonArgs
    // testEnv
    // {
      inherit cargoArtifacts;
      cargoTestExtraArgs = "--workspace";
    }
  );

  clippy = craneLib.cargoClippy (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoClippyExtraArgs = "--workspace --all-targets -- --deny warnings";
    }
  );

  fmt = craneLib.cargoFmt {
    inherit (commonArgs) src version;
    pname = "rime";
    # The top manifest's default-members is only cli; format every member.
    cargoExtraArgs = "--all";
  };

  guests-clippy = craneLib.cargoClippy (
    guests.args
    // {
      inherit (guests) cargoArtifacts;
      cargoClippyExtraArgs = "--workspace --all-targets -- --deny warnings";
    }
  );

  # The guests' native unit tests (SDK codec, mock host, macro errors,
  # example logic): guests/.cargo/config.toml's `cargo test-host`.
  guests-tests = craneLib.cargoTest (
    guests.hostArgs
    // {
      cargoArtifacts = guests.hostCargoArtifacts;
      cargoTestExtraArgs = "--workspace";
    }
  );

  guests-fmt = craneLib.cargoFmt (
    guests.workspace
    // {
      src = sources.guests;
      inherit version;
      pname = "rime-guests";
      # --all: the members and their path dependencies (abi/).
      cargoExtraArgs = "--all";
    }
  );
}
