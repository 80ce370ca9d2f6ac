use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;

use crate::arch::paging;
use crate::arch::{PhysAddr, PhysFrame};
use crate::kernel_test;
use crate::memory::frame_allocator::{self, FrameAllocError, FrameAllocator, Zone, FRAME_SIZE};

fn frame(number: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(number * FRAME_SIZE))
}

/// A private allocator over 256 frames: direct-mapped zone = frames 0..128,
/// usable RAM = frames 16..200 (so 112 + 72 frames are free).
fn small_allocator(bitmap: &mut [u64]) -> FrameAllocator<'_> {
    assert_eq!(bitmap.len(), FrameAllocator::storage_words(256));
    let mut allocator = FrameAllocator::new(bitmap, 128);
    allocator.add_usable_range(
        PhysAddr::new(16 * FRAME_SIZE),
        PhysAddr::new(200 * FRAME_SIZE),
    );
    allocator
}

kernel_test! {
    /// The kernel allocator never hands out one frame twice, keeps each zone
    /// on its side of the direct-map end, and its counts follow every call.
    fn no_double_hand_out_and_exact_accounting() {
        let before = Zone::ALL.map(frame_allocator::counts);
        // 300 frames per zone; none from a zone that is empty (high memory
        // when `dmap` covers all RAM).
        let per_zone = before.map(|counts| counts.free.min(300));
        let direct_map_end = paging::direct_map_end();
        let mut seen = BTreeSet::new();
        let mut handed_out = Vec::new();
        for (zone, count) in Zone::ALL.into_iter().zip(per_zone) {
            for _ in 0..count {
                let frame = frame_allocator::allocate_frame(zone).unwrap();
                let address = frame.start_address();
                match zone {
                    Zone::DirectMapped => assert!(address < direct_map_end),
                    Zone::High => assert!(address >= direct_map_end),
                }
                assert!(seen.insert(address.as_u64()), "frame {:#x} handed out twice", address.as_u64());
                handed_out.push(frame);
            }
        }
        for ((zone, before), count) in Zone::ALL.into_iter().zip(before).zip(per_zone) {
            let now = frame_allocator::counts(zone);
            assert_eq!(now.free, before.free - count, "free count of {zone:?}");
            assert_eq!(now.used(), before.used() + count, "used count of {zone:?}");
        }
        // Direct-mapped frames are really usable memory: tag each one through
        // the direct map, then check no tag was overwritten by another.
        let direct: Vec<_> = handed_out.iter().filter(|f| paging::direct_map_address(f.start_address()).is_some()).collect();
        for frame in &direct {
            let pointer: *mut u64 = paging::direct_map_address(frame.start_address()).unwrap().as_mut_ptr();
            // SAFETY: the frame was just allocated for this test, so nothing
            // else uses it, and it is mapped writable through the direct map.
            unsafe { pointer.write_volatile(frame.start_address().as_u64()) };
        }
        for frame in &direct {
            let pointer: *const u64 = paging::direct_map_address(frame.start_address()).unwrap().as_ptr();
            // SAFETY: as above; the test still owns the frame.
            assert_eq!(unsafe { pointer.read_volatile() }, frame.start_address().as_u64());
        }
        for frame in handed_out {
            frame_allocator::free_frame(frame);
        }
        assert_eq!(Zone::ALL.map(frame_allocator::counts), before, "every frame came back");
    }
}

kernel_test! {
    /// Exhausting a zone is reported as an error naming the zone, leaves the
    /// other zone untouched, and a freed frame can be handed out again.
    fn exhaustion_is_reported() {
        let mut bitmap = vec![0u64; FrameAllocator::storage_words(256)];
        let mut allocator = small_allocator(&mut bitmap);
        // Frames 20..30 stand for the kernel image: out of the allocator.
        allocator.reserve_range(PhysAddr::new(20 * FRAME_SIZE), PhysAddr::new(30 * FRAME_SIZE));
        assert_eq!(allocator.counts(Zone::DirectMapped).managed, 102);
        let mut taken = Vec::new();
        let error = loop {
            match allocator.allocate(Zone::DirectMapped) {
                Ok(frame) => taken.push(frame),
                Err(error) => break error,
            }
        };
        assert_eq!(taken.len(), 102, "frames 16..128 less 20..30 are the direct-mapped zone's RAM");
        assert!(
            taken.iter().all(|f| !(20..30).contains(&(f.start_address().as_u64() / FRAME_SIZE))),
            "reserved frames are never handed out"
        );
        assert_eq!(
            error,
            FrameAllocError::Exhausted { zone: Zone::DirectMapped, requested: 1, free: 0 }
        );
        assert_eq!(allocator.counts(Zone::DirectMapped).free, 0);
        assert_eq!(allocator.counts(Zone::High).free, 72);
        // Exhaustion is sticky until a frame comes back, then that frame is reused.
        assert!(allocator.allocate(Zone::DirectMapped).is_err());
        allocator.free(taken[40]);
        assert_eq!(allocator.allocate(Zone::DirectMapped), Ok(taken[40]));
        let distinct: BTreeSet<_> = taken.iter().map(|f| f.start_address()).collect();
        assert_eq!(distinct.len(), taken.len(), "no frame was handed out twice");
    }
}

