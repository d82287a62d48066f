//! aarch64 NEON kernels on decoded codes (`c = t + 1` in {0, 1, 2}).
//! Compiled and type-checked for aarch64 (`cargo check --target
//! aarch64-unknown-linux-gnu`); not run on this project's x86 machines.
//!
//! # Safety
//! Require NEON and pointers valid for `len` values each.

#![allow(clippy::missing_safety_doc)]
// Kernel bodies are intrinsics and pointer arithmetic throughout; the
// contract is stated once, above, for the whole module.
#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::aarch64::*;

/// `out[r][b] = Σ_{k<len} c[r][k] q[b][k]` (`len` a multiple of 64);
/// products are `|2 · 128| <= 256`, widened to i16 then pairwise into i32.
#[target_feature(enable = "neon")]
pub unsafe fn i8_gemm_neon(
    w: &[*const u8; 4],
    q: &[*const i8; 4],
    nb: usize,
    len: usize,
) -> [[i32; 4]; 4] {
    let mut out = [[0i32; 4]; 4];
    for b in 0..nb.min(4) {
        for r in 0..4 {
            let mut acc = vdupq_n_s32(0);
            let mut k = 0;
            while k < len {
                let c = vreinterpretq_s8_u8(vld1q_u8(w[r].add(k)));
                let a = vld1q_s8(q[b].add(k));
                acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(c), vget_low_s8(a)));
                acc = vpadalq_s16(acc, vmull_high_s8(c, a));
                k += 16;
            }
            out[r][b] = vaddvq_s32(acc);
        }
    }
    out
}

/// `Σ t·x` (adds and subtracts of masked activations) for 4 decoded rows.
#[target_feature(enable = "neon")]
pub unsafe fn f32_bytes_neon(w: &[*const u8; 4], x: *const f32, len: usize) -> [f32; 4] {
    let mut out = [0f32; 4];
    let two = vdupq_n_u32(2);
    let zero = vdupq_n_u32(0);
    for r in 0..4 {
        let mut pos = vdupq_n_f32(0.0);
        let mut neg = vdupq_n_f32(0.0);
        let mut k = 0;
        while k < len {
            let c = vld1q_u8(w[r].add(k));
            let lo = vmovl_u8(vget_low_u8(c));
            let hi = vmovl_high_u8(c);
            let cs = [
                vmovl_u16(vget_low_u16(lo)),
                vmovl_high_u16(lo),
                vmovl_u16(vget_low_u16(hi)),
                vmovl_high_u16(hi),
            ];
            for (j, cv) in cs.iter().enumerate() {
                let xv = vreinterpretq_u32_f32(vld1q_f32(x.add(k + 4 * j)));
                let p = vandq_u32(vceqq_u32(*cv, two), xv);
                let n = vandq_u32(vceqq_u32(*cv, zero), xv);
                pos = vaddq_f32(pos, vreinterpretq_f32_u32(p));
                neg = vaddq_f32(neg, vreinterpretq_f32_u32(n));
            }
            k += 16;
        }
        out[r] = vaddvq_f32(vsubq_f32(pos, neg));
    }
    out
}
