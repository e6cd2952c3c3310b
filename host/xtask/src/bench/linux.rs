//! `bench linux`: Linux's disk and network in a Xenolith HVM domain (its
//! device model, drvdom-blk and drvdom-net) against the same kernel and
//! initramfs booted directly by QEMU with QEMU's own virtio-blk-pci and
//! virtio-net-pci (what a user would run instead), side by side in one
//! run: the same QEMU (TCG), guest memory (one vCPU), disk image file
//! (`cache=none`) and user network with forwarded ports; Xenolith on one
//! host CPU and again on two (the guest's vCPU on one, the driver domains
//! and its device model free to run on the other, as QEMU's own devices
//! run in its I/O thread beside its guest).
//!
//! Inside Linux (`/init`, `xenolith_iobench=1`): sequential write and read
//! of 256 MiB in 64 KiB O_DIRECT requests (the write with `fsync`), 4 KiB
//! random reads at queue depth 1 for 10 s (`xenolith-io randread`). From
//! the host, through the forwarded ports to `xenolith-io`'s servers: 256
//! MiB over TCP each way, and 64-byte request/response round trips for 10 s.
//! For Xenolith, also where the time goes: the guest vCPU's exits by kind
//! (debug key `x`, through domain 0's management channel) per MiB sent
//! to the guest and per round trip, and a third boot with the kernel's
//! trace on whose random reads are broken down by where the CPU was
//! (`linux_breakdown`). `LINUXBENCH_PROFILE=FILE` logs two seconds of the
//! blocks QEMU runs during the random reads on one host CPU (`cargo xtask
//! profile FILE`; with `XTASK_QEMU_ARGS=-singlestep`, every instruction).

use super::guest_tcp::{self, GUEST_PORTS};
use crate::qemu::{free_port, Config, Machine};
use crate::{build, host_tools, iso, linux_guest};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(600);
const IP: &str = "10.0.2.15";
/// Linux's command line: its disk and network figures over `mib()` MiB.
fn append() -> String {
    format!(
        "console=ttyS0 quiet xenolith_iobench={} xenolith_ip=10.0.2.15/24",
        mib()
    )
}
/// MiB the disk and TCP figures move (`--short`: a few).
fn mib() -> usize {
    super::setup::sized(256, 8)
}

/// Bytes over TCP each way.
fn tcp_bytes() -> usize {
    mib() << 20
}

/// One machine's figures.
#[derive(Default)]
struct Figures {
    write_mib_s: f64,
    read_mib_s: f64,
    iops: f64,
    to_guest_mib_s: f64,
    from_guest_mib_s: f64,
    round_trips_s: f64,
    to_init: Duration,
    pages_mapped: Option<f64>,
    /// Xenolith only: the guest vCPU's exits by kind (debug key `x`) per
    /// MiB sent host -> guest, and per 64-byte round trip.
    exits_per_mib: Exits,
    exits_per_round_trip: Exits,
    /// Xenolith only: each domain's CPU time (ms) per MiB sent host -> guest.
    cpu_ms_per_mib: Exits,
}

/// Each domain's CPU time so far, in ms as the scheduler charged it (to
/// the TSC tick: debug key q; `domain list` gives the same in 10 ms
/// units), by name.
fn cpu_ms_now(client: &mut toolstack::Client) -> Result<Exits, String> {
    client.debug_keys("q").map_err(management)?;
    let log = client.dmesg().map_err(management)?;
    let start = log
        .iter()
        .rposition(|l| l.contains("debug-keys 'q'"))
        .ok_or("no domain table in the kernel log")?;
    Ok(log[start + 1..]
        .iter()
        .filter_map(|l| {
            let (name, rest) = l.trim().strip_prefix("domain ")?.split_once(": ")?;
            let name = name.split_once(' ')?.1;
            let us: f64 = rest
                .split(" us charged")
                .next()?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), us / 1000.0))
        })
        .collect())
}

/// Exits by kind.
type Exits = std::collections::BTreeMap<String, f64>;

/// A failure of domain 0's management channel, said as one.
fn management(e: toolstack::Error) -> String {
    format!("the management channel (COM2): {e}")
}

