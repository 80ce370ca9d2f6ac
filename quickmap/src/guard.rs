//! The safe face of quickmap: a mapping that removes itself.

use core::fmt;
use core::marker::PhantomData;

use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::invalidation::{Invalidation, Strict};
use crate::mmu::Mmu;
use crate::platform::Platform;
use crate::quick_map::{Held, QuickMap};
use crate::rules;

/// A live mapping of one held page, made by [`QuickMap::map`]; dropping it removes the
/// mapping.
///
/// - It borrows the page, so the page stays held while mapped.
/// - It is neither `Send` nor `Sync`: a window belongs to the CPU and the context that
///   entered it, and preemption stays disabled until the guard drops.
/// - Guards may be dropped in any order: quickmap's windows are not a stack.
/// - Byte access copies in and out and never lends out a Rust reference to the page,
///   because the same frame may be mapped elsewhere at the same time (see
///   [`untyped`](crate::untyped)).
/// - It carries the window it holds, so dropping it neither decodes an address nor
///   checks the rules of the unsafe [`QuickMap::remove`]: the guard cannot break them.
#[must_use = "dropping the mapping removes it at once"]
pub struct Mapping<'q, 'p, P: Platform, M: Mmu, const N: usize, I: Invalidation = Strict> {
    quickmap: &'q QuickMap<P, M, N, I>,
    va: VirtAddr,
    /// The window entered, or `None` for a direct-map address.
    held: Option<Held<N>>,
    _page: PhantomData<&'p ()>,
    /// A raw pointer is neither `Send` nor `Sync`, and neither is the guard.
    _pinned_to_this_cpu: PhantomData<*const ()>,
}

/// The first byte that differs in [`Mapping::compare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset in the page.
    pub offset: usize,
    /// The byte expected there.
    pub expected: u8,
    /// The byte found.
    pub found: u8,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "byte at offset {:#x}: expected {:#04x}, found {:#04x}",
            self.offset, self.expected, self.found
        )
    }
}

impl<'q, 'p, P: Platform, M: Mmu, const N: usize, I: Invalidation> Mapping<'q, 'p, P, M, N, I> {
    /// # Safety
    ///
    /// `va` (in `held`'s window, or in the direct map when `held` is `None`) was
    /// entered by `quickmap` in the calling context for a page that stays held for
    /// `'p`, and nothing else will remove it.
    pub(crate) unsafe fn new(
        quickmap: &'q QuickMap<P, M, N, I>,
        va: VirtAddr,
        held: Option<Held<N>>,
    ) -> Self {
        Mapping {
            quickmap,
            va,
            held,
            _page: PhantomData,
            _pinned_to_this_cpu: PhantomData,
        }
    }

    /// The kernel virtual address of the page.
    pub fn va(&self) -> VirtAddr {
        self.va
    }

    /// A raw pointer to the page, valid until the guard drops. Dereferencing it is the
    /// caller's business: the frame may be mapped elsewhere at the same time, so do not
    /// turn it into a `&` or `&mut` that outlives a single access.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.va.as_mut_ptr()
    }

    /// Copy `dst.len()` bytes from the page, starting at `offset`.
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        let va = self.checked_range(offset, dst.len());
        // SAFETY: the page is mapped at `self.va` until the guard drops, and the range
        // lies inside it.
        unsafe { self.quickmap.mmu().read_bytes(va, dst) }
    }

    /// Copy `src` into the page, starting at `offset`.
    pub fn write(&self, offset: usize, src: &[u8]) {
        let va = self.checked_range(offset, src.len());
        // SAFETY: as in `read`; window mappings are writable.
        unsafe { self.quickmap.mmu().write_bytes(va, src) }
    }

    /// Set `len` bytes from `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) {
        let va = self.checked_range(offset, len);
        // SAFETY: as in `write`.
        unsafe { self.quickmap.mmu().fill_bytes(va, len, byte) }
    }

    /// Zero the whole page.
    pub fn zero(&self) {
        self.fill(0, PAGE_SIZE, 0);
    }

    /// Copy the whole page from another mapping.
    pub fn copy_from(&self, source: &Mapping<'_, '_, P, M, N, I>) {
        // SAFETY: both pages are mapped while their guards live, and two live mappings
        // never share a window (nor does a window overlap the direct map).
        unsafe {
            self.quickmap
                .mmu()
                .copy_bytes(self.va, source.va, PAGE_SIZE)
        }
    }

    /// Read the little-endian `u64` at `offset`.
    pub fn read_u64(&self, offset: usize) -> u64 {
        let mut bytes = [0u8; 8];
        self.read(offset, &mut bytes);
        u64::from_le_bytes(bytes)
    }

    /// Write `value` as a little-endian `u64` at `offset`.
    pub fn write_u64(&self, offset: usize, value: u64) {
        self.write(offset, &value.to_le_bytes());
    }

    /// Compare the page from `offset` with `expected`; the first differing byte, if any.
    pub fn compare(&self, offset: usize, expected: &[u8]) -> Result<(), Mismatch> {
        self.checked_range(offset, expected.len());
        let mut chunk = [0u8; 256];
        for (index, want) in expected.chunks(chunk.len()).enumerate() {
            let start = offset + index * chunk.len();
            let got = &mut chunk[..want.len()];
            self.read(start, got);
            if let Some(at) = want.iter().zip(got.iter()).position(|(w, g)| w != g) {
                return Err(Mismatch {
                    offset: start + at,
                    expected: want[at],
                    found: got[at],
                });
            }
        }
        Ok(())
    }

    fn checked_range(&self, offset: usize, len: usize) -> VirtAddr {
        if offset > PAGE_SIZE || len > PAGE_SIZE - offset {
            rules::access_outside_page(offset, len);
        }
        self.va.add(offset)
    }
}

impl<P: Platform, M: Mmu, const N: usize, I: Invalidation> Drop for Mapping<'_, '_, P, M, N, I> {
    #[inline]
    fn drop(&mut self) {
        // The guard owns its window (see `new`) and this is its only removal; the guard
        // is not `Send`, so this runs in the context, and on the CPU, that entered it.
        // A direct-map address pinned nothing and needs nothing.
        if let Some(held) = self.held {
            self.quickmap.remove_window(held);
        }
    }
}

impl<P: Platform, M: Mmu, const N: usize, I: Invalidation> fmt::Debug
    for Mapping<'_, '_, P, M, N, I>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping").field("va", &self.va).finish()
    }
}
