// Top-k selection over a score row (router experts, indexer keys).
#pragma once

#include <cstdint>

namespace dseek {

// idx (k) = indices of the k largest scores (n), in descending score order; equal scores are
// ordered by lower index first, so the result is deterministic. NaN ranks below every number.
// Requires 0 <= k <= n.
void topk(int32_t* idx, const float* scores, int64_t n, int64_t k);

}  // namespace dseek
