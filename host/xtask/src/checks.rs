//! The static checks and host unit tests of `cargo xtask test`.
//!
//! Owns: `cargo fmt --check`, `cargo clippy` with warnings denied (host,
//! bare-metal, and the kernel built without tracing), and `cargo test`,
//! with the pass/fail counts of the latter.

use crate::build::root;
use std::process::Command;

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, echoing what it is; Ok if it succeeded.
fn step(what: &str, mut cmd: Command) -> Result<(), String> {
    println!("xtask: {what}");
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed"))
    }
}

/// `cargo fmt --check`.
pub fn fmt() -> Result<(), String> {
    let mut c = cargo();
    c.args(["fmt", "--all", "--", "--check"]);
    step("cargo fmt --check", c)?;
    // The fuzz targets are a workspace of their own.
    let mut f = cargo();
    f.args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"]);
    step("cargo fmt --check (fuzz)", f)
}

/// Clippy with warnings denied, on the host build and the bare-metal kernel.
pub fn clippy() -> Result<(), String> {
    let mut host = cargo();
    host.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    step("cargo clippy (host)", host)?;
    let mut metal = cargo();
    metal
        .args([
            "clippy",
            "--package",
            "xenolith-kernel",
            "--package",
            "domain-base",
            "--package",
            "domain-runtime",
            "--package",
            "toolstack-domain",
            "--package",
            "test-domains",
            "--package",
            "console-dom",
            "--package",
            "drvdom-blk",
            "--package",
            "drvdom-net",
            "--package",
            "driver-kit",
            "--package",
            "example-guests",
            "--package",
            "device-model",
            "--package",
            "domain-config",
            "--target",
            "x86_64-unknown-none",
        ])
        .args(["--target-dir", "target/clippy-none", "--", "-D", "warnings"])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            crate::build::SOFT_CRYPTO.join("\x1f"),
        );
    step("cargo clippy (x86_64-unknown-none)", metal)?;
    // The kernel without its trace code (what `tracing_off_...` measures):
    // a helper only the trace uses must not break that build.
    let mut quiet = cargo();
    quiet
        .args([
            "clippy",
            "--package",
            "xenolith-kernel",
            "--no-default-features",
            "--target",
            "x86_64-unknown-none",
        ])
        .args(["--target-dir", "target/clippy-none", "--", "-D", "warnings"]);
    step("cargo clippy (kernel without tracing)", quiet)
}

/// The README and `docs/` against the tree (`doc_paths`): every file they
/// cite exists, and the README's layout table names every workspace member.
pub fn doc_paths() -> Result<(), String> {
    println!("xtask: the paths the docs cite");
    let out = Command::new("git")
        .current_dir(root())
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .output()
        .map_err(|e| format!("git ls-files: {e}"))?;
    let tracked = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let read = |p: &str| std::fs::read_to_string(root().join(p)).map_err(|e| format!("{p}: {e}"));
    let readme = read("README.md")?;
    let manifest = read("Cargo.toml")?;
    let mut docs = vec![("README.md".to_string(), readme.clone())];
    let mut names: Vec<_> = std::fs::read_dir(root().join("docs"))
        .map_err(|e| format!("docs/: {e}"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    for n in names {
        let path = format!("docs/{n}");
        docs.push((path.clone(), read(&path)?));
    }
    let problems = crate::doc_paths::problems(&docs, &tracked, &readme, &manifest);
    for p in &problems {
        println!("  {p}");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} stale paths in the docs", problems.len()))
    }
}

/// No file of any workspace crate imports another that imports it back
/// (`import_cycles`).
pub fn import_cycles() -> Result<(), String> {
    println!("xtask: circles of imports between files");
    let manifest = std::fs::read_to_string(root().join("Cargo.toml"))
        .map_err(|e| format!("Cargo.toml: {e}"))?;
    let mut problems = Vec::new();
    for member in crate::doc_paths::members(&manifest) {
        let src = root().join(&member).join("src");
        let mut files = Vec::new();
        collect_rs(&src, &src, &mut files)?;
        for circle in crate::import_cycles::cycles(&files) {
            problems.push(format!("{member}: {}", circle.join(" <-> ")));
        }
    }
    for p in &problems {
        println!("  {p}");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} circles of imports", problems.len()))
    }
}

/// Every `.rs` file under `dir`, as (path relative to `base`, text).
fn collect_rs(
    base: &std::path::Path,
    dir: &std::path::Path,
    out: &mut Vec<(String, String)>,
) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(base, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(base)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{rel}: {e}"))?;
            out.push((rel, text));
        }
    }
    Ok(())
}

/// `cargo test` on the host; returns (passed, failed) summed over every test binary.
pub fn unit_tests() -> Result<(usize, usize), String> {
    println!("xtask: cargo test (host unit tests)");
    let out = cargo()
        .args(["test", "--workspace"])
        .output()
        .map_err(|e| format!("cargo test: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let (mut passed, mut failed) = (0, 0);
    for line in stdout.lines().filter(|l| l.starts_with("test result:")) {
        passed += count_before(line, " passed");
        failed += count_before(line, " failed");
    }
    if !out.status.success() && failed == 0 {
        return Err("cargo test failed to build or run".into());
    }
    Ok((passed, failed))
}

/// The number right before `word` in a cargo test summary line.
fn count_before(line: &str, word: &str) -> usize {
    line.find(word)
        .and_then(|i| line[..i].rsplit([' ', '.']).next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn reads_cargo_test_summaries() {
        let l = "test result: ok. 30 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(count_before(l, " passed"), 30);
        assert_eq!(count_before(l, " failed"), 2);
    }
}
