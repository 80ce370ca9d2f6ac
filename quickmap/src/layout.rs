//! Where windows and the direct map live in kernel virtual address space.

use core::fmt;

use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::mmu::Window;
use crate::quick_map::PAGE_SHIFT;

/// Bytes of page-table entries that share one cache line (eight 8-byte PTEs in a
/// 64-byte line on x86_64 and arm64). A CPU's windows span at least this many pages so
/// that two CPUs never write the same line of the page table: no false sharing, as in
/// OpenBSD i386's padded per-CPU PTEs.
pub const PTES_PER_CACHE_LINE: usize = 8;

/// The per-CPU window region: for CPU `c`, window `w` is at
/// `base + c * cpu_stride + w * window_stride`.
///
/// quickmap always uses the [`guarded`](WindowLayout::guarded) layout, whose strides
/// follow from the number of windows per CPU alone: they are compile-time powers of two,
/// so `remove` finds the CPU and window of an address with shifts by constants.
///
/// ## Views: several pages side by side
///
/// A [`View`](crate::View) maps `K` pages at consecutive addresses, and the guarded
/// layout has no two consecutive window pages. So a view lays its pages over windows
/// **and the guard pages between them**: a view from window `w` of a CPU puts its page
/// `i` at `window_va(cpu, w) + i * PAGE_SIZE`, which is the page of window `w + i / 2`
/// for an even `i` and that window's guard page for an odd `i`:
///
/// ```text
/// window         w             w + 1           w + 2
/// page     | 2w   | 2w+1 | 2w+2 | 2w+3 | 2w+4 | 2w+5 |
/// K = 3    | 0    | 1    | 2    | ---- |                 holds w, w + 1
/// K = 4    | 0    | 1    | 2    | 3    | ---- |          holds w, w + 1, w + 2
/// ```
///
/// The view holds windows `w ..= w + K / 2`, `K / 2 + 1` adjacent windows in all
/// ([`windows_for_view`](Self::windows_for_view)): every window its pages touch and,
/// for an even `K`, the next one, whose page it leaves unmapped. So the page after a
/// view (`----`) is always unmapped and nobody else can map it while the view lives:
/// the last held window's guard page (odd `K`) or that window's own page (even `K`).
/// An overrun of a view faults as an overrun of a window does; so does an underrun,
/// since the page before window `w` is a guard page that no view holds. The strides
/// stay as they are. What changes is that a guard page between two windows that one
/// view holds is mapped, by that view, and cleared and invalidated with it; every
/// other guard page, the one after each CPU's last window included, stays unmapped
/// always. A view fits in one CPU's windows, so it maps at most `2 * N - 1` pages
/// ([`max_view_pages`](Self::max_view_pages)), and its last page is at most the last
/// window's page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLayout {
    /// Address of CPU 0's first window; aligned to `cpu_stride`.
    pub base: VirtAddr,
    /// Distance between two windows of one CPU. `2 * PAGE_SIZE` leaves an unmapped guard
    /// page after each window, so running off the end of a window faults (a view maps
    /// the guard pages between the windows it holds: see
    /// [Views](Self#views-several-pages-side-by-side)).
    pub window_stride: usize,
    /// Distance between the windows of two consecutive CPUs.
    pub cpu_stride: usize,
}

impl WindowLayout {
    /// The recommended layout: each window followed by an unmapped guard page, each
    /// CPU's windows padded to a whole cache line of page-table entries.
    ///
    /// ```
    /// use quickmap::{VirtAddr, WindowLayout, PAGE_SIZE};
    /// let layout = WindowLayout::guarded(VirtAddr(0xffff_c000_0000_0000), 4);
    /// assert_eq!(layout.window_stride, 2 * PAGE_SIZE);
    /// assert_eq!(layout.cpu_stride, 8 * PAGE_SIZE);
    /// assert_eq!(layout.window_va(1, 2), VirtAddr(0xffff_c000_0000_0000 + 8 * PAGE_SIZE + 4 * PAGE_SIZE));
    /// ```
    pub const fn guarded(base: VirtAddr, windows_per_cpu: usize) -> WindowLayout {
        let window_stride = 2 * PAGE_SIZE;
        let needed = windows_per_cpu * window_stride;
        let line = PTES_PER_CACHE_LINE * PAGE_SIZE;
        let cpu_stride = if needed > line {
            needed.next_power_of_two()
        } else {
            line
        };
        WindowLayout {
            base,
            window_stride,
            cpu_stride,
        }
    }

