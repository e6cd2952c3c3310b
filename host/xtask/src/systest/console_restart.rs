//! System tests of console-dom's restart: guests' lines reach COM1 exactly
//! once while console-dom crashes at random, hangs, or is given up on.

use super::harness::{boot, check, expect_line, Ctx, Machine, BOOT};
use super::harness::{tests, Test};
use std::time::Duration;

/// console-dom's line, with `extra` options for its restart and fault injection.
fn console_dom(extra: &str) -> String {
    format!(
        "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4 on_crash=restart {extra}"
    )
}

/// Checks that domain `dom` printed `counter: 1` to `counter: count` each exactly once.
fn each_line_once(m: &Machine, dom: u32, count: u64) -> Result<(), String> {
    let prefix = format!("[{dom}] counter: ");
    let mut seen = vec![0u32; count as usize + 1];
    for l in m.lines() {
        if let Some(n) = l
            .strip_prefix(&prefix)
            .and_then(|n| n.trim().parse::<u64>().ok())
            .filter(|&n| (1..=count).contains(&n))
        {
            seen[n as usize] += 1;
        }
    }
    let lost: Vec<u64> = (1..=count).filter(|&n| seen[n as usize] == 0).collect();
    let twice: Vec<u64> = (1..=count).filter(|&n| seen[n as usize] > 1).collect();
    check(lost.is_empty() && twice.is_empty(), || {
        format!("domain {dom}: lines lost {lost:?}, lines printed more than once {twice:?}")
    })
}

/// Two guests print 400 numbered lines each while console-dom crashes at a
/// random line of every 140 (so at least 5 times): each line once.
fn two_guests_lose_no_line_and_repeat_none_while_console_dom_crashes(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let console = console_dom("restart_limit=30 crash_every=140");
    let guests = [
        ("console-dom", console.as_str()),
        ("counter", "counter count=400 pace_us=1000"),
        ("counter", "counter2 count=400 pace_us=1000"),
    ];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    for dom in [2, 3] {
        m.wait_for(
            &format!("[{dom}] counter: 400 lines took"),
            Duration::from_secs(120),
        )?;
    }
    let n = super::harness::restarts_of(m, "console-dom");
    check(n >= 5, || {
        format!("console-dom restarted {n} times, not at least 5")
    })?;
    expect_line(m, "deliberate crash after")?;
    each_line_once(m, 2, 400)?;
    each_line_once(m, 3, 400)
}

/// A console-dom that stops answering (heartbeats included) after 120
/// lines is crashed by the toolstack and restarted; no line is lost.
fn a_hung_console_dom_is_restarted_by_heartbeat(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let console = console_dom("restart_limit=20 heartbeat=300 hang_after=120");
    let guests = [
        ("console-dom", console.as_str()),
        ("counter", "counter count=300 pace_us=1000"),
    ];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    expect_line(m, "missed its heartbeat")?;
    m.wait_for("[2] counter: 300 lines took", Duration::from_secs(120))?;
    check(super::harness::restarts_of(m, "console-dom") >= 2, || {
        "console-dom was not restarted after each hang".into()
    })?;
    each_line_once(m, 2, 300)
}

/// A console-dom that crashes after 30 lines every time is given up on
/// after 2 restarts; the guest's lines then go through the kernel, none
/// lost or repeated.
fn a_console_dom_given_up_on_hands_output_to_the_kernel(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let console = console_dom("restart_limit=2 crash_after=30");
    let guests = [
        ("console-dom", console.as_str()),
        ("counter", "counter count=150 pace_us=1000"),
    ];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    expect_line(m, "toolstack: giving up on console-dom")?;
    m.wait_for("[2] counter: 150 lines took", BOOT)?;
    each_line_once(m, 2, 150)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        two_guests_lose_no_line_and_repeat_none_while_console_dom_crashes,
        a_hung_console_dom_is_restarted_by_heartbeat,
        a_console_dom_given_up_on_hands_output_to_the_kernel,
    ]
}
