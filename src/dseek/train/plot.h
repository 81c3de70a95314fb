// `dseek plot`: SVG charts of a metrics.jsonl, as hand-written SVG text (no dependencies):
//   loss.svg        training and validation loss vs step (axes with ticks and labels, legend)
//   maxvio.svg      MaxVio per MoE layer vs step (and validation MaxVio when logged)
//   expert_load.svg one heatmap panel per MoE layer: rows = experts, columns = logged steps,
//                   colour = load / mean load (blue < 1 = under-used, white = balanced, red > 1)
#pragma once

#include <string>
#include <vector>

#include "dseek/train/metrics.h"

namespace dseek {

std::string loss_svg(const std::vector<MetricsRecord>& records);
std::string maxvio_svg(const std::vector<MetricsRecord>& records);
std::string expert_load_svg(const std::vector<MetricsRecord>& records);

// Writes the three charts into out_dir (created); charts without data (no MoE layers) are skipped.
// Returns the paths written.
std::vector<std::string> write_plots(const std::vector<MetricsRecord>& records, const std::string& out_dir);

}  // namespace dseek
