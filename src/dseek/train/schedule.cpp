#include "dseek/train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dseek {

double lr_at(const ScheduleConfig& s, double base_lr, int64_t step, int64_t total_steps) {
  if (step < s.warmup_steps) return base_lr * double(step + 1) / double(s.warmup_steps);
  switch (s.type) {
    case ScheduleType::kCosine: {
      const double span = double(std::max<int64_t>(1, total_steps - s.warmup_steps - 1));
      const double p = std::clamp(double(step - s.warmup_steps) / span, 0.0, 1.0);
      const double lr_min = base_lr * s.min_lr_ratio;
      return lr_min + (base_lr - lr_min) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
    }
    case ScheduleType::kMultistep: {
      double f = 1.0;
      for (size_t i = 0; i < s.milestones.size(); ++i)
        if (double(step) >= s.milestones[i] * double(total_steps)) f = s.factors[i];
      return base_lr * f;
    }
    default: return base_lr;
  }
}

}  // namespace dseek
