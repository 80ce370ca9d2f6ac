//! Interoperation with the [`x86_64`] crate (feature `x86_64`).
//!
//! A kernel built on that crate names frames, addresses and page tables with its types;
//! this module lets it hand them to quickmap as they are:
//!
//! - **addresses**: `From<x86_64::PhysAddr> for PhysAddr` (every physical address the
//!   crate accepts is one for quickmap), `TryFrom<PhysAddr> for x86_64::PhysAddr`
//!   (refused with the crate's `PhysAddrNotValid` when a bit from 52 up is set), and
//!   `From<PhysFrame<S>> for PhysAddr` (the frame's first byte); on 64-bit targets,
//!   `From<x86_64::VirtAddr> for VirtAddr` and `TryFrom<VirtAddr> for x86_64::VirtAddr`
//!   (refused with `VirtAddrNotValid` when the address is not canonical);
//! - **pages**: [`HeldFrame`], a 4 KiB `PhysFrame` that the kernel vouches for as held:
//!   the [`HeldPage`] that [`QuickMap::map`](crate::QuickMap::map) takes;
//! - **the backend**: [`X86Mmu::from_page_table`] builds the x86_64 backend from the
//!   window region's `&'static mut PageTable` rather than a raw pointer.
//!
//! ## Why a `PhysFrame` is not a `HeldPage`
//!
//! A `PhysFrame` is a number: `Copy`, and made for any address by safe code
//! (`PhysFrame::containing_address`). It proves nothing about the frame, while a
//! [`HeldPage`] promises that its frame stays put while mapped; with that promise the
//! safe [`Mapping`](crate::Mapping) writes to the frame. If `PhysFrame` were a
//! `HeldPage`, safe code could overwrite any frame of the machine, the kernel's own page
//! tables included. The promise is the kernel's to make, once, in [`HeldFrame::new`]:
//!
//! ```compile_fail,E0277
//! use x86_64::structures::paging::{PhysFrame, Size4KiB};
//! fn needs_a_held_page(_: &impl quickmap::HeldPage) {}
//! let frame = PhysFrame::<Size4KiB>::containing_address(x86_64::PhysAddr::new(0x1000));
//! needs_a_held_page(&frame); // error: `PhysFrame` is not a `HeldPage`
//! ```

use ::x86_64::addr::{PhysAddr as X86PhysAddr, PhysAddrNotValid};
#[cfg(target_pointer_width = "64")]
use ::x86_64::addr::{VirtAddr as X86VirtAddr, VirtAddrNotValid};
use ::x86_64::structures::paging::{PageSize, PageTable, PhysFrame, Size4KiB};

use super::{X86Mmu, ENTRIES_PER_TABLE};
use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::page::{HeldPage, MemoryAttribute};

impl From<X86PhysAddr> for PhysAddr {
    /// The same address: every physical address of the `x86_64` crate (bits 52 to 63
    /// clear) is one for quickmap.
    ///
    /// ```
    /// let pa: quickmap::PhysAddr = x86_64::PhysAddr::new(0x1234_5000).into();
    /// assert_eq!(pa, quickmap::PhysAddr(0x1234_5000));
    /// ```
    #[inline]
    fn from(pa: X86PhysAddr) -> PhysAddr {
        PhysAddr(pa.as_u64())
    }
}

impl TryFrom<PhysAddr> for X86PhysAddr {
    type Error = PhysAddrNotValid;

    /// The same address, or an error if a bit from 52 up is set (x86_64 paging has at
    /// most 52 bits of physical address).
    ///
    /// ```
    /// use quickmap::PhysAddr;
    /// assert_eq!(x86_64::PhysAddr::try_from(PhysAddr(0x1234_5000)).unwrap().as_u64(), 0x1234_5000);
    /// assert!(x86_64::PhysAddr::try_from(PhysAddr(1 << 52)).is_err());
    /// ```
    #[inline]
    fn try_from(pa: PhysAddr) -> Result<X86PhysAddr, PhysAddrNotValid> {
        X86PhysAddr::try_new(pa.0)
    }
}

