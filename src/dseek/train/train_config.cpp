#include "dseek/train/train_config.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <set>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"

namespace dseek {

using nlohmann::json;
namespace fs = std::filesystem;

std::string_view schedule_type_name(ScheduleType t) {
  switch (t) {
    case ScheduleType::kCosine: return "cosine";
    case ScheduleType::kMultistep: return "multistep";
    case ScheduleType::kConstant: return "constant";
    default: return "?";
  }
}

std::string resolve_path(const std::string& path, const std::string& base_dir) {
  std::string p = path;
  if (p == "~" || p.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    if (home && *home) p = std::string(home) + p.substr(1);
  }
  if (!p.empty() && p[0] != '/' && !base_dir.empty()) p = (fs::path(base_dir) / p).lexically_normal().string();
  return p;
}

namespace {

// One section of the file: typed getters whose errors name "section.key"; unknown keys are errors
// (a misspelt "warmup_step" must not silently train without warm-up).
class Section {
 public:
  Section(const json& obj, const std::string& label, std::string prefix, std::initializer_list<const char*> known)
      : obj_(obj), label_(label), prefix_(std::move(prefix)) {
    if (!obj_.is_object()) throw Error(label_ + ": field \"" + prefix_ + "\": expected an object");
    std::set<std::string> k(known.begin(), known.end());
    for (auto it = obj_.begin(); it != obj_.end(); ++it)
      if (!k.count(it.key())) fail(it.key(), "unknown field");
  }
  [[noreturn]] void fail(std::string_view key, const std::string& what) const {
    throw Error(label_ + ": field \"" + prefix_ + "." + std::string(key) + "\": " + what);
  }
  const json* find(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  double number(const char* key, double fallback, double lo, double hi) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(key, "expected a number, got " + v->dump());
    const double x = v->get<double>();
    if (!(x >= lo && x <= hi))
      fail(key, "expected a number in [" + fmt(lo) + ", " + fmt(hi) + "], got " + v->dump());
    return x;
  }
  int64_t integer(const char* key, int64_t fallback, int64_t lo, int64_t hi = int64_t(1) << 50) const {
    const json* v = find(key);
    if (!v) return fallback;
    int64_t x = 0;
    if (v->is_number_integer())
      x = v->get<int64_t>();
    else if (v->is_number_float() && std::nearbyint(v->get<double>()) == v->get<double>() && std::fabs(v->get<double>()) < 9e15)
      x = int64_t(v->get<double>());
    else
      fail(key, "expected an integer, got " + v->dump());
    if (x < lo || x > hi) fail(key, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v->dump());
    return x;
  }
  bool boolean(const char* key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, "expected true or false, got " + v->dump());
    return v->get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) fail(key, "expected a string, got " + v->dump());
    return v->get<std::string>();
  }
  std::vector<std::string> strings(const char* key) const {
    const json* v = find(key);
    if (!v) return {};
    if (v->is_string()) return {v->get<std::string>()};
    if (!v->is_array()) fail(key, "expected a string or an array of strings, got " + v->dump());
    std::vector<std::string> out;
    for (const json& e : *v) {
      if (!e.is_string()) fail(key, "expected an array of strings, got an element " + e.dump());
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  std::vector<double> numbers(const char* key, std::vector<double> fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_array()) fail(key, "expected an array of numbers, got " + v->dump());
    std::vector<double> out;
    for (const json& e : *v) {
      if (!e.is_number()) fail(key, "expected an array of numbers, got an element " + e.dump());
      out.push_back(e.get<double>());
    }
    return out;
  }

 private:
  static std::string fmt(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    return buf;
  }
  const json& obj_;
  const std::string& label_;
  std::string prefix_;
};

const json& section(const json& root, const char* key) {
  static const json kEmpty = json::object();  // immutable: no hidden state
  auto it = root.find(key);
  return it == root.end() || it->is_null() ? kEmpty : *it;
}

}  // namespace

