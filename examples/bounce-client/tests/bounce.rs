//! Point 7: our own host `Platform` and `Mmu` (not the sim), used for a busdma-style
//! bounce copy: a driver's buffer copied into bounce pages through `map`, the device's
//! answer copied back out through `enter`/`remove`.

use bounce_client::bounce::{BounceMap, TooFewPages};
use bounce_client::host_mmu::{host_quickmap, HostCounters, HostQuickMap};
use quickmap::sim::{SimConfig, SimMachine, SimPage};
use quickmap::{HeldPage, MemoryAttribute, PhysAddr, PAGE_SIZE};

/// 32 frames, the first 8 direct-mapped.
fn quickmap() -> HostQuickMap<4> {
    host_quickmap(32, 8).unwrap()
}

/// The bytes of the bounce pages of a transfer of `len` bytes, as the device reads them.
fn device_reads<H: HeldPage>(quickmap: &HostQuickMap<4>, pages: &[H], len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    for (page, chunk) in pages.iter().zip(bytes.chunks_mut(PAGE_SIZE)) {
        quickmap.mmu().phys_read(page.phys_addr(), chunk);
    }
    bytes
}

/// The device writes `bytes` into the bounce pages by DMA.
fn device_writes<H: HeldPage>(quickmap: &HostQuickMap<4>, pages: &[H], bytes: &[u8]) {
    for (page, chunk) in pages.iter().zip(bytes.chunks(PAGE_SIZE)) {
        quickmap.mmu().phys_write(page.phys_addr(), chunk);
    }
}

#[test]
fn a_driver_buffer_bounces_through_high_memory_and_back() {
    let quickmap = quickmap();
    let mmu = quickmap.mmu();
    // Scattered bounce pages above the direct map: each copy takes a window.
    let pages = [mmu.high_frame(3), mmu.high_frame(0), mmu.high_frame(5)];
    let request: Vec<u8> = (0..10_000).map(|index| (index * 13 % 256) as u8).collect();
    let map = BounceMap::new(&pages, request.len()).unwrap();

    // BUS_DMASYNC_PREWRITE: the device then reads the request from the bounce pages.
    map.sync_prewrite(&quickmap, &request);
    assert_eq!(device_reads(&quickmap, &pages, request.len()), request);

    // The device answers in the same pages; BUS_DMASYNC_POSTREAD copies it out.
    let answer: Vec<u8> = request.iter().map(|byte| !byte).collect();
    device_writes(&quickmap, &pages, &answer);
    let mut driver_buffer = vec![0u8; answer.len()];
    map.sync_postread(&quickmap, &mut driver_buffer);
    assert_eq!(driver_buffer, answer);

    // One window per page and direction, each cleared and invalidated at once; nothing
    // left mapped, no critical section left open.
    assert_eq!(
        mmu.counters(),
        HostCounters {
            entries_written: 6,
            entries_cleared: 6,
            invalidations: 6,
            full_flushes: 0
        }
    );
    assert_eq!(mmu.entries_present(), 0);
    assert_eq!(quickmap.windows_in_use(0), 0);
    assert_eq!(quickmap.platform().critical_depth(), 0);
}

#[test]
fn direct_mapped_bounce_pages_take_no_window() {
    // Bounce pages in low memory (where a device with a 32-bit address limit needs
    // them) come back at their direct-map address: no entry written.
    let quickmap = quickmap();
    let pages = [quickmap.mmu().frame(2), quickmap.mmu().frame(6)];
    let request = vec![0x3c; PAGE_SIZE + 1];
    let map = BounceMap::new(&pages, request.len()).unwrap();
    map.sync_prewrite(&quickmap, &request);
    assert_eq!(device_reads(&quickmap, &pages, request.len()), request);
    let mut back = vec![0u8; request.len()];
    map.sync_postread(&quickmap, &mut back);
    assert_eq!(back, request);
    assert_eq!(quickmap.mmu().counters(), HostCounters::default());
}

#[test]
fn an_uncached_bounce_page_takes_a_window_even_inside_the_direct_map() {
    // A write-back direct map must not alias an uncached page: quickmap maps it in a
    // window with its own attribute, which the model's entry records.
    let quickmap = quickmap();
    let page = quickmap
        .mmu()
        .frame(2)
        .with_attribute(MemoryAttribute::Uncacheable);
    let mapping = quickmap.map(&page);
    assert_eq!(
        quickmap.mmu().entry(mapping.va()),
        Some((page.pa(), MemoryAttribute::Uncacheable))
    );
}

#[test]
fn the_page_work_runs_on_the_host_model_too() {
    // zero_page, copy_page and copy_to_pages / copy_from_pages go through the same
    // byte movers, across windows and the direct map.
    let quickmap = quickmap();
    let mmu = quickmap.mmu();
    let (low, high) = (mmu.frame(1), mmu.high_frame(1));
    mmu.phys_write(low.pa(), &[0xff; PAGE_SIZE]);
    quickmap.copy_page(&low, &high);
    let mut byte = [0u8];
    mmu.phys_read(PhysAddr(high.pa().0 + 4095), &mut byte);
    assert_eq!(byte, [0xff]);
    quickmap.zero_page(&high);
    mmu.phys_read(PhysAddr(high.pa().0 + 4095), &mut byte);
    assert_eq!(byte, [0]);
    let run = [mmu.high_frame(4), mmu.high_frame(2)];
    quickmap.copy_to_pages(&run, PAGE_SIZE - 2, b"abcd");
    let mut across = [0u8; 4];
    quickmap.copy_from_pages(&run, PAGE_SIZE - 2, &mut across);
    assert_eq!(&across, b"abcd");
    assert_eq!(mmu.entries_present(), 0);
}

#[test]
fn a_transfer_larger_than_its_pages_is_refused() {
    let quickmap = quickmap();
    let pages = [quickmap.mmu().high_frame(0)];
    let error = BounceMap::new(&pages, PAGE_SIZE + 1).unwrap_err();
    assert_eq!(
        error,
        TooFewPages {
            len: PAGE_SIZE + 1,
            pages: 1
        }
    );
    assert!(error.to_string().ends_with("give at least 2"), "{error}");
}

#[test]
fn the_same_driver_code_runs_on_the_simulated_machine_with_deferred_invalidation() {
    // The bounce code is generic over the Platform, the Mmu and the invalidation
    // policy: a Deferred pool is what the busdma case is made for.
    let machine = SimMachine::new(SimConfig::default());
    let pool = machine.quickmap_deferred::<32>();
    let pages: Vec<_> = (0..3).map(|i| SimPage::high_memory(&machine, i)).collect();
    let request = vec![0x42; 3 * PAGE_SIZE];
    let map = BounceMap::new(&pages, request.len()).unwrap();
    for _ in 0..3 {
        map.sync_prewrite(&pool, &request);
    }
    let mut back = vec![0u8; request.len()];
    map.sync_postread(&pool, &mut back);
    assert_eq!(back, request);
    // The pages entered again took their windows back: 3 entries written in all.
    assert_eq!(machine.counters().pte_writes, 3);
    pool.flush_local();
    assert_eq!(pool.windows_in_use(0), 0);
}
