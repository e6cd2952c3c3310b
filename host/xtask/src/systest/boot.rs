//! System tests of booting: the banner and command line, options good and
//! bad, panics and faults in the kernel, memory sizes, CPUs, modules,
//! COM2, power-off, and domain 0 starting from the first module.

use super::harness::*;
use crate::iso::Module;
use std::time::Duration;

fn default_boot_prints_banner_and_cmdline(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let m = boot(&c.config("")?, slot)?;
    let banner = expect_line(m, "Xenolith ")?;
    check(banner.contains("loaded by GRUB"), || {
        format!("banner does not name GRUB: {banner}")
    })?;
    let line = expect_line(m, "cmdline: ")?;
    check(
        line.contains("dom0_mem=65536K")
            && line.contains("com1=115200,8n1,0x3f8,4")
            && line.contains("console=com1,vga")
            && line.contains("noreboot=off"),
        || format!("unexpected defaults: {line}"),
    )?;
    expect_line(m, "paging: text")?;
    let apic = expect_line(m, "apic: ")?;
    check(apic.contains("timer periodic at 100 Hz"), || {
        format!("no timer: {apic}")
    })?;
    expect_line(m, "xenolith: ready")?;
    // Without an IOMMU (`XENOLITH_TEST_IOMMU=0`: QEMU's `pc`) that, and
    // only that, is said loudly; with one (the suite's q35) nothing is.
    let warnings: Vec<String> = m
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    let iommu = m.lines().iter().any(|l| l.starts_with("iommu: VT-d unit"));
    let expected = if iommu {
        warnings.is_empty()
    } else {
        warnings.len() == 1 && warnings[0].starts_with("warning: iommu: none found")
    };
    check(expected, || {
        format!("a clean command line gave warnings: {warnings:?}")
    })
}

