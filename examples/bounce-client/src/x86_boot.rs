//! What a kernel built on the `x86_64` crate does at boot to set quickmap up (quickmap's
//! feature `x86_64`): size the window region, give it a last-level page table, and build
//! the x86_64 backend from that table.
//!
//! Sizing runs anywhere. quickmap implements `Mmu` for [`X86Mmu`] on x86_64 targets
//! only, so `x86_quickmap` exists there only; building it runs on an x86_64 host too,
//! while *using* the backend needs ring 0 (it executes `invlpg`), which is why
//! `x86_quickmap` is `unsafe`. On the host, the tests build one and map nothing.

use std::error::Error;

use quickmap::arch::x86_64::{leaf_tables, X86Mmu};
use quickmap::{VirtAddr, WindowLayout};
#[cfg(target_arch = "x86_64")]
use {
    quickmap::{Config, CpuWindows, DirectMap, PhysAddr, Platform, QuickMap},
    x86_64::structures::paging::PageTable,
};

/// The page-table budget of a window region: its layout, how many last-level entries it
/// takes, and how many last-level tables hold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowTables {
    /// Where the windows are (quickmap's guarded layout for `N` windows per CPU).
    pub layout: WindowLayout,
    /// Last-level entries of the region ([`WindowLayout::region_pages`]).
    pub region_pages: usize,
    /// 512-entry tables that hold them ([`leaf_tables`]); [`X86Mmu`] takes one.
    pub tables: usize,
}

/// The budget of the region of `N` windows per CPU for `cpus` CPUs from `base`.
///
/// A `const fn`, so a kernel can check its budget at compile time.
pub const fn window_tables<const N: usize>(base: VirtAddr, cpus: usize) -> WindowTables {
    let layout = WindowLayout::guarded(base, N);
    WindowTables {
        layout,
        region_pages: layout.region_pages(cpus),
        tables: leaf_tables(base, layout.region_len(cpus)),
    }
}

/// Why [`x86_quickmap`] refused: the region needs more than the one table [`X86Mmu`]
/// takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionTooLarge {
    /// The budget asked for.
    pub tables: WindowTables,
}

impl std::fmt::Display for RegionTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "x86_boot: a window region of {} pages at {} spans {} page tables, and the x86_64 \
             backend takes one; start it on a 2 MiB boundary, or give it fewer CPUs or windows",
            self.tables.region_pages, self.tables.layout.base, self.tables.tables
        )
    }
}

impl Error for RegionTooLarge {}

/// quickmap for `cpus` CPUs with `N` windows each from `base`, over the x86_64 backend
/// on a fresh last-level page table (leaked: a kernel keeps it forever).
///
/// # Errors
///
/// [`RegionTooLarge`] when the region needs more than one table, and quickmap's
/// [`ConfigError`](quickmap::ConfigError) when it refuses the configuration, both as a
/// `Box<dyn Error>`.
///
/// # Safety
///
/// Nothing is mapped through the returned quickmap unless:
/// 1. the new table is installed as the last-level table through which every CPU
///    translates the region (the caller installs it; [`QuickMap::mmu`] and
///    [`X86Mmu::read_pte`] reach it), for as long as the quickmap lives;
/// 2. the code runs at CPL 0 with `EFER.NXE` set and `IA32_PAT` holding
///    [`PAT_MSR_VALUE`](quickmap::arch::x86_64::PAT_MSR_VALUE);
/// 3. `platform` keeps [`Platform`]'s promises for `cpus` CPUs.
///
/// (On the host, building is fine as long as nothing is ever mapped.)
#[cfg(target_arch = "x86_64")]
pub unsafe fn x86_quickmap<P: Platform, const N: usize>(
    base: VirtAddr,
    cpus: usize,
    direct_map: Option<DirectMap>,
    phys_limit: PhysAddr,
    platform: P,
) -> Result<QuickMap<P, X86Mmu, N>, Box<dyn Error>> {
    let budget = window_tables::<N>(base, cpus);
    if budget.tables != 1 {
        return Err(RegionTooLarge { tables: budget }.into());
    }
    let table: &'static mut PageTable = Box::leak(Box::new(PageTable::new()));
    // SAFETY: 1. and 3. of `from_page_table` are this function's promises 1 and 2 (the
    // backend is used only if they hold); 2. `base` is the quickmap's window base, and
    // `region_pages` is its layout's for `cpus` CPUs.
    let mmu = unsafe { X86Mmu::from_page_table(base, budget.region_pages, table) };
    let windows: &'static [CpuWindows<N>] = Box::leak(
        (0..cpus)
            .map(|_| CpuWindows::new())
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let config = Config {
        window_base: base,
        direct_map,
        phys_limit,
    };
    Ok(QuickMap::new(config, platform, mmu, windows)?)
}
