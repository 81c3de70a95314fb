#include "dseek/server/logprobs.h"

#include <cmath>
#include <cstdio>

#include "dseek/tokenizer/utf8.h"

namespace dseek::server {

namespace {

using Json = nlohmann::ordered_json;

// OpenAI's (and vLLM's) stand-in for log(0), which JSON cannot write.
constexpr double kMinLogprob = -9999.0;

Json bytes_json(std::string_view bytes) {
  Json a = Json::array();
  for (const char c : bytes) a.push_back(int(uint8_t(c)));
  return a;
}

// Unicode code points of valid UTF-8 text (what the decoder emits: complete characters, U+FFFD for
// invalid bytes; a JSON string): its bytes that are not continuation bytes.
int64_t code_points(std::string_view text) {
  int64_t n = 0;
  for (const char c : text) n += (uint8_t(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace

double json_logprob(float logprob) { return std::isfinite(logprob) ? double(logprob) : kMinLogprob; }

std::string logprob_token_text(std::string_view bytes) {
  if (utf8::is_valid(bytes)) return std::string(bytes);
  std::string out = "bytes:";
  for (const char ch : bytes) {
    const auto b = uint8_t(ch);
    if (b == '\\') {
      out += "\\\\";
    } else if (b == '\t') {
      out += "\\t";
    } else if (b == '\n') {
      out += "\\n";
    } else if (b == '\r') {
      out += "\\r";
    } else if (b >= 0x20 && b < 0x7f) {
      out += char(b);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(b));
      out += buf;
    }
  }
  return out;
}

LogprobCollector::LogprobCollector(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer), decoder_(tokenizer, skip_special_tokens) {}

void LogprobCollector::add(std::span<const TokenLogprobs> logprobs) {
  for (const TokenLogprobs& lp : logprobs) {
    LogprobEntry e;
    e.token = lp.token;
    e.bytes = std::string(tokenizer_->token_bytes(lp.token));
    e.logprob = lp.logprob;
    e.text_offset = offset_;
    for (int32_t j = 0; j < lp.n_top; ++j) {
      const TopLogprob& t = lp.top[size_t(j)];
      e.top.push_back({t.token, std::string(tokenizer_->token_bytes(t.token)), t.logprob});
    }
    offset_ += code_points(decoder_.feed(lp.token));
    pending_.push_back(std::move(e));
  }
}

void LogprobCollector::add_prompt(std::span<const int32_t> prompt, std::span<const TokenLogprobs> logprobs,
                                  int64_t n_lead, std::string_view echo) {
  IncrementalDecoder decoder(*tokenizer_, /*skip_special_tokens=*/false);
  int64_t offset = 0;
  for (size_t j = 0; j < prompt.size() && j <= logprobs.size(); ++j) {
    LogprobEntry e;
    e.token = prompt[j];
    e.bytes = std::string(tokenizer_->token_bytes(prompt[j]));
    e.text_offset = offset;
    if (j == 0) {
      e.has_logprob = false;
    } else {
      const TokenLogprobs& lp = logprobs[j - 1];
      e.logprob = lp.logprob;
      for (int32_t k = 0; k < lp.n_top; ++k) {
        const TopLogprob& t = lp.top[size_t(k)];
        e.top.push_back({t.token, std::string(tokenizer_->token_bytes(t.token)), t.logprob});
      }
    }
    if (int64_t(j) >= n_lead) offset += code_points(decoder.feed(prompt[j]));
    pending_.push_back(std::move(e));
  }
  offset_ = code_points(echo);
}

std::vector<LogprobEntry> LogprobCollector::take() {
  std::vector<LogprobEntry> out;
  out.swap(pending_);
  return out;
}

Json chat_logprobs(std::span<const LogprobEntry> entries) {
  Json content = Json::array();
  for (const LogprobEntry& e : entries) {
    Json top = Json::array();
    for (const LogprobAlternative& a : e.top) {
      Json t = Json::object();
      t["token"] = logprob_token_text(a.bytes);
      t["logprob"] = json_logprob(a.logprob);
      t["bytes"] = bytes_json(a.bytes);
      top.push_back(std::move(t));
    }
    Json j = Json::object();
    j["token"] = logprob_token_text(e.bytes);
    j["logprob"] = json_logprob(e.logprob);
    j["bytes"] = bytes_json(e.bytes);
    j["top_logprobs"] = std::move(top);
    content.push_back(std::move(j));
  }
  Json out = Json::object();
  out["content"] = std::move(content);
  out["refusal"] = nullptr;
  return out;
}

Json completion_logprobs(std::span<const LogprobEntry> entries) {
  Json tokens = Json::array(), token_logprobs = Json::array(), top_logprobs = Json::array(),
       text_offset = Json::array();
  for (const LogprobEntry& e : entries) {
    tokens.push_back(logprob_token_text(e.bytes));
    text_offset.push_back(e.text_offset);
    if (!e.has_logprob) {  // the first prompt token of an echo
      token_logprobs.push_back(nullptr);
      top_logprobs.push_back(nullptr);
      continue;
    }
    token_logprobs.push_back(json_logprob(e.logprob));
    Json top = Json::object();
    bool has_chosen = false;
    for (const LogprobAlternative& a : e.top) {
      top[logprob_token_text(a.bytes)] = json_logprob(a.logprob);
      has_chosen |= a.token == e.token;
    }
    if (!has_chosen) top[logprob_token_text(e.bytes)] = json_logprob(e.logprob);
    top_logprobs.push_back(std::move(top));
  }
  Json out = Json::object();
  out["tokens"] = std::move(tokens);
  out["token_logprobs"] = std::move(token_logprobs);
  out["top_logprobs"] = std::move(top_logprobs);
  out["text_offset"] = std::move(text_offset);
  return out;
}

}  // namespace dseek::server
