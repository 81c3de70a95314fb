// Element types of tensors on disk and in memory, with their scalar conversions.
//
// Names follow the safetensors dtype strings. Append new types at the end only:
// the numeric values appear in files we write (quantized checkpoints, caches).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace dseek {

enum class DType : uint8_t {
  kF32 = 0,
  kF16 = 1,
  kBF16 = 2,
  kF8E4M3 = 3,  // OCP E4M3FN: bias 7, no infinities, 0x7F/0xFF are NaN, max 448
  kF8E5M2 = 4,
  kF64 = 5,
  kI8 = 6,
  kU8 = 7,
  kI16 = 8,
  kI32 = 9,
  kI64 = 10,
  kBool = 11,
  // Block-quantized weight formats of dseek (docs/kernels.md): 32 values per block with one f16
  // scale; not per-element types, so dtype_size() is 0 for them (kernels/matmul_quant.h has the
  // row sizes). In safetensors files they are stored as U8 [rows, row_bytes] plus metadata.
  kQ8_0 = 12,
  kQ4_0 = 13,
  // Q8_0 with 16 rows interleaved for the int8 kernels (kernels/matmul_quant.h): stored as
  // U8 [rows / 16, 16 * row_bytes].
  kQ8_0R16 = 14,
  kQ4_0R16 = 15,  // Q4_0 likewise
  kSentinel  // must be last
};

// Bytes per element; 0 for the block-quantized types (kQ8_0, kQ4_0 and their _R16 forms).
size_t dtype_size(DType t);
// The safetensors spelling ("F32", "BF16", "F8_E4M3", ...).
std::string_view dtype_name(DType t);
// Inverse of dtype_name; nullopt for strings safetensors does not define or we do not support.
std::optional<DType> dtype_from_name(std::string_view name);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, NaN stays NaN (quiet).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// E4M3FN byte -> float. Exact: every E4M3 value is representable in float32.
float e4m3_to_f32(uint8_t b);
// E5M2 byte -> float (IEEE-like, has infinities).
float e5m2_to_f32(uint8_t b);

// x rounded to the nearest E4M3FN value (ties to even), saturating at ±448; NaN stays NaN.
// Returns the value as float (exact), not the byte.
float e4m3_round(float x);

// The E4M3FN byte of e4m3_round(x).
uint8_t f32_to_e4m3(float x);

// Table of all 256 E4M3FN values, built once per process on first use (const after).
const float* e4m3_table();

}  // namespace dseek