/// The HVM guest's exits by kind so far, from the kernel's answer to debug
/// key `x` (the bench's guest is the only HVM vCPU).
fn exits_now(client: &mut toolstack::Client) -> Result<Exits, String> {
    client.debug_keys("x").map_err(management)?;
    let log = client.dmesg().map_err(management)?;
    let line = log
        .iter()
        .rev()
        .find(|l| l.contains("debug-keys 'x': domain") && l.contains(" exits: "))
        .ok_or("no exit counts in the kernel log")?;
    let counts = line.split("exits: ").nth(1).unwrap_or("");
    Ok(counts
        .split(", ")
        .filter_map(|kv| {
            let (k, v) = kv.rsplit_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

/// [`cpu_ms_now`] through the management channel, if there is one.
fn com2_client_cpu(client: &mut Option<toolstack::Client>) -> Result<Option<Exits>, String> {
    client.as_mut().map(cpu_ms_now).transpose()
}

/// `after - before`, each kind divided by `per`.
fn exits_between(before: &Exits, after: &Exits, per: f64) -> Exits {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - before.get(k).unwrap_or(&0.0)) / per.max(1e-9),
            )
        })
        .collect()
}

fn number_in(line: &str, after: &str) -> Result<f64, String> {
    line.split(after)
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no number after {after:?} in {line:?}"))
}

/// [`measure_on`], with the machine's last lines in the error: a bench that
/// stops says where its machine was.
fn measure(
    m: &Machine,
    ports: [u16; 3],
    com2: Option<&std::path::Path>,
    capture: Option<&std::path::Path>,
) -> Result<Figures, String> {
    measure_on(m, ports, com2).map_err(|e| {
        let lines = m.lines();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        let state = com2
            .map(|c| super::linux_failure::state(m, c))
            .unwrap_or_default();
        let frames = capture
            .map(super::linux_failure::connections)
            .unwrap_or_default();
        let nic = super::linux_failure::nic_queues(m);
        format!("{e}\n--- the machine's last lines ---\n{tail}{state}{nic}{frames}")
    })
}

/// Where a machine's NIC records its frames: in the short form only (the
/// suite's, where a failure must explain itself; the full form's transfers
/// would make the file hundreds of MiB and the recording would cost time).
fn capture_file(dir: &std::path::Path, machine: &str) -> Option<std::path::PathBuf> {
    super::setup::sized(None, Some(dir.join(format!("{machine}.pcap"))))
}

fn measure_on(
    m: &Machine,
    ports: [u16; 3],
    com2: Option<&std::path::Path>,
) -> Result<Figures, String> {
    let mut f = Figures::default();
    (f.to_init, _) = m.wait_for_nth("xenolith-linux: /init running", 1, LONG)?;
    let size = format!("{} MiB ", mib());
    let w = m.wait_for(&format!("xenolith-linux: iobench seq write {size}"), LONG)?;
    let mib = mib() as f64;
    f.write_mib_s = mib / (number_in(&w, &size)? / 1e3);
    let r = m.wait_for(&format!("xenolith-linux: iobench seq read {size}"), LONG)?;
    f.read_mib_s = mib / (number_in(&r, &size)? / 1e3);
    let rr = m.wait_for("xenolith-linux: iobench randread ", LONG)?;
    f.iops = number_in(&rr, "randread ")?;
    // Connecting before a server listens gets a reset from QEMU's user
    // network: each says when it listens.
    for port in GUEST_PORTS {
        m.wait_for(&guest_tcp::listening(port), LONG)?;
    }
    let mut client = match com2 {
        Some(sock) => Some(toolstack::Client::connect(sock).map_err(management)?),
        None => None,
    };
    let mut exits = || client.as_mut().map(exits_now).transpose();
    let before = exits()?;
    let cpu_before = com2_client_cpu(&mut client)?;
    // Host -> guest: until the guest has counted every byte.
    let took = guest_tcp::to_guest(ports[0], tcp_bytes())?;
    f.to_guest_mib_s = mib / took.as_secs_f64();
    if let (Some(b), Some(a)) = (&cpu_before, com2_client_cpu(&mut client)?) {
        f.cpu_ms_per_mib = exits_between(b, &a, mib);
    }
    let mut exits = || client.as_mut().map(exits_now).transpose();
    if let (Some(b), Some(a)) = (&before, exits()?) {
        f.exits_per_mib = exits_between(b, &a, mib);
    }
    // Guest -> host.
    let took = guest_tcp::from_guest(ports[1], tcp_bytes())?;
    f.from_guest_mib_s = mib / took.as_secs_f64();
    // 64-byte round trips.
    let before = exits()?;
    let lasting = Duration::from_secs(super::setup::sized(10, 2));
    let (n, took) = guest_tcp::round_trips(ports[2], lasting)?;
    f.round_trips_s = n as f64 / took.as_secs_f64();
    if let (Some(b), Some(a)) = (&before, exits()?) {
        f.exits_per_round_trip = exits_between(b, &a, n as f64);
    }
    // The device model's misses of its cache of mapped guest pages (the
    // last power of two it reported), Xenolith only.
    f.pages_mapped = m
        .lines()
        .iter()
        .rev()
        .find(|l| l.contains("guest pages mapped so far"))
        .and_then(|l| number_in(l, "device-model: ").ok());
    Ok(f)
}

