//! Finds the `\_S5` sleep-type values in a DSDT without an AML interpreter.
//!
//! Owns: a bounded scan of the DSDT bytes for `Name(_S5_, Package(){a, b, ...})`
//! and decoding of the first two integers (SLP_TYPa, SLP_TYPb). Written by hand
//! because a full AML interpreter (the `aml` crate) would be the largest part of
//! the kernel, and power-off needs only these two bytes. Pure: host-tested.
//!
//! Never: reads outside the slice, whatever the table holds.

const NAME_OP: u8 = 0x08;
const ROOT_PREFIX: u8 = b'\\';
const PACKAGE_OP: u8 = 0x12;

/// Decodes one AML integer of the kinds firmware uses for sleep types.
fn integer(bytes: &[u8], at: usize) -> Option<(u8, usize)> {
    match *bytes.get(at)? {
        0x00 => Some((0, at + 1)),                   // ZeroOp
        0x01 => Some((1, at + 1)),                   // OneOp
        0x0a => Some((*bytes.get(at + 1)?, at + 2)), // BytePrefix
        0x0b => Some((*bytes.get(at + 1)?, at + 3)), // WordPrefix: low byte is enough
        _ => None,
    }
}

/// `(SLP_TYPa, SLP_TYPb)` for the S5 (soft-off) state, if the DSDT declares it.
pub fn find_s5(dsdt: &[u8]) -> Option<(u8, u8)> {
    let at = dsdt.windows(4).enumerate().find_map(|(i, w)| {
        if w != b"_S5_" {
            return None;
        }
        let named = match i {
            0 => false,
            1 => dsdt[0] == NAME_OP,
            _ => dsdt[i - 1] == NAME_OP || (dsdt[i - 1] == ROOT_PREFIX && dsdt[i - 2] == NAME_OP),
        };
        (named && dsdt.get(i + 4) == Some(&PACKAGE_OP)).then_some(i + 5)
    })?;
    // PkgLength: bits 7:6 of the lead byte say how many more bytes follow.
    let lead = *dsdt.get(at)?;
    let after_len = at + 1 + (lead >> 6) as usize;
    let _num_elements = dsdt.get(after_len)?;
    let (a, next) = integer(dsdt, after_len + 1)?;
    let (b, _) = integer(dsdt, next)?;
    Some((a, b))
}

#[cfg(test)]
mod tests {
    use super::find_s5;

    #[test]
    fn qemu_style_byte_prefixed_package() {
        let mut t = vec![0u8; 40];
        t.extend_from_slice(&[
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0, 0,
        ]);
        assert_eq!(find_s5(&t), Some((5, 5)));
    }

    #[test]
    fn root_prefixed_name_and_zero_ops() {
        let t = [
            0x10, 0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x05, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(find_s5(&t), Some((0, 0)));
    }

    #[test]
    fn a_string_that_is_not_a_name_is_skipped() {
        let t = [
            b'_', b'S', b'5', b'_', 0x12, 0x00, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x04, 0x02,
            0x01, 0x0a, 0x07,
        ];
        assert_eq!(find_s5(&t), Some((1, 7)));
    }

    #[test]
    fn truncated_tables_give_none() {
        let full = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x0a, 0x05, 0x0a, 0x05,
        ];
        for n in 0..full.len() {
            assert_eq!(find_s5(&full[..n]), None, "cut at {n}");
        }
        assert_eq!(find_s5(&[]), None);
    }

    #[test]
    fn unknown_integer_encoding_gives_none() {
        let t = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x0c, 0, 0, 0, 0,
        ];
        assert_eq!(find_s5(&t), None);
    }
}
