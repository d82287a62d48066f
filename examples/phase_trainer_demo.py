"""Phase trainer on a least-squares problem with NumPy: the trainer says before
each step whether to compute the gradient; predicted gradients replace it otherwise."""
import numpy as np

import tritter_accel as ta

rng = np.random.default_rng(0)
X = rng.standard_normal((256, 8)).astype(np.float32)
w_true = rng.standard_normal(8).astype(np.float32)
y = X @ w_true
w = np.zeros(8, np.float32)

trainer = ta.create_trainer({"w": w.shape})  # defaults: warmup 10, full 5, predict 20, correct every 5
for step in range(200):
    info = trainer.begin_step()
    loss = float(np.mean((X @ w - y) ** 2))
    if info.needs_backward:
        grad = (2 / len(X) * X.T @ (X @ w - y)).astype(np.float32)  # the "backward pass"
        trainer.record("w", grad)
    else:
        grad = trainer.predict("w")
    trainer.end_step(loss)
    w -= 0.05 * grad

s = trainer.stats()
print(f"final loss {np.mean((X @ w - y) ** 2):.2e}; {s['predict_steps']} of {s['steps']} backward passes saved; "
      f"{s['backoffs']} back-offs; mean relative prediction error {s['mean_prediction_error']:.3f}")
