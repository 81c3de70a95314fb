#include "dseek/train/checkpoint_io.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/io/safetensors.h"
#include "dseek/model/tensor_specs.h"

namespace dseek {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kOptimizerFormat = "dseek-adamw-v1";

// write + fsync + close, so a renamed directory never holds a half-written file.
void write_file_synced(const std::string& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path + ": cannot create: " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      throw Error(path + ": write failed: " + std::strerror(errno));
    }
    done += size_t(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw Error(path + ": fsync/close failed: " + std::strerror(errno));
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// "checkpoint-<digits>" -> step; anything else (".tmp-123", ".old-5") -> -1.
int64_t checkpoint_step(const std::string& name) {
  constexpr std::string_view kPrefix = "checkpoint-";
  if (name.rfind(kPrefix, 0) != 0 || name.size() == kPrefix.size() || name.size() > kPrefix.size() + 15) return -1;
  int64_t v = 0;
  for (size_t i = kPrefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

bool complete(const fs::path& dir) { return fs::exists(dir / "trainer_state.json") && fs::exists(dir / "model.safetensors"); }

// checkpoint-*.tmp-<pid> / .old-<pid> dirs whose writer is gone.
void remove_stale_temporaries(const std::string& out_dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("checkpoint-", 0) != 0) continue;
    size_t at = name.find(".tmp-");
    if (at == std::string::npos) at = name.find(".old-");
    if (at == std::string::npos) continue;
    const long pid = std::strtol(name.c_str() + at + 5, nullptr, 10);
    if (pid <= 0 || pid == long(::getpid()) || (::kill(pid_t(pid), 0) != 0 && errno == ESRCH)) fs::remove_all(e.path(), ec);
  }
}

std::string state_json(const TrainerState& s) {
  json j;
  j["format"] = "dseek-trainer-state-v1";
  j["step"] = s.step;
  j["seed"] = std::to_string(s.seed);  // u64: a string so no JSON reader rounds it
  j["data_position"] = s.step;         // batches are a function of (seed, step)
  j["tokens"] = s.tokens;
  j["lr"] = s.lr;
  j["loss"] = std::isfinite(s.loss) ? json(s.loss) : json(nullptr);
  j["val_loss"] = s.val_loss && std::isfinite(*s.val_loss) ? json(*s.val_loss) : json(nullptr);
  return j.dump(2) + "\n";
}

TrainerState parse_state(const std::string& path) {
  json j;
  try {
    j = json::parse(read_text_file(path));
    TrainerState s;
    s.step = j.at("step").get<int64_t>();
    s.seed = std::stoull(j.at("seed").get<std::string>());
    s.tokens = j.at("tokens").get<int64_t>();
    s.lr = j.at("lr").get<double>();
    s.loss = j.at("loss").is_null() ? std::nan("") : j.at("loss").get<double>();
    if (!j.at("val_loss").is_null()) s.val_loss = j.at("val_loss").get<double>();
    return s;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(path + ": " + e.what());
  }
}

}  // namespace

std::string byte_tokenizer_json() {
  // GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to U+0100 on.
  json vocab = json::object();
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const int cp = printable ? b : next++;
    std::string s;
    if (cp < 0x80) {
      s.push_back(char(cp));
    } else {
      s.push_back(char(0xC0 | (cp >> 6)));
      s.push_back(char(0x80 | (cp & 0x3F)));
    }
    vocab[s] = b;
  }
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
  json j = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", json::array()},
            {"normalizer", nullptr},
            {"pre_tokenizer", byte_level},
            {"post_processor", nullptr},
            {"decoder", byte_level},
            {"model",
             {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"ignore_merges", false},
              {"vocab", vocab},
              {"merges", json::array()}}}};
  return j.dump(2) + "\n";
}

