#include "dseek/tokenizer/utf8.h"

#include <gtest/gtest.h>

namespace dseek {
namespace {

std::string lossy(std::string_view s) {
  std::string out;
  utf8::append_lossy(s, out);
  return out;
}

constexpr const char* kFffd = "\xEF\xBF\xBD";

// One U+FFFD per maximal invalid subsequence, as Rust's from_utf8_lossy (README examples).
TEST(Utf8, LossyMaximalSubparts) {
  EXPECT_EQ(lossy("abc"), "abc");
  EXPECT_EQ(lossy("\xE4\xBD"), kFffd);
  EXPECT_EQ(lossy("\xED\xA0\x80"), std::string(kFffd) + kFffd + kFffd);
  EXPECT_EQ(lossy("\xF4\x90\x80\x80"), std::string(kFffd) + kFffd + kFffd + kFffd);
  EXPECT_EQ(lossy("\xC0\x80"), std::string(kFffd) + kFffd);
  EXPECT_EQ(lossy("\xF0\x9F\x98"), kFffd);
  EXPECT_EQ(lossy("\xF0\x9F\x98" "a"), std::string(kFffd) + "a");
  EXPECT_EQ(lossy("\xFF\xFE"), std::string(kFffd) + kFffd);
  EXPECT_EQ(lossy("\xE4\xBD\xA0"), "\xE4\xBD\xA0");
  EXPECT_EQ(lossy(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(Utf8, ValidPrefix) {
  EXPECT_EQ(utf8::valid_prefix("hello world, long ascii run"), 27u);
  EXPECT_EQ(utf8::valid_prefix("abcdefghij\x80"), 10u);
  EXPECT_TRUE(utf8::is_valid("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(utf8::is_valid("\xF0\x9F\x98"));
  const auto d = utf8::decode(reinterpret_cast<const uint8_t*>("\xF0\x9F\x98"), 3);
  EXPECT_TRUE(d.truncated);
  EXPECT_EQ(d.length, 3u);
}

}  // namespace
}  // namespace dseek
