//! Behaviour that mutation testing showed no other test checked.
//!
//! Each test here pins down code whose mutants survived the rest of the suite: the
//! `u64` accessors and raw pointer of [`Mapping`], the bounds of its byte accesses,
//! the forwarding of a page's memory attribute through `&H`, and the x86_64 entry
//! encoding, which is checked here against the literal bit positions of the Intel SDM
//! rather than against the crate's own constants.

mod common;

use common::phys_page;
use quickmap::arch::x86_64::{
    attribute_of, pat_index, window_pte, PAT_MSR_VALUE, PTE_ACCESSED, PTE_ADDRESS_MASK, PTE_DIRTY,
    PTE_GLOBAL, PTE_NO_EXECUTE, PTE_PAT, PTE_PCD, PTE_PRESENT, PTE_PWT, PTE_USER, PTE_WRITABLE,
};
use quickmap::sim::{SimConfig, SimMachine, SimPage, DIRECT_MAP_BASE};
use quickmap::{HeldPage, MemoryAttribute, PhysAddr, VirtAddr, PAGE_SIZE};

/// Bind `$mapping` to a window mapping of a page of high memory and run `$body`.
///
/// A macro rather than a function so that the tests never name the guard's type.
macro_rules! on_a_window {
    (|$mapping:ident| $body:expr) => {{
        let machine = SimMachine::new(SimConfig::default());
        let quickmap = machine.quickmap::<4>();
        let page = SimPage::high_memory(&machine, 0);
        let $mapping = quickmap.map(&page);
        assert!(
            $mapping.va() >= quickmap.layout().base,
            "high memory takes a window"
        );
        $body
    }};
}

// ---------------------------------------------------------------------------------------
// `Mapping::read_le_u64`, `Mapping::write_le_u64` (and the native-endian `read_u64`,
// `write_u64`, which tests/typed.rs covers with the other widths)
// ---------------------------------------------------------------------------------------

/// Offsets the `u64` accessors are tried at: both ends of the page, aligned and not.
const U64_OFFSETS: [usize; 6] = [0, 8, 13, 2048, 4087, 4088];

/// A page whose every 8-byte run is distinct: byte `i` is a mix of `i` and `pfn`.
fn distinct_bytes(pfn: usize) -> Vec<u8> {
    (0..PAGE_SIZE)
        .map(|i| (i.wrapping_mul(167) ^ (i >> 8) ^ pfn.wrapping_mul(31)) as u8)
        .collect()
}

#[test]
fn read_le_u64_returns_the_little_endian_value_at_each_offset() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let window_page = SimPage::high_memory(&machine, 1);
    let direct_page = SimPage::new(3);
    for page in [window_page, direct_page] {
        let pfn = (page.pa.0 as usize) / PAGE_SIZE;
        let bytes = distinct_bytes(pfn);
        machine.phys_write(page.pa, &bytes);
        let mapping = quickmap.map(&page);
        for offset in U64_OFFSETS {
            let word: [u8; 8] = bytes[offset..offset + 8].try_into().unwrap();
            assert_eq!(
                mapping.read_le_u64(offset),
                u64::from_le_bytes(word),
                "read_le_u64({offset}) of {:?}",
                page.pa
            );
            assert_eq!(
                mapping.read_u64(offset),
                u64::from_ne_bytes(word),
                "read_u64({offset}) of {:?}",
                page.pa
            );
        }
    }
}

#[test]
fn read_le_u64_reads_the_first_byte_as_the_least_significant() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::high_memory(&machine, 0);
    let ascending = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    let descending = [0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10];
    machine.phys_write(page.pa, &ascending);
    machine.phys_write(PhysAddr(page.pa.0 + 4088), &descending);
    let mapping = quickmap.map(&page);
    assert_eq!(mapping.read_le_u64(0), 0xefcd_ab89_6745_2301);
    assert_eq!(mapping.read_le_u64(4088), 0x1032_5476_98ba_dcfe);
    assert_eq!(
        mapping.read_le_u64(8),
        0,
        "the rest of the page is still zero"
    );
}