    /// Kernel virtual address of window `slot` of `cpu`.
    pub const fn window_va(&self, cpu: usize, slot: usize) -> VirtAddr {
        VirtAddr(self.base.0 + cpu * self.cpu_stride + slot * self.window_stride)
    }

    /// How many adjacent windows a view of `pages` pages holds: `pages / 2 + 1` (see
    /// [Views](Self#views-several-pages-side-by-side)).
    ///
    /// ```
    /// use quickmap::WindowLayout;
    /// assert_eq!(WindowLayout::windows_for_view(1), 1); // a window and its guard page
    /// assert_eq!(WindowLayout::windows_for_view(2), 2); // the next window is the guard
    /// assert_eq!(WindowLayout::windows_for_view(3), 2);
    /// assert_eq!(WindowLayout::windows_for_view(7), 4);
    /// ```
    pub const fn windows_for_view(pages: usize) -> usize {
        pages / 2 + 1
    }

    /// The most pages one view can map with `windows_per_cpu` windows per CPU, all of
    /// them free: `2 * windows_per_cpu - 1`.
    ///
    /// ```
    /// use quickmap::WindowLayout;
    /// assert_eq!(WindowLayout::max_view_pages(4), 7);
    /// assert_eq!(WindowLayout::windows_for_view(WindowLayout::max_view_pages(32)), 32);
    /// ```
    pub const fn max_view_pages(windows_per_cpu: usize) -> usize {
        2 * windows_per_cpu - 1
    }

    /// Bytes of the window region of `cpus` CPUs, from [`base`](Self::base): every
    /// window, the guard page after it, and each CPU's padding. It is the span
    /// [`QuickMap::new`](crate::QuickMap::new) keeps the direct map out of, and the span
    /// whose last-level page-table entries a kernel reserves for quickmap (clear, and
    /// written by nothing else). CPU `cpus`, if there were one, would start right after
    /// it.
    ///
    /// A `const fn`, so a kernel can check at compile time that its windows fit the page
    /// tables it allocates (`N` windows per CPU give the layout
    /// `WindowLayout::guarded(base, N)`):
    ///
    /// ```
    /// use quickmap::{VirtAddr, WindowLayout, PAGE_SIZE};
    /// const WINDOWS: WindowLayout = WindowLayout::guarded(VirtAddr(0xffff_c000_0000_0000), 32);
    /// // 8 CPUs with 32 guarded windows each fill one 2 MiB page table exactly.
    /// const _: () = assert!(WINDOWS.region_len(8) == 2 << 20);
    /// assert_eq!(WINDOWS.region_pages(8), 512);
    /// assert_eq!(WINDOWS.window_va(8, 0), WINDOWS.base.add(WINDOWS.region_len(8)));
    /// ```
    ///
    /// # Panics
    ///
    /// If the length does not fit in a `usize` (at compile time, in a constant).
    pub const fn region_len(&self, cpus: usize) -> usize {
        match cpus.checked_mul(self.cpu_stride) {
            Some(len) => len,
            None => panic!("quickmap: the window region's length overflows a usize"),
        }
    }

    /// Pages of the window region of `cpus` CPUs: [`region_len`](Self::region_len) in
    /// pages, so the number of last-level page-table entries it takes (the
    /// `region_pages` of an MMU backend such as
    /// [`X86Mmu`](crate::arch::x86_64::X86Mmu)). A window's
    /// [`region_page`](crate::Window::region_page) is always below it.
    ///
    /// # Panics
    ///
    /// As [`region_len`](Self::region_len).
    pub const fn region_pages(&self, cpus: usize) -> usize {
        self.region_len(cpus) / PAGE_SIZE
    }

    pub(crate) fn validate(&self, cpus: usize) -> Result<(), ConfigError> {
        if self.base.0 % self.cpu_stride != 0 {
            return Err(ConfigError::BaseMisaligned {
                base: self.base,
                cpu_stride: self.cpu_stride,
            });
        }
        let end = cpus
            .checked_mul(self.cpu_stride)
            .and_then(|n| self.base.0.checked_add(n));
        if cpus == 0 || end.is_none() {
            return Err(ConfigError::RegionOverflows {
                base: self.base,
                cpus,
            });
        }
        Ok(())
    }
}

