//! `toolstack host trace [--follow]`: the kernel's trace, decoded, in time order.
//!
//! Owns: polling every CPU's ring through the library until it has read up
//! to where the rings were when it started (or forever with `--follow`),
//! keeping domain names fresh, and printing events merged by time.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use toolstack::trace::{KernelElf, Reader, TraceEvent};
use toolstack::{Client, Error};

/// How often `--follow` looks for new events.
const POLL: Duration = Duration::from_millis(200);

pub fn run(client: &mut Client, kernel: &Path, follow: bool) -> Result<(), Error> {
    let elf = KernelElf::load(kernel).map_err(Error::Refused)?;
    let mut reader = Reader::new(&elf);
    let mut names = names(client)?;
    let first = client.trace_read(0, 0)?;
    let cpus = first.cpus.max(1);
    // Without --follow, stop at what was written when we started: reading
    // makes events of its own.
    let mut until = vec![first.head];
    for cpu in 1..cpus {
        until.push(client.trace_read(cpu, 0)?.head);
    }
    loop {
        let mut events: Vec<TraceEvent> = Vec::new();
        for cpu in 0..cpus {
            // Each look reads up to where the ring was when it began (a
            // busy machine writes faster than the channel carries).
            let mut target = None;
            loop {
                let chunk = client.trace_read(cpu, reader.cursor(cpu))?;
                let end = chunk.start + chunk.data.len() as u64;
                let fed = reader
                    .feed(cpu, &chunk, &|id| names.get(&id).cloned())
                    .map_err(Error::Refused)?;
                if fed.lost > 0 {
                    eprintln!(
                        "(cpu{cpu}: {} bytes of trace were overwritten before they were read)",
                        fed.lost
                    );
                }
                events.extend(fed.events);
                let target = *target.get_or_insert(if follow {
                    chunk.head
                } else {
                    until[cpu as usize]
                });
                if chunk.data.is_empty() || end >= target {
                    break;
                }
            }
        }
        events.sort_by_key(|e| e.micros);
        for e in &events {
            println!("{e}");
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(POLL);
        names = names_again(client, names);
    }
}

fn names(client: &mut Client) -> Result<HashMap<u32, String>, Error> {
    Ok(client.list()?.into_iter().map(|d| (d.id, d.name)).collect())
}

/// Adds the domains created since (names of dead ones are kept).
fn names_again(client: &mut Client, mut known: HashMap<u32, String>) -> HashMap<u32, String> {
    if let Ok(now) = names(client) {
        known.extend(now);
    }
    known
}
