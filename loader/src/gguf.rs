//! GGUF files (versions 2 and 3, little-endian), parsed and validated over a memory map.
//!
//! The format (ggml's `docs/gguf.md`; every integer little-endian):
//!
//! ```text
//! header    magic "GGUF" | version: u32 (2 or 3) | n_tensors: u64 | n_kv: u64
//! metadata  n_kv x { key: string | value_type: u32 | value }
//!             string = len: u64 | len bytes of UTF-8
//!             value  = u8 | i8 | u16 | i16 | u32 | i32 | f32 | bool (1 byte: 0 or 1) | string
//!                    | array (elem_type: u32 | len: u64 | len values of elem_type; arrays may nest)
//!                    | u64 | i64 | f64                         (value type ids 0..=12 in that order)
//! tensors   n_tensors x { name: string | n_dims: u32 | ne: n_dims x u64 | ggml_type: u32 | offset: u64 }
//! padding   up to the next multiple of `general.alignment` (u32 metadata; 32 if absent; a power of two)
//! data      tensor bytes: each tensor at data_start + offset, offset a multiple of the alignment
//! ```
//!
//! `ne` is in ggml order: `ne[0]` varies fastest (the columns of a matrix), so a 2-D weight of
//! `rows x cols` has `ne = [cols, rows]` and a fused expert tensor `ne = [cols, rows, n_expert]` (one
//! expert's matrix is contiguous). [`GgufTensorInfo::shape`] gives the row-major order the rest of
//! cosmoe uses (`[n_expert, rows, cols]`), the same as a safetensors shape.
//!
//! Version 1 (32-bit counts) is refused, as ggml refuses it; v2 and v3 share one little-endian layout
//! (v3 only added big-endian files, which are refused: they show as a byte-swapped version).
//!
//! Everything a file controls is checked before it is used, so a crafted file gets an error, never an
//! out-of-bounds read, a huge allocation, deep recursion or a panic:
//! - every count and length (metadata and tensor counts, string and array lengths) against the bytes
//!   left in the file, times the fewest bytes one item takes, before anything is allocated for it;
//!   capacities taken from a count are capped, so memory grows only with bytes actually parsed;
//! - strings are UTF-8; keys non-empty and unique; bools 0 or 1; value and ggml type ids known;
//!   arrays nested at most [`MAX_ARRAY_DEPTH`] deep;
//! - `general.alignment` a `u32` power of two;
//! - tensor names unique and shorter than ggml's `GGML_MAX_NAME` (64, with its NUL), at most
//!   [`MAX_DIMS`] dims, each at most `i64::MAX` (ggml reads them signed), the element count and byte
//!   size without overflow, rows a whole number of blocks (`ne[0] % block_len == 0`);
//! - tensor offsets aligned, every tensor inside the file, no two tensors overlapping.
//!
//! ggml accepts dims of 0 (empty tensors), and so does this reader. ggml also requires tensors to be
//! laid out back to back in header order; this reader only requires them to be disjoint.
//!
//! Types cosmoe does not compute with (K-quants, IQ-quants...) parse, with their sizes checked, so a
//! header can always be inspected; using such a tensor as a weight is a
//! [`LoaderError::UnsupportedGgmlType`] naming the file, the tensor and the type.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cosmoe_kernels::DType;
use memmap2::Mmap;

use crate::{Bytes, LoaderError, Result, Weight};

/// The first four bytes of every GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of the data section and of tensor offsets when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// The metadata key that sets the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// The most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// The longest tensor name in bytes (ggml's `GGML_MAX_NAME` is 64 including the terminating NUL).
pub const MAX_NAME_LEN: usize = 63;
/// How deep arrays of arrays may nest (1 = a plain array). ggml itself reads no nested arrays.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// The longest string and the longest array (in elements), ggml's `GGUF_MAX_STRING_LENGTH` and
/// `GGUF_MAX_ARRAY_ELEMENTS`.
pub const MAX_STRING_LEN: u64 = 1 << 30;
pub const MAX_ARRAY_LEN: u64 = 1 << 30;

/// Fewest bytes one metadata entry takes: key length, a 1-byte key, value type, a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Fewest bytes one tensor info takes: name length (empty name), n_dims (0), type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;
/// A cap on capacities reserved from a count a file gives (the rest grows as items are parsed).
const MAX_PREALLOC: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Metadata values
// ---------------------------------------------------------------------------------------------

