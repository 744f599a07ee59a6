fn main() {
    println!("cargo:rerun-if-changed=src/guard.c");
    cc::Build::new()
        .file("src/guard.c")
        .opt_level(2)
        .warnings(true)
        .compile("rime_guard");
}
