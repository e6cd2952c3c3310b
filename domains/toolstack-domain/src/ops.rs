//! The everyday operations on domains, shared by the management server
//! (`mgmt.rs`, for the host's `toolstack` command) and the console shell
//! (`shell.rs`): each is carried out here once, and each caller only turns
//! the result into its own kind of answer.

extern crate alloc;
use crate::table::{Domains, Image, Started};
use alloc::string::{String, ToString};
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::{DomainInfo, DomainState, VcpuState};
use domain_runtime::ipc_abi::proto::control::{ControlMessage, ControlOp};
use domain_runtime::{println, DomainId};
use zerocopy::FromZeros;

/// Domain 0 itself.
pub fn me() -> DomainId {
    DomainId(domain_runtime::start_info().domain_id)
}

/// The live domain a user named by full id or slot index (domain 0 included).
pub fn find(started: &[Started], domain: u32) -> Option<DomainId> {
    core::iter::once(me())
        .chain(started.iter().map(|s| s.id))
        .find(|id| id.0 == domain || id.index() as u32 == domain)
}

/// Finds a domain by number or name (for people typing at the console).
pub fn find_word(started: &[Started], word: &str) -> Option<DomainId> {
    match word.parse() {
        Ok(n) => find(started, n),
        Err(_) => started
            .iter()
            .rev()
            .find(|s| s.name.as_str() == word)
            .map(|s| s.id),
    }
}

/// Pauses, unpauses or destroys a domain this toolstack started.
pub fn control(
    started: &[Started],
    domain: u32,
    op: fn(DomainId) -> domain_runtime::ipc_abi::hypercall::Result<()>,
) -> Result<(), String> {
    let id = started
        .iter()
        .map(|s| s.id)
        .find(|id| id.0 == domain || id.index() as u32 == domain)
        .ok_or_else(|| "no such domain".to_string())?;
    op(id).map_err(|e| e.to_string())
}

/// Gives a domain a new name, in the kernel and in the table its restarts
/// take their name from. An interface whose MAC was made from the old name
/// keeps that MAC. Other domains' configurations that name it (a
/// frontend's `blk=`) are not rewritten.
pub fn rename(started: &mut [Started], domain: u32, name: &str) -> Result<(), String> {
    use domain_runtime::ipc_abi::hypercall::Error;
    let id = find(started, domain).ok_or("no such domain")?;
    hc::domain_rename(id, name).map_err(|e| match e {
        Error::NameTaken => alloc::format!("another domain is named {name}"),
        Error::InvalidArgument => {
            "a name is 1 to 32 printable ASCII characters, without spaces".to_string()
        }
        e => e.to_string(),
    })?;
    if let Some(s) = started.iter_mut().find(|s| s.id == id) {
        let macs: alloc::vec::Vec<_> = (s.config.vifs.iter().enumerate())
            .map(|(i, v)| crate::table::vif_mac(&s.config, i, v))
            .collect();
        let config = alloc::rc::Rc::make_mut(&mut s.config);
        for (v, mac) in config.vifs.iter_mut().zip(macs) {
            v.mac = Some(mac);
        }
        config.name = name.into();
        s.name.clear();
        let _ = s.name.push_str(name);
    }
    println!("toolstack: domain {} is now named {}", id, name);
    Ok(())
}

/// Asks a domain to hold `kib` of memory (`domain mem-set`): its balloon
/// gives memory back or takes it again, up to its maximum. Answers at
/// once; the domain's `memory_kib` shows when it has.
pub fn mem_set(started: &mut [Started], domain: u32, kib: u64) -> Result<(), String> {
    use domain_runtime::ipc_abi::layout::MIN_DOMAIN_KIB;
    let id = find(started, domain).ok_or("no such domain")?;
    let info = hc::domain_info(id).map_err(|e| e.to_string())?;
    if kib < MIN_DOMAIN_KIB || kib > info.max_kib {
        return Err(alloc::format!(
            "{kib} KiB is outside what it may hold: {MIN_DOMAIN_KIB} KiB to its maximum, {} KiB (domain mem-max)",
            info.max_kib
        ));
    }
    let s = started
        .iter_mut()
        .find(|s| s.id == id && !s.reported)
        .ok_or("domain 0's memory is not ballooned")?;
    let link = s
        .control
        .as_mut()
        .ok_or("it has no control ring, so it cannot be asked")?;
    link.tell(crate::control::balloon_target(kib));
    // Its target from now on: what a restart, a save and its restore
    // give it.
    let config = alloc::rc::Rc::make_mut(&mut s.config);
    if config.maxmem_kib == 0 {
        // Created with room for `memory` only: that stays its room.
        config.maxmem_kib = info.max_kib;
    }
    config.memory_kib = kib;
    println!("toolstack: asked domain {} to hold {} KiB", id, kib);
    Ok(())
}

