use ::x86_64::structures::paging::PageTableFlags;

use crate::arch::paging;
use crate::arch::pat::{self, MemoryAttribute, PTE_4KIB_PAT};
use crate::kernel_test;
use crate::kernel_tests::{scratch_page, test_frame};
use crate::memory::frame_allocator;

/// The architectural encoding of a memory type in a PAT entry (SDM Vol. 3,
/// "Memory Types That Can Be Encoded With PAT"), written out independently of
/// quickmap's table so that a wrong table fails this test.
fn pat_encoding(attribute: MemoryAttribute) -> u8 {
    match attribute {
        MemoryAttribute::Uncacheable => 0x00,
        MemoryAttribute::WriteCombining => 0x01,
        MemoryAttribute::WriteThrough => 0x04,
        MemoryAttribute::WriteProtected => 0x05,
        MemoryAttribute::WriteBack => 0x06,
        MemoryAttribute::WeakUncacheable => 0x07,
    }
}

/// The PAT entry `index` of an IA32_PAT value.
fn pat_entry(msr: u64, index: usize) -> u8 {
    (msr >> (index * 8)) as u8
}

kernel_test! {
    /// IA32_PAT holds the layout: entries 0–3 as at power-on, WP and WC in 4 and 5.
    fn pat_msr_holds_the_layout() {
        let msr = pat::read_pat_msr();
        assert_eq!(msr, pat::PAT_MSR_VALUE, "IA32_PAT = {msr:#018x}");
        let expected_encodings = [0x06, 0x04, 0x07, 0x00, 0x05, 0x01, 0x07, 0x00];
        for (index, expected) in expected_encodings.into_iter().enumerate() {
            assert_eq!(pat_entry(msr, index), expected, "PAT entry {index}");
        }
    }
}

kernel_test! {
    /// Every memory type is selectable: its PTE bits name a PAT entry that
    /// holds that type, and a page mapped with those bits keeps them in its
    /// PTE (read back through the page tables) and is usable.
    fn pte_bits_select_every_memory_type() {
        let msr = pat::read_pat_msr();
        let cache_bits = PageTableFlags::WRITE_THROUGH | PageTableFlags::NO_CACHE | PTE_4KIB_PAT;
        let frame = test_frame();
        for (slot, memory_type) in (10..).zip(MemoryAttribute::ALL) {
            let bits = pat::pte_bits_for_memory_type(memory_type);
            assert_eq!(bits & !cache_bits, PageTableFlags::empty(), "only PAT/PCD/PWT are used");
            let index = pat::pat_index_of_pte(bits);
            assert_eq!(pat_entry(msr, index), pat_encoding(memory_type), "{memory_type:?} via entry {index}");
            assert_eq!(pat::memory_type_of_pte(bits), memory_type);

            let address = scratch_page(slot);
            let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE | bits;
            paging::map_page(address, frame, flags).unwrap();
            let pte_flags = paging::translate(address).unwrap().flags;
            assert_eq!(pte_flags & cache_bits, bits, "PTE of the {memory_type:?} page");
            assert_eq!(pat::memory_type_of_pte(pte_flags), memory_type);
            let pointer: *mut u64 = address.as_mut_ptr();
            // SAFETY: the page maps the frame this test owns; the write and
            // read are plain RAM accesses whatever the memory type.
            unsafe {
                pointer.write_volatile(slot);
                assert_eq!(pointer.read_volatile(), slot);
            }
            paging::unmap_page(address).unwrap();
        }
        assert_eq!(
            pat::pte_bits_for_memory_type(MemoryAttribute::WriteBack),
            PageTableFlags::empty(),
            "write-back needs no bits: plain entries are write-back"
        );
        frame_allocator::free_frame(frame);
    }
}