/// The type of a metadata value (`gguf_type`; the ids are the file's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    pub const ALL: [ValueType; 13] = [
        ValueType::U8,
        ValueType::I8,
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
        ValueType::Bool,
        ValueType::String,
        ValueType::Array,
        ValueType::U64,
        ValueType::I64,
        ValueType::F64,
    ];

    /// The type with file id `id`, or `None` for an unknown id.
    pub fn from_id(id: u32) -> Option<ValueType> {
        ValueType::ALL.get(usize::try_from(id).ok()?).copied()
    }

    /// The id written in files.
    pub const fn id(self) -> u32 {
        match self {
            ValueType::U8 => 0,
            ValueType::I8 => 1,
            ValueType::U16 => 2,
            ValueType::I16 => 3,
            ValueType::U32 => 4,
            ValueType::I32 => 5,
            ValueType::F32 => 6,
            ValueType::Bool => 7,
            ValueType::String => 8,
            ValueType::Array => 9,
            ValueType::U64 => 10,
            ValueType::I64 => 11,
            ValueType::F64 => 12,
        }
    }

    /// ggml's short name (`u8`, `str`, `arr`...).
    pub const fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "str",
            ValueType::Array => "arr",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }

    /// Fewest bytes one value of this type takes in a file (the whole size of a fixed-size type).
    const fn min_size(self) -> u64 {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 => 8,
            // length only (an empty string)
            ValueType::String => 8,
            // element type and length (an empty array)
            ValueType::Array => 4 + 8,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A typed metadata array, stored compactly (a vocabulary's scores are one `Vec<f32>`).
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Arrays of arrays (each inner array has its own element type).
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer value that is non-negative, as `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value that fits, as `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// A float, or an integer converted to `f64` (writers store e.g. `rope.freq_base` either way).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

macro_rules! typed_slices {
    ($($fn:ident: $variant:ident => $t:ty;)*) => {
        $(
            #[doc = concat!("The elements, if this is an array of `", stringify!($t), "`.")]
            pub fn $fn(&self) -> Option<&[$t]> {
                match self {
                    Array::$variant(v) => Some(v),
                    _ => None,
                }
            }
        )*
    };
}

impl Array {
    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a [`Value`] (cloned), or `None` past the end.
    pub fn get(&self, i: usize) -> Option<Value> {
        Some(match self {
            Array::U8(v) => Value::U8(*v.get(i)?),
            Array::I8(v) => Value::I8(*v.get(i)?),
            Array::U16(v) => Value::U16(*v.get(i)?),
            Array::I16(v) => Value::I16(*v.get(i)?),
            Array::U32(v) => Value::U32(*v.get(i)?),
            Array::I32(v) => Value::I32(*v.get(i)?),
            Array::F32(v) => Value::F32(*v.get(i)?),
            Array::Bool(v) => Value::Bool(*v.get(i)?),
            Array::String(v) => Value::String(v.get(i)?.clone()),
            Array::Array(v) => Value::Array(v.get(i)?.clone()),
            Array::U64(v) => Value::U64(*v.get(i)?),
            Array::I64(v) => Value::I64(*v.get(i)?),
            Array::F64(v) => Value::F64(*v.get(i)?),
        })
    }

    typed_slices! {
        as_u8s: U8 => u8;
        as_i8s: I8 => i8;
        as_u16s: U16 => u16;
        as_i16s: I16 => i16;
        as_u32s: U32 => u32;
        as_i32s: I32 => i32;
        as_f32s: F32 => f32;
        as_bools: Bool => bool;
        as_strings: String => String;
        as_arrays: Array => Array;
        as_u64s: U64 => u64;
        as_i64s: I64 => i64;
        as_f64s: F64 => f64;
    }

    /// An array of any integer type as `i64`s (`None` for other types, or a `u64` past `i64::MAX`);
    /// for per-layer values that writers store as `i32` or `u32`.
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        (0..self.len())
            .map(|i| self.get(i).and_then(|v| v.as_i64()))
            .collect()
    }

    /// An array of any numeric type as `f64`s.
    pub fn to_f64s(&self) -> Option<Vec<f64>> {
        (0..self.len())
            .map(|i| self.get(i).and_then(|v| v.as_f64()))
            .collect()
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(a) => write!(f, "{a}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
        }
    }
}

/// Shows at most the first 8 elements, then how many there are.
impl fmt::Display for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        f.write_str("[")?;
        for i in 0..self.len().min(SHOWN) {
            if i > 0 {
                f.write_str(", ")?;
            }
            if let Some(v) = self.get(i) {
                write!(f, "{v}")?;
            }
        }
        if self.len() > SHOWN {
            write!(f, ", ... ({} {})", self.len(), self.elem_type())?;
        }
        f.write_str("]")
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor types
// ---------------------------------------------------------------------------------------------

/// ggml's `ggml_type`, with the ids files store (ids 4, 5, 31-33 and 36-38 were removed from ggml
/// and are refused as unknown).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
    NVFP4 = 40,
    Q1_0 = 41,
}

/// `QK_K`, the super-block length of the K-quants.
const QK_K: usize = 256;

