//! System tests of vCPUs on many CPUs: pinning, `domain vcpu-list`, `nosmp`.

use super::harness::{check, expect_line, toolstack, Ctx, Machine};
use super::harness::{tests, Test};

/// Four domains pinned one to each of four CPUs (`cpus=` on their lines;
/// the first spins, the others look every 20 ms) each report the CPU they
/// run on; `domain pin` moves one at once,
/// `domain vcpu-list` shows where each is, and one created from a file with
/// `cpus = "2"` and `vcpus = 2` runs on CPU 2 with its vCPU 1 listed
/// down. With `nosmp` all run on CPU 0 and pinning to another is refused.
fn four_domains_pinned_to_four_cpus_run_there_and_move_when_repinned(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        ("where", "w0 cpus=0 spin"),
        ("where", "w1 cpus=1"),
        ("where", "w2 cpus=2"),
        ("where", "w3 cpus=3"),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.smp(4))
        .boot_managed(slot)?;
    expect_line(m, "smp: 4 CPUs running")?;
    for i in 0..4 {
        expect_line(m, &format!("[{}] where: cpu {i}", i + 1))?;
    }
    let (code, out) = toolstack(&sock, &["domain", "pin", "w0", "0", "3"])?;
    check(code == 0, || format!("domain pin: {code} {out}"))?;
    expect_line(m, "[1] where: cpu 3")?;
    let (code, list) = toolstack(&sock, &["domain", "vcpu-list"])?;
    let row = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
    };
    let w0 = row("w0 ").unwrap_or_default();
    let w2 = row("w2 ").unwrap_or_default();
    check(
        code == 0 && w0.get(3) == Some(&"3") && w0.last() == Some(&"3") && w2.get(3) == Some(&"2"),
        || format!("vcpu-list: {code} {list}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "pin", "w1", "0", "9"])?;
    check(code == 1 && out.contains("cannot pin"), || {
        format!("pin to CPU 9: {code} {out}")
    })?;
    // `cpus =` in a configuration file, the image uploaded from beside it.
    let image =
        std::fs::read(crate::build::domain(&c.domains, "where")).map_err(|e| e.to_string())?;
    std::fs::write(c.path("where"), image).map_err(|e| e.to_string())?;
    let cfg = c.path("w4.cfg");
    std::fs::write(
        &cfg,
        "name = \"w4\"\nkernel = \"where\"\nmemory = 1\ncpus = \"2\"\nvcpus = 2\n",
    )
    .map_err(|e| e.to_string())?;
    let (code, out) = toolstack(&sock, &["domain", "create", cfg.to_str().unwrap_or("")])?;
    check(code == 0, || format!("create w4: {code} {out}"))?;
    expect_line(m, "[5] where: cpu 2")?;
    // Its two vCPUs: vCPU 1 down (`where` never starts it), both pinned.
    let (code, list) = toolstack(&sock, &["domain", "vcpu-list", "w4"])?;
    let rows: Vec<Vec<&str>> = list
        .lines()
        .filter(|l| l.starts_with("w4 "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    check(
        code == 0
            && rows.len() == 2
            && rows[1].get(4) == Some(&"down")
            && rows.iter().all(|r| r.last() == Some(&"2")),
        || format!("vcpu-list w4: {code} {list}"),
    )?;

    let guests = [("where", "w0"), ("where", "w1"), ("where", "w2")];
    let (m, sock) = c
        .machine()
        .cmdline("nosmp")
        .guests(&guests)
        .qemu(|config| config.smp(4))
        .boot_managed(slot)?;
    expect_line(m, "smp: 1 CPU running")?;
    for i in 0..3 {
        expect_line(m, &format!("[{}] where: cpu 0", i + 1))?;
    }
    let (code, out) = toolstack(&sock, &["domain", "pin", "w0", "0", "2"])?;
    check(code == 1 && out.contains("cannot pin"), || {
        format!("nosmp pin: {code} {out}")
    })?;
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("where: cpu 1") || l.contains("where: cpu 2")),
        || "a domain ran on another CPU with nosmp".into(),
    )
}

/// Two domains on two CPUs (pinned) ping-pong 10,000 times over an event
/// channel: every send wakes a vCPU on the other CPU with an IPI.
fn two_domains_on_two_cpus_ping_pong_10000_times(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        ("pingpong", "pong rounds=10000 cpus=0"),
        ("pingpong", "ping evtchn=pong rounds=10000 cpus=1"),
    ];
    let (m, _) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.smp(2))
        .boot_managed(slot)?;
    expect_line(m, "[1] pingpong: on cpu 0")?;
    expect_line(m, "[2] pingpong: on cpu 1")?;
    expect_line(m, "[2] pingpong: 10000 round trips done")?;
    expect_line(m, "[1] pingpong: answered 10000 pings")?;
    Ok(())
}

