//! The instructions an HVM guest's driver uses to reach device memory
//! (Linux's `readl`/`writel` and their widths: `mov` between a register or
//! an immediate and memory), decoded from their bytes: how long the
//! instruction is, how wide the access, and which register or value it
//! moves. The address is not decoded: the nested page fault gives it.
//!
//! Owns: nothing but the decoding. Anything else (a string move, a
//! read-modify-write, an 8-bit register above BL without REX) is `None`,
//! and the guest is stopped rather than guessed at. Pure: host-tested
//! against hostile bytes.

/// What a decoded access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// Memory into general register `reg` (0 RAX … 15 R15).
    Load { reg: u8 },
    /// General register `reg` into memory.
    Store { reg: u8 },
    /// An immediate into memory.
    StoreImmediate(u64),
}

/// A decoded device-memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Bytes of the instruction (RIP moves on by this much).
    pub len: u8,
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u8,
    pub what: Move,
}

/// Decodes the instruction at the start of `bytes` (up to 15 of them),
/// in 64-bit mode when `long` (else 32-bit protected mode).
pub fn decode(bytes: &[u8], long: bool) -> Option<Access> {
    let mut at = 0usize;
    let mut operand16 = false;
    let mut rex = 0u8;
    // Prefixes: operand size, and (64-bit mode) one REX right before the
    // opcode. Segment overrides, LOCK and REP are not what a driver's
    // device access uses.
    loop {
        let b = *bytes.get(at)?;
        match b {
            0x66 => operand16 = true,
            0x40..=0x4f if long => {
                rex = b;
                at += 1;
                break;
            }
            _ => break,
        }
        at += 1;
        if at > 4 {
            return None;
        }
    }
    let opcode = *bytes.get(at)?;
    at += 1;
    let wide = rex & 0x08 != 0;
    let size = |byte: bool| -> u8 {
        if byte {
            1
        } else if wide {
            8
        } else if operand16 {
            2
        } else {
            4
        }
    };
    let modrm = *bytes.get(at)?;
    at += 1;
    let reg = (modrm >> 3) & 7 | if rex & 0x04 != 0 { 8 } else { 0 };
    at += memory_operand_len(&bytes[at..], modrm)?;
    let (size, what) = match opcode {
        0x88 | 0x8a if rex == 0 && reg >= 4 => return None, // AH..BH
        0x88 => (1, Move::Store { reg }),
        0x89 => (size(false), Move::Store { reg }),
        0x8a => (1, Move::Load { reg }),
        0x8b => (size(false), Move::Load { reg }),
        0xc6 | 0xc7 if (modrm >> 3) & 7 != 0 => return None,
        0xc6 => {
            let v = *bytes.get(at)?;
            at += 1;
            (1, Move::StoreImmediate(u64::from(v)))
        }
        0xc7 => {
            let size = size(false);
            let n = if size == 2 { 2 } else { 4 };
            let raw = bytes.get(at..at + n)?;
            at += n;
            let v = raw.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b));
            // A 32-bit immediate is sign-extended to a 64-bit store.
            let v = if size == 8 {
                v as u32 as i32 as i64 as u64
            } else {
                v
            };
            (size, Move::StoreImmediate(v))
        }
        _ => return None,
    };
    if at > 15 {
        return None;
    }
    Some(Access {
        len: at as u8,
        size,
        what,
    })
}

/// Bytes after the ModRM byte that name its memory operand (SIB and
/// displacement); `None` for a register operand (not a memory access).
fn memory_operand_len(rest: &[u8], modrm: u8) -> Option<usize> {
    let (md, rm) = (modrm >> 6, modrm & 7);
    if md == 3 {
        return None;
    }
    let mut len = 0;
    if rm == 4 {
        let sib = *rest.first()?;
        len += 1;
        // No base, 32-bit displacement.
        if md == 0 && sib & 7 == 5 {
            len += 4;
        }
    } else if md == 0 && rm == 5 {
        // RIP-relative (64-bit) or an absolute 32-bit address.
        len += 4;
    }
    len += match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    (rest.len() >= len).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_readl_and_writel_decode() {
        // mov %eax,(%rdx)   mov (%rdx),%eax
        assert_eq!(
            decode(&[0x89, 0x02], true),
            Some(Access {
                len: 2,
                size: 4,
                what: Move::Store { reg: 0 }
            })
        );
        assert_eq!(
            decode(&[0x8b, 0x02], true),
            Some(Access {
                len: 2,
                size: 4,
                what: Move::Load { reg: 0 }
            })
        );
        // mov %r9d,0xc(%rax)   mov 0x8(%r12),%esi (SIB)
        assert_eq!(
            decode(&[0x44, 0x89, 0x48, 0x0c], true),
            Some(Access {
                len: 4,
                size: 4,
                what: Move::Store { reg: 9 }
            })
        );
        assert_eq!(
            decode(&[0x41, 0x8b, 0x74, 0x24, 0x08], true),
            Some(Access {
                len: 5,
                size: 4,
                what: Move::Load { reg: 6 }
            })
        );
        // movw %ax,(%rdx); movb %al,(%rdx); mov %rax,0x100(%rdi)
        assert_eq!(
            decode(&[0x66, 0x89, 0x02], true).map(|a| (a.len, a.size)),
            Some((3, 2))
        );
        assert_eq!(
            decode(&[0x88, 0x02], true).map(|a| (a.len, a.size)),
            Some((2, 1))
        );
        assert_eq!(
            decode(&[0x48, 0x89, 0x87, 0, 1, 0, 0], true).map(|a| (a.len, a.size)),
            Some((7, 8))
        );
    }

    #[test]
    fn immediates_are_read_and_sign_extended_for_64_bits() {
        // movl $0x1,0x10(%rax)
        assert_eq!(
            decode(&[0xc7, 0x40, 0x10, 1, 0, 0, 0], true),
            Some(Access {
                len: 7,
                size: 4,
                what: Move::StoreImmediate(1)
            })
        );
        // movq $-1,(%rax)
        assert_eq!(
            decode(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], true).map(|a| a.what),
            Some(Move::StoreImmediate(u64::MAX))
        );
        // movw $0x1234,(%rax)
        assert_eq!(
            decode(&[0x66, 0xc7, 0x00, 0x34, 0x12], true),
            Some(Access {
                len: 5,
                size: 2,
                what: Move::StoreImmediate(0x1234)
            })
        );
    }

    #[test]
    fn what_is_not_a_plain_move_to_or_from_memory_is_refused() {
        assert_eq!(decode(&[0x89, 0xc0], true), None, "register to register");
        assert_eq!(decode(&[0x01, 0x02], true), None, "add");
        assert_eq!(decode(&[0xa5], true), None, "movs");
        assert_eq!(decode(&[0x88, 0x22], true), None, "mov %ah,(%rdx)");
        assert_eq!(
            decode(&[0xc7, 0x08, 0, 0, 0, 0], true),
            None,
            "/1 is not mov"
        );
        assert_eq!(decode(&[0x89], true), None, "cut short");
        assert_eq!(
            decode(&[0x66, 0x66, 0x66, 0x66, 0x66, 0x89, 0x02], true),
            None
        );
        // Random bytes never panic.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut b = [0u8; 15];
            for x in b.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *x = seed as u8;
            }
            let n = (seed >> 60) as usize;
            if let Some(a) = decode(&b[..n], seed & 1 == 0) {
                assert!(usize::from(a.len) <= n && a.len <= 15);
            }
        }
    }
}
