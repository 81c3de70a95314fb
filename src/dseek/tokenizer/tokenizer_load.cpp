// Tokenizer::load: tokenizer.json (+ tokenizer_config.json) to Tokenizer::Impl. Every
// unsupported or malformed field is a dseek::Error naming the file and the JSON field.
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/tokenizer/byte_level.h"
#include "dseek/tokenizer/tokenizer.h"
#include "dseek/tokenizer/tokenizer_impl.h"
#include "dseek/tokenizer/utf8.h"

namespace dseek {
namespace {

using nlohmann::json;

json parse_json_file(const std::string& path, const json::parser_callback_t& cb = nullptr) {
  const std::string text = read_text_file(path);
  try {
    return json::parse(text, cb);
  } catch (const json::parse_error& e) {
    // e.byte is the 1-based offset where parsing stopped.
    throw Error(path + ": invalid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  }
}

// tokenizer.json with model.vocab's entries and model.merges' elements moved into `lists` as the
// parser meets them instead of into the tree (BpeLists). The callback's depth is the nesting of
// the value: 1 for the top object's members, 2 for model's, 3 for the vocabulary's entries.
json parse_tokenizer_json(const std::string& path, BpeLists& lists) {
  std::string key[3];           // the last key seen at depths 1 and 2
  bool in_vocab = false, in_merges = false;
  std::string token;            // the vocabulary entry whose value comes next
  bool token_pending = false;
  auto at = [&](const char* list) { return key[1] == "model" && key[2] == list; };
  auto cb = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    using E = json::parse_event_t;
    if (depth == 2 && (event == E::object_start || event == E::array_start)) {
      in_vocab = event == E::object_start && at("vocab");
      in_merges = event == E::array_start && at("merges");
      lists.has_vocab |= in_vocab;
      lists.has_merges |= in_merges;
      return true;
    }
    if (depth == 2 && (event == E::object_end || event == E::array_end)) {
      in_vocab = in_merges = false;
      return true;
    }
    if (event == E::key && depth <= 2) {
      key[depth] = parsed.get_ref<const std::string&>();
      // A repeated key's value replaces the earlier one, as in the tree.
      if (at("vocab")) {
        lists.has_vocab = false;
        lists.vocab.clear();
      } else if (at("merges")) {
        lists.has_merges = false;
        lists.merges.clear();
      }
    }
    if (in_vocab && depth == 3) {
      if (event == E::key) {  // not kept: the entry is not added to the tree
        token = parsed.get_ref<const std::string&>();
        token_pending = true;
        return false;
      }
      if (event == E::value && token_pending) {
        lists.vocab.emplace_back(std::move(token), std::move(parsed));
        token_pending = false;
        return true;  // (its key was not kept, so it is dropped; returning true keeps the parser's key stack even)
      }
      if ((event == E::object_start || event == E::array_start) && token_pending) {
        lists.vocab.emplace_back(std::move(token), json(event == E::object_start ? json::value_t::object : json::value_t::array));
        token_pending = false;  // not an id: from_json reports it
      }
      return true;
    }
    if (in_merges && depth == 3 && (event == E::value || event == E::array_end || event == E::object_end)) {
      lists.merges.push_back(std::move(parsed));
      return false;
    }
    return true;
  };
  return parse_json_file(path, cb);
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

const json& require(const json& obj, const char* key, const std::string& file, const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end()) throw Error(file + ": " + field + ": missing");
  return *it;
}

bool opt_bool(const json& obj, const char* key, bool fallback, const std::string& file, const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(file + ": " + field + "." + key + ": expected a boolean");
  return it->get<bool>();
}

// Only the identity is implemented: null, or Sequences of (Sequences of) nothing.
void check_normalizer(const json& n, const std::string& file, const std::string& field) {
  if (n.is_null()) return;
  if (!n.is_object()) throw Error(file + ": " + field + ": expected an object or null");
  auto t = n.find("type");
  if (t == n.end() || !t->is_string()) throw Error(file + ": " + field + ".type: missing or not a string");
  if (*t != "Sequence") {
    throw Error(file + ": " + field + ".type: normalizer '" + t->get<std::string>() +
                "' is not supported (only an empty Sequence)");
  }
  const json& list = require(n, "normalizers", file, field + ".normalizers");
  if (!list.is_array()) throw Error(file + ": " + field + ".normalizers: expected an array");
  for (size_t i = 0; i < list.size(); ++i) {
    check_normalizer(list[i], file, field + ".normalizers[" + std::to_string(i) + "]");
  }
}

void check_decoder(const json& d, const std::string& file) {
  if (!d.is_object()) throw Error(file + ": decoder: missing or not an object (only ByteLevel is supported)");
  auto t = d.find("type");
  if (t == d.end() || !t->is_string() || *t != "ByteLevel") {
    throw Error(file + ": decoder.type: " + (t != d.end() ? t->dump() : std::string("missing")) +
                " is not supported (only ByteLevel)");
  }
}

// tokenizer.json's post_processor: the ids TemplateProcessing puts around a single sequence.
void read_post_processor(const json& p, const std::string& file, const std::string& field,
                         std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  if (p.is_null()) return;
  if (!p.is_object()) throw Error(file + ": " + field + ": expected an object or null");
  auto t = p.find("type");
  if (t == p.end() || !t->is_string()) throw Error(file + ": " + field + ".type: missing or not a string");
  const std::string type = t->get<std::string>();
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    const json& list = require(p, "processors", file, field + ".processors");
    if (!list.is_array()) throw Error(file + ": " + field + ".processors: expected an array");
    for (size_t i = 0; i < list.size(); ++i) {
      read_post_processor(list[i], file, field + ".processors[" + std::to_string(i) + "]", prefix, suffix);
    }
    return;
  }
  if (type != "TemplateProcessing") {
    throw Error(file + ": " + field + ".type: post-processor '" + type +
                "' is not supported (ByteLevel, TemplateProcessing, Sequence)");
  }
  const json& single = require(p, "single", file, field + ".single");
  const json& specials = require(p, "special_tokens", file, field + ".special_tokens");
  if (!single.is_array() || !specials.is_object()) {
    throw Error(file + ": " + field + ": expected \"single\" array and \"special_tokens\" object");
  }
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string f = field + ".single[" + std::to_string(i) + "]";
    const json& piece = single[i];
    if (piece.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    auto st = piece.find("SpecialToken");
    if (st == piece.end() || !st->is_object() || !st->contains("id") || !(*st)["id"].is_string()) {
      throw Error(file + ": " + f + ": expected {\"Sequence\": ...} or {\"SpecialToken\": {\"id\": ...}}");
    }
    const std::string name = (*st)["id"].get<std::string>();
    auto sp = specials.find(name);
    if (sp == specials.end() || !sp->contains("ids") || !(*sp)["ids"].is_array()) {
      throw Error(file + ": " + field + ".special_tokens[\"" + name + "\"].ids: missing");
    }
    for (const json& id : (*sp)["ids"]) {
      if (!id.is_number_integer()) throw Error(file + ": " + field + ".special_tokens[\"" + name + "\"].ids: not an integer");
      (seen_sequence ? suffix : prefix).push_back(id.get<int32_t>());
    }
  }
}

std::vector<AddedToken> read_added_tokens(const json& root, const std::string& file) {
  std::vector<AddedToken> out;
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return out;
  if (!it->is_array()) throw Error(file + ": added_tokens: expected an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& t = (*it)[i];
    const std::string field = "added_tokens[" + std::to_string(i) + "]";
    if (!t.is_object()) throw Error(file + ": " + field + ": expected an object");
    AddedToken tok;
    const json& id = require(t, "id", file, field + ".id");
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t(1) << 30)) {
      throw Error(file + ": " + field + ".id: expected a non-negative integer");
    }
    tok.id = id.get<int32_t>();
    const json& content = require(t, "content", file, field + ".content");
    if (!content.is_string() || content.get_ref<const std::string&>().empty()) {
      throw Error(file + ": " + field + ".content: expected a non-empty string");
    }
    tok.content = content.get<std::string>();
    tok.special = opt_bool(t, "special", false, file, field);
    tok.lstrip = opt_bool(t, "lstrip", false, file, field);
    tok.rstrip = opt_bool(t, "rstrip", false, file, field);
    tok.single_word = opt_bool(t, "single_word", false, file, field);
    tok.normalized = opt_bool(t, "normalized", !tok.special, file, field);  // HF's default
    out.push_back(std::move(tok));
  }
  return out;
}

