// dseek forward: run a checkpoint on token ids and write the logits (and optionally traces) to a
// safetensors file. How users debug a checkpoint and how conformance is checked from outside.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "args.h"
#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/core/thread_pool.h"
#include "dseek/io/safetensors.h"
#include "dseek/model/model.h"
#include "dseek/runtime/kv_cache.h"

namespace dseek::cli {

namespace {

// "1,2,3" or a safetensors file with an I32/I64 `input_ids` tensor.
std::vector<int32_t> read_input_ids(const std::string& arg) {
  std::vector<int32_t> ids;
  if (arg.size() > 12 && arg.substr(arg.size() - 12) == ".safetensors") {
    SafetensorsFile f = SafetensorsFile::open(arg);
    const TensorInfo* t = f.find("input_ids");
    if (!t) throw Error(arg + ": no tensor \"input_ids\"");
    const int64_t n = shape_numel(t->shape);
    if (t->dtype == DType::kI32) {
      auto* p = reinterpret_cast<const int32_t*>(f.data(*t));
      ids.assign(p, p + n);
    } else if (t->dtype == DType::kI64) {
      auto* p = reinterpret_cast<const int64_t*>(f.data(*t));
      for (int64_t i = 0; i < n; ++i) ids.push_back(int32_t(p[i]));
    } else {
      throw Error(arg + ": \"input_ids\" must be I32 or I64, got " + std::string(dtype_name(t->dtype)));
    }
    return ids;
  }
  std::stringstream ss(arg);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end || v < 0 || v > INT32_MAX) throw Error("--input-ids: not a token id: '" + item + "'");
    ids.push_back(int32_t(v));
  }
  return ids;
}

void print_top(const float* logits, int64_t V, int k) {
  std::vector<int32_t> idx(static_cast<size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  k = int(std::min<int64_t>(k, V));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  std::printf("top-%d next tokens at the last position:\n", k);
  for (int i = 0; i < k; ++i) std::printf("  %2d. id %-7d logit %+.5f\n", i + 1, idx[size_t(i)], logits[idx[size_t(i)]]);
}

}  // namespace

int cmd_forward(int argc, char** argv) {
  Args a(argc, argv, {"model", "input-ids", "output", "attn", "decode-from", "threads"}, {"mtp", "trace"});
  const std::string dir = a.require("model");
  const std::vector<int32_t> ids = read_input_ids(a.require("input-ids"));
  const std::string out_path = a.require("output");
  const std::string attn = a.get_or("attn", "absorb");
  AttnImpl impl;
  if (attn == "absorb")
    impl = AttnImpl::kAbsorb;
  else if (attn == "naive")
    impl = AttnImpl::kNaive;
  else
    throw Error("--attn: expected naive or absorb, got '" + attn + "'");
  const bool want_mtp = a.has("mtp"), want_trace = a.has("trace");
  const int64_t T = int64_t(ids.size());
  if (T == 0) throw Error("--input-ids: no tokens");
  const int64_t T0 = a.get_int("decode-from", -1);
  if (a.has("decode-from") && (T0 < 1 || T0 >= T))
    throw Error("--decode-from: must be in [1, " + std::to_string(T - 1) + "], got " + std::to_string(T0));

  auto t_load = std::chrono::steady_clock::now();
  Model model = Model::load(dir, {.load_mtp = want_mtp});
  const ModelConfig& c = model.config();
  const int64_t V = c.vocab_size, D = c.hidden_size;
  ThreadPool pool(int(a.get_int("threads", 0)));
  Workspace ws(c, T, T, &pool);
  std::fprintf(stderr, "loaded %s (%s, %lld layers, %.1f MB) in %.2f s\n", dir.c_str(),
               std::string(model_type_name(c.model_type)).c_str(), (long long)c.num_hidden_layers,
               double(model.checkpoint().total_bytes()) / 1e6,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());

  // Full-sequence forward.
  std::vector<float> logits(static_cast<size_t>(T * V)), final_hidden(static_cast<size_t>(T * D));
  ForwardTrace trace;
  {
    KVCache cache(c, model.n_cache_layers(), T);
    model.forward(ids.data(), T, 0, cache.view(), impl, ws, logits.data(), 0, final_hidden.data(),
                  want_trace ? &trace : nullptr);
  }
  std::vector<TensorToWrite> out;
  out.push_back({"logits", DType::kF32, {T, V}, logits.data()});

  // Prefill of T0 tokens, then one token at a time through the cache.
  std::vector<float> logits_decode;
  if (T0 > 0) {
    logits_decode.resize(size_t((T - T0) * V));
    KVCache cache(c, model.n_cache_layers(), T);
    model.forward(ids.data(), T0, 0, cache.view(), impl, ws, nullptr);
    for (int64_t p = T0; p < T; ++p)
      model.forward(ids.data() + p, 1, p, cache.view(), impl, ws, logits_decode.data() + (p - T0) * V);
    out.push_back({"logits_decode", DType::kF32, {T - T0, V}, logits_decode.data()});
  }

  std::vector<float> mtp_logits;
  ForwardTrace mtp_trace;
  if (want_mtp && T > 1) {
    mtp_logits.resize(size_t((T - 1) * V));
    KVCache cache(c, model.n_cache_layers(), T);
    model.mtp_forward(final_hidden.data(), ids.data() + 1, T - 1, 0, cache.view(), impl, ws, mtp_logits.data(),
                      want_trace ? &mtp_trace : nullptr);
    out.push_back({"mtp_logits", DType::kF32, {T - 1, V}, mtp_logits.data()});
  }

  std::vector<float> hidden_all;
  std::vector<std::string> names;  // keep names alive for TensorToWrite
  if (want_trace) {
    const int64_t L = c.num_hidden_layers, k = c.num_experts_per_tok;
    out.push_back({"embed_out", DType::kF32, {T, D}, trace.embed_out.data()});
    for (const auto& hl : trace.hidden_after_layer) hidden_all.insert(hidden_all.end(), hl.begin(), hl.end());
    out.push_back({"hidden_after_layer", DType::kF32, {L, T, D}, hidden_all.data()});
    out.push_back({"final_norm_out", DType::kF32, {T, D}, trace.final_norm_out.data()});
    for (int64_t l = 0; l < L; ++l)
      if (!trace.topk_ids[size_t(l)].empty()) {
        out.push_back({"router_topk_ids." + std::to_string(l), DType::kI32, {T, k}, trace.topk_ids[size_t(l)].data()});
        out.push_back({"router_topk_weights." + std::to_string(l), DType::kF32, {T, k}, trace.topk_weights[size_t(l)].data()});
      }
    if (!mtp_trace.hidden_after_layer.empty())
      out.push_back({"mtp_block_out", DType::kF32, {T - 1, D}, mtp_trace.hidden_after_layer[0].data()});
  }
  write_safetensors(out_path, out, {{"producer", "dseek forward"}, {"attn", attn}});
  std::fprintf(stderr, "wrote %s (%zu tensors)\n", out_path.c_str(), out.size());
  print_top(logits.data() + (T - 1) * V, V, 5);
  return 0;
}

}  // namespace dseek::cli
