#include "dseek/server/http_server.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <random>

#include "dseek/server/api_error.h"
#include "dseek/server/logprobs.h"
#include "dseek/server/metrics.h"
#include "dseek/server/openai_request.h"
#include "dseek/server/openai_response.h"
#include "dseek/server/output_parser.h"
#include "dseek/server/tool_prompt.h"

namespace dseek::server {

namespace {

using json = nlohmann::ordered_json;

// The events of one request, from the engine thread to the HTTP thread that serves it.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<EngineEvent> q;

  void push(const EngineEvent& e) {
    {
      std::lock_guard lk(mu);
      q.push_back(e);
    }
    cv.notify_one();
  }
  std::optional<EngineEvent> pop(std::chrono::milliseconds wait) {
    std::unique_lock lk(mu);
    if (!cv.wait_for(lk, wait, [&] { return !q.empty(); })) return std::nullopt;
    EngineEvent e = std::move(q.front());
    q.pop_front();
    return e;
  }
};

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)rng());
  return std::string(prefix) + buf;
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// What a parsed request becomes before it reaches the engine.
struct Job {
  bool chat = true;
  bool stream = false;
  bool include_usage = false;
  bool in_reasoning = false;
  bool parse_tools = false;
  std::string echo;  // completions with echo: the prompt text, returned before the output
  // Completions with echo and logprobs (req.prompt_logprobs): leading prompt ids that are not part
  // of `echo` (the BOS added to a text prompt), for the text offsets.
  int64_t echo_lead = 0;
  EngineRequest req;
};

void fill_common(Job& job, const RequestCommon& rc, const std::vector<int32_t>& prompt, int64_t ctx) {
  const int64_t n = int64_t(prompt.size());
  if (n == 0) throw ApiError(400, "invalid_request_error", "the prompt is empty", "prompt", "invalid_value");
  if (n >= ctx)
    throw ApiError(400, "invalid_request_error",
                    "This model's maximum context length is " + std::to_string(ctx) + " tokens. However, your prompt has " +
                        std::to_string(n) + " tokens, leaving no room for the completion.",
                    "messages", "context_length_exceeded");
  job.stream = rc.stream;
  job.include_usage = rc.include_usage;
  job.req.prompt = prompt;
  job.req.sampling = rc.sampling;
  if (!rc.has_seed) job.req.sampling.seed = std::random_device{}() * 0x9E3779B97F4A7C15ull + uint64_t(now_seconds());
  job.req.max_new_tokens = std::min(rc.max_tokens.value_or(ctx - n), ctx - n);
  job.req.stop = rc.stop;
  job.req.logprobs = rc.logprobs;
  job.req.top_logprobs = rc.top_logprobs;
}

bool ends_inside_think(const std::string& prompt) {
  size_t end = prompt.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return false;
  static const std::string kThink = "<think>";
  return end + 1 >= kThink.size() && prompt.compare(end + 1 - kThink.size(), kThink.size(), kThink) == 0;
}

std::string finish_reason_of(const EngineEvent& e, const OutputParser* parser) {
  if (parser && parser->saw_tool_calls()) return "tool_calls";
  return e.finish_reason == "length" ? "length" : "stop";
}

void set_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

}  // namespace

HttpServer::HttpServer(Engine& engine, const Tokenizer& tokenizer, const ChatTemplate* chat_template, ServerOptions opts)
    : engine_(engine), tokenizer_(tokenizer), template_(chat_template), opts_(std::move(opts)) {
  template_renders_tools_ = template_ && template_mentions_tools(template_->source());
  created_ = now_seconds();
  http_ = std::make_unique<httplib::Server>();
  const int threads = std::max(4, opts_.http_threads);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  http_->set_payload_max_length(size_t(opts_.max_body_bytes));
  http_->set_keep_alive_max_count(1000);
  routes();
}

HttpServer::~HttpServer() = default;

void HttpServer::bind() {
  if (opts_.port == 0) {
    port_ = http_->bind_to_any_port(opts_.host);
    if (port_ <= 0) throw Error("serve: cannot bind " + opts_.host + " to any port");
  } else {
    if (!http_->bind_to_port(opts_.host, opts_.port))
      throw Error("serve: cannot bind " + opts_.host + ":" + std::to_string(opts_.port) +
                  " (in use, or not an address of this machine)");
    port_ = opts_.port;
  }
}

