//! The last step of every tile strategy: the accumulator (`acc[t][b][r] =
//! Σ_g s[o,g] · part`, tile-major) becomes `y[b, o]`, in the reference's
//! order: `(Σ_g s·part) [/ a[b]] + bias[o]`.

use ndarray::{ArrayView1, ArrayViewMut2};

use super::layout::TILE_ROWS;
use super::plan::Plan;

/// Writes `y` from `acc`; `a`: the per-token int8 scales (None for f32).
pub(crate) fn write(
    p: &Plan,
    acc: &mut [f32],
    a: Option<&[f32]>,
    bias: Option<ArrayView1<f32>>,
    mut y: ArrayViewMut2<f32>,
) {
    let (batch, rows) = (p.batch, p.rows);
    if batch == 1 {
        // acc is in row order at batch 1; separate passes (each vectorizes)
        // give the same roundings as one expression, since every
        // intermediate is stored as f32
        let acc = &mut acc[..rows];
        if let Some(a) = a {
            for v in acc.iter_mut() {
                *v /= a[0];
            }
        }
        if let Some(bv) = &bias {
            for (v, &b) in acc.iter_mut().zip(bv.iter()) {
                *v += b;
            }
        } else {
            // v + 0.0 (turns -0.0 into +0.0, as the general path does)
            for v in acc.iter_mut() {
                *v += 0.0;
            }
        }
        y.row_mut(0)
            .iter_mut()
            .zip(acc.iter())
            .for_each(|(yo, &v)| *yo = v);
        return;
    }
    let tile_out = p.tile_out();
    let bias = bias.map(|bv| bv.to_vec());
    let mut row = vec![0f32; rows];
    for b in 0..batch {
        // gather row b from the tiles, then the same two roundings as the
        // reference: (Σ_g s·part) [/ a] + bias
        for (t, ro) in row.chunks_mut(TILE_ROWS).enumerate() {
            let src = &acc[t * tile_out + b * TILE_ROWS..][..ro.len()];
            ro.copy_from_slice(src);
        }
        if let Some(a) = a {
            for v in row.iter_mut() {
                *v /= a[b];
            }
        }
        match &bias {
            Some(bv) => row.iter_mut().zip(bv).for_each(|(v, &c)| *v += c),
            None => row.iter_mut().for_each(|v| *v += 0.0),
        }
        let mut yr = y.row_mut(b);
        match yr.as_slice_mut() {
            Some(ys) => ys.copy_from_slice(&row),
            None => yr.iter_mut().zip(&row).for_each(|(yo, &v)| *yo = v),
        }
    }
}
