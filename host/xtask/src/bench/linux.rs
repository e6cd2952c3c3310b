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

use crate::qemu::{free_port, Config, Forward, Machine};
use crate::{build, host_tools, iso, linux_guest};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

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
}

fn number_in(line: &str, after: &str) -> Result<f64, String> {
    line.split(after)
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no number after {after:?} in {line:?}"))
}

fn measure(m: &Machine, ports: [u16; 3]) -> Result<Figures, String> {
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
    m.wait_for("xenolith-linux: iobench servers ready", LONG)?;
    let connect = |port: u16| -> Result<TcpStream, String> {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(LONG)).map_err(|e| e.to_string())?;
        Ok(s)
    };
    // Host -> guest: until the guest has counted every byte.
    let mut s = connect(ports[0])?;
    let began = Instant::now();
    let chunk = vec![0x5au8; 1 << 16];
    for _ in 0..tcp_bytes() / chunk.len() {
        s.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let secs = began.elapsed().as_secs_f64();
    if answer.trim() != tcp_bytes().to_string() {
        return Err(format!("the guest counted {answer:?} bytes"));
    }
    f.to_guest_mib_s = mib / secs;
    // Guest -> host.
    let mut s = connect(ports[1])?;
    let began = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    loop {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got != tcp_bytes() {
        return Err(format!("{got} bytes came from the guest"));
    }
    f.from_guest_mib_s = mib / began.elapsed().as_secs_f64();
    // 64-byte round trips.
    let mut s = connect(ports[2])?;
    let message = [7u8; 64];
    let mut back = [0u8; 64];
    let began = Instant::now();
    let mut n = 0u64;
    while began.elapsed() < Duration::from_secs(super::setup::sized(10, 2)) {
        s.write_all(&message).map_err(|e| e.to_string())?;
        s.read_exact(&mut back).map_err(|e| e.to_string())?;
        n += 1;
    }
    f.round_trips_s = n as f64 / began.elapsed().as_secs_f64();
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

fn forwards(ports: [u16; 3]) -> Vec<Forward> {
    ports
        .iter()
        .zip([5001, 5002, 5003])
        .map(|(&host_port, guest_port)| Forward {
            udp: false,
            host_port,
            guest: IP.into(),
            guest_port,
        })
        .collect()
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
            cmdline: "toolstack-domain".into(),
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
    // Xenolith on one host CPU, as the guest has; and on two, where the
    // driver domains and the device model can run beside the guest, as a
    // deployment would place them (QEMU's own devices run beside its guest
    // in its I/O thread).
    let xenolith = |cpus: u32| -> Result<Figures, String> {
        let ports = [free_port()?, free_port()?, free_port()?];
        let m = Config::new(&image)
            .memory("1G")
            .smp(cpus)
            .disk(&disk)
            .disk_cache_none()
            .nic(&forwards(ports))
            .spawn()?;
        measure(&m, ports)
    };
    let xen = xenolith(1)?;
    let xen2 = xenolith(2)?;
    let ports = [free_port()?, free_port()?, free_port()?];
    let direct = {
        let m = Config::new(&image)
            .memory("512M")
            .disk(&disk)
            .disk_cache_none()
            .nic(&forwards(ports))
            .direct_linux(&linux.kernel, &linux.initrd, &append())
            .spawn()?;
        measure(&m, ports)?
    };
    println!(
        "| measure (TCG, a 1-vCPU 512 MiB guest, cache=none) | Xenolith HVM, 1 host CPU | 2 host CPUs | QEMU direct | ratio | ratio, 2 CPUs |"
    );
    println!("|---|---|---|---|---|---|");
    let row = |what: &str, unit: &str, pick: fn(&Figures) -> f64| {
        let (x, x2, q) = (pick(&xen), pick(&xen2), pick(&direct));
        println!(
            "| {what} | {x:.1} {unit} | {x2:.1} {unit} | {q:.1} {unit} | {:.2} | {:.2} |",
            x / q.max(1e-9),
            x2 / q.max(1e-9)
        );
    };
    row(
        "disk sequential write, 64 KiB O_DIRECT, 256 MiB",
        "MiB/s",
        |f| f.write_mib_s,
    );
    row(
        "disk sequential read, 64 KiB O_DIRECT, 256 MiB",
        "MiB/s",
        |f| f.read_mib_s,
    );
    row("4 KiB random reads, queue depth 1, 10 s", "IOPS", |f| {
        f.iops
    });
    row("TCP host -> guest, 256 MiB", "MiB/s", |f| f.to_guest_mib_s);
    row("TCP guest -> host, 256 MiB", "MiB/s", |f| {
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
    Ok(())
}
