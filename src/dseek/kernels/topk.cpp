#include "dseek/kernels/topk.h"

#include <cmath>

namespace dseek {

namespace {
// True when (a, ia) ranks before (b, ib).
inline bool ranks_before(float a, int64_t ia, float b, int64_t ib) {
  const bool na = std::isnan(a), nb = std::isnan(b);
  if (na != nb) return nb;
  if (!na && a != b) return a > b;
  return ia < ib;
}
}  // namespace

void topk(int32_t* idx, const float* scores, int64_t n, int64_t k) {
  if (k <= 0) return;
  // Insertion into a sorted prefix: k is small (experts per token, groups) or the
  // caller's rows are short; O(n k) with no allocation.
  int64_t filled = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (filled == k && !ranks_before(scores[i], i, scores[idx[k - 1]], idx[k - 1])) continue;
    int64_t j = filled < k ? filled++ : k - 1;
    while (j > 0 && ranks_before(scores[i], i, scores[idx[j - 1]], idx[j - 1])) {
      idx[j] = idx[j - 1];
      --j;
    }
    idx[j] = int32_t(i);
  }
}

}  // namespace dseek
