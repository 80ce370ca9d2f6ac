//! The typed accessors of [`Mapping`]: integers in the target's byte order and
//! little-endian, plain-data objects (feature `zerocopy`), the unsafe slices, the
//! range rule they all share, and `#[track_caller]`: a panic names the caller's line.
#![cfg(feature = "sim")]

mod common;

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use common::phys_page;
use quickmap::sim::{SimConfig, SimMachine, SimPage, WINDOW_BASE};
use quickmap::{
    Config, DirectMap, MemoryAttribute, Mismatch, Mmu, PhysAddr, Strict, VirtAddr, Window,
    PAGE_SIZE,
};

/// Bind `$mapping` to a window mapping of a page of high memory, `$machine` and `$page`
/// to the machine and the page, and run `$body`.
///
/// A macro rather than a function so that the tests never name the guard's type.
macro_rules! on_a_window {
    (|$machine:ident, $page:ident, $mapping:ident| $body:expr) => {{
        let $machine = SimMachine::new(SimConfig::default());
        let quickmap = $machine.quickmap::<4>();
        let $page = SimPage::high_memory(&$machine, 0);
        let $mapping = quickmap.map(&$page);
        assert!(
            $mapping.va() >= quickmap.layout().base,
            "high memory takes a window"
        );
        $body
    }};
}

// ---------------------------------------------------------------------------------------
// Byte order
// ---------------------------------------------------------------------------------------

/// Bytes `01 02 03 04 05 06 07 08`: read in either byte order they give different
/// integers, so the tests below tell the orders apart.
const ASCENDING: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];

/// What the native accessors read from [`ASCENDING`] on this target.
fn native_of_ascending() -> (u16, u32, u64) {
    if cfg!(target_endian = "little") {
        (0x0201, 0x0403_0201, 0x0807_0605_0403_0201)
    } else {
        (0x0102, 0x0102_0304, 0x0102_0304_0506_0708)
    }
}

#[test]
fn native_accessors_read_in_the_targets_byte_order() {
    on_a_window!(|machine, page, mapping| {
        let (u16_value, u32_value, u64_value) = native_of_ascending();
        for offset in [0, 13, PAGE_SIZE - 8] {
            machine.phys_write(PhysAddr(page.pa.0 + offset as u64), &ASCENDING);
            assert_eq!(mapping.read_u16(offset), u16_value, "offset {offset}");
            assert_eq!(mapping.read_u32(offset), u32_value, "offset {offset}");
            assert_eq!(mapping.read_u64(offset), u64_value, "offset {offset}");
            // Not the other byte order, whichever the target's is.
            assert_ne!(mapping.read_u16(offset), u16_value.swap_bytes());
            assert_ne!(mapping.read_u32(offset), u32_value.swap_bytes());
            assert_ne!(mapping.read_u64(offset), u64_value.swap_bytes());
        }
    });
}

#[test]
fn little_endian_accessors_read_the_first_byte_as_the_least_significant() {
    on_a_window!(|machine, page, mapping| {
        for offset in [0, 13, PAGE_SIZE - 8] {
            machine.phys_write(PhysAddr(page.pa.0 + offset as u64), &ASCENDING);
            assert_eq!(mapping.read_le_u16(offset), 0x0201, "offset {offset}");
            assert_eq!(mapping.read_le_u32(offset), 0x0403_0201, "offset {offset}");
            assert_eq!(
                mapping.read_le_u64(offset),
                0x0807_0605_0403_0201,
                "offset {offset}"
            );
        }
    });
}

#[test]
fn native_accessors_write_in_the_targets_byte_order() {
    on_a_window!(|machine, page, mapping| {
        let (u16_value, u32_value, u64_value) = native_of_ascending();
        mapping.write_u16(0, u16_value);
        mapping.write_u32(16, u32_value);
        mapping.write_u64(PAGE_SIZE - 8, u64_value);
        let memory = phys_page(&machine, page.pa);
        assert_eq!(memory[..2], ASCENDING[..2]);
        assert_eq!(memory[16..20], ASCENDING[..4]);
        assert_eq!(memory[PAGE_SIZE - 8..], ASCENDING);
    });
}

#[test]
fn little_endian_accessors_write_the_least_significant_byte_first() {
    on_a_window!(|machine, page, mapping| {
        mapping.write_le_u16(1, 0x0201);
        mapping.write_le_u32(17, 0x0403_0201);
        mapping.write_le_u64(PAGE_SIZE - 8, 0x0807_0605_0403_0201);
        let memory = phys_page(&machine, page.pa);
        assert_eq!(memory[1..3], ASCENDING[..2]);
        assert_eq!(memory[17..21], ASCENDING[..4]);
        assert_eq!(memory[PAGE_SIZE - 8..], ASCENDING);
    });
}

