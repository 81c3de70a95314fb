// dseek quantize: a copy of a checkpoint with its matrices in Q8_0, Q4_0 or their 16-row interleaved forms (docs/kernels.md).
#include <chrono>
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/model/quantize_checkpoint.h"

namespace dseek::cli {

int cmd_quantize(int argc, char** argv) {
  Args a(argc, argv, {"model", "out", "type", "shard-gb"}, {});
  QuantizeOptions o;
  const std::string type = a.get_or("type", "q8");
  if (type == "q8" || type == "q8_0")
    o.type = DType::kQ8_0;
  else if (type == "q4" || type == "q4_0")
    o.type = DType::kQ4_0;
  else if (type == "q8r" || type == "q8_0_r16")
    o.type = DType::kQ8_0R16;
  else if (type == "q4r" || type == "q4_0_r16")
    o.type = DType::kQ4_0R16;
  else
    throw Error("--type: expected q8, q8r, q4 or q4r, got '" + type + "'");
  o.shard_bytes = int64_t(a.get_double("shard-gb", 2.0) * double(1 << 30));
  const auto t0 = std::chrono::steady_clock::now();
  quantize_checkpoint(a.require("model"), a.require("out"), o,
                      [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); });
  std::fprintf(stderr, "quantized %s -> %s (%s) in %.1f s\n", a.require("model").c_str(), a.require("out").c_str(),
               type.c_str(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

}  // namespace dseek::cli
