//! System test of a large upload: `domain create` with a 1 MiB image shows a
//! progress bar on a terminal, and the domain it creates runs.

use super::harness::{build, check, expect_line, Ctx, Machine};
use super::harness::{tests, Test};

fn a_large_upload_shows_a_progress_bar_on_a_terminal(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = c.machine().guests(&[]).boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    let dir = c.path("big");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // A real image padded to 1 MiB (bytes after the last segment are ignored).
    let mut image = std::fs::read(build::domain(&c.domains, "hello")).map_err(|e| e.to_string())?;
    image.resize(image.len().max(1 << 20), 0);
    std::fs::write(dir.join("big"), &image).map_err(|e| e.to_string())?;
    let cfg = dir.join("big.cfg");
    std::fs::write(&cfg, "name = \"big\"\nkernel = \"big\"\nmemory = 4\n")
        .map_err(|e| e.to_string())?;
    // `script` gives the command a terminal, as a person has.
    let command = format!(
        "{} --connect {} domain create {}",
        build::target_dir().join("debug/toolstack").display(),
        sock.display(),
        cfg.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .output()
        .map_err(|e| format!("cannot run script: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    check(
        out.status.success()
            && text.contains("uploading [")
            && text.contains("100%   1024/1024 KiB")
            && text.contains("created domain 1"),
        || format!("create with a bar: {:?} {text}", out.status),
    )?;
    expect_line(m, "[1] hello from domain 1 (4096 KiB): big")?;
    Ok(())
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![a_large_upload_shows_a_progress_bar_on_a_terminal,]
}