impl<S: PageSize> From<PhysFrame<S>> for PhysAddr {
    /// The frame's first byte.
    ///
    /// ```
    /// use x86_64::structures::paging::{PhysFrame, Size4KiB};
    /// let frame = PhysFrame::<Size4KiB>::containing_address(x86_64::PhysAddr::new(0x1234_5678));
    /// assert_eq!(quickmap::PhysAddr::from(frame), quickmap::PhysAddr(0x1234_5000));
    /// ```
    #[inline]
    fn from(frame: PhysFrame<S>) -> PhysAddr {
        frame.start_address().into()
    }
}

#[cfg(target_pointer_width = "64")]
impl From<X86VirtAddr> for VirtAddr {
    /// The same address (a `usize` holds all 64 bits on 64-bit targets).
    ///
    /// ```
    /// let va: quickmap::VirtAddr = x86_64::VirtAddr::new(0xffff_c000_0000_1000).into();
    /// assert_eq!(va, quickmap::VirtAddr(0xffff_c000_0000_1000));
    /// ```
    #[inline]
    fn from(va: X86VirtAddr) -> VirtAddr {
        VirtAddr(va.as_u64() as usize)
    }
}

#[cfg(target_pointer_width = "64")]
impl TryFrom<VirtAddr> for X86VirtAddr {
    type Error = VirtAddrNotValid;

    /// The same address, or an error if it is not canonical (bits 48 to 63 not copies
    /// of bit 47). Never sign-extends: a wrong address stays an error, not another
    /// address.
    ///
    /// ```
    /// use quickmap::VirtAddr;
    /// assert!(x86_64::VirtAddr::try_from(VirtAddr(0xffff_c000_0000_1000)).is_ok());
    /// assert!(x86_64::VirtAddr::try_from(VirtAddr(0x0000_c000_0000_1000)).is_err());
    /// ```
    #[inline]
    fn try_from(va: VirtAddr) -> Result<X86VirtAddr, VirtAddrNotValid> {
        X86VirtAddr::try_new(va.0 as u64)
    }
}

/// A 4 KiB frame of the `x86_64` crate that the kernel vouches for as held: wired, held,
/// or unmanaged device memory, for as long as this value lives.
///
/// The [`HeldPage`] to pass to [`QuickMap::map`](crate::QuickMap::map) and friends; the
/// mapping borrows it, so the frame is held for at least as long as it is mapped. Not
/// `Clone`: the promise made in [`new`](Self::new) covers one value, whose end is where
/// the kernel may let the frame go (e.g. after [`into_frame`](Self::into_frame)).
///
#[cfg_attr(feature = "sim", doc = "```")]
#[cfg_attr(not(feature = "sim"), doc = "```ignore")]
/// use quickmap::arch::x86_64::HeldFrame;
/// use quickmap::sim::{SimConfig, SimMachine};
/// use x86_64::structures::paging::PhysFrame;
///
/// let machine = SimMachine::new(SimConfig::default());
/// let quickmap = machine.quickmap::<4>();
/// let frame = PhysFrame::containing_address(x86_64::PhysAddr::new(0x2a000));
/// // SAFETY: simulated memory is never freed or reused.
/// let page = unsafe { HeldFrame::new(frame) };
/// quickmap.map(&page).write(0, b"frame 0x2a");
///
/// let mut back = [0u8; 10];
/// machine.phys_read(quickmap::PhysAddr(0x2a000), &mut back);
/// assert_eq!(&back, b"frame 0x2a");
/// assert_eq!(page.into_frame(), frame);
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HeldFrame {
    frame: PhysFrame<Size4KiB>,
    attribute: MemoryAttribute,
}

impl HeldFrame {
    /// `frame`, held, to be mapped write-back (RAM).
    ///
    /// # Safety
    ///
    /// For as long as the returned value (or a borrow of it) lives:
    /// 1. `frame` is not freed, swapped out, or handed to another owner: it is wired,
    ///    held, or unmanaged memory that nothing reclaims;
    /// 2. `frame` may be mapped write-back (RAM is; device memory usually is not: use
    ///    [`with_attribute`](Self::with_attribute)).
    #[inline]
    #[must_use]
    pub const unsafe fn new(frame: PhysFrame<Size4KiB>) -> HeldFrame {
        HeldFrame {
            frame,
            attribute: MemoryAttribute::WriteBack,
        }
    }

