//! Starting domains from their descriptions.
//!
//! Owns: creating, loading and launching a domain from a checked
//! `DomainConfig` (from a GRUB module line, a boot bundle configuration, a
//! `toolstack domain create` or a save file: one typed description, never
//! text again), giving it its hardware, and writing the command line it
//! reads (`ipc_abi::launch`): its devices and backends, then its own words.
//! What becomes of a domain once started is `watch.rs`.

extern crate alloc;

use crate::table::{make_room, vif_mac, Config, Domains, Image, Started, MAX};
use crate::viewer::Viewer;
use domain_config::{DomainConfig, Role};
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::hypercall::Error;
use domain_runtime::ipc_abi::launch;
use domain_runtime::{println, DomainId};

/// Whether the table has room for one more domain; says so on COM1 if not.
fn has_room(started: &mut Domains, name: &str) -> bool {
    if make_room(started) {
        return true;
    }
    println!(
        "toolstack: already tracking {} domains; {} not started",
        MAX, name
    );
    false
}

/// How long a domain has to obey a shutdown request.
pub const SHUTDOWN_TIMEOUT_NS: u64 = 3_000_000_000;
/// The same for an HVM guest: an operating system's shutdown path takes longer.
pub const HVM_SHUTDOWN_TIMEOUT_NS: u64 = 30_000_000_000;

/// Starts a domain for every boot module; returns them in order.
pub fn start_modules() -> Domains {
    start_modules_with(None)
}

/// [`start_modules`], connecting domain 0's own console ring (`viewer`) as
/// soon as console-dom runs, so it is console-dom's first client.
pub fn start_modules_with(mut viewer: Option<&mut Option<Viewer>>) -> Domains {
    let me = DomainId(domain_runtime::start_info().domain_id);
    let mut started = Domains::new();
    for (i, (image, line)) in domain_runtime::modules().enumerate() {
        if line.split_whitespace().next() == Some("bundle") {
            continue;
        }
        let which = alloc::format!("module {}", i + 1);
        let Some(config) = checked(domain_config::module_line::parse(&which, line)) else {
            continue;
        };
        if !has_room(&mut started, &config.name) {
            continue;
        }
        if let Some(s) = start_one(me, Image::Boot(image), config.into(), &mut started, 0) {
            started.push(s);
        }
        if let Some(v) = viewer.as_deref_mut() {
            Viewer::follow(v, me, &mut started);
        }
    }
    // Then the boot bundle's auto/ configurations, in name order.
    if let Some(bundle) = crate::bundle::find() {
        for (file, text) in crate::bundle::auto_configs(bundle) {
            let Some(c) = checked(domain_config::parse(&file, text, &[])) else {
                continue;
            };
            let Some(image) = crate::bundle::image(bundle, &c.kernel) else {
                println!(
                    "toolstack: {}: kernel: no image named {} in the boot bundle",
                    file, c.kernel
                );
                continue;
            };
            if !has_room(&mut started, &c.name) {
                continue;
            }
            if let Some(s) = start_one(me, Image::Boot(image), c.into(), &mut started, 0) {
                started.push(s);
            }
        }
    }
    started
}

/// The configuration of a check, with its warnings said; or its errors
/// said and nothing.
fn checked(
    parsed: Result<domain_config::Parsed, alloc::vec::Vec<domain_config::ConfigError>>,
) -> Option<DomainConfig> {
    match parsed {
        Ok(p) => {
            for w in &p.warnings {
                println!("toolstack: warning: {}", w);
            }
            Some(p.config)
        }
        Err(errors) => {
            for e in errors {
                println!("toolstack: {}", e);
            }
            None
        }
    }
}

/// Creates, loads and starts a domain from its description. `restart` is
/// how many times it was restarted before (0 the first time); a restarted
/// instance finds `restart=K` on its command line (drvdom-blk then skips
/// the description and self-test the first instance logged).
pub fn start_one(
    me: DomainId,
    image: Image,
    config: Config,
    started: &mut Domains,
    restart: u32,
) -> Option<Started> {
    let id = create_loaded(image.bytes(), &config)?;
    // An HVM guest's device model starts first (it is a domain of its own).
    if config.kind == domain_config::Kind::Hvm {
        if let Err(e) = start_device_model(me, id, &config, started) {
            println!("toolstack: {}: {}", config.name, e);
            let _ = hc::domain_destroy(id);
            return None;
        }
    }
    launch(me, id, image, config, started, restart)
}

