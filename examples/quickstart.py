"""Quantize, pack and multiply from Python (README example)."""
import numpy as np

import tritter_accel as ta

rng = np.random.default_rng(0)
w = rng.standard_normal((256, 512)).astype(np.float32)  # [out_features, in_features]
x = rng.standard_normal((4, 512)).astype(np.float32)

with ta.TernaryMatrix.from_float(w, method="absmean", granularity="row") as m:
    y = m.matmul(x)  # [4, 256] = x · Wᵀ, additions and subtractions only
    y8 = m.matmul(x, act="int8")  # W1.58A8: int8 per-token activations
    exact = x.astype(np.float64) @ m.dequantize().T.astype(np.float64)
    stored = m.packed("2bit").nbytes + m.scales().nbytes  # what a file or the wire carries
    print(f"memory: {w.nbytes} -> {stored} bytes packed ({w.nbytes / stored:.1f}x smaller); "
          f"the handle holds {m.memory_bytes} (the kernels' layout: the only copy of the weights)")
    print(f"max |y - x·deq(W)ᵀ| = {np.abs(y - exact).max():.2e} (f32 act), {np.abs(y8 - exact).max():.2e} (int8 act)")

# The seed's functional API.
ternary, scales = ta.quantize_weights_absmean(w)
packed, scales = ta.pack_ternary_weights(ternary, scales)
y2 = ta.ternary_matmul(x, packed, scales, w.shape)
assert np.allclose(y, y2, rtol=1e-5, atol=1e-5)
print("packed", packed.shape, packed.dtype, "- seed API agrees with TernaryMatrix")