pub fn run() -> Result<(), String> {
    host_tools::ensure()?;
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    let linux = linux_guest::guest()?;
    let dir = build::target_dir().join("bench/linux");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let disk = dir.join("disk.img");
    let f = std::fs::File::create(&disk).map_err(|e| e.to_string())?;
    f.set_len(300 << 20).map_err(|e| e.to_string())?;
    let modules = [
        iso::Module {
            path: build::domain(&domains, "toolstack-domain"),
            cmdline: "toolstack-domain mgmt=com2".into(),
        },
        iso::Module {
            path: build::domain(&domains, "drvdom-blk"),
            cmdline: "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=bench=all".into(),
        },
        iso::Module {
            path: build::domain(&domains, "drvdom-net"),
            cmdline: "drvdom-net role=net memory=4M pci=00:05.0 dma=512".into(),
        },
        iso::Module {
            path: super::hvm::linux_bundle(
                &dir,
                &domains,
                &linux,
                &append(),
                "memory = 512\ndisk = [\"bench,xvda,w\"]\nvif = [\"mac=00:16:3e:00:00:20\"]\n",
            )?,
            cmdline: "bundle".into(),
        },
    ];
    let image = iso::build(&kernel, "", &modules, &dir.join("linux-io.iso"))?;
    // The same with the kernel's trace on, for the breakdown of a read.
    let traced = iso::build(
        &kernel,
        "tbuf_size=1024",
        &modules,
        &dir.join("linux-io-traced.iso"),
    )?;
    // Xenolith on one host CPU, as the guest has; and on two, where the
    // driver domains and the device model can run beside the guest, as a
    // deployment would place them (QEMU's own devices run beside its guest
    // in its I/O thread).
    let boot = |image: &std::path::Path, cpus: u32| -> Result<(Machine, [u16; 3], _, _), String> {
        let ports = [free_port()?, free_port()?, free_port()?];
        let sock = crate::qemu::socket_path(&dir.join(format!("linux-com2-{cpus}.sock")));
        let name = image.file_stem().unwrap_or_default().to_string_lossy();
        let capture = capture_file(&dir, &format!("{name}-{cpus}cpu"));
        let mut config = Config::new(image)
            .memory("1G")
            .smp(cpus)
            .disk(&disk)
            .disk_cache_none()
            .nic(&guest_tcp::forwards(ports, IP))
            .com2_socket(&sock)
            .monitor_socket(&crate::qemu::socket_path(
                &dir.join(format!("linux-monitor-{cpus}.sock")),
            ));
        if let Some(c) = &capture {
            config = config.capture_frames(c);
        }
        let m = config.spawn()?;
        m.wait_for(
            "toolstack: serving the management protocol on COM2",
            Duration::from_secs(120),
        )?;
        Ok((m, ports, sock, capture))
    };
    let xenolith = |cpus: u32| -> Result<Figures, String> {
        let (m, ports, sock, capture) = boot(&image, cpus)?;
        // `LINUXBENCH_PROFILE=FILE`: the exec log of Linux's random reads
        // on one host CPU (`cargo xtask profile FILE`).
        if let (Ok(log), 1) = (std::env::var("LINUXBENCH_PROFILE"), cpus) {
            super::setup::exec_log(&m, "xenolith-linux: iobench seq read", 2, &log)?;
        }
        measure(&m, ports, Some(&sock), capture.as_deref())
            .map_err(|e| format!("Xenolith on {cpus} host CPU(s): {e}"))
    };
    let xen = xenolith(1)?;
    let xen2 = xenolith(2)?;
    let breakdown = {
        let (m, _, sock, _) = boot(&traced, 1)?;
        m.wait_for("xenolith-linux: iobench randread ", LONG)
            .and_then(|_| super::linux_breakdown::measure(&sock, &kernel))
            .map_err(|e| format!("Xenolith with its trace on: {e}"))?
    };
    let ports = [free_port()?, free_port()?, free_port()?];
    let direct = {
        let capture = capture_file(&dir, "linux-io-direct");
        let mut config = Config::new(&image)
            .memory("512M")
            .disk(&disk)
            .disk_cache_none()
            .nic(&guest_tcp::forwards(ports, IP))
            .direct_linux(&linux.kernel, &linux.initrd, &append());
        if let Some(c) = &capture {
            config = config.capture_frames(c);
        }
        let m = config.spawn()?;
        measure(&m, ports, None, capture.as_deref()).map_err(|e| format!("QEMU direct: {e}"))?
    };
    println!(
        "| measure (TCG, a 1-vCPU 512 MiB guest, cache=none) | Xenolith HVM, 1 host CPU | 2 host CPUs | QEMU direct | ratio | ratio, 2 CPUs |"
    );
    println!("|---|---|---|---|---|---|");
    let mib = mib();
    let row = |what: &str, unit: &str, pick: fn(&Figures) -> f64| {
        let (x, x2, q) = (pick(&xen), pick(&xen2), pick(&direct));
        println!(
            "| {what} | {x:.1} {unit} | {x2:.1} {unit} | {q:.1} {unit} | {:.2} | {:.2} |",
            x / q.max(1e-9),
            x2 / q.max(1e-9)
        );
    };
    row(
        &format!("disk sequential write, 64 KiB O_DIRECT, {mib} MiB"),
        "MiB/s",
        |f| f.write_mib_s,
    );
    row(
        &format!("disk sequential read, 64 KiB O_DIRECT, {mib} MiB"),
        "MiB/s",
        |f| f.read_mib_s,
    );
    row("4 KiB random reads, queue depth 1, 10 s", "IOPS", |f| {
        f.iops
    });
    row(&format!("TCP host -> guest, {mib} MiB"), "MiB/s", |f| {
        f.to_guest_mib_s
    });
    row(&format!("TCP guest -> host, {mib} MiB"), "MiB/s", |f| {
        f.from_guest_mib_s
    });
    row("64-byte TCP round trips", "/s", |f| f.round_trips_s);
    if let Some(n) = xen.pages_mapped {
        println!(
            "| guest pages the device model mapped (cache misses; at least) | {n:.0} | {:.0} | - | | |",
            xen2.pages_mapped.unwrap_or(0.0)
        );
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| QEMU start to /init | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} (direct / Xenolith) | {:.2} |",
        ms(xen.to_init),
        ms(xen2.to_init),
        ms(direct.to_init),
        direct.to_init.as_secs_f64() / xen.to_init.as_secs_f64(),
        direct.to_init.as_secs_f64() / xen2.to_init.as_secs_f64()
    );
    println!();
    println!("| CPU time per MiB host -> guest, by domain | 1 CPU | 2 CPUs |");
    println!("|---|---|---|");
    let names: std::collections::BTreeSet<&String> = [&xen, &xen2]
        .iter()
        .flat_map(|f| f.cpu_ms_per_mib.keys())
        .collect();
    for n in names {
        let get = |e: &Exits| e.get(n).copied().unwrap_or(0.0);
        println!(
            "| {n} | {:.0} ms | {:.0} ms |",
            get(&xen.cpu_ms_per_mib),
            get(&xen2.cpu_ms_per_mib)
        );
    }
    // Where the time goes: how often the guest left for the hypervisor.
    println!();
    println!(
        "| Linux vCPU exits, by kind | per MiB host -> guest, 1 CPU | 2 CPUs | per 64-byte round trip, 1 CPU | 2 CPUs |"
    );
    println!("|---|---|---|---|---|");
    let kinds: std::collections::BTreeSet<&String> = [&xen, &xen2]
        .iter()
        .flat_map(|f| f.exits_per_mib.keys().chain(f.exits_per_round_trip.keys()))
        .collect();
    for k in kinds {
        let get = |e: &Exits| e.get(k).copied().unwrap_or(0.0);
        println!(
            "| {k} | {:.0} | {:.0} | {:.1} | {:.1} |",
            get(&xen.exits_per_mib),
            get(&xen2.exits_per_mib),
            get(&xen.exits_per_round_trip),
            get(&xen2.exits_per_round_trip)
        );
    }
    super::linux_breakdown::print(&breakdown, direct.iops);
    Ok(())
}