kernel_test! {
    /// Contiguous runs are aligned, inside the zone, disjoint from single
    /// frames, and fail when no free run is long enough even though enough
    /// frames are free in total.
    fn contiguous_runs() {
        let mut bitmap = vec![0u64; FrameAllocator::storage_words(256)];
        let mut allocator = small_allocator(&mut bitmap);
        let run = allocator.allocate_contiguous(Zone::High, 16, 16).unwrap();
        let first = run.start.start_address().as_u64() / FRAME_SIZE;
        assert_eq!(first % 16, 0, "run starts on a 16-frame boundary");
        assert!(first >= 128 && first + 16 <= 200, "run lies in the high zone's RAM");
        let single = allocator.allocate(Zone::High).unwrap();
        let single_number = single.start_address().as_u64() / FRAME_SIZE;
        assert!(!(first..first + 16).contains(&single_number), "single frame outside the run");

        // Fragment the direct-mapped zone: take every frame, give back every other one.
        let mut taken = Vec::new();
        while let Ok(frame) = allocator.allocate(Zone::DirectMapped) {
            taken.push(frame);
        }
        for frame in taken.iter().step_by(2) {
            allocator.free(*frame);
        }
        assert_eq!(allocator.counts(Zone::DirectMapped).free, 56);
        assert!(matches!(
            allocator.allocate_contiguous(Zone::DirectMapped, 2, 1),
            Err(FrameAllocError::Exhausted { zone: Zone::DirectMapped, requested: 2, free: 56 })
        ));
        allocator.free_run(run);
        assert_eq!(allocator.counts(Zone::High).free, 71);
    }
}

kernel_test! {
    /// Freeing a frame twice is caught, naming the frame.
    #[should_panic(expected = "freed twice")]
    fn double_free_is_caught() {
        let mut bitmap = vec![0u64; FrameAllocator::storage_words(256)];
        let mut allocator = small_allocator(&mut bitmap);
        let frame = allocator.allocate(Zone::High).unwrap();
        allocator.free(frame);
        allocator.free(frame);
    }
}

kernel_test! {
    /// Freeing a frame that was never usable RAM (frame 210 lies above the
    /// usable range) is caught: it would put non-RAM into circulation.
    #[should_panic(expected = "is not RAM this allocator manages")]
    fn freeing_a_frame_never_handed_out_is_caught() {
        let mut bitmap = vec![0u64; FrameAllocator::storage_words(256)];
        let mut allocator = small_allocator(&mut bitmap);
        allocator.free(frame(210));
    }
}

kernel_test! {
    /// The kernel allocator's contiguous runs: a 2 MiB-aligned run of 512
    /// frames (high ones when there is high memory) comes back whole.
    fn kernel_contiguous_run_round_trip() {
        let zone = if frame_allocator::counts(Zone::High).free >= 1024 {
            Zone::High
        } else {
            Zone::DirectMapped
        };
        let before = frame_allocator::counts(zone);
        let run = frame_allocator::allocate_contiguous(zone, 512, 512).unwrap();
        let range = run.physical_range();
        assert_eq!(range.start.as_u64() % (2 << 20), 0, "2 MiB-aligned");
        assert_eq!(range.end - range.start, 512 * FRAME_SIZE);
        assert_eq!(
            range.start >= paging::direct_map_end(),
            zone == Zone::High,
            "the run lies in the zone asked for"
        );
        assert_eq!(frame_allocator::counts(zone).free, before.free - 512);
        frame_allocator::free_run(run);
        assert_eq!(frame_allocator::counts(zone), before);
    }
}
