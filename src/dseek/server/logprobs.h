// Token log-probabilities in the two layouts of OpenAI's API (docs/server.md, "Logprobs"):
//   chat:        {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}],
//                 "refusal": null}
//   completions: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}
// The engine reports token ids (dseek::TokenLogprobs, the raw model distribution); LogprobCollector
// turns them into the tokens' bytes and text offsets on the HTTP thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dseek/runtime/sampler.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek::server {

// A logprob as JSON: -inf (a token the model rules out) becomes -9999.0, as OpenAI and vLLM write it.
double json_logprob(float logprob);

// A token's `token` string. Valid UTF-8 bytes are the string itself. Otherwise (a byte-level token
// that ends inside a character, or a lone continuation byte) it is "bytes:" followed by the bytes
// as Python's repr of a bytes object writes them, which is what OpenAI returns: printable ASCII as
// is, backslash as \\, tab/newline/return as \t \n \r, every other byte as \xNN (lowercase hex).
// Example: the bytes E6 9D become "bytes:\xe6\x9d". The exact bytes are in the `bytes` field.
std::string logprob_token_text(std::string_view bytes);

struct LogprobAlternative {
  int32_t token = -1;
  std::string bytes;
  float logprob = 0.0f;
};

struct LogprobEntry {
  int32_t token = -1;
  std::string bytes;  // what the token contributes to the decoded text (may be partial UTF-8)
  float logprob = 0.0f;
  std::vector<LogprobAlternative> top;  // the top_logprobs most likely tokens, most likely first
  // Legacy completions: Unicode code points of the output text before this token (the length
  // Python's len() gives, as vLLM counts), an incomplete character not counted yet.
  int64_t text_offset = 0;
  // False for the first prompt token of an echo (nothing precedes it): logprob and top are unset
  // and its token_logprobs / top_logprobs entries are null.
  bool has_logprob = true;
};

// Collects the entries of one request's generated tokens, in order, across engine events.
class LogprobCollector {
 public:
  // skip_special_tokens: how the engine decodes this request's text, so offsets count what the
  // text shows (special tokens still get entries).
  LogprobCollector(const Tokenizer& tokenizer, bool skip_special_tokens);

  void add(std::span<const TokenLogprobs> logprobs);
  // Legacy completions with echo: entries for the prompt, before any add(). prompt (P ids), logprobs
  // (EngineEvent::prompt_logprobs: entry j for prompt token j + 1; prompt tokens past them get no
  // entry). The offsets count `echo`, the returned prompt text: the first n_lead ids are not part of
  // it (the BOS the server adds to a text prompt), the rest are decoded as they are, special tokens
  // included. The generated tokens' offsets then start at echo's length.
  void add_prompt(std::span<const int32_t> prompt, std::span<const TokenLogprobs> logprobs, int64_t n_lead,
                  std::string_view echo);
  // The entries added since the previous take(); for streaming, where each chunk carries its own.
  std::vector<LogprobEntry> take();
  bool empty() const { return pending_.empty(); }

 private:
  const Tokenizer* tokenizer_;
  IncrementalDecoder decoder_;
  int64_t offset_ = 0;  // code points decoded so far
  std::vector<LogprobEntry> pending_;
};

// choices[i].logprobs of a chat completion or chunk.
nlohmann::ordered_json chat_logprobs(std::span<const LogprobEntry> entries);

// choices[i].logprobs of a legacy completion or chunk. Each top_logprobs object holds the most likely
// tokens and, as OpenAI always returns it, the chosen token (so up to logprobs + 1 keys).
nlohmann::ordered_json completion_logprobs(std::span<const LogprobEntry> entries);

}  // namespace dseek::server
