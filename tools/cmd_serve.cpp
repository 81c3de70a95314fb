// dseek serve: the OpenAI-compatible HTTP server (continuous batching over a paged KV cache).
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <thread>

#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/runtime/engine.h"
#include "dseek/server/http_server.h"
#include "dseek/tokenizer/chat_template.h"
#include "run_flags.h"

namespace dseek::cli {

int cmd_serve(int argc, char** argv) {
  Args a(argc, argv,
         merge({kModelFlags,
                {"host", "port", "api-key", "max-batch", "max-batch-tokens", "kv-cache-gb", "block-size", "max-queue",
                 "model-id", "shutdown-timeout", "max-body-mb", "http-threads", "speculative"}}),
         {"no-prefix-cache", "no-warm"}, kShortFlags);
  // SIGINT/SIGTERM are taken by one thread (sigwait below); block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client closing mid-stream is a failed write, not a dead server

  const std::string spec = a.get("speculative").value_or("none");
  if (spec != "none" && spec != "mtp") throw Error("serve: --speculative must be 'mtp' or 'none', not '" + spec + "'");
  LoadOptions lo;
  lo.load_mtp = spec == "mtp";
  LoadedModel m = load_model_for_text(a, lo);
  std::unique_ptr<ChatTemplate> tpl;
  try {
    tpl = std::make_unique<ChatTemplate>(ChatTemplate::load(a.require("model")));
  } catch (const Error& e) {
    std::fprintf(stderr, "dseek: no chat template (%s): /v1/chat/completions will answer 400\n", e.what());
  }

  EngineOptions eo;
  eo.max_batch = a.get_int("max-batch", 8);
  eo.max_batch_tokens = a.get_int("max-batch-tokens", 256);
  eo.context_length = m.ctx;
  eo.block_size = a.get_int("block-size", 16);
  eo.kv_cache_bytes = int64_t(a.get_double("kv-cache-gb", 1.0) * double(1 << 30));
  eo.kv_dtype = m.kv_dtype;
  eo.attn_precision = m.attn_precision;
  eo.max_queue = a.get_int("max-queue", 64);
  eo.prefix_cache = !a.has("no-prefix-cache");
  eo.speculative_mtp = spec == "mtp";
  if (eo.max_batch < 1 || eo.max_batch_tokens < 1 || eo.block_size < 1 || eo.max_queue < 0)
    throw Error("serve: --max-batch, --max-batch-tokens and --block-size must be positive, --max-queue >= 0");
  Engine engine(m.model, m.tokenizer, m.pool.get(), eo);

  server::ServerOptions so;
  so.host = a.get("host").value_or("127.0.0.1");
  so.port = int(a.get_int("port", 8080));
  so.api_key = a.get("api-key").value_or("");
  so.model_id = a.get("model-id").value_or(std::filesystem::path(a.require("model")).filename().string());
  if (so.model_id.empty()) so.model_id = std::filesystem::path(a.require("model")).parent_path().filename().string();
  so.max_body_bytes = int64_t(a.get_double("max-body-mb", 4.0) * double(1 << 20));
  so.http_threads = int(a.get_int("http-threads", 64));
  server::HttpServer http(engine, m.tokenizer, tpl.get(), so);
  http.bind();
  std::fprintf(stderr,
               "dseek: serving '%s' on http://%s:%d (max batch %lld, %lld KV blocks of %lld positions, %.2f GB of %s rows; "
               "prefix cache %s, speculative %s)\n",
               so.model_id.c_str(), so.host.c_str(), http.port(), (long long)eo.max_batch, (long long)engine.kv_blocks(),
               (long long)eo.block_size, a.get_double("kv-cache-gb", 1.0), eo.kv_dtype == KVDtype::kBF16 ? "bf16" : "f32",
               eo.prefix_cache ? "on" : "off", spec.c_str());
  std::fflush(stderr);

  // Shutdown: stop admitting (503), let in-flight requests finish for up to --shutdown-timeout
  // seconds, cancel the rest, then close the listener.
  const double grace = a.get_double("shutdown-timeout", 30);
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    std::fprintf(stderr, "dseek: %s: finishing in-flight requests (up to %.0f s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
                 grace);
    http.begin_shutdown();
    auto drained = std::async(std::launch::async, [&] { engine.shutdown(/*drain=*/true); });
    if (drained.wait_for(std::chrono::duration<double>(grace)) != std::future_status::ready) {
      std::fprintf(stderr, "dseek: cancelling the requests still running\n");
      engine.shutdown(/*drain=*/false);
    }
    drained.wait();
    // Give streaming handlers a moment to write their last events before the listener closes.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    http.stop();
  });
  http.run();
  waiter.join();
  const EngineStats st = engine.stats();
  std::fprintf(stderr, "dseek: stopped after %lld requests (%lld tokens generated)\n", (long long)st.requests_finished,
               (long long)st.generated_tokens);
  return 0;
}

}  // namespace dseek::cli
