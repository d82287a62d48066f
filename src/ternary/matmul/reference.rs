//! The scalar reference matmul: the definition in the parent module, written
//! as plainly as possible. Every fast kernel is tested against it.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2, Axis};

use crate::ternary::pack::{decode2, row_bytes, PackedLayout};
use crate::ternary::quant::{act_scale, quantize_act_row};
use crate::ternary::{ActivationMode, TernaryMatrix};

#[inline]
fn trit(row: &[u8], k: usize) -> i8 {
    decode2(row[k / 4] >> (2 * (k % 4))).expect("validated packed data")
}

/// Reference `y = x · Wᵀ (+ bias)`; shapes already checked.
pub fn gemm(
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    mut y: ArrayViewMut2<f32>,
) {
    let (rows, cols) = (m.rows(), m.cols());
    let rb = row_bytes(cols, PackedLayout::TwoBit);
    let packed = m.packed_2bit();
    let glen = m.granularity().group_len(cols);
    let mut xrow = vec![0f32; cols];
    let mut qrow = vec![0i8; cols];
    for (b, xr) in x.axis_iter(Axis(0)).enumerate() {
        for (d, s) in xrow.iter_mut().zip(xr.iter()) {
            *d = *s;
        }
        let a = act_scale(&xrow);
        if mode == ActivationMode::Int8 {
            quantize_act_row(&xrow, a, &mut qrow);
        }
        for o in 0..rows {
            let wrow = &packed[o * rb..(o + 1) * rb];
            let mut acc = 0f32;
            let ngroups = if cols == 0 { 0 } else { cols.div_ceil(glen) };
            for g in 0..ngroups {
                let s = m.scale(o, g);
                let ks = g * glen..((g + 1) * glen).min(cols);
                match mode {
                    ActivationMode::F32 => {
                        let mut part = 0f32;
                        for k in ks {
                            match trit(wrow, k) {
                                1 => part += xrow[k],
                                -1 => part -= xrow[k],
                                _ => {}
                            }
                        }
                        acc += s * part;
                    }
                    ActivationMode::Int8 => {
                        let mut part = 0i32;
                        for k in ks {
                            part += trit(wrow, k) as i32 * qrow[k] as i32;
                        }
                        acc += s * part as f32;
                    }
                }
            }
            if mode == ActivationMode::Int8 {
                acc /= a;
            }
            y[[b, o]] = acc + bias.as_ref().map_or(0.0, |bv| bv[o]);
        }
    }
}