// ---------------------------------------------------------------------------------------
// Every offset that fits, and nothing but the integer's bytes
// ---------------------------------------------------------------------------------------

/// For every offset at which a `$ty` fits in the page: `$write` then `$read` round-trip,
/// the bytes in physical memory are `$to_bytes` of the value, and the bytes around them
/// are untouched.
macro_rules! round_trips_at_every_offset {
    ($name:ident, $ty:ty, $read:ident, $write:ident, $to_bytes:ident) => {
        #[test]
        fn $name() {
            const SIZE: usize = core::mem::size_of::<$ty>();
            on_a_window!(|machine, page, mapping| {
                mapping.fill(0, PAGE_SIZE, 0xee);
                for offset in 0..=PAGE_SIZE - SIZE {
                    let value = (0x9e37_79b9_7f4a_7c15_u64.rotate_left(offset as u32) as $ty) | 1;
                    mapping.$write(offset, value);
                    assert_eq!(mapping.$read(offset), value, "offset {offset}");
                    if offset % 509 == 0 || offset >= PAGE_SIZE - SIZE - 1 {
                        let memory = phys_page(&machine, page.pa);
                        assert_eq!(memory[offset..offset + SIZE], value.$to_bytes());
                        assert!(memory[..offset].iter().all(|&byte| byte == 0xee));
                        assert!(memory[offset + SIZE..].iter().all(|&byte| byte == 0xee));
                    }
                    mapping.fill(offset, SIZE, 0xee);
                }
            });
        }
    };
}

round_trips_at_every_offset!(u16_native, u16, read_u16, write_u16, to_ne_bytes);
round_trips_at_every_offset!(u32_native, u32, read_u32, write_u32, to_ne_bytes);
round_trips_at_every_offset!(u64_native, u64, read_u64, write_u64, to_ne_bytes);
round_trips_at_every_offset!(u16_little, u16, read_le_u16, write_le_u16, to_le_bytes);
round_trips_at_every_offset!(u32_little, u32, read_le_u32, write_le_u32, to_le_bytes);
round_trips_at_every_offset!(u64_little, u64, read_le_u64, write_le_u64, to_le_bytes);

// ---------------------------------------------------------------------------------------
// The range rule, and where its panic points (`#[track_caller]`)
// ---------------------------------------------------------------------------------------

/// Serialises the tests that replace the process-wide panic hook.
static PANIC_HOOK: Mutex<()> = Mutex::new(());

/// What a panic said, and where it said it happened.
#[derive(Debug)]
struct Caught {
    message: String,
    file: String,
    line: u32,
}

/// Run `f`, which must panic, and report its message and location.
///
/// The panic hook is process-wide and other tests run in parallel threads, so the hook
/// records only this thread's panic (it hands the others to the previous hook), and
/// the previous hook is back in place before this returns.
fn caught_panic(f: impl FnOnce()) -> Caught {
    let _one_at_a_time = PANIC_HOOK.lock().unwrap_or_else(PoisonError::into_inner);
    let this_thread = thread::current().id();
    let location = Arc::new(Mutex::new(None));
    let previous = Arc::new(panic::take_hook());
    panic::set_hook({
        let location = Arc::clone(&location);
        let previous = Arc::clone(&previous);
        Box::new(move |info| {
            if thread::current().id() == this_thread {
                *location.lock().unwrap_or_else(PoisonError::into_inner) =
                    info.location().map(|at| (at.file().to_owned(), at.line()));
            } else {
                previous(info);
            }
        })
    });
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    drop(panic::take_hook());
    let previous = Arc::try_unwrap(previous)
        .unwrap_or_else(|_| unreachable!("the hook that shared it is dropped"));
    panic::set_hook(previous);

    let payload = result.expect_err("the call should have panicked");
    let (file, line) = location
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .expect("the panic hook saw the panic");
    Caught {
        message: message_of(payload.as_ref()),
        file,
        line,
    }
}

fn message_of(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else {
        panic!("a panic payload that is not a message")
    }
}

/// Evaluate and discard.
fn ignore<T>(_value: T) {}

