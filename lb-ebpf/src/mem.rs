//! Zeroing and moving memory without `memset` / `memmove`, and packet fields as 16-bit words.
//!
//! bpf-linker has LLVM expand only `memcpy` inline (in order, for the kernel's JIT); a struct
//! zeroed with `Default` or `mem::zeroed`, or an overlapping copy, becomes a call to
//! compiler_builtins' `memset` / `memmove`, a loop of one byte per iteration: 64 bytes cost
//! some 350 instructions. These helpers do the same with a few word-sized stores.
//!
//! Packet fields: LLVM's BPF backend splits every access it cannot prove aligned into single
//! bytes (a `read_unaligned::<u32>` is four loads, three shifts and three ors). Frames start
//! 2-byte aligned (the kernel places them at an even offset) and every header field the
//! program touches lies at an even offset (link-layer headers of 14, 18 or 22 bytes, IPv4
//! headers in 4-byte units, IPv6 extension headers in 8-byte units), so [`load32`] and friends
//! access them as aligned 16-bit words: half the instructions or fewer. (The target feature
//! `allows-misaligned-mem-access` would give whole words, but then LLVM also merges stack
//! stores into misaligned ones, which the verifier rejects.)

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

/// The 32-bit word (memory order) at `p`, as two 16-bit loads.
///
/// # Safety
/// `p` must be valid for reads of 4 bytes and 2-byte aligned (see the module comment).
#[inline(always)]
pub(crate) unsafe fn load32(p: *const u8) -> u32 {
    let p = p.cast::<u16>();
    // SAFETY: the caller's `p`: 4 bytes, 2-byte aligned.
    unsafe { u32::from(p.read()) | u32::from(p.add(1).read()) << 16 }
}

/// Stores the 32-bit word `v` (memory order) at `p`, as two 16-bit stores.
///
/// # Safety
/// `p` must be valid for writes of 4 bytes and 2-byte aligned (see the module comment).
#[inline(always)]
pub(crate) unsafe fn store32(p: *mut u8, v: u32) {
    let p = p.cast::<u16>();
    // SAFETY: the caller's `p`: 4 bytes, 2-byte aligned.
    unsafe {
        p.write(v as u16);
        p.add(1).write((v >> 16) as u16);
    }
}

/// The 16-bit word (memory order) at `p`.
///
/// # Safety
/// `p` must be valid for reads of 2 bytes and 2-byte aligned (see the module comment).
#[inline(always)]
pub(crate) unsafe fn load16(p: *const u8) -> u16 {
    // SAFETY: the caller's `p`.
    unsafe { p.cast::<u16>().read() }
}

/// Stores the 16-bit word `v` (memory order) at `p`.
///
/// # Safety
/// `p` must be valid for writes of 2 bytes and 2-byte aligned (see the module comment).
#[inline(always)]
pub(crate) unsafe fn store16(p: *mut u8, v: u16) {
    // SAFETY: the caller's `p`.
    unsafe { p.cast::<u16>().write(v) }
}

/// Moves the link-layer header, `len` bytes (14, 18 or 22: up to two VLAN tags), from offset
/// `from` to offset `to` of the frame. The ranges may overlap.
#[inline(always)]
pub(crate) fn move_link_header(frame: &Frame, from: usize, to: usize, len: usize) -> Result<(), ParseError> {
    let src = frame.ptr_at::<[u8; 22]>(from)?.cast::<u16>();
    let dst = frame.ptr_at::<[u8; 22]>(to)?.cast::<u16>();
    let words = len / 2;
    // Aligned 16-bit words (see the module comment), each read just before it is written, in
    // the order that reads every word before the move overwrites it: one live value, where
    // reading them all first had the words spilled to the stack.
    // SAFETY: both 22-byte ranges lie inside the frame (ptr_at), at even offsets.
    unsafe {
        if to < from {
            for i in 0..11 {
                if i < words {
                    dst.add(i).write(src.add(i).read());
                }
            }
        } else {
            for i in (0..11).rev() {
                if i < words {
                    dst.add(i).write(src.add(i).read());
                }
            }
        }
    }
    Ok(())
}

/// Copies a MAC address (6 bytes) from `src` to `dst`, as three 16-bit accesses.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of 6 bytes, both 2-byte aligned (see the
/// module comment).
#[inline(always)]
pub(crate) unsafe fn copy_mac(dst: *mut u8, src: *const u8) {
    let (dst, src) = (dst.cast::<u16>(), src.cast::<u16>());
    // SAFETY: the caller's pointers are valid for 6 bytes, 2-byte aligned.
    unsafe {
        let (a, b, c) = (src.read(), src.add(1).read(), src.add(2).read());
        dst.write(a);
        dst.add(1).write(b);
        dst.add(2).write(c);
    }
}
