//! A frontend that offers its backends rings they cannot write: ring pages
//! initialised as a real frontend does, then granted read-only, announced
//! `times=N` times (default 8, more than a driver's restart limit) to each
//! backend its command line names (`console=`, `blk=`, `net=`). It prints
//! each answer; every one must be a refusal, and no backend may fall over.
//! Then it announces good rings for the same devices twice: the first is
//! served, the repeat refused (or one domain could fill a backend's client
//! slots). Before that, good rings of the next protocol version, which
//! every backend must refuse. It lets its own console go first, so the console offers are
//! judged like the others.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::hypercall::Error;
use domain_runtime::ipc_abi::proto::console::{ConsoleRequest, ConsoleResponse, CONSOLE_VERSION};
use domain_runtime::ipc_abi::proto::control::DeviceKind;
use domain_runtime::ipc_abi::proto::{block, net};
use domain_runtime::ipc_abi::ring::Front;
use domain_runtime::ring::{announce_granted, Grefs, RingPages};
use domain_runtime::{println, DomainId};
use test_domains::{domain, number};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let times = number("times").unwrap_or(8);
    // Its own console goes first (it prints through the kernel from here
    // on), so console-dom judges the offers by their mapping, not as a
    // second console of ours.
    if let Err(e) = domain_runtime::console::disconnect() {
        println!("ring-hostile: cannot let its console go: {:?}", e);
    }
    let devices = [
        (
            "console",
            "console",
            DeviceKind::Console,
            CONSOLE_VERSION,
            1,
        ),
        ("block", "blk", DeviceKind::Block, block::BLOCK_VERSION, 1),
        ("net", "net", DeviceKind::Net, net::NET_VERSION, 2),
    ];
    for (name, key, kind, version, rings) in devices {
        let Some(backend) = domain(key) else {
            println!("ring-hostile: no {} backend", name);
            continue;
        };
        for i in 0..times {
            let answer = offer_read_only(backend, kind, 0, version, rings);
            println!("ring-hostile: read-only {} ring {}: {:?}", name, i, answer);
        }
    }
    // A frontend of another version of the protocol is refused at once.
    for (name, key, kind, version, rings) in devices {
        let Some(backend) = domain(key) else { continue };
        let answer = offer(backend, kind, 0, version + 1, rings);
        println!(
            "ring-hostile: {} ring of version {}: {:?}",
            name,
            version + 1,
            answer
        );
    }
    for (name, key, kind, version, rings) in devices {
        let Some(backend) = domain(key) else { continue };
        for i in 0..2 {
            let answer = offer(backend, kind, 0, version, rings);
            println!("ring-hostile: {} ring {} again: {:?}", name, i, answer);
        }
    }
    println!("ring-hostile: done");
    loop {
        hc::block();
    }
}

/// Announces `rings` freshly initialised one-page rings, as a frontend does.
fn offer(
    backend: DomainId,
    kind: DeviceKind,
    index: u32,
    version: u32,
    rings: usize,
) -> Result<(), Error> {
    let mut pages = heapless::Vec::<RingPages, 2>::new();
    for _ in 0..rings {
        let p = RingPages::allocate(1).ok_or(Error::OutOfResources)?;
        Front::<ConsoleRequest, ConsoleResponse>::init(p.shared(), 1)
            .map_err(|_| Error::InvalidArgument)?;
        let _ = pages.push(p);
    }
    domain_runtime::ring::announce(&pages, backend, kind, index, version).map(drop)
}

/// Announces `rings` freshly initialised one-page rings, granted read-only.
fn offer_read_only(
    backend: DomainId,
    kind: DeviceKind,
    index: u32,
    version: u32,
    rings: usize,
) -> Result<(), Error> {
    let mut grefs = Grefs::new();
    for _ in 0..rings {
        let pages = RingPages::allocate(1).ok_or(Error::OutOfResources)?;
        // A valid header, so the backend would attach and write to it.
        Front::<ConsoleRequest, ConsoleResponse>::init(pages.shared(), 1)
            .map_err(|_| Error::InvalidArgument)?;
        let gref = hc::grant_create(backend, pages.address(), true)?;
        grefs.push(gref).map_err(|_| Error::OutOfResources)?;
    }
    announce_granted(grefs, backend, kind, index, version).map(drop)
}
