#include "dseek/runtime/speculative.h"

#include <algorithm>

#include "dseek/core/error.h"

namespace dseek {

int32_t draw_from(std::span<const float> probs, double u) {
  double total = 0;
  for (float x : probs) total += x;
  DSEEK_CHECK(total > 0, "draw_from: the distribution is all zero");
  const double target = u * total;
  double cum = 0;
  int32_t last = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0) continue;
    cum += probs[i];
    last = int32_t(i);
    if (cum > target) break;
  }
  return last;
}

DraftVerdict verify_draft(std::span<const float> p, std::span<const float> q, int32_t draft, double u_accept,
                          double u_residual) {
  DSEEK_CHECK(p.size() == q.size() && draft >= 0 && size_t(draft) < p.size(), "verify_draft: bad arguments");
  const double pd = p[size_t(draft)], qd = q[size_t(draft)];
  // q[d] > 0 always holds for a token drawn from q; guard anyway so a caller bug cannot divide by 0.
  if (qd > 0 && u_accept * qd < pd) return {draft, true};
  double z = 0;
  for (size_t i = 0; i < p.size(); ++i) z += std::max(0.0, double(p[i]) - double(q[i]));
  if (z <= 0) return {draw_from(p, u_residual), false};  // p == q up to rounding: any draw from p is exact
  const double target = u_residual * z;
  double cum = 0;
  int32_t last = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    const double r = std::max(0.0, double(p[i]) - double(q[i]));
    if (r <= 0) continue;
    cum += r;
    last = int32_t(i);
    if (cum > target) break;
  }
  return {last, false};
}

}  // namespace dseek