fn every_seed_option_is_in_the_effective_settings(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let cmd = "dom0_mem=32M com1=9600,8n1,0x3f8,4 com2=57600,7e2 console=com1,vga noreboot \
               nosmp noacpi ignorebiostables watchdog noht ifname=dummy tbuf_size=4";
    let m = boot(&c.config(cmd)?, slot)?;
    let line = expect_line(m, "cmdline: ")?;
    for want in [
        "dom0_mem=32768K",
        "com1=9600,8n1,0x3f8,4",
        "com2=57600,7e2,0x2f8,3",
        "console=com1,vga",
        "noreboot=on",
        "nosmp=on",
        "noacpi=on",
        "ignorebiostables=on",
        "watchdog=on",
        "noht=on",
        "ifname=dummy",
        "tbuf_size=4",
    ] {
        check(line.contains(want), || {
            format!("{want} missing from {line}")
        })?;
    }
    expect_line(m, "acpi: disabled by ignorebiostables")?;
    expect_line(m, "warning: watchdog: no I/O APIC to deliver its NMI; off")?;
    expect_line(m, "net: ifname=dummy")?;
    expect_line(m, "trace: 4 pages per cpu")?;
    expect_line(m, "dom0: 32768K set aside")?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn unknown_and_malformed_options_warn_and_boot_goes_on(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let cmd = "frobnicate com1=fast dom0_mem=-5 tbuf_size=999999999999 console=lpt1";
    let m = boot(&c.config(cmd)?, slot)?;
    expect_line(m, "warning: unknown option 'frobnicate' ignored")?;
    expect_line(
        m,
        "warning: malformed com1='fast', using 115200,8n1,0x3f8,4",
    )?;
    expect_line(m, "warning: malformed dom0_mem='-5'")?;
    expect_line(m, "warning: malformed tbuf_size='999999999999', using 0")?;
    expect_line(m, "warning: malformed console='lpt1'")?;
    let line = expect_line(m, "cmdline: ")?;
    check(
        line.contains("dom0_mem=65536K") && line.contains("tbuf_size=0"),
        || format!("defaults not used: {line}"),
    )?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn noreboot_panic_halts_with_the_message(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let sock = c.socket("monitor.sock");
    let m = boot(
        &c.config("noreboot ktest=panic")?.monitor_socket(&sock),
        slot,
    )?;
    let panic = expect_line(m, "PANIC at ")?;
    check(
        panic.contains("kernel/src/boot.rs:") && panic.ends_with("ktest=panic requested"),
        || format!("panic line lacks file, line or message: {panic}"),
    )?;
    expect_line(m, "noreboot: halted")?;
    // The CPU must come to a halt with interrupts off (it may still be writing
    // the line's last byte when we look), and the machine must not reset.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let regs = loop {
        let regs = m.monitor("info registers")?;
        if regs.contains("HLT=1") || std::time::Instant::now() > deadline {
            break regs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    check(regs.contains("HLT=1"), || {
        format!("CPU not halted:\n{regs}")
    })?;
    let eflags = regs
        .split("RFL=")
        .nth(1)
        .and_then(|s| u64::from_str_radix(&s[..8], 16).ok())
        .ok_or_else(|| format!("no RFL in:\n{regs}"))?;
    check(eflags & (1 << 9) == 0, || {
        format!("interrupts still enabled: RFL={eflags:#x}")
    })?;
    check(m.is_running(), || "QEMU exited".into())?;
    let banners = m
        .lines()
        .iter()
        .filter(|l| l.starts_with("Xenolith "))
        .count();
    check(banners == 1, || {
        format!("machine rebooted: {banners} banners")
    })
}

fn panic_without_noreboot_resets_the_machine(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let m = boot(&c.config("ktest=panic")?, slot)?;
    expect_line(m, "PANIC at ")?;
    expect_line(m, "rebooting")?;
    expect_line(m, "reset: via")?;
    // The proof of a reset: the firmware and GRUB run again and the kernel boots a second time.
    m.wait_for_nth("Xenolith ", 2, BOOT)?;
    Ok(())
}

fn page_fault_is_reported_with_registers(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let m = boot(&c.config("noreboot ktest=pagefault")?, slot)?;
    let ex = expect_line(m, "exception: ")?;
    check(
        ex.contains("#PF page fault (vector 14)")
            && ex.contains("error=0x0")
            && ex.contains("cr2=0x7fffdead0000")
            && ex.contains("rip=0xffffffff8"),
        || format!("bad report: {ex}"),
    )?;
    expect_line(m, "  rax=")?;
    expect_line(m, "  r13=")?;
    expect_line(m, "PANIC at ")?;
    expect_line(m, "noreboot: halted")?;
    Ok(())
}

/// The kernel can neither read nor run a ring-3 page (SMAP, SMEP): each
/// attempt is a protection fault (present page, supervisor access), and
/// the boot log says both are on.
fn the_kernel_cannot_read_or_run_a_ring3_page(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    // error: bit 0 present (a protection fault, not a missing page), bit
    // 4 an instruction fetch; never bit 2 (the access was the kernel's).
    for (hook, error) in [("smap", "error=0x1 "), ("smep", "error=0x11 ")] {
        let m = boot(&c.config(&format!("noreboot ktest={hook}"))?, slot)?;
        let cpu = expect_line(m, "cpu: ")?;
        check(cpu.contains("SMEP on, SMAP on"), || {
            format!("SMEP and SMAP not both on: {cpu}")
        })?;
        let ex = expect_line(m, "exception: ")?;
        check(
            ex.contains("#PF page fault (vector 14)")
                && ex.contains(error)
                && ex.contains("cr2=0x7fff5a500000"),
            || format!("ktest={hook}: not the fault SMAP/SMEP gives: {ex}"),
        )?;
        expect_line(m, "noreboot: halted")?;
    }
    Ok(())
}

/// The boot CPU's stack, and an application processor's, overflow into
/// their guard pages: a double fault on the IST stack, reported (an AP's
/// stack had no guard: it ran down through the physmap over other frames).
fn stack_overflow_hits_the_guard_page_and_double_faults_on_ist(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let m = boot(&c.config("noreboot ktest=stackoverflow")?, slot)?;
    let ex = expect_line(m, "exception: ")?;
    check(ex.contains("#DF double fault (vector 8)"), || {
        format!("expected a double fault: {ex}")
    })?;
    expect_line(m, "noreboot: halted")?;
    let m = boot(&c.config("noreboot ktest=stackoverflow_ap")?.smp(2), slot)?;
    expect_line(m, "ktest: CPU 1 overflows its kernel stack")?;
    let ex = expect_line(m, "exception: ")?;
    check(ex.contains("#DF double fault (vector 8)"), || {
        format!("expected a double fault on CPU 1: {ex}")
    })?;
    expect_line(m, "PANIC at ")?;
    Ok(())
}

fn memory_total(
    c: &Ctx,
    slot: &mut Option<Machine>,
    qemu_mem: &str,
    bytes: u64,
    above_4g: bool,
) -> Result<(), String> {
    let m = boot(&c.config("")?.memory(qemu_mem), slot)?;
    let line = expect_line(m, "memory: usable ")?;
    let kib = parse_kib(&line, "usable ").ok_or_else(|| format!("no total in {line}"))?;
    let want = bytes / 1024;
    // Firmware keeps a little: the EBDA, the BIOS area and its ACPI tables; never more than 2 MiB here.
    check(kib <= want && kib + 2048 >= want, || {
        format!("usable {kib} KiB, expected just under {want} KiB: {line}")
    })?;
    let top = line
        .split("top of RAM 0x")
        .nth(1)
        .and_then(|s| {
            u64::from_str_radix(
                s.trim_end_matches(|c: char| !c.is_ascii_hexdigit())
                    .split(';')
                    .next()?,
                16,
            )
            .ok()
        })
        .ok_or_else(|| format!("no top of RAM in {line}"))?;
    check((top > 1 << 32) == above_4g, || {
        format!("top of RAM {top:#x}, above 4 GiB expected: {above_4g}")
    })?;
    let paging = expect_line(m, "paging: ")?;
    let physmap =
        parse_kib(&paging, "physmap ").ok_or_else(|| format!("no physmap size in {paging}"))?;
    check(physmap << 20 >= bytes, || {
        format!("physmap {physmap} MiB does not cover {qemu_mem}")
    })?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn dom0_mem_larger_than_ram_is_clamped(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(&c.config("dom0_mem=1G")?.memory("64M"), slot)?;
    expect_line(m, "warning: dom0_mem=1048576K exceeds available memory")?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn smp_2_boots_and_madt_lists_both_cpus(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(&c.config("")?.smp(2), slot)?;
    let acpi = expect_line(m, "acpi: MADT")?;
    check(acpi.contains("MADT 2 cpus, 1 I/O APICs"), || {
        format!("unexpected MADT: {acpi}")
    })?;
    expect_line(m, "cpus: 2 found, 2 eligible")?;
    expect_line(
        m,
        "smp: 2 CPUs running (the boot CPU and 1 of 1 application processors)",
    )?;
    expect_line(m, "xenolith: ready")?;
    let m = boot(&c.config("")?.smp(4), slot)?;
    expect_line(
        m,
        "smp: 4 CPUs running (the boot CPU and 3 of 3 application processors)",
    )?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn nosmp_and_noht_limit_eligible_cpus(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    {
        let m = boot(&c.config("nosmp")?.smp(2), slot)?;
        expect_line(m, "cpus: 2 found, 1 eligible, nosmp")?;
        expect_line(m, "smp: 1 CPU running")?;
    }
    {
        let m = boot(
            &c.config("noht")?.smp_spec("4,sockets=1,cores=2,threads=2"),
            slot,
        )?;
        expect_line(m, "cpus: 4 found, 2 eligible, noht")?;
        expect_line(
            m,
            "smp: 2 CPUs running (the boot CPU and 1 of 1 application processors)",
        )?;
    }
    let m = boot(
        &c.config("noht")?.smp_spec("2,sockets=1,cores=1,threads=2"),
        slot,
    )?;
    expect_line(m, "cpus: 2 found, 1 eligible, noht")?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn modules(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let a = c.path("first-domain");
    let b = c.path("second-domain");
    std::fs::write(&a, vec![0xa5u8; 10_000]).map_err(|e| e.to_string())?;
    std::fs::write(&b, b"hello").map_err(|e| e.to_string())?;
    let mods = [
        Module {
            path: a,
            cmdline: "console-dom role=console".into(),
        },
        Module {
            path: b,
            cmdline: "guest name=b".into(),
        },
    ];
    let iso = c.iso("", &mods)?;
    let m = boot(&c.qemu(&iso), slot)?;
    let l1 = expect_line(m, "console-dom role=console")?;
    let l2 = expect_line(m, "guest name=b")?;
    for (line, len) in [(l1, 10_000u64), (l2, 5)] {
        let range = line.split_whitespace().nth(1).ok_or("no range")?;
        let (s, e) = range.split_once('-').ok_or("bad range")?;
        let s = u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| e.to_string())?;
        let e = u64::from_str_radix(e.trim_start_matches("0x"), 16).map_err(|e| e.to_string())?;
        check(e - s == len, || {
            format!("module range {range} is not {len} bytes")
        })?;
    }
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn console_com2h_sends_output_to_com2_with_top_bit_set(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let com2 = c.path("com2.log");
    let m = boot(
        &c.config("console=com2H ktest=poweroff")?.com2_file(&com2),
        slot,
    )?;
    let status = m.wait_exit(BOOT)?;
    check(status.success(), || format!("QEMU exited with {status}"))?;
    let raw = std::fs::read(&com2).map_err(|e| format!("cannot read COM2 output: {e}"))?;
    check(!raw.is_empty() && raw.iter().all(|b| b & 0x80 != 0), || {
        "COM2 bytes lack the top bit".into()
    })?;
    let text: String = raw.iter().map(|b| (b & 0x7f) as char).collect();
    check(
        text.contains("xenolith: ready") && text.contains("console=com2H"),
        || format!("COM2 got: {text}"),
    )?;
    check(
        m.lines().iter().all(|l| !l.contains("xenolith: ready")),
        || "COM1 was written although not a console".into(),
    )
}

fn poweroff(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(&c.config("ktest=poweroff")?, slot)?;
    expect_line(m, "poweroff: ACPI S5")?;
    let status = m.wait_exit(BOOT)?;
    check(status.success(), || format!("QEMU exited with {status}"))
}

fn dom0_starts_a_guest_that_prints_and_powers_off(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let m = boot(
        &c.machine()
            .guests(&[("hello", "hello memory=512K greeting=hi")])
            .config()?,
        slot,
    )?;
    expect_line(m, "dom0: domain 0 started from module 1")?;
    expect_line(m, "[0] toolstack: domain 0 up, 1 boot modules")?;
    expect_line(m, "[0] toolstack: started hello as domain 1 (512 KiB)")?;
    let hello = expect_line(m, "[1] hello from domain 1")?;
    check(hello.contains("(512 KiB): hello greeting=hi self="), || {
        format!("unexpected greeting: {hello}")
    })?;
    expect_line(m, "[0] toolstack: domain 1 (hello) shut down (reason 0)")?;
    expect_line(m, "[0] toolstack: all domains have stopped")?;
    Ok(())
}

pub(super) fn parse_kib(line: &str, after: &str) -> Option<u64> {
    line.split(after)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn memory_64m(c: &Ctx, m: &mut Option<Machine>) -> Result<(), String> {
    memory_total(c, m, "64M", 64 << 20, false)
}

fn memory_2g(c: &Ctx, m: &mut Option<Machine>) -> Result<(), String> {
    memory_total(c, m, "2G", 2 << 30, false)
}

fn memory_3_5g_with_a_hole_below_4g(c: &Ctx, m: &mut Option<Machine>) -> Result<(), String> {
    memory_total(c, m, "3584M", 3584 << 20, true)
}

fn modules_are_listed_with_their_command_lines(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    modules(c, slot)
}

fn poweroff_ends_qemu_cleanly(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    poweroff(c, slot)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        default_boot_prints_banner_and_cmdline,
        every_seed_option_is_in_the_effective_settings,
        unknown_and_malformed_options_warn_and_boot_goes_on,
        noreboot_panic_halts_with_the_message,
        panic_without_noreboot_resets_the_machine,
        page_fault_is_reported_with_registers,
        the_kernel_cannot_read_or_run_a_ring3_page,
        stack_overflow_hits_the_guard_page_and_double_faults_on_ist,
        memory_64m,
        memory_2g,
        memory_3_5g_with_a_hole_below_4g,
        dom0_mem_larger_than_ram_is_clamped,
        smp_2_boots_and_madt_lists_both_cpus,
        nosmp_and_noht_limit_eligible_cpus,
        modules_are_listed_with_their_command_lines,
        console_com2h_sends_output_to_com2_with_top_bit_set,
        poweroff_ends_qemu_cleanly,
        dom0_starts_a_guest_that_prints_and_powers_off,
    ]
}
