// Tokenizer of Jinja template text, configured as transformers configures Jinja2:
// trim_blocks=True (the first newline after a block or comment tag is dropped), lstrip_blocks=True
// (spaces and tabs before a block or comment tag at the start of a line are dropped),
// keep_trailing_newline=False, newlines normalized to "\n". `{%-`/`-%}` strip all whitespace on that
// side, `{%+`/`+%}` disable lstrip/trim for that tag. `{% raw %}` is handled here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dseek::jinja {

enum class TokKind : uint8_t {
  kData,        // template text to copy to the output
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,      // text holds the unescaped value
  kInt,
  kFloat,
  kOp,          // text holds the operator: + - * / // % ** ~ ( ) [ ] { } == != < <= > >= = . : | , ;
  kEof,
};

struct Token {
  TokKind kind = TokKind::kEof;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;  // 1-based, in the normalized source
  int col = 1;   // 1-based byte column
};

// Throws dseek::Error "label:line:col: message" on a lexical error (unterminated tag, comment or
// string, a character that starts no token, unbalanced brackets, an integer out of range).
std::vector<Token> tokenize(std::string_view source, const std::string& label);

}  // namespace dseek::jinja
