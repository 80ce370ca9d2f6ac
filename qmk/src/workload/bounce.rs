//! busdma bounce copies for unmapped I/O buffers, as FreeBSD's
//! `bounce_bus_dmamap_sync` does them with `pmap_quick_enter_page`.
//!
//! A worker owns an I/O buffer made of [`BUFFER_PAGES`] high-memory pages
//! (not contiguous, no kernel address: an "unmapped" buffer) and bounce
//! storage of two sorts:
//! - a bounce buffer with a kernel address (`bpage->vaddr`): heap memory,
//!   which lives in the direct-mapped low zone as real bounce pages do; the
//!   copy maps only the buffer's pages, one at a time, either with
//!   quickmap's `copy_from_pages`/`copy_to_pages` or word for word as
//!   FreeBSD does it (`pmap_quick_enter_page`, `bcopy`,
//!   `pmap_quick_remove_page`);
//! - bounce pages without one (`BUS_DMA_UNMAPPED` style), either direct-mapped
//!   (quickmap's fast path) or in high memory: the copy maps a buffer page and
//!   a bounce page at once and copies between the two windows.
//!
//! Each transfer covers an arbitrary byte range of the buffer (any offset,
//! 1 byte to two pages, crossing page boundaries) to an arbitrary offset of
//! the bounce storage:
//! - PREWRITE (buffer → bounce, before the device reads): afterwards every
//!   bounced byte must equal the buffer's pattern at its position, and the
//!   bytes around the target in the kernel-address bounce buffer must be
//!   untouched;
//! - POSTREAD (bounce → buffer, after the device wrote): the "device" puts a
//!   new generation's pattern into the bounce storage, the copy brings it
//!   into the buffer, and the consumer then checks every byte of each page it
//!   touched (new generation inside the range, old outside it: a copy that
//!   spills is caught) and completes the page to the new generation.
//!
//! One transfer in eight runs under the driver's spin lock with interrupts
//! off, as drivers call `bus_dmamap_sync` under their mutex (which FreeBSD's
//! contract forbids for spin mutexes and quickmap allows).

use alloc::vec;
use alloc::vec::Vec;

use quickmap::{Mmu, VirtAddr, PAGE_SIZE};

use super::pages::{
    compare_mapped, fill_pattern, pattern_bytes, quickmap, Checksum, Content, Generations,
    OwnedPage, PageState, Rng, WrongByte, CHUNK,
};
use super::report::{count_operation, record_mismatch, Kind, MismatchReport, Work};
use crate::memory::frame_allocator::Zone;
use crate::sync::SpinLock;
use crate::vm::page::Wired;

/// Pages of the unmapped I/O buffer.
pub const BUFFER_PAGES: usize = 4;
/// Pages of each bounce-page run.
const BOUNCE_PAGES: usize = 3;
/// Bytes of bounce storage a transfer may use.
const BOUNCE_BYTES: usize = BOUNCE_PAGES * PAGE_SIZE;
/// The longest transfer.
const MAX_TRANSFER: usize = 2 * PAGE_SIZE;
/// Poisoned bytes on each side of a transfer into the kernel-address bounce
/// buffer, checked afterwards.
const GUARD: usize = 32;
const POISON: u8 = 0xa5;

/// Where a transfer's bounce copy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BounceTarget {
    /// The bounce buffer with a kernel address, copied with quickmap's
    /// `copy_from_pages`/`copy_to_pages`.
    KernelAddress,
    /// The same, copied the way FreeBSD's `bounce_bus_dmamap_sync` does it:
    /// `pmap_quick_enter_page`, `bcopy`, `pmap_quick_remove_page` per page.
    KernelAddressFreeBsd,
    /// Bounce pages in the direct map.
    DirectMappedPages,
    /// Bounce pages in high memory.
    HighPages,
}

/// One transfer: `len` bytes at `offset` of the I/O buffer, bounced at
/// `bounce_offset` of the bounce storage.
#[derive(Clone, Copy, Debug)]
struct Transfer {
    offset: usize,
    len: usize,
    bounce_offset: usize,
    target: BounceTarget,
}

