// Tile configuration and stores shared by the AMX kernel files (gemm_amx.cpp, gemm_bf16_amx.cpp,
// attention_decode_amx.cpp), with the bf16 pairing of bf16_pairs_avx512.h. Include it only from files compiled with AMX and AVX-512 BF16 flags: the
// helpers live in an anonymous namespace (see matmul_kernels.h).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "dseek/kernels/bf16_pairs_avx512.h"

// GCC 12's AVX-512 headers warn about their own undefined placeholders once inlined (as in
// masks_avx512.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace dseek {
namespace {

struct alignas(64) AmxTileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles 0-7 as 16 rows x 64 bytes: the only shape these kernels use (edges are padded instead).
inline void amx_load_config() {
  AmxTileConfig c;
  for (int i = 0; i < 8; ++i) {
    c.colsb[i] = 64;
    c.rows[i] = 16;
  }
  // GCC 12 treats ldtilecfg's 64-byte operand as if it read less: in a small function it dropped the
  // rows / colsb stores and loaded an all-zero shape (every tile instruction then faults). The
  // barrier makes the whole struct live in memory first.
  __asm__ volatile("" : : "m"(c) : "memory");
  _tile_loadconfig(&c);
}

// _tile_loadd / _tile_stored / _tile_zero name their tile in the instruction text: the number must be a literal.
template <int C>
inline void amx_store(void* p, int64_t stride) {
  if constexpr (C == 0) _tile_stored(0, p, stride);
  if constexpr (C == 1) _tile_stored(1, p, stride);
  if constexpr (C == 2) _tile_stored(2, p, stride);
  if constexpr (C == 3) _tile_stored(3, p, stride);
}
template <int C>
inline void amx_load(const void* p, int64_t stride) {
  if constexpr (C == 0) _tile_loadd(0, p, stride);
  if constexpr (C == 1) _tile_loadd(1, p, stride);
  if constexpr (C == 2) _tile_loadd(2, p, stride);
  if constexpr (C == 3) _tile_loadd(3, p, stride);
}

template <int C>
inline void amx_zero() {
  if constexpr (C == 0) _tile_zero(0);
  if constexpr (C == 1) _tile_zero(1);
  if constexpr (C == 2) _tile_zero(2);
  if constexpr (C == 3) _tile_zero(3);
}

}  // namespace
}  // namespace dseek
