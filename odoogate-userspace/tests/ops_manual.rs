//! The man pages and the completions come from the same clap definition
//! as the parser: every visible subcommand shows up in both.

use std::path::Path;
use std::process::Command;

fn generate(dir: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_odoogate"))
        .arg("generate-manual")
        .arg("--man-dir")
        .arg(dir.join("man"))
        .arg("--completions-dir")
        .arg(dir.join("completions"))
        .output()
        .expect("odoogate starts");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn subcommands_in_man_and_completions() {
    let dir = std::env::temp_dir().join(format!("odoogate-manual-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    generate(&dir);

    let command = odoogate::cli::command();
    let visible: Vec<&str> = command.get_subcommands().filter(|sub| !sub.is_hide_set()).map(|sub| sub.get_name()).collect();
    assert!(visible.contains(&"run"), "{visible:?}");
    assert!(visible.contains(&"check"), "{visible:?}");

    let main_page = read(&dir.join("man/odoogate.1"));
    let bash = read(&dir.join("completions/odoogate.bash"));
    let zsh = read(&dir.join("completions/_odoogate"));
    let fish = read(&dir.join("completions/odoogate.fish"));
    for name in &visible {
        // roff escapes a hyphen as `\-`.
        let roffed = name.replace('-', "\\-");
        assert!(main_page.contains(&format!("odoogate\\-{roffed}(1)")), "{name} missing from odoogate.1");
        assert!(bash.contains(&format!("odoogate,{name})")), "{name} missing from the bash completion");
        assert!(zsh.contains(&format!("'{name}:")), "{name} missing from the zsh completion");
        assert!(fish.contains(&format!("-a \"{name}\"")), "{name} missing from the fish completion");

        let page = read(&dir.join(format!("man/odoogate-{name}.1")));
        assert!(page.contains(&format!("odoogate {roffed}")), "the synopsis of odoogate-{name}.1 names the subcommand");
    }
    assert!(!bash.contains("generate-manual"), "a hidden subcommand was completed");
    assert!(!dir.join("man/odoogate-generate-manual.1").exists(), "a hidden subcommand got a page");
    std::fs::remove_dir_all(&dir).unwrap();
}
