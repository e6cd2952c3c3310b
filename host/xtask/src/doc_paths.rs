//! The check that the documentation still describes the tree.
//!
//! Owns: finding the repository paths the README and `docs/` cite in
//! backticks (`core/xenolith-kernel/src/boot.rs`, `arch/idt.rs`,
//! `mgmt.rs:120`), and the README's layout table; a cited file must exist
//! (a short path must name the end of a real one), and the layout table must
//! name every workspace member and nothing that is gone.

use std::collections::BTreeSet;

/// Extensions of files the docs cite; a backticked token with a `/` and one
/// of these is a path into the repository.
const CITED: &[&str] = &[".rs", ".md", ".toml", ".S", ".ld", ".sh"];

/// Backticked tokens of `text` that cite a repository file, with the
/// `:line` or `::item` suffix removed.
pub fn cited_files(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, token) in text.split('`').enumerate() {
        // Odd pieces are inside backticks.
        if i % 2 == 0 || token.contains(char::is_whitespace) {
            continue;
        }
        let path = token.split("::").next().unwrap_or(token);
        let path = path.split(':').next().unwrap_or(path);
        let placeholder = path.contains(['<', '*', '{', '$']) || path.contains("...");
        let outside = path.starts_with('/') || path.starts_with("target/") || path.contains("://");
        if path.contains('/') && !placeholder && !outside && CITED.iter().any(|e| path.ends_with(e))
        {
            out.push(path.trim_start_matches("./").to_string());
        }
    }
    out
}

/// Whether `cited` names a tracked file: itself, or the end of one (at a
/// `/`), so docs may write `arch/idt.rs` for the kernel's.
pub fn exists(cited: &str, tracked: &BTreeSet<String>) -> bool {
    tracked.contains(cited)
        || tracked
            .iter()
            .any(|t| t.ends_with(cited) && t[..t.len() - cited.len()].ends_with('/'))
}

/// The paths in the first column of the README's `## Layout` table.
pub fn layout_rows(readme: &str) -> Vec<String> {
    let Some(start) = readme.find("## Layout") else {
        return Vec::new();
    };
    readme[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_string))
        .collect()
}

/// The workspace members `Cargo.toml` lists.
pub fn members(manifest: &str) -> Vec<String> {
    let Some(start) = manifest.find("members = [") else {
        return Vec::new();
    };
    let list = &manifest[start + "members = [".len()..];
    let list = &list[..list.find(']').unwrap_or(list.len())];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Every complaint about `docs` (name, text) against the tracked files, the
/// README and the workspace manifest.
pub fn problems(
    docs: &[(String, String)],
    tracked: &BTreeSet<String>,
    readme: &str,
    manifest: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in docs {
        for cited in cited_files(text) {
            if !exists(&cited, tracked) {
                out.push(format!("{name} cites `{cited}`, which is not in the tree"));
            }
        }
    }
    let rows = layout_rows(readme);
    for member in members(manifest) {
        if !rows.iter().any(|r| r.trim_end_matches('/') == member) {
            out.push(format!(
                "README's layout table does not name the workspace member `{member}/`"
            ));
        }
    }
    for row in &rows {
        let dir = row.trim_end_matches('/');
        let present = tracked
            .iter()
            .any(|t| t == dir || t.starts_with(&format!("{dir}/")));
        if !present {
            out.push(format!(
                "README's layout table names `{row}`, which is not in the tree"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(paths: &[&str]) -> BTreeSet<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn finds_cited_files_and_drops_line_numbers_and_items() {
        let text = "see `core/a/src/b.rs:12`, `arch/idt.rs::paranoid`, `cargo xtask run`, \
                    `auto/`, `target/x.md`, `<name>.rs` and `x/y.S`";
        assert_eq!(
            cited_files(text),
            ["core/a/src/b.rs", "arch/idt.rs", "x/y.S"]
        );
    }

    #[test]
    fn a_short_path_must_end_a_real_one_at_a_slash() {
        let t = tree(&["core/xenolith-kernel/src/arch/idt.rs"]);
        assert!(exists("arch/idt.rs", &t));
        assert!(exists("core/xenolith-kernel/src/arch/idt.rs", &t));
        assert!(!exists("kernel/src/arch/idt.rs", &t));
        assert!(!exists("arch/gdt.rs", &t));
    }

    #[test]
    fn the_layout_table_must_name_every_member_and_nothing_gone() {
        let readme = "x\n## Layout\n\n| path | what |\n|---|---|\n| `core/ipc-abi/` | abi |\n| `old/` | gone |\n\n## Next\n| `later/` | x |\n";
        let manifest = "members = [\n \"core/ipc-abi\",\n \"host/xtask\",\n]";
        let t = tree(&["core/ipc-abi/Cargo.toml", "host/xtask/Cargo.toml"]);
        let p = problems(&[], &t, readme, manifest);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("`host/xtask/`"));
        assert!(p[1].contains("`old/`"));
    }
}
