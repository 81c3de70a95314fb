#include "dseek/model/init_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dseek/core/error.h"
#include "dseek/io/checkpoint_writer.h"
#include "dseek/io/config.h"
#include "dseek/io/safetensors.h"
#include "dseek/model/tensor_specs.h"

namespace dseek {

namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// xoshiro256** seeded per tensor from (seed, name): tensors are independent of write order.
class Rng {
 public:
  Rng(uint64_t seed, const std::string& name) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a of the name
    for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
    uint64_t s = seed ^ h;
    for (auto& x : s_) x = splitmix64(s);
  }
  uint64_t next() {
    const uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  // Two N(0, 1) samples (Box-Muller).
  void normal2(float& a, float& b) {
    const double u1 = (double(next() >> 11) + 1.0) * 0x1.0p-53, u2 = double(next() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * M_PI * u2;
    a = float(r * std::cos(th));
    b = float(r * std::sin(th));
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

struct Encoded {
  TensorToWrite tensor;
  std::vector<uint8_t> bytes;
  // FP8 only: the block scales, written as <name>_scale_inv.
  std::vector<float> scale_inv;
  Shape scale_shape;
};

std::vector<float> sample(const TensorSpec& spec, const InitOptions& o) {
  std::vector<float> v(size_t(shape_numel(spec.shape)));
  if (spec.role == TensorRole::kNormWeight) {
    std::fill(v.begin(), v.end(), 1.0f);
  } else if (spec.role == TensorRole::kBias) {
    std::fill(v.begin(), v.end(), 0.0f);
  } else {
    Rng rng(o.seed, spec.name);
    for (size_t i = 0; i < v.size(); i += 2) {
      float a, b;
      rng.normal2(a, b);
      v[i] = a * o.std;
      if (i + 1 < v.size()) v[i + 1] = b * o.std;
    }
  }
  return v;
}

Encoded encode(const TensorSpec& spec, const InitOptions& o) {
  std::vector<float> v = sample(spec, o);
  Encoded e;
  e.tensor = {spec.name, DType::kF32, spec.shape, nullptr};
  const bool fp8 = o.dtype == DType::kF8E4M3 && spec.role == TensorRole::kLinear;
  if (fp8) {
    constexpr int64_t kBlock = 128;
    const int64_t rows = spec.shape[0], cols = spec.shape[1];
    const int64_t br = (rows + kBlock - 1) / kBlock, bc = (cols + kBlock - 1) / kBlock;
    e.scale_shape = {br, bc};
    e.scale_inv.assign(size_t(br * bc), 0.f);
    e.bytes.resize(size_t(rows * cols));
    for (int64_t bi = 0; bi < br; ++bi)
      for (int64_t bj = 0; bj < bc; ++bj) {
        const int64_t r1 = std::min(rows, (bi + 1) * kBlock), c1 = std::min(cols, (bj + 1) * kBlock);
        float amax = 0.f;
        for (int64_t r = bi * kBlock; r < r1; ++r)
          for (int64_t c = bj * kBlock; c < c1; ++c) amax = std::max(amax, std::fabs(v[size_t(r * cols + c)]));
        const float scale = amax > 0.f ? amax / 448.0f : 1.0f;  // edge blocks: amax over what they hold
        e.scale_inv[size_t(bi * bc + bj)] = scale;
        for (int64_t r = bi * kBlock; r < r1; ++r)
          for (int64_t c = bj * kBlock; c < c1; ++c) e.bytes[size_t(r * cols + c)] = f32_to_e4m3(v[size_t(r * cols + c)] / scale);
      }
    e.tensor.dtype = DType::kF8E4M3;
  } else if (o.dtype == DType::kBF16 || (o.dtype == DType::kF8E4M3 && spec.role != TensorRole::kBias)) {
    // FP8 checkpoints keep their other tensors in BF16 (biases in float32), as DeepSeek-V3's do.
    e.bytes.resize(v.size() * 2);
    auto* p = reinterpret_cast<uint16_t*>(e.bytes.data());
    for (size_t i = 0; i < v.size(); ++i) p[i] = f32_to_bf16(v[i]);
    e.tensor.dtype = DType::kBF16;
  } else {
    e.bytes.resize(v.size() * 4);
    std::memcpy(e.bytes.data(), v.data(), e.bytes.size());
  }
  return e;
}

}  // namespace

void init_checkpoint(const std::string& config_text, const std::string& config_label, const std::string& out_dir,
                     const InitOptions& o, const std::function<void(const std::string&)>& progress) {
  if (o.dtype != DType::kF32 && o.dtype != DType::kBF16 && o.dtype != DType::kF8E4M3)
    throw Error("init: --dtype must be f32, bf16 or fp8, got " + std::string(dtype_name(o.dtype)));
  ModelConfig cfg = parse_config_json(config_text, config_label);
  nlohmann::json cj = nlohmann::json::parse(config_text);
  cj["torch_dtype"] = o.dtype == DType::kF32 ? "float32" : "bfloat16";
  if (o.dtype == DType::kF8E4M3) {
    cj["quantization_config"] = {{"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"quant_method", "fp8"},
                                 {"weight_block_size", {128, 128}}};
  } else {
    cj.erase("quantization_config");
  }
  if (!o.with_mtp) cj["num_nextn_predict_layers"] = 0;
  parse_config_json(cj.dump(), config_label);  // what we write must load

  const std::vector<TensorSpec> specs = checkpoint_tensors(cfg, o.with_mtp);
  CheckpointWriter writer(out_dir, o.shard_bytes, progress);
  for (const TensorSpec& spec : specs) {
    Encoded e = encode(spec, o);
    const std::string name = e.tensor.name;
    writer.add(name, e.tensor.dtype, e.tensor.shape, std::move(e.bytes));
    if (!e.scale_inv.empty()) {
      std::vector<uint8_t> sb(e.scale_inv.size() * 4);
      std::memcpy(sb.data(), e.scale_inv.data(), sb.size());
      writer.add(name + "_scale_inv", DType::kF32, e.scale_shape, std::move(sb));
    }
  }
  writer.finish();
  std::ofstream cf(out_dir + "/config.json");
  cf << cj.dump(2) << "\n";
  if (!cf) throw Error(out_dir + "/config.json: write failed");
}

}  // namespace dseek