/// `$call` panics with the rule `access outside the page` for `$len` bytes at `$offset`
/// (the message starts with the rule and its values; advice may follow), and the panic
/// is reported at the line of this invocation (keep it on one line).
macro_rules! panics_here {
    ($call:expr, $len:expr, $offset:expr) => {{
        let caught = caught_panic(|| ignore($call));
        let rule = format!(
            "quickmap: access outside the page: {} bytes at offset {} run past the 4096-byte page",
            $len, $offset
        );
        assert!(
            caught.message.starts_with(&rule),
            "{}: {:?} does not start with {rule:?}",
            stringify!($call),
            caught.message
        );
        assert_eq!(
            (caught.file.as_str(), caught.line),
            (file!(), line!()),
            "{} must panic at the caller's line",
            stringify!($call)
        );
    }};
}

#[test]
fn integer_accessors_fit_exactly_at_the_end_of_the_page() {
    on_a_window!(|_machine, _page, mapping| {
        mapping.write_u16(PAGE_SIZE - 2, 0xabcd);
        mapping.write_le_u16(PAGE_SIZE - 2, 0xabcd);
        mapping.write_u32(PAGE_SIZE - 4, 0xabcd_ef01);
        mapping.write_le_u32(PAGE_SIZE - 4, 0xabcd_ef01);
        mapping.write_u64(PAGE_SIZE - 8, 0x0123_4567_89ab_cdef);
        mapping.write_le_u64(PAGE_SIZE - 8, 0x0123_4567_89ab_cdef);
        assert_eq!(mapping.read_le_u16(PAGE_SIZE - 2), 0x0123);
        assert_eq!(mapping.read_le_u32(PAGE_SIZE - 4), 0x0123_4567);
        assert_eq!(mapping.read_le_u64(PAGE_SIZE - 8), 0x0123_4567_89ab_cdef);
        assert_eq!(
            mapping.read_u64(PAGE_SIZE - 8),
            0x0123_4567_89ab_cdef_u64.to_le()
        );
    });
}

#[test]
fn integer_accessors_one_byte_past_the_end_panic_at_the_callers_line() {
    on_a_window!(|_machine, _page, mapping| {
        panics_here!(mapping.read_u16(4095), 2, 4095);
        panics_here!(mapping.read_le_u16(4095), 2, 4095);
        panics_here!(mapping.write_u16(4095, 0), 2, 4095);
        panics_here!(mapping.write_le_u16(4095, 0), 2, 4095);
        panics_here!(mapping.read_u32(4093), 4, 4093);
        panics_here!(mapping.read_le_u32(4093), 4, 4093);
        panics_here!(mapping.write_u32(4093, 0), 4, 4093);
        panics_here!(mapping.write_le_u32(4093, 0), 4, 4093);
        panics_here!(mapping.read_u64(4089), 8, 4089);
        panics_here!(mapping.read_le_u64(4089), 8, 4089);
        panics_here!(mapping.write_u64(4089, 0), 8, 4089);
        panics_here!(mapping.write_le_u64(4089, 0), 8, 4089);
    });
}

#[test]
fn offsets_past_the_page_panic_without_overflowing() {
    on_a_window!(|_machine, _page, mapping| {
        panics_here!(mapping.read_u16(PAGE_SIZE), 2, PAGE_SIZE);
        panics_here!(mapping.read_u32(usize::MAX), 4, usize::MAX);
        panics_here!(mapping.write_le_u64(usize::MAX - 3, 0), 8, usize::MAX - 3);
        panics_here!(mapping.read(usize::MAX, &mut [0; 2]), 2, usize::MAX);
    });
}

#[test]
fn byte_accessors_panic_at_the_callers_line() {
    on_a_window!(|_machine, _page, mapping| {
        panics_here!(mapping.read(4000, &mut [0; 97]), 97, 4000);
        panics_here!(mapping.write(4097, &[]), 0, 4097);
        panics_here!(mapping.fill(1, PAGE_SIZE, 0), PAGE_SIZE, 1);
        panics_here!(mapping.compare(4090, &[0; 7]), 7, 4090);
    });
}

#[test]
fn a_failed_access_changes_nothing() {
    on_a_window!(|machine, page, mapping| {
        mapping.fill(0, PAGE_SIZE, 0x5a);
        panics_here!(mapping.write_u64(4092, u64::MAX), 8, 4092);
        panics_here!(mapping.write_le_u32(4094, u32::MAX), 4, 4094);
        assert!(phys_page(&machine, page.pa)
            .iter()
            .all(|&byte| byte == 0x5a));
    });
}

// ---------------------------------------------------------------------------------------
// `Mismatch` is an error
// ---------------------------------------------------------------------------------------

