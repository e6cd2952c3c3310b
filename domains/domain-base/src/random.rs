//! Random bytes from the CPU's generator (RDRAND), for keys and the
//! one-time values of cryptographic handshakes.
//!
//! Owns: finding whether the CPU has RDRAND and drawing from it, retrying
//! as Intel's and AMD's guides advise when it reports no value ready.

/// Why no random bytes came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The CPU has no RDRAND.
    NoRdrand,
    /// RDRAND kept failing (a broken or exhausted generator).
    Failing,
}

/// Whether the CPU has RDRAND (CPUID leaf 1, ECX bit 30).
pub fn available() -> bool {
    let leaf = core::arch::x86_64::__cpuid(1);
    leaf.ecx & (1 << 30) != 0
}

/// One 64-bit value, retried up to ten times (the vendors' advice).
fn next() -> Result<u64, Unavailable> {
    for _ in 0..10 {
        let mut value = 0u64;
        // SAFETY: called only after `available` saw RDRAND in CPUID; the
        // instruction writes the one register it is given and the flags.
        let ok = unsafe { rdrand(&mut value) };
        if ok {
            return Ok(value);
        }
    }
    Err(Unavailable::Failing)
}

#[target_feature(enable = "rdrand")]
fn rdrand(value: &mut u64) -> bool {
    core::arch::x86_64::_rdrand64_step(value) == 1
}

/// Fills `out` with random bytes.
pub fn fill(out: &mut [u8]) -> Result<(), Unavailable> {
    if !available() {
        return Err(Unavailable::NoRdrand);
    }
    for chunk in out.chunks_mut(8) {
        let bytes = next()?.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    Ok(())
}
