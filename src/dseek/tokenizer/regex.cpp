#include "dseek/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdio>
#include <utility>

#include "dseek/core/error.h"
#include "dseek/tokenizer/unicode_tables.h"
#include "dseek/tokenizer/utf8.h"

namespace dseek {
namespace {

void append_hex_range(char32_t a, char32_t b, std::string& out) {
  char buf[40];
  if (a == b) {
    std::snprintf(buf, sizeof buf, "\\x{%X}", unsigned(a));
  } else {
    std::snprintf(buf, sizeof buf, "\\x{%X}-\\x{%X}", unsigned(a), unsigned(b));
  }
  out += buf;
}

void append_ranges(std::span<const unicode::CodeRange> rs, std::string& out) {
  for (const auto& r : rs) append_hex_range(r.first, r.last, out);
}

// Class items for the complement of White_Space.
void append_non_space(std::string& out) {
  char32_t next = 0;
  for (const auto& r : unicode::white_space()) {
    if (r.first > next) append_hex_range(next, r.first - 1, out);
    next = r.last + 1;
  }
  if (next <= 0x10FFFF) append_hex_range(next, 0x10FFFF, out);
}

const unicode::CategoryAdditions* find_category(std::string_view name) {
  for (const auto& c : unicode::category_additions()) {
    if (c.short_name == name || c.long_name == name) return &c;
  }
  return nullptr;
}

}  // namespace

std::string onig_to_pcre2(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  size_t i = 0;
  while (i < p.size()) {
    const char c = p[i];
    if (c == '[' && !in_class) {
      in_class = true;
      out += '[';
      ++i;
      if (i < p.size() && p[i] == '^') out += p[i++];
      if (i < p.size() && p[i] == ']') out += p[i++];  // a leading ']' is a literal
      continue;
    }
    if (c == '[' && in_class && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:alpha:]
      size_t close = p.find(":]", i + 2);
      if (close == std::string_view::npos) close = p.size() - 2;
      out.append(p.substr(i, close + 2 - i));
      i = close + 2;
      continue;
    }
    if (c == ']' && in_class) {
      in_class = false;
      out += ']';
      ++i;
      continue;
    }
    if (c != '\\' || i + 1 >= p.size()) {
      out += c;
      ++i;
      continue;
    }
    const char e = p[i + 1];
    if (e == 's' || e == 'S') {
      if (!in_class) out += e == 's' ? "[" : "[^";
      if (e == 's' || !in_class) {
        append_ranges(unicode::white_space(), out);
      } else {
        append_non_space(out);
      }
      if (!in_class) out += ']';
      i += 2;
      continue;
    }
    if (e == 'h' || e == 'H') {
      if (e == 'H' && in_class) throw Error("\\H inside a character class is not supported");
      out += in_class ? "0-9a-fA-F" : (e == 'h' ? "[0-9a-fA-F]" : "[^0-9a-fA-F]");
      i += 2;
      continue;
    }
    std::string_view name;
    bool negated = false;
    size_t consumed = 0;
    if (e == 'd' || e == 'D') {
      name = "Nd";
      negated = e == 'D';
      consumed = 2;
    } else if ((e == 'p' || e == 'P') && i + 2 < p.size() && p[i + 2] == '{') {
      const size_t close = p.find('}', i + 3);
      if (close == std::string_view::npos) throw Error("unterminated \\p{ at offset " + std::to_string(i));
      name = p.substr(i + 3, close - (i + 3));
      negated = e == 'P';
      if (!name.empty() && name[0] == '^') {
        negated = !negated;
        name.remove_prefix(1);
      }
      consumed = close + 1 - i;
    }
    if (consumed != 0) {
      const unicode::CategoryAdditions* cat = find_category(name);
      if (cat == nullptr) {
        // A script or other property: PCRE2's own (Unicode 14.0) table, or its compile error.
        out.append(p.substr(i, consumed));
        i += consumed;
        continue;
      }
      if (!cat->widenable) {
        throw Error("\\p{" + std::string(name) +
                    "} changed between Unicode 14.0 (PCRE2) and 16.0 (Oniguruma) in a way that cannot be "
                    "expressed by widening; not supported");
      }
      const std::string prop = std::string(negated ? "\\P{" : "\\p{") + std::string(cat->short_name) + "}";
      if (cat->added.empty()) {
        out += prop;
      } else if (!in_class) {
        out += negated ? "[^\\p{" : "[\\p{";
        out += cat->short_name;
        out += '}';
        append_ranges(cat->added, out);
        out += ']';
      } else if (!negated) {
        out += prop;
        append_ranges(cat->added, out);
      } else {
        throw Error("\\P{" + std::string(name) + "} (or \\D) inside a character class is not supported");
      }
      i += consumed;
      continue;
    }
    // Any other escape: copy the backslash and the whole (possibly multi-byte) character.
    const uint32_t len = utf8::char_length(static_cast<uint8_t>(e));
    out.append(p.substr(i, 1 + len));
    i += 1 + len;
  }
  return out;
}

