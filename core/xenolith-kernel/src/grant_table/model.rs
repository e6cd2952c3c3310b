//! The model test of grants and the domain lifecycle: random sequences of
//! grant, end, map, unmap, a domain dying (still owning its memory until
//! its last CPU leaves it) and its teardown, new domains in freed slots,
//! across four domains over fake address spaces and a fake frame
//! allocator. After every step: no frame is both free and mapped anywhere,
//! none is freed twice, every live grant's map count equals the window
//! slots mapping it, every window slot's mapping is in its space and in
//! its devices' reach (an IOMMU's) and nothing else is; at the end, with
//! every domain gone, every frame is free again. The fake allocator
//! refuses to free a frame a device can still reach, at the moment it is
//! freed: so the order (devices first, then the frame) is checked too.

use super::*;
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::vec::Vec;

/// What devices can reach: (domain index, window slot) -> frame.
type DeviceReach = Rc<RefCell<BTreeMap<(usize, u64), u64>>>;

const DOMAINS: usize = 4;
const PAGES: u64 = 4;
const GRANTS: usize = 8;
const SLOTS_USED: u64 = 6;

#[derive(Default)]
struct FakeSpace {
    /// va -> (frame, writable, own)
    pages: BTreeMap<u64, (u64, bool, bool)>,
}

impl Space<FakeFrames> for FakeSpace {
    fn translate(&self, va: u64) -> Option<(Frame, bool, bool)> {
        self.pages
            .get(&va)
            .map(|&(f, w, own)| (Frame::for_test(f), w, own))
    }
    fn map_foreign(&mut self, _: &mut FakeFrames, va: u64, frame: Frame, writable: bool) -> bool {
        self.pages
            .insert(va, (frame.addr(), writable, false))
            .is_none()
    }
    fn unmap(&mut self, _: &mut FakeFrames, va: u64) {
        self.pages.remove(&va);
    }
}

#[derive(Default)]
struct FakeFrames {
    allocated: BTreeSet<u64>,
    next: u64,
    devices: DeviceReach,
}

impl FakeFrames {
    fn allocate(&mut self) -> u64 {
        self.next += PAGE_SIZE;
        self.allocated.insert(self.next);
        self.next
    }
}

impl Frames for FakeFrames {
    fn free(&mut self, frame: Frame) {
        let frame = frame.addr();
        assert!(
            self.allocated.remove(&frame),
            "frame {frame:#x} freed twice, or never allocated"
        );
        assert!(
            !self.devices.borrow().values().any(|&f| f == frame),
            "frame {frame:#x} freed while a device can still reach it"
        );
    }
}

struct FakeDomain {
    id: DomainId,
    grants: Vec<Option<Grant>>,
    window: Vec<Option<ForeignMap>>,
    space: FakeSpace,
    dying: bool,
}

#[derive(Default)]
struct World {
    slots: Vec<Option<FakeDomain>>,
    generations: Vec<u16>,
    devices: DeviceReach,
}

impl Domains<FakeFrames> for World {
    type Space = FakeSpace;
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
    fn slots(&self) -> usize {
        self.slots.len()
    }
    fn id(&self, index: usize) -> Option<DomainId> {
        self.slots.get(index)?.as_ref().map(|d| d.id)
    }
    fn grants(&self, index: usize) -> Option<&[Option<Grant>]> {
        self.slots.get(index)?.as_ref().map(|d| &d.grants[..])
    }
    fn window(&self, index: usize) -> Option<&[Option<ForeignMap>]> {
        self.slots.get(index)?.as_ref().map(|d| &d.window[..])
    }
    fn parts(&mut self, index: usize) -> Option<Parts<'_, FakeSpace>> {
        self.slots.get_mut(index)?.as_mut().map(|d| Parts {
            grants: &mut d.grants[..],
            window: &mut d.window[..],
            space: &mut d.space,
        })
    }
    fn shootdown(&self, _index: usize) {}
    fn device_map(
        &mut self,
        _: &mut FakeFrames,
        index: usize,
        slot: u64,
        frame: Frame,
        _: bool,
    ) -> bool {
        // Slot 5 cannot be had for devices (the failure path is walked too).
        if slot == 5 {
            return false;
        }
        self.devices
            .borrow_mut()
            .insert((index, slot), frame.addr())
            .is_none()
    }
    fn device_unmap(&mut self, index: usize, slot: u64) {
        self.devices.borrow_mut().remove(&(index, slot));
    }
}

