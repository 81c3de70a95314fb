// dseek generate: stream a continuation of a prompt (raw text, or one chat turn with --chat).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/runtime/generator.h"
#include "dseek/tokenizer/chat_template.h"
#include "run_flags.h"

namespace dseek::cli {

int cmd_generate(int argc, char** argv) {
  Args a(argc, argv, merge({kSamplingFlags, kModelFlags, {"prompt", "n-predict", "stop", "system"}}),
         {"chat", "no-bos", "no-eos-stop", "no-warm"}, kShortFlags);
  const std::string prompt = a.require("prompt");
  LoadedModel m = load_model_for_text(a);
  std::vector<int32_t> ids;
  if (a.has("chat")) {
    ChatTemplate tpl = ChatTemplate::load(a.require("model"));
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (auto sys = a.get("system")) messages.push_back({{"role", "system"}, {"content", *sys}});
    messages.push_back({{"role", "user"}, {"content", prompt}});
    ids = m.tokenizer.encode(tpl.render(messages, true), false);  // the template writes the BOS
  } else {
    ids = m.tokenizer.encode(prompt, !a.has("no-bos"));
  }
  Sampler sampler(sampling_from_args(a), m.model.config().vocab_size);
  Generator gen(m.model, m.tokenizer, m.ctx, m.pool.get());
  GenerateOptions o;
  o.max_new_tokens = a.get_int("n-predict", 128);
  o.stop = a.get_all("stop");
  o.stop_at_eos = !a.has("no-eos-stop");
  if (!a.has("chat")) std::fputs(prompt.c_str(), stdout);
  GenerateResult r = gen.generate(ids, sampler, o, [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  print_speed(r);
  return 0;
}

}  // namespace dseek::cli