/// Load balancing: four spinning domains pinned to CPU 0 of four, then
/// unpinned, spread over the four CPUs by themselves (idle CPUs take a
/// waiting vCPU at their next tick): `vcpu-list` shows four CPUs in use.
fn unpinned_spinners_spread_over_idle_cpus(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        ("where", "s0 cpus=0 spin seconds=30"),
        ("where", "s1 cpus=0 spin seconds=30"),
        ("where", "s2 cpus=0 spin seconds=30"),
        ("where", "s3 cpus=0 spin seconds=30"),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.smp(4))
        .boot_managed(slot)?;
    for i in 1..=4 {
        expect_line(m, &format!("[{i}] where: cpu 0"))?;
    }
    for name in ["s0", "s1", "s2", "s3"] {
        let (code, out) = toolstack(&sock, &["domain", "pin", name, "0", "all"])?;
        check(code == 0, || format!("unpin {name}: {code} {out}"))?;
    }
    // Three of them move, each to a CPU of its own.
    for cpu in 1..4 {
        m.wait_for(
            &format!("where: cpu {cpu}"),
            std::time::Duration::from_secs(30),
        )?;
    }
    // The balancer keeps moving vCPUs at each tick (domain 0 wakes to
    // answer the listing, on some CPU): the spread is looked for until it
    // is seen, not sampled once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, list) = toolstack(&sock, &["domain", "vcpu-list"])?;
        let mut cpus: Vec<&str> = list
            .lines()
            .filter(|l| l.starts_with('s'))
            .filter_map(|l| l.split_whitespace().nth(3))
            .collect();
        cpus.sort();
        if code == 0 && cpus == ["0", "1", "2", "3"] {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("vcpu-list after unpinning: {code} {list}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// No stale TLB entry survives a move between CPUs: a domain maps one
/// granted page, then the other, at the same window slot, reading each,
/// while the test moves it between CPUs 0 and 1 sixty times. A CPU it left
/// idle, that it comes back to, must not read the page it mapped before.
fn a_domain_moved_between_cpus_never_reads_a_replaced_mapping(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    // Domain 1 grants to domain 2 (index 2, generation 1), which maps from domain 1.
    let prober = (1u32 << 16) | 2;
    let granter = (1u32 << 16) | 1;
    let guests = [
        (
            "tlb-check",
            format!("granter part=granter grantee={prober}"),
        ),
        (
            "tlb-check",
            format!("prober part=prober granter={granter} seconds=10 cpus=0"),
        ),
    ];
    let guests: Vec<(&str, &str)> = guests.iter().map(|(b, l)| (*b, l.as_str())).collect();
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.smp(2))
        .boot_managed(slot)?;
    expect_line(m, "[1] tlb-check: granted refs 0 and 1")?;
    for i in 0..60 {
        let cpus = if i % 2 == 0 { "1" } else { "0" };
        let (code, out) = toolstack(&sock, &["domain", "pin", "prober", "0", cpus])?;
        check(code == 0, || format!("pin: {code} {out}"))?;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let line = m.wait_for(" stale reads", std::time::Duration::from_secs(60))?;
    let number = |before: &str| {
        line.split(before)
            .next()
            .and_then(|s| s.split_whitespace().last())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let changes = number(" CPU changes").unwrap_or(0);
    check(changes >= 20 && line.ends_with(" 0 stale reads"), || {
        format!("{line} (moves: {changes})")
    })
}

/// TLB shootdown between the vCPUs of one domain: `tlb-stress` (two vCPUs,
/// on two CPUs) maps and unmaps granted pages on vCPU 0 while vCPU 1 reads
/// through the slot. Every read while a page is mapped sees that page;
/// every read after its unmap returned faults (the domain's probe turns
/// the fault into "not mapped"). `domain vcpu-list` shows both vCPUs
/// running on different CPUs meanwhile.
fn a_read_through_a_page_another_vcpu_unmapped_always_faults(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let stress = (1u32 << 16) | 2;
    let granter = (1u32 << 16) | 1;
    let guests = [
        (
            "tlb-check",
            format!("granter part=granter grantee={stress}"),
        ),
        (
            "tlb-stress",
            format!("stress granter={granter} seconds=10 vcpus=2"),
        ),
    ];
    let guests: Vec<(&str, &str)> = guests.iter().map(|(b, l)| (*b, l.as_str())).collect();
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.smp(4))
        .boot_managed(slot)?;
    expect_line(m, "[1] tlb-check: granted refs 0 and 1")?;
    expect_line(m, "[2] tlb-stress: vCPU 0 on cpu")?;
    let (code, list) = toolstack(&sock, &["domain", "vcpu-list", "stress"])?;
    let rows: Vec<Vec<&str>> = list
        .lines()
        .filter(|l| l.starts_with("stress "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let two_cpus = rows.len() == 2
        && rows[0][2] == "0"
        && rows[1][2] == "1"
        && rows[0][3] != rows[1][3]
        && rows.iter().all(|r| r[4] == "running");
    check(code == 0 && two_cpus, || {
        format!("vcpu-list: {code} {list}")
    })?;
    let line = m.wait_for(" violations, cpus ", std::time::Duration::from_secs(60))?;
    let number = |before: &str| {
        line.split(before)
            .next()
            .and_then(|s| s.split_whitespace().last())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (rounds, mapped, faults) = (
        number(" rounds"),
        number(" mapped reads"),
        number(" faults after unmap"),
    );
    let cpus: Vec<&str> = line
        .rsplit("cpus ")
        .next()
        .unwrap_or("")
        .split(" and ")
        .collect();
    check(
        rounds >= 100
            && mapped >= 100
            && faults >= 100
            && line.contains(" 0 violations")
            && cpus.len() == 2
            && cpus[0] != cpus[1],
        || line.clone(),
    )
}

/// A domain with two busy vCPUs on two CPUs is paused (both stop), unpaused
/// (both run), destroyed while both run (the last CPU to leave it frees
/// it); another is crashed (both stop; kept by `on_crash = "preserve"`) and
/// destroyed. The kernel's free memory is then what it was before.
fn a_domain_with_two_busy_vcpus_is_paused_crashed_and_destroyed_cleanly(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = c
        .machine()
        .guests(&[])
        .qemu(|config| config.smp(4))
        .boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    let free = super::harness::free_kib;
    let before = free(&sock)?;
    let image =
        std::fs::read(crate::build::domain(&c.domains, "spinner")).map_err(|e| e.to_string())?;
    std::fs::write(c.path("spinner"), image).map_err(|e| e.to_string())?;
    // (state of both vCPUs, whether both are loaded on a CPU)
    let vcpus = |name: &str| -> Result<Vec<(String, bool)>, String> {
        let (code, list) = toolstack(&sock, &["domain", "vcpu-list", name])?;
        check(code == 0, || format!("vcpu-list: {code} {list}"))?;
        Ok(list
            .lines()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(4)
                    .map(|s| (s.to_string(), s == "running"))
            })
            .collect())
    };
    for (n, name) in ["busy", "doomed"].iter().enumerate() {
        let cfg = c.path(&format!("{name}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "name = \"{name}\"\nkernel = \"spinner\"\nmemory = 1\nvcpus = 2\non_crash = \"preserve\"\ncmdline = \"seconds=100000 helpers=1\"\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let (code, out) = toolstack(&sock, &["domain", "create", cfg.to_str().unwrap_or("")])?;
        check(code == 0, || format!("create {name}: {code} {out}"))?;
        m.wait_for_nth("] spinner: vCPU 1 up", n + 1, super::harness::BOOT)?;
        let running = vcpus(name)?;
        check(
            running.len() == 2 && running.iter().all(|(_, r)| *r),
            || format!("{name} after start: {running:?}"),
        )?;
        if *name == "busy" {
            let (code, out) = toolstack(&sock, &["domain", "pause", name])?;
            check(code == 0, || format!("pause: {code} {out}"))?;
            let paused = vcpus(name)?;
            check(paused.iter().all(|(s, _)| s == "paused"), || {
                format!("{name} paused: {paused:?}")
            })?;
            let (code, out) = toolstack(&sock, &["domain", "unpause", name])?;
            check(code == 0, || format!("unpause: {code} {out}"))?;
            let again = vcpus(name)?;
            check(again.iter().all(|(_, r)| *r), || {
                format!("{name} unpaused: {again:?}")
            })?;
        } else {
            let (code, out) = toolstack(&sock, &["domain", "crash", name])?;
            check(code == 0, || format!("crash: {code} {out}"))?;
            expect_line(
                m,
                &format!("({name}) crashed: crashed by the control domain"),
            )?;
            let stopped = vcpus(name)?;
            check(stopped.iter().all(|(s, _)| s == "crashed"), || {
                format!("{name} crashed: {stopped:?}")
            })?;
        }
        let (code, out) = toolstack(&sock, &["domain", "destroy", name])?;
        check(code == 0, || format!("destroy {name}: {code} {out}"))?;
        let (_, list) = toolstack(&sock, &["domain", "list"])?;
        check(
            !list.lines().any(|l| l.starts_with(&format!("{name} "))),
            || format!("{name} still listed: {list}"),
        )?;
    }
    let after = free(&sock)?;
    check(after == before, || {
        format!("free memory {before} KiB before, {after} KiB after both were destroyed")
    })
}

/// A domain destroyed while another CPU runs it keeps its IRQ (and PCI
/// functions, console) until that CPU leaves it. Once `domain_destroy`
/// returns it must be gone: a driver domain restarted at once found its
/// PCI function still taken and was not restarted (CI, crash campaign).
/// Twenty rounds of test-dom0 destroying a spinner pinned to CPU 1 from CPU 0
/// and giving its IRQ to a successor at once.
fn a_domain_destroyed_while_running_elsewhere_is_gone_when_destroy_returns(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let dom0 = ("test-dom0", "test-dom0 scenario=dying");
    let config = c
        .machine()
        .dom0(dom0)
        .guests(&[("spinner", "spinner")])
        .config()?
        .smp(2);
    let m = super::harness::boot(&config, slot)?;
    expect_line(
        m,
        "[0] dying: 20 of 20 destroyed while running elsewhere were dying; 20 successors got the IRQ at once",
    )?;
    expect_line(m, "[0] test-dom0: scenario done")?;
    Ok(())
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        four_domains_pinned_to_four_cpus_run_there_and_move_when_repinned,
        two_domains_on_two_cpus_ping_pong_10000_times,
        a_domain_moved_between_cpus_never_reads_a_replaced_mapping,
        a_read_through_a_page_another_vcpu_unmapped_always_faults,
        a_domain_with_two_busy_vcpus_is_paused_crashed_and_destroyed_cleanly,
        unpinned_spinners_spread_over_idle_cpus,
        a_domain_destroyed_while_running_elsewhere_is_gone_when_destroy_returns,
    ]
}
