//! Building the bare-metal images.
//!
//! Owns: the cargo invocations for `x86_64-unknown-none`, with the code
//! generation flags each image needs (the kernel: static, code model
//! "kernel", linked at -2 GiB; domains: static, linked at 4 MiB by
//! `domains/domain-runtime/domain.ld`), in their own target directories, and the list
//! of domain images. Adding a domain is one line in [`DOMAINS`].

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("xtask lives in host/xtask of the workspace")
        .to_path_buf()
}

/// Where xtask keeps its outputs (ISOs, logs, kernel builds).
pub fn target_dir() -> PathBuf {
    root().join("target")
}

/// Builds the kernel (release) and returns the ELF's path.
pub fn kernel() -> Result<PathBuf, String> {
    kernel_in("kernel", &[])
}

/// The kernel with no tracing code at all (the `trace` feature off): the
/// baseline the tracing cost test compares with.
pub fn kernel_without_tracing() -> Result<PathBuf, String> {
    kernel_in("kernel-notrace", &["--no-default-features"])
}

fn kernel_in(dir: &str, extra: &[&str]) -> Result<PathBuf, String> {
    let target_dir = target_dir().join(dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--release", "--package", "xenolith-kernel"])
        .args(extra)
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

/// Every domain image: (package, binary). One line per domain.
pub const DOMAINS: &[(&str, &str)] = &[
    ("toolstack-domain", "toolstack-domain"),
    ("console-dom", "console-dom"),
    ("drvdom-blk", "drvdom-blk"),
    ("drvdom-net", "drvdom-net"),
    ("example-guests", "kv-store"),
    ("example-guests", "web"),
    ("test-domains", "hello"),
    ("test-domains", "pci-prober"),
    ("test-domains", "edu-tester"),
    ("test-domains", "balloon-check"),
    ("test-domains", "hotplug-check"),
    ("test-domains", "vcpu-check"),
    ("test-domains", "disk-tool"),
    ("test-domains", "blk-hostile"),
    ("test-domains", "disk-bench"),
    ("test-domains", "net-tool"),
    ("test-domains", "net-hostile"),
    ("test-domains", "net-bench"),
    ("test-domains", "crasher"),
    ("test-domains", "survivor"),
    ("test-domains", "pingpong"),
    ("test-domains", "where"),
    ("test-domains", "tlb-check"),
    ("test-domains", "tlb-stress"),
    ("test-domains", "spinner"),
    ("test-domains", "sleeper"),
    ("test-domains", "hostile"),
    ("test-domains", "grant-peer"),
    ("test-domains", "test-dom0"),
    ("test-domains", "bench"),
    ("test-domains", "irq-serial"),
    ("test-domains", "vga-writer"),
    ("test-domains", "chatty"),
    ("test-domains", "control-client"),
    ("test-domains", "counter"),
    ("test-domains", "partial"),
    ("test-domains", "echo"),
    ("test-domains", "quitter"),
    ("test-domains", "ring-hostile"),
    ("test-domains", "hc-fuzz"),
    ("hvm-test-guest", "hvm-test-guest"),
    ("device-model", "device-model"),
];

/// What domains are built with so that the crypto crates of domain 0's
/// network channel (snow's ChaCha20, Poly1305 and Curve25519) use their
/// portable code: domains run without SSE or AVX (`x86_64-unknown-none`
/// is soft-float), and those crates' SIMD code does not build there.
pub const SOFT_CRYPTO: [&str; 6] = [
    "--cfg",
    "poly1305_force_soft",
    "--cfg",
    "chacha20_force_soft",
    "--cfg",
    "curve25519_dalek_backend=\"serial\"",
];

/// Builds every domain image (release) and returns the directory holding them.
pub fn domains() -> Result<PathBuf, String> {
    let target_dir = target_dir().join("domains");
    let linker_script = root().join("domains/domain-runtime/domain.ld");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root()).args(["build", "--release"]);
    let mut packages: Vec<&str> = DOMAINS.iter().map(|(p, _)| *p).collect();
    packages.dedup();
    for p in packages {
        cmd.args(["--package", p]);
    }
    cmd.args(["--target", "x86_64-unknown-none", "--target-dir"])
        .arg(&target_dir);
    let flags = [
        "-Crelocation-model=static".to_string(),
        format!("-Clink-arg=-T{}", linker_script.display()),
        "-Clink-arg=--no-pie".to_string(),
        // One RW segment for .data and .bss: the kernel refuses segments sharing a page.
        "-Clink-arg=-znorelro".to_string(),
        "-Dwarnings".to_string(),
    ]
    .into_iter()
    .chain(SOFT_CRYPTO.iter().map(|s| s.to_string()));
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        flags.collect::<Vec<_>>().join("\x1f"),
    );
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("the domains did not build".into());
    }
    Ok(target_dir.join("x86_64-unknown-none/release"))
}

/// The path of a built domain binary.
pub fn domain(dir: &Path, bin: &str) -> PathBuf {
    dir.join(bin)
}

/// Builds the host `toolstack` command and returns its path.
pub fn toolstack_command() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--package", "toolstack", "--bin", "toolstack"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("the toolstack command did not build".into());
    }
    Ok(target_dir().join("debug/toolstack"))
}
