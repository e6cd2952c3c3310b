//! System tests of what the kernel does for domains: events, isolation of
//! a domain that does something forbidden, fair shares, grants, many
//! domains created and destroyed, hostile hypercalls, IRQs and device
//! memory given to a domain, lifecycle, rate-limited consoles, a serial
//! line that stops.

use super::harness::*;
use std::time::Duration;

fn two_domains_ping_pong_10000_times_over_an_event_channel(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        ("pingpong", "pong rounds=10000"),
        ("pingpong", "ping evtchn=pong rounds=10000"),
    ];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    expect_line(m, "[2] pingpong: 10000 round trips done")?;
    expect_line(m, "[1] pingpong: answered 10000 pings")?;
    expect_line(m, "toolstack: all domains have stopped")?;
    Ok(())
}

fn isolation(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    // (fault, what domain 0 must report)
    let faults: [(&str, &str); 12] = [
        ("read_kernel", "vector 14 error 0x5 at rip"),
        ("read_kernel_image", "vector 14 error 0x5 at rip"),
        ("read_other", "vector 14 error 0x4 at rip"),
        ("write_code", "vector 14 error 0x7 at rip"),
        ("exec_data", "vector 14 error 0x15 at rip"),
        ("cli", "vector 13 error 0x0"),
        ("hlt", "vector 13 error 0x0"),
        ("mov_cr3", "vector 13 error 0x0"),
        ("wrmsr", "vector 13 error 0x0"),
        ("port_io", "vector 13 error 0x0"),
        ("ud2", "vector 6 error 0x0"),
        (
            "panic",
            "crashed: \"deliberate panic for the test at domains/test-domains/src/faults.rs:",
        ),
    ];
    let lines: Vec<String> = faults
        .iter()
        .map(|(f, _)| format!("{f} fault={f} memory=512K"))
        .collect();
    let mut guests: Vec<(&str, &str)> = vec![("survivor", "survivor memory=512K")];
    guests.extend(lines.iter().map(|l| ("crasher", l.as_str())));
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    let mut last = Duration::ZERO;
    for (i, (fault, want)) in faults.iter().enumerate() {
        let id = i + 2;
        let (at, line) = m.wait_for_nth(
            &format!("toolstack: domain {id} ({fault}) crashed"),
            1,
            BOOT,
        )?;
        check(line.contains(want), || {
            format!("{fault}: expected {want:?} in {line}")
        })?;
        last = last.max(at);
    }
    for (fault, addr) in [
        ("read_kernel", "addr 0xffff800000100000"),
        ("read_kernel_image", "addr 0xffffffff80201000"),
        ("read_other", "addr 0x700000000000"),
    ] {
        let line = expect_line(m, &format!("({fault}) crashed: vector"))?;
        check(line.contains(addr), || {
            format!("{fault}: expected {addr} in {line}")
        })?;
    }
    // The survivor keeps its heartbeat after the last crash.
    let beats_then = m
        .lines()
        .iter()
        .filter(|l| l.contains("survivor: heartbeat"))
        .count();
    let (at, _) = m.wait_for_nth("[1] survivor: heartbeat", beats_then + 2, BOOT)?;
    check(at > last, || "no heartbeat after the last crash".into())?;
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("did not fault") || l.starts_with("PANIC")),
        || "a fault did not happen or the kernel panicked".into(),
    )
}

fn weights_1_and_2_share_the_cpu_1_to_2_and_a_sleeper_wakes_on_time(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        ("spinner", "light weight=1 seconds=2"),
        ("spinner", "heavy weight=2 seconds=2"),
        ("sleeper", "sleeper sleeps=40"),
    ];
    // Virtual time counts instructions here, so a busy host cannot make a wake-up look late.
    // One CPU: shares are divided per CPU (two would give each spinner one).
    let m = boot(&c.machine().guests(&guests).config()?.icount().smp(1), slot)?;
    let sleeper = expect_line(m, "[3] sleeper: 40 sleeps, worst wake-up")?;
    let late_us = number_after(&sleeper, "worst wake-up ").ok_or("no lateness")?;
    check(late_us <= 1_000, || {
        format!("a wake-up came {late_us} us late, more than 1 ms")
    })?;
    let light =
        number_after(&expect_line(m, "[1] spinner: ")?, "spinner: ").ok_or("no count")? as f64;
    let heavy =
        number_after(&expect_line(m, "[2] spinner: ")?, "spinner: ").ok_or("no count")? as f64;
    let ratio = heavy / light;
    check((ratio - 2.0).abs() <= 0.2, || {
        format!("weight 2 got {ratio:.3} times the CPU of weight 1 (want 2 within 10%)")
    })
}

