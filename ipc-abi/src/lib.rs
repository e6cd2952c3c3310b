//! The one definition of every interface between the Xenolith kernel, its
//! driver domains, guests and the toolstack: hypercall numbers and argument
//! registers, typed error codes, shared-memory ring layouts and protocols.
//!
//! Nothing of it is repeated elsewhere. Filled by the domains issue (hypercall
//! ABI) and the rings issue (rings and device protocols).

#![no_std]
