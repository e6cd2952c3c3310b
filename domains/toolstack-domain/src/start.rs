//! Starting the boot modules' domains and watching them.
//!
//! Module command line: `NAME [mem=KiB] [weight=N] [cap=PERCENT] [evtchn=PEER] [args...]`.
//! The whole line is the new domain's command line, with `self=ID` appended.
//! `evtchn=PEER` connects the domain to the earlier-started domain `PEER` by
//! an event channel: a port is allocated in PEER for the new domain and
//! `peer=ID peer_port=P` is appended to the new domain's command line.
//! `ioports=FIRST+COUNT`, `irq=N` and `mmio=PHYS+PAGES` give it hardware
//! (numbers in decimal or 0x hex); `mmio_va=` with the address it got is appended.
//! `pci=BB:DD.F` gives it a PCI function (its BARs, INTx line and configuration
//! space, through the kernel) and `dma=KiB` contiguous memory for DMA.
//! `history_on_exit` asks console-dom to replay the domain's console history
//! once it has stopped. A module whose line is `bundle` is the boot bundle:
//! its `auto/*.cfg` configurations are started after the modules, in name
//! order (`bundle.rs`, `docs/boot-bundle.md`).

extern crate alloc;

use crate::viewer::{Reply, Viewer};
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::DomainState;
use domain_runtime::ipc_abi::shared::Virq;
use domain_runtime::{events, println, DomainId};

/// Default memory of a domain whose line names none, in KiB.
const DEFAULT_KIB: u64 = 1024;
/// Domains this program keeps track of at most (the kernel's table holds
/// 128 with domain 0).
pub const MAX: usize = 127;

/// Every domain this program started, in start order (on the heap: the
/// table is too large for the stack).
pub type Domains = alloc::vec::Vec<Started>;

/// Makes room for one more domain if the table is full, by forgetting the
/// oldest domain that is gone (destroyed; its end was reported). Until then
/// a gone domain stays known, so its console history can still be found.
pub fn make_room(started: &mut Domains) -> bool {
    if started.len() < MAX {
        return true;
    }
    let gone = started
        .iter()
        .position(|s| s.reported && hc::domain_info(s.id).is_err());
    if let Some(i) = gone {
        let s = started.remove(i);
        if let Some(link) = s.control {
            // Its grant can end only once unmapped; if not, the page stays shared.
            let _ = link.release();
        }
    }
    started.len() < MAX
}

/// Whether the table has room for one more domain; says so on COM1 if not.
fn has_room(started: &mut Domains, line: &str) -> bool {
    if make_room(started) {
        return true;
    }
    println!(
        "toolstack: already tracking {} domains; {} not started",
        MAX,
        line.split_whitespace().next().unwrap_or("")
    );
    false
}

/// A domain's image: a boot module or bundle file, or an uploaded one, which
/// is freed once no domain may need it again.
#[derive(Clone)]
pub enum Image {
    Boot(&'static [u8]),
    Uploaded(alloc::rc::Rc<[u8]>),
    /// Dropped: the domain stopped for good.
    Gone,
}

impl Image {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Image::Boot(b) => b,
            Image::Uploaded(b) => b,
            Image::Gone => &[],
        }
    }
}

/// A domain's start line, shared by its instances (restarts) and freed
/// with the last of them.
pub type Line = alloc::rc::Rc<str>;

/// The policy word of `key=` on `line`, as one of the words that mean
/// something (`restart`, `destroy`); anything else keeps the domain.
fn policy(line: &str, key: &str) -> &'static str {
    match option(line, key) {
        Some("restart") => "restart",
        Some("destroy") => "destroy",
        _ => "preserve",
    }
}

