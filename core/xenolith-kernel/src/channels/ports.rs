//! One domain's event-channel port table.
//!
//! Owns: the state of each port (free, unbound for a named remote, bound to a
//! remote port, bound to a VIRQ) and allocation of the lowest free port. The
//! cross-domain operations (bind, send, close) live in `domain::events`.
//! Port 0 is never allocated, so a zeroed variable is never a valid port.

use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::Error;
use ipc_abi::shared::{Virq, PORTS};

/// What a port is connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    Free,
    /// Waiting for `remote` to bind to it.
    Unbound {
        remote: DomainId,
    },
    /// Connected to `port` of `remote`.
    Interdomain {
        remote: DomainId,
        port: u16,
    },
    Virq(Virq),
    /// A physical IRQ.
    Pirq(u8),
}

/// The ports of one domain.
pub struct Ports {
    state: [PortState; PORTS],
    /// Notifications sent from each port since it was opened (for `ring list`).
    sent: [u32; PORTS],
}

impl Ports {
    pub const fn new() -> Ports {
        Ports {
            state: [PortState::Free; PORTS],
            sent: [0; PORTS],
        }
    }

    /// Counts a notification sent from `port`.
    pub fn count_send(&mut self, port: u16) {
        if let Some(n) = self.sent.get_mut(port as usize) {
            *n = n.wrapping_add(1);
        }
    }

    /// Notifications sent from `port` since it was opened.
    pub fn sent(&self, port: u16) -> u32 {
        self.sent.get(port as usize).copied().unwrap_or(0)
    }

    /// The state of an open port; `BadPort` for port 0, out of range or free.
    pub fn get(&self, port: u64) -> Result<PortState, Error> {
        if port == 0 || port >= PORTS as u64 {
            return Err(Error::BadPort);
        }
        match self.state[port as usize] {
            PortState::Free => Err(Error::BadPort),
            s => Ok(s),
        }
    }

    /// Opens the lowest free port in state `s`.
    pub fn open(&mut self, s: PortState) -> Result<u16, Error> {
        let free = (1..PORTS)
            .find(|&p| self.state[p] == PortState::Free)
            .ok_or(Error::OutOfResources)?;
        self.state[free] = s;
        self.sent[free] = 0;
        Ok(free as u16)
    }

    /// Changes an open port's state.
    pub fn set(&mut self, port: u16, s: PortState) {
        if let Some(slot) = self.state.get_mut(port as usize) {
            *slot = s;
        }
    }

    /// Frees a port.
    pub fn free(&mut self, port: u16) {
        self.set(port, PortState::Free);
    }

    /// Open ports.
    pub fn open_count(&self) -> usize {
        self.state.iter().filter(|s| **s != PortState::Free).count()
    }

    /// Every open port and its state.
    pub fn iter(&self) -> impl Iterator<Item = (u16, PortState)> + '_ {
        self.state
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != PortState::Free)
            .map(|(p, s)| (p as u16, *s))
    }

    /// The port bound to a VIRQ, if any.
    pub fn virq_port(&self, v: Virq) -> Option<u16> {
        self.iter()
            .find(|(_, s)| *s == PortState::Virq(v))
            .map(|(p, _)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_port_first_and_port_zero_never() {
        let mut p = Ports::new();
        let a = p.open(PortState::Virq(Virq::Timer)).unwrap();
        let b = p
            .open(PortState::Unbound {
                remote: DomainId(3),
            })
            .unwrap();
        assert_eq!((a, b), (1, 2));
        p.free(1);
        assert_eq!(p.open(PortState::Virq(Virq::ConsoleLog)).unwrap(), 1);
        assert_eq!(p.get(0), Err(Error::BadPort));
    }

    #[test]
    fn out_of_range_and_free_ports_are_bad() {
        let p = Ports::new();
        for port in [0, 1, PORTS as u64, u64::MAX] {
            assert_eq!(p.get(port), Err(Error::BadPort));
        }
    }

    #[test]
    fn the_table_fills_up_with_an_error() {
        let mut p = Ports::new();
        for _ in 1..PORTS {
            p.open(PortState::Virq(Virq::Timer)).unwrap();
        }
        assert_eq!(
            p.open(PortState::Virq(Virq::Timer)),
            Err(Error::OutOfResources)
        );
        assert_eq!(p.open_count(), PORTS - 1);
    }
}
