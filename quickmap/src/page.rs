//! What quickmap needs to know about a page: where it is, how it may be cached, and
//! a proof that it stays put while mapped.

use crate::addr::PhysAddr;

/// How the CPU may cache accesses through a mapping: FreeBSD's `VM_MEMATTR_*`.
///
/// The man page does not say it, but every implementation honours the page's
/// attribute (`pmap_quick_enter_page` on i386 ORs in `pmap_cache_bits(m->md.pat_mode)`):
/// a write-combining frame buffer page must not be entered write-back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MemoryAttribute {
    /// Ordinary RAM: cached, write-back. The only attribute the direct map serves.
    #[default]
    WriteBack,
    /// Cached for reads, writes go through to memory.
    WriteThrough,
    /// Not cached; strongly ordered (device registers).
    Uncacheable,
    /// Uncacheable unless the memory-type range registers say otherwise (x86 UC-).
    WeakUncacheable,
    /// Not cached; writes may be combined and delayed (frame buffers).
    WriteCombining,
    /// Cached for reads; writes go to memory and invalidate the line.
    WriteProtected,
}

impl MemoryAttribute {
    /// Every attribute, for code that must handle (and tests that must try) each one.
    pub const ALL: [MemoryAttribute; 6] = [
        MemoryAttribute::WriteBack,
        MemoryAttribute::WriteThrough,
        MemoryAttribute::Uncacheable,
        MemoryAttribute::WeakUncacheable,
        MemoryAttribute::WriteCombining,
        MemoryAttribute::WriteProtected,
    ];
}

/// A physical page that stays resident for as long as it is borrowed.
///
/// The man page: *"The page must not be swapped or otherwise reused while the mapping
/// is active. It must be either wired or held, or it must belong to an unmanaged region
/// such as I/O device memory."* quickmap turns that sentence into this trait: the safe
/// API ([`QuickMap::map`](crate::QuickMap::map)) borrows the page for as long as the
/// mapping lives, so the borrow checker enforces the rule.
///
/// # Safety
///
/// Implementors promise, for as long as any shared borrow of `self` lives:
/// 1. [`phys_addr`](Self::phys_addr) returns the same page-aligned address every time;
/// 2. the frame at that address is not freed, swapped out, or handed to another owner
///    (it is wired, held, or unmanaged device memory);
/// 3. [`memory_attribute`](Self::memory_attribute) is an attribute under which the
///    frame may be mapped (for RAM, normally write-back).
pub unsafe trait HeldPage {
    /// Physical address of the first byte of the page.
    fn phys_addr(&self) -> PhysAddr;

    /// How mappings of this page may be cached.
    fn memory_attribute(&self) -> MemoryAttribute {
        MemoryAttribute::WriteBack
    }
}

// SAFETY: a shared borrow of a held page keeps the page held: `&H` lends out the same
// promises as `H` for no longer than `H` is borrowed.
unsafe impl<H: HeldPage + ?Sized> HeldPage for &H {
    fn phys_addr(&self) -> PhysAddr {
        (**self).phys_addr()
    }

    fn memory_attribute(&self) -> MemoryAttribute {
        (**self).memory_attribute()
    }
}

/// A run of physically contiguous pages that stays resident for as long as it is
/// borrowed: what [`QuickMap::map_range`](crate::QuickMap::map_range) maps as one
/// [`View`](crate::View).
///
/// [`HeldPage`] for a run: a contiguous allocation, a DMA buffer, a device's memory
/// window. One proof covers the whole run, and one memory attribute applies to every
/// page of it (pages with attributes of their own are mapped with
/// [`QuickMap::map_pages`](crate::QuickMap::map_pages)).
///
/// ```
/// use quickmap::{HeldRange, MemoryAttribute, PhysAddr, PAGE_SIZE};
///
/// /// A frame buffer that the firmware set up and nobody ever frees.
/// struct FrameBuffer;
///
/// // SAFETY: the frame buffer's memory is device memory, fixed at boot and never
/// // reused; write-combining is how it may be mapped.
/// unsafe impl HeldRange for FrameBuffer {
///     fn phys_addr(&self) -> PhysAddr {
///         PhysAddr(0xfd00_0000)
///     }
///     fn pages(&self) -> usize {
///         3
///     }
///     fn memory_attribute(&self) -> MemoryAttribute {
///         MemoryAttribute::WriteCombining
///     }
/// }
/// assert_eq!(FrameBuffer.pages() * PAGE_SIZE, 12288);
/// ```
///
/// # Safety
///
/// Implementors promise, for as long as any shared borrow of `self` lives:
/// 1. [`phys_addr`](Self::phys_addr) and [`pages`](Self::pages) return the same values
///    every time, and the address is page-aligned;
/// 2. none of the `pages()` frames from that address on is freed, swapped out, or
///    handed to another owner (they are wired, held, or unmanaged device memory);
/// 3. [`memory_attribute`](Self::memory_attribute) is an attribute under which every
///    one of those frames may be mapped.
pub unsafe trait HeldRange {
    /// Physical address of the first byte of the first page.
    fn phys_addr(&self) -> PhysAddr;

    /// How many pages the run has.
    fn pages(&self) -> usize;

    /// How mappings of the run's pages may be cached.
    fn memory_attribute(&self) -> MemoryAttribute {
        MemoryAttribute::WriteBack
    }
}

// SAFETY: as for `HeldPage`: a shared borrow of a held run keeps it held.
unsafe impl<R: HeldRange + ?Sized> HeldRange for &R {
    fn phys_addr(&self) -> PhysAddr {
        (**self).phys_addr()
    }

    fn pages(&self) -> usize {
        (**self).pages()
    }

    fn memory_attribute(&self) -> MemoryAttribute {
        (**self).memory_attribute()
    }
}
