#include "dseek/train/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "dseek/core/error.h"

namespace dseek {

namespace {

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}

// Tick positions: a step of 1, 2 or 5 x 10^k giving about `target` ticks over [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / target, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag, step = (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step) t.push_back(std::fabs(v) < 1e-12 * step ? 0 : v);
  return t;
}

std::string tick_label(double v) {
  if (v != 0 && (std::fabs(v) >= 1e5 || std::fabs(v) < 1e-3)) return fmt("%.0e", v);
  std::string s = fmt("%.4f", v);
  while (s.find('.') != std::string::npos && (s.back() == '0' || s.back() == '.')) {
    const bool dot = s.back() == '.';
    s.pop_back();
    if (dot) break;
  }
  return s;
}

std::string layer_label(const std::string& prefix, size_t index) {
  // "model.layers.3." -> "layer 3"
  const std::string p = "model.layers.";
  if (prefix.rfind(p, 0) == 0) {
    std::string n = prefix.substr(p.size());
    if (!n.empty() && n.back() == '.') n.pop_back();
    return "layer " + n;
  }
  return prefix.empty() ? "moe " + std::to_string(index) : prefix;
}

struct Series {
  std::string name;
  std::string color;
  std::vector<std::pair<double, double>> xy;
  bool dashed = false;
};

