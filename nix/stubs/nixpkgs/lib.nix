# STUB for an offline check (.ci/nix-check): the part of nixpkgs' `lib` that Rime's flake and the other stubs use, same names and argument shapes; nothing else.
let
  inherit (builtins)
    attrNames
    concatStringsSep
    elem
    filter
    foldl'
    genList
    isFunction
    listToAttrs
    stringLength
    substring
    ;

  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
  hasSuffix =
    suffix: s:
    let
      ls = stringLength s;
      lx = stringLength suffix;
    in
    ls >= lx && substring (ls - lx) lx s == suffix;
in
rec {
  inherit
    attrNames
    concatStringsSep
    elem
    foldl'
    isFunction
    hasPrefix
    hasSuffix
    ;

  fix =
    f:
    let
      x = f x;
    in
    x;
  extends =
    overlay: f: final:
    let
      prev = f final;
    in
    prev // overlay final prev;

  genAttrs =
    names: f:
    listToAttrs (
      map (n: {
        name = n;
        value = f n;
      }) names
    );
  mapAttrs = builtins.mapAttrs;
  filterAttrs = pred: set: removeAttrs set (filter (n: !(pred n set.${n})) (attrNames set));
  optionals = cond: xs: if cond then xs else [ ];
  optionalAttrs = cond: as: if cond then as else { };
  optionalString = cond: s: if cond then s else "";
  any = builtins.any;
  all = builtins.all;
  concatMapStringsSep = sep: f: xs: concatStringsSep sep (map f xs);
  removePrefix = prefix: s: if hasPrefix prefix s then substring (stringLength prefix) (-1) s else s;
  isDerivation = v: builtins.isAttrs v && (v.type or null) == "derivation";
  warn = msg: v: builtins.trace "warning: ${msg}" v;

  # nixpkgs: cleanSourceWith { src, filter ? _: _: true, name ? null }, where
  # filter gets an absolute path string and a type; src may be a path or an
  # earlier cleanSourceWith result. Here: one builtins.path over the original.
  cleanSourceWith =
    {
      src,
      filter ? _path: _type: true,
      name ? null,
    }:
    let
      orig = src._stubOrigSrc or src;
      prevFilter = src._stubFilter or (_: _: true);
      both = p: t: prevFilter p t && filter p t;
      stored = builtins.path {
        path = orig;
        filter = both;
        name = if name == null then "source" else name;
      };
    in
    {
      outPath = stored;
      _stubOrigSrc = orig;
      _stubFilter = both;
    };

  licenses = {
    mit = {
      spdxId = "MIT";
      shortName = "mit";
    };
    asl20 = {
      spdxId = "Apache-2.0";
      shortName = "asl20";
    };
  };
  platforms = {
    linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
    all = [
      "x86_64-linux"
      "aarch64-linux"
      "x86_64-darwin"
      "aarch64-darwin"
      "wasm32-wasi"
    ];
  };
}