impl GgmlType {
    pub const ALL: [GgmlType; 34] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
    ];

    /// The type with id `id`, or `None` for an id ggml does not (or no longer) define.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    pub const fn id(self) -> u32 {
        self as u32
    }

    /// ggml's name, upper case (`Q4_K`).
    pub const fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q8_1 => "Q8_1",
            GgmlType::Q2_K => "Q2_K",
            GgmlType::Q3_K => "Q3_K",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
            GgmlType::Q8_K => "Q8_K",
            GgmlType::IQ2_XXS => "IQ2_XXS",
            GgmlType::IQ2_XS => "IQ2_XS",
            GgmlType::IQ3_XXS => "IQ3_XXS",
            GgmlType::IQ1_S => "IQ1_S",
            GgmlType::IQ4_NL => "IQ4_NL",
            GgmlType::IQ3_S => "IQ3_S",
            GgmlType::IQ2_S => "IQ2_S",
            GgmlType::IQ4_XS => "IQ4_XS",
            GgmlType::I8 => "I8",
            GgmlType::I16 => "I16",
            GgmlType::I32 => "I32",
            GgmlType::I64 => "I64",
            GgmlType::F64 => "F64",
            GgmlType::IQ1_M => "IQ1_M",
            GgmlType::BF16 => "BF16",
            GgmlType::TQ1_0 => "TQ1_0",
            GgmlType::TQ2_0 => "TQ2_0",
            GgmlType::MXFP4 => "MXFP4",
            GgmlType::NVFP4 => "NVFP4",
            GgmlType::Q1_0 => "Q1_0",
        }
    }

    /// Values per block (ggml's `blck_size`; 1 for plain numbers).
    pub const fn block_len(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4_NL | MXFP4 => 32,
            NVFP4 => 64,
            Q1_0 => 128,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K | IQ2_XXS | IQ2_XS | IQ3_XXS | IQ1_S
            | IQ3_S | IQ2_S | IQ4_XS | IQ1_M | TQ1_0 | TQ2_0 => QK_K,
        }
    }

    /// Bytes per block (ggml's `type_size`), as in gguf-py's `GGML_QUANT_SIZES`.
    pub const fn block_bytes(self) -> usize {
        use GgmlType::*;
        match self {
            I8 => 1,
            F16 | BF16 | I16 => 2,
            F32 | I32 => 4,
            F64 | I64 => 8,
            Q4_0 => 2 + 16,
            Q4_1 => 2 + 2 + 16,
            Q5_0 => 2 + 4 + 16,
            Q5_1 => 2 + 2 + 4 + 16,
            Q8_0 => 2 + 32,
            Q8_1 => 4 + 4 + 32,
            Q2_K => 2 + 2 + QK_K / 16 + QK_K / 4,
            Q3_K => 2 + QK_K / 4 + QK_K / 8 + 12,
            Q4_K => 2 + 2 + QK_K / 2 + 12,
            Q5_K => 2 + 2 + QK_K / 2 + QK_K / 8 + 12,
            Q6_K => 2 + QK_K / 2 + QK_K / 4 + QK_K / 16,
            Q8_K => 4 + QK_K + QK_K / 8,
            IQ2_XXS => 2 + QK_K / 4,
            IQ2_XS => 2 + QK_K / 4 + QK_K / 32,
            IQ3_XXS => 2 + QK_K / 4 + QK_K / 8,
            IQ1_S => 2 + QK_K / 8 + QK_K / 16,
            IQ4_NL => 2 + 16,
            IQ3_S => 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4,
            IQ2_S => 2 + QK_K / 4 + QK_K / 16,
            IQ4_XS => 2 + 2 + QK_K / 2 + QK_K / 64,
            IQ1_M => QK_K / 8 + QK_K / 16 + QK_K / 32,
            TQ1_0 => 2 + 4 * 13,
            TQ2_0 => 2 + 64,
            MXFP4 => 1 + 16,
            NVFP4 => 4 + 32,
            Q1_0 => 2 + 16,
        }
    }

    /// Bytes of `n` values (`n` a whole number of blocks), or `None` if it is not one or overflows.
    pub fn bytes_of(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_len()) {
            return None;
        }
        (n / self.block_len()).checked_mul(self.block_bytes())
    }

    /// The kernel format cosmoe computes with for this type, if it has one.
    pub const fn dtype(self) -> Option<DType> {
        match self {
            GgmlType::F32 => Some(DType::F32),
            GgmlType::F16 => Some(DType::F16),
            GgmlType::BF16 => Some(DType::BF16),
            GgmlType::Q8_0 => Some(DType::Q8_0),
            GgmlType::Q4_0 => Some(DType::Q4_0),
            GgmlType::Q4_1 => Some(DType::Q4_1),
            GgmlType::Q5_0 => Some(DType::Q5_0),
            GgmlType::Q5_1 => Some(DType::Q5_1),
            GgmlType::Q2_K => Some(DType::Q2_K),
            GgmlType::Q3_K => Some(DType::Q3_K),
            GgmlType::Q4_K => Some(DType::Q4_K),
            GgmlType::Q5_K => Some(DType::Q5_K),
            GgmlType::Q6_K => Some(DType::Q6_K),
            GgmlType::IQ4_NL => Some(DType::IQ4_NL),
            GgmlType::IQ4_XS => Some(DType::IQ4_XS),
            GgmlType::IQ3_XXS => Some(DType::IQ3_XXS),
            GgmlType::IQ3_S => Some(DType::IQ3_S),
            GgmlType::IQ2_XXS => Some(DType::IQ2_XXS),
            GgmlType::IQ2_XS => Some(DType::IQ2_XS),
            GgmlType::IQ2_S => Some(DType::IQ2_S),
            GgmlType::IQ1_S => Some(DType::IQ1_S),
            GgmlType::IQ1_M => Some(DType::IQ1_M),
            _ => None,
        }
    }

    /// The ggml type a kernel format is stored as.
    pub const fn from_dtype(dtype: DType) -> GgmlType {
        match dtype {
            DType::F32 => GgmlType::F32,
            DType::F16 => GgmlType::F16,
            DType::BF16 => GgmlType::BF16,
            DType::Q8_0 => GgmlType::Q8_0,
            DType::Q4_0 => GgmlType::Q4_0,
            DType::Q4_1 => GgmlType::Q4_1,
            DType::Q5_0 => GgmlType::Q5_0,
            DType::Q5_1 => GgmlType::Q5_1,
            DType::Q2_K => GgmlType::Q2_K,
            DType::Q3_K => GgmlType::Q3_K,
            DType::Q4_K => GgmlType::Q4_K,
            DType::Q5_K => GgmlType::Q5_K,
            DType::Q6_K => GgmlType::Q6_K,
            DType::IQ4_NL => GgmlType::IQ4_NL,
            DType::IQ4_XS => GgmlType::IQ4_XS,
            DType::IQ3_XXS => GgmlType::IQ3_XXS,
            DType::IQ3_S => GgmlType::IQ3_S,
            DType::IQ2_XXS => GgmlType::IQ2_XXS,
            DType::IQ2_XS => GgmlType::IQ2_XS,
            DType::IQ2_S => GgmlType::IQ2_S,
            DType::IQ1_S => GgmlType::IQ1_S,
            DType::IQ1_M => GgmlType::IQ1_M,
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Tensors and the file
// ---------------------------------------------------------------------------------------------

/// Where one tensor lives, validated against its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensorInfo {
    name: String,
    /// ggml order: `ne[0]` varies fastest. `n_dims` entries (0 for a scalar).
    ne: Vec<usize>,
    ggml_type: GgmlType,
    /// Relative to the start of the data section.
    offset: usize,
    n_bytes: usize,
}

impl GgufTensorInfo {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dims in ggml order (`ne[0]` = columns, varying fastest), as stored.
    pub fn ne(&self) -> &[usize] {
        &self.ne
    }

    pub fn n_dims(&self) -> usize {
        self.ne.len()
    }

    /// The dims in row-major order (columns last), as safetensors and the rest of cosmoe write
    /// shapes: `ne = [cols, rows, n_expert]` gives `[n_expert, rows, cols]`.
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().copied().collect()
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// The kernel format, if cosmoe computes with this tensor's type.
    pub fn dtype(&self) -> Option<DType> {
        self.ggml_type.dtype()
    }

    /// Byte offset from the start of the data section.
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn n_bytes(&self) -> usize {
        self.n_bytes
    }

    pub fn n_elements(&self) -> usize {
        // checked when the file was parsed
        self.ne.iter().product()
    }

    /// `ne` padded with 1s to `N` dims, or `None` if the tensor has more than `N`.
    fn ne_padded<const N: usize>(&self) -> Option<[usize; N]> {
        if self.ne.len() > N {
            return None;
        }
        let mut out = [1; N];
        out[..self.ne.len()].copy_from_slice(&self.ne);
        Some(out)
    }
}

/// A parsed GGUF file over its bytes (usually a memory map).
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    metadata: Vec<(String, Value)>,
    keys: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: usize,
    data_offset: usize,
    bytes: Bytes,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl GgufFile {
    /// Whether `path` names a GGUF file: an existing file that starts with the magic `GGUF`, whatever
    /// its name (see [`crate::ModelPath`]).
    pub fn is_gguf_path(path: &Path) -> bool {
        let mut magic = [0u8; 4];
        path.is_file()
            && File::open(path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
            && &magic == b"GGUF"
    }

    /// Maps `path` and parses it.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let io = |err| LoaderError::Io {
            path: path.to_owned(),
            err,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process. Another process truncating or
        // rewriting the file while it is mapped is outside what cosmoe can guard against here (the
        // same contract as every mmap-based loader); every offset used below is validated against
        // the map's length.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        GgufFile::parse(Bytes::new(Arc::new(map)), path)
    }

    /// Parses and validates a GGUF file held in `bytes`; `path` names it in errors.
    pub fn parse(bytes: Bytes, path: &Path) -> Result<GgufFile> {
        parse(bytes, path).map_err(|msg| LoaderError::Gguf {
            path: path.to_owned(),
            msg,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data section's alignment (`general.alignment`, or 32).
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Where the data section starts in the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// The whole file.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Every metadata entry, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        let &i = self.keys.get(key)?;
        self.metadata.get(i).map(|(_, v)| v)
    }

    /// The value of `key`, or [`LoaderError::MissingKey`].
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| LoaderError::MissingKey {
            path: self.path.clone(),
            key: key.to_owned(),
        })
    }

    /// `key` as a non-negative integer (of any integer type).
    pub fn require_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| self.bad_value(key, v, "a non-negative integer"))
    }

    /// `key` as a number (float, or an integer converted).
    pub fn require_f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| self.bad_value(key, v, "a number"))
    }

    pub fn require_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.bad_value(key, v, "a string"))
    }

    /// `general.architecture` (`llama`, `qwen3moe`, `olmoe`...).
    pub fn architecture(&self) -> Result<&str> {
        self.require_str("general.architecture")
    }

    fn bad_value(&self, key: &str, v: &Value, expected: &str) -> LoaderError {
        LoaderError::BadValue {
            path: self.path.clone(),
            key: key.to_owned(),
            msg: format!("expected {expected}, found a {}", v.value_type()),
        }
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        let &i = self.by_name.get(name)?;
        self.tensors.get(i)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The tensor `name`, or [`LoaderError::MissingTensor`].
    pub fn info(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.tensor(name).ok_or_else(|| LoaderError::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
        })
    }

    /// The absolute byte range of a tensor in the file (for `pread`).
    pub fn file_range(&self, info: &GgufTensorInfo) -> Result<Range<usize>> {
        let start = self.data_offset.checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(info.n_bytes));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.bytes.len() => Ok(s..e),
            _ => Err(self.tensor_err(&info.name, "lies outside the file".into())),
        }
    }

    /// A tensor's bytes, in place over the file.
    pub fn tensor_bytes(&self, info: &GgufTensorInfo) -> Result<Bytes> {
        let range = self.file_range(info)?;
        self.bytes
            .slice(range)
            .ok_or_else(|| self.tensor_err(&info.name, "lies outside the file".into()))
    }

    /// A 1-D or 2-D tensor (`ne = [cols, rows]`) as a `(rows, cols)` matrix, used in place.
    pub fn weight(&self, name: &str) -> Result<Weight> {
        let t = self.info(name)?;
        let [cols, rows] = t
            .ne_padded::<2>()
            .ok_or_else(|| self.rank_err(t, "a matrix (at most 2)"))?;
        let dtype = self.dtype_of(t)?;
        let bytes = self.tensor_bytes(t)?;
        Weight::new(dtype, rows, cols, bytes)
            .ok_or_else(|| self.tensor_err(name, format!("does not hold {rows} x {cols} {dtype}")))
    }

    /// A `(rows, cols)` matrix, checking its shape.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Weight> {
        self.check_shape(name, &[rows, cols])?;
        self.weight(name)
    }

    /// Fails with [`LoaderError::Shape`] unless the tensor's row-major shape is `shape`
    /// (trailing unit dims that ggml drops from `n_dims` count as present).
    pub fn check_shape(&self, name: &str, shape: &[usize]) -> Result<()> {
        let t = self.info(name)?;
        let mut ne: Vec<usize> = t.ne.clone();
        while ne.len() < shape.len() {
            ne.push(1);
        }
        if ne.iter().rev().eq(shape.iter()) {
            Ok(())
        } else {
            Err(LoaderError::Shape {
                path: self.path.clone(),
                tensor: name.to_owned(),
                got: t.shape(),
                expected: shape.to_vec(),
            })
        }
    }

    /// The number of experts of a fused expert tensor (`ne = [cols, rows, n_expert]`) and the
    /// bytes of one expert's matrix.
    fn expert_layout(&self, t: &GgufTensorInfo) -> Result<([usize; 3], usize)> {
        let ne = t
            .ne_padded::<3>()
            .ok_or_else(|| self.rank_err(t, "experts x rows x cols (at most 3)"))?;
        let [cols, rows, _] = ne;
        let per = rows
            .checked_mul(cols)
            .and_then(|n| t.ggml_type.bytes_of(n))
            .ok_or_else(|| self.tensor_err(&t.name, "expert size overflows".into()))?;
        Ok((ne, per))
    }

    /// The absolute byte range of expert `e`'s matrix in a fused expert tensor (for `pread`); for
    /// any ggml type, supported or not.
    pub fn expert_file_range(&self, name: &str, e: usize) -> Result<Range<usize>> {
        let t = self.info(name)?;
        let ([_, _, n_expert], per) = self.expert_layout(t)?;
        if e >= n_expert {
            return Err(self.tensor_err(name, format!("has {n_expert} experts, asked for {e}")));
        }
        let range = self.file_range(t)?;
        // e < n_expert and n_expert * per == n_bytes, so this lies inside `range`
        e.checked_mul(per)
            .and_then(|o| range.start.checked_add(o))
            .and_then(|s| Some(s..s.checked_add(per)?))
            .filter(|r| r.end <= range.end)
            .ok_or_else(|| self.tensor_err(name, format!("expert {e} lies outside the tensor")))
    }

    /// Expert `e`'s `(rows, cols)` matrix of a fused expert tensor, used in place.
    pub fn expert(&self, name: &str, e: usize) -> Result<Weight> {
        let t = self.info(name)?;
        let dtype = self.dtype_of(t)?;
        let ([cols, rows, _], _) = self.expert_layout(t)?;
        let range = self.expert_file_range(name, e)?;
        self.bytes
            .slice(range)
            .and_then(|b| Weight::new(dtype, rows, cols, b))
            .ok_or_else(|| self.tensor_err(name, format!("expert {e} lies outside the tensor")))
    }

    /// The number of experts of a fused expert tensor (`ne[2]`; 1 for a matrix).
    pub fn n_experts(&self, name: &str) -> Result<usize> {
        let t = self.info(name)?;
        let ([_, _, n_expert], _) = self.expert_layout(t)?;
        Ok(n_expert)
    }

    /// The `n` expert matrices `(rows, cols)` of a fused expert tensor of row-major shape
    /// `[n, rows, cols]`, used in place. The caller names the shape it expects (from the model's
    /// config), so a file cannot make this allocate more than the caller asked for.
    pub fn stacked(&self, name: &str, n: usize, rows: usize, cols: usize) -> Result<Vec<Weight>> {
        self.check_shape(name, &[n, rows, cols])?;
        (0..n).map(|e| self.expert(name, e)).collect()
    }

    /// A 1-D tensor converted to `f32` (norm weights, biases).
    pub fn vector(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.info(name)?;
        let [len] = t
            .ne_padded::<1>()
            .ok_or_else(|| self.rank_err(t, "a vector (1)"))?;
        let dtype = self.dtype_of(t)?;
        let bytes = self.tensor_bytes(t)?;
        if dtype.row_bytes(len) != Some(bytes.len()) {
            return Err(self.tensor_err(name, format!("does not hold {len} {dtype} values")));
        }
        let mut out = vec![0f32; len];
        cosmoe_kernels::dequantize_row(dtype, &bytes, &mut out);
        Ok(out)
    }

    fn dtype_of(&self, t: &GgufTensorInfo) -> Result<DType> {
        t.dtype().ok_or_else(|| LoaderError::UnsupportedGgmlType {
            path: self.path.clone(),
            tensor: t.name.clone(),
            ggml_type: t.ggml_type.name().to_owned(),
        })
    }

    fn tensor_err(&self, tensor: &str, msg: String) -> LoaderError {
        LoaderError::GgufTensor {
            path: self.path.clone(),
            tensor: tensor.to_owned(),
            msg,
        }
    }

    fn rank_err(&self, t: &GgufTensorInfo, expected: &str) -> LoaderError {
        self.tensor_err(
            &t.name,
            format!(
                "has {} dims (shape {:?}), expected {expected}",
                t.ne.len(),
                t.shape()
            ),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Errors inside the parser are messages; [`GgufFile::parse`] adds the path.
type Parse<T> = std::result::Result<T, String>;

/// A bounds-checked little-endian reader over the file.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| {
                format!(
                    "unexpected end of file: {n} bytes needed at byte {}, {} left",
                    self.pos,
                    self.remaining()
                )
            })?;
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Parse<[u8; N]> {
        let b = self.take(N)?;
        b.try_into()
            .map_err(|_| format!("internal: {} bytes read for {N}", b.len()))
    }

    fn u8(&mut self) -> Parse<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Parse<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Parse<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length-prefixed UTF-8 string.
    fn string(&mut self) -> Parse<String> {
        let at = self.pos;
        let len = self.u64()?;
        if len > MAX_STRING_LEN || len > self.remaining() as u64 {
            return Err(format!(
                "string at byte {at} claims {len} bytes, but {} are left{}",
                self.remaining(),
                if len > MAX_STRING_LEN {
                    format!(" (and strings are at most {MAX_STRING_LEN})")
                } else {
                    String::new()
                }
            ));
        }
        let b = self.take(len as usize)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|e| format!("string at byte {at} is not valid UTF-8 ({e})"))
    }

    fn value_type(&mut self) -> Parse<ValueType> {
        let at = self.pos;
        let id = self.u32()?;
        ValueType::from_id(id).ok_or_else(|| format!("unknown value type {id} at byte {at}"))
    }

    fn value(&mut self, ty: ValueType) -> Parse<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8()?),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::Bool => Value::Bool(bool_of(self.u8()?, self.pos - 1)?),
            ValueType::String => Value::String(self.string()?),
            ValueType::Array => Value::Array(self.array_value(1)?),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
        })
    }

    /// An array (element type, length, elements) at nesting level `depth` (1 = outermost).
    fn array_value(&mut self, depth: usize) -> Parse<Array> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(format!(
                "arrays nested more than {MAX_ARRAY_DEPTH} deep (at byte {})",
                self.pos
            ));
        }
        let at = self.pos;
        let et = self.value_type()?;
        let n = self.u64()?;
        // Every element takes at least `min_size` bytes: check the count against the bytes left
        // before reserving anything for it.
        let need = u128::from(n) * u128::from(et.min_size());
        if n > MAX_ARRAY_LEN || need > self.remaining() as u128 {
            return Err(format!(
                "array at byte {at} claims {n} {et} elements (at least {need} bytes), but {} bytes \
                 are left",
                self.remaining()
            ));
        }
        // n * min_size <= remaining, so these fit in usize
        let n = n as usize;
        Ok(match et {
            ValueType::U8 => Array::U8(self.take(n)?.to_vec()),
            ValueType::I8 => Array::I8(self.fixed(n, i8::from_le_bytes)?),
            ValueType::U16 => Array::U16(self.fixed(n, u16::from_le_bytes)?),
            ValueType::I16 => Array::I16(self.fixed(n, i16::from_le_bytes)?),
            ValueType::U32 => Array::U32(self.fixed(n, u32::from_le_bytes)?),
            ValueType::I32 => Array::I32(self.fixed(n, i32::from_le_bytes)?),
            ValueType::F32 => Array::F32(self.fixed(n, f32::from_le_bytes)?),
            ValueType::U64 => Array::U64(self.fixed(n, u64::from_le_bytes)?),
            ValueType::I64 => Array::I64(self.fixed(n, i64::from_le_bytes)?),
            ValueType::F64 => Array::F64(self.fixed(n, f64::from_le_bytes)?),
            ValueType::Bool => {
                let start = self.pos;
                let b = self.take(n)?;
                Array::Bool(
                    b.iter()
                        .enumerate()
                        .map(|(i, &x)| bool_of(x, start + i))
                        .collect::<Parse<_>>()?,
                )
            }
            ValueType::String => {
                let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
                for i in 0..n {
                    v.push(self.string().map_err(|e| format!("element {i}: {e}"))?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
                for i in 0..n {
                    v.push(
                        self.array_value(depth + 1)
                            .map_err(|e| format!("element {i}: {e}"))?,
                    );
                }
                Array::Array(v)
            }
        })
    }

    /// `n` fixed-size little-endian values (the bytes are taken, so exist, before the `Vec`).
    fn fixed<T, const N: usize>(&mut self, n: usize, f: fn([u8; N]) -> T) -> Parse<Vec<T>> {
        let len = n
            .checked_mul(N)
            .ok_or_else(|| format!("array of {n} elements overflows"))?;
        let b = self.take(len)?;
        Ok(b.chunks_exact(N)
            .filter_map(|c| <[u8; N]>::try_from(c).ok())
            .map(f)
            .collect())
    }
}

