// An in-process `dseek serve` for server tests: an Engine and an HttpServer on a free port, serving
// until destroyed, with a client and helpers for JSON bodies, server-sent event streams and /metrics.
#pragma once

#include <httplib.h>

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dseek/runtime/engine.h"
#include "dseek/server/http_server.h"
#include "dseek/tokenizer/chat_template.h"

namespace dseek::server {

struct LiveServer {
  using Json = nlohmann::json;

  std::unique_ptr<Engine> engine;
  std::unique_ptr<ChatTemplate> tpl;
  std::unique_ptr<HttpServer> http;
  std::thread thread;
  std::unique_ptr<httplib::Client> client;

  // Small batches and 8-position blocks, so prefill runs in chunks and short prompts fill blocks.
  static EngineOptions default_options(bool speculative) {
    EngineOptions o;
    o.max_batch = 4;
    o.max_batch_tokens = 32;
    o.context_length = 256;
    o.block_size = 8;
    o.kv_cache_bytes = 32 << 20;
    o.speculative_mtp = speculative;
    return o;
  }

  LiveServer(const Model& m, const Tokenizer& tok, const char* tpl_source, bool speculative)
      : LiveServer(m, tok, tpl_source, default_options(speculative)) {}
  LiveServer(const Model& m, const Tokenizer& tok, const char* tpl_source, const EngineOptions& o) {
    engine = std::make_unique<Engine>(m, tok, nullptr, o);
    tpl = std::make_unique<ChatTemplate>(ChatTemplate::parse(tpl_source, "test"));
    ServerOptions so;
    so.port = 0;
    so.model_id = "demo";
    so.http_threads = 4;
    http = std::make_unique<HttpServer>(*engine, tok, tpl.get(), so);
    http->bind();
    thread = std::thread([this] { http->run(); });
    client = std::make_unique<httplib::Client>("127.0.0.1", http->port());
    client->set_read_timeout(120, 0);
    for (int i = 0; i < 200; ++i) {  // until the listener runs
      if (auto r = client->Get("/health"); r && r->status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~LiveServer() {
    http->begin_shutdown();
    engine->shutdown(/*drain=*/false);
    http->stop();
    thread.join();
  }
  LiveServer(const LiveServer&) = delete;
  LiveServer& operator=(const LiveServer&) = delete;

  // POST body; returns (status, body).
  std::pair<int, std::string> post(const std::string& path, const Json& body) {
    auto r = client->Post(path.c_str(), body.dump(), "application/json");
    if (!r) return {0, "no response"};
    return {r->status, r->body};
  }
  // The JSON objects of a server-sent event stream, [DONE] excluded.
  std::vector<Json> stream(const std::string& path, Json body) {
    body["stream"] = true;
    const auto [status, text] = post(path, body);
    EXPECT_EQ(status, 200) << text;
    std::vector<Json> out;
    size_t at = 0;
    while ((at = text.find("data: ", at)) != std::string::npos) {
      const size_t end = text.find("\n\n", at);
      const std::string data = text.substr(at + 6, end - at - 6);
      at = end;
      if (data != "[DONE]") out.push_back(Json::parse(data));
    }
    return out;
  }
  // GET /metrics as name{labels} -> value.
  std::map<std::string, double> metrics() {
    std::map<std::string, double> m;
    auto r = client->Get("/metrics");
    if (!r) return m;
    std::istringstream in(r->body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      const size_t sp = line.rfind(' ');
      m[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
    }
    return m;
  }
};

}  // namespace dseek::server