impl World {
    /// Four domains, each with its own pages.
    fn new() -> (World, FakeFrames) {
        let mut frames = FakeFrames::default();
        let mut w = World {
            slots: (0..DOMAINS).map(|_| None).collect(),
            generations: std::vec![0; DOMAINS],
            devices: frames.devices.clone(),
        };
        for i in 0..DOMAINS {
            w.spawn(&mut frames, i);
        }
        (w, frames)
    }

    /// A new domain in slot `i` with its own pages (the last read-only).
    fn spawn(&mut self, frames: &mut FakeFrames, i: usize) {
        if self.slots[i].is_some() {
            return;
        }
        self.generations[i] += 1;
        let mut space = FakeSpace::default();
        for p in 0..PAGES {
            space
                .pages
                .insert(p * PAGE_SIZE, (frames.allocate(), p + 1 < PAGES, true));
        }
        self.slots[i] = Some(FakeDomain {
            id: DomainId::new(i as u16, self.generations[i]),
            grants: std::vec![None; GRANTS],
            window: std::vec![None; GRANT_SLOTS as usize],
            space,
            dying: false,
        });
    }

    /// Teardown as `lifecycle::destroy` does it: grants first, then the
    /// address space frees the pages it still maps as its own.
    fn reap(&mut self, frames: &mut FakeFrames, i: usize) {
        if self.slots[i].is_none() {
            return;
        }
        release_all(self, frames, i);
        let d = self.slots[i].take().expect("present");
        for (_, (frame, _, own)) in d.space.pages {
            if own {
                frames.free(Frame::for_test(frame));
            }
        }
    }

