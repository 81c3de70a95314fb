// Writes the weights of an HF-layout checkpoint tensor by tensor, in shards of bounded size:
// model.safetensors when one shard suffices, else model-0000k-of-0000n.safetensors plus
// model.safetensors.index.json. Memory is bounded by one shard.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dseek/core/dtype.h"
#include "dseek/core/tensor.h"

namespace dseek {

class CheckpointWriter {
 public:
  CheckpointWriter(std::string dir, int64_t shard_bytes, std::function<void(const std::string&)> progress = {});

  // Queues a tensor (taking its bytes); writes the pending shard first when this one would overflow it.
  // `metadata` entries go into the __metadata__ of the shard that holds the tensor.
  void add(const std::string& name, DType dtype, const Shape& shape, std::vector<uint8_t> bytes,
           const std::map<std::string, std::string>& metadata = {});
  // Writes the last shard, names the shards and writes the index. Call once.
  void finish();

 private:
  struct Pending {
    std::string name;
    DType dtype;
    Shape shape;
    std::vector<uint8_t> bytes;
  };
  void flush();

  std::string dir_;
  int64_t shard_bytes_;
  std::function<void(const std::string&)> progress_;
  std::vector<Pending> pending_;
  std::map<std::string, std::string> pending_meta_;
  int64_t pending_bytes_ = 0;
  std::vector<std::vector<std::string>> shard_tensors_;  // names per written shard
  int64_t total_bytes_ = 0;
};

}  // namespace dseek
