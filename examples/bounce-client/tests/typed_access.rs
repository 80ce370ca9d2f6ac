//! Point 1: typed access on the guard: the native-endian integer accessors,
//! `read_obj`/`write_obj` of a plain-data struct whose zerocopy traits this crate
//! derives, and the unsafe slice views with SAFETY comments that meet their contract.

#[macro_use]
mod common;

use bounce_client::bounce::BounceMap;
use bounce_client::descriptor::{
    internet_checksum, page_checksum, page_checksum_copied, DmaSegment,
};
use bounce_client::host_mmu::{host_quickmap, HostQuickMap};
use common::assert_rule;
use quickmap::{PhysAddr, PAGE_SIZE};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

fn quickmap() -> HostQuickMap<4> {
    host_quickmap(32, 8).unwrap()
}

/// The bytes of physical memory at `pa`, as a device would see them.
fn phys<const LEN: usize>(quickmap: &HostQuickMap<4>, pa: PhysAddr) -> [u8; LEN] {
    let mut bytes = [0u8; LEN];
    quickmap.mmu().phys_read(pa, &mut bytes);
    bytes
}

#[test]
fn native_endian_integers_land_in_the_frame_in_the_hosts_byte_order() {
    let quickmap = quickmap();
    let page = quickmap.mmu().high_frame(2);
    let pa = page.pa();
    let mapping = quickmap.map(&page);
    // Odd offsets, and the last bytes of the page: no alignment is needed.
    mapping.write_u16(1, 0xbeef);
    mapping.write_u32(5, 0x0123_4567);
    mapping.write_u64(PAGE_SIZE - 8, 0x89ab_cdef_0011_2233);
    assert_eq!(mapping.read_u16(1), 0xbeef);
    assert_eq!(mapping.read_u32(5), 0x0123_4567);
    assert_eq!(mapping.read_u64(PAGE_SIZE - 8), 0x89ab_cdef_0011_2233);
    drop(mapping);
    // The frame holds the bytes in the target's order (`to_ne_bytes`).
    assert_eq!(
        phys::<2>(&quickmap, PhysAddr(pa.0 + 1)),
        0xbeef_u16.to_ne_bytes()
    );
    assert_eq!(
        phys::<4>(&quickmap, PhysAddr(pa.0 + 5)),
        0x0123_4567_u32.to_ne_bytes()
    );
    let last = PhysAddr(pa.0 + (PAGE_SIZE - 8) as u64);
    assert_eq!(
        phys::<8>(&quickmap, last),
        0x89ab_cdef_0011_2233_u64.to_ne_bytes()
    );

    // What a device wrote, read back as integers of the host's order.
    quickmap
        .mmu()
        .phys_write(PhysAddr(pa.0 + 100), &[1, 2, 3, 4, 5, 6, 7, 8]);
    let mapping = quickmap.map(&page);
    assert_eq!(mapping.read_u16(100), u16::from_ne_bytes([1, 2]));
    assert_eq!(mapping.read_u32(101), u32::from_ne_bytes([2, 3, 4, 5]));
    assert_eq!(
        mapping.read_u64(100),
        u64::from_ne_bytes([1, 2, 3, 4, 5, 6, 7, 8])
    );
    // The little-endian accessors agree with `from_le_bytes` on every host.
    assert_eq!(mapping.read_le_u32(101), u32::from_le_bytes([2, 3, 4, 5]));
}

#[test]
fn a_plain_data_struct_round_trips_through_read_obj_and_write_obj() {
    let quickmap = quickmap();
    let page = quickmap.mmu().high_frame(0);
    let segment = DmaSegment {
        addr: 0x1_2345_6000,
        len: 3000,
        flags: DmaSegment::LAST,
    };
    let mapping = quickmap.map(&page);
    mapping.write_obj(3, &segment); // not aligned for `u64`: fine
    mapping.write_obj(PAGE_SIZE - DmaSegment::SIZE, &segment);
    assert_eq!(mapping.read_obj::<DmaSegment>(3), segment);
    assert_eq!(
        mapping.read_obj::<DmaSegment>(PAGE_SIZE - DmaSegment::SIZE),
        segment
    );
    // Arrays of it too.
    let pair = [
        segment,
        DmaSegment {
            flags: 0,
            ..segment
        },
    ];
    mapping.write_obj(64, &pair);
    assert_eq!(mapping.read_obj::<[DmaSegment; 2]>(64), pair);
    drop(mapping);
    // The frame holds exactly the struct's bytes, and a device reads them back.
    let bytes = phys::<{ DmaSegment::SIZE }>(&quickmap, PhysAddr(page.pa().0 + 3));
    assert_eq!(bytes, segment.as_bytes());
    assert_eq!(DmaSegment::read_from_bytes(&bytes).unwrap(), segment);
}

