// Speculative sampling's acceptance rule (Leviathan et al. 2023, Chen et al. 2023): a draft token
// d drawn from the draft distribution q is kept with probability min(1, p[d] / q[d]) where p is the
// target model's distribution; otherwise a token is drawn from the residual max(0, p - q),
// renormalised. The tokens produced are then distributed exactly as p, whatever q was, so a weak
// draft only costs speed, never quality. With greedy decoding p and q are one-hot and the rule
// reduces to "accept when the target's argmax equals the draft".
#pragma once

#include <cstdint>
#include <span>

namespace dseek {

// Index drawn from probs (summing to ~1) with one uniform u in [0, 1); ties to rounding go to the
// last positive entry.
int32_t draw_from(std::span<const float> probs, double u);

struct DraftVerdict {
  int32_t token = -1;  // the draft when accepted, else the residual draw
  bool accepted = false;
};

// p, q: target and draft distributions (V); u_accept, u_residual: independent uniforms in [0, 1).
DraftVerdict verify_draft(std::span<const float> p, std::span<const float> q, int32_t draft, double u_accept,
                          double u_residual);

}  // namespace dseek
