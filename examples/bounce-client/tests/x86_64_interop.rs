//! Point 6, the feature `x86_64`: a `HeldFrame` from the `x86_64` crate's `PhysFrame`,
//! the address conversions, the region-size helpers that size the window region's page
//! tables, and `X86Mmu::from_page_table` over a leaked `PageTable` (built on the host,
//! never used: its `invalidate_local` is `invlpg`).

use bounce_client::host_mmu::{host_quickmap, OneCpu};
use bounce_client::x86_boot::{window_tables, RegionTooLarge};
use quickmap::arch::x86_64::{window_pte, HeldFrame, X86Mmu};
use quickmap::{
    ConfigError, HeldPage, MemoryAttribute, PhysAddr, VirtAddr, WindowLayout, PAGE_SIZE,
};
use x86_64::structures::paging::{PageTable, PhysFrame, Size2MiB, Size4KiB};

const BASE: VirtAddr = VirtAddr(0xffff_c000_0000_0000);

#[test]
fn a_held_frame_of_the_x86_64_crate_maps_like_any_held_page() {
    let quickmap = host_quickmap::<4>(32, 8).unwrap();
    let pa = quickmap.mmu().high_frame(3).pa();
    let frame = PhysFrame::<Size4KiB>::containing_address(x86_64::PhysAddr::new(pa.0 + 0x123));
    // SAFETY: the host model never frees, swaps or reuses a frame while it lives, and
    // the mapping below borrows the quickmap that owns it; RAM is mapped write-back.
    let held = unsafe { HeldFrame::new(frame) };
    assert_eq!(held.phys_addr(), pa, "the frame's first byte");
    quickmap.map(&held).write(0, b"x86_64 frame");
    let mut back = [0u8; 12];
    quickmap.mmu().phys_read(pa, &mut back);
    assert_eq!(&back, b"x86_64 frame");
    assert_eq!(held.into_frame(), frame);

    // With an attribute of its own, the window's entry carries it.
    // SAFETY: as above; the model maps any frame with any attribute.
    let combining = unsafe { HeldFrame::with_attribute(frame, MemoryAttribute::WriteCombining) };
    let mapping = quickmap.map(&combining);
    assert_eq!(
        quickmap.mmu().entry(mapping.va()),
        Some((pa, MemoryAttribute::WriteCombining))
    );
}

#[test]
fn addresses_convert_both_ways_and_invalid_ones_are_refused() {
    let pa: PhysAddr = x86_64::PhysAddr::new(0x1234_5000).into();
    assert_eq!(pa, PhysAddr(0x1234_5000));
    assert_eq!(
        x86_64::PhysAddr::try_from(pa).unwrap().as_u64(),
        0x1234_5000
    );
    let refused = x86_64::PhysAddr::try_from(PhysAddr(1 << 52)).unwrap_err();
    assert_eq!(refused.0, 1 << 52);

    let huge = PhysFrame::<Size2MiB>::containing_address(x86_64::PhysAddr::new(0x1234_5678));
    assert_eq!(PhysAddr::from(huge), PhysAddr(0x1220_0000));

    let va: VirtAddr = x86_64::VirtAddr::new(BASE.0 as u64).into();
    assert_eq!(va, BASE);
    assert_eq!(
        x86_64::VirtAddr::try_from(BASE.add(PAGE_SIZE))
            .unwrap()
            .as_u64(),
        BASE.0 as u64 + 4096
    );
    // Not canonical: refused, never sign-extended into another address.
    assert!(x86_64::VirtAddr::try_from(VirtAddr(0x0000_c000_0000_0000)).is_err());
}

#[test]
fn the_conversion_errors_of_the_x86_64_crate_need_a_map_err_before_a_question_mark() {
    // `PhysAddrNotValid` and `VirtAddrNotValid` implement `Debug` only (not `Display`
    // nor `Error`), so `?` into a `Box<dyn Error>` needs a conversion first.
    fn bus_address(pa: PhysAddr) -> Result<x86_64::PhysAddr, Box<dyn std::error::Error>> {
        Ok(x86_64::PhysAddr::try_from(pa).map_err(|error| format!("{error:?}"))?)
    }
    assert!(bus_address(PhysAddr(0x1000)).is_ok());
    let error = bus_address(PhysAddr(u64::MAX)).unwrap_err();
    assert!(error.to_string().contains("PhysAddrNotValid"), "{error}");
}

