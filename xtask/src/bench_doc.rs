//! Sections of docs/benchmarks.md: each benchmark rewrites only its own
//! section, between `<!-- bench:NAME begin -->` and `<!-- bench:NAME end -->`,
//! so running one benchmark keeps the others' results.

use anyhow::{Context as _, Result};
use std::path::Path;

/// Marker prefix shared by every section's begin and end lines.
const MARKER_PREFIX: &str = "<!-- bench:";

/// The section of the decoder benchmark, which comes first. Before sections
/// had markers, the page was only the decoder table, so a page without
/// decoder markers has its decoder section before the first marker.
const FIRST_SECTION: &str = "decode";

/// Replaces section `name` of the Markdown file at `path` with `text`,
/// creating the file or appending the section when it is missing.
pub fn write_section(path: &Path, name: &str, text: &str) -> Result<()> {
    let page = match std::fs::read_to_string(path) {
        Ok(page) => page,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).with_context(|| format!("failed to read {}", path.display())),
    };
    let page = replace_section(&page, name, text);
    if let Some(directory) = path.parent() {
        std::fs::create_dir_all(directory)?;
    }
    std::fs::write(path, page).with_context(|| format!("failed to write {}", path.display()))
}

fn begin_marker(name: &str) -> String {
    format!("{MARKER_PREFIX}{name} begin -->")
}

fn end_marker(name: &str) -> String {
    format!("{MARKER_PREFIX}{name} end -->")
}

/// Returns `page` with section `name` set to `text`.
fn replace_section(page: &str, name: &str, text: &str) -> String {
    let section = format!("{}\n{}\n{}\n", begin_marker(name), text.trim_end(), end_marker(name));
    let (begin, end) = (begin_marker(name), end_marker(name));
    if let (Some(start), Some(stop)) = (page.find(&begin), page.find(&end))
        && start < stop
    {
        let after = &page[stop + end.len()..];
        return format!("{}{section}{}", &page[..start], after.strip_prefix('\n').unwrap_or(after));
    }
    if name == FIRST_SECTION {
        let rest = page.find(MARKER_PREFIX).map_or("", |first| &page[first..]);
        return if rest.is_empty() { section } else { format!("{section}\n{rest}") };
    }
    if page.trim().is_empty() {
        return section;
    }
    format!("{}\n\n{section}", page.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmarked_page_is_decoder_section() {
        let page = replace_section("# Decoder benchmarks\n\nold table\n", "enforce", "# Enforce mode\n\nnew");
        assert!(page.starts_with("# Decoder benchmarks\n\nold table\n\n<!-- bench:enforce begin -->\n# Enforce mode"));
        let page = replace_section(&page, "decode", "# Decoder benchmarks\n\nnew table");
        assert!(page.starts_with("<!-- bench:decode begin -->\n# Decoder benchmarks\n\nnew table\n<!-- bench:decode end -->\n"));
        assert!(!page.contains("old table"));
        assert!(page.contains("# Enforce mode\n\nnew\n<!-- bench:enforce end -->"));
    }

    #[test]
    fn marked_section_is_replaced_in_place() {
        let mut page = String::new();
        for name in ["decode", "enforce", "observe"] {
            page = replace_section(&page, name, &format!("{name} v1"));
        }
        let page = replace_section(&page, "enforce", "enforce v2");
        assert_eq!(page.matches("<!-- bench:enforce begin -->").count(), 1);
        assert!(page.contains("enforce v2"));
        assert!(!page.contains("enforce v1"));
        let order: Vec<usize> = ["decode v1", "enforce v2", "observe v1"].iter().map(|text| page.find(text).unwrap()).collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "sections out of order: {page}");
    }
}
