#include "dseek/server/output_parser.h"

#include <algorithm>
#include <random>
#include <utility>

namespace dseek::server {

namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
// DeepSeek-V3's tool-call tokens (tokenizer_config.json chat_template); each is one added token,
// but the text may still arrive split anywhere.
constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_newline(char c) { return c == '\n' || c == '\r'; }

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// Length of the longest suffix of `s` that is a proper prefix of one of `markers`: text that may
// still become a marker.
size_t marker_prefix_suffix(std::string_view s, const std::vector<std::string_view>& markers) {
  size_t best = 0;
  for (const std::string_view m : markers) {
    for (size_t k = std::min(s.size(), m.size() - 1); k > best; --k) {
      if (s.substr(s.size() - k) == m.substr(0, k)) {
        best = k;
        break;
      }
    }
  }
  return best;
}

// Length of an incomplete UTF-8 sequence at the end of `s` (0 if it ends on a character
// boundary or in bytes that no continuation can make valid).
size_t utf8_incomplete_tail(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = uint8_t(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back for the lead
    size_t need = 0;
    if ((c & 0xE0) == 0xC0) {
      need = 2;
    } else if ((c & 0xF0) == 0xE0) {
      need = 3;
    } else if ((c & 0xF8) == 0xF0) {
      need = 4;
    }
    return need > back ? back : 0;
  }
  return 0;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// "call_" + 24 hex digits, distinct per parser (random seed) and per call index.
std::string call_id(uint64_t seed, int index) {
  static constexpr char kHex[] = "0123456789abcdef";
  const uint64_t a = splitmix64(seed + 2 * uint64_t(index));
  const uint64_t b = splitmix64(seed + 2 * uint64_t(index) + 1);
  std::string id = "call_";
  for (int i = 60; i >= 0; i -= 4) id += kHex[(a >> i) & 0xF];
  for (int i = 28; i >= 0; i -= 4) id += kHex[(b >> i) & 0xF];
  return id;
}

}  // namespace

void OutputDelta::append(const OutputDelta& d) {
  content += d.content;
  reasoning += d.reasoning;
  for (const ToolCallDelta& t : d.tool_calls) {
    auto it = std::find_if(tool_calls.begin(), tool_calls.end(), [&](const ToolCallDelta& x) { return x.index == t.index; });
    if (it == tool_calls.end()) {
      tool_calls.push_back(t);
      continue;
    }
    if (it->id.empty()) it->id = t.id;
    if (it->name.empty()) it->name = t.name;
    it->arguments += t.arguments;
  }
}

OutputParser::OutputParser(bool in_reasoning, bool parse_tools)
    : parse_tools_(parse_tools), state_(in_reasoning ? State::kReasoning : State::kStart) {
  std::random_device rd;
  id_seed_ = (uint64_t(rd()) << 32) ^ uint64_t(rd());
}

OutputDelta OutputParser::push(std::string_view text) {
  if (finished_) return {};
  pending_.append(text);
  run(/*final=*/false);
  return std::exchange(out_, OutputDelta{});
}

OutputDelta OutputParser::finish() {
  if (finished_) return {};
  run(/*final=*/true);
  switch (state_) {
    case State::kStart:
      emit_content(start_ws_);  // the whole output was whitespace
      start_ws_.clear();
      break;
    case State::kReasoning:
      reasoning_nl_.clear();
      break;
    case State::kToolHead:
    case State::kToolSep:
    case State::kToolName:
    case State::kToolFence:
    case State::kToolArgs:
      close_call(/*truncated=*/true);
      break;
    case State::kContent:
    case State::kToolBetween:
    case State::kDone:
      break;
  }
  state_ = State::kDone;
  finished_ = true;
  return std::exchange(out_, OutputDelta{});
}

const std::vector<std::string_view>& OutputParser::markers() const {
  static const std::vector<std::string_view> kNone;
  static const std::vector<std::string_view> kStartMarkers = {kThinkOpen};
  static const std::vector<std::string_view> kReasoningMarkers = {kThinkClose};
  // Content watches every tool marker: the begin markers open calls, stray others are dropped.
  static const std::vector<std::string_view> kToolMarkers = {kCallsBegin, kCallBegin, kCallEnd, kCallsEnd, kSep};
  switch (state_) {
    case State::kStart:
      return kStartMarkers;
    case State::kReasoning:
      return kReasoningMarkers;
    case State::kContent:
      return parse_tools_ ? kToolMarkers : kNone;
    case State::kDone:
      return kNone;
    default:
      return kToolMarkers;
  }
}

// Consumes pending_ as far as it is decided. `final`: no more input will come, so nothing is held.
void OutputParser::run(bool final) {
  while (true) {
    const std::vector<std::string_view>& ms = markers();
    size_t at = std::string::npos;
    std::string_view marker;
    for (const std::string_view m : ms) {
      const size_t p = pending_.find(m);
      if (p < at) {
        at = p;
        marker = m;
      }
    }
    size_t avail = pending_.size();
    if (at != std::string::npos) {
      avail = at;
    } else if (!final) {
      avail -= std::max(marker_prefix_suffix(pending_, ms), utf8_incomplete_tail(pending_));
    }
    const size_t used = feed(std::string_view(pending_).substr(0, avail));
    pending_.erase(0, used);
    if (used < avail) continue;  // the state changed: rescan with its markers
    if (at == std::string::npos) break;
    pending_.erase(0, marker.size());
    on_marker(marker);
  }
}

size_t OutputParser::feed(std::string_view text) {
  switch (state_) {
    case State::kStart:
      for (size_t i = 0; i < text.size(); ++i) {
        if (!is_space(text[i])) {
          state_ = State::kContent;
          emit_content(start_ws_);
          start_ws_.clear();
          return i;
        }
        start_ws_ += text[i];
      }
      return text.size();
    case State::kReasoning:
      emit_reasoning(text);
      return text.size();
    case State::kContent:
      emit_content(text);
      return text.size();
    case State::kToolHead:
      head_.append(text);
      return text.size();
    case State::kToolSep:
      // "function<｜tool▁sep｜>": V3 continues with the name; V3.1 (a function that happens to be
      // named "function") with the JSON arguments.
      for (size_t i = 0; i < text.size(); ++i) {
        if (is_space(text[i])) continue;
        if (text[i] == '{' || text[i] == '[') {
          begin_call("function");
          state_ = State::kToolArgs;
        } else {
          name_.clear();
          state_ = State::kToolName;
        }
        return i;
      }
      return text.size();
    case State::kToolName: {
      const size_t p = text.find_first_of("\n`");
      if (p == std::string_view::npos) {
        name_.append(text);
        return text.size();
      }
      name_.append(text.substr(0, p));
      std::string name = trim(name_);
      if (name.empty()) {
        state_ = State::kToolBetween;  // no name: the call cannot be reported
        return p;
      }
      begin_call(std::move(name));
      state_ = State::kToolFence;
      fence_ticks_ = 0;
      return text[p] == '\n' ? p + 1 : p;
    }
    case State::kToolFence:
      for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (fence_ticks_ == 0) {
          if (is_space(c)) continue;
          if (c == '`') {
            fence_ticks_ = 1;
            continue;
          }
          state_ = State::kToolArgs;  // no fence
          return i;
        }
        if (fence_ticks_ < 3) {
          if (c == '`') {
            ++fence_ticks_;
            continue;
          }
          state_ = State::kToolArgs;  // one or two backticks: not a fence after all
          emit_args(std::string(size_t(fence_ticks_), '`'));
          return i;
        }
        // The language tag after ``` ("json"), then the newline that ends the fence line.
        const bool tag = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                         c == '-' || c == '`';
        if (tag) continue;
        state_ = State::kToolArgs;
        return c == '\n' ? i + 1 : i;
      }
      return text.size();
    case State::kToolArgs:
      emit_args(text);
      return text.size();
    case State::kToolBetween:
    case State::kDone:
      return text.size();
  }
  return text.size();
}

