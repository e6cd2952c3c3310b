//! `bench hvm`: Linux in a Xenolith HVM domain against the same kernel and
//! initramfs booted directly by QEMU (what a user would run instead), side
//! by side in one run and on the same QEMU (TCG, one CPU, 1 GiB): QEMU
//! start to Linux's `/init`, and a CPU-bound job timed inside Linux
//! (sha256 of 64 MiB in tmpfs); then the path length (instructions under
//! `-icount`, exact) of one exit the kernel handles (CPUID) and of one port
//! access the device model serves, from the HVM test guest.

use super::setup::median;
use crate::qemu::{Config, Machine};
use crate::{build, host_tools, iso, linux_guest};
use std::path::Path;
use std::time::Duration;

const APPEND: &str = "console=ttyS0 quiet xenolith_bench";
const LONG: Duration = Duration::from_secs(300);

/// Time to `/init` and the job's milliseconds, from a booting machine.
fn measure(m: &Machine) -> Result<(Duration, u64), String> {
    let (boot, _) = m.wait_for_nth("xenolith-linux: /init running", 1, LONG)?;
    let line = m.wait_for("xenolith-linux: sha256 of 64 MiB took ", LONG)?;
    let ms = line
        .split("took ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no time in {line:?}"))?;
    Ok((boot, ms))
}

/// Where a boot's time went: when each stage's line came (QEMU start = 0).
const STAGES: [(&str, &str); 6] = [
    ("GRUB done, the hypervisor starts", "Xenolith 0.1.0"),
    ("hypervisor ready", "xenolith: ready"),
    (
        "domain 0 created the guest (memory, images)",
        "toolstack: started linux as domain",
    ),
    ("its device model serves it", "device-model: serving domain"),
    (
        "Linux's first line (ACPI)",
        "ACPI: No IOAPIC entries present",
    ),
    ("Linux runs /init", "xenolith-linux: /init running"),
];

/// The stages `m` printed, with when.
fn stages(m: &Machine) -> Vec<(&'static str, Duration)> {
    STAGES
        .iter()
        .filter_map(|&(what, marker)| {
            let (at, _) = m.wait_for_nth(marker, 1, Duration::ZERO).ok()?;
            Some((what, at))
        })
        .collect()
}

/// A bundle with one Linux guest (`append` its command line, `extra` more
/// configuration lines) and the device model.
pub(super) fn linux_bundle(
    dir: &Path,
    domains: &Path,
    linux: &linux_guest::Guest,
    append: &str,
    extra: &str,
) -> Result<std::path::PathBuf, String> {
    let dm = build::domain(domains, "device-model");
    let cfg = format!(
        "name = \"linux\"\ntype = \"hvm\"\nkernel = \"vmlinuz\"\nramdisk = \"initrd.img\"\n\
         cmdline = \"{append}\"\n{extra}"
    );
    iso::bundle(
        &dir.join("bundle.tar"),
        &[("10-linux.cfg", cfg.as_str())],
        &[
            ("vmlinuz", linux.kernel.as_path()),
            ("initrd.img", linux.initrd.as_path()),
            ("device-model", dm.as_path()),
        ],
    )
}

pub fn run(runs: usize) -> Result<(), String> {
    host_tools::ensure()?;
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    let linux = linux_guest::guest()?;
    let dir = build::target_dir().join("bench/hvm");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dom0 = iso::Module {
        path: build::domain(&domains, "toolstack-domain"),
        cmdline: "toolstack-domain".into(),
    };
    let tar = linux_bundle(&dir, &domains, &linux, APPEND, "memory = 256\n")?;
    let modules = [
        dom0.clone(),
        iso::Module {
            path: tar,
            cmdline: "bundle".into(),
        },
    ];
    let image = iso::build(&kernel, "", &modules, &dir.join("linux.iso"))?;
    let (mut xen_boot, mut xen_job, mut qemu_boot, mut qemu_job) = (vec![], vec![], vec![], vec![]);
    let (mut xen_stages, mut qemu_stages) = (vec![], vec![]);
    for _ in 0..runs {
        let m = Config::new(&image).memory("1G").spawn()?;
        let (b, j) = measure(&m)?;
        xen_boot.push(b);
        xen_job.push(j);
        xen_stages = stages(&m);
        let direct =
            Config::new(&image)
                .memory("1G")
                .direct_linux(&linux.kernel, &linux.initrd, APPEND);
        let m = direct.spawn()?;
        let (b, j) = measure(&m)?;
        qemu_boot.push(b);
        qemu_job.push(j);
        qemu_stages = stages(&m);
    }
    // Exit path lengths: the test guest's `end=bench` loops.
    let cfg = "name = \"exits\"\ntype = \"hvm\"\nkernel = \"hvm-test-guest\"\nmemory = 16\ncmdline = \"end=bench\"\n";
    // Only the test guest (and its device model) runs: the count is theirs.
    let only = iso::bundle(
        &dir.join("exits.tar"),
        &[("20-exits.cfg", cfg)],
        &[
            (
                "device-model",
                build::domain(&domains, "device-model").as_path(),
            ),
            (
                "hvm-test-guest",
                build::domain(&domains, "hvm-test-guest").as_path(),
            ),
        ],
    )?;
    let modules = [
        dom0,
        iso::Module {
            path: only,
            cmdline: "bundle".into(),
        },
    ];
    let image = iso::build(&kernel, "", &modules, &dir.join("exits.iso"))?;
    let m = Config::new(&image).icount().spawn()?;
    let per = |what: &str| -> Result<u64, String> {
        let line = m.wait_for(&format!("hvm-test: {what}: "), LONG)?;
        line.split(": ")
            .last()
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("no count in {line:?}"))
    };
    let cpuid = per("cpuid exit")?;
    let port = per("port exit to the device model")?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (xb, qb) = (median(xen_boot), median(qemu_boot));
    let (xj, qj) = (median_u64(xen_job), median_u64(qemu_job));
    println!("| measure (TCG, 1 CPU, median of {runs}) | Xenolith HVM | QEMU direct | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| QEMU start to Linux's /init | {:.0} ms | {:.0} ms | {:.2}x |",
        ms(xb),
        ms(qb),
        xb.as_secs_f64() / qb.as_secs_f64()
    );
    println!(
        "| sha256 of 64 MiB inside Linux | {xj} ms | {qj} ms | {:.2} (direct / Xenolith) |",
        qj as f64 / xj.max(1) as f64
    );
    println!();
    println!("| stage of the last run (ms since QEMU started) | Xenolith HVM | QEMU direct |");
    println!("|---|---|---|");
    for (what, _) in STAGES {
        let at = |s: &[(&str, Duration)]| {
            s.iter()
                .find(|(w, _)| *w == what)
                .map_or("-".to_string(), |(_, d)| format!("{:.0}", ms(*d)))
        };
        println!("| {what} | {} | {} |", at(&xen_stages), at(&qemu_stages));
    }
    println!();
    println!("| exit (instructions under -icount, whole machine, mean of 1,000) | value |");
    println!("|---|---|");
    println!("| CPUID, handled in the kernel | {cpuid} |");
    println!("| port input served by the device model (two domain switches) | {port} |");
    Ok(())
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}
