//! The protocols carried on rings, one module each, each versioned.
//!
//! Every message fits a ring slot (`ring::SLOT_BYTES`), is `#[repr(C)]` plain
//! bytes with compile-time size checks, and carries an opaque `id` that the
//! answer echoes (answers may come out of order). A receiver copies a message
//! out of the ring once and validates it with the message's `check` before
//! acting on it.

pub mod block;
pub mod console;
pub mod control;
pub mod net;