void HttpServer::run() { http_->listen_after_bind(); }

void HttpServer::stop() { http_->stop(); }

void HttpServer::routes() {
  httplib::Server& s = *http_;

  // Counts every response and gives errors that no handler wrote (404, 413, ...) an OpenAI body.
  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (res.body.empty()) {
      ApiError e = res.status == 404   ? ApiError(404, "not_found_error", "no such endpoint: " + req.method + " " + req.path)
                   : res.status == 413 ? ApiError(413, "invalid_request_error",
                                                   "the request body exceeds " + std::to_string(opts_.max_body_bytes) +
                                                       " bytes", {}, "request_too_large")
                                       : ApiError(res.status, "invalid_request_error", "HTTP error " +
                                                                                           std::to_string(res.status));
      res.set_content(error_body(e), "application/json");
    }
  });
  s.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    if (res.status == 429) ++responses_429_;
    if (res.status >= 500) ++responses_5xx_;
    else if (res.status >= 400) ++responses_4xx_;
    else ++responses_2xx_;
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    set_json(res, 500, error_body(ApiError(500, "server_error", what)));
  });
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (opts_.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + opts_.api_key)
      return httplib::Server::HandlerResponse::Unhandled;
    set_json(res, 401,
             error_body(ApiError(401, "invalid_request_error", "invalid or missing API key (Authorization: Bearer ...)",
                                  {}, "invalid_api_key")));
    return httplib::Server::HandlerResponse::Handled;
  });

  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (stopping_)
      set_json(res, 503, R"({"status":"stopping"})");
    else
      set_json(res, 200, R"({"status":"ok"})");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    HttpCounters h{responses_2xx_.load(), responses_4xx_.load(), responses_5xx_.load(), responses_429_.load()};
    res.set_content(prometheus_text(engine_.stats(), h), "text/plain; version=0.0.4");
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    set_json(res, 200, dump_json(models_list(opts_.model_id, created_)));
  });
  s.Get("/v1/models/(.+)", [this](const httplib::Request& req, httplib::Response& res) {
    if (req.matches[1] != opts_.model_id)
      set_json(res, 404, error_body(ApiError(404, "invalid_request_error",
                                              "The model '" + std::string(req.matches[1]) + "' does not exist", "model",
                                              "model_not_found")));
    else
      set_json(res, 200, dump_json(model_object(opts_.model_id, created_)));
  });

  auto check_model = [this](const std::string& model) {
    if (!model.empty() && model != opts_.model_id)
      throw ApiError(404, "invalid_request_error",
                      "The model '" + model + "' does not exist; this server serves '" + opts_.model_id + "'", "model",
                      "model_not_found");
  };

  // Submits a job and answers it, streamed or whole.
  auto serve_job = [this](Job job, httplib::Response& res) {
    auto ch = std::make_shared<Channel>();
    job.req.on_event = [ch](const EngineEvent& e) { ch->push(e); };
    job.req.skip_special_tokens = !job.chat;  // chat output keeps the markers the parser needs
    uint64_t id = 0;
    try {
      id = engine_.submit(job.req);
    } catch (const EngineBusy& e) {
      if (e.stopping) throw ApiError(503, "server_error", e.what(), {}, "server_shutting_down");
      throw ApiError(429, "rate_limit_error", e.what(), {}, "queue_full");
    } catch (const Error& e) {
      throw ApiError(400, "invalid_request_error", e.what());
    }
    const std::string rid = random_id(job.chat ? "chatcmpl-" : "cmpl-");
    const int64_t created = now_seconds();
    const std::string model = opts_.model_id;
    auto parser = std::make_shared<OutputParser>(job.in_reasoning, job.parse_tools);
    // Every generated token's logprobs, in order: all in the response, or each streamed chunk with
    // those of the tokens that came before it and were not sent yet (docs/server.md, "Logprobs").
    auto lps = std::make_shared<LogprobCollector>(tokenizer_, job.req.skip_special_tokens);
    const bool chat = job.chat, want_logprobs = job.req.logprobs;
    auto take_logprobs = [lps, chat, want_logprobs]() -> json {
      if (!want_logprobs || lps->empty()) return nullptr;
      const std::vector<LogprobEntry> entries = lps->take();
      return chat ? chat_logprobs(entries) : completion_logprobs(entries);
    };

    if (!job.stream) {
      OutputDelta message;
      std::string text = job.echo;
      bool first_event = true;
      for (;;) {
        std::optional<EngineEvent> e = ch->pop(std::chrono::milliseconds(1000));
        if (!e) continue;
        // Echo with logprobs: the prompt's entries (in the first event) before the generated ones.
        if (first_event && job.req.prompt_logprobs)
          lps->add_prompt(job.req.prompt, e->prompt_logprobs, job.echo_lead, job.echo);
        first_event = false;
        lps->add(e->logprobs);
        if (job.chat)
          message.append(parser->push(e->text));
        else
          text += e->text;
        if (!e->done) continue;
        if (e->finish_reason == "error")
          throw ApiError(500, "server_error", "generation failed: " + e->error);
        if (e->finish_reason == "cancelled") throw ApiError(503, "server_error", "the request was cancelled", {}, "cancelled");
        const Usage u{e->prompt_tokens, e->completion_tokens, e->cached_prompt_tokens};
        // Requested but nothing generated (EOS first): an empty list, not null.
        json logprobs = take_logprobs();
        if (want_logprobs && logprobs.is_null()) logprobs = chat ? chat_logprobs({}) : completion_logprobs({});
        if (job.chat) {
          message.append(parser->finish());
          set_json(res, 200, dump_json(chat_completion(rid, created, model, message, finish_reason_of(*e, parser.get()), u,
                                                       logprobs)));
        } else {
          set_json(res, 200, dump_json(text_completion(rid, created, model, text, finish_reason_of(*e, nullptr), u,
                                                       logprobs)));
        }
        return;
      }
    }

    // Streaming: one server-sent event per piece of output. A failed write means the client went
    // away: the sequence is cancelled and its KV blocks freed.
    struct StreamState {
      bool first = true;
      bool finished = false;
      bool echo_pending = false;  // echo with logprobs: the echo chunk waits for the prompt's logprobs
    };
    auto st = std::make_shared<StreamState>();
    st->echo_pending = job.req.prompt_logprobs;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, ch, st, parser, lps, take_logprobs, job, rid, created, model, id](size_t, httplib::DataSink& sink) {
          auto send = [&](const json& j) {
            const std::string ev = sse_event(j);
            return sink.write(ev.data(), ev.size());
          };
          if (st->first && job.chat) {
            st->first = false;
            if (!send(chat_chunk(rid, created, model, OutputDelta{}, std::nullopt, true, job.include_usage))) return false;
          } else if (st->first && !job.echo.empty() && !st->echo_pending) {
            st->first = false;
            if (!send(text_chunk(rid, created, model, job.echo, std::nullopt, job.include_usage))) return false;
          }
          st->first = false;
          std::optional<EngineEvent> e = ch->pop(std::chrono::milliseconds(200));
          if (!e) return sink.is_writable();  // nothing yet; keep the connection unless it is gone
          if (st->echo_pending) {
            // The first chunk: the prompt text with the prompt tokens' logprobs (sent even when the
            // prompt decodes to no text, for the tokens' entries).
            st->echo_pending = false;
            lps->add_prompt(job.req.prompt, e->prompt_logprobs, job.echo_lead, job.echo);
            if (!send(text_chunk(rid, created, model, job.echo, std::nullopt, job.include_usage, take_logprobs())))
              return false;
          }
          lps->add(e->logprobs);
          if (job.chat) {
            const OutputDelta d = parser->push(e->text);
            if (!d.empty() &&
                !send(chat_chunk(rid, created, model, d, std::nullopt, false, job.include_usage, take_logprobs())))
              return false;
          } else if (!e->text.empty()) {
            if (!send(text_chunk(rid, created, model, e->text, std::nullopt, job.include_usage, take_logprobs())))
              return false;
          }
          if (!e->done) return true;
          st->finished = true;
          if (e->finish_reason == "error" || e->finish_reason == "cancelled") {
            json err = json::parse(error_body(ApiError(500, "server_error", "generation failed: " +
                                                                            (e->error.empty() ? e->finish_reason : e->error))));
            send(err);
          } else {
            const Usage u{e->prompt_tokens, e->completion_tokens, e->cached_prompt_tokens};
            // Tokens whose text never reached a delta (markers, a stop string) ride on the last chunk.
            if (job.chat) {
              const OutputDelta d = parser->finish();
              if (!d.empty())
                send(chat_chunk(rid, created, model, d, std::nullopt, false, job.include_usage, take_logprobs()));
              send(chat_chunk(rid, created, model, OutputDelta{}, finish_reason_of(*e, parser.get()), false,
                              job.include_usage, take_logprobs()));
            } else {
              send(text_chunk(rid, created, model, "", finish_reason_of(*e, nullptr), job.include_usage,
                              take_logprobs()));
            }
            if (job.include_usage)
              send(usage_chunk(rid, created, model, u, job.chat ? Endpoint::kChat : Endpoint::kCompletion));
          }
          const std::string done = sse_done();
          sink.write(done.data(), done.size());
          sink.done();
          return true;
        },
        [this, st, id](bool) {
          if (!st->finished) engine_.cancel(id);
        });
  };

  auto guarded = [this](auto&& body) {
    return [this, body](const httplib::Request& req, httplib::Response& res) {
      try {
        if (stopping_) throw ApiError(503, "server_error", "the server is shutting down", {}, "server_shutting_down");
        body(req, res);
      } catch (const ApiError& e) {
        set_json(res, e.status, error_body(e));
      }
    };
  };

  s.Post("/v1/chat/completions", guarded([this, check_model, serve_job](const httplib::Request& req, httplib::Response& res) {
    ChatRequest cr = parse_chat_request(req.body);
    check_model(cr.model);
    if (!template_)
      throw ApiError(400, "invalid_request_error",
                      "this model has no chat template (tokenizer_config.json); use /v1/completions", "messages",
                      "no_chat_template");
    json messages = cr.messages;
    const bool use_tools = cr.tools.is_array() && !cr.tools.empty() && cr.tool_choice != "none";
    const json* tools = nullptr;
    if (use_tools) {
      if (template_renders_tools_) {
        tools = &cr.tools;
      } else {
        // The DeepSeek-V3 template ignores `tools`: describe them in the system prompt instead.
        const std::string sys = tool_system_prompt(cr.tools, cr.tool_choice);
        if (!messages.empty() && messages[0].value("role", "") == "system" && messages[0]["content"].is_string())
          messages[0]["content"] = sys + "\n\n" + messages[0]["content"].get<std::string>();
        else
          messages.insert(messages.begin(), json{{"role", "system"}, {"content", sys}});
      }
    }
    std::string text;
    try {
      text = template_->render(messages, cr.add_generation_prompt, tools);
    } catch (const Error& e) {
      throw ApiError(400, "invalid_request_error", std::string("the chat template rejected the messages: ") + e.what(),
                      "messages");
    }
    Job job;
    job.chat = true;
    job.in_reasoning = ends_inside_think(text);
    job.parse_tools = use_tools;
    fill_common(job, cr, tokenizer_.encode(text, false), engine_.options().context_length);
    serve_job(std::move(job), res);
  }));

  s.Post("/v1/completions", guarded([this, check_model, serve_job](const httplib::Request& req, httplib::Response& res) {
    CompletionRequest cr = parse_completion_request(req.body);
    check_model(cr.model);
    std::vector<int32_t> prompt = cr.prompt_tokens;
    if (prompt.empty()) {
      prompt = tokenizer_.encode(cr.prompt, true);  // BOS as `dseek generate` and HF encode add it
    } else {
      for (size_t i = 0; i < prompt.size(); ++i)
        if (prompt[i] < 0 || size_t(prompt[i]) >= tokenizer_.vocab_size())
          throw ApiError(400, "invalid_request_error",
                          "prompt token " + std::to_string(prompt[i]) + " at index " + std::to_string(i) +
                              " is outside the vocabulary",
                          "prompt", "invalid_value");
    }
    Job job;
    job.chat = false;
    if (cr.echo) job.echo = cr.prompt_tokens.empty() ? cr.prompt : tokenizer_.decode(prompt, false);
    fill_common(job, cr, prompt, engine_.options().context_length);
    if (cr.echo && cr.logprobs) {
      job.req.prompt_logprobs = true;
      // The special tokens encode() added to a text prompt (BOS) are not in the echoed text.
      if (cr.prompt_tokens.empty()) job.echo_lead = int64_t(prompt.size() - tokenizer_.encode(cr.prompt, false).size());
    }
    serve_job(std::move(job), res);
  }));
}

}  // namespace dseek::server
