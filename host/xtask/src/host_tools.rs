//! The host programs the build and the tests need, and installing them.
//!
//! Owns: the check for `qemu-system-x86_64`, `grub-mkrescue`, `xorriso`,
//! `mformat`, `curl` and `nc` (the network tests use them as a user
//! would), `mke2fs` (the Linux guest's initramfs carries it), `gcc`
//! with a static C library (it builds the tests' hostile virtio driver
//! for that initramfs) and `gdb` (it opens `domain dump-core`'s cores);
//! installing the Debian packages that provide them when running as
//! root with apt, or one clear message naming them otherwise.

use std::process::Command;

const TOOLS: [&str; 10] = [
    "qemu-system-x86_64",
    "grub-mkrescue",
    "xorriso",
    "mformat",
    "curl",
    "nc",
    "c++",
    "gcc",
    "mke2fs",
    "gdb",
];
const PACKAGES: [&str; 11] = [
    "g++",
    "qemu-system-x86",
    "grub-pc-bin",
    "grub-common",
    "xorriso",
    "mtools",
    "curl",
    "netcat-openbsd",
    "e2fsprogs",
    "gcc",
    "gdb",
];

fn on_path(tool: &str) -> bool {
    find(tool).is_some()
}

/// Where `tool` is: on `PATH`, or in the system directories a user's
/// `PATH` may leave out (`mke2fs` is in `/usr/sbin`).
pub fn find(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn missing() -> Vec<&'static str> {
    let mut m: Vec<&str> = TOOLS.iter().copied().filter(|t| !on_path(t)).collect();
    // grub-mkrescue without the BIOS platform files builds ISOs that do not boot.
    if on_path("grub-mkrescue") && !std::path::Path::new("/usr/lib/grub/i386-pc").is_dir() {
        m.push("grub-pc-bin (/usr/lib/grub/i386-pc)");
    }
    m
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure the Rust side is complete: the bare-metal target and the
/// components `cargo xtask test` uses (`rust-toolchain.toml` names them; this
/// covers a rustup that did not install them by itself).
fn ensure_rust() -> Result<(), String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let target = std::path::Path::new(&sysroot).join("lib/rustlib/x86_64-unknown-none");
    if !target.is_dir() {
        println!("xtask: installing the x86_64-unknown-none target with rustup");
        let ok = Command::new("rustup")
            .args(["target", "add", "x86_64-unknown-none"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err("the x86_64-unknown-none target is missing: run `rustup target add x86_64-unknown-none`".into());
        }
    }
    for (tool, component) in [("cargo-clippy", "clippy"), ("rustfmt", "rustfmt")] {
        let present = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            println!("xtask: installing the {component} component with rustup");
            let _ = Command::new("rustup")
                .args(["component", "add", component])
                .status();
        }
    }
    Ok(())
}

/// Makes sure every tool is there, installing the packages if we may.
/// `cargo fuzz` (built from crates.io with `cargo install` if missing).
pub fn ensure_cargo_fuzz() -> Result<(), String> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    println!("xtask: installing cargo-fuzz with cargo install (a few minutes, once)");
    let ok = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err("cargo-fuzz is missing: run `cargo install cargo-fuzz --locked`".into())
    }
}

pub fn ensure() -> Result<(), String> {
    ensure_rust()?;
    let m = missing();
    if m.is_empty() {
        return Ok(());
    }
    let packages = PACKAGES.join(" ");
    if !(is_root() && on_path("apt-get")) {
        return Err(format!(
            "missing {}; install the Debian packages: {packages}",
            m.join(", ")
        ));
    }
    println!(
        "xtask: missing {}; installing {packages} with apt-get",
        m.join(", ")
    );
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))
    };
    apt(&["update", "-qq"])?;
    // With recommends: QEMU's option ROMs (ipxe-qemu) come that way.
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(PACKAGES);
    let status = apt(&args)?;
    let still = missing();
    if !status.success() || !still.is_empty() {
        return Err(format!(
            "apt-get could not install {packages}; still missing {}",
            still.join(", ")
        ));
    }
    Ok(())
}
