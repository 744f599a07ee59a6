# The `rime` binary (crate rime-cli), wrapped so that it finds the example
# guests of the same flake without a checkout.
{
  lib,
  craneLib,
  makeWrapper,
  commonArgs,
  cargoArtifacts,
  guests,
}:
craneLib.buildPackage (
  commonArgs
  // {
    pname = "rime";
    inherit cargoArtifacts;
    cargoExtraArgs = "--locked --package rime-cli --bin rime";

    # Tests run once, in checks.nextest (inside the sandbox, with the probe
    # described in nix/README.md), not again in every package build.
    doCheck = false;

    nativeBuildInputs = commonArgs.nativeBuildInputs ++ [ makeWrapper ];

    # The guests are built by their own derivation; put them where a checkout
    # has them after `cargo build` in guests/, in case the build embeds them.
    preBuild = ''
      ${guests.installIntoCheckout}
    '';
    RIME_GUESTS_DIR = "${guests}/share/rime/guests";

    postInstall = ''
      mkdir -p $out/share/rime
      ln -s ${guests}/share/rime/guests $out/share/rime/guests
      wrapProgram $out/bin/rime --set-default RIME_GUESTS_DIR ${guests}/share/rime/guests
    '';

    meta = {
      description = "Embedded storage engine and WebAssembly function runtime";
      mainProgram = "rime";
      license = [
        lib.licenses.mit
        lib.licenses.asl20
      ];
      platforms = lib.platforms.linux;
    };
  }
)
