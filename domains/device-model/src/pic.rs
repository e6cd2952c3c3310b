//! The PC's two 8259A interrupt controllers (master at 0x20, slave at 0xa0
//! cascaded on the master's line 2), as Linux drives them when the machine
//! has no I/O APIC: the initialisation words, masks, end of interrupt and
//! the request and in-service registers.
//!
//! Owns: which line the guest should be interrupted for next. The vector
//! is presented at once (the kernel injects it when the guest can take
//! it), so the line goes in service then. Edge-triggered, as ISA lines
//! are, except lines the edge/level control registers (ELCR, 0x4d0 and
//! 0x4d1) make level-triggered, as Linux makes the PCI devices' lines:
//! their request follows the line, and a line still high at end of
//! interrupt is requested again. Pure: host-tested.

#[derive(Clone, Copy, Default)]
struct Chip {
    irr: u8,
    isr: u8,
    imr: u8,
    base: u8,
    /// 0: operating; 2–4: expecting that initialisation word.
    init_step: u8,
    expects_icw4: bool,
    read_isr: bool,
    /// Level-triggered lines (the ELCR), and which of them are high now.
    elcr: u8,
    high: u8,
}

impl Chip {
    fn command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            // ICW1: start over.
            *self = Chip {
                init_step: 2,
                expects_icw4: value & 1 != 0,
                elcr: self.elcr,
                high: self.high,
                ..Chip::default()
            };
        } else if value & 0x18 == 0x08 {
            // OCW3: which register a command read returns.
            if value & 2 != 0 {
                self.read_isr = value & 1 != 0;
            }
        } else if value & 0x20 != 0 {
            // OCW2 with EOI: specific (level in bits 0–2) or the highest.
            let line = if value & 0x40 != 0 {
                Some(value & 7)
            } else {
                (0..8).find(|&l| self.isr & 1 << l != 0)
            };
            if let Some(l) = line {
                self.isr &= !(1 << l);
                // A level-triggered line still high asks again.
                self.irr |= self.elcr & self.high & 1 << l;
            }
        }
    }

    fn data(&mut self, value: u8) {
        match self.init_step {
            2 => {
                self.base = value & 0xf8;
                self.init_step = 3;
            }
            3 => self.init_step = if self.expects_icw4 { 4 } else { 0 },
            4 => self.init_step = 0,
            _ => self.imr = value,
        }
    }

    /// The line to raise next: requested, unmasked, and above every line in service.
    fn next(&self) -> Option<u8> {
        let ready = self.irr & !self.imr;
        let line = (0..8).find(|&l| ready & 1 << l != 0)?;
        let blocked = (0..=line).any(|l| self.isr & 1 << l != 0);
        (!blocked).then_some(line)
    }
}

#[derive(Default)]
pub struct Pic {
    chips: [Chip; 2],
}

impl Pic {
    pub fn new() -> Pic {
        let mut p = Pic::default();
        p.chips[0].imr = 0xff;
        p.chips[1].imr = 0xff;
        p
    }

    /// A write to 0x20/0x21 (`chip` 0) or 0xa0/0xa1 (`chip` 1).
    pub fn write(&mut self, chip: usize, data_port: bool, value: u8) {
        let c = &mut self.chips[chip & 1];
        if data_port {
            c.data(value)
        } else {
            c.command(value)
        }
    }

    pub fn read(&self, chip: usize, data_port: bool) -> u8 {
        let c = &self.chips[chip & 1];
        match (data_port, c.read_isr) {
            (true, _) => c.imr,
            (false, true) => c.isr,
            (false, false) => c.irr,
        }
    }

    /// An edge on ISA line `irq` (0–15).
    pub fn raise(&mut self, irq: u8) {
        self.chips[(irq as usize >> 3) & 1].irr |= 1 << (irq & 7);
    }

    /// The level of a device's line (`irq` 0–15): a rising edge requests
    /// it; on a level-triggered line the request also ends when the line
    /// falls.
    pub fn set_line(&mut self, irq: u8, high: bool) {
        let c = &mut self.chips[(irq as usize >> 3) & 1];
        let bit = 1 << (irq & 7);
        if high && c.high & bit == 0 {
            c.irr |= bit;
        }
        if !high && c.elcr & bit != 0 {
            c.irr &= !bit;
        }
        if high {
            c.high |= bit;
        } else {
            c.high &= !bit;
        }
    }

