//! Element types of stored tensors ([`Dtype`]) and what a file says about a
//! tensor ([`TensorInfo`]).

use std::fmt;

/// The element type of a stored tensor.
///
/// Plain types are one element each; `TQ1_0` and `TQ2_0` are ggml's ternary
/// block types (256 weights a block: 54 and 66 bytes). [`Dtype::Other`]
/// holds a ggml type that can be listed but not converted (e.g. `Q8_0`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// Boolean, one byte.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// ggml `TQ1_0`: 256 ternary weights in 54 bytes (base-3 packing + f16 scale).
    TQ1_0,
    /// ggml `TQ2_0`: 256 ternary weights in 66 bytes (2-bit codes + f16 scale).
    TQ2_0,
    /// Another ggml type (its `ggml_type` number): listed, not converted.
    Other(u32),
}

/// Weights a TQ1_0/TQ2_0 block holds.
pub(crate) const QK_K: usize = 256;

impl Dtype {
    /// Every dtype with a C code, in code order (see [`Dtype::code`]).
    pub const ALL: [Dtype; 15] = [
        Dtype::Bool,
        Dtype::U8,
        Dtype::I8,
        Dtype::I16,
        Dtype::U16,
        Dtype::I32,
        Dtype::U32,
        Dtype::I64,
        Dtype::U64,
        Dtype::F16,
        Dtype::BF16,
        Dtype::F32,
        Dtype::F64,
        Dtype::TQ1_0,
        Dtype::TQ2_0,
    ];

    /// `(elements a block, bytes a block)`: `(1, size)` for plain types.
    pub fn block(self) -> (usize, usize) {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => (1, 1),
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => (1, 2),
            Dtype::I32 | Dtype::U32 | Dtype::F32 => (1, 4),
            Dtype::I64 | Dtype::U64 | Dtype::F64 => (1, 8),
            Dtype::TQ1_0 => (QK_K, 54),
            Dtype::TQ2_0 => (QK_K, 66),
            Dtype::Other(t) => crate::io::gguf::ggml_block(t).unwrap_or((1, 0)),
        }
    }

    /// Bytes for `n` elements, `None` on overflow or when `n` is not a
    /// whole number of blocks.
    pub fn nbytes(self, n: usize) -> Option<usize> {
        let (be, bb) = self.block();
        if !n.is_multiple_of(be) {
            return None;
        }
        (n / be).checked_mul(bb)
    }

    /// Whether [`crate::io::Checkpoint::tensor_f32`] converts it.
    pub fn is_convertible(self) -> bool {
        !matches!(self, Dtype::Other(_))
    }

    /// Whether the type is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }

    /// The C code (`TRITTER_DTYPE_*`; index into [`Dtype::ALL`]), 255 for
    /// [`Dtype::Other`].
    pub fn code(self) -> u32 {
        Self::ALL
            .iter()
            .position(|&d| d == self)
            .map_or(255, |i| i as u32)
    }

    /// From a C code.
    pub fn from_code(code: u32) -> Option<Dtype> {
        Self::ALL.get(code as usize).copied()
    }

    /// The safetensors dtype string (`None` for the ggml block types).
    pub fn safetensors_name(self) -> Option<&'static str> {
        Some(match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            _ => return None,
        })
    }

    /// From a safetensors dtype string.
    pub fn from_safetensors_name(s: &str) -> Option<Dtype> {
        Self::ALL
            .iter()
            .copied()
            .find(|d| d.safetensors_name() == Some(s))
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dtype::TQ1_0 => f.write_str("TQ1_0"),
            Dtype::TQ2_0 => f.write_str("TQ2_0"),
            Dtype::Other(t) => match crate::io::gguf::ggml_type_name(*t) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "ggml type {t}"),
            },
            d => f.write_str(d.safetensors_name().unwrap_or("?")),
        }
    }
}

/// What a file says about one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: Dtype,
    /// Logical shape, row-major (outermost first; GGUF's `ne` reversed).
    pub shape: Vec<usize>,
    /// Bytes stored.
    pub nbytes: usize,
}

impl TensorInfo {
    /// Number of elements (the product of the shape; 1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The product of `shape`, or an error naming the tensor. The product of
/// the non-zero dimensions must stay below `isize::MAX` too (ndarray's
/// limit, which even an empty tensor must meet).
pub(crate) fn checked_numel(shape: &[usize], name: &str) -> crate::Result<usize> {
    let nz = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize);
    match nz {
        Some(n) => Ok(if shape.contains(&0) { 0 } else { n }),
        None => Err(crate::Error::data(
            "file",
            format!("tensor `{name}`: shape {shape:?} has more elements than fit in memory"),
        )),
    }
}
