//! The DMA window's pages: which are in use (pure, host-tested).
//!
//! Owns: handing out runs of contiguous pages of the window the control
//! domain gave this domain (`dma=KiB`, mapped at `layout::DMA_WINDOW`), for
//! virtqueues and bounce buffers, and taking them back.

/// Pages of the window this pool can track (4 MiB).
pub const MAX_PAGES: usize = 1024;

/// Which pages of the window are in use.
pub struct Pool {
    used: [bool; MAX_PAGES],
    pages: usize,
}

impl Pool {
    /// A pool over the first `pages` pages of the window.
    pub const fn new(pages: usize) -> Pool {
        Pool {
            used: [false; MAX_PAGES],
            pages: if pages < MAX_PAGES { pages } else { MAX_PAGES },
        }
    }

    /// Pages of the window it hands out.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Takes the lowest run of `count` free pages; returns the first page's index.
    pub fn take(&mut self, count: usize) -> Option<usize> {
        if count == 0 || count > self.pages {
            return None;
        }
        let mut run = 0;
        for i in 0..self.pages {
            run = if self.used[i] { 0 } else { run + 1 };
            if run == count {
                let first = i + 1 - count;
                self.used[first..=i].fill(true);
                return Some(first);
            }
        }
        None
    }

    /// Gives back `count` pages from `first`.
    pub fn give(&mut self, first: usize, count: usize) {
        let end = first.saturating_add(count).min(self.pages);
        if first < end {
            self.used[first..end].fill(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_hole_is_reused_and_oversized_asks_fail() {
        let mut p = Pool::new(8);
        assert_eq!(p.take(3), Some(0));
        assert_eq!(p.take(2), Some(3));
        p.give(0, 3);
        assert_eq!(p.take(2), Some(0));
        assert_eq!(p.take(3), Some(5));
        assert_eq!(p.take(1), Some(2));
        assert_eq!(p.take(1), None);
        assert_eq!(p.take(0), None);
        assert_eq!(Pool::new(4).take(5), None);
    }
}
