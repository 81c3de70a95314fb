// Parser of Jinja templates: tokens (jinja_lexer.h) to a syntax tree (jinja_ast.h).
//
// The grammar and operator precedence are Jinja2's (parser.py): conditional expression < or < and
// < not < comparisons (== != < <= > >= in, not in) < + - < ~ < * / // % < ** < unary - + < filters
// and tests < postfix (. [] ()). Supported tags: if/elif/else, for/else (with `if` filter),
// set (incl. tuple targets, ns.attr targets and block set), macro, break/continue, filter,
// raw, generation. Other tags (include, extends, import, block, call, with, ...) are syntax errors.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "dseek/tokenizer/jinja_ast.h"

namespace dseek::jinja {

// Throws dseek::Error "label:line:col: message" on a syntax error.
std::shared_ptr<const Template> parse_template(std::string_view source, const std::string& label);

}  // namespace dseek::jinja
