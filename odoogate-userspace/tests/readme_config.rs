//! The README's configuration reference must stay a valid configuration,
//! so a reader can start from it.

use std::path::Path;

#[test]
fn readme_reference_config_is_valid() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md is readable");
    let section = readme
        .split_once("## Configuration reference")
        .expect("README has a configuration reference")
        .1;
    let block = section
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the reference has a TOML block")
        .0;
    if let Err(error) = odoogate::config::parse(block, "README.md") {
        panic!("the README's reference configuration is invalid:\n{error}");
    }
}
