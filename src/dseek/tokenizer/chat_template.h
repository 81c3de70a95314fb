// Chat templates: renders a conversation to the prompt text exactly as Hugging Face transformers'
// apply_chat_template(tokenize=False) does with the checkpoint's `chat_template` (issue 4).
//
// The template runs in dseek's own Jinja interpreter (jinja_*.h), configured as transformers
// configures jinja2: sandboxed and immutable, trim_blocks=True, lstrip_blocks=True, loop controls,
// tojson with ensure_ascii=False, raise_exception() and strftime_now(). docs/chat_template.md lists
// the supported subset and the limits a render runs under.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "dseek/tokenizer/jinja_eval.h"

namespace dseek {

class ChatTemplate {
 public:
  // Parses the template text; throws dseek::Error "label:line:col: ..." on a syntax error.
  static ChatTemplate parse(std::string_view source, const std::string& label);

  // Loads `chat_template` from DIR/tokenizer_config.json: a string, or the list-of-{name, template}
  // form (the entry named "default" is used). Falls back to DIR/chat_template.jinja and
  // DIR/chat_template.json (newer transformers save it there). bos_token, eos_token, pad_token and
  // unk_token may be strings or {"content": ...} objects. Throws naming the file and field if absent.
  static ChatTemplate load(const std::string& dir);

  // messages and tools are OpenAI-style JSON arrays. Variables the template sees: messages, tools (only
  // if given), add_generation_prompt, bos_token/eos_token/pad_token/unk_token (those known), then
  // every key of `extra` (which may override them). Throws dseek::Error "label:line: ..." on a
  // runtime error, a raise_exception() call or an exceeded limit.
  //
  // Key order: Python dicts keep the order of the JSON document, and it shows wherever a template
  // prints a dict (tools|tojson). nlohmann::json sorts object keys when it parses; pass
  // nlohmann::ordered_json (the overload below) to render exactly what transformers renders.
  std::string render(const nlohmann::json& messages, bool add_generation_prompt,
                     const nlohmann::json* tools = nullptr,
                     const nlohmann::json& extra = nlohmann::json::object()) const;
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json* tools,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& label() const { return label_; }
  const std::string& source() const { return source_; }  // the template text
  const std::optional<std::string>& bos_token() const { return bos_token_; }
  const std::optional<std::string>& eos_token() const { return eos_token_; }

  // Limits for hostile templates (see jinja::Limits for the defaults).
  void set_limits(const jinja::Limits& limits) { limits_ = limits; }

 private:
  template <class Json>
  std::string render_impl(const Json& messages, bool add_generation_prompt, const Json* tools, const Json& extra) const;

  std::shared_ptr<const jinja::Template> tmpl_;
  std::string label_;
  std::string source_;
  std::optional<std::string> bos_token_, eos_token_, pad_token_, unk_token_;
  jinja::Limits limits_;
};

}  // namespace dseek
