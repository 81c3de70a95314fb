#include "dseek/tokenizer/chat_template.h"

#include <sys/stat.h>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/tokenizer/jinja_parser.h"

namespace dseek {

namespace {

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

nlohmann::json parse_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

// A special token as tokenizer_config.json stores it: "..." or {"content": "...", ...}; null/absent: none.
std::optional<std::string> special_token(const nlohmann::json& cfg, const std::string& key, const std::string& path) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  throw Error(path + ": \"" + key + "\": expected a string or an object with a string \"content\"");
}

// chat_template as a string, or [{"name": ..., "template": ...}, ...] from which "default" is taken.
std::string template_text(const nlohmann::json& value, const std::string& path) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    std::string names;
    for (const auto& entry : value) {
      if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
          !entry["name"].is_string() || !entry["template"].is_string()) {
        throw Error(path + ": \"chat_template\": list entries must be {\"name\": string, \"template\": string}");
      }
      if (entry["name"] == "default") return entry["template"].get<std::string>();
      names += (names.empty() ? "" : ", ") + entry["name"].get<std::string>();
    }
    throw Error(path + ": \"chat_template\": no template named \"default\" (have: " + names + ")");
  }
  throw Error(path + ": \"chat_template\": expected a string or a list of {name, template}");
}

}  // namespace

ChatTemplate ChatTemplate::parse(std::string_view source, const std::string& label) {
  ChatTemplate t;
  t.label_ = label;
  t.source_ = std::string(source);
  t.tmpl_ = jinja::parse_template(source, label);
  return t;
}

ChatTemplate ChatTemplate::load(const std::string& dir) {
  const std::string cfg_path = dir + "/tokenizer_config.json";
  const nlohmann::json cfg = parse_json_file(cfg_path);
  if (!cfg.is_object()) throw Error(cfg_path + ": expected a JSON object");

  std::string text, label;
  if (auto it = cfg.find("chat_template"); it != cfg.end() && !it->is_null()) {
    text = template_text(*it, cfg_path);
    label = cfg_path + ": chat_template";
  } else if (file_exists(dir + "/chat_template.jinja")) {
    label = dir + "/chat_template.jinja";
    text = read_text_file(label);
  } else if (file_exists(dir + "/chat_template.json")) {
    const std::string path = dir + "/chat_template.json";
    const nlohmann::json j = parse_json_file(path);
    if (!j.is_object() || !j.contains("chat_template")) throw Error(path + ": no \"chat_template\" field");
    text = template_text(j["chat_template"], path);
    label = path + ": chat_template";
  } else {
    throw Error(cfg_path + ": no \"chat_template\" field (and no chat_template.jinja or chat_template.json in " +
                dir + ")");
  }

  ChatTemplate t = parse(text, label);
  t.bos_token_ = special_token(cfg, "bos_token", cfg_path);
  t.eos_token_ = special_token(cfg, "eos_token", cfg_path);
  t.pad_token_ = special_token(cfg, "pad_token", cfg_path);
  t.unk_token_ = special_token(cfg, "unk_token", cfg_path);
  return t;
}

std::string ChatTemplate::render(const nlohmann::json& messages, bool add_generation_prompt,
                                 const nlohmann::json* tools, const nlohmann::json& extra) const {
  return render_impl(messages, add_generation_prompt, tools, extra);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json* tools, const nlohmann::ordered_json& extra) const {
  return render_impl(messages, add_generation_prompt, tools, extra);
}

template <class Json>
std::string ChatTemplate::render_impl(const Json& messages, bool add_generation_prompt, const Json* tools,
                                      const Json& extra) const {
  using jinja::Value;
  if (!tmpl_) throw Error("ChatTemplate::render: no template loaded");
  if (!extra.is_object()) throw Error(label_ + ": extra template variables must be a JSON object");
  jinja::Globals g;
  g["messages"] = Value::from_json(messages);
  if (tools) g["tools"] = Value::from_json(*tools);
  g["add_generation_prompt"] = Value::boolean(add_generation_prompt);
  const std::pair<const char*, const std::optional<std::string>*> specials[] = {
      {"bos_token", &bos_token_}, {"eos_token", &eos_token_}, {"pad_token", &pad_token_}, {"unk_token", &unk_token_}};
  for (const auto& [name, tok] : specials) {
    if (*tok) g[name] = Value::string(**tok);
  }
  for (auto it = extra.begin(); it != extra.end(); ++it) g[it.key()] = Value::from_json(it.value());
  jinja::Interpreter in(*tmpl_, limits_);
  return in.render(g);
}

}  // namespace dseek
