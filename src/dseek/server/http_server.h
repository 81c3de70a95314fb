// `dseek serve`: the OpenAI-compatible HTTP front of the continuous-batching Engine.
//
// Endpoints: GET /health, GET /metrics (Prometheus text), GET /v1/models, POST /v1/chat/completions,
// POST /v1/completions. HTTP worker threads parse and validate a request, render the chat template,
// tokenize, submit to the Engine and then only wait for its events (streamed as server-sent events);
// all model work happens on the engine thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "dseek/runtime/engine.h"
#include "dseek/tokenizer/chat_template.h"

namespace httplib {
class Server;
}

namespace dseek::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;               // 0: any free port (tests), see HttpServer::port()
  std::string api_key;           // non-empty: /v1/* require "Authorization: Bearer <key>"
  std::string model_id;          // the name /v1/models reports and requests may use
  int64_t max_body_bytes = 4 << 20;
  int http_threads = 64;         // connections served at once (a streaming client holds one)
};

class HttpServer {
 public:
  // chat_template may be null (a model without one): chat completions then answer 400.
  HttpServer(Engine& engine, const Tokenizer& tokenizer, const ChatTemplate* chat_template, ServerOptions opts);
  ~HttpServer();

  // Binds; throws dseek::Error naming host and port when that fails.
  void bind();
  int port() const { return port_; }
  // Serves until stop(); call after bind().
  void run();
  // New requests get 503 from now on; in-flight ones continue (the caller drains the engine).
  void begin_shutdown() { stopping_ = true; }
  // Closes the listening socket and returns from run() once handlers are done.
  void stop();

 private:
  void routes();

  Engine& engine_;
  const Tokenizer& tokenizer_;
  const ChatTemplate* template_;
  ServerOptions opts_;
  bool template_renders_tools_ = false;
  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  int64_t created_ = 0;
  // HTTP responses by class, for /metrics.
  std::atomic<int64_t> responses_2xx_{0}, responses_4xx_{0}, responses_5xx_{0}, responses_429_{0};
};

}  // namespace dseek::server
