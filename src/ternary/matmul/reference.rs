//! The scalar reference matmul: the definition in the parent module, written
//! as plainly as possible. Every fast kernel is tested against it. It reads
//! the weights one row at a time through
//! [`TernaryMatrix::row_ternary`] (a scalar decode of the compute layout,
//! tested to reproduce the interchange input exactly).

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2, Axis};

use crate::ternary::quant::{act_scale, quantize_act_row};
use crate::ternary::{ActivationMode, TernaryMatrix};

/// Activation rows per pass over the weights (each weight row is decoded
/// once a pass).
const BATCH_BLOCK: usize = 64;

/// Reference `y = x · Wᵀ (+ bias)`; shapes already checked.
pub fn gemm(
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    mut y: ArrayViewMut2<f32>,
) {
    let (rows, cols) = (m.rows(), m.cols());
    let glen = m.granularity().group_len(cols);
    let ngroups = if cols == 0 { 0 } else { cols.div_ceil(glen) };
    let mut wrow = vec![0i8; cols];
    for (blk, xb) in x.axis_chunks_iter(Axis(0), BATCH_BLOCK).enumerate() {
        let nb = xb.nrows();
        // The block's activations, contiguous, and their int8 quantization.
        let mut xs = vec![0f32; nb * cols];
        let mut qs = vec![0i8; nb * cols];
        let mut a = vec![0f32; nb];
        for (i, xr) in xb.axis_iter(Axis(0)).enumerate() {
            let xrow = &mut xs[i * cols..(i + 1) * cols];
            for (d, s) in xrow.iter_mut().zip(xr.iter()) {
                *d = *s;
            }
            a[i] = act_scale(xrow);
            if mode == ActivationMode::Int8 {
                quantize_act_row(xrow, a[i], &mut qs[i * cols..(i + 1) * cols]);
            }
        }
        for o in 0..rows {
            m.row_ternary(o, &mut wrow);
            for i in 0..nb {
                let xrow = &xs[i * cols..(i + 1) * cols];
                let qrow = &qs[i * cols..(i + 1) * cols];
                let mut acc = 0f32;
                for g in 0..ngroups {
                    let s = m.scale(o, g);
                    let ks = g * glen..((g + 1) * glen).min(cols);
                    match mode {
                        ActivationMode::F32 => {
                            let mut part = 0f32;
                            for k in ks {
                                match wrow[k] {
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
                                part += wrow[k] as i32 * qrow[k] as i32;
                            }
                            acc += s * part as f32;
                        }
                    }
                }
                if mode == ActivationMode::Int8 {
                    acc /= a[i];
                }
                y[[blk * BATCH_BLOCK + i, o]] = acc + bias.as_ref().map_or(0.0, |bv| bv[o]);
            }
        }
    }
}