#[test]
fn write_le_u64_stores_little_endian_bytes_in_physical_memory() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    for page in [SimPage::high_memory(&machine, 2), SimPage::new(4)] {
        let mapping = quickmap.map(&page);
        mapping.write_le_u64(0, 0x0102_0304_0506_0708);
        mapping.write_le_u64(13, 0x1122_3344_5566_7788);
        mapping.write_le_u64(4088, 0xf0e0_d0c0_b0a0_9080);
        drop(mapping);
        let memory = phys_page(&machine, page.pa);
        assert_eq!(
            memory[..8],
            [0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]
        );
        assert_eq!(memory[8..13], [0; 5], "bytes between the writes untouched");
        assert_eq!(
            memory[13..21],
            [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
        assert_eq!(
            memory[4088..],
            [0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0]
        );
    }
}

#[test]
fn write_u64_then_read_u64_round_trips() {
    on_a_window!(|mapping| {
        for (index, offset) in U64_OFFSETS.into_iter().enumerate() {
            let value = 0x9e37_79b9_7f4a_7c15_u64.rotate_left(index as u32 * 7);
            mapping.write_u64(offset, value);
            assert_eq!(mapping.read_u64(offset), value, "offset {offset}");
        }
    });
}

// ---------------------------------------------------------------------------------------
// `Mapping::as_mut_ptr`
// ---------------------------------------------------------------------------------------

#[test]
fn as_mut_ptr_points_at_the_window() {
    on_a_window!(|mapping| {
        let pointer = mapping.as_mut_ptr();
        assert!(!pointer.is_null());
        assert_eq!(pointer as usize, mapping.va().0);
    });
}

#[test]
fn as_mut_ptr_points_at_the_direct_map_address() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let page = SimPage::new(7);
    let mapping = quickmap.map(&page);
    assert_eq!(mapping.va(), VirtAddr(DIRECT_MAP_BASE + 7 * PAGE_SIZE));
    let pointer = mapping.as_mut_ptr();
    assert!(!pointer.is_null());
    assert_eq!(pointer as usize, mapping.va().0);
}

// ---------------------------------------------------------------------------------------
// Bounds of byte accesses (`checked_range`)
// ---------------------------------------------------------------------------------------

#[test]
#[should_panic(
    expected = "quickmap: access outside the page: 0 bytes at offset 4097 run past the 4096-byte page"
)]
fn empty_read_past_the_end_of_the_page_panics() {
    on_a_window!(|mapping| mapping.read(4097, &mut []));
}

#[test]
#[should_panic(
    expected = "quickmap: access outside the page: 0 bytes at offset 4097 run past the 4096-byte page"
)]
fn empty_write_past_the_end_of_the_page_panics() {
    on_a_window!(|mapping| mapping.write(4097, &[]));
}

#[test]
#[should_panic(
    expected = "quickmap: access outside the page: 0 bytes at offset 5000 run past the 4096-byte page"
)]
fn empty_fill_past_the_end_of_the_page_panics() {
    on_a_window!(|mapping| mapping.fill(5000, 0, 0));
}

#[test]
#[should_panic(
    expected = "quickmap: access outside the page: 0 bytes at offset 4097 run past the 4096-byte page"
)]
fn empty_compare_past_the_end_of_the_page_panics() {
    on_a_window!(|mapping| {
        let _ = mapping.compare(4097, &[]);
    });
}

#[test]
#[should_panic(
    expected = "quickmap: access outside the page: 8 bytes at offset 4090 run past the 4096-byte page"
)]
fn read_u64_straddling_the_end_of_the_page_panics() {
    on_a_window!(|mapping| {
        mapping.read_u64(4090);
    });
}

#[test]
#[should_panic(
    expected = "quickmap: access outside the page: 8 bytes at offset 4089 run past the 4096-byte page"
)]
fn write_u64_straddling_the_end_of_the_page_panics() {
    on_a_window!(|mapping| mapping.write_u64(4089, 0));
}

#[test]
fn accesses_that_end_exactly_at_the_end_of_the_page_are_allowed() {
    on_a_window!(|mapping| {
        mapping.read(4096, &mut []);
        mapping.write(4096, &[]);
        mapping.fill(4096, 0, 0xff);
        assert_eq!(mapping.compare(4096, &[]), Ok(()));
        mapping.write(0, &[0x5a; PAGE_SIZE]);
        let mut whole = [0u8; PAGE_SIZE];
        mapping.read(0, &mut whole);
        assert!(whole.iter().all(|&byte| byte == 0x5a));
        mapping.fill(4095, 1, 0xa5);
        assert_eq!(mapping.compare(4095, &[0xa5]), Ok(()));
    });
}

// ---------------------------------------------------------------------------------------
// `<&H as HeldPage>`
// ---------------------------------------------------------------------------------------

#[test]
fn a_reference_to_a_page_forwards_every_attribute_and_the_address() {
    for attribute in MemoryAttribute::ALL {
        let page = SimPage {
            attribute,
            ..SimPage::new(9)
        };
        let by_ref = &page;
        assert_eq!(HeldPage::memory_attribute(&by_ref), attribute);
        assert_eq!(<&SimPage as HeldPage>::memory_attribute(&by_ref), attribute);
        assert_eq!(
            <&&SimPage as HeldPage>::memory_attribute(&&by_ref),
            attribute
        );
        assert_eq!(HeldPage::phys_addr(&by_ref), PhysAddr(9 * PAGE_SIZE as u64));
        assert_eq!(
            <&&SimPage as HeldPage>::phys_addr(&&by_ref),
            PhysAddr(9 * PAGE_SIZE as u64)
        );
    }
}

