//! Mixed-precision utilities: f32 <-> bf16/f16 slice conversion with
//! round-to-nearest-even ([`convert`]), seeded stochastic rounding to bf16
//! ([`stochastic`]) and a dynamic loss scaler with `torch.amp.GradScaler`
//! semantics ([`loss_scale`]).
//!
//! ```
//! use tritter_accel::precision::{convert, loss_scale::{LossScaler, LossScalerConfig}};
//! let x = [1.0f32, 1.0 + 1.0 / 1024.0, 65520.0];
//! let mut h = [0u16; 3];
//! convert::f32_to_f16(&x, &mut h).unwrap();
//! assert_eq!(h, [0x3c00, 0x3c01, 0x7c00]); // 65520 rounds to inf in f16
//! convert::f32_to_bf16(&x, &mut h).unwrap();
//! assert_eq!(h[1], 0x3f80); // 1 + 2^-10 is below half a bf16 ulp (2^-7)
//!
//! let mut s = LossScaler::new(LossScalerConfig::default()).unwrap();
//! assert_eq!(s.update(true), 32768.0);
//! ```

pub mod convert;
pub mod loss_scale;
pub mod stochastic;

pub use convert::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, Level};
pub use loss_scale::{LossScaler, LossScalerConfig};
pub use stochastic::f32_to_bf16_stochastic;
