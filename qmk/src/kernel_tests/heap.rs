use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::kernel_test;
use crate::memory::heap;

kernel_test! {
    /// Vec, Box and BTreeMap work, large allocations succeed, and everything
    /// is returned to the heap when dropped.
    fn collections_allocate_and_free() {
        // Other CPUs may allocate or free meanwhile (a thread of an earlier test
        // being reaped, say), which shifts the global usage. A leak shifts it in
        // every round; background activity only now and then.
        const ROUNDS: usize = 20;
        let mut shifts = Vec::new();
        for _ in 0..ROUNDS {
            let (used_before, _) = heap::usage();
            exercise_collections();
            let (used_after, _) = heap::usage();
            if used_after == used_before {
                return;
            }
            shifts.push(used_after as i64 - used_before as i64);
        }
        panic!("every allocation was freed: the heap usage changed in all {ROUNDS} rounds, by {shifts:?} bytes");
    }
}

/// Allocates and frees with Vec, Box and BTreeMap, including a 1 MiB block.
fn exercise_collections() {
    let mut numbers: Vec<u64> = (0..10_000).collect();
    numbers.retain(|n| n % 3 == 0);
    assert_eq!(numbers.len(), 3334);
    assert_eq!(numbers.iter().sum::<u64>(), 3 * (3333 * 3334 / 2));

    let boxed = Box::new([7u8; 4096]);
    assert!(boxed.iter().all(|&byte| byte == 7));

    let mut map = BTreeMap::new();
    for key in 0..1000u32 {
        map.insert(key.wrapping_mul(2_654_435_761), key);
    }
    for key in (0..1000u32).step_by(2) {
        assert_eq!(map.remove(&key.wrapping_mul(2_654_435_761)), Some(key));
    }
    assert_eq!(map.len(), 500);

    let large = alloc::vec![0xa5u8; 1 << 20];
    assert_eq!(
        large.iter().map(|&b| u64::from(b)).sum::<u64>(),
        0xa5 * (1 << 20)
    );
}