impl Transfer {
    fn pick(rng: &mut Rng) -> Transfer {
        let len = match rng.below(10) {
            0..=4 => rng.between(1, 512),
            5..=7 => rng.between(1, PAGE_SIZE),
            _ => rng.between(1, MAX_TRANSFER),
        };
        let target = match rng.below(4) {
            0 => BounceTarget::KernelAddress,
            1 => BounceTarget::KernelAddressFreeBsd,
            2 => BounceTarget::DirectMappedPages,
            _ => BounceTarget::HighPages,
        };
        Transfer {
            offset: rng.below(BUFFER_PAGES * PAGE_SIZE - len + 1),
            len,
            bounce_offset: rng.below(BOUNCE_BYTES - len + 1),
            target,
        }
    }

    /// The buffer pages it touches, each with the byte range in that page.
    fn pieces(&self) -> impl Iterator<Item = (usize, core::ops::Range<usize>)> {
        let (start, end) = (self.offset, self.offset + self.len);
        (start / PAGE_SIZE..end.div_ceil(PAGE_SIZE)).map(move |page| {
            let base = page * PAGE_SIZE;
            (
                page,
                start.max(base) - base..end.min(base + PAGE_SIZE) - base,
            )
        })
    }
}

/// A worker's I/O buffer and bounce storage.
pub struct BounceJob {
    /// The unmapped I/O buffer.
    pub buffer: Vec<PageState>,
    /// The bounce buffer with a kernel address, with guard bytes either side.
    bounce_kva: Vec<u8>,
    bounce_low: Vec<OwnedPage>,
    bounce_high: Vec<OwnedPage>,
    /// The driver's lock, taken for some transfers.
    driver_lock: SpinLock<()>,
}

impl BounceJob {
    /// Allocates the buffer (filled with generation-0 patterns) and the
    /// bounce storage.
    pub fn new(generations: &mut Generations) -> BounceJob {
        let buffer = (0..BUFFER_PAGES)
            .map(|_| PageState::patterned(Zone::High, generations))
            .collect();
        BounceJob {
            buffer,
            bounce_kva: vec![0; BOUNCE_BYTES + 2 * GUARD],
            bounce_low: (0..BOUNCE_PAGES)
                .map(|_| OwnedPage::allocate(Zone::DirectMapped))
                .collect(),
            bounce_high: (0..BOUNCE_PAGES)
                .map(|_| OwnedPage::allocate(Zone::High))
                .collect(),
            driver_lock: SpinLock::new(()),
        }
    }