#[test]
fn mismatch_is_a_std_error_with_its_display() {
    fn first_difference(
        mapping_result: Result<(), Mismatch>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        mapping_result?;
        Ok(())
    }
    on_a_window!(|_machine, _page, mapping| {
        mapping.write(100, &[1, 2, 3]);
        let error = first_difference(mapping.compare(100, &[1, 2, 4])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "byte at offset 0x66: expected 0x04, found 0x03"
        );
        assert!(error.source().is_none());
        let mismatch = error.downcast::<Mismatch>().expect("a Mismatch");
        assert_eq!(
            *mismatch,
            Mismatch {
                offset: 102,
                expected: 4,
                found: 3
            }
        );
        let as_core: &dyn core::error::Error = &*mismatch;
        assert_eq!(
            as_core.to_string(),
            "byte at offset 0x66: expected 0x04, found 0x03"
        );
    });
}

// ---------------------------------------------------------------------------------------
// Plain-data objects (feature `zerocopy`)
// ---------------------------------------------------------------------------------------

#[cfg(feature = "zerocopy")]
mod objects {
    use super::*;
    use zerocopy::byteorder::{big_endian, little_endian};

    #[test]
    fn an_object_round_trips_at_an_unaligned_offset() {
        on_a_window!(|machine, page, mapping| {
            let record: [u32; 3] = [0x0102_0304, 0xdead_beef, 7];
            for offset in [13, 1, PAGE_SIZE - 12, PAGE_SIZE - 13] {
                mapping.fill(0, PAGE_SIZE, 0xcc);
                mapping.write_obj(offset, &record);
                assert_eq!(mapping.read_obj::<[u32; 3]>(offset), record, "{offset}");
                let memory = phys_page(&machine, page.pa);
                let expected: Vec<u8> = record.iter().flat_map(|word| word.to_ne_bytes()).collect();
                assert_eq!(memory[offset..offset + 12], expected[..], "{offset}");
                assert!(memory[..offset].iter().all(|&byte| byte == 0xcc));
                assert!(memory[offset + 12..].iter().all(|&byte| byte == 0xcc));
            }
        });
    }

    #[test]
    fn objects_read_what_the_bytes_say_in_their_own_byte_order() {
        on_a_window!(|machine, page, mapping| {
            machine.phys_write(PhysAddr(page.pa.0 + 4091), &ASCENDING[..4]);
            let big: big_endian::U32 = mapping.read_obj(4091);
            let little: little_endian::U32 = mapping.read_obj(4091);
            let native: u32 = mapping.read_obj(4091);
            assert_eq!(big.get(), 0x0102_0304);
            assert_eq!(little.get(), 0x0403_0201);
            assert_eq!(native, mapping.read_u32(4091));
            mapping.write_obj(4092, &big_endian::U32::new(0x0a0b_0c0d));
            assert_eq!(
                phys_page(&machine, page.pa)[4092..],
                [0x0a, 0x0b, 0x0c, 0x0d]
            );
        });
    }

    #[test]
    fn a_whole_page_object_and_an_empty_one_fit() {
        on_a_window!(|_machine, _page, mapping| {
            let words: [u64; PAGE_SIZE / 8] = core::array::from_fn(|index| index as u64 * 3);
            mapping.write_obj(0, &words);
            assert_eq!(mapping.read_obj::<[u64; PAGE_SIZE / 8]>(0), words);
            assert_eq!(mapping.read_u64(8 * 100), 300);
            mapping.write_obj(PAGE_SIZE, &());
            mapping.read_obj::<()>(PAGE_SIZE);
            mapping.read_obj::<[u8; 0]>(PAGE_SIZE);
        });
    }

    #[test]
    fn objects_past_the_end_panic_at_the_callers_line() {
        on_a_window!(|_machine, _page, mapping| {
            panics_here!(mapping.read_obj::<[u32; 3]>(4085), 12, 4085);
            panics_here!(mapping.write_obj(4085, &[0u32; 3]), 12, 4085);
            panics_here!(mapping.read_obj::<[u64; PAGE_SIZE / 8]>(1), PAGE_SIZE, 1);
            panics_here!(mapping.read_obj::<()>(PAGE_SIZE + 1), 0, PAGE_SIZE + 1);
            panics_here!(mapping.write_obj(usize::MAX, &0u8), 1, usize::MAX);
        });
    }
}

// ---------------------------------------------------------------------------------------
// The unsafe slices, over memory a CPU can dereference
// ---------------------------------------------------------------------------------------

/// An MMU for the host's own memory: every page the tests map lies in a "direct map"
/// that is a host allocation, so no window is ever entered and the default byte
/// movers (which dereference) apply. The simulated machine's addresses cannot be
/// dereferenced, so its mappings cannot lend out slices.
struct HostMemory;

