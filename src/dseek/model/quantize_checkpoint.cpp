#include "dseek/model/quantize_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/io/checkpoint.h"
#include "dseek/io/checkpoint_writer.h"
#include "dseek/io/config.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/matmul_quant.h"
#include "dseek/model/tensor_specs.h"

namespace dseek {

namespace {

// Router gates decide expert choice: a small error there changes which experts run, so they stay
// in full precision (as llama.cpp keeps ffn_gate_inp in F32).
bool quantizable(const TensorSpec& s) {
  if (s.role == TensorRole::kLinear) return true;
  if (s.role != TensorRole::kTable) return false;
  return s.name.find("mlp.gate.weight") == std::string::npos;
}

// The _R16 formats interleave the matrices the model multiplies whole; the embedding table (a row
// lookup) and kv_b_proj (MLA reads it per head and transposed) keep plain rows (Q8_0 / Q4_0), as
// does any matrix whose rows are not a multiple of 16.
DType stored_type(DType type, const TensorSpec& s) {
  if (!is_r16(type)) return type;
  const bool row_access = s.name.find("embed_tokens") != std::string::npos || s.name.find("kv_b_proj") != std::string::npos;
  return row_access || s.shape[0] % kR16Rows != 0 ? r16_row_type(type) : type;
}

}  // namespace

void quantize_checkpoint(const std::string& in_dir, const std::string& out_dir, const QuantizeOptions& o,
                         const std::function<void(const std::string&)>& progress) {
  if (!is_block_quantized(o.type)) throw Error("quantize: type must be Q8_0, Q4_0, Q8_0_R16 or Q4_0_R16");
  if (std::filesystem::exists(out_dir) && std::filesystem::equivalent(in_dir, out_dir))
    throw Error("quantize: --out must differ from --model");
  const std::string cfg_text = read_text_file(in_dir + "/config.json");
  const ModelConfig cfg = parse_config_json(cfg_text, in_dir + "/config.json");
  Checkpoint ckpt = Checkpoint::open(in_dir);
  const bool with_mtp = cfg.num_nextn_predict_layers > 0 &&
                        ckpt.has("model.layers." + std::to_string(cfg.num_hidden_layers) + ".eh_proj.weight");
  const std::string qname(dtype_name(o.type));
  std::vector<uint8_t> row_major;

  CheckpointWriter writer(out_dir, o.shard_bytes, progress);
  std::vector<float> row;
  for (const TensorSpec& spec : checkpoint_tensors(cfg, with_mtp)) {
    TensorView t = ckpt.get(spec.name);
    if (t.shape != spec.shape)
      throw Error(ckpt.file_of(spec.name) + ": \"" + spec.name + "\": expected " + shape_str(spec.shape) + ", got " +
                  shape_str(t.shape));
    if (!quantizable(spec) || spec.shape.size() != 2 || spec.shape[1] % kQuantBlock != 0) {
      // Kept as stored (FP8 matrices that cannot be block-quantized keep their scales too).
      const uint8_t* p = static_cast<const uint8_t*>(t.data);
      writer.add(spec.name, t.dtype, t.shape, std::vector<uint8_t>(p, p + size_t(t.numel()) * dtype_size(t.dtype)));
      if (t.dtype == DType::kF8E4M3) {
        TensorView s = ckpt.get(spec.name + "_scale_inv");
        const uint8_t* sp = static_cast<const uint8_t*>(s.data);
        writer.add(spec.name + "_scale_inv", s.dtype, s.shape, std::vector<uint8_t>(sp, sp + s.numel() * 4));
      }
      continue;
    }
    MatView m;
    m.data = t.data;
    m.dtype = t.dtype;
    m.rows = spec.shape[0];
    m.cols = spec.shape[1];
    if (t.dtype == DType::kF8E4M3) {
      m.scale_inv = static_cast<const float*>(ckpt.get(spec.name + "_scale_inv").data);
      m.block = cfg.quantization.weight_block_rows;
    } else if (t.dtype != DType::kF32 && t.dtype != DType::kBF16 && t.dtype != DType::kF16) {
      throw Error(ckpt.file_of(spec.name) + ": \"" + spec.name + "\": cannot quantize dtype " +
                  std::string(dtype_name(t.dtype)));
    }
    const DType type = stored_type(o.type, spec);
    const DType row_type = r16_row_type(type);  // _R16: interleaved after all rows
    const int64_t rb = quant_row_bytes(type, m.cols);
    std::vector<uint8_t> out(size_t(m.rows * rb));
    row.resize(size_t(m.cols));
    for (int64_t r = 0; r < m.rows; ++r) {
      dequantize_row(row.data(), m, r);
      quantize_rows(row_type, out.data() + r * rb, row.data(), 1, m.cols);
    }
    Shape shape{m.rows, rb};
    if (is_r16(type)) {
      row_major.swap(out);
      out.resize(row_major.size());
      interleave_r16(type, out.data(), row_major.data(), m.rows, m.cols);
      shape = {m.rows / kR16Rows, kR16Rows * rb};
    }
    writer.add(spec.name, DType::kU8, shape, std::move(out),
               {{"dseek.quant." + spec.name, std::string(dtype_name(type))}, {"dseek.quant_version", "1"}});
  }
  writer.finish();

  nlohmann::json cj = nlohmann::json::parse(cfg_text);
  cj.erase("quantization_config");
  cj["dseek_quantization"] = {{"type", qname}, {"block", kQuantBlock}, {"source", in_dir}};
  std::ofstream(out_dir + "/config.json") << cj.dump(2) << "\n";
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    if (std::filesystem::exists(in_dir + "/" + f))
      std::filesystem::copy_file(in_dir + "/" + f, out_dir + "/" + f, std::filesystem::copy_options::overwrite_existing);
}

}  // namespace dseek