    /// The edge/level control register of `chip` (0x4d0, 0x4d1).
    pub fn elcr(&self, chip: usize) -> u8 {
        self.chips[chip & 1].elcr
    }

    pub fn set_elcr(&mut self, chip: usize, value: u8) {
        // Lines 0, 1, 2 of the master and 8, 13 of the slave are always edge.
        let fixed = if chip & 1 == 0 { 0x07 } else { 0x21 };
        self.chips[chip & 1].elcr = value & !fixed;
    }

    /// The vector to present to the guest now, if any: the line goes in
    /// service (and the cascade line too, for the slave's).
    pub fn take(&mut self) -> Option<u8> {
        let master_ready = self.chips[0].next();
        if let Some(line) = self.chips[1].next() {
            // The slave's request goes through the master's line 2.
            self.chips[0].irr |= 1 << 2;
            if self.chips[0].next() == Some(2) {
                let s = &mut self.chips[1];
                s.irr &= !(1 << line);
                s.isr |= 1 << line;
                let vector = s.base + line;
                let m = &mut self.chips[0];
                m.irr &= !(1 << 2);
                m.isr |= 1 << 2;
                return Some(vector);
            }
            self.chips[0].irr &= !(1 << 2);
        }
        let line = master_ready.filter(|&l| l != 2)?;
        let m = &mut self.chips[0];
        m.irr &= !(1 << line);
        m.isr |= 1 << line;
        Some(m.base + line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's `init_8259A`: ICW1-4 on both, then masks.
    fn as_linux_sets_it_up() -> Pic {
        let mut p = Pic::new();
        for (chip, base, icw3) in [(0, 0x30, 0x04), (1, 0x38, 0x02)] {
            p.write(chip, false, 0x11);
            p.write(chip, true, base);
            p.write(chip, true, icw3);
            p.write(chip, true, 0x01);
        }
        p.write(0, true, 0xfb);
        p.write(1, true, 0xff);
        p
    }

    #[test]
    fn a_masked_line_waits_and_an_unmasked_one_is_presented_once_until_eoi() {
        let mut p = as_linux_sets_it_up();
        p.raise(4);
        assert_eq!(p.take(), None, "masked");
        p.write(0, true, 0xeb);
        assert_eq!(p.take(), Some(0x34));
        p.raise(4);
        assert_eq!(p.take(), None, "in service");
        p.write(0, false, 0x0b);
        assert_eq!(p.read(0, false), 1 << 4, "ISR by OCW3");
        p.write(0, false, 0x20);
        assert_eq!(p.take(), Some(0x34));
        assert_eq!(p.read(0, true), 0xeb);
    }

    #[test]
    fn a_level_line_is_requested_while_high_and_again_after_eoi_if_still_high() {
        let mut p = as_linux_sets_it_up();
        p.set_elcr(1, 1 << 2); // line 10, as Linux's elcr_set_level_irq
        assert_eq!(p.elcr(1), 1 << 2);
        p.write(1, true, 0xfb);
        // Linux's handle_level_irq: mask and EOI before the handler runs.
        p.set_line(10, true);
        assert_eq!(p.take(), Some(0x3a));
        p.write(1, true, 0xff);
        p.write(1, false, 0x20);
        p.write(0, false, 0x20);
        // Still high at EOI: requested again (masked for now) ...
        assert_eq!(p.read(1, false), 1 << 2);
        // ... until the handler reads the device's status and it falls.
        p.set_line(10, false);
        p.write(1, true, 0xfb);
        assert_eq!(p.take(), None, "no spurious interrupt once low");
        p.set_line(10, true);
        assert_eq!(p.take(), Some(0x3a));
    }

    #[test]
    fn the_slaves_lines_come_through_the_cascade() {
        let mut p = as_linux_sets_it_up();
        p.write(1, true, 0xfd); // line 9
        p.raise(9);
        assert_eq!(p.take(), Some(0x39));
        p.write(1, false, 0x20);
        p.write(0, false, 0x20);
        p.raise(9);
        assert_eq!(p.take(), Some(0x39));
    }
}
