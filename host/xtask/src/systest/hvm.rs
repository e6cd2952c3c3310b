//! System tests of HVM guests: the hand-written test guest performs each
//! exit the kernel handles and prints what it got; a guest that triple
//! faults or reaches outside its memory crashes alone, with its record.

use super::harness::*;
use std::time::Duration;

/// A bundle with the HVM test guest and one `auto/` configuration per
/// `(name, end, on_crash)`.
fn hvm_bundle(c: &Ctx, guests: &[(&str, &str, &str)]) -> Result<std::path::PathBuf, String> {
    let image = build::domain(&c.domains, "hvm-test-guest");
    let device_model = build::domain(&c.domains, "device-model");
    let configs: Vec<(String, String)> = guests
        .iter()
        .enumerate()
        .map(|(i, (name, end, on_crash))| {
            (
                format!("auto/{i:02}-{name}.cfg"),
                format!(
                    "name = \"{name}\"\ntype = \"hvm\"\nkernel = \"hvm-test-guest\"\n\
                     memory = 16\ncmdline = \"end={end} by=test\"\non_crash = \"{on_crash}\"\n"
                ),
            )
        })
        .collect();
    bundle_of(
        c,
        &configs,
        &[
            ("hvm-test-guest", image.as_path()),
            ("device-model", device_model.as_path()),
        ],
    )
}

/// A managed machine of two CPUs with the HVM bundle `tar`: a guest's
/// vCPU runs on the CPU that does not keep the kernel's timers
/// (`default_affinity`), as on most machines.
/// [`boot_two_cpus`], with a client of its management channel and the
/// free memory (KiB) before the test does anything.
fn boot_two_cpus_counted<'m>(
    c: &Ctx,
    slot: &'m mut Option<Machine>,
) -> Result<(&'m mut Machine, toolstack::Client, u64), String> {
    let tar = hvm_bundle(c, &[])?;
    let (m, sock) = boot_two_cpus(c, tar, slot)?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let free = client.host_info().map_err(|e| e.to_string())?.free_kib;
    Ok((m, client, free))
}

fn boot_two_cpus<'m>(
    c: &Ctx,
    tar: std::path::PathBuf,
    slot: &'m mut Option<Machine>,
) -> Result<(&'m mut Machine, std::path::PathBuf), String> {
    c.machine()
        .guests(&[])
        .bundle(tar)
        .qemu(|config| config.smp(2))
        .boot_managed(slot)
}

