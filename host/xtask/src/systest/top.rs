//! System test of `toolstack top`: frames with every domain, and CPU shares
//! that tell a spinning domain from an idle one.

use super::harness::{check, expect_line, toolstack, Ctx, Machine};
use super::harness::{tests, Test};

/// The CPU% column of `name`'s row in the last frame of batch output.
fn last_share(out: &str, name: &str) -> Option<f64> {
    out.lines()
        .rev()
        .find(|l| l.split_whitespace().nth(1) == Some(name))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

pub fn top(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        ("spinner", "spinner seconds=600"),
        ("survivor", "survivor period_ms=500"),
    ];
    let (m, sock) = c.machine().guests(&guests).boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    expect_line(m, "[2] survivor: heartbeat 1")?;
    let (code, out) = toolstack(&sock, &["top", "-b", "-i", "2", "-d", "1"])?;
    let frames = out.matches("ID   NAME").count();
    check(code == 0 && frames == 2, || {
        format!("want 2 frames: {code} {out}")
    })?;
    let spinner = last_share(&out, "spinner");
    let survivor = last_share(&out, "survivor");
    check(
        spinner.is_some_and(|p| p > 50.0) && survivor.is_some_and(|p| p < 10.0),
        || format!("spinner {spinner:?}% survivor {survivor:?}%: {out}"),
    )?;
    let (code, out) = toolstack(&sock, &["top", "--delay", "0"])?;
    check(code == 2 && out.contains("--delay must be"), || {
        format!("a zero delay: {code} {out}")
    })
}

fn top_shows_every_domain_and_its_share_of_the_cpu(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    top(c, slot)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![top_shows_every_domain_and_its_share_of_the_cpu,]
}
