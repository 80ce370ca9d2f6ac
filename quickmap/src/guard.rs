//! The safe face of quickmap: a mapping that removes itself.

use core::fmt;
use core::marker::PhantomData;

use crate::access::byte_accessors;
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
///   [`untyped`](crate::untyped)); only the unsafe [`as_slice`](Self::as_slice) and
///   [`as_mut_slice`](Self::as_mut_slice) do, for a caller who can promise more.
/// - Integers come in the target's byte order (`read_u32`, ...) and little-endian
///   (`read_le_u32`, ...); with the feature `zerocopy`, plain-data types too
///   (`read_obj`, `write_obj`). Every accessor checks that it stays inside the page
///   and panics at the caller's line (`#[track_caller]`) if not.
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

/// The first byte that differs in [`Mapping::compare`] (or [`View::compare`](crate::View::compare)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset in the page (of a view: in the view).
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

impl core::error::Error for Mismatch {}

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

    /// The page as a byte slice that borrows the guard.
    ///
    /// The safe methods never lend out a reference to the page, because the frame is
    /// untyped memory (see [`untyped`](crate::untyped)): other mappings of it (another
    /// window, on this CPU or another, the direct map, a user mapping, a device doing
    /// DMA) may change it behind Rust's back, while a `&[u8]` promises the compiler that
    /// nothing does for as long as it lives, so that the compiler may read the page
    /// once and keep the bytes, read it again, or read it before the code says so. The
    /// safe methods copy instead, with volatile accesses through the [`Mmu`]. This method
    /// is for a caller who can make the promise, to hand the page to code that takes a
    /// slice (a checksum, a parser).
    ///
    /// # Safety
    ///
    /// While the returned slice lives:
    /// - no other mapping of the frame is written: not another window (another
    ///   [`Mapping`] of the same page, an address from [`QuickMap::enter`]) on this CPU
    ///   or another, not the direct map, not a user mapping, and no device writes it by
    ///   DMA;
    /// - the page is not written through this guard either: [`write`](Self::write),
    ///   [`fill`](Self::fill), [`zero`](Self::zero), [`copy_from`](Self::copy_from), the
    ///   `write_*` methods and [`as_mut_ptr`](Self::as_mut_ptr) take `&self`, so the
    ///   borrow checker does not rule them out;
    /// - the page is memory, not device registers: a read of it has no side effect
    ///   (through a reference the compiler may read more or less often than the code
    ///   says, and at other times);
    /// - the guard's address is one this CPU can dereference, as it is with a kernel's
    ///   [`Mmu`], whose windows and direct map are real translations. It is not with the
    ///   simulated machine of `sim`, whose addresses exist only inside its byte movers
    ///   (any [`Mmu`] that overrides the byte movers is bypassed by the slice).
    ///
    /// The slice cannot outlive the guard, so the page stays mapped and held meanwhile.
    ///
    /// # Example
    ///
    /// ```
    /// use quickmap::{Invalidation, Mapping, Mmu, Platform};
    ///
    /// /// The sum of the page's bytes.
    /// ///
    /// /// # Safety
    /// ///
    /// /// As for [`Mapping::as_slice`], for the duration of the call.
    /// unsafe fn byte_sum<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    ///     mapping: &Mapping<'_, '_, P, M, N, I>,
    /// ) -> u32 {
    ///     // SAFETY: forwarded from this function's contract; `bytes` does not outlive
    ///     // the call, and the guard is not written through meanwhile.
    ///     let bytes = unsafe { mapping.as_slice() };
    ///     bytes.iter().map(|&byte| u32::from(byte)).sum()
    /// }
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: `self.va .. self.va + PAGE_SIZE` maps the held page until the guard
        // drops, and the slice borrows the guard; the caller promises that the address
        // is dereferenceable, that the bytes are memory and that nothing writes them
        // while the slice lives (this function's contract).
        unsafe { core::slice::from_raw_parts(self.va.as_mut_ptr().cast_const(), PAGE_SIZE) }
    }

    /// The page as a mutable byte slice that borrows the guard exclusively.
    ///
    /// Why the safe methods copy instead is explained at [`as_slice`](Self::as_slice).
    /// Taking `&mut self` rules out every other use of this guard while the slice
    /// lives; what the borrow checker cannot see is the caller's to promise.
    ///
    /// # Safety
    ///
    /// While the returned slice lives:
    /// - no other mapping of the frame is read or written: not another window (another
    ///   [`Mapping`] of the same page, an address from [`QuickMap::enter`]) on this CPU
    ///   or another, not the direct map, not a user mapping, and no device reads or
    ///   writes it by DMA (writes through the slice may reach memory later than the code
    ///   says, or not at all if overwritten);
    /// - no raw pointer obtained earlier from [`as_mut_ptr`](Self::as_mut_ptr) is used;
    /// - the page is memory, not device registers: accesses have no side effects;
    /// - the guard's address is one this CPU can dereference, as at
    ///   [`as_slice`](Self::as_slice) (not the simulated machine's).
    ///
    /// # Example
    ///
    /// ```
    /// use quickmap::{Invalidation, Mapping, Mmu, Platform};
    ///
    /// /// Number the page's bytes `0, 1, 2, ...` (wrapping at 256).
    /// ///
    /// /// # Safety
    /// ///
    /// /// As for [`Mapping::as_mut_slice`], for the duration of the call.
    /// unsafe fn number_bytes<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    ///     mapping: &mut Mapping<'_, '_, P, M, N, I>,
    /// ) {
    ///     // SAFETY: forwarded from this function's contract; `bytes` does not outlive
    ///     // the call.
    ///     let bytes = unsafe { mapping.as_mut_slice() };
    ///     for (index, byte) in bytes.iter_mut().enumerate() {
    ///         *byte = index as u8;
    ///     }
    /// }
    /// ```
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the slice borrows the guard exclusively, and the
        // caller promises that nothing else reads or writes the frame while it lives.
        unsafe { core::slice::from_raw_parts_mut(self.va.as_mut_ptr(), PAGE_SIZE) }
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

    byte_accessors! {
        span: "page",
        bound: "PAGE_SIZE",
        rule: "access outside the page",
        setup: "use quickmap::sim::{SimConfig, SimMachine, SimPage};
use quickmap::PAGE_SIZE;

let machine = SimMachine::new(SimConfig::default());
let quickmap = machine.quickmap::<4>();
let page = SimPage::high_memory(&machine, 0);
let mapping = quickmap.map(&page);",
        guard: "mapping",
        end: "PAGE_SIZE",
        odd: "3",
    }

    /// Where the accessors' bytes start.
    #[inline(always)]
    fn span_va(&self) -> VirtAddr {
        self.va
    }

    /// One page: a constant, so the accessors' bound checks compare with an immediate.
    #[inline(always)]
    fn span_len(&self) -> usize {
        PAGE_SIZE
    }

    #[inline(always)]
    #[track_caller]
    fn refuse_access(&self, offset: usize, len: usize) -> ! {
        rules::access_outside_page(offset, len)
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
