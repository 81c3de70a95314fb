#include "dseek/tokenizer/jinja_lexer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "dseek/core/error.h"
#include "dseek/tokenizer/jinja_value.h"

namespace dseek::jinja {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Jinja2 splits the source on \r\n, \r and \n, joins with \n, and drops one trailing newline.
std::string normalize_newlines(std::string_view src) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(std::string src, const std::string& label) : src_(std::move(src)), label_(label) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    const size_t n = src_.size();
    while (pos < n) {
      size_t start = pos;
      while (true) {
        start = src_.find('{', start);
        if (start == std::string::npos || start + 1 >= n) {
          start = std::string::npos;
          break;
        }
        const char c = src_[start + 1];
        if (c == '{' || c == '%' || c == '#') break;
        ++start;
      }
      if (start == std::string::npos) {
        emit_data(pos, src_.substr(pos));
        break;
      }
      const char kind = src_[start + 1];
      size_t p = start + 2;
      char sign = 0;
      if (p < n && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      std::string text = src_.substr(pos, start - pos);
      if (sign == '-') {
        text.resize(rstrip_end(text));
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: only spaces/tabs between the line start and the tag.
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if (l_pos > 0 || line_starting) {
          bool only_ws = l_pos < text.size();
          for (size_t i = l_pos; i < text.size() && only_ws; i = utf8_next(text, i)) {
            only_ws = py_isspace(utf8_decode_at(text, i));
          }
          if (only_ws) text.resize(l_pos);
        }
      }
      emit_data(pos, std::move(text));

      if (kind == '#') {
        pos = lex_comment(start, p, line_starting);
      } else if (kind == '%' && is_raw_begin(p)) {
        pos = lex_raw(start, p, line_starting);
      } else {
        pos = lex_tag(start, p, kind == '{', line_starting);
      }
    }
    Token eof;
    eof.kind = TokKind::kEof;
    set_pos(eof, n);
    tokens_.push_back(std::move(eof));
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    int line, col;
    line_col(pos, line, col);
    throw Error(label_ + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + msg);
  }

