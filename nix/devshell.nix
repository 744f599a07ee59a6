# `nix develop`: the pinned toolchain with the wasm32-unknown-unknown target,
# rust-src and rust-analyzer, cargo-nextest, and the tools the README's
# commands use. The C compiler (for bufmgr's `cc` build script) and everything
# the checks need come in through `checks`.
{
  craneLib,
  checks,
  cargo-nextest,
  wasm-tools,
  curl,
  jq,
}:
craneLib.devShell {
  # Only the test check: its inputs are a superset of the other checks'.
  checks = {
    inherit (checks) nextest;
  };

  packages = [
    cargo-nextest # `cargo nextest run`
    wasm-tools # inspect and validate the guests' .wasm
    curl # talk to `rime`'s HTTP API
    jq # read its JSON answers
  ];
}