fn an_hvm_guest_gets_exact_answers_to_each_exit_and_idles_in_hlt(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let tar = hvm_bundle(c, &[("hvm", "halt", "preserve")])?;
    let (m, sock) = boot_two_cpus(c, tar, slot)?;
    expect_line(m, "hvm: AMD SVM with nested paging")?;
    for line in [
        "[1] hvm-test: in long mode",
        "[1] hvm-test: cpuid 0x40000000: XenolithHVM up to 0x40000001",
        "[1] hvm-test: cpuid 1: hypervisor yes x2apic yes apic id 0",
        "[1] hvm-test: cpuid 0x80000001: svm no",
        "[1] hvm-test: rdmsr efer: 0x500",
        "[1] hvm-test: rdmsr vm_hsave_pa: #GP",
        "[1] hvm-test: wrmsr vm_hsave_pa: #GP",
        "[1] hvm-test: wrmsr efer.svme: #GP",
        "[1] hvm-test: wrmsr pat: ok then reads 0x7010600070406",
        "[1] hvm-test: in 0x80: 0xff",
        "[1] hvm-test: vmrun: #UD",
        "[1] hvm-test: vmmcall: #UD",
        "[1] hvm-test: stgi: #UD",
        "[1] hvm-test: apic id 0x0 version 0x50014",
        "[1] hvm-test: apic enable: ok",
        "[1] hvm-test: tsc-deadline timer woke hlt: 1 interrupt",
        "[1] hvm-test: periodic timer: 4 interrupts in all",
        "[1] hvm-test: 1000 short tsc-deadline sleeps woke hlt: 1000 interrupts",
        "[1] hvm-test: 60 sleeps that came due with interrupts off woke hlt: 60 interrupts",
        "[1] hvm-test: isr after eoi: 0x0",
        "[1] hvm-test: write to the apic id: #GP",
        "[1] hvm-test: com1 scratch register: 0x5a",
        "hvm-test: a line through COM1",
        "[1] hvm-test: pic mask reads 0xef",
        "[1] hvm-test: com1 interrupt taken at vector 0x24, iir 0x2",
        "[1] hvm-test: command line: end=halt by=test",
        "[1] hvm-test: halting",
    ] {
        expect_line(m, line)?;
    }
    // Halted with interrupts off, it uses no CPU: its time stays put.
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let ticks = |client: &mut toolstack::Client| -> Result<u64, String> {
        let list = client.list().map_err(|e| e.to_string())?;
        let d = list.iter().find(|d| d.name == "hvm");
        d.map(|d| d.cpu_ticks)
            .ok_or_else(|| format!("no domain hvm in {list:?}"))
    };
    // It printed "halting" a few instructions before its HLT: measure
    // from when its vCPU is blocked in it.
    let deadline = std::time::Instant::now() + super::harness::BOOT;
    loop {
        let vcpus = client.vcpu_list().map_err(|e| e.to_string())?;
        if vcpus
            .iter()
            .any(|v| v.name == "hvm" && v.state == "blocked")
        {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("the HVM guest never blocked in HLT: {vcpus:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = ticks(&mut client)?;
    std::thread::sleep(Duration::from_secs(2));
    let after = ticks(&mut client)?;
    check(after == before, || {
        format!("a halted HVM guest used CPU: {before} ticks, then {after}")
    })?;
    // Its device model crashes: the guest crashes with it, nobody else.
    let serving = expect_line(m, "device-model: serving domain 1")?;
    let dm = number_after(&serving, "[").ok_or(format!("no domain in {serving:?}"))?;
    client.crash(dm as u32).map_err(|e| e.to_string())?;
    expect_line(m, "(hvm) crashed: hvm: its device model stopped")?;
    Ok(())
}

fn an_hvm_guest_that_reaches_outside_its_memory_or_triple_faults_crashes_alone(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let tar = hvm_bundle(
        c,
        &[
            ("reacher", "mmio", "preserve"),
            ("tripler", "triple", "preserve"),
            ("toucher", "device", "preserve"),
        ],
    )?;
    let m = boot(
        &c.machine()
            .guests(&[("counter", "counter")])
            .bundle(tar)
            .config()?,
        slot,
    )?;
    let crashed = expect_line(
        m,
        "(reacher) crashed: hvm: access to a guest-physical address outside its memory",
    )?;
    check(crashed.contains("address 0x30000000"), || {
        format!("the crash record: {crashed}")
    })?;
    expect_line(m, "(tripler) crashed: hvm: triple fault")?;
    // Device memory (the MMIO window) nobody serves: loads read all ones,
    // and an instruction the kernel does not decode there ends the guest.
    expect_line(
        m,
        "hvm-test: device memory read 0xffffffff and 0xffffffffffffffff",
    )?;
    expect_line(
        m,
        "(toucher) crashed: hvm: device memory reached by an instruction the kernel does not decode",
    )?;
    // Everyone else goes on.
    expect_line(m, "[1] counter: 3")?;
    check(
        !m.lines().iter().any(|l| l.contains("hvm-test: read 0x")),
        || "the reacher went on after reading outside its memory".into(),
    )?;
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("an add to device memory went on")),
        || "the toucher went on after an undecoded access".into(),
    )
}

fn seventy_hvm_guests_created_and_destroyed_give_back_every_frame_and_table_slot(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, mut client, free_before) = boot_two_cpus_counted(c, slot)?;
    let err = |e: toolstack::Error| e.to_string();
    // Halted ones, and busy ones destroyed while they run on the other CPU.
    // Seventy guests and their device models are more than domain 0's
    // table holds (127): gone ones must be forgotten two at a time (the
    // 65th Linux guest was refused when only one was).
    for i in 1..=70 {
        let (end, said) = if i % 2 == 0 {
            ("spin", "spinning")
        } else {
            ("halt", "halting")
        };
        let config = format!(
            "name = \"h{i}\"\ntype = \"hvm\"\nkernel = \"hvm-test-guest\"\nmemory = 16\n\
             vcpus = 2\ncmdline = \"end={end}\"\non_poweroff = \"preserve\"\n"
        );
        let id = client.create(&config, None, false).map_err(err)?;
        expect_line(m, &format!("[{}] hvm-test: {said}", id & 0xffff))?;
        client.destroy(id).map_err(err)?;
    }
    // Each guest's device model stops once its guest is gone, and goes.
    let free_after =
        free_kib_once_gone(&mut client, |name| name.contains("-dm"), Some(free_before))?;
    check(free_after == free_before, || {
        format!(
            "free memory {free_before} KiB before 70 HVM guests, {free_after} KiB after; the kernel holds:\n{}",
            super::harness::kernel_memory_report(&mut client)
        )
    })
}