  void line_col(size_t pos, int& line, int& col) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    const size_t li = size_t(it - line_starts_.begin()) - 1;
    line = int(li + 1);
    col = int(pos - line_starts_[li] + 1);
  }

  void set_pos(Token& t, size_t pos) const { line_col(pos, t.line, t.col); }

  void emit(TokKind kind, size_t pos, std::string text = {}) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    set_pos(t, pos);
    tokens_.push_back(std::move(t));
  }

  void emit_data(size_t pos, std::string text) {
    if (!text.empty()) emit(TokKind::kData, pos, std::move(text));
  }

  // Length of `s` without its trailing (Python) whitespace.
  static size_t rstrip_end(std::string_view s) {
    size_t end = 0;
    for (size_t i = 0; i < s.size();) {
      const size_t next = utf8_next(s, i);
      if (!py_isspace(utf8_decode_at(s, i))) end = next;
      i = next;
    }
    return end;
  }

  size_t skip_ws(size_t p) const {
    while (p < src_.size() && py_isspace(utf8_decode_at(src_, p))) p = utf8_next(src_, p);
    return p;
  }

  bool match_at(size_t p, std::string_view s) const { return src_.compare(p, s.size(), s) == 0; }

  // After a tag delimiter's end ("%}" or "#}" at p, sign at p-1 already examined by the caller):
  // returns the position after the end plus what trim_blocks / `-` remove.
  size_t after_end(size_t end_pos, char sign, bool trim_newline) const {
    if (sign == '-') return skip_ws(end_pos);
    if (sign == 0 && trim_newline && end_pos < src_.size() && src_[end_pos] == '\n') return end_pos + 1;
    return end_pos;
  }

  size_t lex_comment(size_t start, size_t p, bool& line_starting) {
    const size_t q = src_.find("#}", p);
    if (q == std::string::npos) fail(start, "Missing end of comment tag");
    char sign = 0;
    if (q > p && (src_[q - 1] == '-' || src_[q - 1] == '+')) sign = src_[q - 1];
    const size_t end = after_end(q + 2, sign, true);
    line_starting = src_[end - 1] == '\n';
    return end;
  }

  // `{%` [-+] \s* raw \s* (-%}\s* | %})
  bool is_raw_begin(size_t p) const {
    size_t q = skip_ws(p);
    if (!match_at(q, "raw")) return false;
    q = skip_ws(q + 3);
    return match_at(q, "%}") || match_at(q, "-%}");
  }

  size_t lex_raw(size_t start, size_t p, bool& line_starting) {
    size_t q = skip_ws(skip_ws(p) + 3);
    q = match_at(q, "-%}") ? skip_ws(q + 3) : q + 2;  // no trim_blocks after the raw begin tag
    if (q >= src_.size()) return q;                     // jinja2 stops here without looking for endraw
    // Find `{%` [-+] \s* endraw \s* (+%} | -%}\s* | %}\n?)
    size_t search = q;
    while (true) {
      const size_t b = src_.find("{%", search);
      if (b == std::string::npos) fail(start, "Missing end of raw directive");
      size_t r = b + 2;
      char sign = 0;
      if (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) sign = src_[r++];
      r = skip_ws(r);
      if (!match_at(r, "endraw")) {
        search = b + 2;
        continue;
      }
      r = skip_ws(r + 6);
      char end_sign = 0;
      if (match_at(r, "+%}") || match_at(r, "-%}")) end_sign = src_[r++];
      if (!match_at(r, "%}")) {
        search = b + 2;
        continue;
      }
      std::string text = src_.substr(q, b - q);
      if (sign == '-') {
        text.resize(rstrip_end(text));
      } else if (sign != '+') {
        const size_t nl = text.rfind('\n');
        const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
        bool only_ws = l_pos > 0 && l_pos < text.size();
        for (size_t i = l_pos; i < text.size() && only_ws; i = utf8_next(text, i)) {
          only_ws = py_isspace(utf8_decode_at(text, i));
        }
        if (only_ws) text.resize(l_pos);
      }
      emit_data(q, std::move(text));
      const size_t end = after_end(r + 2, end_sign, true);
      line_starting = src_[end - 1] == '\n';
      return end;
    }
  }

  size_t lex_tag(size_t start, size_t p, bool is_var, bool& line_starting) {
    emit(is_var ? TokKind::kVarBegin : TokKind::kBlockBegin, start);
    std::vector<char> brackets;  // closing brackets expected; end tags count only when empty
    const size_t n = src_.size();
    while (true) {
      if (p >= n) fail(start, is_var ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'");
      if (brackets.empty()) {
        if (is_var) {
          if (match_at(p, "-}}")) {
            emit(TokKind::kVarEnd, p);
            const size_t end = skip_ws(p + 3);
            line_starting = src_[end - 1] == '\n';
            return end;
          }
          if (match_at(p, "}}")) {
            emit(TokKind::kVarEnd, p);
            line_starting = false;
            return p + 2;
          }
        } else {
          char sign = 0;
          size_t e = p;
          if (match_at(p, "-%}") || match_at(p, "+%}")) sign = src_[e++];
          if (match_at(e, "%}")) {
            emit(TokKind::kBlockEnd, p);
            const size_t end = after_end(e + 2, sign, true);
            line_starting = src_[end - 1] == '\n';
            return end;
          }
        }
      }
      const uint32_t cp = utf8_decode_at(src_, p);
      if (py_isspace(cp)) {
        p = utf8_next(src_, p);
        continue;
      }
      const char c = src_[p];
      if (is_digit(c)) {
        p = lex_number(p);
      } else if (is_name_start(c)) {
        size_t q = p;
        while (q < n && is_name_char(src_[q])) ++q;
        emit(TokKind::kName, p, src_.substr(p, q - p));
        p = q;
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else {
        p = lex_operator(p, brackets);
      }
    }
  }

  // Digits with optional single underscores between them ("1_000").
  size_t scan_digits(size_t p, bool (*ok)(char)) const {
    if (p >= src_.size() || !ok(src_[p])) return std::string::npos;
    ++p;
    while (p < src_.size()) {
      if (ok(src_[p])) {
        ++p;
      } else if (src_[p] == '_' && p + 1 < src_.size() && ok(src_[p + 1])) {
        p += 2;
      } else {
        break;
      }
    }
    return p;
  }

  size_t lex_number(size_t p) {
    const size_t n = src_.size();
    const size_t int_end = scan_digits(p, is_digit);
    // Float: digits ( (.digits)? e[+-]?digits | .digits ), never right after a '.' (x.0 is a subscript).
    const bool after_dot = p > 0 && src_[p - 1] == '.';
    if (!after_dot) {
      size_t q = int_end;
      size_t frac_end = std::string::npos;
      if (q < n && src_[q] == '.') frac_end = scan_digits(q + 1, is_digit);
      size_t exp_from = frac_end != std::string::npos ? frac_end : q;
      size_t exp_end = std::string::npos;
      if (exp_from < n && (src_[exp_from] == 'e' || src_[exp_from] == 'E')) {
        size_t r = exp_from + 1;
        if (r < n && (src_[r] == '+' || src_[r] == '-')) ++r;
        exp_end = scan_digits(r, is_digit);
      }
      const size_t end = exp_end != std::string::npos ? exp_end : frac_end;
      if (end != std::string::npos) {
        std::string digits;
        for (size_t i = p; i < end; ++i) {
          if (src_[i] != '_') digits += src_[i];
        }
        Token t;
        t.kind = TokKind::kFloat;
        t.text = src_.substr(p, end - p);
        t.float_value = std::strtod(digits.c_str(), nullptr);
        set_pos(t, p);
        tokens_.push_back(std::move(t));
        return end;
      }
    }
    int base = 10;
    size_t end = int_end;
    size_t digits_from = p;
    if (src_[p] == '0' && p + 1 < n) {
      const char x = char(src_[p + 1] | 0x20);
      auto bin = [](char c) { return c == '0' || c == '1'; };
      auto oct = [](char c) { return c >= '0' && c <= '7'; };
      auto hex = [](char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); };
      size_t r = std::string::npos;
      const size_t from = p + 2 < n && src_[p + 2] == '_' ? p + 3 : p + 2;
      if (x == 'b') r = scan_digits(from, +bin), base = 2;
      if (x == 'o') r = scan_digits(from, +oct), base = 8;
      if (x == 'x') r = scan_digits(from, +hex), base = 16;
      if (r != std::string::npos) {
        end = r;
        digits_from = p + 2;
      } else {
        base = 10;
        // Decimal zero: 0(_?0)*; "01" is "0" then "1" (Jinja2 rejects it in the parser).
        end = p + 1;
        while (end < n && (src_[end] == '0' || (src_[end] == '_' && end + 1 < n && src_[end + 1] == '0'))) {
          end += src_[end] == '_' ? 2 : 1;
        }
      }
    }
    std::string digits;
    for (size_t i = digits_from; i < end; ++i) {
      if (src_[i] != '_') digits += src_[i];
    }
    errno = 0;
    const long long v = std::strtoll(digits.c_str(), nullptr, base);
    if (errno == ERANGE) fail(p, "integer literal out of range (dseek supports 64-bit integers)");
    Token t;
    t.kind = TokKind::kInt;
    t.text = src_.substr(p, end - p);
    t.int_value = v;
    set_pos(t, p);
    tokens_.push_back(std::move(t));
    return end;
  }

  // Python's "unicode-escape" decoding of a string literal body.
  size_t lex_string(size_t p) {
    const char quote = src_[p];
    const size_t n = src_.size();
    std::string value;
    size_t q = p + 1;
    while (true) {
      if (q >= n) fail(p, "unterminated string literal");
      const char c = src_[q];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++q;
        continue;
      }
      if (q + 1 >= n) fail(p, "unterminated string literal");
      const char e = src_[q + 1];
      q += 2;
      auto hex_escape = [&](int len) {
        uint32_t cp = 0;
        for (int k = 0; k < len; ++k) {
          const char h = q + k < n ? char(src_[q + k] | 0x20) : 0;
          if (!(is_digit(h) || (h >= 'a' && h <= 'f'))) fail(q - 2, "truncated \\x, \\u or \\U escape in string");
          cp = cp * 16 + uint32_t(is_digit(h) ? h - '0' : h - 'a' + 10);
        }
        q += size_t(len);
        if (cp > 0x10FFFF) fail(q - 2, "illegal Unicode character in string escape");
        utf8_append(value, cp);
      };
      switch (e) {
        case '\n':
          break;
        case '\\':
        case '\'':
        case '"':
          value += e;
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'n':
          value += '\n';
          break;
        case 'r':
          value += '\r';
          break;
        case 't':
          value += '\t';
          break;
        case 'v':
          value += '\v';
          break;
        case 'x':
          hex_escape(2);
          break;
        case 'u':
          hex_escape(4);
          break;
        case 'U':
          hex_escape(8);
          break;
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = uint32_t(e - '0');
            for (int k = 0; k < 2 && q < n && src_[q] >= '0' && src_[q] <= '7'; ++k) cp = cp * 8 + uint32_t(src_[q++] - '0');
            utf8_append(value, cp);
          } else if (static_cast<unsigned char>(e) >= 0x80) {
            // jinja2 unescapes with .encode("ascii", "backslashreplace").decode("unicode-escape"), so a
            // backslash before a non-ASCII character escapes the backslash of its \xhh / \uhhhh form.
            const uint32_t cp = utf8_decode_at(src_, q - 1);
            q = utf8_next(src_, q - 1);
            char buf[16];
            std::snprintf(buf, sizeof(buf), cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", unsigned(cp));
            value += buf;
          } else {
            value += '\\';
            value += e;
          }
      }
    }
    emit(TokKind::kString, p, std::move(value));
    return q + 1;
  }

  size_t lex_operator(size_t p, std::vector<char>& brackets) {
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (auto op : kTwo) {
      if (match_at(p, op)) {
        emit(TokKind::kOp, p, std::string(op));
        return p + 2;
      }
    }
    const char c = src_[p];
    static constexpr std::string_view kOne = "+-/*%~[](){}><=.:|,;";
    if (kOne.find(c) == std::string_view::npos) {
      const size_t next = utf8_next(src_, p);
      fail(p, "unexpected char '" + src_.substr(p, next - p) + "'");
    }
    if (c == '(') brackets.push_back(')');
    if (c == '[') brackets.push_back(']');
    if (c == '{') brackets.push_back('}');
    if (c == ')' || c == ']' || c == '}') {
      if (brackets.empty()) fail(p, std::string("unexpected '") + c + "'");
      if (brackets.back() != c) fail(p, std::string("unexpected '") + c + "', expected '" + brackets.back() + "'");
      brackets.pop_back();
    }
    emit(TokKind::kOp, p, std::string(1, c));
    return p + 1;
  }

  std::string src_;
  const std::string& label_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const std::string& label) {
  return Lexer(normalize_newlines(source), label).run();
}

}  // namespace dseek::jinja
