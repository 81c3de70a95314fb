#include "dseek/train/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"

namespace dseek {

using nlohmann::json;

double max_violation(std::span<const int64_t> load) {
  if (load.empty()) return 0.0;
  int64_t total = 0, mx = 0;
  for (int64_t x : load) {
    total += x;
    mx = std::max(mx, x);
  }
  if (total == 0) return 0.0;
  const double mean = double(total) / double(load.size());
  return (double(mx) - mean) / mean;
}

namespace {

// NaN / inf are not JSON: a diverged run logs null.
json num(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }
double get_num(const json& j, const char* key, const std::string& label) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nan("");
  if (!it->is_number()) throw Error(label + ": field \"" + key + "\": expected a number");
  return it->get<double>();
}

}  // namespace

std::string metrics_to_json(const MetricsRecord& r) {
  json j;
  j["step"] = r.step;
  j["lr"] = num(r.lr);
  j["loss"] = num(r.loss);
  j["main_loss"] = num(r.main_loss);
  j["mtp_loss"] = num(r.mtp_loss);
  j["balance_loss"] = num(r.balance_loss);
  j["val_loss"] = r.val_loss ? num(*r.val_loss) : json(nullptr);
  j["grad_norm"] = num(r.grad_norm);
  j["tokens_per_s"] = num(r.tokens_per_s);
  j["tokens"] = r.tokens;
  j["elapsed_s"] = num(r.elapsed_s);
  j["moe_layers"] = r.moe_layers;
  j["maxvio"] = json::array();
  for (double m : r.maxvio) j["maxvio"].push_back(num(m));
  j["val_maxvio"] = r.val_maxvio ? num(*r.val_maxvio) : json(nullptr);
  j["load"] = r.load;
  return j.dump();
}

MetricsRecord metrics_from_json(const std::string& line, const std::string& label) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {
    throw Error(label + ": invalid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
    throw Error(label + ": field \"step\": missing or not an integer");
  MetricsRecord r;
  r.step = j["step"].get<int64_t>();
  r.lr = get_num(j, "lr", label);
  r.loss = get_num(j, "loss", label);
  r.main_loss = get_num(j, "main_loss", label);
  r.mtp_loss = get_num(j, "mtp_loss", label);
  r.balance_loss = get_num(j, "balance_loss", label);
  if (double v = get_num(j, "val_loss", label); !std::isnan(v)) r.val_loss = v;
  r.grad_norm = get_num(j, "grad_norm", label);
  r.tokens_per_s = get_num(j, "tokens_per_s", label);
  r.tokens = int64_t(get_num(j, "tokens", label));
  r.elapsed_s = get_num(j, "elapsed_s", label);
  if (double v = get_num(j, "val_maxvio", label); !std::isnan(v)) r.val_maxvio = v;
  try {
    if (j.contains("moe_layers") && j["moe_layers"].is_array()) r.moe_layers = j["moe_layers"].get<std::vector<std::string>>();
    if (j.contains("load") && j["load"].is_array()) r.load = j["load"].get<std::vector<std::vector<int64_t>>>();
    if (j.contains("maxvio") && j["maxvio"].is_array())
      for (const json& m : j["maxvio"]) r.maxvio.push_back(m.is_number() ? m.get<double>() : std::nan(""));
  } catch (const json::exception& e) {
    throw Error(label + ": fields \"moe_layers\"/\"load\"/\"maxvio\": " + e.what());
  }
  return r;
}

std::vector<MetricsRecord> read_metrics(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<MetricsRecord> out;
  size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    out.push_back(metrics_from_json(line, path + ":" + std::to_string(line_no)));
  }
  return out;
}

void truncate_metrics(const std::string& path, int64_t max_step) {
  if (!std::filesystem::exists(path)) return;
  const std::string text = read_text_file(path);
  std::string kept;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    // A line cut short by a kill is dropped too.
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= max_step)
      kept += line + "\n";
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << kept;
    if (!f) throw Error(tmp + ": write failed");
  }
  std::filesystem::rename(tmp, path);
}

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "ab");
  if (!f_) throw Error(path + ": cannot open for appending");
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

void MetricsWriter::write(const MetricsRecord& r) {
  const std::string line = metrics_to_json(r) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    throw Error(path_ + ": write failed");
}

ProgressLine::ProgressLine(FILE* out) : out_(out), tty_(out && ::isatty(::fileno(out))) {}

void ProgressLine::update(const std::string& text) {
  if (!out_) return;
  if (tty_) {
    std::string padded = text;
    if (padded.size() < last_len_) padded.append(last_len_ - padded.size(), ' ');
    std::fprintf(out_, "\r%s", padded.c_str());
    last_len_ = text.size();
    live_ = true;
  } else {
    std::fprintf(out_, "%s\n", text.c_str());
  }
  std::fflush(out_);
}

void ProgressLine::message(const std::string& text) {
  if (!out_) return;
  if (tty_ && live_) {
    std::fprintf(out_, "\r%s\r", std::string(last_len_, ' ').c_str());
    live_ = false;
    last_len_ = 0;
  }
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

void ProgressLine::finish() {
  if (out_ && tty_ && live_) std::fprintf(out_, "\n");
  live_ = false;
  last_len_ = 0;
}

std::string progress_text(const MetricsRecord& r, int64_t total_steps, double eta_s) {
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, "step %lld/%lld | loss %.4f", (long long)r.step, (long long)total_steps, r.loss);
  auto add = [&](const char* fmt, auto... args) {
    if (n < int(sizeof buf)) n += std::snprintf(buf + n, sizeof buf - size_t(n), fmt, args...);
  };
  if (r.val_loss) add(" | val %.4f", *r.val_loss);
  add(" | lr %.2e | gnorm %.2f | %.0f tok/s", r.lr, r.grad_norm, r.tokens_per_s);
  if (!r.maxvio.empty()) {
    double mean = 0, mx = 0;
    for (double m : r.maxvio) {
      mean += m;
      mx = std::max(mx, m);
    }
    add(" | maxvio %.3f (max %.3f)", mean / double(r.maxvio.size()), mx);
  }
  if (eta_s >= 0) add(" | eta %dm%02ds", int(eta_s) / 60, int(eta_s) % 60);
  return buf;
}

}  // namespace dseek