/// A domain this program started.
pub struct Started {
    pub id: DomainId,
    pub name: heapless::String<32>,
    /// Its end (crash or shutdown) has been reported.
    pub reported: bool,
    /// Its control ring.
    pub control: Option<crate::control::Link>,
    /// Control rings of its earlier instances (before restarts) whose
    /// grant could not end yet: released as soon as it can, or domain 0's
    /// grants and ports would run out after a hundred restarts.
    pub lingering: alloc::vec::Vec<crate::control::Link>,
    /// Ask console-dom to replay its console history once it stops (`history_on_exit`).
    pub history_on_exit: bool,
    /// What to do when it powers off, reboots or crashes: `on_poweroff=`,
    /// `on_reboot=`, `on_crash=` words (`destroy`, `restart`, `preserve`);
    /// a module line without them keeps the domain (`preserve`).
    pub on_poweroff: &'static str,
    pub on_reboot: &'static str,
    pub on_crash: &'static str,
    /// The image it was started from (kept for restarts).
    pub image: Image,
    pub line: Line,
    /// The backend serving its console, once connected.
    pub console_backend: Option<DomainId>,
    /// The backend serving its disks, once connected.
    pub block_backend: Option<DomainId>,
    /// The backend serving its network interfaces, once connected.
    pub net_backend: Option<DomainId>,
    /// Which of its disks and interfaces are connected (bit N: device N).
    pub block_devices: u32,
    pub net_devices: u32,
    /// Its rings that a backend serves (for `toolstack ring list`).
    pub rings: heapless::Vec<crate::broker::RingRecord, 16>,
    /// Its crashes and restarts (kept across restarts).
    pub supervisor: crate::supervise::Supervisor,
    /// When a crashed domain is to be started again (ns since boot).
    pub restart_at: Option<u64>,
    /// The heartbeat period it was asked for (`heartbeat_ms=`), and when it started.
    pub heartbeat_ns: Option<u64>,
    pub started_at: u64,
    /// When an unanswered shutdown request turns into a destroy (ns since boot).
    pub shutdown_deadline: Option<u64>,
}

