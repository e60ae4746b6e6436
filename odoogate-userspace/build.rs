//! Builds the eBPF programs with the nightly toolchain (through aya-build) and
//! embeds the object files in the daemon: `odoogate` (capture and guard) and
//! `odoogate-steer` (sk_lookup steering).
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Set to build the daemon without its eBPF programs (an empty object is
/// embedded and loading it fails at run time). Only for working on the pure
/// stages while the eBPF crate is being changed; releases never set it.
const SKIP_EBPF_VARIABLE: &str = "ODOOGATE_SKIP_EBPF_BUILD";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed={SKIP_EBPF_VARIABLE}");
    if std::env::var_os(SKIP_EBPF_VARIABLE).is_some() {
        let out_dir = std::env::var("OUT_DIR").context("OUT_DIR is not set")?;
        for object in ["odoogate", "odoogate-steer"] {
            std::fs::write(std::path::Path::new(&out_dir).join(object), b"")
                .with_context(|| format!("failed to write the empty eBPF object {object}"))?;
        }
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata failed")?;
    let ebpf_package = metadata
        .packages
        .into_iter()
        .find(|package| package.name.as_str() == "odoogate-ebpf")
        .ok_or_else(|| anyhow!("package odoogate-ebpf not found in the workspace"))?;
    let root_dir = ebpf_package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", ebpf_package.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf_package.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}
