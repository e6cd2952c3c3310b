//! The model test of event channels and the domain lifecycle: random
//! sequences of open-unbound, bind, close, a domain dying (its ports stay
//! open until it is torn down) and its teardown (every port closed), and
//! new domains in freed slots, across four domains. After every step each
//! bound pair is symmetric (a port bound to a domain that exists is
//! pointed back at by that domain's port); at the end, with every domain
//! torn down, no port is open.

use super::*;
use proptest::prelude::*;
use std::vec::Vec;

const DOMAINS: usize = 4;
/// Ports the model uses (the table has more).
const PORTS_USED: u64 = 6;

struct FakeDomain {
    id: DomainId,
    ports: Ports,
    dying: bool,
}

struct World {
    slots: Vec<Option<FakeDomain>>,
    generations: Vec<u16>,
}

impl Domains for World {
    fn lookup(&self, id: DomainId) -> Result<usize, Error> {
        match self.slots.get(id.index() as usize) {
            Some(Some(d)) if d.id == id && !d.dying => Ok(id.index() as usize),
            _ => Err(Error::DeadDomain),
        }
    }
    fn existing(&self, id: DomainId) -> Option<usize> {
        match self.slots.get(id.index() as usize) {
            Some(Some(d)) if d.id == id => Some(id.index() as usize),
            _ => None,
        }
    }
    fn id(&self, index: usize) -> Option<DomainId> {
        self.slots.get(index)?.as_ref().map(|d| d.id)
    }
    fn ports(&self, index: usize) -> Option<&Ports> {
        self.slots.get(index)?.as_ref().map(|d| &d.ports)
    }
    fn ports_mut(&mut self, index: usize) -> Option<&mut Ports> {
        self.slots.get_mut(index)?.as_mut().map(|d| &mut d.ports)
    }
}

impl World {
    fn new() -> World {
        let mut w = World {
            slots: (0..DOMAINS).map(|_| None).collect(),
            generations: std::vec![0; DOMAINS],
        };
        for i in 0..DOMAINS {
            w.spawn(i);
        }
        w
    }

    fn spawn(&mut self, i: usize) {
        if self.slots[i].is_none() {
            self.generations[i] += 1;
            self.slots[i] = Some(FakeDomain {
                id: DomainId::new(i as u16, self.generations[i]),
                ports: Ports::new(),
                dying: false,
            });
        }
    }

    /// Teardown as `lifecycle::destroy` does it: every port closed.
    fn reap(&mut self, i: usize) {
        let Some(d) = self.slots[i].as_ref() else {
            return;
        };
        let open: Vec<u16> = d.ports.iter().map(|(p, _)| p).collect();
        for p in open {
            close(self, i, u64::from(p)).expect("an open port closes");
        }
        self.slots[i] = None;
    }

    fn live(&self, i: usize) -> bool {
        self.slots[i].as_ref().is_some_and(|d| !d.dying)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Open { by: usize, for_: usize },
    Bind { by: usize, to: usize, port: u64 },
    Close { by: usize, port: u64 },
    Die { who: usize },
    Reap { who: usize },
    Spawn { who: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DOMAINS;
    prop_oneof![
        3 => (d.clone(), d.clone()).prop_map(|(by, for_)| Op::Open { by, for_ }),
        4 => (d.clone(), d.clone(), 1..PORTS_USED).prop_map(|(by, to, port)| Op::Bind { by, to, port }),
        3 => (d.clone(), 1..PORTS_USED).prop_map(|(by, port)| Op::Close { by, port }),
        1 => d.clone().prop_map(|who| Op::Die { who }),
        1 => d.clone().prop_map(|who| Op::Reap { who }),
        1 => d.prop_map(|who| Op::Spawn { who }),
    ]
}

fn apply(w: &mut World, op: &Op) {
    match *op {
        // Only a running domain makes calls.
        Op::Open { by, for_ } if w.live(by) && w.slots[for_].is_some() => {
            let _ = alloc_unbound(w, by, for_);
        }
        Op::Bind { by, to, port } if w.live(by) => {
            let to = w.id(to).unwrap_or(DomainId::new(to as u16, 0));
            let _ = bind(w, by, to, port);
        }
        Op::Close { by, port } if w.live(by) => {
            let _ = close(w, by, port);
        }
        Op::Die { who } => {
            if let Some(d) = w.slots[who].as_mut() {
                d.dying = true;
            }
        }
        Op::Reap { who } if w.slots[who].as_ref().is_some_and(|d| d.dying) => w.reap(who),
        Op::Spawn { who } => w.spawn(who),
        _ => {}
    }
}

fn check(w: &World) -> Result<(), TestCaseError> {
    for d in w.slots.iter().flatten() {
        for (p, s) in d.ports.iter() {
            if let PortState::Interdomain { remote, port } = s {
                let Some(r) = w.existing(remote) else {
                    // The remote is gone: its teardown would have unbound us.
                    return Err(TestCaseError::fail(std::format!(
                        "{}:{p} bound to {remote}, which is gone",
                        d.id
                    )));
                };
                let back = w.ports(r).and_then(|t| t.get(u64::from(port)).ok());
                prop_assert_eq!(
                    back,
                    Some(PortState::Interdomain {
                        remote: d.id,
                        port: p
                    }),
                    "{}:{} bound to {}:{}",
                    d.id,
                    p,
                    remote,
                    port
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn bound_ports_always_point_at_each_other(ops in proptest::collection::vec(op(), 1..150)) {
        let mut w = World::new();
        for op in &ops {
            apply(&mut w, op);
            check(&w)?;
        }
        for i in 0..DOMAINS {
            if let Some(d) = w.slots[i].as_mut() {
                d.dying = true;
            }
        }
        for i in 0..DOMAINS {
            w.reap(i);
            check(&w)?;
        }
        prop_assert!(w.slots.iter().all(Option::is_none));
    }

    /// A closes its end of a pair with B while B is dying, then opens the
    /// same port number for C: B's teardown must leave it alone.
    #[test]
    fn a_dying_peer_never_undoes_a_reused_port(_x in 0u8..1) {
        let mut w = World::new();
        let (b, c) = (w.id(1).expect("B"), w.id(2).expect("C"));
        let pb = alloc_unbound(&mut w, 1, 0).expect("B opens for A");
        let pa = bind(&mut w, 0, b, u64::from(pb)).expect("A binds");
        w.slots[1].as_mut().expect("B").dying = true;
        close(&mut w, 0, u64::from(pa)).expect("A closes");
        let pc = alloc_unbound(&mut w, 2, 0).expect("C opens for A");
        let again = bind(&mut w, 0, c, u64::from(pc)).expect("A binds to C");
        prop_assert_eq!(again, pa);
        w.reap(1);
        prop_assert_eq!(
            w.ports(0).and_then(|t| t.get(u64::from(pa)).ok()),
            Some(PortState::Interdomain { remote: c, port: pc })
        );
        check(&w)?;
    }
}
