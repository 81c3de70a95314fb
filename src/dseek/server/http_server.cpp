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

// The events of one request's sequences, from the engine thread to the HTTP thread that serves it,
// each with the index of the choice it belongs to.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<int, EngineEvent>> q;

  void push(int choice, const EngineEvent& e) {
    {
      std::lock_guard lk(mu);
      q.emplace_back(choice, e);
    }
    cv.notify_one();
  }
  std::optional<std::pair<int, EngineEvent>> pop(std::chrono::milliseconds wait) {
    std::unique_lock lk(mu);
    if (!cv.wait_for(lk, wait, [&] { return !q.empty(); })) return std::nullopt;
    std::pair<int, EngineEvent> e = std::move(q.front());
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

// One prompt of a job; it gets n choices.
struct JobPrompt {
  std::vector<int32_t> ids;
  std::string param;  // the request field it came from, for errors: "messages", "prompt", "prompt[2]"
  std::string echo;   // completions with echo: the prompt text, returned before each choice's output
  // Completions with echo and logprobs (req.prompt_logprobs): leading prompt ids that are not part
  // of `echo` (the BOS added to a text prompt), for the text offsets.
  int64_t echo_lead = 0;
};

// What a parsed request becomes before it reaches the engine: prompts x n sequences.
struct Job {
  bool chat = true;
  bool stream = false;
  bool include_usage = false;
  bool in_reasoning = false;
  bool parse_tools = false;
  bool echo = false;
  int n = 1;
  std::vector<JobPrompt> prompts;
  std::optional<int64_t> max_tokens;
  bool has_seed = false;
  // The settings every sequence shares; prompt, seed, max_new_tokens and on_event are set per sequence.
  EngineRequest req;
};

// Checks the prompts (set before) against the context and copies the request's settings.
void fill_common(Job& job, const RequestCommon& rc, int64_t ctx) {
  for (const JobPrompt& p : job.prompts) {
    const int64_t n = int64_t(p.ids.size());
    if (n == 0) throw ApiError(400, "invalid_request_error", "the prompt is empty", p.param, "invalid_value");
    if (n >= ctx)
      throw ApiError(400, "invalid_request_error",
                     "This model's maximum context length is " + std::to_string(ctx) + " tokens. However, your prompt" +
                         (job.prompts.size() > 1 ? " " + p.param : std::string()) + " has " + std::to_string(n) +
                         " tokens, leaving no room for the completion.",
                     p.param, "context_length_exceeded");
  }
  job.stream = rc.stream;
  job.include_usage = rc.include_usage;
  job.n = rc.n;
  job.max_tokens = rc.max_tokens;
  job.has_seed = rc.has_seed;
  job.req.sampling = rc.sampling;
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

void set_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

// One choice being answered: its parser and logprobs and, when not streamed, its output so far.
struct Choice {
  Choice(const Job& job, const Tokenizer& tokenizer, int prompt)
      : prompt(prompt), parser(job.in_reasoning, job.parse_tools), lps(tokenizer, job.req.skip_special_tokens) {}
  int prompt;  // index in Job::prompts
  OutputParser parser;
  LogprobCollector lps;
  bool started = false;  // its first event came (it carries the prompt logprobs)
  bool done = false;
  OutputDelta message;       // chat
  std::string text;          // completions: echo, then the output
  std::string finish_reason;
  json logprobs;             // the whole list, once done
};

// The answer to one job: the events of its prompts x n sequences become chunks (streaming) or the
// choices of one response, and their usage is added up: each prompt counted once (its first
// choice's prompt and cached tokens), every choice's completion tokens (as OpenAI counts n > 1).
class Answer {
 public:
  Answer(Job job, const Tokenizer& tokenizer, std::string id, int64_t created, std::string model)
      : job_(std::move(job)), id_(std::move(id)), created_(created), model_(std::move(model)) {
    for (size_t p = 0; p < job_.prompts.size(); ++p)
      for (int i = 0; i < job_.n; ++i) choices_.push_back(std::make_unique<Choice>(job_, tokenizer, int(p)));
  }
  const Job& job() const { return job_; }
  bool all_done() const { return n_done_ == choices_.size(); }
  // A sequence ended in "error" or "cancelled": the request failed.
  const std::optional<EngineEvent>& failure() const { return failure_; }

  // Streaming: what opens the stream before any event: each chat choice's role chunk, each echo
  // (unless it waits for the prompt logprobs of its choice's first event).
  std::vector<json> opening() const {
    std::vector<json> out;
    for (size_t c = 0; c < choices_.size(); ++c) {
      const std::string& echo = job_.prompts[size_t(choices_[c]->prompt)].echo;
      if (job_.chat)
        out.push_back(
            chat_chunk(id_, created_, model_, OutputDelta{}, std::nullopt, true, job_.include_usage, nullptr, int(c)));
      else if (job_.echo && !echo.empty() && !job_.req.prompt_logprobs)
        out.push_back(text_chunk(id_, created_, model_, echo, std::nullopt, job_.include_usage, nullptr, int(c)));
    }
    return out;
  }

  // Takes an event of choice c; streaming (out set) appends the chunks it releases.
  void on_event(int c, const EngineEvent& e, std::vector<json>* out) {
    Choice& ch = *choices_[size_t(c)];
    const JobPrompt& prompt = job_.prompts[size_t(ch.prompt)];
    if (!ch.started) {
      ch.started = true;
      if (!out) ch.text = prompt.echo;
      if (job_.req.prompt_logprobs) {
        // Echo with logprobs: the prompt's entries (in the first event) before the generated ones. The
        // streamed echo waited for them (sent even when the prompt decodes to no text, for the entries).
        ch.lps.add_prompt(prompt.ids, e.prompt_logprobs, prompt.echo_lead, prompt.echo);
        if (out)
          out->push_back(text_chunk(id_, created_, model_, prompt.echo, std::nullopt, job_.include_usage,
                                    take_logprobs(ch), c));
      }
    }
    ch.lps.add(e.logprobs);
    if (job_.chat) {
      const OutputDelta d = ch.parser.push(e.text);
      if (!out)
        ch.message.append(d);
      else if (!d.empty())
        out->push_back(
            chat_chunk(id_, created_, model_, d, std::nullopt, false, job_.include_usage, take_logprobs(ch), c));
    } else if (!out) {
      ch.text += e.text;
    } else if (!e.text.empty()) {
      out->push_back(text_chunk(id_, created_, model_, e.text, std::nullopt, job_.include_usage, take_logprobs(ch), c));
    }
    if (!e.done) return;
    ch.done = true;
    ++n_done_;
    if (e.finish_reason == "error" || e.finish_reason == "cancelled") {
      if (!failure_ || (failure_->finish_reason == "cancelled" && e.finish_reason == "error")) failure_ = e;
      return;
    }
    usage_.completion_tokens += e.completion_tokens;
    if (c % job_.n == 0) {
      usage_.prompt_tokens += e.prompt_tokens;
      usage_.cached_prompt_tokens += e.cached_prompt_tokens;
    }
    ch.finish_reason = (job_.chat && ch.parser.saw_tool_calls()) ? "tool_calls"
                       : e.finish_reason == "length"              ? "length"
                                                                  : "stop";
    // Tokens whose text never reached a delta (markers, a stop string) ride on the last chunk.
    if (job_.chat) {
      const OutputDelta d = ch.parser.finish();
      if (!out) {
        ch.message.append(d);
      } else {
        if (!d.empty())
          out->push_back(
              chat_chunk(id_, created_, model_, d, std::nullopt, false, job_.include_usage, take_logprobs(ch), c));
        out->push_back(chat_chunk(id_, created_, model_, OutputDelta{}, ch.finish_reason, false, job_.include_usage,
                                  take_logprobs(ch), c));
      }
    } else if (out) {
      out->push_back(text_chunk(id_, created_, model_, "", ch.finish_reason, job_.include_usage, take_logprobs(ch), c));
    }
    if (!out) {
      ch.logprobs = take_logprobs(ch);
      // Requested but nothing generated (EOS first): an empty list, not null.
      if (job_.req.logprobs && ch.logprobs.is_null())
        ch.logprobs = job_.chat ? chat_logprobs({}) : completion_logprobs({});
    }
  }

  // The whole response, once all_done() without failure.
  json response() const {
    if (job_.chat) {
      std::vector<ChatChoice> cs;
      for (const auto& ch : choices_) cs.push_back({ch->message, ch->finish_reason, ch->logprobs});
      return chat_completion(id_, created_, model_, cs, usage_);
    }
    std::vector<TextChoice> cs;
    for (const auto& ch : choices_) cs.push_back({ch->text, ch->finish_reason, ch->logprobs});
    return text_completion(id_, created_, model_, cs, usage_);
  }
  json final_usage_chunk() const {
    return usage_chunk(id_, created_, model_, usage_, job_.chat ? Endpoint::kChat : Endpoint::kCompletion);
  }

 private:
  // The logprobs of the choice's tokens not yet sent: all of them for a whole response, or each
  // streamed chunk with those of the tokens that came before it (docs/server.md, "Logprobs").
  json take_logprobs(Choice& ch) const {
    if (!job_.req.logprobs || ch.lps.empty()) return nullptr;
    const std::vector<LogprobEntry> entries = ch.lps.take();
    return job_.chat ? chat_logprobs(entries) : completion_logprobs(entries);
  }

  const Job job_;
  std::string id_;
  int64_t created_;
  std::string model_;
  std::vector<std::unique_ptr<Choice>> choices_;  // prompt_index * n + i
  size_t n_done_ = 0;
  Usage usage_;
  std::optional<EngineEvent> failure_;
};

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

  // Submits a job's sequences (prompts x n, one engine group) and answers them, streamed or whole.
  auto serve_job = [this](Job job, httplib::Response& res) {
    const int64_t ctx = engine_.options().context_length;
    const int64_t k = int64_t(job.prompts.size()) * job.n;
    if (k > engine_.options().max_queue)
      throw ApiError(400, "invalid_request_error",
                     "the request asks for " + std::to_string(k) + " sequences (" + std::to_string(job.prompts.size()) +
                         " prompts x n=" + std::to_string(job.n) + "); this server queues at most " +
                         std::to_string(engine_.options().max_queue) + " (--max-queue)",
                     job.n > 1 ? "n" : "prompt", "invalid_value");
    auto ch = std::make_shared<Channel>();
    job.req.skip_special_tokens = !job.chat;  // chat output keeps the markers the parser needs
    // Choice i of every prompt samples with seed + i, so a seeded choice is reproducible and equals
    // the same prompt sent alone with that seed (docs/server.md).
    const uint64_t seed = job.has_seed ? job.req.sampling.seed
                                       : std::random_device{}() * 0x9E3779B97F4A7C15ull + uint64_t(now_seconds());
    std::vector<EngineRequest> reqs;
    for (size_t p = 0; p < job.prompts.size(); ++p)
      for (int i = 0; i < job.n; ++i) {
        EngineRequest r = job.req;
        const int64_t P = int64_t(job.prompts[p].ids.size());
        r.prompt = job.prompts[p].ids;
        r.sampling.seed = seed + uint64_t(i);
        r.max_new_tokens = std::min(job.max_tokens.value_or(ctx - P), ctx - P);
        const int c = int(p) * job.n + i;
        r.on_event = [ch, c](const EngineEvent& e) { ch->push(c, e); };
        reqs.push_back(std::move(r));
      }
    uint64_t id = 0;
    try {
      id = engine_.submit_group(std::move(reqs));
    } catch (const EngineBusy& e) {
      if (e.stopping) throw ApiError(503, "server_error", e.what(), {}, "server_shutting_down");
      throw ApiError(429, "rate_limit_error", e.what(), {}, "queue_full");
    } catch (const Error& e) {
      throw ApiError(400, "invalid_request_error", e.what());
    }
    const bool stream = job.stream;
    const std::string rid = random_id(job.chat ? "chatcmpl-" : "cmpl-");
    auto answer = std::make_shared<Answer>(std::move(job), tokenizer_, rid, now_seconds(), opts_.model_id);

    if (!stream) {
      while (!answer->all_done()) {
        std::optional<std::pair<int, EngineEvent>> e = ch->pop(std::chrono::milliseconds(1000));
        if (!e) continue;
        answer->on_event(e->first, e->second, nullptr);
        if (const auto& f = answer->failure()) {
          engine_.cancel(id);  // the others (the engine cancels them itself after an error)
          if (f->finish_reason == "error") throw ApiError(500, "server_error", "generation failed: " + f->error);
          throw ApiError(503, "server_error", "the request was cancelled", {}, "cancelled");
        }
      }
      set_json(res, 200, dump_json(answer->response()));
      return;
    }

    // Streaming: server-sent events, each chunk naming its choice. A failed write means the client
    // went away: every sequence of the request is cancelled and its KV blocks freed.
    struct StreamState {
      bool opened = false;
      bool finished = false;
    };
    auto st = std::make_shared<StreamState>();
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, ch, st, answer, id](size_t, httplib::DataSink& sink) {
          auto send = [&](const json& j) {
            const std::string ev = sse_event(j);
            return sink.write(ev.data(), ev.size());
          };
          auto end_stream = [&] {
            st->finished = true;
            const std::string done = sse_done();
            sink.write(done.data(), done.size());
            sink.done();
            return true;
          };
          if (!st->opened) {
            st->opened = true;
            for (const json& j : answer->opening())
              if (!send(j)) return false;
          }
          std::optional<std::pair<int, EngineEvent>> e = ch->pop(std::chrono::milliseconds(200));
          if (!e) return sink.is_writable();  // nothing yet; keep the connection unless it is gone
          std::vector<json> chunks;
          answer->on_event(e->first, e->second, &chunks);
          for (const json& j : chunks)
            if (!send(j)) return false;
          if (const auto& f = answer->failure()) {
            engine_.cancel(id);
            const std::string why = f->error.empty() ? f->finish_reason : f->error;
            send(json::parse(error_body(ApiError(500, "server_error", "generation failed: " + why))));
            return end_stream();
          }
          if (!answer->all_done()) return true;
          if (answer->job().include_usage) send(answer->final_usage_chunk());
          return end_stream();
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
    job.prompts.push_back({tokenizer_.encode(text, false), "messages", {}, 0});
    fill_common(job, cr, engine_.options().context_length);
    serve_job(std::move(job), res);
  }));

  s.Post("/v1/completions", guarded([this, check_model, serve_job](const httplib::Request& req, httplib::Response& res) {
    CompletionRequest cr = parse_completion_request(req.body);
    check_model(cr.model);
    Job job;
    job.chat = false;
    job.echo = cr.echo;
    for (const CompletionPrompt& cp : cr.prompts) {
      JobPrompt p;
      p.param = cp.param;
      if (cp.tokens.empty()) {
        p.ids = tokenizer_.encode(cp.text, true);  // BOS as `dseek generate` and HF encode add it
      } else {
        p.ids = cp.tokens;
        for (size_t i = 0; i < p.ids.size(); ++i)
          if (p.ids[i] < 0 || size_t(p.ids[i]) >= tokenizer_.vocab_size()) {
            const std::string at = cp.param + "[" + std::to_string(i) + "]";
            throw ApiError(400, "invalid_request_error",
                           "prompt token " + std::to_string(p.ids[i]) + " at '" + at + "' is outside the vocabulary",
                           at, "invalid_value");
          }
      }
      if (cr.echo) p.echo = cp.tokens.empty() ? cp.text : tokenizer_.decode(p.ids, false);
      // The special tokens encode() added to a text prompt (BOS) are not in the echoed text.
      if (cr.echo && cr.logprobs && cp.tokens.empty())
        p.echo_lead = int64_t(p.ids.size() - tokenizer_.encode(cp.text, false).size());
      job.prompts.push_back(std::move(p));
    }
    fill_common(job, cr, engine_.options().context_length);
    job.req.prompt_logprobs = cr.echo && cr.logprobs;
    serve_job(std::move(job), res);
  }));
}

}  // namespace dseek::server
