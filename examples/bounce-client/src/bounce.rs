//! busdma-style bounce buffers over quickmap.
//!
//! A device that cannot reach a driver's buffer (above its DMA address limit, say) gets
//! bounce pages it can reach instead, and the buffer is copied into them before the
//! device reads them and out of them after the device wrote them: FreeBSD's
//! `busdma_bounce.c`, at `bus_dmamap_sync(BUS_DMASYNC_PREWRITE)` and
//! `bus_dmamap_sync(BUS_DMASYNC_POSTREAD)`. A kernel that does not keep every bounce page
//! mapped reaches each with `pmap_quick_enter_page` for the copy; here, quickmap.
//!
//! - [`BounceMap::sync_prewrite`] copies the driver's buffer into the bounce pages
//!   through the guard API ([`QuickMap::map`]), one page at a time;
//! - [`BounceMap::sync_postread`] copies them back into the driver's buffer through the
//!   FreeBSD API ([`QuickMap::enter`] and [`QuickMap::remove`]);
//! - [`BounceMap::write_segments`] writes the device's [`DmaSegment`] descriptors for
//!   the bounce pages into a ring page, with [`Mapping::write_obj`](quickmap::Mapping::write_obj);
//! - [`BounceMap::try_sync_prewrite`] and [`SyncQueue`] are for a context that may find
//!   its CPU's windows all in use (an interrupt handler whose thread holds them): the
//!   copy is an error there, not a panic, and the queue puts it off to a context that
//!   holds none.
//!
//! Every method that maps is `#[track_caller]`, with loops rather than closures on the
//! way to quickmap, so a broken rule reports the driver's line, not this file's.

use core::fmt;

use quickmap::{EnterError, HeldPage, Invalidation, Mmu, Platform, QuickMap, PAGE_SIZE};

use crate::descriptor::DmaSegment;

/// The bounce pages of one transfer of `len` bytes: page `i` holds bytes
/// `i * PAGE_SIZE ..` of the driver's buffer.
#[derive(Debug)]
pub struct BounceMap<'p, H> {
    pages: &'p [H],
    len: usize,
}

/// Why a [`BounceMap`] was refused: its pages cannot hold the transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooFewPages {
    /// Bytes of the transfer.
    pub len: usize,
    /// Bounce pages given.
    pub pages: usize,
}

impl fmt::Display for TooFewPages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bounce: {} byte(s) do not fit in {} bounce page(s); give at least {}",
            self.len,
            self.pages,
            self.len.div_ceil(PAGE_SIZE)
        )
    }
}

impl core::error::Error for TooFewPages {}

impl<'p, H: HeldPage> BounceMap<'p, H> {
    /// Bounce pages for a transfer of `len` bytes.
    ///
    /// # Errors
    ///
    /// [`TooFewPages`] unless `len <= pages.len() * PAGE_SIZE`.
    pub fn new(pages: &'p [H], len: usize) -> Result<Self, TooFewPages> {
        if len > pages.len() * PAGE_SIZE {
            return Err(TooFewPages {
                len,
                pages: pages.len(),
            });
        }
        Ok(BounceMap { pages, len })
    }