fn bool_of(x: u8, at: usize) -> Parse<bool> {
    match x {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(format!("bool at byte {at} is {x}, not 0 or 1")),
    }
}

fn parse(bytes: Bytes, path: &Path) -> Parse<GgufFile> {
    let buf: &[u8] = &bytes;
    let mut r = Reader { buf, pos: 0 };

    // header
    if buf.len() < 4 {
        return Err(format!(
            "{} bytes is too short for a GGUF header",
            buf.len()
        ));
    }
    let magic = r.array::<4>()?;
    if magic != GGUF_MAGIC {
        return Err(format!(
            "bad magic {:?} (expected \"GGUF\")",
            String::from_utf8_lossy(&magic)
        ));
    }
    let version = r.u32().map_err(|e| format!("version: {e}"))?;
    match version {
        2 | 3 => {}
        0 => return Err("version 0 is not a GGUF version".into()),
        1 => {
            return Err(
                "GGUF version 1 is not supported (cosmoe reads versions 2 and 3; re-convert the \
                 file)"
                    .into(),
            )
        }
        v if v & 0xFFFF == 0 => {
            return Err(format!(
                "version field {v:#010x} looks byte-swapped: a big-endian GGUF file (version {}), \
                 which cosmoe does not read",
                v.swap_bytes()
            ))
        }
        v => {
            return Err(format!(
                "GGUF version {v} is not supported (cosmoe reads versions 2 and 3)"
            ))
        }
    }
    let n_tensors = r.u64().map_err(|e| format!("tensor count: {e}"))?;
    let n_kv = r.u64().map_err(|e| format!("metadata count: {e}"))?;
    let need = u128::from(n_kv) * u128::from(MIN_KV_BYTES)
        + u128::from(n_tensors) * u128::from(MIN_TENSOR_INFO_BYTES);
    if need > r.remaining() as u128 {
        return Err(format!(
            "header claims {n_kv} metadata entries and {n_tensors} tensors, which take at least \
             {need} bytes, but {} are left",
            r.remaining()
        ));
    }
    // both counts are now below the file's length
    let (n_tensors, n_kv) = (n_tensors as usize, n_kv as usize);

    // metadata
    let mut metadata = Vec::with_capacity(n_kv.min(MAX_PREALLOC));
    let mut keys = HashMap::with_capacity(n_kv.min(MAX_PREALLOC));
    for i in 0..n_kv {
        let key = r.string().map_err(|e| format!("metadata key {i}: {e}"))?;
        if key.is_empty() {
            return Err(format!("metadata key {i} is empty"));
        }
        if keys.contains_key(&key) {
            return Err(format!("duplicate metadata key `{key}`"));
        }
        let value = r
            .value_type()
            .and_then(|ty| r.value(ty))
            .map_err(|e| format!("key `{key}`: {e}"))?;
        keys.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }
    let alignment = match keys.get(ALIGNMENT_KEY).and_then(|&i| metadata.get(i)) {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if a.is_power_of_two() => *a as usize,
        Some((_, Value::U32(a))) => {
            return Err(format!(
                "`{ALIGNMENT_KEY}` is {a}, which is not a power of two"
            ))
        }
        Some((_, v)) => {
            return Err(format!(
                "`{ALIGNMENT_KEY}` must be a u32, found a {}",
                v.value_type()
            ))
        }
    };

    // tensor infos
    let mut tensors: Vec<GgufTensorInfo> = Vec::with_capacity(n_tensors.min(MAX_PREALLOC));
    let mut by_name = HashMap::with_capacity(n_tensors.min(MAX_PREALLOC));
    for i in 0..n_tensors {
        let name = r.string().map_err(|e| format!("tensor {i} name: {e}"))?;
        if name.len() > MAX_NAME_LEN {
            return Err(format!(
                "tensor {i} name `{name}` is {} bytes, longer than ggml's {MAX_NAME_LEN}",
                name.len()
            ));
        }
        if by_name.contains_key(&name) {
            return Err(format!("duplicate tensor name `{name}`"));
        }
        let t = tensor_info(&mut r, name.clone()).map_err(|e| format!("tensor `{name}`: {e}"))?;
        by_name.insert(name, tensors.len());
        tensors.push(t);
    }

    // data section: padded to the alignment (ggml pads only when there are tensors)
    let header_end = r.pos;
    let data_offset = if tensors.is_empty() {
        header_end
    } else {
        let a = alignment - 1;
        let d = header_end
            .checked_add(a)
            .map(|x| x & !a)
            .filter(|&d| d <= buf.len())
            .ok_or_else(|| {
                format!(
                    "the data section (header end {header_end} aligned to {alignment}) starts past \
                     the end of the file ({} bytes)",
                    buf.len()
                )
            })?;
        d
    };
    let data_len = buf.len() - data_offset;
    for t in &tensors {
        if t.offset % alignment != 0 {
            return Err(format!(
                "tensor `{}`: offset {} is not a multiple of the alignment {alignment}",
                t.name, t.offset
            ));
        }
        if t.offset.checked_add(t.n_bytes).is_none_or(|e| e > data_len) {
            return Err(format!(
                "tensor `{}`: {} bytes at offset {} lie past the end of the data section ({} \
                 bytes)",
                t.name, t.n_bytes, t.offset, data_len
            ));
        }
    }
    // no two tensors share a byte
    let mut order: Vec<&GgufTensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    order.sort_unstable_by_key(|t| t.offset);
    for w in order.windows(2) {
        if let [a, b] = w {
            if b.offset < a.offset + a.n_bytes {
                return Err(format!(
                    "tensors `{}` ({} bytes at offset {}) and `{}` (at offset {}) overlap",
                    a.name, a.n_bytes, a.offset, b.name, b.offset
                ));
            }
        }
    }

    Ok(GgufFile {
        path: path.to_owned(),
        version,
        metadata,
        keys,
        tensors,
        by_name,
        alignment,
        data_offset,
        bytes,
    })
}