    /// `frame`, held, to be mapped with `attribute` (e.g. write-combining for a frame
    /// buffer, uncacheable for device registers).
    ///
    /// # Safety
    ///
    /// For as long as the returned value (or a borrow of it) lives:
    /// 1. `frame` is not freed, swapped out, or handed to another owner: it is wired,
    ///    held, or unmanaged memory that nothing reclaims;
    /// 2. `frame` may be mapped with `attribute`: it is the attribute the kernel maps
    ///    the frame with everywhere else (x86 leaves a frame mapped with two memory
    ///    types at once undefined).
    #[inline]
    #[must_use]
    pub const unsafe fn with_attribute(
        frame: PhysFrame<Size4KiB>,
        attribute: MemoryAttribute,
    ) -> HeldFrame {
        HeldFrame { frame, attribute }
    }

    /// The frame.
    #[inline]
    pub const fn frame(&self) -> PhysFrame<Size4KiB> {
        self.frame
    }

    /// The attribute mappings of the frame get.
    #[inline]
    pub const fn attribute(&self) -> MemoryAttribute {
        self.attribute
    }

    /// The frame back, ending the promise of [`new`](Self::new): no mapping borrows this
    /// value any more, so the kernel may let the frame go.
    #[inline]
    pub const fn into_frame(self) -> PhysFrame<Size4KiB> {
        self.frame
    }
}

// SAFETY: 1. the frame is a fixed field, and a `PhysFrame<Size4KiB>` starts on a 4 KiB
// boundary (the crate's constructors check it), so the address is the same page-aligned
// one every time; 2. and 3. are the promises the constructor's caller made for as long
// as this value lives, which outlasts every borrow of it.
unsafe impl HeldPage for HeldFrame {
    #[inline]
    fn phys_addr(&self) -> PhysAddr {
        self.frame.into()
    }

    #[inline]
    fn memory_attribute(&self) -> MemoryAttribute {
        self.attribute
    }
}

