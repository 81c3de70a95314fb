#include "dseek/io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"

namespace dseek {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string json_quoted(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

bool is_regular_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

// weight_map of model.safetensors.index.json, name -> shard file name. A name listed twice would
// be silently collapsed by nlohmann::json, so the parser callback rejects duplicate keys.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  const std::string text = read_text_file(index_path);
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto cb = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && duplicate.empty() && !open_objects.empty()) {
      if (!open_objects.back().insert(parsed.get<std::string>()).second) duplicate = parsed.get<std::string>();
    }
    return true;
  };
  // nlohmann stops at a NUL byte (ignoring what follows); valid JSON never contains one.
  if (text.find('\0') != std::string::npos) throw Error(index_path + ": not valid JSON: NUL byte");
  json j;
  try {
    j = json::parse(text, cb);
  } catch (const json::exception& e) {
    throw Error(index_path + ": not valid JSON: " + e.what());
  }
  if (!duplicate.empty()) throw Error(index_path + ": duplicate key " + json_quoted(duplicate));
  if (!j.is_object()) throw Error(index_path + ": not a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end()) throw Error(index_path + ": missing \"weight_map\"");
  if (!wm->is_object()) throw Error(index_path + ": \"weight_map\" is not an object");
  std::map<std::string, std::string> out;
  for (const auto& [name, file] : wm->items()) {
    if (!file.is_string()) throw Error(index_path + ": weight_map entry " + json_quoted(name) + " is not a string");
    const auto& f = file.get_ref<const std::string&>();
    // Shards live in the checkpoint directory; refusing other paths keeps a downloaded index from
    // pointing the loader at arbitrary files.
    const fs::path p(f);
    if (f.empty() || p.is_absolute() || std::any_of(p.begin(), p.end(), [](const fs::path& c) { return c == ".."; }))
      throw Error(index_path + ": weight_map entry " + json_quoted(name) + ": shard path " + json_quoted(f) +
                  " is not inside the checkpoint directory");
    out.emplace(name, f);
  }
  return out;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& dir_in) {
  Checkpoint c;
  c.dir_ = dir_in;
  while (c.dir_.size() > 1 && c.dir_.back() == '/') c.dir_.pop_back();
  const std::string& dir = c.dir_;
  {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw Error(dir + ": not a directory");
  }

  const std::string index_path = dir + "/model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;
  std::vector<std::string> shard_files;  // names relative to dir
  if (is_regular_file(index_path)) {
    weight_map = read_weight_map(index_path);
    std::set<std::string> unique;
    for (const auto& [name, file] : weight_map) {
      if (!unique.insert(file).second) continue;
      if (!is_regular_file(dir + "/" + file))
        throw Error(index_path + ": shard " + json_quoted(file) + " (holding " + json_quoted(name) + ") does not exist in " + dir);
    }
    shard_files.assign(unique.begin(), unique.end());
  } else if (is_regular_file(dir + "/model.safetensors")) {
    shard_files.push_back("model.safetensors");
  } else {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (e.path().extension() == ".safetensors" && is_regular_file(e.path().string())) shard_files.push_back(name);
    }
    if (ec) throw Error(dir + ": cannot list directory: " + ec.message());
    std::sort(shard_files.begin(), shard_files.end());
    if (shard_files.empty())
      throw Error(dir + ": no model.safetensors.index.json, model.safetensors or *.safetensors files");
  }

  std::map<std::string, const SafetensorsFile*> by_file;
  for (const std::string& f : shard_files) {
    c.shards_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(dir + "/" + f)));
    const SafetensorsFile* shard = c.shards_.back().get();
    by_file.emplace(f, shard);
    for (const TensorInfo& t : shard->tensors()) {
      auto [it, inserted] = c.tensors_.emplace(t.name, Entry{shard, &t});
      if (!inserted)
        throw Error(dir + ": tensor " + json_quoted(t.name) + " is in two shards: " + it->second.shard->path() + " and " +
                    shard->path());
    }
  }
  for (const auto& [name, file] : weight_map) {
    auto it = c.tensors_.find(name);
    if (it == c.tensors_.end() || it->second.shard != by_file.at(file))
      throw Error(index_path + ": tensor " + json_quoted(name) + " is listed in weight_map but absent from its shard " +
                  dir + "/" + file);
  }
  return c;
}

const Checkpoint::Entry& Checkpoint::entry(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(dir_ + ": missing tensor " + std::string(name));
  return it->second;
}

bool Checkpoint::has(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

TensorView Checkpoint::get(std::string_view name) const {
  const Entry& e = entry(name);
  return e.shard->view(*e.info);
}

const std::string& Checkpoint::file_of(std::string_view name) const { return entry(name).shard->path(); }

const std::map<std::string, std::string>& Checkpoint::metadata_of(std::string_view name) const {
  return entry(name).shard->metadata();
}

TensorView Checkpoint::expect(std::string_view name, const Shape& shape, std::initializer_list<DType> allowed) const {
  const Entry& e = entry(name);
  const bool dtype_ok = std::find(allowed.begin(), allowed.end(), e.info->dtype) != allowed.end();
  if (!dtype_ok || e.info->shape != shape) {
    std::string want;
    for (DType t : allowed) want += (want.empty() ? "" : "|") + std::string(dtype_name(t));
    throw Error(e.shard->path() + ": " + json_quoted(name) + ": expected " + want + " " + shape_str(shape) + ", got " +
                std::string(dtype_name(e.info->dtype)) + " " + shape_str(e.info->shape));
  }
  return e.shard->view(*e.info);
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, e] : tensors_) out.push_back(name);
  return out;  // std::map iterates in sorted order
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& s : shards_) n += s->file_size();
  return n;
}

}  // namespace dseek
