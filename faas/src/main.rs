//! The `rime` binary (issue 6; not yet built).
fn main() {
    eprintln!("rime: the runtime is not built yet");
    std::process::exit(2);
}