    /// One PREWRITE sync: buffer → bounce, verified.
    pub fn prewrite(&mut self, rng: &mut Rng, thread: u64) {
        let transfer = Transfer::pick(rng);
        let _driver = (rng.below(8) == 0).then(|| self.driver_lock.lock_irq());
        let wired: [Wired<'_>; BUFFER_PAGES] =
            core::array::from_fn(|index| self.buffer[index].frame.wire());
        let expected = |position: usize, out: &mut [u8]| {
            buffer_pattern(&self.buffer, position, out);
        };
        let result = match transfer.target {
            BounceTarget::KernelAddress | BounceTarget::KernelAddressFreeBsd => {
                let start = GUARD + transfer.bounce_offset;
                let window = &mut self.bounce_kva[start - GUARD..start + transfer.len + GUARD];
                window.fill(POISON);
                let bounce = &mut window[GUARD..GUARD + transfer.len];
                if transfer.target == BounceTarget::KernelAddress {
                    quickmap().copy_from_pages(&wired, transfer.offset, bounce);
                } else {
                    freebsd_sync(&wired, transfer.offset, bounce, Direction::PreWrite);
                }
                check_kva_bounce(window, transfer, expected)
            }
            BounceTarget::DirectMappedPages | BounceTarget::HighPages => {
                let pages = self.bounce_pages(transfer.target);
                let bounce: [Wired<'_>; BOUNCE_PAGES] =
                    core::array::from_fn(|index| pages[index].wire());
                copy_between_runs(
                    &wired,
                    transfer.offset,
                    &bounce,
                    transfer.bounce_offset,
                    transfer.len,
                );
                // The device reads the bounce pages: every byte as bounced.
                check_bounce_pages(&bounce, transfer, expected)
            }
        };
        drop(wired);
        if let Err((position, wrong)) = result {
            self.report(Kind::BouncePrewrite, position, wrong, thread);
        }
        let touched = transfer.pieces().count() as u64;
        count_operation(
            Kind::BouncePrewrite,
            Work {
                pages_verified: touched,
                bytes_verified: transfer.len as u64,
                bytes_moved: transfer.len as u64,
            },
        );
    }

    /// One POSTREAD sync: the device fills the bounce storage, the copy brings
    /// it into the buffer, the consumer verifies and completes the pages.
    pub fn postread(&mut self, rng: &mut Rng, generations: &mut Generations, thread: u64) {
        let transfer = Transfer::pick(rng);
        let generation = generations.next();
        let _driver = (rng.below(8) == 0).then(|| self.driver_lock.lock_irq());
        let wired: [Wired<'_>; BUFFER_PAGES] =
            core::array::from_fn(|index| self.buffer[index].frame.wire());
        // What the device delivers: each buffer page's pattern of the new
        // generation at the transfer's positions.
        let pas: [u64; BUFFER_PAGES] = core::array::from_fn(|index| self.buffer[index].frame.pa());
        let delivered = |position: usize, out: &mut [u8]| {
            for_each_page_piece(position, out, |page, offset, piece| {
                pattern_bytes(pas[page], generation, offset, piece);
            });
        };
        match transfer.target {
            BounceTarget::KernelAddress | BounceTarget::KernelAddressFreeBsd => {
                let start = GUARD + transfer.bounce_offset;
                let data = &mut self.bounce_kva[start..start + transfer.len];
                delivered(transfer.offset, data);
                if transfer.target == BounceTarget::KernelAddress {
                    quickmap().copy_to_pages(&wired, transfer.offset, data);
                } else {
                    freebsd_sync(&wired, transfer.offset, data, Direction::PostRead);
                }
            }
            BounceTarget::DirectMappedPages | BounceTarget::HighPages => {
                let pages = self.bounce_pages(transfer.target);
                let bounce: [Wired<'_>; BOUNCE_PAGES] =
                    core::array::from_fn(|index| pages[index].wire());
                write_bounce_pages(&bounce, transfer, delivered);
                copy_between_runs(
                    &bounce,
                    transfer.bounce_offset,
                    &wired,
                    transfer.offset,
                    transfer.len,
                );
            }
        }
        let mut touched = 0;
        let mut settled: [Option<Content>; BUFFER_PAGES] = [None; BUFFER_PAGES];
        let mut wrong_bytes: [Option<(WrongByte, usize)>; BUFFER_PAGES] = [None; BUFFER_PAGES];
        for (page, range) in transfer.pieces() {
            touched += 1;
            let state = &self.buffer[page];
            settled[page] = Some(match settle_page(state, &wired[page], range, generation) {
                Ok(content) => content,
                Err(wrong) => {
                    wrong_bytes[page] = Some(wrong);
                    // Rewrite it whole, so one corruption is reported once.
                    let mapping = quickmap().map(&wired[page]);
                    fill_pattern(&mapping, state.frame.pa(), generations.next())
                }
            });
        }
        drop(wired);
        for (state, content) in self.buffer.iter_mut().zip(settled) {
            if let Some(content) = content {
                state.content = content;
            }
        }
        for (page, wrong) in wrong_bytes.into_iter().enumerate() {
            if let Some((wrong, cpu)) = wrong {
                record_mismatch(MismatchReport {
                    kind: Kind::BouncePostread,
                    page: pas[page],
                    cpu,
                    thread,
                    offset: wrong.offset,
                    expected: wrong.expected,
                    found: wrong.found,
                });
            }
        }
        count_operation(
            Kind::BouncePostread,
            Work {
                pages_verified: touched,
                bytes_verified: touched * PAGE_SIZE as u64,
                bytes_moved: transfer.len as u64,
            },
        );
    }

    fn bounce_pages(&self, target: BounceTarget) -> &[OwnedPage] {
        match target {
            BounceTarget::DirectMappedPages => &self.bounce_low,
            _ => &self.bounce_high,
        }
    }

    /// Reports a wrong byte found at `position` of the buffer run.
    fn report(&self, kind: Kind, position: usize, wrong: (WrongByte, usize), thread: u64) {
        record_mismatch(MismatchReport {
            kind,
            page: self.buffer[position / PAGE_SIZE].frame.pa(),
            cpu: wrong.1,
            thread,
            offset: position % PAGE_SIZE,
            expected: wrong.0.expected,
            found: wrong.0.found,
        });
    }
}

/// Splits `out`, which stands for the bytes at `position` of the buffer run,
/// at page boundaries: `piece(page index, offset in page, bytes)`.
fn for_each_page_piece(
    position: usize,
    out: &mut [u8],
    mut piece: impl FnMut(usize, usize, &mut [u8]),
) {
    let mut done = 0;
    while done < out.len() {
        let at = position + done;
        let len = (PAGE_SIZE - at % PAGE_SIZE).min(out.len() - done);
        piece(at / PAGE_SIZE, at % PAGE_SIZE, &mut out[done..done + len]);
        done += len;
    }
}

/// The bytes the buffer holds at `position` of its run.
fn buffer_pattern(buffer: &[PageState], position: usize, out: &mut [u8]) {
    for_each_page_piece(position, out, |page, offset, piece| {
        let content = buffer[page].content;
        pattern_bytes(content.origin, content.generation, offset, piece);
    });
}

/// Checks a PREWRITE into the kernel-address bounce buffer: `window` is the
/// target with [`GUARD`] bytes either side. On a wrong byte: its position in
/// the buffer run (a guard byte counts against the nearest end) and the CPU.
fn check_kva_bounce(
    window: &[u8],
    transfer: Transfer,
    mut expected: impl FnMut(usize, &mut [u8]),
) -> Result<(), (usize, (WrongByte, usize))> {
    let cpu = crate::cpu::current_cpu_index();
    let spill = |index: usize, at: usize| {
        (
            at,
            (
                WrongByte {
                    offset: at % PAGE_SIZE,
                    expected: POISON,
                    found: window[index],
                },
                cpu,
            ),
        )
    };
    if let Some(index) = window[..GUARD].iter().position(|&b| b != POISON) {
        return Err(spill(index, transfer.offset));
    }
    let tail = GUARD + transfer.len;
    if let Some(index) = window[tail..].iter().position(|&b| b != POISON) {
        return Err(spill(tail + index, transfer.offset + transfer.len - 1));
    }
    let data = &window[GUARD..tail];
    let mut chunk = [0u8; CHUNK];
    for (index, got) in data.chunks(CHUNK).enumerate() {
        let position = transfer.offset + index * CHUNK;
        let want = &mut chunk[..got.len()];
        expected(position, want);
        if let Some(at) = want.iter().zip(got).position(|(w, g)| w != g) {
            return Err((
                position + at,
                (
                    WrongByte {
                        offset: (position + at) % PAGE_SIZE,
                        expected: want[at],
                        found: got[at],
                    },
                    cpu,
                ),
            ));
        }
    }
    Ok(())
}

/// Which way a bounce copy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Buffer → bounce.
    PreWrite,
    /// Bounce → buffer.
    PostRead,
}

/// The copy loop of FreeBSD's `bounce_bus_dmamap_sync` for an unmapped
/// buffer, in its own terms: for each page the range touches, enter the page,
/// `bcopy` the piece between it and the bounce buffer, remove the page.
/// `bounce` stands for the bytes at `offset` of the buffer run `pages`.
/// The enter and remove are the exported C-ABI functions of the workload's
/// instance (`pmap_quick_enter_page`/`pmap_quick_remove_page`, or their
/// `qmk_deferred_*` twins with `invalidation=deferred`).
fn freebsd_sync(pages: &[Wired<'_>], offset: usize, bounce: &mut [u8], direction: Direction) {
    let quickmap = quickmap();
    let mmu = quickmap.mmu();
    let mut done = 0;
    while done < bounce.len() {
        let at = offset + done;
        let len = (PAGE_SIZE - at % PAGE_SIZE).min(bounce.len() - done);
        let piece = &mut bounce[done..done + len];
        let kva = quickmap.quick_enter_page(pages[at / PAGE_SIZE].page());
        let data = VirtAddr(kva + at % PAGE_SIZE);
        match direction {
            // SAFETY: `kva` maps the page (wired by the caller) until the
            // remove below, and `data .. data + len` lies inside it.
            Direction::PreWrite => unsafe { mmu.read_bytes(data, piece) },
            // SAFETY: as above; quick mappings are writable.
            Direction::PostRead => unsafe { mmu.write_bytes(data, piece) },
        }
        // SAFETY: `kva` was entered just above in this context, and nothing
        // uses it after this call.
        unsafe { quickmap.quick_remove_page(kva) };
        done += len;
    }
}

/// Copies `len` bytes from position `from_offset` of the page run `from` to
/// position `to_offset` of `to`, one piece per pair of pages, each piece with
/// both pages mapped at once (two windows of this CPU, or the direct map).
fn copy_between_runs(
    from: &[Wired<'_>],
    from_offset: usize,
    to: &[Wired<'_>],
    to_offset: usize,
    len: usize,
) {
    let mut chunk = [0u8; CHUNK];
    let mut done = 0;
    while done < len {
        let (source, destination) = (from_offset + done, to_offset + done);
        let piece = (PAGE_SIZE - source % PAGE_SIZE)
            .min(PAGE_SIZE - destination % PAGE_SIZE)
            .min(len - done);
        let source_map = quickmap().map(&from[source / PAGE_SIZE]);
        let destination_map = quickmap().map(&to[destination / PAGE_SIZE]);
        let mut copied = 0;
        while copied < piece {
            let step = CHUNK.min(piece - copied);
            source_map.read(source % PAGE_SIZE + copied, &mut chunk[..step]);
            destination_map.write(destination % PAGE_SIZE + copied, &chunk[..step]);
            copied += step;
        }
        done += piece;
    }
}

/// The device's side of a POSTREAD into bounce pages: writes what it
/// delivers for the transfer into the bounce run.
fn write_bounce_pages(
    bounce: &[Wired<'_>],
    transfer: Transfer,
    mut delivered: impl FnMut(usize, &mut [u8]),
) {
    let mut chunk = [0u8; CHUNK];
    let mut done = 0;
    while done < transfer.len {
        let at = transfer.bounce_offset + done;
        let piece = (PAGE_SIZE - at % PAGE_SIZE).min(transfer.len - done);
        let mapping = quickmap().map(&bounce[at / PAGE_SIZE]);
        let mut written = 0;
        while written < piece {
            let step = CHUNK.min(piece - written);
            delivered(transfer.offset + done + written, &mut chunk[..step]);
            mapping.write(at % PAGE_SIZE + written, &chunk[..step]);
            written += step;
        }
        done += piece;
    }
}

/// The device's side of a PREWRITE into bounce pages: reads the bounce run
/// and checks each byte against the buffer position it came from.
fn check_bounce_pages(
    bounce: &[Wired<'_>],
    transfer: Transfer,
    mut expected: impl FnMut(usize, &mut [u8]),
) -> Result<(), (usize, (WrongByte, usize))> {
    let mut done = 0;
    while done < transfer.len {
        let at = transfer.bounce_offset + done;
        let piece = (PAGE_SIZE - at % PAGE_SIZE).min(transfer.len - done);
        let mapping = quickmap().map(&bounce[at / PAGE_SIZE]);
        let page_start = at % PAGE_SIZE;
        let source_start = transfer.offset + done;
        let result = compare_mapped(&mapping, page_start..page_start + piece, |offset, out| {
            expected(source_start + offset - page_start, out)
        });
        if let Err(wrong) = result {
            let cpu = crate::cpu::current_cpu_index();
            let position = source_start + wrong.offset - page_start;
            return Err((position, (wrong, cpu)));
        }
        done += piece;
    }
    Ok(())
}

/// The consumer's check after a POSTREAD: the page must hold the new
/// generation in `range` and its old content elsewhere; then the rest is
/// brought to the new generation too. Returns the page's new content, or
/// the wrong byte (offset in this page) and the CPU.
fn settle_page(
    state: &PageState,
    wired: &Wired<'_>,
    range: core::ops::Range<usize>,
    generation: u64,
) -> Result<Content, (WrongByte, usize)> {
    let pa = state.frame.pa();
    let old = state.content;
    let mapping = quickmap().map(wired);
    let cpu = crate::cpu::current_cpu_index();
    let result = compare_mapped(&mapping, 0..PAGE_SIZE, |offset, out| {
        pattern_bytes(old.origin, old.generation, offset, out);
        let (start, end) = (offset.max(range.start), (offset + out.len()).min(range.end));
        if start < end {
            pattern_bytes(
                pa,
                generation,
                start,
                &mut out[start - offset..end - offset],
            );
        }
    });
    let mut chunk = [0u8; CHUNK];
    let mut checksum = Checksum::default();
    for offset in (0..PAGE_SIZE).step_by(CHUNK) {
        pattern_bytes(pa, generation, offset, &mut chunk);
        checksum.add(&chunk);
        // Only the bytes outside the transfer still hold the old generation.
        let end = offset + CHUNK;
        let before = offset..end.min(range.start).max(offset);
        let after = range.end.max(offset).min(end)..end;
        for part in [before, after] {
            if !part.is_empty() {
                mapping.write(part.start, &chunk[part.start - offset..part.end - offset]);
            }
        }
    }
    drop(mapping);
    result.map_err(|wrong| (wrong, cpu))?;
    Ok(Content {
        origin: pa,
        generation,
        checksum: checksum.value(),
    })
}
