// libFuzzer target for the DeepSeek-V3 tokenizer.
//
// The first byte picks a mode; the rest is the input:
//   0: random bytes -> encode (must not throw or crash); for valid UTF-8, decode(encode(x)) == x
//   1: random bytes as int32 ids -> decode, and IncrementalDecoder gives the same text
//   2: random bytes -> encode with BOS, pre_tokenize (pieces must concatenate to the input)
// The tokenizer is loaded once from $DSEEK_SHARED_DIR/data/tokenizers/deepseek-v3
// (default ../shared/...), so run from the repository root.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/tokenizer/tokenizer.h"
#include "dseek/tokenizer/utf8.h"

namespace {

const dseek::Tokenizer& tokenizer() {
  static const dseek::Tokenizer tok = [] {
    const char* env = std::getenv("DSEEK_SHARED_DIR");
    const std::string shared = env && *env ? env : "../shared";
    try {
      return dseek::Tokenizer::load(shared + "/data/tokenizers/deepseek-v3");
    } catch (const dseek::Error& e) {
      std::fprintf(stderr, "tokenizer_fuzz: %s\n", e.what());
      std::abort();
    }
  }();
  return tok;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "tokenizer_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const dseek::Tokenizer& tok = tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: {
      const auto ids = tok.encode(text, false);
      for (int32_t id : ids) {
        if (id < 0 || size_t(id) >= tok.vocab_size()) fail("encode produced an out-of-range id");
      }
      const std::string back = tok.decode(ids, false);
      if (dseek::utf8::is_valid(text)) {
        if (back != text) fail("decode(encode(x)) != x for valid UTF-8 x");
      } else {
        std::string repaired;
        dseek::utf8::append_lossy(text, repaired);
        if (back != repaired) fail("decode(encode(x)) != lossy(x) for invalid UTF-8 x");
      }
      break;
    }
    case 1: {
      std::vector<int32_t> ids(text.size() / 4);
      std::memcpy(ids.data(), text.data(), ids.size() * 4);
      // Mostly in-range ids (so multi-byte characters get cut), some arbitrary.
      for (auto& id : ids) {
        if ((id & 0x80000000u) == 0) id %= 129280;
      }
      const bool skip = (data[0] / 3) & 1;
      const std::string whole = tok.decode(ids, skip);
      if (!dseek::utf8::is_valid(whole)) fail("decode returned invalid UTF-8");
      dseek::IncrementalDecoder dec(tok, skip);
      std::string streamed;
      for (int32_t id : ids) {
        const std::string part = dec.feed(id);
        if (!dseek::utf8::is_valid(part)) fail("IncrementalDecoder emitted invalid UTF-8");
        streamed += part;
      }
      streamed += dec.flush();
      if (streamed != whole) fail("IncrementalDecoder differs from decode");
      break;
    }
    case 2: {
      const auto ids = tok.encode(text, true);
      if (ids.empty() || ids[0] != tok.bos_id()) fail("encode with special tokens lacks BOS");
      std::string joined;
      for (const auto& p : tok.pre_tokenize(text)) joined += p;
      std::string repaired;
      dseek::utf8::append_lossy(text, repaired);
      if (joined != repaired) fail("pre_tokenize pieces do not concatenate to the input");
      break;
    }
  }
  return 0;
}
