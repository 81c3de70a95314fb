#include "dseek/core/dtype.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace dseek {

namespace {
struct DTypeInfo {
  std::string_view name;
  size_t size;
};
constexpr std::array<DTypeInfo, size_t(DType::kSentinel)> kInfo = {{
    {"F32", 4},
    {"F16", 2},
    {"BF16", 2},
    {"F8_E4M3", 1},
    {"F8_E5M2", 1},
    {"F64", 8},
    {"I8", 1},
    {"U8", 1},
    {"I16", 2},
    {"I32", 4},
    {"I64", 8},
    {"BOOL", 1},
    {"Q8_0", 0},  // block of 32: f16 scale + 32 x int8 (34 bytes)
    {"Q4_0", 0},  // block of 32: f16 scale + 16 bytes of 4-bit values (18 bytes)
    {"Q8_0_R16", 0},  // Q8_0, 16 rows interleaved (544 bytes per 16 rows x 32 columns)
    {"Q4_0_R16", 0},  // Q4_0, 16 rows interleaved (288 bytes per 16 rows x 32 columns)
}};
}  // namespace

size_t dtype_size(DType t) { return kInfo[size_t(t)].size; }
std::string_view dtype_name(DType t) {
  return t < DType::kSentinel ? kInfo[size_t(t)].name : std::string_view("?");
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (size_t i = 0; i < kInfo.size(); ++i)
    if (kInfo[i].name == name) return DType(i);
  return std::nullopt;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  float f;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24
    f = std::ldexp(float(mant), -24);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u |= sign;
    std::memcpy(&f, &u, 4);
    return f;
  }
  uint32_t u;
  if (exp == 31)
    u = sign | 0x7f800000u | (mant << 13);
  else
    u = sign | ((exp + 112) << 23) | (mant << 13);
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00;       // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00;      // overflow (incl. inf) after rounding
  if (a < 0x38800000u) {                           // subnormal or zero in f16
    float af;
    std::memcpy(&af, &a, 4);
    // value / 2^-24, rounded to nearest even by the FPU
    return sign | uint16_t(std::nearbyint(af * 16777216.0f));
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u);  // round mantissa to 10 bits, ties to even
  return sign | uint16_t(((r >> 13) - (112u << 10)));
}

float e4m3_to_f32(uint8_t b) {
  const bool neg = b & 0x80;
  const int exp = (b >> 3) & 0xf;
  const int mant = b & 0x7;
  float v;
  if (exp == 0xf && mant == 0x7)
    v = std::numeric_limits<float>::quiet_NaN();
  else if (exp == 0)
    v = std::ldexp(float(mant), -9);  // subnormal: mant/8 * 2^-6
  else
    v = std::ldexp(float(8 + mant), exp - 10);  // (1 + mant/8) * 2^(exp-7)
  return neg ? -v : v;
}

float e4m3_round(float x) {
  if (std::isnan(x)) return x;
  const float a = std::fabs(x);
  if (a == 0.f) return x;
  int e;
  std::frexp(a, &e);                    // a = f * 2^e, f in [0.5, 1): binade 2^(e-1)
  const int binade = std::max(e - 1, -6);  // below 2^-6 the subnormal spacing 2^-9 applies
  const float step = std::ldexp(1.0f, binade - 3);  // 3 mantissa bits
  float r = std::nearbyint(a / step) * step;        // default rounding mode: ties to even
  r = std::min(r, 448.0f);
  return std::copysign(r, x);
}

uint8_t f32_to_e4m3(float x) {
  if (std::isnan(x)) return 0x7f;
  const float r = e4m3_round(x);
  const float a = std::fabs(r);
  const uint8_t sign = std::signbit(r) ? 0x80 : 0;
  if (a < 0x1p-6f) return sign | uint8_t(a * 512.0f);  // subnormal: mantissa counts 2^-9 steps
  int e;
  const float f = std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  const int mant = int(f * 16.0f) - 8;  // (1 + mant/8) = 2f
  return sign | uint8_t(((e - 1 + 7) << 3) | mant);
}

float e5m2_to_f32(uint8_t b) { return f16_to_f32(uint16_t(b) << 8); }

const float* e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = e4m3_to_f32(uint8_t(i));
    return t;
  }();
  return table.data();
}

}  // namespace dseek
