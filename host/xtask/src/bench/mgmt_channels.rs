//! What a bench needs to measure the management protocol over both its
//! channels side by side in one run: COM2, and TCP through drvdom-net
//! (`ipc_abi::mgmt_net`).
//!
//! Owns: domain 0's module line serving both, drvdom-net's module, the
//! keys for the boot bundle, the NIC's forwarded port, and connecting a
//! client over either channel.

use crate::iso::{self, Module};
use crate::qemu::{free_port, Forward};
use std::path::Path;

/// The management protocol over COM2 and TCP.
pub struct Channels {
    /// Domain 0's module, serving both.
    pub dom0: Module,
    /// drvdom-net's module (the NIC at 00:05.0).
    pub net_driver: Module,
    /// The keys, for the boot bundle.
    pub bundle_files: Vec<(&'static str, Vec<u8>)>,
    /// The host port forwarded to domain 0's management port.
    pub forward: Forward,
    identity: toolstack::network::Identity,
}

impl Channels {
    pub fn new(domains: &Path, dir: &Path) -> Result<Channels, String> {
        let keys = crate::mgmt_keys::ensure(dir)?;
        let endpoint = iso::MGMT_ENDPOINT;
        Ok(Channels {
            dom0: Module {
                path: crate::build::domain(domains, "toolstack-domain"),
                cmdline: format!("toolstack-domain mgmt=com2 {endpoint}"),
            },
            net_driver: iso::net_driver_module(domains),
            bundle_files: keys.bundle_files(),
            forward: Forward {
                udp: false,
                host_port: free_port()?,
                guest: endpoint.address.map(|b| b.to_string()).join("."),
                guest_port: endpoint.port,
            },
            identity: keys.client,
        })
    }

    /// What domain 0 prints once the TCP channel is up.
    pub fn ready_line(&self) -> String {
        format!(
            "toolstack: serving the management protocol on {} port {}",
            self.forward.guest, self.forward.guest_port
        )
    }

    /// A client over TCP.
    pub fn connect_tcp(&self) -> Result<toolstack::Client, String> {
        let address = format!("127.0.0.1:{}", self.forward.host_port);
        toolstack::Client::connect_tcp(&address, &self.identity).map_err(|e| e.to_string())
    }
}