/// Creates a paused domain from its description and loads its image, with
/// its hardware and CPUs; it has not run yet. Says why on COM1 if it fails
/// (and leaves nothing behind).
pub fn create_loaded(image: &[u8], c: &DomainConfig) -> Option<DomainId> {
    let name = c.name.as_str();
    let vcpus = c.vcpus as u32;
    if c.kind == domain_config::Kind::Hvm {
        let id = crate::hvm::create(image, c)
            .inspect_err(|e| println!("toolstack: {}", e))
            .ok()?;
        return pin_vcpus(id, c).then_some(id);
    }
    // Room for `maxmem` from the start; the balloon gives back the rest
    // (`launch` asks it to) before the domain's program uses it.
    let kib = c.memory_kib.max(c.maxmem_kib);
    let id = match hc::domain_create(name, kib, c.weight, c.cap, vcpus) {
        Ok(id) => id,
        Err(e) => {
            println!("toolstack: cannot create {}: {}", name, e);
            return None;
        }
    };
    let undo = |what: core::fmt::Arguments, e: Error| {
        println!("toolstack: cannot {}: {}", what, e);
        let _ = hc::domain_destroy(id);
    };
    if let Err(e) = hc::domain_load_image(id, image) {
        undo(format_args!("load {}", name), e);
        return None;
    }
    if let Err(e) = give_hardware(id, c) {
        undo(format_args!("give {} its hardware", name), e);
        return None;
    }
    pin_vcpus(id, c).then_some(id)
}

/// Lets each vCPU of created domain `id` run only on the CPUs `c.cpus`
/// names, if it names any; false (the domain destroyed) if that failed.
fn pin_vcpus(id: DomainId, c: &DomainConfig) -> bool {
    let Some(mask) = c.cpus else {
        return true;
    };
    match (0..c.vcpus as u32).try_for_each(|v| hc::domain_pin(id, v, mask).map(drop)) {
        Ok(()) => true,
        Err(e) => {
            println!(
                "toolstack: cannot pin {} to CPUs {:#x}: {}",
                c.name, mask, e
            );
            let _ = hc::domain_destroy(id);
            false
        }
    }
}

/// Gives created domain `id` its command line (its devices, its control
/// ring) and lets it run, unless it is to start paused.
pub fn launch(
    me: DomainId,
    id: DomainId,
    image: Image,
    config: Config,
    started: &[Started],
    restart: u32,
) -> Option<Started> {
    let c: &DomainConfig = &config;
    let name = c.name.as_str();
    if c.kind == domain_config::Kind::Hvm {
        // An HVM guest speaks no ring: no command line words, no control ring.
        return Some(run_started(id, image, config, None));
    }
    let mut cmdline = domain_words(c);
    let mut add = |key: &str, value: &dyn core::fmt::Display| {
        let _ = core::fmt::Write::write_fmt(&mut cmdline, format_args!(" {key}={value}"));
    };
    if let Some(peer_name) = &c.evtchn {
        match started.iter().find(|s| s.name.as_str() == peer_name) {
            Some(peer) => match hc::event_alloc_unbound(peer.id, id) {
                Ok(port) => {
                    add(launch::PEER, &peer.id.0);
                    add(launch::PEER_PORT, &port);
                }
                Err(e) => {
                    println!("toolstack: cannot connect {} to {}: {}", name, peer_name, e)
                }
            },
            None => println!("toolstack: {}: no earlier domain named {}", name, peer_name),
        }
    }
    add(launch::SELF, &id.0);
    if restart > 0 {
        add(launch::RESTART, &restart);
    }
    let live = |s: &&Started| !s.reported;
    let mut named = crate::table::NamedBackends::default();
    // Every domain after console-dom gets a console ring to it.
    if c.role != Some(Role::Console) {
        if let Some(console) = crate::table::console_dom(started) {
            add(launch::CONSOLE, &console.0);
            named.console = Some(console);
        }
    }
    // A domain with disks learns its block backend: the live domain serving
    // the first disk's virtual disk (the broker checks every disk again).
    if let Some(disk) = c.disks.first() {
        let backend = started
            .iter()
            .filter(live)
            .find(|s| s.config.vdisks.iter().any(|v| v.name == disk.target));
        if let Some(b) = backend {
            add(launch::BLOCK_BACKEND, &b.id.0);
            named.block = Some(b.id);
        }
    }
    // A domain with interfaces learns its network backend: the live domain
    // whose role is `net` (the broker checks each interface again).
    if !c.vifs.is_empty() {
        let backend = started
            .iter()
            .filter(live)
            .find(|s| s.config.role == Some(Role::Net));
        if let Some(n) = backend {
            add(launch::NET_BACKEND, &n.id.0);
            named.net = Some(n.id);
        }
    }
    // The network driver domain gets the hypervisor's `ifname=`.
    if c.role == Some(Role::Net) {
        add(launch::IFNAME, &hypervisor_ifname());
    }
    let control = match crate::control::Link::offer(me, id) {
        Ok((mut link, word)) => {
            let _ = core::fmt::Write::write_fmt(&mut cmdline, format_args!(" {}", word));
            if c.maxmem_kib > c.memory_kib {
                link.tell(crate::control::balloon_target(c.memory_kib));
            }
            Some(link)
        }
        Err(e) => {
            println!("toolstack: no control ring for {}: {}", name, e);
            None
        }
    };
    let _ = hc::domain_set_cmdline(id, &cmdline);
    let mut s = run_started(id, image, config, control);
    s.named = named;
    Some(s)
}

