//! Building the bare-metal images.
//!
//! Owns: the cargo invocations for `x86_64-unknown-none`, with the code
//! generation flags each image needs (the kernel: static, code model
//! "kernel", linked at -2 GiB), in their own target directories.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where xtask keeps its outputs (ISOs, logs, kernel builds).
pub fn target_dir() -> PathBuf {
    root().join("target")
}

/// Builds the kernel (release) and returns the ELF's path.
pub fn kernel() -> Result<PathBuf, String> {
    let target_dir = target_dir().join("kernel");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--release", "--package", "xenolith-kernel"])
        .args(["--target", "x86_64-unknown-none", "--target-dir"])
        .arg(&target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                "-Crelocation-model=static",
                "-Ccode-model=kernel",
                "-Dwarnings",
            ]
            .join("\x1f"),
        )
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("the kernel did not build".into());
    }
    Ok(target_dir.join("x86_64-unknown-none/release/xenolith"))
}
