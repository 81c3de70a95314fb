// Training metrics: expert-load balance (MaxVio), the metrics.jsonl log (one JSON object per
// logged step; docs/training.md "metrics.jsonl") and the one-line live progress display.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace dseek {

// MaxVio (DeepSeek-V3 / Wang et al. 2024): (max load - mean load) / mean load; 0 when nothing routed.
double max_violation(std::span<const int64_t> load);

struct MetricsRecord {
  int64_t step = 0;           // optimizer steps done
  double lr = 0;
  double loss = 0;            // total training loss (mean over the steps since the last record)
  double main_loss = 0, mtp_loss = 0, balance_loss = 0;
  std::optional<double> val_loss;
  double grad_norm = 0;       // before clipping, last step
  double tokens_per_s = 0;    // training tokens / training wall time since the last record
  int64_t tokens = 0;         // training tokens seen so far
  double elapsed_s = 0;       // wall time of this process so far
  std::vector<std::string> moe_layers;        // "model.layers.<l>." per MoE layer
  std::vector<std::vector<int64_t>> load;     // [moe layer][expert], summed since the last record
  std::vector<double> maxvio;                 // per MoE layer, of `load`
  std::optional<double> val_maxvio;           // mean over layers, on the validation batches
};

std::string metrics_to_json(const MetricsRecord& r);  // one line, no newline
MetricsRecord metrics_from_json(const std::string& line, const std::string& label);
// Every record of a metrics.jsonl file (blank lines skipped); errors name path:line.
std::vector<MetricsRecord> read_metrics(const std::string& path);
// Rewrites `path` keeping only records with step <= max_step (a resumed run drops what the
// interrupted one logged after its last checkpoint). No-op if the file does not exist.
void truncate_metrics(const std::string& path, int64_t max_step);

// Appends records to metrics.jsonl, flushing each line (a killed run keeps what it logged).
class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& path);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void write(const MetricsRecord& r);

 private:
  std::string path_;
  FILE* f_ = nullptr;
};

// One live status line: rewritten in place with \r on a terminal, one plain line per update
// otherwise (logs, CI).
class ProgressLine {
 public:
  explicit ProgressLine(FILE* out);
  void update(const std::string& text);
  void message(const std::string& text);  // a permanent line above the live one
  void finish();                           // ends the live line
  bool tty() const { return tty_; }

 private:
  FILE* out_;
  bool tty_ = false;
  size_t last_len_ = 0;
  bool live_ = false;
};

// eta_s < 0: not shown.
std::string progress_text(const MetricsRecord& r, int64_t total_steps, double eta_s);

}  // namespace dseek