#[test]
fn an_object_past_the_page_is_refused_like_bytes() {
    let quickmap = quickmap();
    let page = quickmap.mmu().high_frame(0);
    let mapping = quickmap.map(&page);
    let (caught, line) = catch!(mapping.read_obj::<DmaSegment>(PAGE_SIZE - 8));
    let remedy = "keep offset + length within the page";
    assert_rule(&caught, "access outside the page", file!(), line, remedy);
    let segment = DmaSegment::new_zeroed();
    let (caught, line) = catch!(mapping.write_obj(PAGE_SIZE - 15, &segment));
    assert_rule(&caught, "access outside the page", file!(), line, remedy);
}

#[test]
fn bounce_segments_describe_their_pages_in_the_ring() {
    let quickmap = quickmap();
    let mmu = quickmap.mmu();
    let pages = [mmu.high_frame(7), mmu.high_frame(2), mmu.high_frame(4)];
    let ring = mmu.frame(1); // direct-mapped, like a ring allocated once at attach
    let map = BounceMap::new(&pages, 2 * PAGE_SIZE + 100).unwrap();
    assert_eq!(map.write_segments(&quickmap, &ring, 5), 3);
    let mapping = quickmap.map(&ring);
    let segments: [DmaSegment; 3] = mapping.read_obj(5 * DmaSegment::SIZE);
    let expected = [
        (pages[0].pa().0, PAGE_SIZE as u32, 0),
        (pages[1].pa().0, PAGE_SIZE as u32, 0),
        (pages[2].pa().0, 100, DmaSegment::LAST),
    ];
    for (segment, (addr, len, flags)) in segments.iter().zip(expected) {
        assert_eq!(*segment, DmaSegment { addr, len, flags });
    }
    // Descriptors 0 to 4 were left alone.
    assert_eq!(mapping.compare(0, &[0; 5 * DmaSegment::SIZE]), Ok(()));
}

#[test]
fn the_slice_view_checksums_a_direct_mapped_page_in_place() {
    let quickmap = quickmap();
    let page = quickmap.mmu().frame(3); // write-back, inside the direct map
    let contents: Vec<u8> = (0..PAGE_SIZE).map(|index| (index * 7 + 1) as u8).collect();
    quickmap.mmu().phys_write(page.pa(), &contents);
    let writes_before = quickmap.mmu().counters().entries_written;

    let mapping = quickmap.map(&page);
    // The direct map of the host model is this process's own memory: the address is
    // one this CPU can dereference, which the slice views require.
    assert!(quickmap.mmu().is_host_address(mapping.va(), PAGE_SIZE));
    assert_eq!(
        quickmap.mmu().counters().entries_written,
        writes_before,
        "no window"
    );
    // SAFETY: what `page_checksum` and `Mapping::as_slice` require, while it runs:
    // 1. no other mapping of the frame is written: one CPU, this test holds the only
    //    mapping, and no device does DMA to it;
    // 2. nothing is written through `mapping` during the call;
    // 3. the frame is memory (the host model's `Vec` of frames), not device registers;
    // 4. `mapping.va()` is a host address (checked just above).
    let in_place = unsafe { page_checksum(&mapping) };
    assert_eq!(in_place, internet_checksum(&contents));
    assert_eq!(in_place, page_checksum_copied(&mapping));

    let mut mapping = mapping;
    {
        // SAFETY: what `Mapping::as_mut_slice` requires, while `bytes` lives:
        // 1. no other mapping of the frame is read or written, and no device does DMA;
        // 2. no raw pointer from `as_mut_ptr` is used;
        // 3. the frame is memory;
        // 4. the address is a host address (checked above).
        let bytes = unsafe { mapping.as_mut_slice() };
        bytes[..4].copy_from_slice(b"ring");
        bytes[PAGE_SIZE - 1] = 0x5a;
    }
    assert_eq!(mapping.read_u32(0), u32::from_ne_bytes(*b"ring"));
    drop(mapping);
    assert_eq!(phys::<4>(&quickmap, page.pa()), *b"ring");
    assert_eq!(phys::<1>(&quickmap, PhysAddr(page.pa().0 + 4095)), [0x5a]);
}

#[test]
fn window_addresses_of_the_host_model_are_not_host_addresses() {
    // Why the slice views are used on direct-mapped pages only here: a window address
    // exists only inside the model's byte movers.
    let quickmap = quickmap();
    let page = quickmap.mmu().high_frame(0);
    let mapping = quickmap.map(&page);
    assert!(!quickmap.mmu().is_host_address(mapping.va(), 1));
    assert_eq!(
        quickmap.mmu().entry(mapping.va()).map(|(pa, _)| pa),
        Some(page.pa())
    );
}