/// An HVM guest's RAM is its own from creation (the free memory drops by
/// all of it at once, and no other domain can take what it has not
/// touched yet) and is given to it page by page as it first touches it
/// (`domain::guest_ram`; debug key q says how much is untouched): a guest
/// writing 56 MiB of its 64 reads every page back, and the free memory
/// does not move meanwhile.
fn an_hvm_guests_ram_is_held_from_creation_and_given_as_it_is_touched(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, mut client, before) = boot_two_cpus_counted(c, slot)?;
    let err = |e: toolstack::Error| e.to_string();
    let config = "name = \"toucher\"\ntype = \"hvm\"\nkernel = \"hvm-test-guest\"\n\
                  memory = 64\ncmdline = \"end=touch touch_mib=64\"\non_poweroff = \"preserve\"\n";
    let id = client.create(config, None, true).map_err(err)?;
    expect_line(m, &format!("device-model: serving domain {}", id & 0xffff))?;
    let created = client.host_info().map_err(err)?.free_kib;
    check(before - created >= 64 * 1024, || {
        format!(
            "creating a 64 MiB guest took {} KiB of the free memory",
            before - created
        )
    })?;
    // The kernel's table (debug key q) says how much it has not touched.
    let untouched = |client: &mut toolstack::Client| -> Result<u64, String> {
        client.debug_keys("q").map_err(err)?;
        let lines = client.dmesg().map_err(err)?;
        let line = lines
            .iter()
            .rev()
            .find(|l| l.contains(" toucher: "))
            .ok_or("debug key q listed no toucher")?;
        line.split(" KiB (")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("no untouched RAM in {line:?}"))
    };
    let fresh = untouched(&mut client)?;
    check(fresh >= 64 * 1024, || {
        format!("created and not run yet, {fresh} KiB of its 64 MiB are untouched")
    })?;
    client.unpause(id).map_err(err)?;
    let said = expect_line(m, &format!("[{}] hvm-test: wrote ", id & 0xffff))?;
    let left = untouched(&mut client)?;
    // Left: the 8 MiB below where it writes (but the few pages it runs
    // in) and nested page tables it did not need.
    check(left <= 9 * 1024, || {
        format!("after it wrote 56 MiB of its 64, {left} KiB are untouched")
    })?;
    check(
        said.ends_with("wrote 14336 pages and read back 14336"),
        || format!("the guest touching its RAM said: {said}"),
    )?;
    let touched = client.host_info().map_err(err)?.free_kib;
    check(touched == created, || {
        format!("free memory {created} KiB before the guest touched 56 MiB, {touched} KiB after")
    })?;
    client.destroy(id).map_err(err)?;
    let after = free_kib_once_gone(&mut client, |n| n.starts_with("toucher"), Some(before))?;
    check(after == before, || {
        format!("free memory {before} KiB before the guest, {after} KiB after it was gone")
    })?;
    // A guest that touches nothing still holds all of it: a second one
    // that would fit only in its untouched RAM is refused.
    let big_mib = before / 1024 - 40;
    let big = format!(
        "name = \"big\"\ntype = \"hvm\"\nkernel = \"hvm-test-guest\"\nmemory = {big_mib}\n"
    );
    let big = client.create(&big, None, true).map_err(err)?;
    let small = "name = \"small\"\ntype = \"hvm\"\nkernel = \"hvm-test-guest\"\nmemory = 64\n";
    let refused = client.create(small, None, true);
    check(refused.is_err(), || {
        format!("a 64 MiB guest was created beside a {big_mib} MiB one in {before} KiB")
    })?;
    client.destroy(big).map_err(err)?;
    free_kib_once_gone(&mut client, |n| n.starts_with("big"), Some(before))?;
    let small = client.create(small, None, true).map_err(err)?;
    client.destroy(small).map_err(err)
}

fn a_hostile_hvm_guest_writing_every_msr_and_port_harms_only_itself(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let tar = hvm_bundle(c, &[("hostile", "hostile", "preserve")])?;
    let m = boot(
        &c.machine()
            .guests(&[("counter", "counter dirty_kib=64 count=100000 pace_us=20000")])
            .bundle(tar)
            .config()?,
        slot,
    )?;
    let long = std::time::Duration::from_secs(240);
    let refused = m.wait_for("hvm-test: wrote every MSR, ", long)?;
    m.wait_for("hvm-test: wrote and read every port, ", long)?;
    m.wait_for("hvm-test: hostile guest still here", long)?;
    check(!m.lines().iter().any(|l| l.contains("crashed")), || {
        format!("a crash after: {refused}")
    })?;
    // The Rust guest goes on after it (another checksum of its memory).
    let seen = m
        .lines()
        .iter()
        .filter(|l| l.contains("counter: memory "))
        .count();
    m.wait_for_nth("counter: memory ", seen + 1, long)?;
    // The Rust guest counted on, its memory as it wrote it.
    let sums: Vec<String> = m
        .lines()
        .iter()
        .filter_map(|l| {
            l.split("counter: memory ")
                .nth(1)
                .map(|r| r.split(' ').next().unwrap_or("").to_string())
        })
        .collect();
    check(
        sums.len() >= 2 && sums.iter().all(|s| *s == sums[0]),
        || format!("the counter's memory sums: {sums:?}"),
    )
}