    fn live(&self, i: usize) -> bool {
        self.slots[i].as_ref().is_some_and(|d| !d.dying)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Grant {
        by: usize,
        to: usize,
        page: u64,
        readonly: bool,
    },
    End {
        by: usize,
        gref: u64,
    },
    Map {
        by: usize,
        from: usize,
        gref: u64,
        slot: u64,
        write: bool,
    },
    Unmap {
        by: usize,
        slot: u64,
    },
    Die {
        who: usize,
    },
    Reap {
        who: usize,
    },
    Spawn {
        who: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DOMAINS;
    prop_oneof![
        4 => (d.clone(), d.clone(), 0..PAGES, any::<bool>())
            .prop_map(|(by, to, page, readonly)| Op::Grant { by, to, page, readonly }),
        2 => (d.clone(), 0..GRANTS as u64).prop_map(|(by, gref)| Op::End { by, gref }),
        5 => (d.clone(), d.clone(), 0..GRANTS as u64, 0..SLOTS_USED, any::<bool>())
            .prop_map(|(by, from, gref, slot, write)| Op::Map { by, from, gref, slot, write }),
        3 => (d.clone(), 0..SLOTS_USED).prop_map(|(by, slot)| Op::Unmap { by, slot }),
        1 => d.clone().prop_map(|who| Op::Die { who }),
        1 => d.clone().prop_map(|who| Op::Reap { who }),
        1 => d.prop_map(|who| Op::Spawn { who }),
    ]
}

fn apply(w: &mut World, frames: &mut FakeFrames, op: &Op) {
    match *op {
        // Only a running domain makes calls.
        Op::Grant {
            by,
            to,
            page,
            readonly,
        } if w.live(by) => {
            let to = w.id(to).unwrap_or(DomainId::new(to as u16, 0));
            let _ = create::<FakeFrames, _>(w, by, to, page * PAGE_SIZE, readonly);
        }
        Op::End { by, gref } if w.live(by) => {
            let _ = end::<FakeFrames, _>(w, by, gref);
        }
        Op::Map {
            by,
            from,
            gref,
            slot,
            write,
        } if w.live(by) => {
            let from = w.id(from).unwrap_or(DomainId::new(from as u16, 0));
            let _ = map(w, frames, by, from, gref, slot, write);
        }
        Op::Unmap { by, slot } if w.live(by) => {
            let _ = unmap(w, frames, by, slot);
        }
        Op::Die { who } => {
            if let Some(d) = w.slots[who].as_mut() {
                d.dying = true;
            }
        }
        Op::Reap { who } if w.slots[who].as_ref().is_some_and(|d| d.dying) => w.reap(frames, who),
        Op::Spawn { who } => w.spawn(frames, who),
        _ => {}
    }
}

fn check(w: &World, frames: &FakeFrames) -> Result<(), TestCaseError> {
    for (i, d) in w.slots.iter().enumerate() {
        let Some(d) = d else { continue };
        for (va, (frame, _, _)) in &d.space.pages {
            prop_assert!(
                frames.allocated.contains(frame),
                "domain {i} maps freed frame {frame:#x} at {va:#x}"
            );
        }
        for (slot, m) in d.window.iter().enumerate() {
            let reach = w.devices.borrow().get(&(i, slot as u64)).copied();
            prop_assert_eq!(
                reach,
                m.map(|m| m.frame.addr()),
                "devices of {} slot {}",
                i,
                slot
            );
            if let Some(m) = m {
                let va = GRANT_WINDOW + slot as u64 * PAGE_SIZE;
                prop_assert_eq!(d.space.translate(va).map(|t| t.0), Some(m.frame));
            }
        }
        for (gref, g) in d.grants.iter().enumerate() {
            let Some(g) = g else { continue };
            let mapped = w
                .slots
                .iter()
                .flatten()
                .flat_map(|o| o.window.iter().flatten())
                .filter(|m| m.granter == d.id && m.gref as usize == gref)
                .count();
            prop_assert_eq!(g.maps as usize, mapped, "grant {} of domain {}", gref, i);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_frame_is_ever_free_while_mapped(ops in proptest::collection::vec(op(), 1..120)) {
        let (mut w, mut frames) = World::new();
        for op in &ops {
            apply(&mut w, &mut frames, op);
            check(&w, &frames)?;
        }
        for i in 0..DOMAINS {
            if let Some(d) = w.slots[i].as_mut() {
                d.dying = true;
            }
        }
        for i in 0..DOMAINS {
            w.reap(&mut frames, i);
            check(&w, &frames)?;
        }
        prop_assert!(frames.allocated.is_empty(), "frames leaked: {:?}", frames.allocated);
    }

    /// Finding 1's sequence, every time: A grants one page twice to B, B
    /// maps both, A dies, B unmaps one: the frame must stay B's.
    #[test]
    fn a_page_granted_twice_outlives_its_dead_granter(first_unmapped in 0u64..2) {
        let (mut w, mut frames) = World::new();
        let b = w.id(1).expect("B");
        let a = w.id(0).expect("A");
        let r0 = create::<FakeFrames, _>(&mut w, 0, b, 0, false).expect("grant 1");
        let r1 = create::<FakeFrames, _>(&mut w, 0, b, 0, false).expect("grant 2");
        map(&mut w, &mut frames, 1, a, u64::from(r0), 0, true).expect("map 1");
        map(&mut w, &mut frames, 1, a, u64::from(r1), 1, true).expect("map 2");
        w.slots[0].as_mut().expect("A").dying = true;
        w.reap(&mut frames, 0);
        unmap(&mut w, &mut frames, 1, first_unmapped).expect("unmap");
        check(&w, &frames)?;
        unmap(&mut w, &mut frames, 1, 1 - first_unmapped).expect("unmap");
        check(&w, &frames)?;
    }
}
