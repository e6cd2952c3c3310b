//! System tests of the NMI watchdog (`watchdog` on the command line).

use super::harness::{boot, check, expect_line, number_after, Ctx, Machine};
use super::harness::{tests, Test};

/// A CPU spinning in the kernel with interrupts off (`ktest=hang`) is
/// caught: after about five seconds without a timer tick it reports its
/// registers and the return addresses on its stack and panics, and with
/// `noreboot` halts; so is an application processor (`ktest=hang_ap`), by
/// an NMI from the boot CPU. With the watchdog on, a two-CPU machine whose
/// guests spin and sleep for eight seconds hears no false alarm, and a
/// guest making hypercalls back to back for ten seconds (so that NMIs land
/// between `syscall` and `swapgs`, and between `swapgs` and `iretq`, where
/// GS is still the guest's) harms nothing.
fn the_watchdog_catches_a_cpu_stuck_with_interrupts_off(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let m = boot(&c.config("watchdog noreboot ktest=hang")?, slot)?;
    expect_line(m, "watchdog: on, an NMI 18 times a second")?;
    expect_line(m, "ktest: spinning with interrupts off")?;
    let alarm = expect_line(m, "watchdog: CPU 0 took no timer interrupt for ")?;
    let quiet = number_after(&alarm, "for ").unwrap_or(0);
    check((5000..8000).contains(&quiet), || {
        format!("caught after {quiet} ms: {alarm}")
    })?;
    let rip = expect_line(m, "  rip=0xffffffff8")?;
    check(rip.contains("cs=0x8"), || {
        format!("not the kernel's registers: {rip}")
    })?;
    let trace = expect_line(m, "backtrace (return addresses on the stack")?;
    check(trace.contains(" 0xffffffff8"), || {
        format!("no kernel address on the stack: {trace}")
    })?;
    let panic = expect_line(m, "PANIC at ")?;
    check(panic.contains("watchdog: CPU 0 stuck"), || {
        format!("panic: {panic}")
    })?;
    expect_line(m, "noreboot: halted")?;

    // An application processor stuck: the boot CPU sees its ticks stop and
    // sends it an NMI; it reports itself.
    let m = boot(&c.config("watchdog noreboot ktest=hang_ap")?.smp(2), slot)?;
    expect_line(m, "ktest: CPU 1 spinning with interrupts off")?;
    let alarm = expect_line(m, "watchdog: CPU 1 took no timer interrupt for ")?;
    let quiet = number_after(&alarm, "for ").unwrap_or(0);
    check((5000..8000).contains(&quiet), || {
        format!("caught after {quiet} ms: {alarm}")
    })?;
    expect_line(m, "  rip=0xffffffff8")?;
    // (Its stack holds no caller: `ap_main` is where it spins.)
    expect_line(m, "backtrace (return addresses on the stack")?;
    let panic = expect_line(m, "PANIC at ")?;
    check(panic.contains("watchdog: CPU 1 stuck"), || {
        format!("panic: {panic}")
    })?;

    let guests = [
        ("spinner", "spinner seconds=8"),
        ("sleeper", "sleeper sleeps=320"),
    ];
    let m = boot(
        &c.machine()
            .cmdline("watchdog")
            .guests(&guests)
            .config()?
            .smp(2),
        slot,
    )?;
    expect_line(m, "watchdog: on")?;
    m.wait_for("[1] spinner: ", super::harness::BOOT)?;
    m.wait_for("[2] sleeper: ", super::harness::BOOT)?;
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("took no timer interrupt")),
        || "a false alarm on a healthy machine".into(),
    )?;

    let guests = [("spinner", "spinner seconds=10 hypercalls")];
    let m = boot(
        &c.machine().cmdline("watchdog").guests(&guests).config()?,
        slot,
    )?;
    expect_line(m, "watchdog: on")?;
    expect_line(m, "[1] spinner: ")?;
    check(!m.lines().iter().any(|l| l.contains("PANIC")), || {
        "a panic while a guest made hypercalls under the watchdog".into()
    })
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![the_watchdog_catches_a_cpu_stuck_with_interrupts_off,]
}
