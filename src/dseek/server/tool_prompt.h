// Tool descriptions for chat templates that do not render `tools` themselves.
//
// DeepSeek-V3's chat template ignores the request's `tools` (it only renders past tool calls and
// their outputs), so without help the model never learns which functions exist. The server then
// prepends a system message built by tool_system_prompt(): every function with its description
// and JSON-Schema parameters, and the exact call syntax OutputParser parses. Templates that do use
// a `tools` variable (template_mentions_tools) render the functions themselves and get no extra
// message.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace dseek::server {

// tools: a validated ChatRequest::tools array (non-null). tool_choice: "none", "auto", "required" or
// a function name; it decides the closing instruction ("none": describe but do not call).
std::string tool_system_prompt(const nlohmann::ordered_json& tools, const std::string& tool_choice);

// True when the Jinja source reads a variable named `tools` inside {{ }} or {% %} (quoted strings,
// attributes such as ns.tools and comments do not count).
bool template_mentions_tools(const std::string& template_source);

}  // namespace dseek::server