/// The guarded layout of `K` slots per CPU as constants: what both kinds of instance
/// compute addresses with (`K` is a [`QuickMap`](crate::QuickMap)'s `N` windows, or a
/// [`LocalQuickMap`](crate::LocalQuickMap)'s `L` local slots). Every stride is a
/// compile-time power of two, so finding the address of a slot, and the slot of an
/// address, takes shifts by immediates.
pub(crate) struct Guarded<const K: usize>;

impl<const K: usize> Guarded<K> {
    /// The layout's strides (its base is the instance's).
    pub(crate) const SHAPE: WindowLayout = WindowLayout::guarded(VirtAddr(0), K);
    pub(crate) const WINDOW_SHIFT: u32 = Self::SHAPE.window_stride.trailing_zeros();
    pub(crate) const CPU_SHIFT: u32 = Self::SHAPE.cpu_stride.trailing_zeros();

    /// Slot `slot` of `cpu` in the region from `base`.
    #[inline(always)]
    pub(crate) fn window(base: usize, cpu: usize, slot: usize) -> Window {
        let region_page =
            (cpu << (Self::CPU_SHIFT - PAGE_SHIFT)) + (slot << (Self::WINDOW_SHIFT - PAGE_SHIFT));
        Window {
            cpu,
            slot,
            va: VirtAddr(base + (region_page << PAGE_SHIFT)),
            region_page,
        }
    }

    /// The CPU whose slots hold `offset` (a distance from the region's base): equal
    /// to or above the CPU count when the address lies outside the region.
    #[inline(always)]
    pub(crate) fn owner(offset: usize) -> usize {
        offset >> Self::CPU_SHIFT
    }

    /// The slot of its CPU that `offset` falls in (or the guard page after it).
    #[inline(always)]
    pub(crate) fn slot(offset: usize) -> usize {
        (offset & (Self::SHAPE.cpu_stride - 1)) >> Self::WINDOW_SHIFT
    }

    /// Whether `offset` is the first byte of a slot, not of its guard page or padding
    /// (its [`slot`](Self::slot) is below `K`), nor inside a page.
    #[cfg(feature = "contract-checks")]
    #[inline(always)]
    pub(crate) fn is_slot_start(offset: usize) -> bool {
        offset & (Self::SHAPE.window_stride - 1) == 0 && Self::slot(offset) < K
    }
}

/// A linear mapping of physical memory that the kernel keeps at all times.
///
/// Pages inside it with the write-back attribute need no window: `enter` returns their
/// direct-map address with no page-table write and no invalidation (what FreeBSD
/// amd64, arm64 and riscv do below `dmaplimit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectMap {
    /// First physical address mapped.
    pub phys_start: PhysAddr,
    /// Bytes mapped.
    pub len: u64,
    /// Where `phys_start` appears in kernel virtual address space.
    pub virt_start: VirtAddr,
}