// A line chart with axes, ticks, grid, labels and a legend.
std::string line_chart(const std::string& title, const std::string& ylabel, const std::vector<Series>& series, bool y_from_zero) {
  const double W = 860, H = 500, L = 80, R = 190, T = 50, B = 60;
  const double pw = W - L - R, ph = H - T - B;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const Series& s : series)
    for (auto [x, y] : s.xy)
      if (std::isfinite(y)) {
        x0 = std::min(x0, x), x1 = std::max(x1, x);
        y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
  std::string o = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + fmt("%.0f", W) + "\" height=\"" + fmt("%.0f", H) +
                  "\" viewBox=\"0 0 " + fmt("%.0f", W) + " " + fmt("%.0f", H) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o += "<text x=\"" + fmt("%.1f", L + pw / 2) + "\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">" + esc(title) + "</text>\n";
  if (x0 > x1) {
    o += "<text x=\"" + fmt("%.1f", W / 2) + "\" y=\"" + fmt("%.1f", H / 2) + "\" text-anchor=\"middle\">no data</text>\n</svg>\n";
    return o;
  }
  if (y_from_zero) y0 = std::min(0.0, y0);
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + (y0 == 0 ? 1 : std::fabs(y0) * 0.1);
  const double pad = (y1 - y0) * 0.05;
  if (!y_from_zero || y0 < 0) y0 -= pad;
  y1 += pad;
  auto sx = [&](double x) { return L + (x - x0) / (x1 - x0) * pw; };
  auto sy = [&](double y) { return T + ph - (y - y0) / (y1 - y0) * ph; };
  // Grid and ticks.
  for (double v : nice_ticks(y0, y1, 6)) {
    const double y = sy(v);
    o += "<line x1=\"" + fmt("%.1f", L) + "\" y1=\"" + fmt("%.1f", y) + "\" x2=\"" + fmt("%.1f", L + pw) + "\" y2=\"" + fmt("%.1f", y) +
         "\" stroke=\"#e5e5e5\"/>\n";
    o += "<line x1=\"" + fmt("%.1f", L - 5) + "\" y1=\"" + fmt("%.1f", y) + "\" x2=\"" + fmt("%.1f", L) + "\" y2=\"" + fmt("%.1f", y) +
         "\" stroke=\"black\"/>\n";
    o += "<text x=\"" + fmt("%.1f", L - 8) + "\" y=\"" + fmt("%.1f", y + 4) + "\" text-anchor=\"end\">" + tick_label(v) + "</text>\n";
  }
  for (double v : nice_ticks(x0, x1, 8)) {
    const double x = sx(v);
    o += "<line x1=\"" + fmt("%.1f", x) + "\" y1=\"" + fmt("%.1f", T) + "\" x2=\"" + fmt("%.1f", x) + "\" y2=\"" + fmt("%.1f", T + ph) +
         "\" stroke=\"#f0f0f0\"/>\n";
    o += "<line x1=\"" + fmt("%.1f", x) + "\" y1=\"" + fmt("%.1f", T + ph) + "\" x2=\"" + fmt("%.1f", x) + "\" y2=\"" + fmt("%.1f", T + ph + 5) +
         "\" stroke=\"black\"/>\n";
    o += "<text x=\"" + fmt("%.1f", x) + "\" y=\"" + fmt("%.1f", T + ph + 20) + "\" text-anchor=\"middle\">" + tick_label(v) + "</text>\n";
  }
  o += "<rect x=\"" + fmt("%.1f", L) + "\" y=\"" + fmt("%.1f", T) + "\" width=\"" + fmt("%.1f", pw) + "\" height=\"" + fmt("%.1f", ph) +
       "\" fill=\"none\" stroke=\"black\"/>\n";
  o += "<text x=\"" + fmt("%.1f", L + pw / 2) + "\" y=\"" + fmt("%.1f", H - 15) + "\" text-anchor=\"middle\">step</text>\n";
  o += "<text transform=\"translate(20 " + fmt("%.1f", T + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" + esc(ylabel) + "</text>\n";
  // Lines (a single point gets a dot).
  for (const Series& s : series) {
    std::string pts;
    int n = 0;
    for (auto [x, y] : s.xy)
      if (std::isfinite(y)) {
        pts += fmt("%.2f", sx(x)) + "," + fmt("%.2f", sy(y)) + " ";
        ++n;
      }
    if (n == 0) continue;
    o += "<polyline fill=\"none\" stroke=\"" + s.color + "\" stroke-width=\"1.8\"" + (s.dashed ? " stroke-dasharray=\"6 3\"" : "") +
         " points=\"" + pts + "\"/>\n";
    if (n <= 40)
      for (auto [x, y] : s.xy)
        if (std::isfinite(y))
          o += "<circle cx=\"" + fmt("%.2f", sx(x)) + "\" cy=\"" + fmt("%.2f", sy(y)) + "\" r=\"2.5\" fill=\"" + s.color + "\"/>\n";
  }
  // Legend.
  double ly = T + 10;
  for (const Series& s : series) {
    const double lx = L + pw + 15;
    o += "<line x1=\"" + fmt("%.1f", lx) + "\" y1=\"" + fmt("%.1f", ly) + "\" x2=\"" + fmt("%.1f", lx + 24) + "\" y2=\"" + fmt("%.1f", ly) +
         "\" stroke=\"" + s.color + "\" stroke-width=\"2\"" + (s.dashed ? " stroke-dasharray=\"6 3\"" : "") + "/>\n";
    o += "<text x=\"" + fmt("%.1f", lx + 30) + "\" y=\"" + fmt("%.1f", ly + 4) + "\">" + esc(s.name) + "</text>\n";
    ly += 20;
  }
  o += "</svg>\n";
  return o;
}

size_t n_layers(const std::vector<MetricsRecord>& records) {
  size_t n = 0;
  for (const MetricsRecord& r : records) n = std::max(n, r.load.size());
  return n;
}

std::string layer_name(const std::vector<MetricsRecord>& records, size_t l) {
  for (const MetricsRecord& r : records)
    if (l < r.moe_layers.size()) return layer_label(r.moe_layers[l], l);
  return layer_label("", l);
}

// Diverging colour for ratio = load / mean: 0 -> blue, 1 -> white, >= 2 -> red.
std::string ratio_color(double ratio) {
  const double t = std::clamp(ratio, 0.0, 2.0) - 1.0;  // [-1, 1]
  int r, g, b;
  if (t < 0) {
    r = int(255 + t * (255 - 33)), g = int(255 + t * (255 - 102)), b = int(255 + t * (255 - 172));
  } else {
    r = int(255 - t * (255 - 178)), g = int(255 - t * (255 - 24)), b = int(255 - t * (255 - 43));
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", r, g, b);
  return buf;
}

}  // namespace

std::string loss_svg(const std::vector<MetricsRecord>& records) {
  Series train{"train loss", kPalette[0], {}}, val{"validation loss", kPalette[1], {}};
  Series main{"train main CE", kPalette[2], {}, true};
  bool has_parts = false;
  for (const MetricsRecord& r : records) {
    train.xy.emplace_back(double(r.step), r.loss);
    main.xy.emplace_back(double(r.step), r.main_loss);
    if (std::isfinite(r.main_loss) && std::fabs(r.main_loss - r.loss) > 1e-9) has_parts = true;
    if (r.val_loss) val.xy.emplace_back(double(r.step), *r.val_loss);
  }
  std::vector<Series> s = {train};
  if (has_parts) s.push_back(main);  // differs from the total when MTP / balance losses are on
  if (!val.xy.empty()) s.push_back(val);
  return line_chart("Loss", "loss (nats / token)", s, false);
}

std::string maxvio_svg(const std::vector<MetricsRecord>& records) {
  const size_t L = n_layers(records);
  std::vector<Series> s;
  for (size_t l = 0; l < L; ++l) {
    Series x{layer_name(records, l), kPalette[l % 8], {}};
    x.dashed = l >= 8;
    for (const MetricsRecord& r : records)
      if (l < r.maxvio.size()) x.xy.emplace_back(double(r.step), r.maxvio[l]);
    s.push_back(std::move(x));
  }
  Series v{"validation (mean)", "#000000", {}, true};
  for (const MetricsRecord& r : records)
    if (r.val_maxvio) v.xy.emplace_back(double(r.step), *r.val_maxvio);
  if (!v.xy.empty()) s.push_back(v);
  return line_chart("Expert load balance: MaxVio = (max load - mean) / mean", "MaxVio", s, true);
}

std::string expert_load_svg(const std::vector<MetricsRecord>& records) {
  const size_t L = n_layers(records);
  // Columns: records, merged in groups so there are at most kMaxCols (loads summed).
  constexpr size_t kMaxCols = 200;
  const size_t group = std::max<size_t>(1, (records.size() + kMaxCols - 1) / kMaxCols);
  const size_t cols = (records.size() + group - 1) / group;
  size_t E = 0;
  for (const MetricsRecord& r : records)
    for (const auto& l : r.load) E = std::max(E, l.size());
  const double W = 860, Lm = 110, Rm = 110, Tm = 50, gap = 50;
  const double pw = W - Lm - Rm;
  const double cell_h = std::clamp(240.0 / double(std::max<size_t>(E, 1)), 3.0, 16.0);
  const double panel_h = cell_h * double(E);
  const double H = Tm + double(L) * (panel_h + gap) + 20;
  const double cw = cols ? pw / double(cols) : pw;
  std::string o = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + fmt("%.0f", W) + "\" height=\"" + fmt("%.0f", H) +
                  "\" viewBox=\"0 0 " + fmt("%.0f", W) + " " + fmt("%.0f", H) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o += "<text x=\"" + fmt("%.1f", Lm + pw / 2) + "\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">Expert load / mean load per MoE layer (columns: logged steps)</text>\n";
  for (size_t l = 0; l < L; ++l) {
    const double top = Tm + double(l) * (panel_h + gap);
    o += "<text x=\"" + fmt("%.1f", Lm - 10) + "\" y=\"" + fmt("%.1f", top + panel_h / 2) + "\" text-anchor=\"end\">" +
         esc(layer_name(records, l)) + "</text>\n";
    o += "<text x=\"" + fmt("%.1f", Lm - 10) + "\" y=\"" + fmt("%.1f", top + panel_h / 2 + 14) + "\" text-anchor=\"end\" font-size=\"10\">" +
         std::to_string(E) + " experts</text>\n";
    for (size_t e = 0; e < E; e += std::max<size_t>(1, E - 1))  // first and last expert index
      o += "<text x=\"" + fmt("%.1f", Lm - 3) + "\" y=\"" + fmt("%.1f", top + (double(e) + 0.5) * cell_h + 3) +
           "\" text-anchor=\"end\" font-size=\"9\">" + std::to_string(e) + "</text>\n";
    for (size_t c = 0; c < cols; ++c) {
      std::vector<int64_t> sum(E, 0);
      for (size_t k = c * group; k < std::min(records.size(), (c + 1) * group); ++k)
        if (l < records[k].load.size())
          for (size_t e = 0; e < records[k].load[l].size(); ++e) sum[e] += records[k].load[l][e];
      int64_t total = 0;
      for (int64_t x : sum) total += x;
      const double mean = double(total) / double(std::max<size_t>(E, 1));
      for (size_t e = 0; e < E; ++e) {
        const std::string color = total > 0 ? ratio_color(double(sum[e]) / mean) : "#dddddd";
        o += "<rect x=\"" + fmt("%.2f", Lm + double(c) * cw) + "\" y=\"" + fmt("%.2f", top + double(e) * cell_h) + "\" width=\"" +
             fmt("%.2f", cw + 0.3) + "\" height=\"" + fmt("%.2f", cell_h + 0.3) + "\" fill=\"" + color + "\"/>\n";
      }
    }
    o += "<rect x=\"" + fmt("%.1f", Lm) + "\" y=\"" + fmt("%.1f", top) + "\" width=\"" + fmt("%.1f", pw) + "\" height=\"" + fmt("%.1f", panel_h) +
         "\" fill=\"none\" stroke=\"black\"/>\n";
    // Step ticks under the panel.
    if (cols > 0) {
      const double s0 = double(records.front().step), s1 = double(records.back().step);
      for (double v : nice_ticks(s0, s1, 8)) {
        const double x = s1 > s0 ? Lm + (v - s0) / (s1 - s0) * (pw - cw) + cw / 2 : Lm + cw / 2;
        o += "<line x1=\"" + fmt("%.1f", x) + "\" y1=\"" + fmt("%.1f", top + panel_h) + "\" x2=\"" + fmt("%.1f", x) + "\" y2=\"" +
             fmt("%.1f", top + panel_h + 4) + "\" stroke=\"black\"/>\n";
        o += "<text x=\"" + fmt("%.1f", x) + "\" y=\"" + fmt("%.1f", top + panel_h + 16) + "\" text-anchor=\"middle\" font-size=\"10\">" +
             tick_label(v) + "</text>\n";
      }
    }
  }
  // Colour bar.
  const double bx = W - Rm + 30, by = Tm, bh = 200;
  for (int i = 0; i < 50; ++i) {
    const double ratio = 2.0 * (1.0 - (i + 0.5) / 50.0);
    o += "<rect x=\"" + fmt("%.1f", bx) + "\" y=\"" + fmt("%.2f", by + i * bh / 50) + "\" width=\"16\" height=\"" + fmt("%.2f", bh / 50 + 0.3) +
         "\" fill=\"" + ratio_color(ratio) + "\"/>\n";
  }
  o += "<rect x=\"" + fmt("%.1f", bx) + "\" y=\"" + fmt("%.1f", by) + "\" width=\"16\" height=\"" + fmt("%.1f", bh) + "\" fill=\"none\" stroke=\"black\"/>\n";
  const char* labels[] = {"&#8805;2", "1.5", "1 (mean)", "0.5", "0"};
  for (int i = 0; i < 5; ++i)
    o += "<text x=\"" + fmt("%.1f", bx + 22) + "\" y=\"" + fmt("%.1f", by + i * bh / 4 + 4) + "\" font-size=\"10\">" + labels[i] + "</text>\n";
  o += "<text x=\"" + fmt("%.1f", bx) + "\" y=\"" + fmt("%.1f", by + bh + 20) + "\" font-size=\"10\">load / mean</text>\n";
  o += "</svg>\n";
  return o;
}

std::vector<std::string> write_plots(const std::vector<MetricsRecord>& records, const std::string& out_dir) {
  std::filesystem::create_directories(out_dir);
  std::vector<std::string> written;
  auto put = [&](const std::string& name, const std::string& svg) {
    const std::string path = (std::filesystem::path(out_dir) / name).string();
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << svg;
    if (!f) throw Error(path + ": write failed");
    written.push_back(path);
  };
  put("loss.svg", loss_svg(records));
  if (n_layers(records) > 0) {
    put("maxvio.svg", maxvio_svg(records));
    put("expert_load.svg", expert_load_svg(records));
  }
  return written;
}

}  // namespace dseek
