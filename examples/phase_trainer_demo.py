"""Phase trainer on a least-squares problem with NumPy: the trainer says before
each step whether to compute the gradient; predicted gradients replace it
otherwise. With the default (guarded) schedule it predicts only while its own
check, made on every real gradient, finds the prediction close enough."""
import numpy as np

import tritter_accel as ta

rng = np.random.default_rng(0)
X = rng.standard_normal((256, 8)).astype(np.float32)
w_true = rng.standard_normal(8).astype(np.float32)
y = X @ w_true
w = np.zeros(8, np.float32)

trainer = ta.create_trainer({"w": w.shape})  # guarded: max_error 0.3, runs of at most 8 predicted steps
for step in range(200):
    info = trainer.begin_step()
    if info.needs_backward:
        loss = float(np.mean((X @ w - y) ** 2))
        grad = (2 / len(X) * X.T @ (X @ w - y)).astype(np.float32)  # the "backward pass"
        trainer.record("w", grad)
        trainer.end_step(loss)
    else:
        grad = trainer.predict("w")  # no forward or backward pass at all
        trainer.end_step()
    w -= 0.05 * grad

s = trainer.stats()
print(f"final loss {np.mean((X @ w - y) ** 2):.2e}; {s['predict_steps']} of {s['steps']} backward passes saved; "
      f"{s['backoffs']} back-offs; mean relative prediction error {s['mean_prediction_error']:.3f} "
      f"(repeating the last gradient: {s['mean_last_gradient_error']:.3f}); last decision: {s['last_reason']}; "
      f"predictor: {trainer.param_stats('w')['predictor']}")
