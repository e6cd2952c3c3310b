//! `toolstack`: manage a Xenolith machine (verbs after `xl`). A thin layer
//! over the library in `lib.rs`.
//!
//! Exit codes: 0 success, 1 the machine refused, 2 usage, 3 no connection.

#![forbid(unsafe_code)]

mod attach;
mod progress;
mod rings;
mod top;
mod trace_cmd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "toolstack", version, about = "Manage a Xenolith machine")]
struct Cli {
    /// The machine's management channel (`cargo xtask run` prints it): the
    /// path of QEMU's COM2 socket, or `tcp://HOST:PORT` for the network
    /// channel (with `--key`).
    #[arg(
        long,
        env = "TOOLSTACK_CONNECT",
        global = true,
        default_value = "target/xenolith-com2.sock"
    )]
    connect: PathBuf,
    /// This client's key file for `tcp://` (`toolstack keygen` makes one).
    #[arg(
        long,
        env = "TOOLSTACK_KEY",
        global = true,
        default_value = "target/xenolith-client.key"
    )]
    key: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Domains.
    Domain {
        #[command(subcommand)]
        verb: DomainVerb,
    },
    /// The machine.
    Host {
        #[command(subcommand)]
        verb: HostVerb,
    },
    /// The shared-memory rings between domains, looked at without disturbing them.
    Ring {
        #[command(subcommand)]
        verb: RingVerb,
    },
    /// A live view of every domain, refreshed every DELAY seconds (as xentop).
    Top {
        /// Seconds between frames.
        #[arg(short, long, default_value_t = 1.0)]
        delay: f64,
        /// Frames to draw, then leave.
        #[arg(short, long)]
        iterations: Option<u32>,
        /// Batch mode: frames follow each other, no screen clearing (for scripts).
        #[arg(short, long)]
        batch: bool,
    },
    /// Print a completion script for a shell (e.g. `toolstack completions bash > ~/.local/share/bash-completion/completions/toolstack`).
    Completions { shell: clap_complete::Shell },
    /// Make a client key file for the network channel and print its public
    /// key (a line for the machine's `mgmt/authorized_keys`).
    Keygen {
        /// Where to write it (never over an existing file).
        file: PathBuf,
        /// The machine's public key, checked at each connection.
        #[arg(long)]
        host: Option<String>,
    },
}