fn grants(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(
        &c.machine()
            .dom0(("test-dom0", "test-dom0 scenario=grants"))
            .guests(&[("grant-peer", "grant-peer")])
            .config()?,
        slot,
    )?;
    expect_line(
        m,
        "grant-peer: mapped ref 0 at 0x700000000000, pattern 0xfeedf00d",
    )?;
    expect_line(m, "grant-peer: batch page to page: Ok(())")?;
    expect_line(
        m,
        "grant-peer: batch into a read-only page: Err(PermissionDenied)",
    )?;
    expect_line(m, "grant-peer: foreign ref: Err(BadGrant)")?;
    expect_line(m, "grant-peer: revoked ref: Err(BadGrant)")?;
    expect_line(
        m,
        "grants: mapper wrote back 0xfeed0ff2 (expected 0xfeed0ff2)",
    )?;
    expect_line(m, "grants: the batch copied word 0 to word 256: 0xfeedf00d; wrote word 2: 0xb0b0b0b; the read-only page's word 0: 0x0")?;
    expect_line(m, "grants: end while mapped: Err(GrantInUse)")?;
    expect_line(m, "grants: end after the mapper died: Ok(())")?;
    expect_line(
        m,
        "grants: mapped the granter's page at 0x700000005000: 0x5eedcafe",
    )?;
    expect_line(
        m,
        "grants: unmap one of two mappings of a dead granter's page: Ok(())",
    )?;
    expect_line(m, "grants: after the granter died the page still reads 0x5eedcafe 0x123456789abcdef; copy through its id: Err(DeadDomain)")?;
    expect_line(m, "grants: unmap after the granter died: Ok(())")?;
    let stats = expect_line(m, "grants: stats before")?;
    check(stats.ends_with("equal=true"), || {
        format!("resources leaked: {stats}")
    })?;
    expect_line(m, "test-dom0: scenario done")?;
    Ok(())
}