void OutputParser::on_marker(std::string_view m) {
  switch (state_) {
    case State::kStart:  // <think>: any whitespace before it is not content
      start_ws_.clear();
      state_ = State::kReasoning;
      return;
    case State::kReasoning:  // </think>
      reasoning_nl_.clear();
      skip_content_nl_ = true;
      state_ = State::kContent;
      return;
    case State::kContent:
      if (m == kCallBegin) {
        head_.clear();
        state_ = State::kToolHead;
      } else if (m == kCallsBegin) {
        state_ = State::kToolBetween;
      }  // a stray end or separator marker is dropped: marker text never reaches content
      return;
    case State::kDone:
      return;
    default:
      break;
  }
  // Inside the tool-call section.
  if (m == kCallBegin) {
    close_call(/*truncated=*/false);
    head_.clear();
    state_ = State::kToolHead;
  } else if (m == kCallEnd) {
    close_call(/*truncated=*/false);
    state_ = State::kToolBetween;
  } else if (m == kCallsEnd) {
    close_call(/*truncated=*/false);
    state_ = State::kDone;
  } else if (m == kSep && state_ == State::kToolHead) {
    std::string head = trim(head_);
    if (head.empty() || head == "function") {
      state_ = State::kToolSep;  // V3 "function<｜tool▁sep｜>NAME", or a type-less variant
    } else {
      begin_call(std::move(head));  // V3.1 "NAME<｜tool▁sep｜>ARGS"
      state_ = State::kToolArgs;
    }
  }
  // A stray <｜tool▁sep｜> or <｜tool▁calls▁begin｜> inside a call is dropped.
}