#[derive(Subcommand)]
enum DomainVerb {
    /// Create a domain from a configuration file; KEY=VALUE arguments override it.
    Create {
        file: PathBuf,
        overrides: Vec<String>,
        /// Leave it paused.
        #[arg(short)]
        paused: bool,
        /// Attach to its console once created (Ctrl-] leaves).
        #[arg(short = 'c')]
        console: bool,
    },
    /// A domain's console: its history, then live output; typing goes to
    /// the domain; Ctrl-] leaves. Ends by itself when the domain stops.
    Console {
        domain: String,
        /// Print what it printed so far and leave (for scripts).
        #[arg(long)]
        no_follow: bool,
    },
    /// Every domain: id, name, state, memory, vCPUs, CPU time.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Let a vCPU run only on some CPUs, at once (CPUS: e.g. 0-1,3, or all).
    Pin {
        domain: String,
        vcpu: u32,
        cpus: String,
    },
    /// Write an ELF core of a domain to FILE on this host (its memory and
    /// its vCPUs' registers; it is paused meanwhile and runs on after):
    /// `gdb IMAGE FILE` opens it.
    DumpCore { domain: String, file: PathBuf },
    /// Change the memory a running domain holds (SIZE: MiB, or with a
    /// unit: 512k, 64m, 1g); waits until its balloon got there.
    MemSet {
        domain: String,
        size: String,
        /// Seconds to wait for the domain to get there.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Set the most memory a domain may grow to (SIZE as for mem-set).
    MemMax { domain: String, size: String },
    /// A domain's disks: the name it sees, the backend disk, r or w, the
    /// domain serving it, whether it connected it.
    BlockList {
        domain: String,
        #[arg(long)]
        json: bool,
    },
    /// A domain's network interfaces: MAC, serving domain, connected.
    NetworkList {
        domain: String,
        #[arg(long)]
        json: bool,
    },
    /// Have COUNT vCPUs of a running domain online (1 up to its `vcpus`);
    /// waits until its program has started or stopped them.
    VcpuSet {
        domain: String,
        count: u32,
        /// Seconds to wait for the domain to get there.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Give a running domain another disk: DISK as in a `disk =` entry,
    /// TARGET,VDEV,r|w (`data1,xvdb,w`); its program is told.
    BlockAttach { domain: String, disk: String },
    /// Take disk VDEV (`xvdb`) away from a running domain: what it was
    /// told was written stays written; requests still waiting fail.
    BlockDetach { domain: String, vdev: String },
    /// Give a running domain another network interface (`mac=...`, or
    /// none for one made from its name).
    NetworkAttach { domain: String, vif: Option<String> },
    /// Take the interface with MAC away from a running domain.
    NetworkDetach { domain: String, mac: String },
    /// Give a domain a new name (later commands use it).
    Rename { domain: String, name: String },
    /// Show (no options) or change the scheduler's weight and cap of a
    /// domain, at once: a domain gets CPU time in proportion to its weight
    /// (default 256) when CPUs are contended; the cap is the most it may
    /// use, in percent of one CPU (0: none).
    SchedCredit {
        /// Only this domain's (needed to change them).
        domain: Option<String>,
        #[arg(long, short)]
        weight: Option<u32>,
        #[arg(long, short)]
        cap: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Every vCPU: the CPU it is on and the CPUs it may use.
    VcpuList {
        /// Only this domain's.
        domain: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stop a domain's vCPUs (DOMAIN: id or name).
    Pause { domain: String },
    /// Let a paused domain run.
    Unpause { domain: String },
    /// End a domain at once.
    Destroy { domain: String },
    /// Crash a domain as if it had faulted (fault injection); its on_crash policy applies.
    Crash { domain: String },
    /// Ask a domain (or `--all`) to shut down cleanly (destroyed if it does not in time).
    Shutdown {
        #[arg(required_unless_present = "all")]
        domain: Option<String>,
        /// Every domain but domain 0.
        #[arg(long)]
        all: bool,
        /// Wait until they have stopped.
        #[arg(long)]
        wait: bool,
    },
    /// Ask a domain to reboot.
    Reboot { domain: String },
    /// Save a domain to FILE on this host: it suspends, its memory,
    /// registers, configuration and devices are written, then it is
    /// destroyed (`--keep`: left paused). It must wait through the runtime to obey.
    Save {
        domain: String,
        file: PathBuf,
        /// Leave it paused instead of destroying it.
        #[arg(long)]
        keep: bool,
    },
    /// Restore a domain from a file `domain save` wrote: it runs on where it
    /// stopped, its devices reconnected.
    Restore {
        file: PathBuf,
        /// Leave it paused.
        #[arg(short)]
        paused: bool,
    },
    /// State, memory, CPU time and crash record of a domain.
    Info {
        domain: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RingVerb {
    /// Every ring connection: who serves whom, its state, epoch and indices, requests in flight.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A live view of one ring: request rate, requests in flight, verdict.
    Watch {
        ring: String,
        /// Seconds between looks.
        #[arg(short, long, default_value_t = 1.0)]
        delay: f64,
        /// Lines to print, then leave.
        #[arg(short, long)]
        iterations: Option<u32>,
    },
    /// One ring's requests in flight, decoded (RING as FRONTEND:DEVICE[:INDEX], e.g. 2:block:0).
    Dump {
        ring: String,
        /// Show the slots' bytes in hex instead.
        #[arg(long)]
        raw: bool,
    },
}

#[derive(Subcommand)]
enum HostVerb {
    /// Free memory, domains, version.
    Info {
        #[arg(long)]
        json: bool,
    },
    /// The kernel log.
    Dmesg,
    /// Have the kernel dump its state to its log, one key per character:
    /// h (the keys), q (domains), r (run queue), e (event channels), g (grants),
    /// i (kernel image), d (DMA), k (kernel stacks' deepest use), x (each
    /// HVM vCPU's exits by kind, and a halted one's APIC and last exits).
    DebugKeys { keys: String },
    /// The kernel's trace buffers (boot with tbuf_size=N), decoded: what
    /// the kernel did, with timestamps and domain names.
    Trace {
        /// Keep printing new events as they happen.
        #[arg(long, short)]
        follow: bool,
        /// The kernel ELF the machine booted (`cargo xtask run` prints it):
        /// event formats are kept there, not on the machine.
        #[arg(long, env = "TOOLSTACK_KERNEL")]
        kernel: PathBuf,
    },
    /// Shut every domain down (destroying those that do not stop), then power off.
    Shutdown,
}

/// Reads and checks a configuration locally; returns the text to send
/// (overrides appended as lines) and the image, if one is next to the file.
fn prepare(
    file: &std::path::Path,
    overrides: &[String],
) -> Result<(String, Option<Vec<u8>>), Vec<String>> {
    let text =
        std::fs::read_to_string(file).map_err(|e| vec![format!("{}: {e}", file.display())])?;
    let name = file.display().to_string();
    let refs: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let parsed = domain_config::parse(&name, &text, &refs)
        .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    for w in &parsed.warnings {
        eprintln!("toolstack: warning: {w}");
    }
    let mut full = text.clone();
    full.push('\n');
    for o in &refs {
        let e = domain_config::syntax::override_entry(o).map_err(|e| vec![e.to_string()])?;
        full.push_str(&format!("{} = {}\n", e.key, e.value.render()));
    }
    let kernel = file
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(&parsed.config.kernel);
    let image = if kernel.is_file() {
        let bytes =
            std::fs::read(&kernel).map_err(|e| vec![format!("{}: {e}", kernel.display())])?;
        if bytes.is_empty() {
            return Err(vec![format!(
                "{}: kernel: {} is empty",
                name,
                kernel.display()
            )]);
        }
        Some(bytes)
    } else {
        None
    };
    Ok((full, image))
}

/// Attaches to a domain's console and says how it ended.
fn console_of(
    client: &mut toolstack::Client,
    domain: u32,
    follow: bool,
) -> Result<(), toolstack::Error> {
    match attach::attach(client, domain, follow)? {
        attach::Ended::Closed => eprintln!(
            "toolstack: domain {} stopped; its console is closed",
            domain & 0xffff
        ),
        attach::Ended::Left => eprintln!(
            "\r\ntoolstack: left the console of domain {}",
            domain & 0xffff
        ),
        attach::Ended::CaughtUp => {}
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Check a configuration before touching the machine: a bad one sends nothing.
    let mut prepared = None;
    if let Command::Domain {
        verb: DomainVerb::Create {
            file, overrides, ..
        },
    } = &cli.command
    {
        match prepare(file, overrides) {
            Ok(p) => prepared = Some(p),
            Err(errors) => {
                for e in errors {
                    eprintln!("toolstack: {e}");
                }
                return ExitCode::from(2);
            }
        }
    }
    if let Command::Top { delay, .. } = cli.command {
        if !(delay.is_finite() && delay > 0.0 && delay < 86_400.0) {
            eprintln!("toolstack: --delay must be a positive number of seconds (below a day)");
            return ExitCode::from(2);
        }
    }
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut <Cli as clap::CommandFactory>::command(),
            "toolstack",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    if let Command::Keygen { file, host } = &cli.command {
        return keygen(file, host.as_deref());
    }
    let mut client = match connect(&cli.connect, &cli.key) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("toolstack: {e}");
            return ExitCode::from(3);
        }
    };
    let result = match cli.command {
        Command::Domain {
            verb: DomainVerb::List { json },
        } => client.list().map(|ds| {
            if json {
                let items: Vec<serde_json::Value> = ds
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "id": d.id & 0xffff,
                            "name": d.name,
                            "state": d.state,
                            "type": d.kind,
                            "memory_kib": d.memory_kib,
                            "vcpus": d.vcpus,
                            "cpu_ticks": d.cpu_ticks,
                            "restarts": d.restarts,
                            "weight": d.weight,
                            "cap": d.cap,
                            "max_kib": d.max_kib,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(items));
            } else {
                println!(
                    "{:<4} {:<24} {:<9} {:>10} {:>5} {:>10} {:>8}  TYPE",
                    "ID", "NAME", "STATE", "MEM(KiB)", "VCPUS", "TIME(s)", "RESTARTS"
                );
                for d in ds {
                    println!(
                        "{:<4} {:<24} {:<9} {:>10} {:>5} {:>10.2} {:>8}  {}",
                        d.id & 0xffff,
                        d.name,
                        d.state,
                        d.memory_kib,
                        d.vcpus,
                        d.cpu_ticks as f64 / 100.0,
                        d.restarts,
                        d.kind
                    );
                }
            }
        }),
        Command::Domain {
            verb: DomainVerb::Create {
                paused, console, ..
            },
        } => {
            let (text, image) = prepared.unwrap_or_default();
            let mut bar = progress::Bar::new();
            client
                .create_with_progress(&text, image.as_deref(), paused, |sent, total| {
                    bar.update(sent, total)
                })
                .and_then(|id| {
                    println!("created domain {}", id & 0xffff);
                    if console {
                        console_of(&mut client, id, true)?;
                    }
                    Ok(())
                })
        }
        Command::Domain {
            verb: DomainVerb::Save { domain, file, keep },
        } => client.resolve(&domain).and_then(|d| {
            let mut bar = progress::Bar::labelled("saving");
            let saved = client.save(d, &file, keep, |done, total| {
                bar.update(done as usize * 4096, total as usize * 4096)
            })?;
            let then = if keep { "kept paused" } else { "destroyed" };
            println!(
                "saved {} (domain {}) to {}: {} pages, {} devices, {} KiB; the domain was {then}",
                saved.name,
                d & 0xffff,
                file.display(),
                saved.pages,
                saved.devices,
                saved.bytes / 1024
            );
            Ok(())
        }),
        Command::Domain {
            verb: DomainVerb::Restore { file, paused },
        } => {
            let mut bar = progress::Bar::labelled("restoring");
            client
                .restore(&file, paused, |sent, total| bar.update(sent, total))
                .map(|id| println!("restored domain {}", id & 0xffff))
        }
        Command::Domain {
            verb: DomainVerb::Console { domain, no_follow },
        } => client
            .resolve(&domain)
            .and_then(|d| console_of(&mut client, d, !no_follow)),
        Command::Domain {
            verb: DomainVerb::Shutdown { domain, all, wait },
        } => (|| {
            let targets: Vec<u32> = if all {
                client
                    .list()?
                    .into_iter()
                    .filter(|d| d.id & 0xffff != 0 && (d.state == "running" || d.state == "paused"))
                    .map(|d| d.id)
                    .collect()
            } else {
                vec![client.resolve(domain.as_deref().unwrap_or_default())?]
            };
            for &d in &targets {
                client.shutdown(d, false)?;
            }
            if wait {
                for &d in &targets {
                    let state = client.wait_stopped(d, std::time::Duration::from_secs(60))?;
                    println!("domain {} is {state}", d & 0xffff);
                }
            }
            Ok(())
        })(),
        Command::Domain {
            verb: DomainVerb::Reboot { domain },
        } => client
            .resolve(&domain)
            .and_then(|d| client.shutdown(d, true)),
        Command::Domain {
            verb: DomainVerb::Pin { domain, vcpu, cpus },
        } => {
            let mask = if cpus == "all" {
                Some(u64::MAX)
            } else {
                domain_config::config::cpu_mask(&cpus)
            };
            let Some(mask) = mask else {
                eprintln!("toolstack: CPUS is a list like 0-1,3 (0 to 63), or all");
                return ExitCode::from(2);
            };
            client
                .resolve(&domain)
                .and_then(|d| client.pin(d, vcpu, mask))
        }
        Command::Domain {
            verb: DomainVerb::VcpuList { domain, json },
        } => (|| {
            let only = match domain {
                Some(d) => Some(client.resolve(&d)?),
                None => None,
            };
            let vcpus = client.vcpu_list()?;
            if json {
                let items: Vec<serde_json::Value> = vcpus
                    .iter()
                    .filter(|v| only.is_none_or(|o| o == v.domain))
                    .map(|v| {
                        serde_json::json!({
                            "name": v.name,
                            "id": v.domain & 0xffff,
                            "vcpu": v.vcpu,
                            "cpu": v.cpu,
                            "state": if v.running { "running" } else { v.state.as_str() },
                            "cpu_ticks": v.cpu_ticks,
                            "affinity": cpu_list(v.affinity),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(items));
                return Ok(());
            }
            println!(
                "{:<24} {:>5} {:>4} {:>4} {:<8} {:>9}  AFFINITY",
                "NAME", "ID", "VCPU", "CPU", "STATE", "TIME(s)"
            );
            for v in vcpus.iter().filter(|v| only.is_none_or(|o| o == v.domain)) {
                let state = if v.running {
                    "running"
                } else {
                    v.state.as_str()
                };
                println!(
                    "{:<24} {:>5} {:>4} {:>4} {:<8} {:>9.2}  {}",
                    v.name,
                    v.domain & 0xffff,
                    v.vcpu,
                    v.cpu,
                    state,
                    v.cpu_ticks as f64 / 100.0,
                    cpu_list(v.affinity)
                );
            }
            Ok(())
        })(),
        Command::Domain {
            verb: DomainVerb::DumpCore { domain, file },
        } => client.resolve(&domain).and_then(|d| {
            let mut bar = progress::Bar::labelled("dumping");
            let dumped = client.dump_core(d, &file, |done, total| {
                bar.update(done as usize * 4096, total as usize * 4096)
            })?;
            println!(
                "dumped {} (domain {}) to {}: {} pages, {} vCPUs, {} KiB",
                dumped.name,
                d & 0xffff,
                file.display(),
                dumped.pages,
                dumped.vcpus,
                dumped.bytes / 1024
            );
            Ok(())
        }),
        Command::Domain {
            verb:
                DomainVerb::MemSet {
                    domain,
                    size,
                    timeout,
                },
        } => match size_kib(&size) {
            Some(kib) => client
                .resolve(&domain)
                .and_then(|d| client.mem_set(d, kib, std::time::Duration::from_secs(timeout))),
            None => {
                eprintln!("toolstack: SIZE is MiB, or a number with k, m or g (512k, 64m, 1g)");
                return ExitCode::from(2);
            }
        },
        Command::Domain {
            verb: DomainVerb::MemMax { domain, size },
        } => match size_kib(&size) {
            Some(kib) => client.resolve(&domain).and_then(|d| client.mem_max(d, kib)),
            None => {
                eprintln!("toolstack: SIZE is MiB, or a number with k, m or g (512k, 64m, 1g)");
                return ExitCode::from(2);
            }
        },
        Command::Domain {
            verb: DomainVerb::BlockList { domain, json },
        } => device_list(&mut client, &domain, "block", json),
        Command::Domain {
            verb: DomainVerb::NetworkList { domain, json },
        } => device_list(&mut client, &domain, "net", json),
        Command::Domain {
            verb:
                DomainVerb::VcpuSet {
                    domain,
                    count,
                    timeout,
                },
        } => client
            .resolve(&domain)
            .and_then(|d| client.vcpu_set(d, count, std::time::Duration::from_secs(timeout))),
        Command::Domain {
            verb: DomainVerb::BlockAttach { domain, disk },
        } => client
            .resolve(&domain)
            .and_then(|d| client.block_attach(d, &disk)),
        Command::Domain {
            verb: DomainVerb::BlockDetach { domain, vdev },
        } => client
            .resolve(&domain)
            .and_then(|d| client.block_detach(d, &vdev)),
        Command::Domain {
            verb: DomainVerb::NetworkAttach { domain, vif },
        } => client
            .resolve(&domain)
            .and_then(|d| client.network_attach(d, vif.as_deref().unwrap_or(""))),
        Command::Domain {
            verb: DomainVerb::NetworkDetach { domain, mac },
        } => client
            .resolve(&domain)
            .and_then(|d| client.network_detach(d, &mac)),
        Command::Domain {
            verb: DomainVerb::Rename { domain, name },
        } => client
            .resolve(&domain)
            .and_then(|d| client.rename(d, &name)),
        Command::Domain {
            verb:
                DomainVerb::SchedCredit {
                    domain,
                    weight,
                    cap,
                    json,
                },
        } => sched_credit(&mut client, domain.as_deref(), weight, cap, json),
        Command::Domain {
            verb: DomainVerb::Pause { domain },
        } => client.resolve(&domain).and_then(|d| client.pause(d)),
        Command::Domain {
            verb: DomainVerb::Unpause { domain },
        } => client.resolve(&domain).and_then(|d| client.unpause(d)),
        Command::Domain {
            verb: DomainVerb::Destroy { domain },
        } => client.resolve(&domain).and_then(|d| client.destroy(d)),
        Command::Domain {
            verb: DomainVerb::Crash { domain },
        } => client.resolve(&domain).and_then(|d| client.crash(d)),
        Command::Domain {
            verb: DomainVerb::Info { domain, json },
        } => client
            .resolve(&domain)
            .and_then(|d| client.info(d))
            .map(|d| {
                let crash = if d.state != "crashed" {
                    String::from("none")
                } else if d.crash_vector == u64::MAX {
                    format!("its own report: {}", d.crash_message)
                } else {
                    format!(
                        "vector {} error {:#x} at rip {:#x} addr {:#x}",
                        d.crash_vector, d.crash_error, d.crash_rip, d.crash_address
                    )
                };
                if json {
                    let record = serde_json::json!({
                        "id": d.id & 0xffff,
                        "name": d.name,
                        "state": d.state,
                        "memory_kib": d.memory_kib,
                        "max_kib": d.max_kib,
                        "cpu_ticks": d.cpu_ticks,
                        "crash": crash,
                        "restarts": d.restarts,
                        "last_crash": d.last_crash,
                        "dma_faults": d.dma_faults,
                    });
                    println!("{record}");
                } else {
                    println!("id:      {}", d.id & 0xffff);
                    println!("name:    {}", d.name);
                    println!("state:   {}", d.state);
                    println!("memory:  {} KiB (at most {} KiB)", d.memory_kib, d.max_kib);
                    println!("cpu:     {:.2} s", d.cpu_ticks as f64 / 100.0);
                    println!("crash:   {crash}");
                    if d.dma_faults > 0 {
                        println!("dma faults: {}", d.dma_faults);
                    }
                    if d.restarts > 0 {
                        println!("restarts: {} (last crash: {})", d.restarts, d.last_crash);
                    }
                }
            }),
        Command::Host {
            verb: HostVerb::Shutdown,
        } => client.host_shutdown(),
        Command::Ring {
            verb: RingVerb::List { json },
        } => client.ring_list().map(|rings| rings::print(&rings, json)),
        Command::Ring {
            verb:
                RingVerb::Watch {
                    ring,
                    delay,
                    iterations,
                },
        } => match rings::parse_ring_name(&ring) {
            Some((frontend, device, index))
                if delay.is_finite() && delay > 0.0 && delay < 86_400.0 =>
            {
                client.resolve(&frontend).and_then(|f| {
                    rings::watch(
                        &mut client,
                        f,
                        &device,
                        index,
                        std::time::Duration::from_secs_f64(delay),
                        iterations,
                    )
                })
            }
            _ => {
                eprintln!("toolstack: ring watch wants FRONTEND:DEVICE[:INDEX] (see ring list) and a delay between 0 and 86400 s");
                return ExitCode::from(2);
            }
        },
        Command::Ring {
            verb: RingVerb::Dump { ring, raw },
        } => match rings::parse_ring_name(&ring) {
            Some((frontend, device, index)) => client
                .resolve(&frontend)
                .and_then(|f| client.ring_dump(f, &device, index))
                .map(|d| rings::print_dump(&d.ring, &d.slots, raw)),
            None => {
                eprintln!("toolstack: a ring is named FRONTEND:DEVICE[:INDEX], e.g. 2:block:0 (see ring list)");
                return ExitCode::from(2);
            }
        },
        Command::Host {
            verb: HostVerb::DebugKeys { keys },
        } => client.debug_keys(&keys),
        Command::Host {
            verb: HostVerb::Trace { follow, kernel },
        } => trace_cmd::run(&mut client, &kernel, follow),
        Command::Host {
            verb: HostVerb::Dmesg,
        } => client.dmesg().map(|lines| {
            for l in lines {
                println!("{l}");
            }
        }),
        Command::Host {
            verb: HostVerb::Info { json },
        } => client.host_info().map(|h| {
            if json {
                let record = serde_json::json!({
                    "version": h.version,
                    "domains": h.domains,
                    "cpus": h.cpus,
                    "free_kib": h.free_kib,
                    "toolstack_heap_kib": h.toolstack_heap_kib,
                    "hvm": h.hvm,
                    "dma_isolation": h.dma_isolation,
                });
                println!("{record}");
                return;
            }
            println!("version:   {}", h.version);
            println!("domains:   {}", h.domains);
            println!("cpus:      {}", h.cpus);
            println!("free:      {} KiB", h.free_kib);
            println!("dom0 heap: {} KiB in use", h.toolstack_heap_kib);
            println!("hvm:       {}", h.hvm);
            println!("dma:       {}", h.dma_isolation);
        }),
        Command::Top {
            delay,
            iterations,
            batch,
        } => {
            let options = top::Options {
                delay: std::time::Duration::from_secs_f64(delay),
                iterations,
                batch,
            };
            top::run(&mut client, &options)
        }
        // Done above, before connecting.
        Command::Completions { .. } | Command::Keygen { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("toolstack: {e}");
            ExitCode::from(1)
        }
    }
}

/// `domain block-list` / `network-list`: a domain's devices of `kind`.
fn device_list(
    client: &mut toolstack::Client,
    domain: &str,
    kind: &str,
    json: bool,
) -> Result<(), toolstack::Error> {
    let d = client.resolve(domain)?;
    let devices: Vec<toolstack::DeviceEntry> = client
        .devices(d)?
        .into_iter()
        .filter(|x| x.kind == kind)
        .collect();
    if json {
        let items: Vec<serde_json::Value> = devices
            .iter()
            .map(|x| {
                let mut v = serde_json::json!({
                    "index": x.index,
                    "name": x.name,
                    "backend": x.backend & 0xffff,
                    "connected": x.connected,
                });
                if kind == "block" {
                    v["target"] = x.target.clone().into();
                    v["mode"] = x.mode.clone().into();
                } else {
                    v["mtu"] = x.mtu.into();
                }
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(());
    }
    let state = |c: bool| if c { "connected" } else { "waiting" };
    if kind == "block" {
        println!(
            "{:<6} {:<16} {:<4} {:>7}  STATE",
            "VDEV", "TARGET", "MODE", "BACKEND"
        );
        for x in &devices {
            println!(
                "{:<6} {:<16} {:<4} {:>7}  {}",
                x.name,
                x.target,
                x.mode,
                x.backend & 0xffff,
                state(x.connected)
            );
        }
    } else {
        println!(
            "{:<5} {:<17} {:>5} {:>7}  STATE",
            "INDEX", "MAC", "MTU", "BACKEND"
        );
        for x in &devices {
            println!(
                "{:<5} {:<17} {:>5} {:>7}  {}",
                x.index,
                x.name,
                x.mtu,
                x.backend & 0xffff,
                state(x.connected)
            );
        }
    }
    Ok(())
}

/// A size as `mem-set` takes it: MiB, or a number with `k`, `m` or `g`.
fn size_kib(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => t.split_at(at),
        None => (t.as_str(), "m"),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 1024,
        "g" | "gb" | "gib" => 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// `domain sched-credit`: changes a domain's weight and cap when asked,
/// else shows them (one domain's, or every domain's) as `xl sched-credit`.
fn sched_credit(
    client: &mut toolstack::Client,
    domain: Option<&str>,
    weight: Option<u32>,
    cap: Option<u32>,
    json: bool,
) -> Result<(), toolstack::Error> {
    let only = domain.map(|d| client.resolve(d)).transpose()?;
    if weight.is_some() || cap.is_some() {
        let Some(d) = only else {
            return Err(toolstack::Error::Refused(
                "name the domain whose weight or cap changes".into(),
            ));
        };
        return client.set_sched(d, weight, cap);
    }
    let domains = client.list()?;
    let shown = domains.iter().filter(|d| only.is_none_or(|o| o == d.id));
    if json {
        let items: Vec<serde_json::Value> = shown
            .map(|d| {
                serde_json::json!({
                    "id": d.id & 0xffff,
                    "name": d.name,
                    "weight": d.weight,
                    "cap": d.cap,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(());
    }
    println!("{:<24} {:>5} {:>6} {:>4}", "NAME", "ID", "WEIGHT", "CAP");
    for d in shown {
        println!(
            "{:<24} {:>5} {:>6} {:>4}",
            d.name,
            d.id & 0xffff,
            d.weight,
            d.cap
        );
    }
    Ok(())
}

/// A CPU mask as a list: bits 0,1,2,5 -> "0-2,5".
fn cpu_list(mask: u64) -> String {
    let mut parts = Vec::new();
    let mut c = 0;
    while c < 64 {
        if mask & (1 << c) == 0 {
            c += 1;
            continue;
        }
        let first = c;
        while c + 1 < 64 && mask & (1 << (c + 1)) != 0 {
            c += 1;
        }
        parts.push(if first == c {
            format!("{c}")
        } else {
            format!("{first}-{c}")
        });
        c += 1;
    }
    parts.join(",")
}

/// Connects to COM2's socket at `target`, or over the network when it is
/// `tcp://HOST:PORT` (as the key file `key` says).
fn connect(
    target: &std::path::Path,
    key: &std::path::Path,
) -> Result<toolstack::Client, toolstack::Error> {
    if let Some(address) = target.to_str().and_then(|t| t.strip_prefix("tcp://")) {
        let me = toolstack::network::Identity::load(key).map_err(toolstack::Error::Connect)?;
        return toolstack::Client::connect_tcp(address, &me);
    }
    let socket = std::path::absolute(target)
        .map(|p| toolstack::socket_path(&p))
        .unwrap_or(target.to_path_buf());
    toolstack::Client::connect(&socket)
}

/// `toolstack keygen FILE [--host KEY]`.
fn keygen(file: &std::path::Path, host: Option<&str>) -> ExitCode {
    let host = match host.map(ipc_abi::mgmt_net::parse_key) {
        Some(None) => {
            eprintln!("toolstack: --host: not a key (64 hex digits)");
            return ExitCode::from(2);
        }
        Some(k) => k,
        None => None,
    };
    let (private, public) = toolstack::network::generate_keypair();
    let identity = toolstack::network::Identity { private, host };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, identity.to_text().as_bytes()));
    if let Err(e) = written {
        eprintln!("toolstack: {}: {e}", file.display());
        return ExitCode::from(1);
    }
    println!("{} {}", ipc_abi::mgmt_net::KeyText(&public), file.display());
    ExitCode::SUCCESS
}
