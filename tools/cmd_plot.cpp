// dseek plot: SVG charts (loss, MaxVio, expert-load heatmap) from a training run's metrics.jsonl.
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/train/metrics.h"
#include "dseek/train/plot.h"

namespace dseek::cli {

int cmd_plot(int argc, char** argv) {
  Args a(argc, argv, {"out"}, {});
  if (a.positional().size() != 1) throw Error("usage: dseek plot METRICS.jsonl --out DIR");
  const std::vector<MetricsRecord> records = read_metrics(a.positional()[0]);
  if (records.empty()) throw Error(a.positional()[0] + ": no records");
  for (const std::string& p : write_plots(records, a.require("out"))) std::printf("%s\n", p.c_str());
  return 0;
}

}  // namespace dseek::cli