#[test]
fn the_region_helpers_size_the_page_tables_of_the_window_region() {
    // 16 CPUs with 4 guarded windows each: 128 entries, one 512-entry table.
    const SIXTEEN: bounce_client::x86_boot::WindowTables = window_tables::<4>(BASE, 16);
    const _: () = assert!(SIXTEEN.region_pages == 128 && SIXTEEN.tables == 1);
    assert_eq!(SIXTEEN.layout, WindowLayout::guarded(BASE, 4));
    assert_eq!(
        SIXTEEN.region_pages * PAGE_SIZE,
        SIXTEEN.layout.region_len(16)
    );
    // 64 CPUs fill the table exactly; 65 need a second one.
    assert_eq!(window_tables::<4>(BASE, 64).tables, 1);
    assert_eq!(window_tables::<4>(BASE, 65).tables, 2);
    // 8 CPUs with 32 windows each fill one table too.
    assert_eq!(window_tables::<32>(BASE, 8).region_pages, 512);
    // A region that does not start on a 2 MiB boundary may straddle two tables.
    assert_eq!(window_tables::<4>(BASE.add(511 * PAGE_SIZE), 1).tables, 2);
}

#[test]
fn x86mmu_is_built_over_a_leaked_page_table() {
    let layout = WindowLayout::guarded(BASE, 4);
    let table: &'static mut PageTable = Box::leak(Box::new(PageTable::new()));
    // SAFETY: nothing is ever mapped or invalidated through `mmu` (this is the host,
    // where `invlpg` faults); only its entries are read back.
    let mmu = unsafe { X86Mmu::from_page_table(layout.base, layout.region_pages(16), table) };
    assert_eq!(mmu.read_pte(layout.window_va(15, 3)), 0);
    // The entry a window of it would get: supervisor-only, no-execute, the frame's PAT bits.
    let pte = window_pte(PhysAddr(0x7000), MemoryAttribute::WriteCombining);
    assert_eq!(pte & 0x000f_ffff_ffff_f000, 0x7000);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_kernel_sets_quickmap_up_over_x86mmu_and_errors_come_back_boxed() {
    use bounce_client::x86_boot::x86_quickmap;

    // SAFETY: nothing is mapped through the returned quickmap (the host cannot run
    // `invlpg`); it is only inspected.
    let quickmap =
        unsafe { x86_quickmap::<_, 4>(BASE, 16, None, PhysAddr(1 << 40), OneCpu::default()) }
            .unwrap();
    assert_eq!(quickmap.cpu_count(), 16);
    assert_eq!(quickmap.layout(), WindowLayout::guarded(BASE, 4));
    assert_eq!(
        quickmap.mmu().read_pte(quickmap.layout().window_va(15, 3)),
        0
    );
    assert_eq!(quickmap.windows_in_use(15), 0);

    // Too many CPUs for one table: our own error, through `Box<dyn Error>`.
    // SAFETY: as above; refused before anything is built.
    let error =
        unsafe { x86_quickmap::<_, 4>(BASE, 65, None, PhysAddr(1 << 40), OneCpu::default()) }
            .err()
            .unwrap();
    let too_large = error.downcast_ref::<RegionTooLarge>().unwrap();
    assert_eq!(too_large.tables.tables, 2);

    // A physical limit beyond what x86_64 paging maps: quickmap's `ConfigError`, `?`'d.
    // SAFETY: as above.
    let error =
        unsafe { x86_quickmap::<_, 4>(BASE, 1, None, PhysAddr(1 << 53), OneCpu::default()) }
            .err()
            .unwrap();
    assert_eq!(
        error.downcast_ref::<ConfigError>(),
        Some(&ConfigError::PhysLimitBeyondMmu {
            phys_limit: PhysAddr(1 << 53),
            mmu_limit: PhysAddr(1 << 52)
        })
    );
    assert!(
        error.to_string().contains("above the MMU backend's limit"),
        "{error}"
    );
}