fn churn(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(
        &c.machine()
            .dom0(("test-dom0", "test-dom0 scenario=churn count=1000"))
            .guests(&[("hello", "hello")])
            .config()?,
        slot,
    )?;
    expect_line(m, "churn: info of a destroyed domain: Err(DeadDomain)")?;
    m.wait_for(
        "churn: 1000 domains created and destroyed",
        Duration::from_secs(300),
    )?;
    let eq = expect_line(m, "churn: equal=")?;
    check(eq.ends_with("equal=true"), || {
        format!(
            "{eq}\n{}",
            m.lines()
                .iter()
                .filter(|l| l.contains("churn:"))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let hellos = m
        .lines()
        .iter()
        .filter(|l| l.contains("hello from domain"))
        .count();
    check(hellos == 10, || {
        format!("{hellos} of the 10 unpaused domains said hello")
    })
}

fn leftovers(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(
        &c.machine()
            .dom0(("test-dom0", "test-dom0 scenario=leftovers"))
            .guests(&[("hello", "hello")])
            .config()?,
        slot,
    )?;
    let line = expect_line(m, "leftovers: ")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let number_before = |word: &str| -> Option<u64> {
        let i = words.iter().position(|w| *w == word)?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    };
    let filled = number_before("of").unwrap_or(0);
    let pages = number_before("pages").unwrap_or(0);
    // The first domain of 1 MiB: 256 pages, nearly all of them its own to write.
    check(
        filled >= 200
            && line.contains("read Err(DomainState), write Err(DomainState)")
            && line.ends_with(" hold 0 marked words"),
        || format!("{line} ({filled} marked, {pages} read)"),
    )?;
    m.wait_for("hello from domain", Duration::from_secs(30))
        .map(drop)
}

fn hostile(c: &Ctx, slot: &mut Option<Machine>, as_dom0: bool) -> Result<(), String> {
    let (config, prefix) = if as_dom0 {
        (
            c.machine()
                .dom0(("hostile", "hostile"))
                .guests(&[])
                .config()?,
            "[0]",
        )
    } else {
        (
            c.machine().guests(&[("hostile", "hostile")]).config()?,
            "[1]",
        )
    };
    let m = boot(&config, slot)?;
    super::console::not_forged(m, &format!("{prefix} hostile: "))?;
    let (_, summary) = m.wait_for_nth(&format!("{prefix} hostile: "), 2, BOOT)?;
    check(summary.contains(" calls, "), || {
        format!("unexpected summary: {summary}")
    })?;
    let checks = expect_line(m, &format!("{prefix} hostile: targeted checks passed"))?;
    check(checks.ends_with("passed 32/32"), || checks.clone())?;
    expect_line(m, &format!("{prefix} hostile: kernel still answers: Ok(0)"))?;
    if !as_dom0 {
        expect_line(m, "toolstack: domain 1 (hostile) shut down")?;
    }
    check(
        !m.lines()
            .iter()
            .any(|l| l.starts_with("PANIC") || l.starts_with("exception:")),
        || "the kernel faulted".into(),
    )
}

fn a_driver_domain_gets_its_irq_and_ports_and_nothing_else(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let sock = c.socket("com2.sock");
    let guests = [("irq-serial", "serial ioports=0x2f8-0x2ff irqs=3")];
    let m = boot(
        &c.machine().guests(&guests).config()?.com2_socket(&sock),
        slot,
    )?;
    // Connect first: QEMU drops what arrives before a client is there.
    m.com2_send(b"")?;
    expect_line(m, "[1] irq-serial: ready on IRQ 3")?;
    m.com2_send(b"hello\n")?;
    expect_line(m, "[1] irq-serial: received \"hello\"")?;
    // A second line proves the acknowledgement unmasked the IRQ.
    m.com2_send(b"again\n")?;
    expect_line(m, "[1] irq-serial: received \"again\"")?;
    m.com2_send(b"forbidden\n")?;
    let crash = expect_line(m, "toolstack: domain 1 (serial) crashed")?;
    check(crash.contains("vector 13"), || {
        format!("expected #GP for port 0x60: {crash}")
    })
}

fn device_memory_reaches_the_device_and_never_ram(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let sock = c.socket("monitor.sock");
    let guests = [
        ("vga-writer", "vga iomem=0xb8,1 text=XENOLITH"),
        ("vga-writer", "thief iomem=0x200,1"),
        // Device memory above RAM (nothing there: reads as all ones).
        ("vga-writer", "pointer iomem=0x40000,1"),
        // The local APIC and the keyboard controller (0x64: reset) are the kernel's.
        ("vga-writer", "apic iomem=0xfee00,1"),
        ("vga-writer", "resetter ioports=0x60-0x64"),
    ];
    // The kernel keeps off the VGA screen so only the domain writes it.
    let m = boot(
        &c.machine()
            .cmdline("console=com1")
            .guests(&guests)
            .config()?
            .monitor_socket(&sock),
        slot,
    )?;
    expect_line(m, "[1] vga-writer: wrote \"XENOLITH\", read back 0x1f58")?;
    expect_line(
        m,
        "toolstack: cannot give thief its hardware: permission denied",
    )?;
    expect_line(
        m,
        "vga-writer: ConsoleWrite from device memory: Err(BadAddress)",
    )?;
    expect_line(
        m,
        "toolstack: cannot give apic its hardware: permission denied",
    )?;
    expect_line(
        m,
        "toolstack: cannot give resetter its hardware: permission denied",
    )?;
    expect_line(
        m,
        "vga-writer: DomainInfo into device memory: Err(BadAddress)",
    )?;
    let mem = m.monitor("xp /8xh 0xb8000")?;
    for want in [
        "0x1f58", "0x1f45", "0x1f4e", "0x1f4f", "0x1f4c", "0x1f49", "0x1f54", "0x1f48",
    ] {
        check(mem.contains(want), || {
            format!("VGA memory lacks {want}:\n{mem}")
        })?;
    }
    Ok(())
}

fn lifecycle(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let dom0 = ("test-dom0", "test-dom0 scenario=lifecycle");
    let m = boot(
        &c.machine()
            .dom0(dom0)
            .guests(&[("hello", "hello"), ("survivor", "survivor")])
            .config()?,
        slot,
    )?;
    expect_line(
        m,
        "[0] lifecycle: kernel log has the banner: true, the cmdline: true",
    )?;
    expect_line(
        m,
        "[0] lifecycle: a second domain named dup: Err(NameTaken)",
    )?;
    expect_line(m, "[0] lifecycle: truncated image: Err(BadImage)")?;
    expect_line(m, "image refused: truncated")?;
    expect_line(m, "[0] lifecycle: refusal logged: true")?;
    expect_line(m, "[0] lifecycle: start before any image: Err(DomainState)")?;
    expect_line(m, "[0] lifecycle: bad entry: state 3 vector 14 rip 0x10")?;
    expect_line(
        m,
        "[0] lifecycle: paused for 500 ms: no heartbeat true, no CPU time true",
    )?;
    expect_line(m, "[0] lifecycle: unpaused: the heartbeat is back")?;
    expect_line(m, "[0] test-dom0: scenario done")?;
    Ok(())
}

fn chatty(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [("survivor", "survivor"), ("chatty", "chatty")];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    let dropped = expect_line(m, "lines dropped by the rate limit")?;
    check(dropped.starts_with("[2] ("), || {
        format!("unexpected: {dropped}")
    })?;
    // The survivor keeps its 100 ms heartbeat while the chatty one floods.
    let beats = m
        .lines()
        .iter()
        .filter(|l| l.starts_with("[1] survivor: heartbeat"))
        .count();
    m.wait_for_nth("[1] survivor: heartbeat", beats + 3, BOOT)?;
    Ok(())
}

/// COM2's far end stops reading (a FIFO nobody reads: QEMU's UART then
/// stays full, as on a line slower than what is sent) while a domain prints
/// as fast as the rate limit allows through the kernel, which writes its
/// log on COM1 and COM2 (`console=com1,com2L`). The kernel waits for COM2 a
/// bounded time once and then drops what it would send there: another
/// domain's heartbeat goes on on COM1 long after COM2 is full (the kernel
/// waited for the UART under its lock for ever, and the machine stopped).
fn a_serial_line_that_stops_taking_bytes_stops_nothing_else(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let fifo = c.path("com2");
    for end in ["in", "out"] {
        let path = c.path(&format!("com2.{end}"));
        let _ = std::fs::remove_file(&path);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .map_err(|e| format!("mkfifo: {e}"))?;
        check(made.success(), || format!("mkfifo {}", path.display()))?;
    }
    let guests = [("survivor", "survivor"), ("chatty", "chatty")];
    let config = c
        .machine()
        .cmdline("console=com1,com2L")
        .guests(&guests)
        .config()?
        .com2_pipe(&fifo);
    let m = boot(&config, slot)?;
    expect_line(m, "lines dropped by the rate limit")?;
    // The pipe's 64 KiB fill in about four seconds of flooding.
    expect_line(
        m,
        "console: COM2 takes no bytes; what it misses is dropped until it does",
    )?;
    // Then ten more seconds of heartbeats (one each 100 ms).
    let before = m
        .lines()
        .iter()
        .filter(|l| l.starts_with("[1] survivor: heartbeat"))
        .count();
    m.wait_for_nth("[1] survivor: heartbeat", before + 100, BOOT)?;
    Ok(())
}

fn hostile_hypercalls_from_a_guest_get_errors(
    c: &Ctx,
    m: &mut Option<Machine>,
) -> Result<(), String> {
    hostile(c, m, false)
}

fn hostile_hypercalls_from_domain_0_get_errors(
    c: &Ctx,
    m: &mut Option<Machine>,
) -> Result<(), String> {
    hostile(c, m, true)
}

fn each_forbidden_act_crashes_only_its_domain(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    isolation(c, slot)
}

fn grants_share_map_revoke_and_survive_either_death(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    grants(c, slot)
}

fn a_thousand_domains_come_and_go_without_leaks(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    churn(c, slot)
}

/// A domain created on the frames another had holds none of its bytes,
/// code pages included, and its memory is out of reach until its image is
/// loaded (creation leaves the heap for the load to clear).
fn a_new_domain_holds_no_byte_of_the_one_before_it(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    leftovers(c, slot)
}

fn lifecycle_log_names_images_entry_pause_unpause(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    lifecycle(c, slot)
}

fn a_chatty_domain_is_rate_limited_and_starves_no_one(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    chatty(c, slot)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        two_domains_ping_pong_10000_times_over_an_event_channel,
        each_forbidden_act_crashes_only_its_domain,
        weights_1_and_2_share_the_cpu_1_to_2_and_a_sleeper_wakes_on_time,
        grants_share_map_revoke_and_survive_either_death,
        a_thousand_domains_come_and_go_without_leaks,
        a_new_domain_holds_no_byte_of_the_one_before_it,
        hostile_hypercalls_from_a_guest_get_errors,
        hostile_hypercalls_from_domain_0_get_errors,
        a_driver_domain_gets_its_irq_and_ports_and_nothing_else,
        device_memory_reaches_the_device_and_never_ram,
        lifecycle_log_names_images_entry_pause_unpause,
        a_chatty_domain_is_rate_limited_and_starves_no_one,
        a_serial_line_that_stops_taking_bytes_stops_nothing_else,
    ]
}