/// Why a [`QuickMap`](crate::QuickMap) configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The region must start on a CPU-stride boundary.
    BaseMisaligned {
        /// The base given.
        base: VirtAddr,
        /// The CPU stride given.
        cpu_stride: usize,
    },
    /// The region for this many CPUs would wrap around the address space (or no CPUs).
    RegionOverflows {
        /// The base given.
        base: VirtAddr,
        /// CPUs configured.
        cpus: usize,
    },
    /// The direct map's physical or virtual start is not page aligned.
    DirectMapMisaligned {
        /// The direct map given.
        direct_map: DirectMap,
    },
    /// The direct map and the window region overlap.
    DirectMapOverlapsWindows {
        /// The direct map given.
        direct_map: DirectMap,
    },
    /// The direct map reaches physical addresses at or above the physical limit.
    DirectMapBeyondLimit {
        /// The direct map given.
        direct_map: DirectMap,
        /// The physical limit given.
        phys_limit: PhysAddr,
    },
    /// The physical limit is above what the MMU backend can map.
    PhysLimitBeyondMmu {
        /// The physical limit given.
        phys_limit: PhysAddr,
        /// The backend's [`Mmu::PHYS_LIMIT`](crate::Mmu::PHYS_LIMIT).
        mmu_limit: PhysAddr,
    },
    /// Another instance already took this CPU's [`CpuWindows`](crate::CpuWindows):
    /// each instance needs an array of its own, for the life of the program.
    WindowsAlreadyInUse {
        /// The index, in the array given, of the first state already taken.
        cpu: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::BaseMisaligned { base, cpu_stride } => {
                write!(f, "quickmap: window region base {base} is not aligned to the CPU stride {cpu_stride:#x}")
            }
            ConfigError::RegionOverflows { base, cpus } => {
                write!(f, "quickmap: a window region at {base} for {cpus} CPUs is empty or wraps the address space")
            }
            ConfigError::DirectMapMisaligned { direct_map } => {
                write!(
                    f,
                    "quickmap: direct map {direct_map:?} does not start on page boundaries"
                )
            }
            ConfigError::DirectMapOverlapsWindows { direct_map } => {
                write!(
                    f,
                    "quickmap: direct map {direct_map:?} overlaps the window region"
                )
            }
            ConfigError::DirectMapBeyondLimit {
                direct_map,
                phys_limit,
            } => {
                write!(
                    f,
                    "quickmap: direct map {direct_map:?} reaches past the physical limit {phys_limit}"
                )
            }
            ConfigError::PhysLimitBeyondMmu {
                phys_limit,
                mmu_limit,
            } => {
                write!(
                    f,
                    "quickmap: physical limit {phys_limit} is above the MMU backend's limit {mmu_limit}"
                )
            }
            ConfigError::WindowsAlreadyInUse { cpu } => {
                write!(
                    f,
                    "quickmap: the CpuWindows of CPU {cpu} already serve another QuickMap; give \
                     each instance its own array (a `static` per instance)"
                )
            }
        }
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_view_ends_on_the_last_window_before_the_cpus_last_guard_page() {
        for windows in 1..=32 {
            let layout = WindowLayout::guarded(VirtAddr(0), windows);
            let pages = WindowLayout::max_view_pages(windows);
            assert_eq!(WindowLayout::windows_for_view(pages), windows);
            assert_eq!(WindowLayout::windows_for_view(pages + 1), windows + 1);
            // From window 0, its last page is the last window's page...
            assert_eq!(
                layout.window_va(0, 0).add((pages - 1) * PAGE_SIZE),
                layout.window_va(0, windows - 1)
            );
            // ...and every page a view holds lies inside its CPU's stride.
            assert!(pages * PAGE_SIZE < layout.cpu_stride);
        }
    }

    #[test]
    fn guarded_layouts_give_each_cpu_whole_cache_lines_of_entries() {
        for windows in 1..=32 {
            let layout = WindowLayout::guarded(VirtAddr(0), windows);
            assert!(layout.cpu_stride.is_power_of_two() && layout.window_stride.is_power_of_two());
            assert!(
                layout.cpu_stride >= PTES_PER_CACHE_LINE * PAGE_SIZE,
                "{windows} windows"
            );
            assert!(
                windows * layout.window_stride <= layout.cpu_stride,
                "{windows} windows fit"
            );
            assert_eq!(
                layout.window_stride,
                2 * PAGE_SIZE,
                "a guard page after each window"
            );
        }
    }

    #[test]
    fn the_region_ends_right_after_the_last_cpus_last_guard_page_and_padding() {
        let base = VirtAddr(0xffff_c000_0000_0000);
        for windows in 1..=32 {
            let layout = WindowLayout::guarded(base, windows);
            for cpus in 1..=9 {
                let len = layout.region_len(cpus);
                let end = base.add(len);
                let last = layout.window_va(cpus - 1, windows - 1);
                // The last window and its guard page lie inside the region...
                assert!(
                    last.add(2 * PAGE_SIZE) <= end,
                    "{cpus} CPUs x {windows} windows: the last guard page ends past {end}"
                );
                // ...and the region is not a page longer than the CPUs' strides: a
                // next CPU would start exactly at its end.
                assert_eq!(layout.window_va(cpus, 0), end, "{cpus} CPUs x {windows}");
                assert_eq!(layout.region_pages(cpus) * PAGE_SIZE, len);
                assert_eq!(len % PAGE_SIZE, 0);
            }
        }
        assert_eq!(
            WindowLayout::guarded(base, 4).region_len(16),
            128 * PAGE_SIZE
        );
        assert_eq!(WindowLayout::guarded(base, 32).region_pages(8), 512);
    }

    #[test]
    #[should_panic(expected = "quickmap: the window region's length overflows a usize")]
    fn a_region_longer_than_the_address_space_is_refused() {
        let _ = WindowLayout::guarded(VirtAddr(0), 4).region_len(usize::MAX / 4);
    }
}
