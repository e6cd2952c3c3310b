//! A management request copied out of the decoder's buffer, so it can be
//! answered while more bytes arrive (strings and data become owned).

extern crate alloc;
use alloc::string::String;
use alloc::vec::Vec;
use domain_runtime::ipc_abi::mgmt::messages::Request;

/// A request copied out of the receive buffer.
pub(super) enum OwnedRequest {
    Plain(Request<'static>),
    DebugKeys {
        keys: String,
    },
    RingDump {
        frontend: u32,
        device: String,
        index: u32,
    },
    CreateBegin {
        config: String,
        image_len: usize,
        paused: bool,
    },
    Upload {
        offset: usize,
        data: Vec<u8>,
    },
    CreateCommit,
    Dmesg {
        from: u64,
    },
    ConsoleWrite {
        domain: u32,
        data: Vec<u8>,
    },
    RestoreData {
        data: Vec<u8>,
    },
    Rename {
        domain: u32,
        name: String,
    },
    /// `BlockAttach` (a disk entry), `BlockDetach` (a vdev), `NetAttach`
    /// (a vif entry) or `NetDetach` (a MAC), with its text.
    Hotplug {
        domain: u32,
        op: crate::hotplug::Op,
        text: String,
    },
}

impl From<Request<'_>> for OwnedRequest {
    fn from(r: Request<'_>) -> OwnedRequest {
        match r {
            Request::Hello { version } => OwnedRequest::Plain(Request::Hello { version }),
            Request::List => OwnedRequest::Plain(Request::List),
            Request::HostInfo => OwnedRequest::Plain(Request::HostInfo),
            Request::Pause { domain } => OwnedRequest::Plain(Request::Pause { domain }),
            Request::Crash { domain } => OwnedRequest::Plain(Request::Crash { domain }),
            Request::DebugKeys { keys } => OwnedRequest::DebugKeys { keys: keys.into() },
            Request::RingList => OwnedRequest::Plain(Request::RingList),
            Request::Trace { cpu, from } => OwnedRequest::Plain(Request::Trace { cpu, from }),
            Request::Pin { domain, vcpu, cpus } => {
                OwnedRequest::Plain(Request::Pin { domain, vcpu, cpus })
            }
            Request::CoreBegin { domain } => OwnedRequest::Plain(Request::CoreBegin { domain }),
            Request::Devices { domain } => OwnedRequest::Plain(Request::Devices { domain }),
            Request::MemSet { domain, kib } => OwnedRequest::Plain(Request::MemSet { domain, kib }),
            Request::MemMax { domain, kib } => OwnedRequest::Plain(Request::MemMax { domain, kib }),
            Request::VcpuSet { domain, count } => {
                OwnedRequest::Plain(Request::VcpuSet { domain, count })
            }
            Request::CoreEnd { domain } => OwnedRequest::Plain(Request::CoreEnd { domain }),
            Request::VcpuList => OwnedRequest::Plain(Request::VcpuList),
            Request::Rename { domain, name } => OwnedRequest::Rename {
                domain,
                name: name.into(),
            },
            Request::BlockAttach { domain, spec } => OwnedRequest::Hotplug {
                domain,
                op: crate::hotplug::Op::BlockAttach,
                text: spec.into(),
            },
            Request::BlockDetach { domain, vdev } => OwnedRequest::Hotplug {
                domain,
                op: crate::hotplug::Op::BlockDetach,
                text: vdev.into(),
            },
            Request::NetAttach { domain, vif } => OwnedRequest::Hotplug {
                domain,
                op: crate::hotplug::Op::NetAttach,
                text: vif.into(),
            },
            Request::NetDetach { domain, mac } => OwnedRequest::Hotplug {
                domain,
                op: crate::hotplug::Op::NetDetach,
                text: mac.into(),
            },
            Request::SetSched {
                domain,
                weight,
                cap,
            } => OwnedRequest::Plain(Request::SetSched {
                domain,
                weight,
                cap,
            }),
            Request::RingDump {
                frontend,
                device,
                index,
            } => OwnedRequest::RingDump {
                frontend,
                device: device.into(),
                index,
            },
            Request::Unpause { domain } => OwnedRequest::Plain(Request::Unpause { domain }),
            Request::Destroy { domain } => OwnedRequest::Plain(Request::Destroy { domain }),
            Request::Info { domain } => OwnedRequest::Plain(Request::Info { domain }),
            Request::Shutdown { domain, reboot } => {
                OwnedRequest::Plain(Request::Shutdown { domain, reboot })
            }
            Request::HostShutdown => OwnedRequest::Plain(Request::HostShutdown),
            Request::CreateBegin {
                config,
                image_len,
                paused,
            } => OwnedRequest::CreateBegin {
                config: config.into(),
                image_len: image_len as usize,
                paused,
            },
            Request::Upload { offset, data } => OwnedRequest::Upload {
                offset: offset as usize,
                data: data.to_vec(),
            },
            Request::CreateCommit => OwnedRequest::CreateCommit,
            Request::Dmesg { from } => OwnedRequest::Dmesg { from },
            Request::ConsoleRead { domain, offset } => {
                OwnedRequest::Plain(Request::ConsoleRead { domain, offset })
            }
            Request::ConsoleWrite { domain, data } => OwnedRequest::ConsoleWrite {
                domain,
                data: data.to_vec(),
            },
            Request::RestoreData { data } => OwnedRequest::RestoreData {
                data: data.to_vec(),
            },
            Request::SaveBegin { domain } => OwnedRequest::Plain(Request::SaveBegin { domain }),
            Request::SaveRead {
                domain,
                cursor,
                count,
            } => OwnedRequest::Plain(Request::SaveRead {
                domain,
                cursor,
                count,
            }),
            Request::SaveEnd { domain, keep } => {
                OwnedRequest::Plain(Request::SaveEnd { domain, keep })
            }
            Request::SaveCancel { domain } => OwnedRequest::Plain(Request::SaveCancel { domain }),
            Request::RestoreBegin => OwnedRequest::Plain(Request::RestoreBegin),
            Request::RestoreCommit { paused } => {
                OwnedRequest::Plain(Request::RestoreCommit { paused })
            }
        }
    }
}
