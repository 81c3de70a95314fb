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
    // The decoder emits complete, valid UTF-8 (U+FFFD for invalid bytes): count its lead bytes.
    for (const char c : decoder_.feed(lp.token)) offset_ += (uint8_t(c) & 0xC0) != 0x80;
    pending_.push_back(std::move(e));
  }
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
    token_logprobs.push_back(json_logprob(e.logprob));
    Json top = Json::object();
    bool has_chosen = false;
    for (const LogprobAlternative& a : e.top) {
      top[logprob_token_text(a.bytes)] = json_logprob(a.logprob);
      has_chosen |= a.token == e.token;
    }
    if (!has_chosen) top[logprob_token_text(e.bytes)] = json_logprob(e.logprob);
    top_logprobs.push_back(std::move(top));
    text_offset.push_back(e.text_offset);
  }
  Json out = Json::object();
  out["tokens"] = std::move(tokens);
  out["token_logprobs"] = std::move(token_logprobs);
  out["top_logprobs"] = std::move(top_logprobs);
  out["text_offset"] = std::move(text_offset);
  return out;
}

}  // namespace dseek::server
