//! The domains domain 0 started, as it keeps them.
//!
//! Owns: what domain 0 knows of each domain it started ([`Started`]: its
//! description, image, control ring, devices and rings, restarts), the
//! table's bound, and the lookups every part of domain 0 makes in it. The
//! bottom of domain 0: it names no other part but the control ring and the
//! supervisor's record.

extern crate alloc;

use alloc::rc::Rc;
use domain_config::{DomainConfig, OnEvent};
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::proto::net;
use domain_runtime::DomainId;

/// Domains this program keeps track of at most (the kernel's table holds
/// 128 with domain 0).
pub const MAX: usize = 127;

/// Every domain this program started, in start order (on the heap: the
/// table is too large for the stack).
pub type Domains = alloc::vec::Vec<Started>;

/// A domain's description, shared by its instances (restarts) and freed
/// with the last of them.
pub type Config = Rc<DomainConfig>;

/// Makes room for one more domain if the table is full, by forgetting the
/// oldest domain that is gone (destroyed; its end was reported). Until then
/// a gone domain stays known, so its console history can still be found.
pub fn make_room(started: &mut Domains) -> bool {
    make_room_for(started, 1)
}

/// Makes room for `count` more domains (an HVM guest comes with its device
/// model), forgetting the oldest gone domains as needed.
pub fn make_room_for(started: &mut Domains, count: usize) -> bool {
    while started.len() + count > MAX {
        let gone = started
            .iter()
            .position(|s| s.reported && hc::domain_info(s.id).is_err());
        let Some(i) = gone else { return false };
        let s = started.remove(i);
        if let Some(link) = s.control {
            // Its grant can end only once unmapped; if not, the page stays shared.
            let _ = link.release();
        }
    }
    true
}

/// A domain's image: a boot module or bundle file, or an uploaded one, which
/// is freed once no domain may need it again.
#[derive(Clone)]
pub enum Image {
    Boot(&'static [u8]),
    Uploaded(Rc<[u8]>),
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
    /// The image it was started from (kept for restarts).
    pub image: Image,
    /// What it was started from: its policies, devices and hardware.
    pub config: Config,
    /// The backend serving its console, once connected.
    pub console_backend: Option<DomainId>,
    /// The backend serving its disks, once connected.
    pub block_backend: Option<DomainId>,
    /// The backend serving its network interfaces, once connected.
    pub net_backend: Option<DomainId>,
    /// Which of its disks and interfaces are connected (bit N: device N).
    pub block_devices: u32,
    pub net_devices: u32,
    /// Interfaces taken away while it ran (bit N: `config.vifs[N]`): they
    /// keep their place so the others keep their numbers.
    pub detached_vifs: u32,
    /// The backends its command line named when it was launched, followed
    /// through their restarts: a device it has not connected yet is told
    /// of a restart too (it would find the named one dead).
    pub named: NamedBackends,
    /// Its rings that a backend serves (for `toolstack ring list`).
    pub rings: heapless::Vec<RingRecord, 16>,
    /// Its crashes and restarts (kept across restarts).
    pub supervisor: crate::supervise::Supervisor,
    /// When a crashed domain is to be started again (ns since boot).
    pub restart_at: Option<u64>,
    /// The heartbeat period it was asked for (`heartbeat`) while it is
    /// still watched for them, and when it started.
    pub heartbeat_ns: Option<u64>,
    pub started_at: u64,
    /// When an unanswered shutdown request turns into a destroy (ns since boot).
    pub shutdown_deadline: Option<u64>,
    /// It is this HVM guest's device model: its console is the guest's.
    pub device_model_of: Option<DomainId>,
}

impl Started {
    /// Its configuration without the interfaces taken away from it: what a
    /// restart or a save starts it again from (their MACs were pinned when
    /// one was taken away, so the rest keep theirs).
    pub fn config_to_start_again(&self) -> Config {
        if self.detached_vifs == 0 {
            return self.config.clone();
        }
        let mut c = (*self.config).clone();
        let mut i = 0;
        c.vifs.retain(|_| {
            let keep = self.detached_vifs & (1 << i) == 0;
            i += 1;
            keep
        });
        Rc::new(c)
    }

    /// Its disks as device bits (bit N: xvd(a+N)).
    pub fn disk_bits(&self) -> u32 {
        self.config
            .disks
            .iter()
            .filter_map(|d| domain_config::config::vdev_index(&d.vdev))
            .fold(0, |bits, i| bits | 1u32.checked_shl(i).unwrap_or(0))
    }

    /// Its interfaces as device bits (bit N: `config.vifs[N]`, if still its).
    pub fn vif_bits(&self) -> u32 {
        let all = 1u32
            .checked_shl(self.config.vifs.len() as u32)
            .map_or(u32::MAX, |b| b - 1);
        all & !self.detached_vifs
    }

    /// Whether interface `vif` is (still) its.
    pub fn has_vif(&self, vif: usize) -> bool {
        vif < self.config.vifs.len() && (vif >= 32 || self.detached_vifs & (1 << vif) == 0)
    }

    /// What to do now that it stopped: `on_crash`, `on_reboot` or `on_poweroff`.
    pub fn policy(&self, crashed: bool, rebooted: bool) -> OnEvent {
        match (crashed, rebooted) {
            (true, _) => self.config.on_crash,
            (false, true) => self.config.on_reboot,
            (false, false) => self.config.on_poweroff,
        }
    }
}

/// A ring a frontend connected to a backend: where `ring list` looks.
#[derive(Clone, Copy, Debug)]
pub struct RingRecord {
    pub backend: DomainId,
    pub kind: u32,
    pub index: u32,
    /// console, block, net-tx, net-rx.
    pub device: &'static str,
    /// The frontend's grant of the ring's first page (its header).
    pub gref: u32,
    /// The frontend's event port for the device (its notifications).
    pub port: u16,
    /// The response and request-taken indices at the last look, and since
    /// when (ns) neither moved while requests were owed an answer: how
    /// `ring list` finds a stuck backend.
    pub seen_rsp_prod: u32,
    pub seen_req_cons: u32,
    pub progress_at: u64,
}

/// The live console driver domain (the one whose role is `console`), if any.
pub fn console_dom(started: &[Started]) -> Option<DomainId> {
    started
        .iter()
        .find(|s| s.config.role == Some(domain_config::Role::Console) && !s.reported)
        .map(|s| s.id)
}

/// The MAC of interface `i` of `c`: its own, or a stable one made from the
/// domain's name.
pub fn vif_mac(c: &DomainConfig, i: usize, v: &domain_config::config::Vif) -> net::Mac {
    v.mac
        .unwrap_or_else(|| net::generated_mac(&c.name, i as u8))
}

static POWER_OFF: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Asks for the machine to be powered off once every domain has stopped
/// (the main loop, `watch.rs`, does it).
pub fn request_power_off() {
    POWER_OFF.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// Whether a power-off was asked for.
pub fn power_off_requested() -> bool {
    POWER_OFF.load(core::sync::atomic::Ordering::Relaxed)
}

/// The power-off failed: the request is dropped.
pub fn forget_power_off() {
    POWER_OFF.store(false, core::sync::atomic::Ordering::Relaxed);
}

/// The backends a domain's command line named (`console=`, `blk=`, `net=`),
/// as their current instances.
#[derive(Clone, Copy, Debug, Default)]
pub struct NamedBackends {
    pub console: Option<DomainId>,
    pub block: Option<DomainId>,
    pub net: Option<DomainId>,
}