/// `HvmGrant`: a device model (the `dm-probe` test domain in the real
/// one's place) grants a page of its guest to itself and reads through its
/// window what domain 0 wrote there (the guest's command line); the grant
/// cannot end while mapped; what it must not do is refused with the
/// documented error; the guest runs on (its port I/O answered). Destroyed
/// while its device model still maps one of its pages, the page stays
/// readable until unmapped, and nothing is left behind.
fn a_device_model_reads_its_guests_memory_through_a_grant_and_nothing_else(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = build::domain(&c.domains, "hvm-test-guest");
    let probe = build::domain(&c.domains, "dm-probe");
    let config = "name = \"probed\"\ntype = \"hvm\"\nkernel = \"hvm-test-guest\"\n\
                  memory = 16\ncmdline = \"end=halt by=probe\"\non_crash = \"preserve\"\n";
    let tar = bundle_of(
        c,
        &[("auto/00-probed.cfg".to_string(), config.to_string())],
        &[
            ("hvm-test-guest", image.as_path()),
            ("device-model", probe.as_path()),
        ],
    )?;
    let (m, sock) = c.machine().guests(&[]).bundle(tar).boot_managed(slot)?;
    for line in [
        "dm-probe: grant before serving: Err(PermissionDenied)",
        "dm-probe: the guest's page at 0x7000 reads \"end=halt by=probe\"",
        "dm-probe: end while mapped: Err(GrantInUse)",
        "dm-probe: end: Ok(0)",
        "dm-probe: end again: Err(BadGrant)",
        "dm-probe: grant outside its memory: Err(BadAddress)",
        "dm-probe: grant of the kernel-shared pages: Err(BadAddress)",
        "dm-probe: grant not page-aligned: Err(BadAddress)",
        "dm-probe: grant to the guest itself: Err(InvalidArgument)",
        "dm-probe: grant to nobody: Err(NoSuchDomain)",
        "dm-probe: grant of another domain's page: Err(PermissionDenied)",
        "dm-probe: done",
        // Its port I/O answered as an empty bus (no 8259s behind it).
        "[1] hvm-test: pic mask reads 0xff",
    ] {
        expect_line(m, line)?;
    }
    // Destroyed while its device model maps one of its pages: the page
    // stays readable until unmapped, then every frame is free again (the
    // guest was started at boot, so "before" is measured with both gone
    // against the same machine with a second probed guest created and
    // destroyed the same way).
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let err = |e: toolstack::Error| e.to_string();
    let cycle = |client: &mut toolstack::Client, n: usize| -> Result<u64, String> {
        let id = client.resolve("probed").map_err(err)?;
        client.destroy(id).map_err(err)?;
        m.wait_for_nth(
            "dm-probe: its page still reads \"end=halt\"; unmapped: Ok(0)",
            n,
            BOOT,
        )?;
        let free = free_kib_once_gone(client, |name| name.starts_with("probed"), None)?;
        client.create(config, None, false).map_err(err)?;
        m.wait_for_nth("dm-probe: done", n + 1, BOOT)?;
        Ok(free)
    };
    let first = cycle(&mut client, 1)?;
    let second = cycle(&mut client, 2)?;
    check(first == second, || {
        format!("free memory after a probed guest went: {first} KiB, after another: {second} KiB")
    })
}

pub(super) fn tests() -> Vec<Test> {
    tests![
        a_hostile_hvm_guest_writing_every_msr_and_port_harms_only_itself,
        an_hvm_guests_ram_is_held_from_creation_and_given_as_it_is_touched,
        seventy_hvm_guests_created_and_destroyed_give_back_every_frame_and_table_slot,
        an_hvm_guest_gets_exact_answers_to_each_exit_and_idles_in_hlt,
        an_hvm_guest_that_reaches_outside_its_memory_or_triple_faults_crashes_alone,
        a_device_model_reads_its_guests_memory_through_a_grant_and_nothing_else,
    ]
}
