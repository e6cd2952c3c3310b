//! `toolstack`: manage a Xenolith machine (verbs after `xl`). A thin layer
//! over the library in `lib.rs`.
//!
//! Exit codes: 0 success, 1 the machine refused, 2 usage, 3 no connection.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "toolstack", version, about = "Manage a Xenolith machine")]
struct Cli {
    /// The machine's management channel (`cargo xtask run` prints it).
    #[arg(
        long,
        env = "TOOLSTACK_CONNECT",
        default_value = "target/xenolith-com2.sock"
    )]
    connect: PathBuf,
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
}

#[derive(Subcommand)]
enum DomainVerb {
    /// Every domain: id, name, state, memory, vCPUs, CPU time.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop a domain's vCPUs.
    Pause { domain: u32 },
    /// Let a paused domain run.
    Unpause { domain: u32 },
    /// End a domain at once.
    Destroy { domain: u32 },
}

#[derive(Subcommand)]
enum HostVerb {
    /// Free memory, domains, version.
    Info,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut client = match toolstack::Client::connect(&cli.connect) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("toolstack: {e}");
            return ExitCode::from(3);
        }
    };
    let result = match cli.command {
        Command::Domain { verb: DomainVerb::List { json } } => client.list().map(|ds| {
            if json {
                let items: Vec<String> = ds
                    .iter()
                    .map(|d| {
                        format!(
                            "{{\"id\":{},\"name\":{:?},\"state\":{:?},\"memory_kib\":{},\"vcpus\":{},\"cpu_ticks\":{}}}",
                            d.id & 0xffff,
                            d.name,
                            d.state,
                            d.memory_kib,
                            d.vcpus,
                            d.cpu_ticks
                        )
                    })
                    .collect();
                println!("[{}]", items.join(","));
            } else {
                println!("{:<4} {:<24} {:<9} {:>10} {:>5} {:>10}", "ID", "NAME", "STATE", "MEM(KiB)", "VCPUS", "TIME(s)");
                for d in ds {
                    println!(
                        "{:<4} {:<24} {:<9} {:>10} {:>5} {:>10.2}",
                        d.id & 0xffff,
                        d.name,
                        d.state,
                        d.memory_kib,
                        d.vcpus,
                        d.cpu_ticks as f64 / 100.0
                    );
                }
            }
        }),
        Command::Domain { verb: DomainVerb::Pause { domain } } => client.pause(domain),
        Command::Domain { verb: DomainVerb::Unpause { domain } } => client.unpause(domain),
        Command::Domain { verb: DomainVerb::Destroy { domain } } => client.destroy(domain),
        Command::Host { verb: HostVerb::Info } => client.host_info().map(|h| {
            println!("version:   {}", h.version);
            println!("domains:   {}", h.domains);
            println!("free:      {} KiB", h.free_kib);
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("toolstack: {e}");
            ExitCode::from(1)
        }
    }
}