std::string save_checkpoint(const std::string& out_dir, const CheckpointContents& c, int64_t keep) {
  DSEEK_CHECK(c.optimizer && c.optimizer->size() == c.params.size(), "save_checkpoint: optimizer does not match params");
  if (c.check_specs) {
    std::set<std::string> want, have;
    for (const TensorSpec& s : checkpoint_tensors(*c.check_specs, /*with_mtp=*/true)) want.insert(s.name);
    for (const StateTensor& t : c.tensors)
      if (!have.insert(t.name).second) throw Error("save_checkpoint: tensor " + t.name + " given twice");
    for (const std::string& n : want)
      if (!have.count(n)) throw Error("save_checkpoint: the model provides no tensor " + n + " (tensor_specs.cpp lists it)");
    for (const std::string& n : have)
      if (!want.count(n)) throw Error("save_checkpoint: tensor " + n + " is not one tensor_specs.cpp lists");
  }
  fs::create_directories(out_dir);
  remove_stale_temporaries(out_dir);
  const std::string name = "checkpoint-" + std::to_string(c.state.step);
  const fs::path final_dir = fs::path(out_dir) / name;
  const fs::path tmp = fs::path(out_dir) / (name + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  write_file_synced((tmp / "config.json").string(), c.model_config_json + (c.model_config_json.ends_with("\n") ? "" : "\n"));
  {
    std::vector<TensorToWrite> w;
    for (const StateTensor& t : c.tensors) w.push_back({t.name, DType::kF32, t.shape, t.data});
    write_safetensors((tmp / "model.safetensors").string(), w, {{"format", "pt"}});
  }
  {
    std::vector<TensorToWrite> w;
    for (size_t i = 0; i < c.params.size(); ++i) {
      const ParamTensor& p = c.params[i];
      w.push_back({"exp_avg." + p.name, DType::kF32, p.shape, c.optimizer->m(i).data()});
      w.push_back({"exp_avg_sq." + p.name, DType::kF32, p.shape, c.optimizer->v(i).data()});
    }
    for (size_t i = 0; i < c.biases.size(); ++i)
      w.push_back({"e_score_correction_bias." + std::to_string(i), DType::kF32, {c.n_experts}, c.biases[i]});
    const AdamWConfig& oc = c.optimizer->config();
    write_safetensors((tmp / "optimizer.safetensors").string(), w,
                      {{"format", kOptimizerFormat},
                       {"step", std::to_string(c.optimizer->steps())},
                       {"data_seed", std::to_string(c.state.seed)},
                       {"data_position", std::to_string(c.state.step)},
                       {"n_bias_vectors", std::to_string(c.biases.size())},
                       {"beta1", std::to_string(oc.beta1)},
                       {"beta2", std::to_string(oc.beta2)},
                       {"eps", std::to_string(oc.eps)},
                       {"weight_decay", std::to_string(oc.weight_decay)}});
  }
  if (c.tokenizer.byte) {
    write_file_synced((tmp / "tokenizer.json").string(), byte_tokenizer_json());
    write_file_synced((tmp / "tokenizer_config.json").string(),
                      json({{"tokenizer_class", "PreTrainedTokenizerFast"},
                            {"add_bos_token", false},
                            {"add_eos_token", false},
                            {"bos_token", nullptr},
                            {"eos_token", nullptr},
                            {"clean_up_tokenization_spaces", false},
                            {"model_max_length", 1000000000}})
                              .dump(2) + "\n");
  } else {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      const fs::path src = fs::path(c.tokenizer.dir) / f;
      if (fs::exists(src)) write_file_synced((tmp / f).string(), read_text_file(src.string()));
    }
  }
  if (!c.train_config_text.empty()) write_file_synced((tmp / "train_config.json").string(), c.train_config_text);
  write_file_synced((tmp / "trainer_state.json").string(), state_json(c.state));  // last: marks the dir complete
  fsync_dir(tmp.string());

  std::error_code ec;
  fs::path old;
  if (fs::exists(final_dir)) {  // the same step saved again (e.g. after a resume): swap it out
    old = fs::path(out_dir) / (name + ".old-" + std::to_string(::getpid()));
    fs::remove_all(old);
    fs::rename(final_dir, old, ec);
    if (ec) throw Error(final_dir.string() + ": cannot move aside: " + ec.message());
  }
  fs::rename(tmp, final_dir, ec);
  if (ec) throw Error(tmp.string() + ": rename to " + final_dir.string() + " failed: " + ec.message());
  fsync_dir(out_dir);
  const std::string latest_tmp = (fs::path(out_dir) / ("latest.tmp-" + std::to_string(::getpid()))).string();
  write_file_synced(latest_tmp, name + "\n");
  fs::rename(latest_tmp, fs::path(out_dir) / "latest", ec);
  if (ec) throw Error(out_dir + "/latest: rename failed: " + ec.message());
  fsync_dir(out_dir);
  if (!old.empty()) fs::remove_all(old, ec);

  if (keep > 0) {
    std::vector<int64_t> steps;
    for (const auto& e : fs::directory_iterator(out_dir))
      if (int64_t s = checkpoint_step(e.path().filename().string()); s >= 0 && e.is_directory()) steps.push_back(s);
    std::sort(steps.rbegin(), steps.rend());
    for (size_t i = size_t(keep); i < steps.size(); ++i)
      if (steps[i] != c.state.step) fs::remove_all(fs::path(out_dir) / ("checkpoint-" + std::to_string(steps[i])), ec);
  }
  return final_dir.string();
}

