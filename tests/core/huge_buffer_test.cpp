#include "dseek/core/huge_buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <utility>

#include "dseek/core/error.h"

namespace dseek {
namespace {

TEST(HugeBuffer, ZeroedAlignedAndRoundedToHugePages) {
  const size_t n = 3 * HugeBuffer::kHugePage / sizeof(float) + 5;  // 3 huge pages and a bit
  HugeArray<float> a(n, "test array");
  ASSERT_NE(a.data(), nullptr);
  EXPECT_EQ(a.size(), n);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % HugeBuffer::kHugePage, 0u);
  for (size_t i = 0; i < n; i += 1000) EXPECT_EQ(a[i], 0.f) << i;
  EXPECT_EQ(a[n - 1], 0.f);
  for (size_t i = 0; i < n; ++i) a[i] = float(i);  // every byte writable, including the last page
  EXPECT_EQ(a[n - 1], float(n - 1));
  HugeBuffer b(HugeBuffer::kHugePage + 1, "test buffer");
  EXPECT_EQ(b.capacity(), 2 * HugeBuffer::kHugePage);
}

TEST(HugeBuffer, EmptyAndMoved) {
  HugeBuffer none(0, "empty");
  EXPECT_EQ(none.data(), nullptr);
  EXPECT_EQ(none.capacity(), 0u);
  HugeBuffer a(100, "a");
  uint8_t* p = a.data();
  p[99] = 7;
  HugeBuffer b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.data()[99], 7);
  HugeBuffer c(10, "c");
  c = std::move(b);  // c's own mapping is released
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(c.data()[99], 7);
}

TEST(HugeBuffer, ImpossibleSizeIsAnErrorNamingTheBuffer) {
  try {
    HugeBuffer huge(std::numeric_limits<size_t>::max() / 4, "training activations");
    FAIL() << "mapped an impossible size";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training activations"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dseek