void OutputParser::emit_content(std::string_view text) {
  if (skip_content_nl_) {
    size_t i = 0;
    while (i < text.size() && is_newline(text[i])) ++i;
    text.remove_prefix(i);
    if (text.empty()) return;
    skip_content_nl_ = false;
  }
  out_.content.append(text);
}

void OutputParser::emit_reasoning(std::string_view text) {
  if (!reasoning_started_) {
    size_t i = 0;
    while (i < text.size() && is_newline(text[i])) ++i;
    text.remove_prefix(i);
    if (text.empty()) return;
    reasoning_started_ = true;
  }
  // Trailing newlines wait until more reasoning follows; before </think> they are dropped.
  size_t last = text.size();
  while (last > 0 && is_newline(text[last - 1])) --last;
  if (last == 0) {
    reasoning_nl_.append(text);
    return;
  }
  out_.reasoning += reasoning_nl_;
  out_.reasoning.append(text.substr(0, last));
  reasoning_nl_.assign(text.substr(last));
}

void OutputParser::emit_args(std::string_view text) {
  if (!args_started_) {
    size_t i = 0;
    while (i < text.size() && is_space(text[i])) ++i;
    text.remove_prefix(i);
    if (text.empty()) return;
    args_started_ = true;
  }
  // JSON never ends in whitespace or a backtick, so a trailing run of them is the closing fence
  // (or padding) until more arguments follow.
  size_t last = text.size();
  while (last > 0 && (is_space(text[last - 1]) || text[last - 1] == '`')) --last;
  if (last == 0) {
    args_tail_.append(text);
    return;
  }
  std::string piece = std::move(args_tail_);
  piece.append(text.substr(0, last));
  args_tail_.assign(text.substr(last));
  // The current call's entry exists: begin_call() created it in this or an earlier delta.
  if (out_.tool_calls.empty() || out_.tool_calls.back().index != n_calls_ - 1) {
    ToolCallDelta d;
    d.index = n_calls_ - 1;
    out_.tool_calls.push_back(std::move(d));
  }
  out_.tool_calls.back().arguments += piece;
}

void OutputParser::begin_call(std::string name) {
  ToolCallDelta d;
  d.index = n_calls_;
  d.id = call_id(id_seed_, n_calls_);
  d.name = std::move(name);
  out_.tool_calls.push_back(std::move(d));
  ++n_calls_;
  saw_tool_calls_ = true;
  args_started_ = false;
  args_tail_.clear();
}

void OutputParser::close_call(bool truncated) {
  if (!truncated) {
    if (state_ == State::kToolHead) {
      // "NAME<｜tool▁call▁end｜>": a V3.1 call without arguments.
      std::string head = trim(head_);
      if (!head.empty() && head != "function") begin_call(std::move(head));
    } else if (state_ == State::kToolName) {
      std::string name = trim(name_);
      if (!name.empty()) begin_call(std::move(name));
    }
  }
  // A name cut off by finish() may be incomplete, so such a call is not reported; arguments cut
  // off are reported as far as they came (finish_reason "length" tells the client).
  head_.clear();
  name_.clear();
  fence_ticks_ = 0;
  args_started_ = false;
  args_tail_.clear();
}

}  // namespace dseek::server