    /// Bytes of the transfer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the transfer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bounce pages.
    pub fn pages(&self) -> &'p [H] {
        self.pages
    }

    /// `BUS_DMASYNC_PREWRITE`: copy the driver's buffer `src` into the bounce pages, for
    /// the device to read. One page mapped at a time, with [`QuickMap::map`].
    ///
    /// # Panics
    ///
    /// Unless `src.len()` is the transfer's length; otherwise as [`QuickMap::map`] does
    /// (with the rule's name, at the caller's line).
    #[track_caller]
    pub fn sync_prewrite<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
        &self,
        quickmap: &QuickMap<P, M, N, I>,
        src: &[u8],
    ) {
        self.check_len(src.len());
        for (page, chunk) in self.pages.iter().zip(src.chunks(PAGE_SIZE)) {
            quickmap.map(page).write(0, chunk);
        }
    }

    /// `BUS_DMASYNC_POSTREAD`: copy the bounce pages, which the device wrote, back into
    /// the driver's buffer `dst`. One page at a time, the FreeBSD way:
    /// [`QuickMap::enter`], a copy through the backend, [`QuickMap::remove`].
    ///
    /// # Panics
    ///
    /// Unless `dst.len()` is the transfer's length; otherwise as [`QuickMap::enter`]
    /// does.
    #[track_caller]
    pub fn sync_postread<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
        &self,
        quickmap: &QuickMap<P, M, N, I>,
        dst: &mut [u8],
    ) {
        self.check_len(dst.len());
        for (page, chunk) in self.pages.iter().zip(dst.chunks_mut(PAGE_SIZE)) {
            let va = quickmap.enter(page);
            // SAFETY: `va .. va + PAGE_SIZE` maps `page` until the remove below, and the
            // chunk is at most a page long.
            unsafe { quickmap.mmu().read_bytes(va, chunk) };
            // SAFETY: `va` came from `enter` just above, in this context, and is not
            // used again.
            unsafe { quickmap.remove(va) };
        }
    }

    /// [`sync_prewrite`](Self::sync_prewrite) for a context that may find every
    /// window of its CPU in use: that is an error, not a panic, and preemption is as it
    /// was. Pages copied before the error stay copied, which is harmless: a retry
    /// copies every page again.
    ///
    /// # Errors
    ///
    /// quickmap's [`EnterError`] when a page cannot be mapped for want of a window.
    ///
    /// # Panics
    ///
    /// As [`sync_prewrite`](Self::sync_prewrite), except when windows run out.
    #[track_caller]
    pub fn try_sync_prewrite<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
        &self,
        quickmap: &QuickMap<P, M, N, I>,
        src: &[u8],
    ) -> Result<(), EnterError> {
        self.check_len(src.len());
        for (page, chunk) in self.pages.iter().zip(src.chunks(PAGE_SIZE)) {
            quickmap.try_map(page)?.write(0, chunk);
        }
        Ok(())
    }

    /// Write one [`DmaSegment`] per bounce page of the transfer into `ring` from
    /// descriptor `first` on (bus address = physical address: no IOMMU), the last one
    /// flagged [`DmaSegment::LAST`]; returns how many were written.
    ///
    /// # Panics
    ///
    /// With quickmap's `access outside the page` when the descriptors run past the
    /// ring page; otherwise as [`QuickMap::map`] does.
    #[track_caller]
    pub fn write_segments<R, P, M, const N: usize, I>(
        &self,
        quickmap: &QuickMap<P, M, N, I>,
        ring: &R,
        first: usize,
    ) -> usize
    where
        R: HeldPage + ?Sized,
        P: Platform,
        M: Mmu,
        I: Invalidation,
    {
        let ring = quickmap.map(ring);
        let segments = self.len.div_ceil(PAGE_SIZE);
        for (index, page) in self.pages[..segments].iter().enumerate() {
            let segment = DmaSegment {
                addr: page.phys_addr().0,
                len: (self.len - index * PAGE_SIZE).min(PAGE_SIZE) as u32,
                flags: if index + 1 == segments {
                    DmaSegment::LAST
                } else {
                    0
                },
            };
            ring.write_obj((first + index) * DmaSegment::SIZE, &segment);
        }
        segments
    }

    #[track_caller]
    fn check_len(&self, len: usize) {
        assert!(
            len == self.len,
            "bounce: a buffer of {len} byte(s) for a transfer of {}; sync the buffer the map was made for",
            self.len
        );
    }
}

/// Whether [`SyncQueue::prewrite_or_defer`] copied at once or put the copy off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synced {
    /// Copied: the bounce pages hold the buffer.
    Now,
    /// Every window of the CPU was in use: the copy waits in the queue for
    /// [`SyncQueue::run`].
    Deferred(EnterError),
}

/// Bounce copies put off by a context that found no free window, to be run by one
/// that holds none (an interrupt handler defers to its thread, as FreeBSD's busdma
/// defers a load to `busdma_swi`).
#[derive(Debug)]
pub struct SyncQueue<'p, H> {
    pending: Vec<(BounceMap<'p, H>, Vec<u8>)>,
}

impl<H> Default for SyncQueue<'_, H> {
    fn default() -> Self {
        SyncQueue {
            pending: Vec::new(),
        }
    }
}

impl<'p, H: HeldPage> SyncQueue<'p, H> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no copy waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// [`BounceMap::try_sync_prewrite`] now, or, when the CPU's windows are all in
    /// use, a copy of `src` queued for [`run`](Self::run): the fallback path.
    #[track_caller]
    pub fn prewrite_or_defer<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
        &mut self,
        quickmap: &QuickMap<P, M, N, I>,
        map: BounceMap<'p, H>,
        src: &[u8],
    ) -> Synced {
        match map.try_sync_prewrite(quickmap, src) {
            Ok(()) => Synced::Now,
            Err(error) => {
                self.pending.push((map, src.to_vec()));
                Synced::Deferred(error)
            }
        }
    }

    /// Run every copy put off, in order, from a context that holds no window; returns
    /// how many ran.
    ///
    /// # Panics
    ///
    /// As [`BounceMap::sync_prewrite`] does.
    #[track_caller]
    pub fn run<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
        &mut self,
        quickmap: &QuickMap<P, M, N, I>,
    ) -> usize {
        let ran = self.pending.len();
        for (map, data) in self.pending.drain(..) {
            map.sync_prewrite(quickmap, &data);
        }
        ran
    }
}
