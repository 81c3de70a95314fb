#include "dseek/server/tool_prompt.h"

#include <string_view>

namespace dseek::server {

namespace {

bool ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool ident_char(char c) { return ident_start(c) || (c >= '0' && c <= '9'); }

}  // namespace

std::string tool_system_prompt(const nlohmann::ordered_json& tools, const std::string& tool_choice) {
  const auto dump = [](const nlohmann::ordered_json& j) {
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  };
  std::string s = "You have access to the functions below. Each is given by its name, what it does, and its "
                  "parameters as a JSON Schema.\n";
  if (tools.is_array()) {
    for (const auto& tool : tools) {
      const auto fn = tool.find("function");
      if (fn == tool.end() || !fn->is_object()) continue;
      const auto name = fn->find("name");
      if (name == fn->end() || !name->is_string()) continue;
      s += "\n### " + name->get<std::string>() + "\n";
      if (const auto d = fn->find("description"); d != fn->end() && d->is_string()) {
        s += "Description: " + d->get<std::string>() + "\n";
      }
      const auto params = fn->find("parameters");
      s += "Parameters: " + (params != fn->end() && params->is_object() ? dump(*params) : std::string("{}")) + "\n";
    }
  }
  // The call syntax is the one DeepSeek-V3 was trained on (its chat template renders past calls
  // this way) and the one OutputParser reads back.
  s += "\nTo call functions, reply with the calls in exactly this form, where NAME is a function name "
       "and the JSON object holds its arguments:\n"
       "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n"
       "```json\n"
       "{\"argument\": \"value\"}\n"
       "```<｜tool▁call▁end｜><｜tool▁calls▁end｜>\n"
       "To make several calls at once, put each further call on a new line after the previous "
       "<｜tool▁call▁end｜>, before <｜tool▁calls▁end｜>. Write nothing after <｜tool▁calls▁end｜>; "
       "the results will come back in the next message.\n";
  if (tool_choice == "none") {
    s += "Do not call any function in this reply; answer directly.";
  } else if (tool_choice == "required") {
    s += "You must call at least one function in this reply.";
  } else if (tool_choice == "auto" || tool_choice.empty()) {
    s += "Call a function only when it helps to answer; otherwise answer directly.";
  } else {
    s += "You must call the function " + tool_choice + " in this reply.";
  }
  return s;
}

bool template_mentions_tools(const std::string& src) {
  const size_t n = src.size();
  size_t i = 0;
  while (i + 1 < n) {
    if (src[i] != '{' || (src[i + 1] != '{' && src[i + 1] != '%' && src[i + 1] != '#')) {
      ++i;
      continue;
    }
    const char kind = src[i + 1];
    i += 2;
    if (kind == '#') {  // comment: skip to #}
      const size_t end = src.find("#}", i);
      if (end == std::string::npos) return false;
      i = end + 2;
      continue;
    }
    const char close = kind == '{' ? '}' : '%';
    char quote = 0;
    char prev = 0;  // last non-space character outside strings, to tell `ns.tools` from `tools`
    while (i < n) {
      const char c = src[i];
      if (quote != 0) {
        if (c == '\\') {
          i += 2;
          continue;
        }
        if (c == quote) quote = 0;
        ++i;
        continue;
      }
      if (c == close && i + 1 < n && src[i + 1] == '}') {
        i += 2;
        break;
      }
      if (c == '\'' || c == '"') {
        quote = c;
        prev = c;
        ++i;
        continue;
      }
      if (ident_start(c)) {
        size_t j = i;
        while (j < n && ident_char(src[j])) ++j;
        if (std::string_view(src).substr(i, j - i) == "tools" && prev != '.') return true;
        prev = 'a';
        i = j;
        continue;
      }
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') prev = c;
      ++i;
    }
  }
  return false;
}

}  // namespace dseek::server