// bos_token / eos_token in tokenizer_config.json: a string, an AddedToken object, or null.
int32_t config_token_id(const json& config, const char* key, const std::string& file, const Tokenizer& tok) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return -1;
  std::string content;
  if (it->is_string()) {
    content = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    content = (*it)["content"].get<std::string>();
  } else {
    throw Error(file + ": " + key + ": expected a string or an object with \"content\"");
  }
  auto id = tok.token_to_id(content);
  if (!id) throw Error(file + ": " + key + ": '" + content + "' is not a token of tokenizer.json");
  return *id;
}

// The bytes a token contributes under HF's ByteLevel decoder: its characters mapped back to
// bytes, or its own UTF-8 when any character is outside the byte-level alphabet.
void append_decoded(const std::string& token, std::string& out) {
  const size_t mark = out.size();
  const auto* p = reinterpret_cast<const uint8_t*>(token.data());
  for (size_t i = 0; i < token.size();) {
    const utf8::Decoded d = utf8::decode(p + i, token.size() - i);
    const int b = d.valid ? byte_level::char_to_byte(d.cp) : -1;
    if (b < 0) {
      out.resize(mark);
      out += token;
      return;
    }
    out.push_back(char(b));
    i += d.length;
  }
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& dir) {
  const std::string config = dir + "/tokenizer_config.json";
  return load_files(dir + "/tokenizer.json", file_exists(config) ? config : std::string());
}

