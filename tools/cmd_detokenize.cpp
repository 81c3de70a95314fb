// dseek detokenize --model DIR --ids 1,2,3 [--skip-special-tokens]
// Prints the decoded text (HF's decode: unknown ids dropped, invalid UTF-8 as U+FFFD).
// --ids also accepts a JSON array ("[1, 2, 3]"), as `dseek tokenize` prints it.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek::cli {
namespace {

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  auto skip = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '[' || s[i] == ']')) ++i;
  };
  skip();
  while (i < s.size()) {
    const size_t start = i;
    if (s[i] == '-') ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == start || (i == start + 1 && s[start] == '-')) {
      throw Error("--ids: expected an integer at character " + std::to_string(start) + " of '" + s + "'");
    }
    const long long v = std::strtoll(s.c_str() + start, nullptr, 10);
    if (v < INT32_MIN || v > INT32_MAX) throw Error("--ids: " + s.substr(start, i - start) + " is out of range");
    ids.push_back(int32_t(v));
    skip();
    if (i < s.size()) {
      if (s[i] != ',') throw Error("--ids: expected ',' at character " + std::to_string(i) + " of '" + s + "'");
      ++i;
      skip();
    }
  }
  return ids;
}

}  // namespace

int cmd_detokenize(int argc, char** argv) {
  const Args args(argc, argv, {"model", "ids"}, {"skip-special-tokens"});
  if (!args.positional().empty()) throw Error("unexpected argument '" + args.positional()[0] + "'");
  const std::string dir = args.require("model");
  const auto ids = parse_ids(args.require("ids"));
  const Tokenizer tok = Tokenizer::load(dir);
  const std::string text = tok.decode(ids, args.has("skip-special-tokens"));
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  return 0;
}

}  // namespace dseek::cli