impl X86Mmu {
    /// A backend for the `region_pages` pages of windows (and guard pages) from
    /// `region_base`, whose last-level entries are in `table`: [`new`](Self::new)
    /// without the raw pointer.
    ///
    /// `region_pages` is [`WindowLayout::region_pages`](crate::WindowLayout::region_pages)
    /// of the quickmap's layout and CPU count. The entry of `region_base` is entry
    /// `(region_base / 4096) % 512` of its table, and the region's entries follow it in
    /// the same table, so the region must not cross a 2 MiB boundary (see
    /// [`leaf_tables`](super::leaf_tables)).
    ///
    /// What `new` asks of its pointer, the borrow proves: the table is live, aligned,
    /// 512 entries long and lives forever, and no other Rust code reads or writes it
    /// from now on. What can be checked is checked (see Panics). The backend writes the
    /// entries with volatile stores through a pointer made from the borrow at once;
    /// it never makes a reference to an entry again, so the page walker reading the
    /// table meanwhile is no aliasing concern (and it writes no accessed or dirty bit
    /// into an entry quickmap writes, which has both preset, nor into a clear one).
    /// The rest of the table is left as it is: give quickmap a table of its own.
    ///
    /// ```
    /// use quickmap::arch::x86_64::X86Mmu;
    /// use quickmap::{VirtAddr, WindowLayout};
    /// use x86_64::structures::paging::PageTable;
    ///
    /// // 4 windows for each of 16 CPUs, from the start of a 2 MiB-aligned span.
    /// let layout = WindowLayout::guarded(VirtAddr(0xffff_c000_0000_0000), 4);
    /// let table: &'static mut PageTable = Box::leak(Box::new(PageTable::new()));
    /// // SAFETY (of this example): nothing is ever mapped through `mmu`. In a kernel,
    /// // `table` is the last-level table installed for the region.
    /// let mmu = unsafe { X86Mmu::from_page_table(layout.base, layout.region_pages(16), table) };
    /// assert_eq!(mmu.read_pte(layout.window_va(15, 3)), 0);
    /// ```
    ///
    /// # Safety
    ///
    /// 1. `table` is the last-level page table through which every CPU translates the
    ///    2 MiB of address space around `region_base`, and stays so for as long as the
    ///    backend lives (the borrow proves that the memory is the caller's to give, not
    ///    that the MMU walks it);
    /// 2. `region_base` is the `window_base` of the quickmap that uses the backend (its
    ///    [`Window::region_page`](crate::Window::region_page)s index the region), and
    ///    `region_pages` is at least its layout's
    ///    [`region_pages`](crate::WindowLayout::region_pages) for its CPU count;
    /// 3. `EFER.NXE` is set on every CPU (the no-execute bit is otherwise reserved) and
    ///    `IA32_PAT` holds [`PAT_MSR_VALUE`](super::PAT_MSR_VALUE).
    ///
    /// # Panics
    ///
    /// If `region_base` is not page aligned, `region_pages` is zero, the region reaches
    /// past the end of `table`, or an entry of the region is not clear (quickmap would
    /// take a present entry for a free window's).
    pub unsafe fn from_page_table(
        region_base: VirtAddr,
        region_pages: usize,
        table: &'static mut PageTable,
    ) -> X86Mmu {
        assert!(
            region_base.0 % PAGE_SIZE == 0,
            "quickmap: the x86_64 window region's base {region_base} is not page aligned"
        );
        let first = (region_base.0 / PAGE_SIZE) % ENTRIES_PER_TABLE;
        assert!(
            region_pages != 0 && region_pages <= ENTRIES_PER_TABLE - first,
            "quickmap: a window region of {region_pages} page(s) at {region_base} (entry {first} of \
             its page table) does not fit in one 512-entry page table; give it a 2 MiB-aligned \
             span of its own, or fewer CPUs or windows"
        );
        // `PageTable` is `repr(C)`: 512 `repr(transparent)` entries of one `u64` each.
        let entries: *mut u64 = core::ptr::from_mut(table).cast::<u64>().wrapping_add(first);
        for page in 0..region_pages {
            // SAFETY: `first + page < 512` (checked above): an entry of the exclusively
            // borrowed table, read through the pointer the backend will keep.
            let entry = unsafe { entries.add(page).read_volatile() };
            assert!(
                entry == 0,
                "quickmap: entry {} of the x86_64 window region's page table (for {}) is not \
                 clear ({entry:#x}); the region's entries are quickmap's alone",
                first + page,
                region_base.add(page * PAGE_SIZE)
            );
        }
        // SAFETY: 1. `entries` points to the entry of `region_base` in `table` (the
        // caller's first promise), followed in order by those of the next
        // `region_pages - 1` pages, all inside the table (checked above); the table lives
        // forever and is the backend's alone (the `'static mut` borrow); 2. all are clear
        // (checked above), `region_base` is the quickmap's window base (second promise);
        // 3. is the caller's third promise.
        unsafe { X86Mmu::new(region_base, region_pages, entries) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::boxed::Box;

    use ::x86_64::structures::paging::PageTable;

    use super::*;
    use crate::arch::x86_64::window_pte;
    use crate::layout::WindowLayout;
    #[cfg(target_arch = "x86_64")]
    use crate::mmu::{Mmu, Window};

    const SPAN: usize = ENTRIES_PER_TABLE * PAGE_SIZE;
    const BASE: usize = 0xffff_c000_0000_0000;

    #[test]
    fn physical_addresses_convert_unchanged_both_ways() {
        for raw in [0, 0x1000, 0x1234_5000, 0x1234_5678, (1 << 52) - 1] {
            let pa: PhysAddr = X86PhysAddr::new(raw).into();
            assert_eq!(pa, PhysAddr(raw));
            assert_eq!(X86PhysAddr::try_from(pa).unwrap(), X86PhysAddr::new(raw));
        }
        for bad in [1 << 52, 1 << 63, u64::MAX] {
            assert_eq!(X86PhysAddr::try_from(PhysAddr(bad)).unwrap_err().0, bad);
        }
    }

    #[test]
    fn a_frame_converts_to_its_first_byte() {
        let frame = PhysFrame::<Size4KiB>::containing_address(X86PhysAddr::new(0x1234_5fff));
        assert_eq!(PhysAddr::from(frame), PhysAddr(0x1234_5000));
        let huge = PhysFrame::<::x86_64::structures::paging::Size2MiB>::containing_address(
            X86PhysAddr::new(0x1234_5678),
        );
        assert_eq!(PhysAddr::from(huge), PhysAddr(0x1220_0000));
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn virtual_addresses_convert_unchanged_and_never_sign_extend() {
        for raw in [0, BASE, 0x0000_7fff_ffff_f000, usize::MAX] {
            let va: VirtAddr = X86VirtAddr::new(raw as u64).into();
            assert_eq!(va, VirtAddr(raw));
            assert_eq!(X86VirtAddr::try_from(va).unwrap().as_u64(), raw as u64);
        }
        // `new_truncate` would make these canonical; the conversion refuses them.
        for bad in [
            0x0000_8000_0000_0000,
            0xffff_0000_0000_0000,
            0x0001_0000_0000_0000,
        ] {
            assert_eq!(
                X86VirtAddr::try_from(VirtAddr(bad)).unwrap_err().0,
                bad as u64
            );
        }
    }

    #[test]
    fn a_held_frame_reports_its_frame_and_attribute() {
        let frame = PhysFrame::containing_address(X86PhysAddr::new(0xfd00_0000));
        // SAFETY: nothing is mapped; the page's promises are only read back.
        let held = unsafe { HeldFrame::with_attribute(frame, MemoryAttribute::WriteCombining) };
        assert_eq!(held.phys_addr(), PhysAddr(0xfd00_0000));
        assert_eq!(held.memory_attribute(), MemoryAttribute::WriteCombining);
        assert_eq!(
            (held.frame(), held.attribute()),
            (frame, MemoryAttribute::WriteCombining)
        );
        // SAFETY: as above.
        let ram = unsafe { HeldFrame::new(frame) };
        assert_eq!(ram.memory_attribute(), MemoryAttribute::WriteBack);
        assert_eq!(ram.into_frame(), frame);
    }

    /// A table the test can look at again once the backend is gone: the backend gets
    /// the `&'static mut`, the test keeps the allocation's pointer and reads through it
    /// only after the backend's last use (then frees it).
    struct LeakedTable(*mut PageTable);

    impl LeakedTable {
        fn new() -> LeakedTable {
            LeakedTable(Box::into_raw(Box::new(PageTable::new())))
        }

        /// # Safety
        ///
        /// Once only, and [`entries`](Self::entries) is called only after the last use
        /// of the returned borrow.
        unsafe fn lend(&self) -> &'static mut PageTable {
            // SAFETY: the allocation is live until `drop`; the caller lends it once.
            unsafe { &mut *self.0 }
        }

        /// # Safety
        ///
        /// No lent borrow (or backend made from it) is used again.
        unsafe fn entries(&self) -> [u64; ENTRIES_PER_TABLE] {
            // SAFETY: a live allocation of 512 `u64` entries (`repr(C)` of
            // `repr(transparent)` ones), and the caller's promise.
            unsafe { self.0.cast::<[u64; ENTRIES_PER_TABLE]>().read() }
        }
    }

    impl Drop for LeakedTable {
        fn drop(&mut self) {
            // SAFETY: allocated by `Box::into_raw` in `new`, freed once, here.
            drop(unsafe { Box::from_raw(self.0) });
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_backend_writes_the_entry_of_each_window_in_the_table_at_its_index() {
        // A region that starts mid-table, at entry 40: region page `p` is entry 40 + p.
        let base = VirtAddr(BASE + 5 * SPAN + 40 * PAGE_SIZE);
        let layout = WindowLayout::guarded(base, 4);
        let pages = layout.region_pages(3);
        let table = LeakedTable::new();
        let last = Window {
            cpu: 2,
            slot: 3,
            va: layout.window_va(2, 3),
            region_page: (layout.window_va(2, 3).0 - base.0) / PAGE_SIZE,
        };
        let first = Window {
            cpu: 0,
            slot: 0,
            va: base,
            region_page: 0,
        };
        {
            // SAFETY: nothing is entered or invalidated; only entries are written. The
            // table is lent once, and read back below after the backend's last use.
            let mmu = unsafe { X86Mmu::from_page_table(base, pages, table.lend()) };
            mmu.set_window_pte(last, PhysAddr(0x1234_5000), MemoryAttribute::Uncacheable);
            mmu.set_window_pte(first, PhysAddr(0x7000), MemoryAttribute::WriteBack);
            assert_eq!(
                mmu.read_pte(last.va),
                window_pte(PhysAddr(0x1234_5000), MemoryAttribute::Uncacheable)
            );
        }
        // SAFETY: the backend is gone.
        let entries = unsafe { table.entries() };
        for (index, &entry) in entries.iter().enumerate() {
            let expected = if index == 40 {
                window_pte(PhysAddr(0x7000), MemoryAttribute::WriteBack)
            } else if index == 40 + last.region_page {
                window_pte(PhysAddr(0x1234_5000), MemoryAttribute::Uncacheable)
            } else {
                0
            };
            assert_eq!(entry, expected, "entry {index}");
        }
    }

    #[test]
    fn a_region_that_ends_at_the_last_entry_fits() {
        let table = LeakedTable::new();
        let base = VirtAddr(BASE + SPAN - 8 * PAGE_SIZE);
        // SAFETY: nothing is mapped; the table is lent once.
        let mmu = unsafe { X86Mmu::from_page_table(base, 8, table.lend()) };
        assert_eq!(mmu.read_pte(base.add(7 * PAGE_SIZE)), 0);
    }

    #[test]
    #[should_panic(
        expected = "quickmap: a window region of 9 page(s) at 0xffffc000001f8000 (entry 504"
    )]
    fn a_region_that_runs_past_its_table_is_refused() {
        let table = LeakedTable::new();
        // SAFETY: refused before any entry is written; the table is lent once.
        let _ = unsafe {
            X86Mmu::from_page_table(VirtAddr(BASE + SPAN - 8 * PAGE_SIZE), 9, table.lend())
        };
    }

    #[test]
    #[should_panic(expected = "does not fit in one 512-entry page table")]
    fn an_empty_region_is_refused() {
        let table = LeakedTable::new();
        // SAFETY: refused before any entry is written; the table is lent once.
        let _ = unsafe { X86Mmu::from_page_table(VirtAddr(BASE), 0, table.lend()) };
    }

    #[test]
    #[should_panic(expected = "is not page aligned")]
    fn an_unaligned_base_is_refused() {
        let table = LeakedTable::new();
        // SAFETY: refused before any entry is written; the table is lent once.
        let _ = unsafe { X86Mmu::from_page_table(VirtAddr(BASE + 8), 1, table.lend()) };
    }

    #[test]
    #[should_panic(
        expected = "quickmap: entry 3 of the x86_64 window region's page table \
                               (for 0xffffc00000003000) is not clear (0x3003)"
    )]
    fn a_region_whose_entries_are_not_clear_is_refused() {
        use ::x86_64::structures::paging::PageTableFlags;
        let table = Box::leak(Box::new(PageTable::new()));
        let present = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        table[3].set_addr(X86PhysAddr::new(0x3000), present);
        // SAFETY: refused before any entry is written.
        let _ = unsafe { X86Mmu::from_page_table(VirtAddr(BASE), 4, table) };
    }

    #[test]
    fn entries_outside_the_region_are_left_alone() {
        use ::x86_64::structures::paging::PageTableFlags;
        let table = Box::leak(Box::new(PageTable::new()));
        let present = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        table[3].set_addr(X86PhysAddr::new(0x3000), present);
        table[8].set_addr(X86PhysAddr::new(0x8000), present);
        // SAFETY: nothing is mapped.
        let mmu = unsafe { X86Mmu::from_page_table(VirtAddr(BASE + 4 * PAGE_SIZE), 4, table) };
        assert_eq!(mmu.read_pte(VirtAddr(BASE + 7 * PAGE_SIZE)), 0);
    }
}
