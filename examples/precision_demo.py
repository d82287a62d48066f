"""f32 -> bf16/f16 conversion and a dynamic loss scaler."""
import numpy as np

import tritter_accel as ta

x = np.array([1.0, 1.0 + 2 ** -8, 3.14159, 65520.0, np.nan], np.float32)
print("bf16 bits:", [hex(b) for b in ta.f32_to_bf16(x)])
print("f16:      ", ta.f32_to_f16(x))
print("stochastic bf16 of 1+2^-9, mean of 10000:",
      ta.bf16_to_f32(ta.f32_to_bf16_stochastic(np.full(10000, 1 + 2 ** -9, np.float32), seed=1)).mean())

scaler = ta.LossScaler(init_scale=2.0 ** 16, growth_interval=2)
for grads in ([np.ones(4, np.float32)], [np.array([1, np.inf], np.float32)], [np.ones(4, np.float32)] * 1):
    found = scaler.unscale_([g.copy() for g in grads])
    print(f"found_inf={found} -> scale {scaler.update(found)}")
