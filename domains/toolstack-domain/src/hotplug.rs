//! Devices given to and taken from running domains (`domain block-attach`,
//! `block-detach`, `network-attach`, `network-detach`).
//!
//! Owns: checking a change before anything moves (the domain runs and has
//! a control ring; a disk entry reads as in a configuration, its name in
//! the guest is free and a running block driver domain serves its virtual
//! disk; an interface's MAC is unicast and nobody else's), recording it in
//! the domain's configuration (the broker then lets the frontend connect,
//! as for a device it was created with, and `block-list` shows it), and
//! telling the domain (`DeviceAttached`, `DeviceDetached`; the runtime's
//! `hotplug` hands the change to its program). A detach first tells the
//! backend to stop serving that ring: what it answered was done, what it
//! had not answered fails in the domain.

extern crate alloc;
use crate::table::{vif_mac, Started};
use alloc::format;
use alloc::string::String;
use domain_config::config::{vdev_index, Disk, Vif};
use domain_config::{Kind, Role};
use domain_runtime::ipc_abi::proto::control::{ControlMessage, ControlOp, DeviceKind};
use domain_runtime::ipc_abi::proto::net::{self, NetConnect};
use domain_runtime::{println, DomainId};

/// Which change a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    BlockAttach,
    BlockDetach,
    NetAttach,
    NetDetach,
}

/// Interfaces a domain may have had in all (detached ones keep their number).
const MAX_VIFS: usize = 16;

/// Carries out `op` on `domain` with its text (a disk entry, a vdev, a vif
/// entry or a MAC). A refused change changes nothing.
pub fn apply(started: &mut [Started], domain: u32, op: Op, text: &str) -> Result<(), String> {
    let id = crate::ops::find(started, domain).ok_or("no such domain")?;
    let i = started
        .iter()
        .position(|s| s.id == id && !s.reported)
        .ok_or("domain 0 did not start it, or it has stopped")?;
    let s = &started[i];
    if s.config.kind == Kind::Hvm {
        return Err("an HVM guest's devices cannot change while it runs".into());
    }
    // Domains that serve others' devices keep the devices they were made with.
    if s.config.role.is_some() || !s.config.vdisks.is_empty() || s.device_model_of.is_some() {
        return Err("a driver domain's or device model's devices do not change".into());
    }
    if s.control.is_none() {
        return Err("it has no control ring to be told on".into());
    }
    match op {
        Op::BlockAttach => block_attach(started, i, text),
        Op::BlockDetach => block_detach(started, i, text),
        Op::NetAttach => net_attach(started, i, text),
        Op::NetDetach => net_detach(started, i, text),
    }
}

fn block_attach(started: &mut [Started], i: usize, spec: &str) -> Result<(), String> {
    let disk = Disk::parse(spec).ok_or(
        "a disk is TARGET,VDEV,MODE as in a disk = entry (VDEV xvda to xvdz, MODE r or w)",
    )?;
    let index = vdev_index(&disk.vdev).ok_or("VDEV is xvda to xvdz")?;
    if started[i].config.disks.iter().any(|d| d.vdev == disk.vdev) {
        return Err(format!("it already has {}", disk.vdev));
    }
    let backend = started
        .iter()
        .filter(|b| !b.reported)
        .find(|b| b.config.vdisks.iter().any(|v| v.name == disk.target))
        .map(|b| b.id)
        .ok_or_else(|| {
            format!(
                "no block driver domain serves a virtual disk named {}",
                disk.target
            )
        })?;
    let s = &mut started[i];
    println!(
        "toolstack: domain {} gets disk {} ({}, {}) from domain {}",
        s.id,
        disk.vdev,
        disk.target,
        if disk.writable { "w" } else { "r" },
        backend
    );
    alloc::rc::Rc::make_mut(&mut s.config).disks.push(disk);
    // Told of the backend's restarts before it connects, as a disk it
    // was created with.
    s.named.block.get_or_insert(backend);
    tell(
        s,
        ControlOp::DeviceAttached,
        DeviceKind::Block,
        index,
        backend,
    );
    Ok(())
}

fn block_detach(started: &mut [Started], i: usize, vdev: &str) -> Result<(), String> {
    let s = &started[i];
    let index = vdev_index(vdev).ok_or("a disk's name is xvda to xvdz")?;
    let at = (s.config.disks.iter().position(|d| d.vdev == vdev))
        .ok_or_else(|| format!("it has no disk {vdev}"))?;
    let backend = s.block_backend;
    let s = &mut started[i];
    alloc::rc::Rc::make_mut(&mut s.config).disks.remove(at);
    let connected = take_connection(s, DeviceKind::Block, index);
    let frontend = s.id;
    if let (true, Some(b)) = (connected, backend) {
        stop_serving(started, b, frontend, DeviceKind::Block, index);
    }
    let s = &mut started[i];
    tell(s, ControlOp::DeviceDetached, DeviceKind::Block, index, s.id);
    println!("toolstack: domain {}'s disk {} was detached", s.id, vdev);
    Ok(())
}