/// Lets created domain `id` run (unless it is to start paused) and says so;
/// what domain 0 keeps of it.
fn run_started(
    id: DomainId,
    image: Image,
    config: Config,
    control: Option<crate::control::Link>,
) -> Started {
    let c: &DomainConfig = &config;
    let name = c.name.as_str();
    let kib = c.memory_kib;
    if c.start_paused {
        println!(
            "toolstack: created {} as domain {} ({} KiB), paused",
            name, id, kib
        );
    } else {
        match hc::domain_unpause(id) {
            Ok(_) => println!("toolstack: started {} as domain {} ({} KiB)", name, id, kib),
            Err(e) => println!("toolstack: cannot start {}: {}", name, e),
        }
    }
    let mut n = heapless::String::new();
    let _ = n.push_str(&name[..name.len().min(32)]);
    Started {
        lingering: alloc::vec::Vec::new(),
        id,
        name: n,
        reported: false,
        control,
        image,
        console_backend: None,
        block_backend: None,
        net_backend: None,
        block_devices: 0,
        net_devices: 0,
        detached_vifs: 0,
        named: Default::default(),
        rings: heapless::Vec::new(),
        supervisor: Default::default(),
        restart_at: None,
        heartbeat_ns: (c.heartbeat_ms > 0).then(|| u64::from(c.heartbeat_ms) * 1_000_000),
        started_at: domain_runtime::time::now_ns(),
        shutdown_deadline: None,
        device_model_of: None,
        config,
    }
}

/// The start of a domain's command line: its name, what it must know of
/// its own description (`ipc_abi::launch`: its PCI functions, DMA memory,
/// virtual disks, interfaces with their MACs, heartbeat period), then its
/// own words (`cmdline`).
pub fn domain_words(c: &DomainConfig) -> heapless::String<1024> {
    use core::fmt::Write;
    let mut line: heapless::String<1024> = heapless::String::new();
    let _ = line.push_str(&c.name);
    for &bdf in &c.pci {
        let _ = write!(
            line,
            " {}={}",
            launch::PCI,
            domain_config::config::pci_text(bdf)
        );
    }
    if c.dma_kib > 0 {
        let _ = write!(line, " {}={}", launch::DMA, c.dma_kib);
    }
    for v in &c.vdisks {
        let _ = write!(line, " {}={}", launch::VDISK, v);
    }
    for (i, v) in c.vifs.iter().enumerate() {
        let spec = launch::VifSpec {
            mac: Some(vif_mac(c, i, v)),
            mtu: v.mtu,
        };
        let _ = write!(line, " {}={}", launch::VIF, spec);
    }
    if c.heartbeat_ms > 0 {
        let _ = write!(line, " {}={}", launch::HEARTBEAT, c.heartbeat_ms);
    }
    if !c.cmdline.is_empty() {
        let _ = write!(line, " {}", c.cmdline);
    }
    line
}