Regex::Regex(std::string_view pattern, bool literal, const std::string& context) {
  if (!utf8::is_valid(pattern)) throw Error(context + ": pattern is not valid UTF-8");
  std::string source;
  uint32_t options = PCRE2_UTF;
  if (literal) {
    source.assign(pattern);
    options |= PCRE2_LITERAL;  // (PCRE2 rejects UCP together with LITERAL; it changes nothing here)
  } else {
    try {
      source = onig_to_pcre2(pattern);
    } catch (const Error& e) {
      throw Error(context + ": " + e.what());
    }
    options |= PCRE2_UCP | PCRE2_MULTILINE;
  }
  int err = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(), options, &err, &offset,
                        nullptr);
  if (code_ == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw Error(context + ": invalid regex: " + reinterpret_cast<const char*>(msg) + " at offset " +
                std::to_string(offset) + (literal || source == pattern ? "" : " of the rewritten pattern '" + source + "'"));
  }
  // Without JIT (a PCRE2 built without it) matching still works, only slower.
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::Regex(Regex&& o) noexcept : code_(std::exchange(o.code_, nullptr)), jit_(o.jit_) {}

Regex& Regex::operator=(Regex&& o) noexcept {
  if (this != &o) {
    if (code_) pcre2_code_free(code_);
    code_ = std::exchange(o.code_, nullptr);
    jit_ = o.jit_;
  }
  return *this;
}

Regex::~Regex() {
  if (code_) pcre2_code_free(code_);
}

RegexMatcher::RegexMatcher() {
  match_data_ = pcre2_match_data_create(1, nullptr);
  match_context_ = pcre2_match_context_create(nullptr);
  // Patterns such as \s*[\r\n]+ over a 10,000-character run backtrack deeply; the default
  // 32 KiB JIT stack is not enough for every tokenizer.json, so allow up to 8 MiB.
  jit_stack_ = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  DSEEK_CHECK(match_data_ && match_context_ && jit_stack_, "PCRE2 allocation failed");
  pcre2_jit_stack_assign(match_context_, nullptr, jit_stack_);
}

RegexMatcher::~RegexMatcher() {
  pcre2_jit_stack_free(jit_stack_);
  pcre2_match_context_free(match_context_);
  pcre2_match_data_free(match_data_);
}

bool RegexMatcher::search(const Regex& re, std::string_view subject, size_t from, size_t& start, size_t& end) {
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  int rc = re.jit() ? pcre2_jit_match(re.code(), s, subject.size(), from, PCRE2_NO_UTF_CHECK, match_data_,
                                      match_context_)
                    : pcre2_match(re.code(), s, subject.size(), from, PCRE2_NO_UTF_CHECK, match_data_, match_context_);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    throw Error(std::string("regex match failed: ") + reinterpret_cast<const char*>(msg));
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match_data_);
  start = ov[0];
  end = ov[1];
  if (start > end) start = end;  // \K inside a lookahead can report start > end
  return true;
}

}  // namespace dseek
