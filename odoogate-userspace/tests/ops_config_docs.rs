//! docs/configuration.md lists exactly the keys the parser accepts.
//!
//! The accepted keys come from the parser itself. For a key it does not
//! know, serde lists the keys of that table (`expected one of ...`). The
//! test puts an unknown key into each table of the page's complete example
//! and reads that list back.

use std::collections::BTreeSet;

use toml::{Table, Value};

const PAGE: &str = include_str!("../../docs/configuration.md");

/// A key that no table accepts.
const PROBE: &str = "zz_not_a_key";

/// Keys of `[tokens]` that the parser reads only to reject them, so the
/// complete example cannot contain them.
const REJECTED_KEYS: [&str; 4] = ["tokens.default", "tokens.credential", "tokens.password", "tokens.api_key"];

/// Returns the first ```toml block of the page.
fn example() -> &'static str {
    let start = PAGE.find("```toml\n").expect("the page has a toml block") + "```toml\n".len();
    let length = PAGE[start..].find("```").expect("the toml block ends");
    &PAGE[start..start + length]
}

/// Returns the keys of the page's reference tables: the first cell of each
/// row, which may name several keys separated by commas.
fn documented_keys() -> BTreeSet<String> {
    PAGE.lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| line.split('|').nth(1).unwrap().split(',').map(|key| key.trim().trim_matches('`').to_owned()))
        .collect()
}

/// Returns the keys the parser accepts in the table at `path` of `document`,
/// read from the error for an unknown key.
fn accepted_keys(document: &Table, path: &[Step]) -> Vec<String> {
    let mut probed = document.clone();
    table_at(&mut probed, path).insert(PROBE.to_owned(), Value::Integer(1));
    let text = toml::to_string(&probed).unwrap();
    let error = odoogate::config::parse(&text, "probe.toml").expect_err("an unknown key is rejected").to_string();
    let expected = error.split_once("expected").unwrap_or_else(|| panic!("no key list in {error:?}")).1;
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    First(&'a str),
}

fn table_at<'t>(table: &'t mut Table, path: &[Step]) -> &'t mut Table {
    path.iter().fold(table, |table, step| match step {
        Step::Key(key) => table.get_mut(*key).and_then(Value::as_table_mut).unwrap(),
        Step::First(key) => table.get_mut(*key).and_then(Value::as_array_mut).unwrap()[0].as_table_mut().unwrap(),
    })
}

/// Walks every table of `document` the parser reads, adding the dotted
/// names of the accepted keys to `keys`.
fn collect_keys<'a>(document: &'a Table, path: &mut Vec<Step<'a>>, prefix: &str, keys: &mut BTreeSet<String>) {
    for key in accepted_keys(document, path) {
        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match document_key(document, path, &key) {
            None => assert!(REJECTED_KEYS.contains(&name.as_str()), "the complete example lacks {name}"),
            Some((key, Value::Table(_))) => {
                path.push(Step::Key(key));
                collect_keys(document, path, &name, keys);
                path.pop();
            }
            Some((key, Value::Array(items))) if items.first().is_some_and(Value::is_table) => {
                path.push(Step::First(key));
                collect_keys(document, path, &name, keys);
                path.pop();
            }
            Some(_) => {}
        }
        keys.insert(name);
    }
}

/// Finds `key` in the table at `path`, returning it with the document's
/// lifetime.
fn document_key<'a>(document: &'a Table, path: &[Step], key: &str) -> Option<(&'a str, &'a Value)> {
    let table = path.iter().fold(document, |table, step| match step {
        Step::Key(key) => table[*key].as_table().unwrap(),
        Step::First(key) => table[*key].as_array().unwrap()[0].as_table().unwrap(),
    });
    table.get_key_value(key).map(|(key, value)| (key.as_str(), value))
}

#[test]
fn complete_example_is_valid() {
    if let Err(error) = odoogate::config::parse(example(), "docs/configuration.md") {
        panic!("the complete example is invalid: {error}");
    }
}

#[test]
fn page_lists_every_accepted_key() {
    let document: Table = example().parse().unwrap();
    let mut accepted = BTreeSet::new();
    collect_keys(&document, &mut Vec::new(), "", &mut accepted);
    assert!(accepted.contains("odoo.ports"), "{accepted:?}");
    assert!(accepted.contains("integration.allow.models"), "{accepted:?}");

    let documented = documented_keys();
    let tables: BTreeSet<String> = accepted.iter().filter_map(|key| key.split_once('.')).map(|(table, _)| table.to_owned()).collect();
    let missing: Vec<&String> = accepted.iter().filter(|key| !documented.contains(*key) && !tables.contains(*key)).collect();
    let unknown: Vec<&String> = documented.iter().filter(|key| !accepted.contains(*key)).collect();
    assert!(missing.is_empty(), "accepted keys missing from docs/configuration.md: {missing:?}");
    assert!(unknown.is_empty(), "keys in docs/configuration.md that the parser rejects: {unknown:?}");
}
