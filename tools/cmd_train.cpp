// dseek train: run a training job described by one JSON file (docs/training.md).
#include <cstdio>
#include <filesystem>

#include "args.h"
#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/train/params.h"
#include "dseek/train/train_config.h"
#include "dseek/train/trainer.h"

namespace dseek::cli {

int cmd_train(int argc, char** argv) {
  Args a(argc, argv, {"config", "steps", "batch", "out", "threads", "lr", "seed", "matmul"}, {"resume"});
  const std::string config_path = a.require("config");
  TrainConfig cfg = load_train_config(config_path);
  if (a.has("steps")) {
    cfg.train.steps = a.get_int("steps", 0);
    if (cfg.train.steps < 1) throw Error("--steps: must be at least 1");
  }
  if (a.has("batch")) {
    cfg.train.batch = a.get_int("batch", 0);
    if (cfg.train.batch < 1) throw Error("--batch: must be at least 1");
  }
  if (a.has("out")) cfg.train.out_dir = resolve_path(a.require("out"), "");
  if (a.has("threads")) cfg.train.threads = int(a.get_int("threads", 0));
  if (a.has("lr")) {
    cfg.optimizer.lr = a.get_double("lr", 0);
    if (!(cfg.optimizer.lr > 0)) throw Error("--lr: must be positive");
  }
  if (a.has("seed")) cfg.train.seed = uint64_t(a.get_int("seed", 0));
  if (a.has("matmul")) {
    cfg.train.matmul = a.require("matmul");
    if (cfg.train.matmul != "f32" && cfg.train.matmul != "bf16") throw Error("--matmul: must be f32 or bf16");
  }
  const std::string cache_dir =
      cfg.data.cache_dir.empty() ? (std::filesystem::path(cfg.train.out_dir) / "data-cache").string() : cfg.data.cache_dir;
  auto log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };

  const TextEncoder enc = cfg.data.tokenizer == "byte" ? TextEncoder::byte_level() : TextEncoder::from_dir(cfg.data.tokenizer);
  const TrainingData data = prepare_data(cfg.data, enc, cache_dir, cfg.train.seed, log);
  std::fprintf(stderr, "data: train %zu tokens (%lld documents), validation %zu tokens (%lld documents), vocab %u\n",
               data.split.train.size(), (long long)data.split.train_docs, data.split.val.size(), (long long)data.split.val_docs,
               data.vocab_size);

  TrainModel model(cfg.model, train_options(cfg));
  ModelAdapter<TrainModel> adapter(model);
  std::fprintf(stderr,
               "model: %lld parameters; batch %lld x seq %lld x grad_accum %lld = %lld tokens/step, %lld steps, lr %g (%s), "
               "matmul %s, out %s\n",
               (long long)model.num_parameters(), (long long)cfg.train.batch, (long long)cfg.train.seq,
               (long long)cfg.train.grad_accum, (long long)(cfg.train.batch * cfg.train.seq * cfg.train.grad_accum),
               (long long)cfg.train.steps, cfg.optimizer.lr, std::string(schedule_type_name(cfg.schedule.type)).c_str(),
               cfg.train.matmul.c_str(), cfg.train.out_dir.c_str());

  TrainerOptions opts;
  opts.progress = stderr;
  opts.train_config_text = read_text_file(config_path);
  opts.tokenizer.byte = enc.is_byte();
  opts.tokenizer.dir = enc.dir();
  Trainer trainer(cfg, adapter, data, std::move(opts));
  trainer.start(a.has("resume"));
  trainer.run();
  const auto& rec = trainer.records();
  if (!rec.empty() && rec.back().val_loss)
    std::fprintf(stderr, "done: step %lld, train loss %.4f, validation loss %.4f\n", (long long)trainer.step(), rec.back().loss,
                 *rec.back().val_loss);
  std::fprintf(stderr, "metrics: %s/metrics.jsonl (dseek plot %s/metrics.jsonl --out %s/plots)\n", cfg.train.out_dir.c_str(),
               cfg.train.out_dir.c_str(), cfg.train.out_dir.c_str());
  return 0;
}

}  // namespace dseek::cli
