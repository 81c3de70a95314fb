// GET /metrics: the engine's and the HTTP layer's counters in the Prometheus text format.
#pragma once

#include <cstdint>
#include <string>

#include "dseek/runtime/engine.h"

namespace dseek::server {

struct HttpCounters {
  int64_t responses_2xx = 0, responses_4xx = 0, responses_5xx = 0, responses_429 = 0;
};

std::string prometheus_text(const EngineStats& s, const HttpCounters& h);

}  // namespace dseek::server
