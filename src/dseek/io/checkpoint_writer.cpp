#include "dseek/io/checkpoint_writer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dseek/core/error.h"
#include "dseek/io/safetensors.h"

namespace dseek {

namespace {
std::string temp_shard(const std::string& dir, size_t k) { return dir + "/.shard-" + std::to_string(k) + ".partial"; }
}  // namespace

CheckpointWriter::CheckpointWriter(std::string dir, int64_t shard_bytes, std::function<void(const std::string&)> progress)
    : dir_(std::move(dir)), shard_bytes_(shard_bytes), progress_(std::move(progress)) {
  std::filesystem::create_directories(dir_);
}

void CheckpointWriter::add(const std::string& name, DType dtype, const Shape& shape, std::vector<uint8_t> bytes,
                           const std::map<std::string, std::string>& metadata) {
  const int64_t n = int64_t(bytes.size());
  if (pending_bytes_ > 0 && pending_bytes_ + n > shard_bytes_) flush();
  pending_.push_back({name, dtype, shape, std::move(bytes)});
  pending_meta_.insert(metadata.begin(), metadata.end());
  pending_bytes_ += n;
}

void CheckpointWriter::flush() {
  if (pending_.empty()) return;
  std::vector<TensorToWrite> tw;
  std::vector<std::string> names;
  for (const Pending& p : pending_) {
    tw.push_back({p.name, p.dtype, p.shape, p.bytes.data()});
    names.push_back(p.name);
  }
  std::map<std::string, std::string> meta = pending_meta_;
  meta["format"] = "pt";
  write_safetensors(temp_shard(dir_, shard_tensors_.size()), tw, meta);
  if (progress_) {
    char line[128];
    std::snprintf(line, sizeof line, "wrote shard %zu (%zu tensors, %.2f GB)", shard_tensors_.size() + 1, tw.size(),
                  double(pending_bytes_) / 1e9);
    progress_(line);
  }
  total_bytes_ += pending_bytes_;
  shard_tensors_.push_back(std::move(names));
  pending_.clear();
  pending_meta_.clear();
  pending_bytes_ = 0;
}

void CheckpointWriter::finish() {
  flush();
  namespace fs = std::filesystem;
  const size_t n = shard_tensors_.size();
  fs::remove(dir_ + "/model.safetensors.index.json");
  if (n == 1) {
    fs::rename(temp_shard(dir_, 0), dir_ + "/model.safetensors");
    return;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t k = 0; k < n; ++k) {
    char fname[64];
    std::snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", k + 1, n);
    fs::rename(temp_shard(dir_, k), dir_ + "/" + fname);
    for (const std::string& name : shard_tensors_[k]) weight_map[name] = fname;
  }
  fs::remove(dir_ + "/model.safetensors");  // a stale single-file checkpoint would shadow nothing, but confuse users
  nlohmann::json index = {{"metadata", {{"total_size", total_bytes_}}}, {"weight_map", weight_map}};
  const std::string path = dir_ + "/model.safetensors.index.json";
  std::ofstream(path) << index.dump(2) << "\n";
  if (!fs::exists(path)) throw Error(path + ": write failed");
}

}  // namespace dseek
