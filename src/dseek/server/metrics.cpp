#include "dseek/server/metrics.h"

#include <cstdio>

namespace dseek::server {

namespace {
void metric(std::string& out, const char* name, const char* type, const char* help, double value,
            const char* labels = "") {
  char buf[512];
  std::snprintf(buf, sizeof buf, "# HELP %s %s\n# TYPE %s %s\n%s%s %.17g\n", name, help, name, type, name, labels, value);
  out += buf;
}
void sample(std::string& out, const char* name, const char* labels, double value) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s%s %.17g\n", name, labels, value);
  out += buf;
}
}  // namespace

std::string prometheus_text(const EngineStats& s, const HttpCounters& h) {
  std::string o;
  o += "# HELP dseek_requests_total Generation requests by outcome.\n# TYPE dseek_requests_total counter\n";
  sample(o, "dseek_requests_total", "{state=\"submitted\"}", double(s.requests_submitted));
  sample(o, "dseek_requests_total", "{state=\"finished\"}", double(s.requests_finished));
  sample(o, "dseek_requests_total", "{state=\"cancelled\"}", double(s.requests_cancelled));
  sample(o, "dseek_requests_total", "{state=\"rejected\"}", double(s.requests_rejected));
  o += "# HELP dseek_http_responses_total HTTP responses by status class.\n# TYPE dseek_http_responses_total counter\n";
  sample(o, "dseek_http_responses_total", "{code=\"2xx\"}", double(h.responses_2xx));
  sample(o, "dseek_http_responses_total", "{code=\"4xx\"}", double(h.responses_4xx));
  sample(o, "dseek_http_responses_total", "{code=\"429\"}", double(h.responses_429));
  sample(o, "dseek_http_responses_total", "{code=\"5xx\"}", double(h.responses_5xx));
  metric(o, "dseek_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", double(s.prompt_tokens));
  metric(o, "dseek_generation_tokens_total", "counter", "Tokens generated.", double(s.generated_tokens));
  metric(o, "dseek_steps_total", "counter", "Batched forward steps.", double(s.steps));
  metric(o, "dseek_step_tokens_total", "counter", "Tokens run through the model, summed over steps.",
         double(s.step_tokens));
  metric(o, "dseek_step_sequences_total", "counter", "Sequences in a step, summed over steps.", double(s.step_sequences));
  metric(o, "dseek_batch_size_mean", "gauge", "Mean sequences per step since start.",
         s.steps ? double(s.step_sequences) / double(s.steps) : 0.0);
  metric(o, "dseek_running_sequences", "gauge", "Sequences in the running batch.", double(s.running));
  metric(o, "dseek_queue_length", "gauge", "Requests waiting for admission.", double(s.waiting));
  metric(o, "dseek_preemptions_total", "counter", "Sequences preempted for KV memory (recomputed later).",
         double(s.preemptions));
  metric(o, "dseek_kv_blocks_total", "gauge", "KV cache blocks.", double(s.kv_blocks_total));
  metric(o, "dseek_kv_blocks_used", "gauge", "KV cache blocks referenced by sequences.", double(s.kv_blocks_used));
  metric(o, "dseek_kv_blocks_cached", "gauge", "KV cache blocks in the prefix index.", double(s.kv_blocks_cached));
  metric(o, "dseek_kv_evictions_total", "counter", "Cached blocks evicted.", double(s.kv_evictions));
  metric(o, "dseek_prefix_cache_query_tokens_total", "counter", "Prompt tokens looked up in the prefix cache.",
         double(s.prefix_query_tokens));
  metric(o, "dseek_prefix_cache_hit_tokens_total", "counter", "Prompt tokens served by the prefix cache.",
         double(s.prefix_hit_tokens));
  metric(o, "dseek_prefix_cache_hit_rate", "gauge", "Hit tokens / query tokens since start.",
         s.prefix_query_tokens ? double(s.prefix_hit_tokens) / double(s.prefix_query_tokens) : 0.0);
  o += "# HELP dseek_mtp_draft_tokens_total MTP speculative decoding: drafts proposed and accepted, by draft position.\n"
       "# TYPE dseek_mtp_draft_tokens_total counter\n";
  sample(o, "dseek_mtp_draft_tokens_total", "{position=\"1\",state=\"proposed\"}", double(s.mtp_drafts));
  sample(o, "dseek_mtp_draft_tokens_total", "{position=\"1\",state=\"accepted\"}", double(s.mtp_accepted));
  metric(o, "dseek_mtp_acceptance_rate", "gauge", "Accepted / proposed drafts since start.",
         s.mtp_drafts ? double(s.mtp_accepted) / double(s.mtp_drafts) : 0.0, "{position=\"1\"}");
  return o;
}

}  // namespace dseek::server
