// dseek: command-line entry point. Dispatches to one subcommand per file (tools/cmd_*.cpp).
#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>

#include "commands.h"
#include "dseek/core/error.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* help;
};

constexpr Command kCommands[] = {
    {"forward", dseek::cli::cmd_forward,
     "run the model on token ids, write logits: --model DIR --input-ids IDS --output OUT.safetensors"},
    {"generate", dseek::cli::cmd_generate,
     "stream a continuation: --model DIR --prompt S [-n N] [--chat] [sampling flags] [--stop S]..."},
    {"chat", dseek::cli::cmd_chat, "interactive chat with the checkpoint's chat template: --model DIR [--system S]"},
    {"serve", dseek::cli::cmd_serve,
     "OpenAI-compatible HTTP server: --model DIR [--host 127.0.0.1] [--port 8080] [--api-key K] [--max-batch N] [--kv-cache-gb G]"},
    {"bench", dseek::cli::cmd_bench, "prefill/decode tokens/s and % of the bandwidth roofline: --model DIR [-p 512] [-n 128] [-t N] [-d DEPTH] [--kernel FAMILY] [--kv-type auto|f32|bf16] [--attn-precision auto|f32|bf16]"},
    {"quantize", dseek::cli::cmd_quantize, "block-quantize a checkpoint: --model IN --out OUT --type q8|q8r|q4|q4r"},
    {"train", dseek::cli::cmd_train, "train a model from one JSON config: --config FILE.json [--resume] [--steps N] [--out DIR] [--lr X] [--matmul f32|bf16]"},
    {"plot", dseek::cli::cmd_plot, "SVG charts of a training run: METRICS.jsonl --out DIR"},
    {"init", dseek::cli::cmd_init,
     "write a random-weight checkpoint: --config CONFIG.json --out DIR [--seed S] [--dtype f32|bf16|fp8]"},
    {"tokenize", dseek::cli::cmd_tokenize, "text to token ids: --model DIR (--text S | --file F)"},
    {"detokenize", dseek::cli::cmd_detokenize, "token ids to text: --model DIR --ids 1,2,3"},
    {"chat-template", dseek::cli::cmd_chat_template,
     "render a conversation: --model DIR --messages FILE.json [--add-generation-prompt]"},
};

void usage(FILE* out) {
  std::fprintf(out, "usage: dseek <command> [flags]\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-14s %s\n", c.name, c.help);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h") {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const auto& c : kCommands) {
    if (std::string_view(argv[1]) == c.name) {
      try {
        return c.run(argc - 2, argv + 2);
      } catch (const dseek::Error& e) {
        std::fprintf(stderr, "dseek %s: error: %s\n", c.name, e.what());
        return 1;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "dseek %s: internal error: %s\n", c.name, e.what());
        return 3;
      }
    }
  }
  std::fprintf(stderr, "dseek: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
