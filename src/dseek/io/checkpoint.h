// A checkpoint directory in the HF layout: config.json plus one model.safetensors, or the shards
// listed by model.safetensors.index.json ("weight_map": name -> shard file), or, failing both, every
// *.safetensors in the directory. All shards memory-mapped; tensors zero-copy.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dseek/core/dtype.h"
#include "dseek/core/tensor.h"
#include "dseek/io/safetensors.h"

namespace dseek {

class Checkpoint {
 public:
  // Throws dseek::Error naming the directory or file: bad index JSON, missing shard, a tensor the
  // index lists but its shard lacks, the same tensor in two shards, or any safetensors error.
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  bool has(std::string_view name) const;
  // The tensor, zero-copy; throws dseek::Error "DIR: missing tensor NAME" if absent.
  TensorView get(std::string_view name) const;
  const std::string& file_of(std::string_view name) const;  // shard path, for error messages
  // The "__metadata__" of the shard holding `name` (format extensions, e.g. quantized tensors).
  const std::map<std::string, std::string>& metadata_of(std::string_view name) const;
  // Checks the dtype is one of `allowed` and the shape equals `shape`; on mismatch throws naming file,
  // tensor, expected dtype(s)/shape and what was found, e.g.
  // model.safetensors: "model.layers.3.self_attn.kv_b_proj.weight": expected F32|BF16|F16 [32768, 512], got F8_E4M3 [32768, 512]
  TensorView expect(std::string_view name, const Shape& shape, std::initializer_list<DType> allowed) const;
  std::vector<std::string> names() const;  // sorted
  uint64_t total_bytes() const;            // sum of shard file sizes

 private:
  struct Entry {
    const SafetensorsFile* shard;
    const TensorInfo* info;
  };
  const Entry& entry(std::string_view name) const;

  std::string dir_;
  // unique_ptr so Entry pointers survive moves of the Checkpoint.
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, Entry, std::less<>> tensors_;
};

}  // namespace dseek