fn net_attach(started: &mut [Started], i: usize, entry: &str) -> Result<(), String> {
    let vif = Vif::parse(entry).ok_or_else(|| {
        use domain_runtime::ipc_abi::proto::net::{DEFAULT_MTU, MAX_MTU, MIN_MTU};
        format!(
            "an interface is mac=XX:XX:XX:XX:XX:XX (a unicast MAC; none: one made from its name) and mtu=N ({MIN_MTU} to {MAX_MTU}; none: {DEFAULT_MTU}), comma-separated"
        )
    })?;
    let index = started[i].config.vifs.len();
    if index >= MAX_VIFS {
        return Err(format!(
            "it has had as many interfaces as a domain may ({MAX_VIFS})"
        ));
    }
    let backend = started
        .iter()
        .filter(|b| !b.reported && b.config.role == Some(Role::Net))
        .map(|b| b.id)
        .next()
        .ok_or("no network driver domain runs")?;
    let s = &started[i];
    let mac = vif
        .mac
        .unwrap_or_else(|| net::generated_mac(&s.config.name, index as u8));
    let taken = started.iter().filter(|o| !o.reported).any(|o| {
        (o.config.vifs.iter().enumerate())
            .any(|(n, v)| o.has_vif(n) && vif_mac(&o.config, n, v) == mac)
    });
    if taken {
        return Err(format!("{} is another interface's MAC", net::MacText(mac)));
    }
    let s = &mut started[i];
    alloc::rc::Rc::make_mut(&mut s.config).vifs.push(Vif {
        mac: Some(mac),
        ..vif
    });
    s.named.net.get_or_insert(backend);
    let mut m = message(
        ControlOp::DeviceAttached,
        DeviceKind::Net,
        index as u32,
        backend,
    );
    NetConnect {
        vif: index as u8,
        mac,
        mtu: vif.mtu_or_default(),
    }
    .write(&mut m);
    if let Some(link) = s.control.as_mut() {
        link.tell(m);
    }
    println!(
        "toolstack: domain {} gets interface {} ({}) from domain {}",
        s.id,
        index,
        net::MacText(mac),
        backend
    );
    Ok(())
}

fn net_detach(started: &mut [Started], i: usize, text: &str) -> Result<(), String> {
    let mac = net::parse_mac(text).ok_or("a MAC is XX:XX:XX:XX:XX:XX")?;
    let s = &started[i];
    let index = (s.config.vifs.iter().enumerate())
        .find(|&(n, v)| s.has_vif(n) && vif_mac(&s.config, n, v) == mac)
        .map(|(n, _)| n)
        .ok_or_else(|| format!("it has no interface {}", net::MacText(mac)))?;
    let backend = s.net_backend;
    let s = &mut started[i];
    // Every interface keeps its MAC when a restart renumbers them.
    let macs: alloc::vec::Vec<_> = (s.config.vifs.iter().enumerate())
        .map(|(n, v)| vif_mac(&s.config, n, v))
        .collect();
    let config = alloc::rc::Rc::make_mut(&mut s.config);
    for (v, m) in config.vifs.iter_mut().zip(macs) {
        v.mac = Some(m);
    }
    s.detached_vifs |= 1 << index;
    let connected = take_connection(s, DeviceKind::Net, index as u32);
    let frontend = s.id;
    if let (true, Some(b)) = (connected, backend) {
        stop_serving(started, b, frontend, DeviceKind::Net, index as u32);
    }
    let s = &mut started[i];
    tell(
        s,
        ControlOp::DeviceDetached,
        DeviceKind::Net,
        index as u32,
        s.id,
    );
    println!(
        "toolstack: domain {}'s interface {} ({}) was detached",
        s.id,
        index,
        net::MacText(mac)
    );
    Ok(())
}

/// Forgets that device `index` of `kind` is connected (and its rings);
/// true if it was.
fn take_connection(s: &mut Started, kind: DeviceKind, index: u32) -> bool {
    let bit = 1u32.checked_shl(index).unwrap_or(0);
    let devices = match kind {
        DeviceKind::Block => &mut s.block_devices,
        DeviceKind::Net => &mut s.net_devices,
        DeviceKind::Console => return false,
    };
    let was = *devices & bit != 0;
    *devices &= !bit;
    s.rings
        .retain(|r| !(r.kind == kind as u32 && r.index == index));
    was
}

/// Tells `backend` to stop serving `frontend`'s device (`Disconnect`).
fn stop_serving(
    started: &mut [Started],
    backend: DomainId,
    frontend: DomainId,
    kind: DeviceKind,
    index: u32,
) {
    let msg = message(ControlOp::Disconnect, kind, index, frontend);
    let link = started
        .iter_mut()
        .find(|b| b.id == backend)
        .and_then(|b| b.control.as_mut());
    if let Some(link) = link {
        link.tell(msg);
    }
}

fn message(op: ControlOp, kind: DeviceKind, index: u32, peer: DomainId) -> ControlMessage {
    let mut m = <ControlMessage as zerocopy::FromZeros>::new_zeroed();
    m.op = op as u32;
    m.kind = kind as u32;
    m.index = index;
    m.peer = peer;
    m
}

fn tell(s: &mut Started, op: ControlOp, kind: DeviceKind, index: u32, peer: DomainId) {
    if let Some(link) = s.control.as_mut() {
        link.tell(message(op, kind, index, peer));
    }
}
