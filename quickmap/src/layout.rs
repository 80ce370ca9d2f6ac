//! Where windows and the direct map live in kernel virtual address space.

use core::fmt;

use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLayout {
    /// Address of CPU 0's first window; aligned to `cpu_stride`.
    pub base: VirtAddr,
    /// Distance between two windows of one CPU. `2 * PAGE_SIZE` leaves an unmapped guard
    /// page after each window, so running off the end of a window faults.
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
        }
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

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
}
