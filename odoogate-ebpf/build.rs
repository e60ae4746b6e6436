use which::which;

/// Rebuilds the programs when the bpf-linker binary on PATH changes.
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found on PATH: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