Tokenizer Tokenizer::load_files(const std::string& path, const std::string& config_path) {
  auto m = std::make_unique<Impl>();
  m->path = path;
  BpeLists lists;
  const json root = parse_tokenizer_json(path, lists);
  if (!root.is_object()) throw Error(path + ": expected a JSON object at the top level");
  for (const char* key : {"truncation", "padding"}) {
    if (auto it = root.find(key); it != root.end() && !it->is_null()) {
      throw Error(path + ": " + key + ": not supported (only null)");
    }
  }

  check_normalizer(root.contains("normalizer") ? root["normalizer"] : json(), path, "normalizer");
  m->pre_tokenizer = PreTokenizer::from_json(root.contains("pre_tokenizer") ? root["pre_tokenizer"] : json(), path);

  const json& model = require(root, "model", path, "model");
  if (!model.is_object()) throw Error(path + ": model: expected an object");
  if (auto t = model.find("type"); t != model.end()) {
    if (!t->is_string() || *t != "BPE") {
      throw Error(path + ": model.type: " + t->dump() + " is not supported (only BPE)");
    }
  } else if (!model.contains("merges")) {
    throw Error(path + ": model.type: missing (and no merges: not a BPE model)");
  }
  m->model = BpeModel::from_json(model, path, m->pre_tokenizer.byte_level(), &lists);
  check_decoder(root.contains("decoder") ? root["decoder"] : json(), path);

  m->added = read_added_tokens(root, path);
  m->raw_matcher.build(m->added, false);
  m->norm_matcher.build(m->added, true);

  m->id_limit = m->model.id_limit();
  for (const auto& t : m->added) m->id_limit = std::max(m->id_limit, size_t(t.id) + 1);
  m->id_added.assign(m->id_limit, -1);
  m->id_special.assign(m->id_limit, 0);
  m->id_known.assign(m->id_limit, 0);
  for (size_t i = 0; i < m->added.size(); ++i) {
    const AddedToken& t = m->added[i];
    m->added_by_content.emplace(t.content, t.id);
    m->id_added[size_t(t.id)] = int32_t(i);
    m->id_special[size_t(t.id)] = t.special;
  }
  m->id_bytes_off.assign(m->id_limit + 1, 0);
  for (size_t id = 0; id < m->id_limit; ++id) {
    m->id_bytes_off[id] = uint32_t(m->id_bytes.size());
    const std::string* tok = m->id_added[id] >= 0 ? &m->added[size_t(m->id_added[id])].content
                                                  : m->model.id_to_token(int32_t(id));
    if (tok) {
      m->id_known[id] = 1;
      append_decoded(*tok, m->id_bytes);
    }
  }
  m->id_bytes_off[m->id_limit] = uint32_t(m->id_bytes.size());

  std::vector<int32_t> prefix, suffix;
  read_post_processor(root.contains("post_processor") ? root["post_processor"] : json(), path, "post_processor",
                      prefix, suffix);
  m->prefix_ids = prefix;
  m->suffix_ids = suffix;

  Tokenizer tok(std::move(m));
  if (!config_path.empty()) {
    const json config = parse_json_file(config_path);
    if (!config.is_object()) throw Error(config_path + ": expected a JSON object at the top level");
    tok.impl_->bos = config_token_id(config, "bos_token", config_path, tok);
    tok.impl_->eos = config_token_id(config, "eos_token", config_path, tok);
    // transformers' LlamaTokenizerFast replaces the post-processor with
    // TemplateProcessing("[bos] $A [eos]") built from add_bos_token / add_eos_token.
    const bool has_bos_flag = config.contains("add_bos_token"), has_eos_flag = config.contains("add_eos_token");
    if (has_bos_flag || has_eos_flag) {
      tok.impl_->prefix_ids.clear();
      tok.impl_->suffix_ids.clear();
      if (opt_bool(config, "add_bos_token", false, config_path, "tokenizer_config")) {
        if (tok.impl_->bos < 0) throw Error(config_path + ": add_bos_token: true but bos_token is not set");
        tok.impl_->prefix_ids.push_back(tok.impl_->bos);
      }
      if (opt_bool(config, "add_eos_token", false, config_path, "tokenizer_config")) {
        if (tok.impl_->eos < 0) throw Error(config_path + ": add_eos_token: true but eos_token is not set");
        tok.impl_->suffix_ids.push_back(tok.impl_->eos);
      }
    }
  }
  return tok;
}

}  // namespace dseek
