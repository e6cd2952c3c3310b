//! The progress bar of `domain create` (upload), `save` and `restore`, drawn on
//! standard error when it is a terminal and the work has taken long enough to be worth one.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Uploads quicker than this show no bar.
const SHOW_AFTER: Duration = Duration::from_millis(300);
/// Cells of the bar.
const WIDTH: usize = 30;

/// One line of the bar: `[#####.....]  45%  460/1024 KiB`.
pub fn line(sent: usize, total: usize) -> String {
    let total = total.max(1);
    let sent = sent.min(total);
    let filled = sent * WIDTH / total;
    format!(
        "[{}{}] {:>3}% {:>6}/{} KiB",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        sent * 100 / total,
        sent / 1024,
        total / 1024
    )
}

/// Draws the bar as an upload goes.
pub struct Bar {
    started: Instant,
    shown: bool,
    enabled: bool,
    /// What it shows: "uploading", "saving", ...
    label: &'static str,
}

impl Bar {
    pub fn new() -> Bar {
        Bar::labelled("uploading")
    }

    pub fn labelled(label: &'static str) -> Bar {
        Bar {
            started: Instant::now(),
            shown: false,
            enabled: std::io::stderr().is_terminal(),
            label,
        }
    }

    /// Called after each piece.
    pub fn update(&mut self, sent: usize, total: usize) {
        if !self.enabled || (!self.shown && self.started.elapsed() < SHOW_AFTER) {
            return;
        }
        self.shown = true;
        let mut err = std::io::stderr();
        let _ = write!(err, "\r{} {}", self.label, line(sent, total));
        if sent >= total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn the_bar_fills_with_the_upload() {
        assert_eq!(
            line(0, 2048),
            format!("[{}]   0%      0/2 KiB", ".".repeat(30))
        );
        assert_eq!(
            line(1024, 2048),
            format!("[{}{}]  50%      1/2 KiB", "#".repeat(15), ".".repeat(15))
        );
        assert_eq!(
            line(4096, 2048),
            format!("[{}] 100%      2/2 KiB", "#".repeat(30))
        );
        // An empty image is not a division by zero.
        assert_eq!(
            line(0, 0),
            format!("[{}]   0%      0/0 KiB", ".".repeat(30))
        );
    }
}