/// Asks a running domain to have `count` vCPUs online (`domain vcpu-set`),
/// 1 up to its `vcpus`; its program brings them up or down.
pub fn vcpu_set(started: &mut [Started], domain: u32, count: u32) -> Result<(), String> {
    let id = find(started, domain).ok_or("no such domain")?;
    let s = started
        .iter_mut()
        .find(|s| s.id == id && !s.reported)
        .ok_or("domain 0 did not start it, or it has stopped")?;
    if s.config.kind == domain_config::Kind::Hvm {
        return Err("an HVM guest's vCPUs cannot be changed while it runs".into());
    }
    let most = s.config.vcpus;
    if count == 0 || u64::from(count) > most {
        return Err(alloc::format!(
            "it may have 1 to {most} vCPUs online (its vcpus)"
        ));
    }
    let link = s
        .control
        .as_mut()
        .ok_or("it has no control ring to be told on")?;
    let mut m = <ControlMessage as zerocopy::FromZeros>::new_zeroed();
    m.op = ControlOp::VcpuTarget as u32;
    m.index = count;
    link.tell(m);
    println!(
        "toolstack: domain {} is asked to have {} vCPUs online",
        id, count
    );
    Ok(())
}

/// Sets the most memory a domain may hold (`domain mem-max`).
pub fn mem_max(started: &mut [Started], domain: u32, kib: u64) -> Result<(), String> {
    let id = find(started, domain).ok_or("no such domain")?;
    hc::domain_set_max_mem(id, kib)
        .map_err(|_| "a maximum is at least 256 KiB (and at most 16 GiB)".to_string())?;
    if let Some(s) = started.iter_mut().find(|s| s.id == id) {
        alloc::rc::Rc::make_mut(&mut s.config).maxmem_kib = kib;
    }
    Ok(())
}

/// Changes a domain's scheduler weight and/or cap (percent of one CPU, 0:
/// none) at once; its restarts keep them.
pub fn set_sched(
    started: &mut [Started],
    domain: u32,
    weight: Option<u32>,
    cap: Option<u32>,
) -> Result<(), String> {
    let id = find(started, domain).ok_or("no such domain")?;
    let info = hc::domain_info(id).map_err(|e| e.to_string())?;
    let weight = weight.unwrap_or(info.weight);
    let cap = cap.unwrap_or(info.cap_percent);
    hc::domain_set_sched(id, weight, cap)
        .map_err(|_| "the weight is 1 to 65535, the cap 0 (none) to 100 percent".to_string())?;
    if let Some(s) = started.iter_mut().find(|s| s.id == id) {
        let config = alloc::rc::Rc::make_mut(&mut s.config);
        config.weight = weight;
        config.cap = cap;
    }
    Ok(())
}

/// Has the kernel dump the state each debug key names to its log, in
/// order; stops at the first key it does not know.
pub fn debug_keys(keys: &str) -> Result<(), String> {
    if keys.is_empty() {
        return Err("no debug key given (h lists them)".into());
    }
    for key in keys.chars() {
        let known = u8::try_from(key)
            .ok()
            .is_some_and(|b| hc::debug_keys(b).is_ok());
        if !known {
            return Err(alloc::format!("unknown debug key '{key}' (h lists them)"));
        }
    }
    Ok(())
}