/// The rest of one tensor info after its name: dims, type, offset; sizes checked.
fn tensor_info(r: &mut Reader<'_>, name: String) -> Parse<GgufTensorInfo> {
    let n_dims = r.u32()?;
    if n_dims as usize > MAX_DIMS {
        return Err(format!("{n_dims} dims, more than ggml's {MAX_DIMS}"));
    }
    let mut ne = Vec::with_capacity(n_dims as usize);
    let mut n_elements: u64 = 1;
    let mut n_nonzero: u64 = 1;
    for d in 0..n_dims {
        let v = r.u64()?;
        // ggml reads dims as int64 and refuses negative ones; the element count must fit in one,
        // and so must the product of the non-zero dims (so no product of dims can overflow)
        n_nonzero = n_nonzero
            .checked_mul(v.max(1))
            .filter(|&n| i64::try_from(n).is_ok())
            .ok_or_else(|| {
                format!("dim {d} ({v}) makes the element count overflow (dims so far {ne:?})")
            })?;
        n_elements *= v;
        let v = usize::try_from(v).map_err(|_| format!("dim {d} ({v}) overflows usize"))?;
        ne.push(v);
    }
    let at = r.pos;
    let id = r.u32()?;
    let ggml_type =
        GgmlType::from_id(id).ok_or_else(|| format!("unknown ggml type id {id} at byte {at}"))?;
    let cols = ne.first().copied().unwrap_or(1);
    if cols % ggml_type.block_len() != 0 {
        return Err(format!(
            "{cols} values per row is not a whole number of {ggml_type} blocks ({})",
            ggml_type.block_len()
        ));
    }
    let n_bytes = usize::try_from(n_elements)
        .ok()
        .and_then(|n| ggml_type.bytes_of(n))
        .ok_or_else(|| format!("{n_elements} {ggml_type} values overflow a byte size"))?;
    let offset = r.u64()?;
    let offset = usize::try_from(offset).map_err(|_| format!("offset {offset} overflows usize"))?;
    Ok(GgufTensorInfo {
        name,
        ne,
        ggml_type,
        offset,
        n_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_formats_have_ggml_sizes() {
        for d in DType::ALL {
            let g = GgmlType::from_dtype(d);
            assert_eq!(g.dtype(), Some(d));
            assert_eq!(g.name(), d.name());
            assert_eq!(g.block_len(), d.block_len(), "{d}");
            assert_eq!(g.block_bytes(), d.block_bytes(), "{d}");
        }
    }

    #[test]
    fn ggml_type_ids_and_sizes() {
        // ids from ggml.h, sizes from gguf-py's GGML_QUANT_SIZES
        let expect: &[(u32, &str, usize, usize)] = &[
            (0, "F32", 1, 4),
            (1, "F16", 1, 2),
            (2, "Q4_0", 32, 18),
            (3, "Q4_1", 32, 20),
            (6, "Q5_0", 32, 22),
            (7, "Q5_1", 32, 24),
            (8, "Q8_0", 32, 34),
            (9, "Q8_1", 32, 40),
            (10, "Q2_K", 256, 84),
            (11, "Q3_K", 256, 110),
            (12, "Q4_K", 256, 144),
            (13, "Q5_K", 256, 176),
            (14, "Q6_K", 256, 210),
            (15, "Q8_K", 256, 292),
            (16, "IQ2_XXS", 256, 66),
            (17, "IQ2_XS", 256, 74),
            (18, "IQ3_XXS", 256, 98),
            (19, "IQ1_S", 256, 50),
            (20, "IQ4_NL", 32, 18),
            (21, "IQ3_S", 256, 110),
            (22, "IQ2_S", 256, 82),
            (23, "IQ4_XS", 256, 136),
            (24, "I8", 1, 1),
            (25, "I16", 1, 2),
            (26, "I32", 1, 4),
            (27, "I64", 1, 8),
            (28, "F64", 1, 8),
            (29, "IQ1_M", 256, 56),
            (30, "BF16", 1, 2),
            (34, "TQ1_0", 256, 54),
            (35, "TQ2_0", 256, 66),
            (39, "MXFP4", 32, 17),
            (40, "NVFP4", 64, 36),
            (41, "Q1_0", 128, 18),
        ];
        assert_eq!(expect.len(), GgmlType::ALL.len());
        for &(id, name, bl, bb) in expect {
            let t = GgmlType::from_id(id).unwrap();
            assert_eq!(
                (t.id(), t.name(), t.block_len(), t.block_bytes()),
                (id, name, bl, bb)
            );
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
            assert_eq!(GgmlType::from_id(id), None, "{id}");
        }
    }

    #[test]
    fn value_type_ids_round_trip() {
        for (i, t) in ValueType::ALL.into_iter().enumerate() {
            assert_eq!(t.id() as usize, i);
            assert_eq!(ValueType::from_id(t.id()), Some(t));
        }
        assert_eq!(ValueType::from_id(13), None);
    }
}
