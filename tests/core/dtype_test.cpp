#include "dseek/core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace dseek {
namespace {

TEST(DType, NamesRoundTrip) {
  for (int i = 0; i < int(DType::kSentinel); ++i) {
    auto t = DType(i);
    auto back = dtype_from_name(dtype_name(t));
    ASSERT_TRUE(back.has_value()) << dtype_name(t);
    EXPECT_EQ(*back, t);
  }
  EXPECT_FALSE(dtype_from_name("F8_E4M3FN").has_value());
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kF8E4M3), 1u);
}

TEST(DType, Bf16RoundTripAndRounding) {
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1+2^-7: ties to even -> 1.0
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, F16AllPatternsRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), uint16_t(h)) << "pattern " << h << " value " << f;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
}

// Independent E4M3FN decoding from the OCP spec: sign, 4 exponent bits (bias 7), 3 mantissa bits.
TEST(DType, E4M3AllBytePatterns) {
  int nan_count = 0;
  for (int b = 0; b < 256; ++b) {
    float v = e4m3_to_f32(uint8_t(b));
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    if (e == 15 && m == 7) {
      EXPECT_TRUE(std::isnan(v)) << b;
      ++nan_count;
      continue;
    }
    double expect = e == 0 ? (m / 8.0) * std::pow(2.0, -6) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
    if (s) expect = -expect;
    EXPECT_EQ(double(v), expect) << "byte " << b;
    EXPECT_EQ(e4m3_table()[b], v);
  }
  EXPECT_EQ(nan_count, 2);  // 0x7F and 0xFF only
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::signbit(e4m3_to_f32(0x80)));
  EXPECT_EQ(e4m3_to_f32(0x80), 0.0f);
}

}  // namespace
}  // namespace dseek

namespace dseek {
namespace {

// e4m3_round: every E4M3 value is a fixed point; midpoints between neighbours round to the one
// with an even mantissa; beyond 448 saturates.
TEST(DType, E4M3RoundNearestEven) {
  std::vector<float> vals;
  for (int b = 0; b < 0x7f; ++b) vals.push_back(e4m3_to_f32(uint8_t(b)));  // 0 .. 448, ascending
  for (size_t i = 0; i < vals.size(); ++i) {
    ASSERT_EQ(e4m3_round(vals[i]), vals[i]) << i;
    ASSERT_EQ(e4m3_round(-vals[i]), -vals[i]) << i;
    if (i + 1 < vals.size()) {
      const float mid = (vals[i] + vals[i + 1]) / 2;  // exact in float
      const float even = (i % 2 == 0) ? vals[i] : vals[i + 1];  // byte i has mantissa parity i % 2
      EXPECT_EQ(e4m3_round(mid), even) << "midpoint of bytes " << i << " and " << i + 1;
      EXPECT_EQ(e4m3_round(std::nextafter(mid, 0.f)), vals[i]);
      EXPECT_EQ(e4m3_round(std::nextafter(mid, 1000.f)), vals[i + 1]);
    }
  }
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7f) == 0x7f) continue;  // NaN
    EXPECT_EQ(f32_to_e4m3(e4m3_to_f32(uint8_t(b))), uint8_t(b)) << b;
  }
  EXPECT_EQ(f32_to_e4m3(1000.f), 0x7e);
  EXPECT_EQ(e4m3_round(1000.f), 448.f);
  EXPECT_EQ(e4m3_round(-1e9f), -448.f);
  EXPECT_TRUE(std::isnan(e4m3_round(NAN)));
}

}  // namespace
}  // namespace dseek