TrainConfig parse_train_config(std::string_view text, const std::string& label, const std::string& base_dir) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(label + ": invalid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  } catch (const json::exception& e) {
    throw Error(label + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) throw Error(label + ": expected a JSON object at the top level");
  for (auto it = root.begin(); it != root.end(); ++it) {
    static const std::set<std::string> kTop = {"model", "data", "optimizer", "schedule", "train", "comment"};
    if (!kTop.count(it.key())) throw Error(label + ": field \"" + it.key() + "\": unknown field");
  }
  TrainConfig c;
  c.label = label;

  // model: an HF config object, or the path of a config.json (or of a dir holding one).
  auto mit = root.find("model");
  if (mit == root.end() || mit->is_null()) throw Error(label + ": field \"model\": missing (an HF DeepSeek config object or a path)");
  if (mit->is_string()) {
    std::string p = resolve_path(mit->get<std::string>(), base_dir);
    if (fs::is_directory(p)) p = (fs::path(p) / "config.json").string();
    if (!fs::exists(p)) throw Error(label + ": field \"model\": no such file: " + p);
    c.model_json = read_text_file(p);
    c.model = parse_config_json(c.model_json, p);
  } else if (mit->is_object()) {
    c.model_json = mit->dump(2);
    c.model = parse_config_json(c.model_json, label + ": field \"model\"");
  } else {
    throw Error(label + ": field \"model\": expected an object or a path string");
  }

  {
    Section s(section(root, "data"), label, "data",
              {"train", "val", "val_fraction", "tokenizer", "format", "jsonl_field", "cache_dir", "comment"});
    for (const std::string& p : s.strings("train")) c.data.train.push_back(resolve_path(p, base_dir));
    if (c.data.train.empty()) s.fail("train", "missing (a list of files or glob patterns)");
    for (const std::string& p : s.strings("val")) c.data.val.push_back(resolve_path(p, base_dir));
    c.data.val_fraction = s.number("val_fraction", c.data.val.empty() ? 0.05 : 0.0, 0.0, 0.9);
    if (!c.data.val.empty() && c.data.val_fraction > 0) s.fail("val_fraction", "give either \"val\" files or \"val_fraction\", not both");
    c.data.tokenizer = s.string("tokenizer", "byte");
    if (c.data.tokenizer.empty()) s.fail("tokenizer", "expected \"byte\" or a directory with tokenizer.json");
    if (c.data.tokenizer != "byte") {
      c.data.tokenizer = resolve_path(c.data.tokenizer, base_dir);
      if (!fs::exists(fs::path(c.data.tokenizer) / "tokenizer.json"))
        s.fail("tokenizer", "expected \"byte\" or a directory with tokenizer.json; " + c.data.tokenizer + "/tokenizer.json does not exist");
    }
    c.data.format = s.string("format", "text");
    if (c.data.format != "text" && c.data.format != "jsonl") s.fail("format", "expected \"text\" or \"jsonl\", got \"" + c.data.format + "\"");
    c.data.jsonl_field = s.string("jsonl_field", "text");
    const std::string cache = s.string("cache_dir", "");
    if (!cache.empty()) c.data.cache_dir = resolve_path(cache, base_dir);
  }
  {
    Section s(section(root, "optimizer"), label, "optimizer",
              {"lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip", "comment"});
    auto& o = c.optimizer;
    if (!s.find("lr")) s.fail("lr", "missing (the peak learning rate)");
    o.lr = s.number("lr", o.lr, 0.0, 10.0);
    o.beta1 = s.number("beta1", o.beta1, 0.0, 0.999999);
    o.beta2 = s.number("beta2", o.beta2, 0.0, 0.999999);
    o.eps = s.number("eps", o.eps, 1e-30, 1.0);
    o.weight_decay = s.number("weight_decay", o.weight_decay, 0.0, 10.0);
    o.grad_clip = s.number("grad_clip", o.grad_clip, 0.0, 1e9);
  }
  {
    Section s(section(root, "train"), label, "train",
              {"steps", "batch", "seq", "grad_accum", "seed", "eval_every", "eval_batches", "log_every", "save_every",
               "keep_checkpoints", "out_dir", "threads", "mtp_lambda", "balance_alpha", "aux_loss_free", "bias_gamma",
               "init_std", "init_from", "matmul", "comment"});
    auto& t = c.train;
    t.steps = s.integer("steps", t.steps, 1);
    t.batch = s.integer("batch", t.batch, 1, 1 << 20);
    t.seq = s.integer("seq", t.seq, 1, 1 << 24);
    t.grad_accum = s.integer("grad_accum", t.grad_accum, 1, 1 << 20);
    t.seed = uint64_t(s.integer("seed", 0, 0));
    t.eval_every = s.integer("eval_every", t.eval_every, 0);
    t.eval_batches = s.integer("eval_batches", t.eval_batches, 0, 1 << 20);
    t.log_every = s.integer("log_every", t.log_every, 1);
    t.save_every = s.integer("save_every", t.save_every, 0);
    t.keep_checkpoints = s.integer("keep_checkpoints", t.keep_checkpoints, 0);
    t.out_dir = resolve_path(s.string("out_dir", t.out_dir), "");
    if (t.out_dir.empty()) s.fail("out_dir", "must not be empty");
    t.threads = int(s.integer("threads", 0, 0, 4096));
    t.mtp_lambda = s.number("mtp_lambda", t.mtp_lambda, 0.0, 100.0);
    t.balance_alpha = s.number("balance_alpha", t.balance_alpha, 0.0, 100.0);
    t.aux_loss_free = s.boolean("aux_loss_free", t.aux_loss_free);
    t.bias_gamma = s.number("bias_gamma", t.bias_gamma, 0.0, 1.0);
    t.init_std = s.number("init_std", t.init_std, 0.0, 10.0);
    t.matmul = s.string("matmul", t.matmul);
    if (t.matmul != "f32" && t.matmul != "bf16") s.fail("matmul", "must be \"f32\" or \"bf16\"");
    const std::string init_from = s.string("init_from", "");
    if (!init_from.empty()) t.init_from = resolve_path(init_from, base_dir);
  }
  {
    Section s(section(root, "schedule"), label, "schedule",
              {"type", "warmup_steps", "min_lr_ratio", "milestones", "factors", "comment"});
    auto& sc = c.schedule;
    const std::string type = s.string("type", "cosine");
    if (type == "cosine")
      sc.type = ScheduleType::kCosine;
    else if (type == "multistep")
      sc.type = ScheduleType::kMultistep;
    else if (type == "constant")
      sc.type = ScheduleType::kConstant;
    else
      s.fail("type", "expected \"cosine\", \"multistep\" or \"constant\", got \"" + type + "\"");
    sc.warmup_steps = s.integer("warmup_steps", 0, 0);
    sc.min_lr_ratio = s.number("min_lr_ratio", sc.min_lr_ratio, 0.0, 1.0);
    sc.milestones = s.numbers("milestones", sc.milestones);
    sc.factors = s.numbers("factors", sc.factors);
    if (sc.milestones.size() != sc.factors.size())
      s.fail("factors", "expected as many factors as milestones (" + std::to_string(sc.milestones.size()) + ")");
    for (size_t i = 0; i < sc.milestones.size(); ++i)
      if (!(sc.milestones[i] > 0 && sc.milestones[i] <= 1) || (i > 0 && sc.milestones[i] < sc.milestones[i - 1]))
        s.fail("milestones", "expected increasing fractions of the steps in (0, 1]");
  }
  if (c.model.has_indexer()) throw Error(label + ": field \"model.model_type\": deepseek_v32 (indexer) is not trainable");
  return c;
}

TrainConfig load_train_config(const std::string& path) {
  const std::string base = fs::path(path).parent_path().string();
  return parse_train_config(read_text_file(path), path, base.empty() ? "." : base);
}

}  // namespace dseek