std::optional<std::string> find_latest_checkpoint(const std::string& out_dir) {
  const fs::path latest = fs::path(out_dir) / "latest";
  if (fs::exists(latest)) {
    std::string name = read_text_file(latest.string());
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
    const fs::path dir = fs::path(out_dir) / name;
    if (checkpoint_step(name) >= 0 && complete(dir)) return dir.string();
  }
  int64_t best = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out_dir, ec)) {
    const int64_t s = checkpoint_step(e.path().filename().string());
    if (s > best && complete(e.path())) best = s;
  }
  if (best < 0) return std::nullopt;
  return (fs::path(out_dir) / ("checkpoint-" + std::to_string(best))).string();
}

TrainerState load_checkpoint(const std::string& dir, std::span<const ParamTensor> params, AdamW& optimizer,
                             const std::vector<float*>& biases, int64_t n_experts) {
  DSEEK_CHECK(optimizer.size() == params.size(), "load_checkpoint: optimizer does not match params");
  auto copy = [](const SafetensorsFile& f, const std::string& name, const Shape& shape, float* dst) {
    const TensorInfo* t = f.find(name);
    if (!t) throw Error(f.path() + ": missing tensor " + name);
    if (t->dtype != DType::kF32 || t->shape != shape)
      throw Error(f.path() + ": \"" + name + "\": expected F32 " + shape_str(shape) + ", got " + std::string(dtype_name(t->dtype)) +
                  " " + shape_str(t->shape));
    std::memcpy(dst, f.data(*t), t->nbytes);
  };
  const SafetensorsFile model = SafetensorsFile::open((fs::path(dir) / "model.safetensors").string());
  const SafetensorsFile opt = SafetensorsFile::open((fs::path(dir) / "optimizer.safetensors").string());
  auto meta = [&](const char* key) -> std::string {
    auto it = opt.metadata().find(key);
    if (it == opt.metadata().end()) throw Error(opt.path() + ": __metadata__ \"" + key + "\" missing");
    return it->second;
  };
  if (meta("format") != kOptimizerFormat) throw Error(opt.path() + ": format \"" + meta("format") + "\", expected " + kOptimizerFormat);
  if (std::stoul(meta("n_bias_vectors")) != biases.size())
    throw Error(opt.path() + ": " + meta("n_bias_vectors") + " bias vectors, the model has " + std::to_string(biases.size()));
  for (size_t i = 0; i < params.size(); ++i) {
    const ParamTensor& p = params[i];
    copy(model, p.name, p.shape, p.data);
    copy(opt, "exp_avg." + p.name, p.shape, optimizer.m(i).data());
    copy(opt, "exp_avg_sq." + p.name, p.shape, optimizer.v(i).data());
  }
  for (size_t i = 0; i < biases.size(); ++i) copy(opt, "e_score_correction_bias." + std::to_string(i), {n_experts}, biases[i]);
  optimizer.set_steps(std::stoll(meta("step")));
  TrainerState s = parse_state((fs::path(dir) / "trainer_state.json").string());
  if (s.step != optimizer.steps())
    throw Error(dir + ": trainer_state.json step " + std::to_string(s.step) + " but optimizer step " + std::to_string(optimizer.steps()));
  return s;
}

}  // namespace dseek