static POWER_OFF: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Powers the machine off once every domain has stopped.
pub fn request_power_off() {
    POWER_OFF.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// How long a domain has to obey a shutdown request.
pub const SHUTDOWN_TIMEOUT_NS: u64 = 3_000_000_000;

/// Every value of `key=` in a command line.
fn options<'a>(line: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    line.split_whitespace()
        .filter_map(move |w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Value of `key=` in a command line.
fn option<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Starts a domain for every boot module; returns them in order.
pub fn start_modules() -> Domains {
    start_modules_with(None)
}

/// [`start_modules`], connecting domain 0's own console ring (`viewer`) as
/// soon as console-dom runs, so it is console-dom's first client.
pub fn start_modules_with(mut viewer: Option<&mut Option<Viewer>>) -> Domains {
    let me = DomainId(domain_runtime::start_info().domain_id);
    let mut started = Domains::new();
    for (image, line) in domain_runtime::modules() {
        if line.split_whitespace().next() == Some("bundle") {
            continue;
        }
        if !has_room(&mut started, line) {
            continue;
        }
        if let Some(s) = start_one(me, Image::Boot(image), line.into(), &started, 0) {
            started.push(s);
        }
        if let Some(v) = viewer.as_deref_mut() {
            Viewer::follow(v, me, &mut started);
        }
    }
    // Then the boot bundle's auto/ configurations, in name order.
    if let Some(bundle) = crate::bundle::find() {
        for (file, text) in crate::bundle::auto_configs(bundle) {
            let parsed = match domain_config::parse(&file, text, &[]) {
                Ok(p) => p,
                Err(errors) => {
                    for e in errors {
                        println!("toolstack: {}", e);
                    }
                    continue;
                }
            };
            for w in &parsed.warnings {
                println!("toolstack: warning: {}", w);
            }
            let c = parsed.config;
            let Some(image) = crate::bundle::image(bundle, &c.kernel) else {
                println!(
                    "toolstack: {}: kernel: no image named {} in the boot bundle",
                    file, c.kernel
                );
                continue;
            };
            let line: Line = crate::bundle::start_line(&c).into();
            if !has_room(&mut started, &line) {
                continue;
            }
            if let Some(s) = start_one(me, Image::Boot(image), line, &started, 0) {
                started.push(s);
            }
        }
    }
    started
}

/// Creates, loads, configures and unpauses one domain from a boot module.
/// Creates, loads and starts a domain from its module line. `restart` is
/// how many times it was restarted before (0 the first time); a restarted
/// instance finds `restart=K` on its command line (drvdom-blk then skips
/// the description and self-test the first instance logged).
pub fn start_one(
    me: DomainId,
    image: Image,
    line: Line,
    started: &[Started],
    restart: u32,
) -> Option<Started> {
    let id = create_loaded(image.bytes(), &line)?;
    launch(me, id, image, line, started, restart)
}

/// Creates a paused domain from its line and loads its image, with its
/// hardware and CPUs; it has not run yet. Says why on COM1 if it fails
/// (and leaves nothing behind).
pub fn create_loaded(image: &[u8], line: &str) -> Option<DomainId> {
    let name = line.split_whitespace().next().unwrap_or("domain");
    let kib = option(line, "mem")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_KIB);
    let weight = option(line, "weight")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cap = option(line, "cap")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let vcpus = option(line, "vcpus")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let id = match hc::domain_create(name, kib, weight, cap, vcpus) {
        Ok(id) => id,
        Err(e) => {
            println!("toolstack: cannot create {}: {}", name, e);
            return None;
        }
    };
    if let Err(e) = hc::domain_load_image(id, image) {
        println!("toolstack: cannot load {}: {}", name, e);
        let _ = hc::domain_destroy(id);
        return None;
    }
    if let Err(e) = give_hardware(id, line) {
        println!("toolstack: cannot give {} its hardware: {}", name, e);
        let _ = hc::domain_destroy(id);
        return None;
    }
    // `cpus=MASK` (hex, from `cpus =`): where its vCPUs may run.
    if let Some(mask) = option(line, "cpus") {
        let pinned = u64::from_str_radix(mask.trim_start_matches("0x"), 16)
            .map_err(|_| domain_runtime::ipc_abi::hypercall::Error::InvalidArgument)
            .and_then(|m| (0..vcpus).try_for_each(|v| hc::domain_pin(id, v, m).map(|_| ())));
        if let Err(e) = pinned {
            println!("toolstack: cannot pin {} to CPUs {}: {}", name, mask, e);
            let _ = hc::domain_destroy(id);
            return None;
        }
    }
    Some(id)
}

/// Gives created domain `id` its command line (its devices, its control
/// ring) and lets it run, unless its line says `start_paused`.
pub fn launch(
    me: DomainId,
    id: DomainId,
    image: Image,
    shared_line: Line,
    started: &[Started],
    restart: u32,
) -> Option<Started> {
    let line: &str = &shared_line;
    let name = line.split_whitespace().next().unwrap_or("domain");
    let kib = option(line, "mem")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_KIB);
    let mut cmdline: heapless::String<1024> = heapless::String::new();
    let _ = cmdline.push_str(line);
    if let Some(peer_name) = option(line, "evtchn") {
        match started.iter().find(|s| s.name.as_str() == peer_name) {
            Some(peer) => match hc::event_alloc_unbound(peer.id, id) {
                Ok(port) => {
                    let _ = core::fmt::Write::write_fmt(
                        &mut cmdline,
                        format_args!(" peer={} peer_port={}", peer.id.0, port),
                    );
                }
                Err(e) => {
                    println!("toolstack: cannot connect {} to {}: {}", name, peer_name, e)
                }
            },
            None => println!("toolstack: {}: no earlier domain named {}", name, peer_name),
        }
    }
    let _ = core::fmt::Write::write_fmt(&mut cmdline, format_args!(" self={}", id.0));
    if restart > 0 {
        let _ = core::fmt::Write::write_fmt(&mut cmdline, format_args!(" restart={}", restart));
    }
    // Every domain after console-dom gets a console ring to it.
    let console = started
        .iter()
        .find(|s| s.name.as_str() == "console-dom" && !s.reported);
    if let Some(c) = console.filter(|_| name != "console-dom") {
        let _ = core::fmt::Write::write_fmt(&mut cmdline, format_args!(" console={}", c.id.0));
    }
    // A domain with disks learns its block backend: the live domain serving
    // the first disk's virtual disk (the broker checks every disk again).
    let wanted = options(line, "disk")
        .next()
        .and_then(|d| d.split(':').next());
    let backend = wanted.and_then(|target| {
        started.iter().find(|s| {
            !s.reported && options(&s.line, "vdisk").any(|v| v.split(':').next() == Some(target))
        })
    });
    if let Some(b) = backend {
        let _ = core::fmt::Write::write_fmt(&mut cmdline, format_args!(" blk={}", b.id.0));
    }
    // A domain with interfaces learns its network backend: the live domain
    // whose role is `net` (the broker checks each interface again).
    if options(line, "vif").next().is_some() {
        let net = started
            .iter()
            .find(|s| !s.reported && option(&s.line, "role") == Some("net"));
        if let Some(n) = net {
            let _ = core::fmt::Write::write_fmt(&mut cmdline, format_args!(" net={}", n.id.0));
        }
    }
    // The network driver domain gets the hypervisor's `ifname=`.
    if option(line, "role") == Some("net") {
        let _ = core::fmt::Write::write_fmt(
            &mut cmdline,
            format_args!(" ifname={}", hypervisor_ifname()),
        );
    }
    let control = match crate::control::Link::offer(me, id) {
        Ok((link, word)) => {
            let _ = core::fmt::Write::write_fmt(&mut cmdline, format_args!(" {}", word));
            Some(link)
        }
        Err(e) => {
            println!("toolstack: no control ring for {}: {}", name, e);
            None
        }
    };
    let _ = hc::domain_set_cmdline(id, &cmdline);
    if line.split_whitespace().any(|w| w == "start_paused") {
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
    Some(Started {
        lingering: alloc::vec::Vec::new(),
        id,
        name: n,
        reported: false,
        control,
        history_on_exit: line.split_whitespace().any(|w| w == "history_on_exit"),
        on_poweroff: policy(line, "on_poweroff"),
        on_reboot: policy(line, "on_reboot"),
        on_crash: policy(line, "on_crash"),
        image,
        line: shared_line.clone(),
        console_backend: None,
        block_backend: None,
        net_backend: None,
        block_devices: 0,
        net_devices: 0,
        rings: heapless::Vec::new(),
        supervisor: Default::default(),
        restart_at: None,
        heartbeat_ns: option(line, "heartbeat_ms")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map(|ms| ms * 1_000_000),
        started_at: domain_runtime::time::now_ns(),
        shutdown_deadline: None,
    })
}

/// Starts every module's domain, then reports each one's end, for ever.
pub fn run() {
    let count = domain_runtime::modules().count();
    println!("toolstack: domain 0 up, {} boot modules", count);
    let state_port = hc::event_bind_virq(Virq::DomainState).ok();
    let me = DomainId(domain_runtime::start_info().domain_id);
    let mut viewer: Option<Viewer> = None;
    let mut started = start_modules_with(Some(&mut viewer));
    let mut mgmt = crate::mgmt::Server::start();
    let mut shell = crate::shell::Shell::new();
    let mut all_stopped = false;
    let mut next_ring_look = 0;
    let mut again: alloc::vec::Vec<u16> = alloc::vec::Vec::new();
    loop {
        Viewer::follow(&mut viewer, me, &mut started);
        for i in 0..started.len() {
            if started[i].reported {
                continue;
            }
            let end = report(&mut started[i]);
            if end == End::Running {
                continue;
            }
            let dom = started[i].id;
            // Its devices are closed: console-dom prints what is left and keeps
            // the history; drvdom-blk lets go of its rings and pages.
            crate::broker::close_devices(&mut started, dom);
            if started[i].history_on_exit {
                crate::broker::replay_history(&mut started, dom);
            }
            if end == End::Destroyed {
                started[i].image = Image::Gone;
            } else {
                apply_policy(me, &mut started, i, end == End::Crashed);
            }
            // A backend that is not coming back: the domains it served are
            // told their devices are gone (rather than wait for ever).
            if started[i].id == dom && started[i].restart_at.is_none() {
                crate::broker::peer_gone(&mut started, dom);
            }
        }
        // Gone domains give back their control ring's port and grant.
        for s in started
            .iter_mut()
            .filter(|s| s.reported && s.control.is_some())
        {
            if hc::domain_info(s.id).is_err() {
                s.control = s.control.take().and_then(crate::control::Link::release);
            }
        }
        for s in started.iter_mut().filter(|s| !s.lingering.is_empty()) {
            s.lingering = core::mem::take(&mut s.lingering)
                .into_iter()
                .filter_map(crate::control::Link::release)
                .collect();
        }
        // A domain asked for heartbeats that missed one is hung: it is
        // crashed, so its `on_crash` policy (restart) applies.
        let now = domain_runtime::time::now_ns();
        for s in started.iter_mut().filter(|s| !s.reported) {
            let (Some(period), Some(link)) = (s.heartbeat_ns, s.control.as_ref()) else {
                continue;
            };
            let last = link.last_heartbeat.max(s.started_at);
            if now.saturating_sub(last) > period {
                println!(
                    "toolstack: {} (domain {}) missed its heartbeat ({} ms); crashing it",
                    s.name,
                    s.id,
                    period / 1_000_000
                );
                let _ = hc::domain_crash(s.id);
                // Not again until its end is reported.
                s.heartbeat_ns = None;
            }
        }
        // Crashed domains whose backoff has passed start again.
        for i in 0..started.len() {
            if started[i].restart_at.is_some_and(|t| t <= now) {
                started[i].restart_at = None;
                restart(me, &mut started, i, "after its crash");
            }
        }
        if !all_stopped && started.iter().all(|s| s.reported && s.restart_at.is_none()) {
            println!("toolstack: all domains have stopped");
            all_stopped = true;
        }
        // Domains that ignored a shutdown request past its deadline are destroyed.
        let now = domain_runtime::time::now_ns();
        for s in started.iter_mut() {
            if s.shutdown_deadline.is_some_and(|d| d <= now) {
                s.shutdown_deadline = None;
                if !s.reported {
                    let _ = hc::domain_destroy(s.id);
                    println!(
                        "toolstack: domain {} ({}) ignored its shutdown request; destroyed",
                        s.id, s.name
                    );
                    s.reported = true;
                }
            }
        }
        if POWER_OFF.load(core::sync::atomic::Ordering::Relaxed)
            && started.iter().all(|s| s.reported)
        {
            println!("toolstack: every domain has stopped; powering off");
            // A domain that stopped may still own console lines: let them out first.
            let _ = hc::machine_power_off();
            println!("toolstack: the machine did not power off");
            POWER_OFF.store(false, core::sync::atomic::Ordering::Relaxed);
        }
        // Rings are looked at now and then, while there are any.
        let now = domain_runtime::time::now_ns();
        // (With none, every turn checks whether one has been connected.)
        if now >= next_ring_look || next_ring_look == u64::MAX {
            next_ring_look = if crate::broker::look_at_rings(&mut started, now) {
                now + crate::broker::RING_LOOK_NS
            } else {
                u64::MAX
            };
        }
        let ring_due = (next_ring_look != u64::MAX).then_some(next_ring_look);
        let console_due = mgmt.as_ref().and_then(|m| m.deadline());
        if let Some(next) = started
            .iter()
            .filter_map(|s| s.shutdown_deadline)
            .chain(started.iter().filter_map(|s| s.restart_at))
            .chain(started.iter().filter(|s| !s.reported).filter_map(|s| {
                let last = s.control.as_ref()?.last_heartbeat.max(s.started_at);
                Some(last + s.heartbeat_ns? + 1)
            }))
            .chain(console_due)
            .chain(ring_due)
            .min()
        {
            let _ = hc::set_timer(next);
        }
        // A control ring with messages left over from the last turn is
        // served again at once (after everything else had its turn).
        if again.is_empty() {
            hc::block();
        }
        if let Some(server) = mgmt.as_mut() {
            server.on_timer(domain_runtime::time::now_ns());
            server.on_save_progress(&mut started);
        }
        // Serve every control ring that has something (pending bits are taken, not trusted).
        let mut ready: alloc::vec::Vec<u16> = core::mem::take(&mut again);
        events::take_all(|port| {
            if Some(port) != state_port && !ready.contains(&port) {
                ready.push(port);
            }
        });
        for port in ready {
            match (mgmt.as_mut(), viewer.as_mut()) {
                (Some(server), _) if server.port == port => server.poll(&mut started, &mut viewer),
                (_, Some(v)) if v.port == port => {
                    for reply in v.replies() {
                        match reply {
                            Reply::Peek(rsp) => {
                                if let Some(server) = mgmt.as_mut() {
                                    server.on_peek(&rsp);
                                }
                            }
                            Reply::Input(bytes) => shell.input(&bytes, &mut started),
                        }
                    }
                }
                _ => {
                    if crate::broker::serve_port(&mut started, port) {
                        again.push(port);
                    }
                }
            }
        }
    }
}

/// Carries out the domain's `on_poweroff`/`on_reboot`/`on_crash` policy once it stopped.
fn apply_policy(me: DomainId, started: &mut [Started], i: usize, crashed: bool) {
    let reason = hc::domain_info(started[i].id)
        .map(|info| info.shutdown_reason)
        .unwrap_or(0);
    let policy = if crashed {
        started[i].on_crash
    } else if reason == domain_runtime::ipc_abi::domain::ShutdownReason::Reboot as u64 {
        started[i].on_reboot
    } else {
        started[i].on_poweroff
    };
    match policy {
        "restart" if crashed => {
            let now = domain_runtime::time::now_ns();
            if let Ok(info) = hc::domain_info(started[i].id) {
                let c = &info.crash;
                let mut what: heapless::String<96> = heapless::String::new();
                let ms = c.at_ns / 1_000_000;
                let _ = core::fmt::Write::write_fmt(
                    &mut what,
                    format_args!("at {}.{:03} s: ", ms / 1000, ms % 1000),
                );
                let _ = if c.vector == u64::MAX {
                    core::fmt::Write::write_fmt(&mut what, format_args!("{}", c.message()))
                } else {
                    core::fmt::Write::write_fmt(
                        &mut what,
                        format_args!("vector {} at rip {:#x}", c.vector, c.rip),
                    )
                };
                started[i].supervisor.remember(&what);
            }
            let limit = option(&started[i].line, "restart_limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(crate::supervise::DEFAULT_LIMIT);
            match started[i].supervisor.crashed(now, limit) {
                crate::supervise::Decision::RestartAt(at) => {
                    started[i].restart_at = Some(at);
                    // Until then its frontends wait; it restarts in the main loop.
                    started[i].reported = true;
                }
                crate::supervise::Decision::GiveUp => {
                    let old = started[i].id;
                    println!(
                        "toolstack: giving up on {} (domain {}) after {} crashes in {} s",
                        started[i].name,
                        old,
                        started[i].supervisor.recent(now),
                        crate::supervise::WINDOW_NS / 1_000_000_000
                    );
                    let _ = hc::domain_destroy(old);
                    started[i].image = Image::Gone;
                    crate::broker::peer_gone(started, old);
                }
            }
        }
        "restart" => restart(me, started, i, "as it asked"),
        "destroy" => {
            let _ = hc::domain_destroy(started[i].id);
            println!(
                "toolstack: destroyed domain {} ({}) as its policy says",
                started[i].id, started[i].name
            );
            started[i].image = Image::Gone;
        }
        // Preserved: kept listed, never started again.
        _ => started[i].image = Image::Gone,
    }
}

/// Destroys a crashed domain and starts it again from its module; its
/// frontends are told their backend restarted.
fn restart(me: DomainId, started: &mut [Started], i: usize, why: &str) {
    let old = started[i].id;
    // When it crashed (for `bench restart`: the time to service again).
    let crash = hc::domain_info(old)
        .ok()
        .filter(|info| info.state == DomainState::Crashed as u32)
        .map(|info| info.crash);
    match crash {
        Some(c) => println!(
            "toolstack: restarting {} (domain {}) {} (crashed at {} us, busy tsc {})",
            started[i].name,
            old,
            why,
            c.at_ns / 1000,
            c.at_busy_tsc
        ),
        None => println!(
            "toolstack: restarting {} (domain {}) {}",
            started[i].name, old, why
        ),
    }
    let _ = hc::domain_destroy(old);
    // The old instance's control ring: its port closed, its grant ended
    // (or kept until it can be, if the old domain is not gone yet).
    let mut lingering = core::mem::take(&mut started[i].lingering);
    if let Some(link) = started[i]
        .control
        .take()
        .and_then(crate::control::Link::release)
    {
        lingering.push(link);
    }
    let (image, line) = (started[i].image.clone(), started[i].line.clone());
    let restarts = started[i].supervisor.restarts + 1;
    match start_one(me, image, line, started, restarts) {
        Some(mut new) => {
            let id = new.id;
            new.supervisor = core::mem::take(&mut started[i].supervisor);
            new.lingering = lingering;
            new.supervisor.restarts += 1;
            started[i] = new;
            crate::broker::peer_restarted(started, old, id);
        }
        None => println!("toolstack: could not restart {}", started[i].name),
    }
}

/// What has become of a domain.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    Running,
    Crashed,
    ShutDown,
    /// Destroyed (by a request, not by its own end): no policy applies.
    Destroyed,
}

/// Prints what became of a domain, once it has stopped, and marks it reported.
pub fn report(s: &mut Started) -> End {
    let info = match hc::domain_info(s.id) {
        Ok(info) => info,
        Err(domain_runtime::ipc_abi::hypercall::Error::DeadDomain) => {
            println!("toolstack: domain {} ({}) was destroyed", s.id, s.name);
            s.reported = true;
            return End::Destroyed;
        }
        Err(_) => return End::Running,
    };
    let c = &info.crash;
    if info.state == DomainState::Crashed as u32 {
        if c.vector == u64::MAX {
            println!(
                "toolstack: domain {} ({}) crashed: \"{}\"",
                s.id,
                s.name,
                c.message()
            );
        } else {
            println!(
                "toolstack: domain {} ({}) crashed: vector {} error {:#x} at rip {:#x} addr {:#x}",
                s.id, s.name, c.vector, c.error_code, c.rip, c.address
            );
        }
        s.reported = true;
        End::Crashed
    } else if info.state == DomainState::Shutdown as u32 {
        println!(
            "toolstack: domain {} ({}) shut down (reason {})",
            s.id, s.name, info.shutdown_reason
        );
        s.reported = true;
        End::ShutDown
    } else {
        End::Running
    }
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn pair(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('+')?;
    Some((parse_number(a)?, parse_number(b)?))
}

/// Gives the domain the I/O ports, IRQ and device memory its line asks for.
/// The hypervisor's `ifname=` (the kernel appends it to our command line).
fn hypervisor_ifname() -> &'static str {
    option(domain_runtime::command_line(), "ifname").unwrap_or("auto")
}

fn give_hardware(
    id: DomainId,
    line: &str,
) -> Result<(), domain_runtime::ipc_abi::hypercall::Error> {
    use domain_runtime::ipc_abi::hypercall::Error;
    for v in options(line, "ioports") {
        let (first, count) = pair(v).ok_or(Error::InvalidArgument)?;
        hc::domain_add_io_ports(id, first as u16, count as u16)?;
    }
    for v in options(line, "irq") {
        hc::domain_add_irq(id, parse_number(v).ok_or(Error::InvalidArgument)? as u8)?;
    }
    for v in options(line, "pci") {
        if option(line, "role") == Some("net") && hypervisor_ifname() == "dummy" {
            println!(
                "toolstack: ifname=dummy: domain {} gets no NIC ({} stays unused)",
                id, v
            );
            continue;
        }
        let bdf = domain_config::config::pci_address(v).ok_or(Error::InvalidArgument)?;
        hc::domain_add_pci(id, bdf)?;
        println!("toolstack: domain {} gets PCI function {}", id, v);
    }
    if let Some(kib) = option(line, "dma") {
        let kib: u64 = kib.parse().map_err(|_| Error::InvalidArgument)?;
        hc::domain_add_dma(id, kib.div_ceil(4))?;
    }
    for v in options(line, "mmio") {
        let (phys, pages) = pair(v).ok_or(Error::InvalidArgument)?;
        let va = hc::domain_add_mmio(id, phys, pages)?;
        println!(
            "toolstack: domain {} gets {} pages of device memory at {:#x}, mapped at {:#x}",
            id, pages, phys, va
        );
    }
    Ok(())
}
