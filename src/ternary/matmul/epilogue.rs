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
    for b in 0..batch {
        for o in 0..rows {
            let mut v = acc[(o / TILE_ROWS) * tile_out + b * TILE_ROWS + o % TILE_ROWS];
            if let Some(a) = a {
                v /= a[b];
            }
            y[[b, o]] = v + bias.as_ref().map_or(0.0, |bv| bv[o]);
        }
    }
}
