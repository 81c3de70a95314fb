// Learning-rate schedules: linear warm-up, then cosine decay to min_lr_ratio * lr, or the
// multi-step schedule of DeepSeek LLM (section 2.3: after warm-up, 31.6 % of the peak from 80 % of
// the steps and 10 % from 90 %), or constant.
#pragma once

#include <cstdint>

#include "dseek/train/train_config.h"

namespace dseek {

// Learning rate for optimizer step `step` (0-based: the first update is step 0) of `total_steps`.
// Warm-up: lr * (step + 1) / warmup_steps for step < warmup_steps, so step 0 never uses lr = 0.
// Cosine: progress p = (step - warmup) / (total - warmup - 1), lr_min + (lr - lr_min) * (1 + cos(pi p)) / 2,
// which reaches lr_min exactly at the last step.
double lr_at(const ScheduleConfig& s, double base_lr, int64_t step, int64_t total_steps);

}  // namespace dseek
