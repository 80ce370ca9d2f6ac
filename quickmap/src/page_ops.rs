//! Whole-page work built on windows: what kernels use quick mappings for.

use crate::addr::PAGE_SIZE;
use crate::invalidation::Invalidation;
use crate::mmu::Mmu;
use crate::page::HeldPage;
use crate::platform::Platform;
use crate::quick_map::QuickMap;
use crate::rules;

impl<P: Platform, M: Mmu, const N: usize, I: Invalidation> QuickMap<P, M, N, I> {
    /// `pmap_zero_page`: fill `page` with zeroes.
    ///
    /// # Panics
    ///
    /// As [`map`](Self::map) does.
    #[track_caller]
    pub fn zero_page<H: HeldPage + ?Sized>(&self, page: &H) {
        self.map(page).zero();
    }

    /// `pmap_copy_page`: copy all of `source` to `destination`, both mapped at once
    /// (two windows of this CPU, or the direct map).
    ///
    /// # Panics
    ///
    /// On an instance with fewer than 2 windows per CPU, always (`copy_page needs two
    /// windows`), whatever the pages; otherwise as [`map`](Self::map) does.
    #[track_caller]
    pub fn copy_page<S: HeldPage + ?Sized, D: HeldPage + ?Sized>(
        &self,
        source: &S,
        destination: &D,
    ) {
        if N < 2 {
            rules::copy_page_needs_two_windows(N);
        }
        let from = self.map(source);
        let to = self.map(destination);
        to.copy_from(&from);
    }

    /// Copy `src` into the run of `pages`, starting `offset` bytes into the run: the
    /// write half of FreeBSD's `uiomove_fromphys` and of a busdma bounce copy for an
    /// unmapped buffer. One page is mapped at a time.
    ///
    /// # Panics
    ///
    /// With `quickmap: copy outside the pages` when the bytes run past the end of the
    /// run, before any is copied; otherwise as [`map`](Self::map) does.
    #[track_caller]
    pub fn copy_to_pages<H: HeldPage>(&self, pages: &[H], offset: usize, src: &[u8]) {
        // A loop, not a closure: a closure would report its own line, not the caller's.
        for piece in Pieces::new(pages.len(), offset, src.len()) {
            self.map(&pages[piece.page])
                .write(piece.page_offset, &src[piece.at..piece.at + piece.len]);
        }
    }

    /// Copy from the run of `pages`, starting `offset` bytes into it, into `dst`: the
    /// read half of `uiomove_fromphys` and of a busdma bounce copy.
    ///
    /// # Panics
    ///
    /// As [`copy_to_pages`](Self::copy_to_pages) does.
    #[track_caller]
    pub fn copy_from_pages<H: HeldPage>(&self, pages: &[H], offset: usize, dst: &mut [u8]) {
        for piece in Pieces::new(pages.len(), offset, dst.len()) {
            self.map(&pages[piece.page])
                .read(piece.page_offset, &mut dst[piece.at..piece.at + piece.len]);
        }
    }
}

/// One page's part of a copy to or from a run of pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    /// Index of the page in the run.
    page: usize,
    /// Offset in that page.
    page_offset: usize,
    /// Offset in the caller's buffer.
    at: usize,
    /// Bytes.
    len: usize,
}

/// `len` bytes at `offset` of a run of pages, split into per-page [`Piece`]s.
struct Pieces {
    offset: usize,
    len: usize,
    done: usize,
}

impl Pieces {
    /// The pieces of `len` bytes at `offset` of a run of `pages` pages; refused (a
    /// panic at the caller's line) when they run past the end of the run.
    #[track_caller]
    fn new(pages: usize, offset: usize, len: usize) -> Pieces {
        let run = pages * PAGE_SIZE;
        if offset > run || len > run - offset {
            rules::copy_outside_pages(offset, len, pages);
        }
        Pieces {
            offset,
            len,
            done: 0,
        }
    }
}

impl Iterator for Pieces {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.done == self.len {
            return None;
        }
        let position = self.offset + self.done;
        let page_offset = position % PAGE_SIZE;
        let len = (PAGE_SIZE - page_offset).min(self.len - self.done);
        let piece = Piece {
            page: position / PAGE_SIZE,
            page_offset,
            at: self.done,
            len,
        };
        self.done += len;
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::Pieces;
    use crate::addr::PAGE_SIZE;

    #[test]
    fn pieces_cover_the_range_once_and_stay_in_their_pages() {
        for (offset, len) in [
            (0, 0),
            (0, PAGE_SIZE),
            (100, PAGE_SIZE),
            (PAGE_SIZE - 1, 2),
            (5, 3 * PAGE_SIZE - 5),
            (3 * PAGE_SIZE, 0),
        ] {
            let mut next = 0;
            for piece in Pieces::new(3, offset, len) {
                assert_eq!(piece.at, next, "pieces are contiguous");
                assert_eq!(
                    piece.page * PAGE_SIZE + piece.page_offset,
                    offset + piece.at
                );
                assert!(piece.len > 0, "no empty piece");
                assert!(piece.page_offset + piece.len <= PAGE_SIZE);
                next += piece.len;
            }
            assert_eq!(next, len);
        }
    }

    #[test]
    #[should_panic(expected = "copy outside the pages: 2 bytes at offset 8191 run past 2 page(s)")]
    fn a_copy_past_the_run_is_refused() {
        Pieces::new(2, 2 * PAGE_SIZE - 1, 2);
    }

    #[test]
    #[should_panic(expected = "copy outside the pages: 0 bytes at offset 8193 run past 2 page(s)")]
    fn an_offset_past_the_run_is_refused() {
        Pieces::new(2, 2 * PAGE_SIZE + 1, 0);
    }
}
