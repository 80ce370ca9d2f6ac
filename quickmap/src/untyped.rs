//! Byte movement on untyped memory: memory that may be mapped more than once.
//!
//! A physical page reached through a window may at the same time be mapped by another
//! CPU (a device buffer, a page shared with a hypervisor, a page another thread holds in
//! its own window). Rust references to it would promise exclusivity or immutability the
//! kernel cannot keep, so quickmap never creates one: it moves bytes with volatile
//! accesses on raw pointers, eight bytes at a time where alignment allows. The compiler
//! may neither invent, elide nor merge these accesses, which is what memory outside the
//! Rust abstract machine needs (the same reasoning as Asterinas' `VmReader`/`VmWriter`).
//!
//! That is why [`Mapping`](crate::Mapping) copies: its `read`, `write`, integer and
//! object accessors all come here (through the [`Mmu`](crate::Mmu)'s byte movers), and
//! what they return is the caller's own copy, which no other mapping can change. The
//! unsafe [`Mapping::as_slice`](crate::Mapping::as_slice) and
//! [`Mapping::as_mut_slice`](crate::Mapping::as_mut_slice) are the exception, for a
//! caller who can promise for a while what a reference needs: that no other mapping of
//! the frame writes it (or, for `&mut`, touches it) meanwhile.

use core::ptr;

const WORD: usize = core::mem::size_of::<u64>();

fn misalignment(addr: usize) -> usize {
    addr % WORD
}

/// Copy `dst.len()` bytes from untyped memory at `src` into `dst`.
///
/// # Safety
///
/// `src .. src + dst.len()` must be mapped readable for the duration of the call.
pub unsafe fn read(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    let head = ((WORD - misalignment(src as usize)) % WORD).min(len);
    let words = (len - head) / WORD;
    let mut done = 0;
    while done < head {
        // SAFETY: `src + done` lies inside the readable range (caller's contract).
        dst[done] = unsafe { ptr::read_volatile(src.add(done)) };
        done += 1;
    }
    for _ in 0..words {
        // SAFETY: inside the readable range, and aligned to 8 bytes after `head`.
        let word = unsafe { ptr::read_volatile(src.add(done).cast::<u64>()) };
        dst[done..done + WORD].copy_from_slice(&word.to_ne_bytes());
        done += WORD;
    }
    while done < len {
        // SAFETY: inside the readable range.
        dst[done] = unsafe { ptr::read_volatile(src.add(done)) };
        done += 1;
    }
}

/// Copy `src` into untyped memory at `dst`.
///
/// # Safety
///
/// `dst .. dst + src.len()` must be mapped writable for the duration of the call.
pub unsafe fn write(dst: *mut u8, src: &[u8]) {
    let len = src.len();
    let head = ((WORD - misalignment(dst as usize)) % WORD).min(len);
    let words = (len - head) / WORD;
    let mut done = 0;
    while done < head {
        // SAFETY: `dst + done` lies inside the writable range (caller's contract).
        unsafe { ptr::write_volatile(dst.add(done), src[done]) };
        done += 1;
    }
    for _ in 0..words {
        let mut bytes = [0u8; WORD];
        bytes.copy_from_slice(&src[done..done + WORD]);
        // SAFETY: inside the writable range, and aligned to 8 bytes after `head`.
        unsafe { ptr::write_volatile(dst.add(done).cast::<u64>(), u64::from_ne_bytes(bytes)) };
        done += WORD;
    }
    while done < len {
        // SAFETY: inside the writable range.
        unsafe { ptr::write_volatile(dst.add(done), src[done]) };
        done += 1;
    }
}

/// Set `len` bytes of untyped memory at `dst` to `byte`.
///
/// # Safety
///
/// `dst .. dst + len` must be mapped writable for the duration of the call.
pub unsafe fn fill(dst: *mut u8, len: usize, byte: u8) {
    let head = ((WORD - misalignment(dst as usize)) % WORD).min(len);
    let words = (len - head) / WORD;
    let pattern = u64::from_ne_bytes([byte; WORD]);
    let mut done = 0;
    while done < head {
        // SAFETY: inside the writable range (caller's contract).
        unsafe { ptr::write_volatile(dst.add(done), byte) };
        done += 1;
    }
    for _ in 0..words {
        // SAFETY: inside the writable range, aligned to 8 bytes after `head`.
        unsafe { ptr::write_volatile(dst.add(done).cast::<u64>(), pattern) };
        done += WORD;
    }
    while done < len {
        // SAFETY: inside the writable range.
        unsafe { ptr::write_volatile(dst.add(done), byte) };
        done += 1;
    }
}

/// Copy `len` bytes between two non-overlapping ranges of untyped memory.
///
/// # Safety
///
/// `src .. src + len` must be mapped readable and `dst .. dst + len` writable for the
/// duration of the call, and the ranges must not overlap.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    // Words only when both sides reach 8-byte alignment together (always true for the
    // page-to-page copies that matter); otherwise byte by byte.
    let same_phase = misalignment(dst as usize) == misalignment(src as usize);
    let head = if same_phase {
        ((WORD - misalignment(dst as usize)) % WORD).min(len)
    } else {
        len
    };
    let words = (len - head) / WORD;
    let mut done = 0;
    while done < head {
        // SAFETY: both addresses lie inside their ranges (caller's contract).
        unsafe { ptr::write_volatile(dst.add(done), ptr::read_volatile(src.add(done))) };
        done += 1;
    }
    for _ in 0..words {
        // SAFETY: inside both ranges, both aligned to 8 bytes after `head`.
        unsafe {
            let word = ptr::read_volatile(src.add(done).cast::<u64>());
            ptr::write_volatile(dst.add(done).cast::<u64>(), word);
        }
        done += WORD;
    }
    while done < len {
        // SAFETY: inside both ranges.
        unsafe { ptr::write_volatile(dst.add(done), ptr::read_volatile(src.add(done))) };
        done += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alignment_and_length_round_trips() {
        let mut memory = [0u8; 64];
        for start in 0..9 {
            for len in 0..40 {
                let data: [u8; 40] = core::array::from_fn(|i| (i * 7 + start + len) as u8);
                // SAFETY: the range lies inside `memory`, which nothing else borrows.
                unsafe { write(memory.as_mut_ptr().add(start), &data[..len]) };
                let mut back = [0u8; 40];
                // SAFETY: as above.
                unsafe { read(memory.as_ptr().add(start), &mut back[..len]) };
                assert_eq!(back[..len], data[..len], "start {start} len {len}");
            }
        }
    }

    #[test]
    fn fill_and_copy_touch_exactly_their_range() {
        for start in 0..9 {
            for len in 0..30 {
                let mut memory = [0xAAu8; 48];
                // SAFETY: inside `memory`.
                unsafe { fill(memory.as_mut_ptr().add(start), len, 0x5C) };
                for (i, &b) in memory.iter().enumerate() {
                    let inside = i >= start && i < start + len;
                    assert_eq!(
                        b,
                        if inside { 0x5C } else { 0xAA },
                        "start {start} len {len} at {i}"
                    );
                }
                let source: [u8; 48] = core::array::from_fn(|i| i as u8);
                let mut target = [0u8; 48];
                for src_start in [start, (start + 3) % 9] {
                    // SAFETY: both ranges lie in distinct local arrays.
                    unsafe {
                        copy(
                            target.as_mut_ptr().add(start),
                            source.as_ptr().add(src_start),
                            len,
                        )
                    };
                    assert_eq!(
                        target[start..start + len],
                        source[src_start..src_start + len]
                    );
                }
            }
        }
    }
}
