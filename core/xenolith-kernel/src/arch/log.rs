//! Where the hardware layer's messages go.
//!
//! Owns: one sink, set once by the kernel's console as it starts (the
//! console is above `arch` and `arch` names none of it), so that the few
//! messages of this layer (an AP that did not start, how the machine is
//! being reset) reach the same outputs as every other line. Before the
//! console starts, they are dropped.

use core::fmt;
use spin::Once;

/// The console's two ways of printing.
pub struct Sink {
    /// An ordinary line.
    pub print: fn(fmt::Arguments<'_>),
    /// From a path that may have interrupted the console (panic, reset).
    pub print_panic: fn(fmt::Arguments<'_>),
}

static SINK: Once<Sink> = Once::new();

/// Sets where messages go (the console, once, as it starts).
pub fn set(sink: Sink) {
    SINK.call_once(|| sink);
}

/// Prints formatted text.
pub fn print(args: fmt::Arguments<'_>) {
    if let Some(s) = SINK.get() {
        (s.print)(args);
    }
}

/// Prints from a path that may have interrupted the console.
pub fn print_panic(args: fmt::Arguments<'_>) {
    if let Some(s) = SINK.get() {
        (s.print_panic)(args);
    }
}
