//! `cargo xtask`: the one build driver of Xenolith.
//!
//! Owns: building the kernel (and later every domain), assembling the GRUB
//! ISO, booting it in QEMU, the test suite (static checks, host unit tests,
//! system tests that boot the real thing) and the benchmarks.

#![forbid(unsafe_code)]

mod bench;
mod build;
mod checks;
mod doc_paths;
mod exec_profile;
mod fuzz;
mod host_tools;
mod import_cycles;
mod iso;
mod linux_guest;
mod mgmt_keys;
mod pcap;
mod pty;
mod qemu;
mod systest;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, boot, test and benchmark Xenolith"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which QEMU accelerator to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// Software emulation: slower per instruction, but boots fast and runs anywhere.
    Tcg,
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
}

#[derive(Subcommand)]
enum Command {
    /// Build everything, assemble the ISO and boot it in QEMU with COM1 on this terminal (Ctrl-A X quits).
    Run {
        /// Hypervisor command line (the `multiboot2` line of grub.cfg).
        #[arg(long, default_value = iso::DEFAULT_CMDLINE)]
        cmdline: String,
        #[arg(long, value_enum, default_value_t = Accel::Tcg)]
        accel: Accel,
        /// Guest memory, in QEMU's syntax (e.g. 512M, 2G).
        #[arg(long, default_value = "512M")]
        memory: String,
        /// Number of CPUs.
        #[arg(long, default_value_t = 2)]
        smp: u32,
        /// Raw disk image for the virtio-blk disk drvdom-blk drives (created, 64 MiB, if missing).
        #[arg(long, default_value = "target/xenolith-disk.img")]
        disk: std::path::PathBuf,
    },
    /// Format and lint checks, host unit tests, then the QEMU system tests.
    Test {
        /// Run only the system tests whose names contain this text (skips the static checks and unit tests).
        #[arg(long)]
        only: Option<String>,
        /// Accelerator for the system tests; KVM is optional and not the default (see README).
        #[arg(long, value_enum, default_value_t = Accel::Tcg)]
        accel: Accel,
    },
    /// The static checks alone: the paths the docs cite, circles of imports, formatting, lints.
    Check,
    /// Write the bootable ISO alone, for real hardware or another VMM.
    Image {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = iso::DEFAULT_CMDLINE)]
        cmdline: String,
    },
    /// Fuzzing: a parser of untrusted bytes (`fuzz/`, coverage-guided), `all`
    /// of them, or `hypercalls` (the in-QEMU hypercall fuzzer).
    Fuzz {
        /// A target of `fuzz/Cargo.toml` (`cargo fuzz list`), `all`, or `hypercalls`.
        target: String,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// `hypercalls`: the generator's seed (the same seed, the same calls).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// `hypercalls`: how many calls.
        #[arg(long, default_value_t = 100_000)]
        calls: u64,
    },
    /// Long campaigns: `crashes` (driver domains crashed at random while guests check their data).
    Campaign {
        /// `crashes`.
        which: String,
        #[arg(long, default_value_t = 1000)]
        count: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Where the instructions of a QEMU exec log went (`bench net` with
    /// `NETBENCH_PROFILE=FILE` and `XTASK_QEMU_ARGS=-singlestep` takes one),
    /// by binary and function; the build must be the log's.
    Profile { log: PathBuf },
    /// Benchmarks; each prints a table.
    Bench {
        /// Small sizes and one run of each: checks a bench still runs and
        /// prints its table (the suite runs every bench so).
        #[arg(long)]
        short: bool,
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            cmdline,
            accel,
            memory,
            smp,
            disk,
        } => run(&cmdline, accel, &memory, smp, &disk),
        Command::Test { only, accel } => systest::run_all(only.as_deref(), accel),
        Command::Check => checks::doc_paths()
            .and_then(|()| checks::import_cycles())
            .and_then(|()| checks::fmt())
            .and_then(|()| checks::clippy()),
        Command::Image { out, cmdline } => image(&out, &cmdline),
        Command::Bench { short, which } => bench::run(which, short),
        Command::Profile { log } => exec_profile::report(&log),
        Command::Campaign { which, count, seed } => match which.as_str() {
            "crashes" => systest::crash_campaign(seed, count),
            other => Err(format!("no campaign {other:?} (there is: crashes)")),
        },
        Command::Fuzz {
            target,
            seconds,
            seed,
            calls,
        } => match target.as_str() {
            "hypercalls" => systest::hypercall_campaign(seed, calls),
            _ => fuzz::command(&target, seconds),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    cmdline: &str,
    accel: Accel,
    memory: &str,
    smp: u32,
    disk: &std::path::Path,
) -> Result<(), String> {
    host_tools::ensure()?;
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    let modules = iso::run_modules(&domains);
    qemu::ensure_disk(disk, 64 << 20)?;
    let iso = iso::build(
        &kernel,
        cmdline,
        &modules,
        &build::target_dir().join("xenolith.iso"),
    )?;
    let com2 = qemu::socket_path(&build::target_dir().join("xenolith-com2.sock"));
    println!("xtask: booting {} (Ctrl-A X quits QEMU)", iso.display());
    println!(
        "xtask: management channel on {}: cargo run -p toolstack -- --connect {} domain list",
        com2.display(),
        com2.display()
    );
    println!(
        "xtask: kernel ELF {} (for `toolstack host trace --kernel` or TOOLSTACK_KERNEL; add tbuf_size=16 to --cmdline to trace)",
        kernel.display()
    );
    println!(
        "xtask: disk {} is the virtio-blk disk at PCI 00:04.0 (drvdom-blk drives it)",
        disk.display()
    );
    let forwards = run_forwards();
    let key = build::target_dir().join("xenolith-client.key");
    println!(
        "xtask: management over the network, once drvdom-net runs: cargo run -p toolstack -- --connect tcp://127.0.0.1:{RUN_MGMT_PORT} --key {} domain list",
        key.display()
    );
    println!(
        "xtask: {} is this client's key (its public half is in the boot bundle's mgmt/authorized_keys; it also pins the machine's key)",
        key.display()
    );
    for f in forwards.iter().filter(|f| f.host_port != RUN_MGMT_PORT) {
        let guest = if f.guest == iso::LINUX_GUEST_IP {
            "the Linux guest's"
        } else {
            "the web guest's"
        };
        println!(
            "xtask: 127.0.0.1:{} ({}) reaches {guest} port {} (try {})",
            f.host_port,
            if f.udp { "udp" } else { "tcp" },
            f.guest_port,
            if f.udp {
                format!("echo hi | nc -u -w1 127.0.0.1 {}", f.host_port)
            } else {
                format!("curl http://127.0.0.1:{}/", f.host_port)
            }
        );
    }
    println!(
        "xtask: the machine is QEMU's q35 with an Intel IOMMU: each driver domain's device reaches only what it was given (`toolstack host info` says so)"
    );
    let status = qemu::Config::new(&iso)
        .iommu()
        .disk(disk)
        .nic(&forwards)
        .com2_socket(&com2)
        .accel(accel)
        .memory(memory)
        .smp(smp)
        .interactive_command()
        .status()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("QEMU exited with {status}"))
    }
}

fn image(out: &std::path::Path, cmdline: &str) -> Result<(), String> {
    host_tools::ensure()?;
    let kernel = build::kernel()?;
    let modules = iso::default_modules(&build::domains()?);
    iso::build(&kernel, cmdline, &modules, out)?;
    println!("xtask: wrote {}", out.display());
    Ok(())
}

/// The host ports `cargo xtask run` forwards: 8080 and 8007 to the
/// example web guest, 8081 to the Linux guest's page.
/// The host port `cargo xtask run` forwards to domain 0's management port.
const RUN_MGMT_PORT: u16 = 7070;

fn run_forwards() -> Vec<qemu::Forward> {
    let mut forwards = qemu::web_forwards(8080, 8007);
    forwards.push(qemu::Forward {
        udp: false,
        host_port: RUN_MGMT_PORT,
        guest: iso::MGMT_ENDPOINT.address.map(|b| b.to_string()).join("."),
        guest_port: iso::MGMT_ENDPOINT.port,
    });
    forwards.push(qemu::Forward {
        udp: false,
        host_port: 8081,
        guest: iso::LINUX_GUEST_IP.into(),
        guest_port: 80,
    });
    forwards
}