/// Asks a domain to shut down (or reboot); it is destroyed if it has not
/// stopped by the deadline.
pub fn shutdown(started: &mut Domains, domain: u32, reboot: bool) -> Result<(), &'static str> {
    let i = started
        .iter()
        .position(|s| s.id.0 == domain || s.id.index() as u32 == domain)
        .ok_or("no such domain")?;
    // An HVM guest hears it through its device model (the power button).
    let target = started[i].id;
    let asked = started
        .iter()
        .position(|d| d.device_model_of == Some(target))
        .unwrap_or(i);
    let link = started[asked]
        .control
        .as_mut()
        .ok_or("the domain has no control ring; destroy it instead")?;
    let mut req = ControlMessage::new_zeroed();
    req.op = ControlOp::ShutdownRequest as u32;
    req.index = reboot as u32;
    link.tell(req);
    let s = &mut started[i];
    let wait = if s.config.kind == domain_config::Kind::Hvm {
        crate::start::HVM_SHUTDOWN_TIMEOUT_NS
    } else {
        crate::start::SHUTDOWN_TIMEOUT_NS
    };
    s.shutdown_deadline = Some(domain_runtime::time::now_ns() + wait);
    println!("toolstack: asked domain {} ({}) to shut down", s.id, s.name);
    Ok(())
}

/// Asks every domain to stop (destroying those without a control ring at
/// once, the others at their deadline), then powers the machine off.
pub fn host_shutdown(started: &mut Domains) {
    let deadline = domain_runtime::time::now_ns() + crate::start::SHUTDOWN_TIMEOUT_NS;
    for s in started.iter_mut().filter(|s| !s.reported) {
        match s.control.as_mut() {
            Some(link) => {
                let mut req = ControlMessage::new_zeroed();
                req.op = ControlOp::ShutdownRequest as u32;
                link.tell(req);
                s.shutdown_deadline = Some(deadline);
            }
            None => {
                let _ = hc::domain_destroy(s.id);
                s.reported = true;
            }
        }
    }
    crate::table::request_power_off();
    println!("toolstack: host shutdown: every domain asked to stop, then power off");
}

/// Creates a domain from a configuration's text and its image (`None`: the
/// image the configuration's `kernel` names in the boot bundle).
pub fn create(
    started: &mut Domains,
    file: &str,
    config: &str,
    image: Option<alloc::vec::Vec<u8>>,
    paused: bool,
) -> Result<DomainId, String> {
    if !crate::table::make_room(started) {
        return Err("the toolstack already tracks as many domains as it can".into());
    }
    let parsed = domain_config::parse(file, config, &[])
        .map_err(|errors| errors.first().map(ToString::to_string).unwrap_or_default())?;
    let mut c = parsed.config;
    c.start_paused = paused;
    let image = match image {
        None => Image::Boot(
            crate::bundle::find()
                .and_then(|b| crate::bundle::image(b, &c.kernel))
                .ok_or("no image of that name in the boot bundle")?,
        ),
        // Kept for restarts while the domain may need one.
        Some(bytes) => Image::Uploaded(bytes.into()),
    };
    let s = crate::start::start_one(me(), image, c.into(), started, 0)
        .ok_or("the domain could not be created (see the console)")?;
    let id = s.id;
    started.push(s);
    Ok(id)
}

/// A domain's name from its kernel record.
pub fn name(info: &DomainInfo) -> &str {
    let n = (info.name_len as usize).min(info.name.len());
    core::str::from_utf8(&info.name[..n]).unwrap_or("?")
}

/// The name of a `DomainState` value.
pub fn state_name(state: u32) -> &'static str {
    match state {
        s if s == DomainState::Running as u32 => "running",
        s if s == DomainState::Paused as u32 => "paused",
        s if s == DomainState::Shutdown as u32 => "shutdown",
        s if s == DomainState::Crashed as u32 => "crashed",
        _ => "unknown",
    }
}

/// What one vCPU of a domain (`info`) is doing: `down` (not started),
/// `blocked` (waits for an event), else its domain's state.
pub fn vcpu_state_name(info: &DomainInfo, vcpu_state: u32) -> &'static str {
    match VcpuState::from_number(vcpu_state) {
        Some(VcpuState::Down) => "down",
        Some(VcpuState::Blocked) if info.state == DomainState::Running as u32 => "blocked",
        _ => state_name(info.state),
    }
}

/// Domain 0 and every live domain it started, in order.
pub fn live(started: &[Started]) -> impl Iterator<Item = DomainInfo> + '_ {
    core::iter::once(me())
        .chain(started.iter().map(|s| s.id))
        .filter_map(|id| hc::domain_info(id).ok())
}
