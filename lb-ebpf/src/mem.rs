//! Zeroing and moving memory without `memset` / `memmove`.
//!
//! bpf-linker has LLVM expand only `memcpy` inline (in order, for the kernel's JIT); a struct
//! zeroed with `Default` or `mem::zeroed`, or an overlapping copy, becomes a call to
//! compiler_builtins' `memset` / `memmove`, a loop of one byte per iteration: 64 bytes cost
//! some 350 instructions. These helpers do the same with a few word-sized stores.

use crate::parse::{Frame, ParseError};

/// Zeroes the `T` at `dst` with 4-byte stores.
///
/// `T` must be a multiple of 4 bytes long and at least 4-byte aligned (checked at compile
/// time). Volatile stores: LLVM would merge plain ones back into a `memset`.
///
/// # Safety
/// `dst` must be valid for writes of a `T`.
#[inline(always)]
pub(crate) unsafe fn zero<T>(dst: *mut T) {
    const { assert!(size_of::<T>().is_multiple_of(4) && align_of::<T>() >= 4) };
    let words = dst.cast::<u32>();
    let mut i = 0;
    while i < size_of::<T>() / 4 {
        // SAFETY: the caller's `dst` is valid for a `T`: `i` stays inside it, aligned to 4.
        unsafe { words.add(i).write_volatile(0) };
        i += 1;
    }
}

/// Moves the link-layer header, `len` bytes (14, 18 or 22: up to two VLAN tags), from offset
/// `from` to offset `to` of the frame. The ranges may overlap: every word is read before any is
/// written.
#[inline(always)]
pub(crate) fn move_link_header(frame: &Frame, from: usize, to: usize, len: usize) -> Result<(), ParseError> {
    // 8 + 4 + 2 = 14, 8 + 8 + 2 = 18, 8 + 8 + 4 + 2 = 22: scalar loads, which LLVM does not
    // turn into a memmove as it does a copied array.
    let src = frame.ptr_at::<[u8; 22]>(from)?.cast::<u8>();
    let dst = frame.ptr_at::<[u8; 22]>(to)?.cast::<u8>();
    // SAFETY: both 22-byte ranges lie inside the frame (ptr_at); unaligned accesses only.
    unsafe {
        let a = src.cast::<u64>().read_unaligned();
        match len {
            14 => {
                let b = src.add(8).cast::<u32>().read_unaligned();
                let c = src.add(12).cast::<u16>().read_unaligned();
                dst.cast::<u64>().write_unaligned(a);
                dst.add(8).cast::<u32>().write_unaligned(b);
                dst.add(12).cast::<u16>().write_unaligned(c);
            }
            18 => {
                let b = src.add(8).cast::<u64>().read_unaligned();
                let c = src.add(16).cast::<u16>().read_unaligned();
                dst.cast::<u64>().write_unaligned(a);
                dst.add(8).cast::<u64>().write_unaligned(b);
                dst.add(16).cast::<u16>().write_unaligned(c);
            }
            _ => {
                let b = src.add(8).cast::<u64>().read_unaligned();
                let c = src.add(16).cast::<u32>().read_unaligned();
                let d = src.add(20).cast::<u16>().read_unaligned();
                dst.cast::<u64>().write_unaligned(a);
                dst.add(8).cast::<u64>().write_unaligned(b);
                dst.add(16).cast::<u32>().write_unaligned(c);
                dst.add(20).cast::<u16>().write_unaligned(d);
            }
        }
    }
    Ok(())
}

/// Copies a MAC address (6 bytes) from `src` to `dst`, as one 4-byte and one 2-byte access.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of 6 bytes.
#[inline(always)]
pub(crate) unsafe fn copy_mac(dst: *mut u8, src: *const u8) {
    // SAFETY: the caller's pointers are valid for 6 bytes; unaligned accesses only.
    unsafe {
        let a = src.cast::<u32>().read_unaligned();
        let b = src.add(4).cast::<u16>().read_unaligned();
        dst.cast::<u32>().write_unaligned(a);
        dst.add(4).cast::<u16>().write_unaligned(b);
    }
}
