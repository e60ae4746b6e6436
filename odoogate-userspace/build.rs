//! Builds the eBPF programs with the nightly toolchain (through aya-build) and
//! embeds the object file in the daemon.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
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
