// dseek tokenize --model DIR (--text S | --file F) [--no-special]
// Prints the ids as a JSON array. Like HF's encode, special tokens (BOS) are added unless
// --no-special is given. DIR needs only tokenizer.json (+ tokenizer_config.json).
#include <cstdio>
#include <string>

#include "args.h"
#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek::cli {

int cmd_tokenize(int argc, char** argv) {
  const Args args(argc, argv, {"model", "text", "file"}, {"no-special"});
  if (!args.positional().empty()) throw Error("unexpected argument '" + args.positional()[0] + "'");
  const std::string dir = args.require("model");
  if (args.has("text") == args.has("file")) throw Error("give exactly one of --text S or --file F");
  const std::string text = args.has("text") ? args.require("text") : read_text_file(args.require("file"));
  const Tokenizer tok = Tokenizer::load(dir);
  const auto ids = tok.encode(text, !args.has("no-special"));
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(ids[i]);
  }
  out += "]\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace dseek::cli