// SAFETY: no window is ever entered (the entry methods panic); the byte movers are the
// defaults, which access exactly the host memory addressed.
unsafe impl Mmu for HostMemory {
    fn set_window_pte(&self, _window: Window, _pa: PhysAddr, _attribute: MemoryAttribute) {
        unreachable!("host memory is reached through its direct map only")
    }
    fn clear_window_pte(&self, _window: Window) {
        unreachable!("host memory is reached through its direct map only")
    }
    fn invalidate_local(&self, _va: VirtAddr) {
        unreachable!("host memory is reached through its direct map only")
    }
}

/// `PAGES` page-aligned pages of host memory, freed on drop.
struct HostPages {
    base: *mut u8,
}

const PAGES: usize = 4;

impl HostPages {
    fn layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(PAGES * PAGE_SIZE, PAGE_SIZE).unwrap()
    }

    fn new() -> HostPages {
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(Self::layout()) };
        assert!(!base.is_null(), "out of memory");
        HostPages { base }
    }

    /// quickmap's configuration with these pages as the direct map of physical pages
    /// `0 .. PAGES`.
    fn config(&self) -> Config {
        Config {
            window_base: VirtAddr(WINDOW_BASE),
            direct_map: Some(DirectMap {
                phys_start: PhysAddr(0),
                len: (PAGES * PAGE_SIZE) as u64,
                virt_start: VirtAddr(self.base as usize),
            }),
            phys_limit: PhysAddr((PAGES * PAGE_SIZE) as u64),
        }
    }

    /// A copy of page `pfn`.
    fn page(&self, pfn: usize) -> Vec<u8> {
        assert!(pfn < PAGES);
        let mut copy = vec![0; PAGE_SIZE];
        // SAFETY: page `pfn` lies inside the allocation, and no mapping is written
        // meanwhile (the tests call this with no slice alive).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.add(pfn * PAGE_SIZE),
                copy.as_mut_ptr(),
                PAGE_SIZE,
            )
        };
        copy
    }
}

impl Drop for HostPages {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, and freed once.
        unsafe { std::alloc::dealloc(self.base, Self::layout()) }
    }
}

#[test]
fn as_slice_lends_the_page_read_only() {
    let machine = SimMachine::new(SimConfig::default());
    let host = HostPages::new();
    let quickmap =
        machine.quickmap_with::<_, _, 4, Strict>(host.config(), machine.platform(), HostMemory);
    let page = SimPage::new(1);
    let mapping = quickmap.map(&page);
    assert_eq!(
        mapping.va().0,
        host.base as usize + PAGE_SIZE,
        "the direct map"
    );
    let pattern: Vec<u8> = (0..PAGE_SIZE).map(|index| (index * 7 + 1) as u8).collect();
    mapping.write(0, &pattern);
    {
        // SAFETY: the page is host memory that nothing else maps or writes, and the
        // guard is not written through while `bytes` lives.
        let bytes = unsafe { mapping.as_slice() };
        assert_eq!(bytes.len(), PAGE_SIZE);
        assert_eq!(bytes.as_ptr(), mapping.as_mut_ptr().cast_const());
        assert_eq!(bytes, &pattern[..]);
        assert_eq!(
            mapping.read_le_u32(8),
            u32::from_le_bytes(bytes[8..12].try_into().unwrap())
        );
    }
    drop(mapping);
    assert_eq!(host.page(1), pattern);
    assert!(host
        .page(0)
        .iter()
        .chain(&host.page(2))
        .all(|&byte| byte == 0));
}

#[test]
fn as_mut_slice_writes_reach_the_page() {
    let machine = SimMachine::new(SimConfig::default());
    let host = HostPages::new();
    let quickmap =
        machine.quickmap_with::<_, _, 4, Strict>(host.config(), machine.platform(), HostMemory);
    let page = SimPage::new(2);
    let mut mapping = quickmap.map(&page);
    {
        // SAFETY: the page is host memory that nothing else maps, reads or writes.
        let bytes = unsafe { mapping.as_mut_slice() };
        assert_eq!(bytes.len(), PAGE_SIZE);
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = (index / 3) as u8;
        }
    }
    assert_eq!(
        mapping.read_u16(4094),
        u16::from_ne_bytes([(4094 / 3) as u8, (4095 / 3) as u8])
    );
    let expected: Vec<u8> = (0..PAGE_SIZE).map(|index| (index / 3) as u8).collect();
    assert_eq!(mapping.compare(0, &expected), Ok(()));
    drop(mapping);
    assert_eq!(host.page(2), expected);
    assert!(host
        .page(1)
        .iter()
        .chain(&host.page(3))
        .all(|&byte| byte == 0));
}
