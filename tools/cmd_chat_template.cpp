// dseek chat-template --model DIR --messages FILE.json [--add-generation-prompt] [--tools TOOLS.json]
// Prints the prompt that transformers' apply_chat_template(tokenize=False) renders, byte for byte and
// with no newline added (pipe it to `dseek tokenize --no-special --file /dev/stdin` for the ids).
// FILE.json is a JSON array of messages, or an object {"messages": [...], "tools": [...]};
// --tools overrides the object's "tools". Key order in the files is kept, as Python's json keeps it.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/tokenizer/chat_template.h"

namespace dseek::cli {

namespace {

nlohmann::ordered_json read_json(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

}  // namespace

int cmd_chat_template(int argc, char** argv) {
  const Args args(argc, argv, {"model", "messages", "tools"}, {"add-generation-prompt"});
  if (!args.positional().empty()) throw Error("unexpected argument '" + args.positional()[0] + "'");
  const std::string dir = args.require("model");
  const std::string messages_path = args.require("messages");

  const nlohmann::ordered_json doc = read_json(messages_path);
  nlohmann::ordered_json messages, tools;
  bool have_tools = false;
  if (doc.is_array()) {
    messages = doc;
  } else if (doc.is_object() && doc.contains("messages")) {
    messages = doc["messages"];
    if (doc.contains("tools") && !doc["tools"].is_null()) {
      tools = doc["tools"];
      have_tools = true;
    }
  } else {
    throw Error(messages_path + ": expected a JSON array of messages or an object with \"messages\"");
  }
  if (!messages.is_array()) throw Error(messages_path + ": \"messages\" must be an array");
  if (auto tools_path = args.get("tools")) {
    tools = read_json(*tools_path);
    have_tools = true;
  }
  if (have_tools && !tools.is_array()) throw Error("tools must be a JSON array");

  const ChatTemplate tmpl = ChatTemplate::load(dir);
  const std::string prompt = tmpl.render(messages, args.has("add-generation-prompt"), have_tools ? &tools : nullptr);
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  return 0;
}

}  // namespace dseek::cli