/// The hypervisor's `ifname=` (the kernel appends it to our command line).
fn hypervisor_ifname() -> &'static str {
    launch::value(domain_runtime::command_line(), launch::IFNAME).unwrap_or("auto")
}

/// Gives the domain the I/O ports, IRQs, PCI functions, DMA memory and
/// device memory its description asks for.
fn give_hardware(id: DomainId, c: &DomainConfig) -> Result<(), Error> {
    for &(first, count) in &c.ioports {
        hc::domain_add_io_ports(id, first, count)?;
    }
    for &irq in &c.irqs {
        hc::domain_add_irq(id, irq)?;
    }
    for &bdf in &c.pci {
        let text = domain_config::config::pci_text(bdf);
        if c.role == Some(Role::Net) && hypervisor_ifname() == "dummy" {
            println!(
                "toolstack: ifname=dummy: domain {} gets no NIC ({} stays unused)",
                id, text
            );
            continue;
        }
        hc::domain_add_pci(id, bdf)?;
        println!("toolstack: domain {} gets PCI function {}", id, text);
    }
    if c.dma_kib > 0 {
        hc::domain_add_dma(id, c.dma_kib.div_ceil(4))?;
    }
    for &(page, pages) in &c.iomem {
        let phys = page * 4096;
        let va = hc::domain_add_mmio(id, phys, pages)?;
        println!(
            "toolstack: domain {} gets {} pages of device memory at {:#x}, mapped at {:#x}",
            id, pages, phys, va
        );
    }
    Ok(())
}

/// Starts the device model of created HVM guest `guest` (configuration
/// `c`) and adds it to `started`: `NAME-dmID`, allowed to serve the guest
/// before it runs. It stops by itself once the guest is destroyed.
pub fn start_device_model(
    me: DomainId,
    guest: DomainId,
    c: &DomainConfig,
    started: &mut crate::table::Domains,
) -> Result<(), alloc::string::String> {
    // Room for it and for its guest, added after it.
    if !crate::table::make_room_for(started, 2) {
        return Err(alloc::format!(
            "already tracking {MAX} domains; no room for it and its device model"
        ));
    }
    let image = crate::bundle::find()
        .and_then(|b| crate::bundle::image(b, crate::hvm::DEVICE_MODEL_IMAGE))
        .ok_or("no device-model image in the boot bundle")?;
    let short = &c.name[..c.name.len().min(20)];
    let mut line = alloc::format!(
        "{short}-dm{} memory={}K on_poweroff=destroy on_reboot=destroy on_crash=destroy {}={}",
        guest.0,
        crate::hvm::DEVICE_MODEL_KIB,
        launch::HVM_GUEST,
        guest.0
    );
    // The guest's disks and interfaces are its device model's to present:
    // it is their frontend, and the broker checks them against the
    // guest's lists.
    for d in &c.disks {
        if let Some(i) = domain_config::config::vdev_index(&d.vdev) {
            line.push_str(&alloc::format!(" {}={}", launch::HVM_DISK, i));
        }
    }
    let mut dm_config = domain_config::module_line::parse("device model", &line)
        .map_err(|_| alloc::string::String::from("cannot describe its device model"))?
        .config;
    dm_config.disks = c.disks.clone();
    // Its interfaces too, with the MACs the guest's name gives them.
    dm_config.vifs = c
        .vifs
        .iter()
        .enumerate()
        .map(|(i, v)| domain_config::config::Vif {
            mac: Some(crate::table::vif_mac(c, i, v)),
            // Linux's virtio-net keeps the wire's MTU (the device model
            // offers no VIRTIO_NET_F_MTU): drvdom-net sends it nothing longer.
            mtu: None,
        })
        .collect();
    let dm = create_loaded(image, &dm_config).ok_or("cannot create its device model")?;
    if let Err(e) = hc::hvm_set_device_model(guest, dm) {
        let _ = hc::domain_destroy(dm);
        return Err(alloc::format!("cannot give it its device model: {e}"));
    }
    let config = alloc::rc::Rc::new(dm_config);
    let mut s = launch(me, dm, crate::table::Image::Boot(image), config, started, 0)
        .ok_or("cannot start its device model")?;
    s.device_model_of = Some(guest);
    started.push(s);
    Ok(())
}