#[test]
fn a_write_combining_page_mapped_through_a_reference_takes_a_window() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    let page = SimPage {
        attribute: MemoryAttribute::WriteCombining,
        ..SimPage::new(2) // inside the direct map
    };
    let by_ref = &page;

    let mapping = quickmap.map(&by_ref);
    assert!(
        mapping.va() >= quickmap.layout().base,
        "a write-combining page must not come back at its write-back direct-map address"
    );
    assert_eq!(
        machine.window_pte(mapping.va()),
        Some((page.pa, MemoryAttribute::WriteCombining))
    );
    drop(mapping);

    // The FreeBSD layer is generic over the page too.
    let va = quickmap.enter(&by_ref);
    assert!(va >= quickmap.layout().base);
    assert_eq!(
        machine.window_pte(va),
        Some((page.pa, MemoryAttribute::WriteCombining))
    );
    // SAFETY: `va` was returned by `enter` just above, in this context, and is not used
    // again.
    unsafe { quickmap.remove(va) };
    assert_eq!(machine.window_pte(va), None);
}

#[test]
fn every_attribute_but_write_back_mapped_through_a_reference_takes_a_window() {
    let machine = SimMachine::new(SimConfig::default());
    let quickmap = machine.quickmap::<4>();
    for attribute in MemoryAttribute::ALL {
        let page = SimPage {
            attribute,
            ..SimPage::new(6)
        };
        let by_ref = &page;
        let mapping = quickmap.map(&by_ref);
        if attribute == MemoryAttribute::WriteBack {
            assert_eq!(mapping.va(), VirtAddr(DIRECT_MAP_BASE + 6 * PAGE_SIZE));
        } else {
            assert!(mapping.va() >= quickmap.layout().base, "{attribute:?}");
            assert_eq!(
                machine.window_pte(mapping.va()),
                Some((page.pa, attribute)),
                "{attribute:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// x86_64 entries, against the SDM's bit positions
// ---------------------------------------------------------------------------------------

/// Each attribute, the PAT index FreeBSD's layout gives it (WB=0, WT=1, UC-=2, UC=3,
/// WP=4, WC=5), and the memory-type encoding the SDM assigns that type (UC=0x00,
/// WC=0x01, WT=0x04, WP=0x05, WB=0x06, UC-=0x07).
const PAT_LAYOUT: [(MemoryAttribute, u64, u64); 6] = [
    (MemoryAttribute::WriteBack, 0, 0x06),
    (MemoryAttribute::WriteThrough, 1, 0x04),
    (MemoryAttribute::WeakUncacheable, 2, 0x07),
    (MemoryAttribute::Uncacheable, 3, 0x00),
    (MemoryAttribute::WriteProtected, 4, 0x05),
    (MemoryAttribute::WriteCombining, 5, 0x01),
];

/// PWT (bit 3), PCD (bit 4) and PAT (bit 7) of a 4 KiB entry for PAT index `index`.
const fn cache_bits_of_index(index: u64) -> u64 {
    ((index & 1) * 0x8) | (((index >> 1) & 1) * 0x10) | (((index >> 2) & 1) * 0x80)
}

/// The PAT index a 4 KiB entry selects: `PAT << 2 | PCD << 1 | PWT`.
const fn index_of_entry(pte: u64) -> u64 {
    (((pte >> 7) & 1) << 2) | (((pte >> 4) & 1) << 1) | ((pte >> 3) & 1)
}

#[test]
fn pte_constants_have_the_sdm_bit_positions() {
    assert_eq!(PTE_PRESENT, 0x1);
    assert_eq!(PTE_WRITABLE, 0x2);
    assert_eq!(PTE_USER, 0x4);
    assert_eq!(PTE_PWT, 0x8);
    assert_eq!(PTE_PCD, 0x10);
    assert_eq!(PTE_ACCESSED, 0x20);
    assert_eq!(PTE_DIRTY, 0x40);
    assert_eq!(PTE_PAT, 0x80);
    assert_eq!(PTE_GLOBAL, 0x100);
    assert_eq!(PTE_NO_EXECUTE, 1 << 63);
    assert_eq!(PTE_ADDRESS_MASK, 0x000f_ffff_ffff_f000);
}

#[test]
fn pat_msr_value_is_freebsds_layout() {
    assert_eq!(PAT_MSR_VALUE, 0x0007_0105_0007_0406);
    for (attribute, index, memory_type) in PAT_LAYOUT {
        assert_eq!(pat_index(attribute), index, "{attribute:?}");
        assert_eq!(
            (PAT_MSR_VALUE >> (8 * index)) & 0xff,
            memory_type,
            "{attribute:?}"
        );
    }
}

#[test]
fn window_entries_have_the_sdm_bits_set_and_clear() {
    let pa = PhysAddr(0x1234_5000);
    for attribute in MemoryAttribute::ALL {
        let pte = window_pte(pa, attribute);
        assert_eq!(pte & 0x1, 0x1, "{attribute:?}: present (bit 0)");
        assert_eq!(pte & 0x2, 0x2, "{attribute:?}: writable (bit 1)");
        assert_eq!(pte & 0x4, 0, "{attribute:?}: user (bit 2) must be clear");
        assert_eq!(pte & 0x20, 0x20, "{attribute:?}: accessed (bit 5) preset");
        assert_eq!(pte & 0x40, 0x40, "{attribute:?}: dirty (bit 6) preset");
        assert_eq!(
            pte & 0x100,
            0,
            "{attribute:?}: global (bit 8) must be clear"
        );
        assert_eq!(pte & 0xe00, 0, "{attribute:?}: bits 9..11 unused");
        assert_eq!(
            pte & 0x7ff0_0000_0000_0000,
            0,
            "{attribute:?}: bits 52..62 clear"
        );
        assert_eq!(
            pte & (1 << 63),
            1 << 63,
            "{attribute:?}: no-execute (bit 63)"
        );
        assert_eq!(
            pte & 0x000f_ffff_ffff_f000,
            0x1234_5000,
            "{attribute:?}: address (bits 12..51)"
        );
    }
}

#[test]
fn window_entries_select_each_attribute_through_pat_pcd_and_pwt() {
    let pa = PhysAddr(0x0000_7654_3210_f000);
    for (attribute, index, memory_type) in PAT_LAYOUT {
        let pte = window_pte(pa, attribute);
        let expected = 0x0000_7654_3210_f000 | 0x63 | (1 << 63) | cache_bits_of_index(index);
        assert_eq!(pte, expected, "{attribute:?}: {pte:#x} != {expected:#x}");
        assert_eq!(index_of_entry(pte), index, "{attribute:?}");
        assert_eq!(
            (PAT_MSR_VALUE >> (8 * index_of_entry(pte))) & 0xff,
            memory_type,
            "{attribute:?} selects the wrong PAT entry"
        );
    }
}

#[test]
fn window_entries_match_literal_values() {
    let pa = PhysAddr(0x1234_5000);
    let expected = [
        (MemoryAttribute::WriteBack, 0x8000_0000_1234_5063),
        (MemoryAttribute::WriteThrough, 0x8000_0000_1234_506b),
        (MemoryAttribute::WeakUncacheable, 0x8000_0000_1234_5073),
        (MemoryAttribute::Uncacheable, 0x8000_0000_1234_507b),
        (MemoryAttribute::WriteProtected, 0x8000_0000_1234_50e3),
        (MemoryAttribute::WriteCombining, 0x8000_0000_1234_50eb),
    ];
    for (attribute, pte) in expected {
        assert_eq!(window_pte(pa, attribute), pte, "{attribute:?}");
    }
}

#[test]
fn window_entries_take_only_address_bits_12_to_51_from_the_frame() {
    let highest_frame = window_pte(PhysAddr(0x000f_ffff_ffff_f000), MemoryAttribute::WriteBack);
    assert_eq!(highest_frame, 0x800f_ffff_ffff_f063);
    let all_ones = window_pte(PhysAddr(u64::MAX), MemoryAttribute::WriteBack);
    assert_eq!(all_ones, 0x800f_ffff_ffff_f063);
    let frame_zero = window_pte(PhysAddr(0), MemoryAttribute::WriteBack);
    assert_eq!(frame_zero, 0x8000_0000_0000_0063);
}

#[test]
fn attribute_of_reads_the_pat_index_from_the_sdm_bits() {
    let by_index = [
        MemoryAttribute::WriteBack,
        MemoryAttribute::WriteThrough,
        MemoryAttribute::WeakUncacheable,
        MemoryAttribute::Uncacheable,
        MemoryAttribute::WriteProtected,
        MemoryAttribute::WriteCombining,
        MemoryAttribute::WeakUncacheable,
        MemoryAttribute::Uncacheable,
    ];
    for (index, attribute) in (0u64..).zip(by_index) {
        let pte = 0x8000_0000_1234_5063 | cache_bits_of_index(index);
        assert_eq!(attribute_of(pte), attribute, "PAT index {index}");
    }
}
