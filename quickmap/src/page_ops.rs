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
    pub fn zero_page<H: HeldPage + ?Sized>(&self, page: &H) {
        self.map(page).zero();
    }

    /// `pmap_copy_page`: copy all of `source` to `destination`, both mapped at once
    /// (two windows of this CPU, or the direct map).
    pub fn copy_page<S: HeldPage + ?Sized, D: HeldPage + ?Sized>(
        &self,
        source: &S,
        destination: &D,
    ) {
        let from = self.map(source);
        let to = self.map(destination);
        to.copy_from(&from);
    }

    /// Copy `src` into the run of `pages`, starting `offset` bytes into the run: the
    /// write half of FreeBSD's `uiomove_fromphys` and of a busdma bounce copy for an
    /// unmapped buffer. One page is mapped at a time.
    pub fn copy_to_pages<H: HeldPage>(&self, pages: &[H], offset: usize, src: &[u8]) {
        for_each_piece(
            pages.len(),
            offset,
            src.len(),
            |page, page_offset, at, len| {
                self.map(&pages[page])
                    .write(page_offset, &src[at..at + len]);
            },
        );
    }

    /// Copy from the run of `pages`, starting `offset` bytes into it, into `dst`: the
    /// read half of `uiomove_fromphys` and of a busdma bounce copy.
    pub fn copy_from_pages<H: HeldPage>(&self, pages: &[H], offset: usize, dst: &mut [u8]) {
        for_each_piece(
            pages.len(),
            offset,
            dst.len(),
            |page, page_offset, at, len| {
                self.map(&pages[page])
                    .read(page_offset, &mut dst[at..at + len]);
            },
        );
    }
}

/// Split `len` bytes at `offset` of a run of `pages` pages into per-page pieces:
/// `piece(page index, offset in page, offset in the buffer, length)`.
fn for_each_piece(
    pages: usize,
    offset: usize,
    len: usize,
    mut piece: impl FnMut(usize, usize, usize, usize),
) {
    let run = pages * PAGE_SIZE;
    if offset > run || len > run - offset {
        rules::copy_outside_pages(offset, len, pages);
    }
    let mut done = 0;
    while done < len {
        let position = offset + done;
        let page_offset = position % PAGE_SIZE;
        let this_len = (PAGE_SIZE - page_offset).min(len - done);
        piece(position / PAGE_SIZE, page_offset, done, this_len);
        done += this_len;
    }
}

#[cfg(test)]
mod tests {
    use super::for_each_piece;
    use crate::addr::PAGE_SIZE;

    #[test]
    fn pieces_cover_the_range_once_and_stay_in_their_pages() {
        for (offset, len) in [
            (0, 0),
            (0, PAGE_SIZE),
            (100, PAGE_SIZE),
            (PAGE_SIZE - 1, 2),
            (5, 3 * PAGE_SIZE - 5),
        ] {
            let mut next = 0;
            for_each_piece(3, offset, len, |page, page_offset, at, piece_len| {
                assert_eq!(at, next, "pieces are contiguous");
                assert_eq!(page * PAGE_SIZE + page_offset, offset + at);
                assert!(page_offset + piece_len <= PAGE_SIZE);
                next += piece_len;
            });
            assert_eq!(next, len);
        }
    }

    #[test]
    #[should_panic(expected = "copy outside the pages: 2 bytes at offset 8191 run past 2 page(s)")]
    fn a_copy_past_the_run_is_refused() {
        for_each_piece(2, 2 * PAGE_SIZE - 1, 2, |_, _, _, _| {});
    }
}
