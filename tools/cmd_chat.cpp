// dseek chat: interactive multi-turn chat with the checkpoint's chat template.
//
// Lines from stdin are user turns ("/reset" starts over, "/exit" or EOF quits). R1-style reasoning
// (<think> ... </think>) is shown dimmed on a terminal and left out of the history, as the R1 chat
// template itself does for earlier turns.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/runtime/generator.h"
#include "dseek/tokenizer/chat_template.h"
#include "run_flags.h"

namespace dseek::cli {

int cmd_chat(int argc, char** argv) {
  Args a(argc, argv, merge({kSamplingFlags, kModelFlags, {"n-predict", "system"}}), {"no-warm"}, kShortFlags);
  LoadedModel m = load_model_for_text(a);
  ChatTemplate tpl = ChatTemplate::load(a.require("model"));
  SamplingParams sp = sampling_from_args(a);
  if (!a.has("temperature")) sp.temperature = 0.6f;  // DeepSeek's recommended chat temperature
  Sampler sampler(sp, m.model.config().vocab_size);
  Generator gen(m.model, m.tokenizer, m.ctx, m.pool.get(), 512, m.kv_dtype, m.attn_precision);
  GenerateOptions o;
  o.max_new_tokens = a.get_int("n-predict", 1024);
  const bool tty = ::isatty(STDOUT_FILENO);
  const char* dim = tty ? "\033[2m" : "";
  const char* reset = tty ? "\033[0m" : "";

  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (auto sys = a.get("system")) messages.push_back({{"role", "system"}, {"content", *sys}});
  const nlohmann::ordered_json initial = messages;
  std::string line;
  for (;;) {
    if (tty) std::fputs("\n> ", stdout), std::fflush(stdout);
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      messages = initial;
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({{"role", "user"}, {"content", line}});
    const std::vector<int32_t> ids = m.tokenizer.encode(tpl.render(messages, true), false);
    bool in_think = false;
    std::string seen;
    GenerateResult r = gen.generate(ids, sampler, o, [&](std::string_view piece) {
      seen += piece;
      std::string out(piece);
      if (seen.rfind("<think>", 0) == 0 && !in_think && seen.find("</think>") == std::string::npos) {
        in_think = true;
        std::fputs(dim, stdout);
      }
      std::fwrite(out.data(), 1, out.size(), stdout);
      if (in_think && seen.find("</think>") != std::string::npos) {
        in_think = false;
        std::fputs(reset, stdout);
      }
      std::fflush(stdout);
      return true;
    });
    if (in_think) std::fputs(reset, stdout);
    std::fputc('\n', stdout);
    std::string answer = r.text;
    if (size_t end = answer.find("</think>"); end != std::string::npos) {
      answer = answer.substr(end + 8);
      answer.erase(0, answer.find_first_not_of(" \n"));
    }
    messages.push_back({{"role", "assistant"}, {"content", answer}});
    print_speed(r);
  }
  return 0;
}

}  // namespace dseek::cli
