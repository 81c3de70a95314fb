// n choices and prompt arrays through the whole server, in process (issue 8): an HttpServer over an
// Engine with the embedded demo model. Each choice must be what the same prompt gives when sent
// alone (greedy, or seeded with seed + i), streamed chunks must add up to the whole response, the
// prompt's blocks must be shared, and whatever goes wrong must end every sequence of the request.
#include <httplib.h>

#include <gtest/gtest.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/live_server.h"
#include "dseek/server/openai_request.h"

namespace dseek::server {
namespace {

using Json = nlohmann::json;

const std::string kDemo = std::string(DSEEK_SOURCE_DIR) + "/models/brown-demo";
constexpr double kLogprobTol = 1e-4;  // two runs of the batched forward: float rounding only
const char* kTemplate =
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

class ServeChoices : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LoadOptions lo;
    lo.load_mtp = true;  // for the speculative server; the plain ones ignore it
    model_ = new Model(Model::load(kDemo, lo));
    tokenizer_ = new Tokenizer(Tokenizer::load(kDemo));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
  }
  static Json ok(LiveServer& s, const std::string& path, const Json& body) {
    const auto [status, text] = s.post(path, body);
    EXPECT_EQ(status, 200) << body.dump() << " -> " << text;
    return status == 200 ? Json::parse(text) : Json::object();
  }
  // Streamed choices put back together: per index, the text (completions) or content (chat), the
  // finish_reason, and how many chunks opened with the assistant role; plus the usage chunk.
  struct Streamed {
    std::map<int, std::string> text;
    std::map<int, std::string> finish;
    std::map<int, int> roles;
    Json usage;
  };
  static Streamed collect(const std::vector<Json>& chunks) {
    Streamed out;
    for (const Json& c : chunks) {
      if (c.contains("usage") && !c["usage"].is_null()) out.usage = c["usage"];
      for (const Json& ch : c["choices"]) {
        EXPECT_EQ(c["choices"].size(), 1u) << "one choice per chunk";
        const int i = ch["index"].get<int>();
        if (ch.contains("text")) out.text[i] += ch["text"].get<std::string>();
        if (ch.contains("delta")) {
          const Json& d = ch["delta"];
          if (d.contains("role")) ++out.roles[i];
          if (d.contains("content") && d["content"].is_string()) out.text[i] += d["content"].get<std::string>();
        }
        if (!ch["finish_reason"].is_null()) {
          EXPECT_EQ(out.finish.count(i), 0u) << "one finish per choice";
          out.finish[i] = ch["finish_reason"].get<std::string>();
        }
      }
    }
    return out;
  }
  static Model* model_;
  static Tokenizer* tokenizer_;
};
Model* ServeChoices::model_ = nullptr;
Tokenizer* ServeChoices::tokenizer_ = nullptr;

// Greedy n: every choice is the single request's message; usage counts the prompt once; the
// followers take the prompt's full blocks from the prefix cache.
TEST_F(ServeChoices, ChatGreedyChoicesEqualTheSingleRequest) {
  LiveServer s(*model_, *tokenizer_, kTemplate, false);
  const Json messages = Json::array({{{"role", "user"}, {"content", "The Fulton County Grand Jury said Friday"}}});
  const Json one = {{"messages", messages}, {"max_tokens", 16}, {"temperature", 0}};
  const Json single = ok(s, "/v1/chat/completions", one);
  ASSERT_EQ(single["choices"].size(), 1u);
  const std::string want = single["choices"][0]["message"]["content"];
  ASSERT_FALSE(want.empty());
  const int64_t P = single["usage"]["prompt_tokens"], C = single["usage"]["completion_tokens"];

  Json body = one;
  body["n"] = 3;
  const auto before = s.metrics();
  const Json r = ok(s, "/v1/chat/completions", body);
  const auto after = s.metrics();
  ASSERT_EQ(r["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r["choices"][i]["index"], i);
    EXPECT_EQ(r["choices"][i]["message"]["content"], want) << i;
    EXPECT_EQ(r["choices"][i]["finish_reason"], single["choices"][0]["finish_reason"]) << i;
  }
  EXPECT_EQ(r["usage"]["prompt_tokens"], P) << "the prompt counts once";
  EXPECT_EQ(r["usage"]["completion_tokens"], 3 * C);
  EXPECT_EQ(r["usage"]["total_tokens"], P + 3 * C);
  // The single request left the prompt in the cache; the choices' followers then reuse their
  // leader's blocks too. Every full block before the last prompt token, for each of the three.
  const double hit = after.at("dseek_prefix_cache_hit_tokens_total") - before.at("dseek_prefix_cache_hit_tokens_total");
  EXPECT_GE(hit, 3.0 * double((P - 1) / 8 * 8));
  EXPECT_EQ(after.at("dseek_requests_total{state=\"finished\"}") - before.at("dseek_requests_total{state=\"finished\"}"), 3);

  // Streamed: a role chunk and a finish per choice, the same texts, one usage chunk at the end.
  body["stream_options"] = {{"include_usage", true}};
  const Streamed st = collect(s.stream("/v1/chat/completions", body));
  ASSERT_EQ(st.text.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(st.text.at(i), want) << i;
    EXPECT_EQ(st.roles.at(i), 1) << i;
    EXPECT_EQ(st.finish.at(i), single["choices"][0]["finish_reason"]) << i;
  }
  EXPECT_EQ(st.usage["prompt_tokens"], P);
  EXPECT_EQ(st.usage["completion_tokens"], 3 * C);
  // The statistics are written after the step whose events ended the stream.
  for (int i = 0; i < 200 && s.engine->stats().kv_blocks_used != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(s.engine->stats().kv_blocks_used, 0);
}

// A prompt array: one choice per prompt (times n, index prompt * n + i), each what the prompt gives
// alone, as text or as token ids, whole or streamed.
TEST_F(ServeChoices, CompletionPromptArrayEqualsEachPromptAlone) {
  LiveServer s(*model_, *tokenizer_, kTemplate, false);
  const std::vector<std::string> prompts = {"The jury said", "In the morning the committee", "She looked at him and"};
  std::vector<std::string> alone;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (const std::string& p : prompts) {
    const Json r = ok(s, "/v1/completions", {{"prompt", p}, {"max_tokens", 12}, {"temperature", 0}});
    alone.push_back(r["choices"][0]["text"]);
    prompt_tokens += r["usage"]["prompt_tokens"].get<int64_t>();
    completion_tokens += r["usage"]["completion_tokens"].get<int64_t>();
  }
  Json ids = Json::array();
  for (const std::string& p : prompts) ids.push_back(tokenizer_->encode(p, true));
  for (const Json& prompt : {Json(prompts), ids}) {
    const Json body = {{"prompt", prompt}, {"n", 2}, {"max_tokens", 12}, {"temperature", 0}};
    const Json r = ok(s, "/v1/completions", body);
    ASSERT_EQ(r["choices"].size(), 6u) << r.dump();
    for (size_t c = 0; c < 6; ++c) {
      EXPECT_EQ(r["choices"][c]["index"], c);
      EXPECT_EQ(r["choices"][c]["text"], alone[c / 2]) << "choice " << c << " of " << prompt.dump();
    }
    EXPECT_EQ(r["usage"]["prompt_tokens"], prompt_tokens) << "each prompt once";
    EXPECT_EQ(r["usage"]["completion_tokens"], 2 * completion_tokens);
    const Streamed st = collect(s.stream("/v1/completions", body));
    ASSERT_EQ(st.text.size(), 6u);
    for (int c = 0; c < 6; ++c) {
      EXPECT_EQ(st.text.at(c), alone[size_t(c) / 2]) << c;
      EXPECT_EQ(st.finish.at(c), "length") << c;
    }
  }
}

// With MTP speculative decoding the followers' blocks (main and MTP rows) come from the cache too,
// and greedy choices are still the plain server's single output.
TEST_F(ServeChoices, SpeculativeChoicesEqualThePlainOutput) {
  LiveServer plain(*model_, *tokenizer_, kTemplate, false);
  LiveServer spec(*model_, *tokenizer_, kTemplate, true);
  const std::string prompt = "The Fulton County Grand Jury said Friday an";
  const Json one = {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}};
  const std::string want = ok(plain, "/v1/completions", one)["choices"][0]["text"];
  Json body = one;
  body["n"] = 3;
  const Json r = ok(spec, "/v1/completions", body);
  ASSERT_EQ(r["choices"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(r["choices"][i]["text"], want) << i;
  const EngineStats st = spec.engine->stats();
  EXPECT_GE(st.prefix_hit_tokens, 2 * (int64_t(prompt.size() - 1) / 8 * 8));
  EXPECT_GT(st.mtp_accepted, 0);
}

// echo and logprobs per prompt: each choice carries its own prompt's echo and prompt logprobs (the
// n choices of a prompt share one computation of them), as the prompt alone does.
TEST_F(ServeChoices, CompletionPromptArrayEchoAndLogprobs) {
  LiveServer s(*model_, *tokenizer_, kTemplate, false);
  const std::vector<std::string> prompts = {"The jury said that the city", "In the morning"};
  const Json base = {{"echo", true}, {"logprobs", 2}, {"max_tokens", 5}, {"temperature", 0}};
  std::vector<Json> alone;
  for (const std::string& p : prompts) {
    Json b = base;
    b["prompt"] = p;
    alone.push_back(ok(s, "/v1/completions", b)["choices"][0]);
  }
  Json body = base;
  body["prompt"] = prompts;
  body["n"] = 2;
  for (const bool stream : {false, true}) {
    std::vector<Json> choices(4);
    if (!stream) {
      const Json r = ok(s, "/v1/completions", body);
      ASSERT_EQ(r["choices"].size(), 4u);
      for (size_t c = 0; c < 4; ++c) choices[c] = r["choices"][c];
    } else {
      // Put each choice's text and legacy lists back together from its chunks.
      for (Json& c : choices) c = {{"text", ""}, {"logprobs", {{"tokens", Json::array()}, {"token_logprobs", Json::array()},
                                                               {"text_offset", Json::array()}}}};
      for (const Json& chunk : s.stream("/v1/completions", body)) {
        const Json& ch = chunk["choices"][0];
        Json& c = choices[ch["index"].get<size_t>()];
        c["text"] = c["text"].get<std::string>() + ch["text"].get<std::string>();
        if (ch["logprobs"].is_null()) continue;
        for (const char* k : {"tokens", "token_logprobs", "text_offset"})
          for (const Json& x : ch["logprobs"][k]) c["logprobs"][k].push_back(x);
      }
    }
    for (size_t c = 0; c < 4; ++c) {
      const Json& want = alone[c / 2];
      const std::string what = "choice " + std::to_string(c) + (stream ? " streamed" : "");
      EXPECT_EQ(choices[c]["text"], want["text"]) << what;
      EXPECT_EQ(choices[c]["text"].get<std::string>().rfind(prompts[c / 2], 0), 0u) << what << ": echo first";
      const Json& lp = choices[c]["logprobs"];
      EXPECT_EQ(lp["tokens"], want["logprobs"]["tokens"]) << what;
      EXPECT_EQ(lp["text_offset"], want["logprobs"]["text_offset"]) << what;
      ASSERT_EQ(lp["token_logprobs"].size(), want["logprobs"]["token_logprobs"].size()) << what;
      EXPECT_EQ(lp["token_logprobs"][0], nullptr) << what;
      for (size_t j = 1; j < lp["token_logprobs"].size(); ++j)
        EXPECT_NEAR(lp["token_logprobs"][j].get<double>(), want["logprobs"]["token_logprobs"][j].get<double>(),
                    kLogprobTol)
            << what << " " << j;
    }
  }
}

// Seeded sampling: choice i samples with seed + i, so the choices differ from each other, the same
// request gives the same choices, and choice i equals the prompt alone with seed + i.
TEST_F(ServeChoices, SeededChoicesDifferAndAreReproducible) {
  LiveServer s(*model_, *tokenizer_, kTemplate, false);
  const Json body = {{"prompt", "The jury said"}, {"n", 4}, {"max_tokens", 24}, {"temperature", 1}, {"seed", 42}};
  const Json a = ok(s, "/v1/completions", body), b = ok(s, "/v1/completions", body);
  ASSERT_EQ(a["choices"].size(), 4u);
  std::set<std::string> distinct;
  for (size_t i = 0; i < 4; ++i) {
    distinct.insert(a["choices"][i]["text"].get<std::string>());
    EXPECT_EQ(a["choices"][i]["text"], b["choices"][i]["text"]) << i;
    Json one = body;
    one.erase("n");
    one["seed"] = 42 + int(i);
    EXPECT_EQ(ok(s, "/v1/completions", one)["choices"][0]["text"], a["choices"][i]["text"]) << i;
  }
  EXPECT_EQ(distinct.size(), 4u) << a.dump();
  // In a prompt array, each prompt's choice 0 is the prompt alone with the seed itself.
  Json arr = body;
  arr["prompt"] = {"In the morning", "The jury said"};
  arr["n"] = 2;
  const Json r = ok(s, "/v1/completions", arr);
  ASSERT_EQ(r["choices"].size(), 4u);
  EXPECT_EQ(r["choices"][2]["text"], a["choices"][0]["text"]);
  EXPECT_EQ(r["choices"][3]["text"], a["choices"][1]["text"]);
  // Chat too.
  const Json chat = {{"messages", Json::array({{{"role", "user"}, {"content", "Hello"}}})}, {"n", 3},
                     {"max_tokens", 16}, {"temperature", 1}, {"seed", 7}};
  const Json c1 = ok(s, "/v1/chat/completions", chat), c2 = ok(s, "/v1/chat/completions", chat);
  ASSERT_EQ(c1["choices"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(c1["choices"][i]["message"], c2["choices"][i]["message"]) << i;
  EXPECT_NE(c1["choices"][0]["message"]["content"], c1["choices"][1]["message"]["content"]);
}

TEST_F(ServeChoices, BadChoiceRequestsAnswer400NamingTheField) {
  EngineOptions o = LiveServer::default_options(false);
  o.max_queue = 8;
  LiveServer s(*model_, *tokenizer_, kTemplate, o);
  const Json messages = Json::array({{{"role", "user"}, {"content", "Hi"}}});
  std::vector<std::string> many(size_t(kMaxPrompts) + 1, "x");
  struct Case {
    std::string path;
    Json body;
    std::string param;
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions", {{"messages", messages}, {"n", 17}}, "n"},
      {"/v1/chat/completions", {{"messages", messages}, {"n", 0}}, "n"},
      {"/v1/completions", {{"prompt", "x"}, {"n", "2"}}, "n"},
      {"/v1/completions", {{"prompt", {"a", 1}}}, "prompt[1]"},
      {"/v1/completions", {{"prompt", {Json::array({1, 2}), "a"}}}, "prompt[1]"},
      {"/v1/completions", {{"prompt", {"a", "b", ""}}}, "prompt[2]"},
      {"/v1/completions", {{"prompt", {Json::array({1}), Json::array()}}}, "prompt[1]"},
      {"/v1/completions", {{"prompt", {Json::array({65}), Json::array({65, 1 << 20})}}}, "prompt[1][1]"},
      {"/v1/completions", {{"prompt", many}}, "prompt"},
      // More sequences than this server ever queues (--max-queue 8).
      {"/v1/completions", {{"prompt", "x"}, {"n", 9}}, "n"},
      {"/v1/completions", {{"prompt", {"a", "b", "c", "d", "e", "f", "g", "h", "i"}}}, "prompt"},
  };
  for (const Case& c : cases) {
    const auto [status, text] = s.post(c.path, c.body);
    EXPECT_EQ(status, 400) << c.body.dump();
    const Json e = Json::parse(text)["error"];
    EXPECT_EQ(e["type"], "invalid_request_error");
    EXPECT_EQ(e["param"], c.param) << c.body.dump() << " -> " << e.dump();
    EXPECT_NE(e["message"].get<std::string>().find(c.param), std::string::npos) << e.dump();
  }
  // A prompt of an array too long for the context names itself.
  const auto [status, text] = s.post("/v1/completions", {{"prompt", {"a", std::string(300, 'x')}}});
  EXPECT_EQ(status, 400);
  const Json e = Json::parse(text)["error"];
  EXPECT_EQ(e["code"], "context_length_exceeded");
  EXPECT_EQ(e["param"], "prompt[1]");
  EXPECT_EQ(s.engine->stats().requests_submitted, 0) << "nothing of a refused request reached the engine";
}

// A full queue: a request of k sequences (n choices, a prompt array) that does not fit whole is
// refused with 429 and an OpenAI error object, at once and with none of its sequences queued, even
// when a single request still fits; a request of exactly --max-queue sequences is refused the same
// way (429, not the 400 for more than the queue ever holds). The engine thread is held still in the
// running sequence's event callback, so what the queue holds is known exactly, and every request
// the engine took would go unanswered: an answer proves the refusal did not wait for the engine.
TEST_F(ServeChoices, FullQueueRefusesTheWholeGroupWith429) {
  EngineOptions o = LiveServer::default_options(false);
  o.max_batch = 1;
  o.max_queue = 3;
  LiveServer s(*model_, *tokenizer_, kTemplate, o);
  s.client->set_read_timeout(10, 0);  // a request the frozen engine took would never be answered
  // The first filler's callback lets `allowed` events pass, then waits (on the engine thread).
  struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    int allowed = 1, arrived = 0;
    void open() {
      {
        std::lock_guard lk(mu);
        allowed = INT_MAX;
      }
      cv.notify_all();
    }
  };
  auto gate = std::make_shared<Gate>();
  // Opens the gate on every way out (a failed ASSERT included), before the server shuts down.
  struct Opener {
    std::shared_ptr<Gate> g;
    ~Opener() { g->open(); }
  } opener{gate};
  auto filler = [&](bool gated) {
    EngineRequest r;
    r.prompt = tokenizer_->encode("The jury said", true);
    r.max_new_tokens = 200;
    r.stop_at_eos = false;
    r.on_event = [](const EngineEvent&) {};
    if (gated)
      r.on_event = [gate](const EngineEvent& e) {
        if (e.done) return;
        std::unique_lock lk(gate->mu);
        ++gate->arrived;
        gate->cv.notify_all();
        gate->cv.wait(lk, [&] { return gate->arrived <= gate->allowed; });
      };
    return r;
  };
  // One running (max_batch 1) and two waiting: one place of three is free. The first filler's
  // second event comes in the step after the one that admitted it, whose end counted the queue.
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(s.engine->submit(filler(i == 0)));
  {
    std::unique_lock lk(gate->mu);
    ASSERT_TRUE(gate->cv.wait_for(lk, std::chrono::seconds(60), [&] { return gate->arrived == 2; }));
  }
  const EngineStats before = s.engine->stats();
  ASSERT_EQ(before.requests_submitted, 3);
  ASSERT_EQ(before.requests_finished, 0);

  const Json messages = Json::array({{{"role", "user"}, {"content", "Hi"}}});
  struct Case {
    std::string path;
    Json body;
    int k;  // sequences
  };
  const std::vector<Case> cases = {
      {"/v1/completions", {{"prompt", "The jury said"}, {"n", 2}, {"max_tokens", 5}}, 2},
      {"/v1/completions", {{"prompt", {"The jury said", "In the morning"}}, {"max_tokens", 5}}, 2},
      {"/v1/completions", {{"prompt", "x"}, {"n", 2}, {"max_tokens", 5}, {"stream", true}}, 2},
      {"/v1/chat/completions", {{"messages", messages}, {"n", 2}, {"max_tokens", 5}}, 2},
      {"/v1/chat/completions", {{"messages", messages}, {"n", 2}, {"max_tokens", 5}, {"stream", true}}, 2},
      {"/v1/completions", {{"prompt", "x"}, {"n", 3}, {"max_tokens", 5}}, 3},  // = --max-queue
  };
  int64_t refused = 0;
  for (const Case& c : cases) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto [status, text] = s.post(c.path, c.body);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(status, 429) << c.body.dump() << " -> " << text;
    EXPECT_LT(secs, 10.0) << c.body.dump();
    const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.contains("error")) << text;
    const Json& e = j["error"];
    EXPECT_EQ(e["type"], "rate_limit_error") << text;
    EXPECT_EQ(e["code"], "queue_full") << text;
    EXPECT_TRUE(e.contains("param")) << text;
    EXPECT_NE(e["message"].get<std::string>().find(std::to_string(c.k) + " sequences"), std::string::npos) << text;
    refused += c.k;
  }
  EngineStats st = s.engine->stats();
  EXPECT_EQ(st.requests_submitted, 3) << "nothing of a refused group reached the queue";
  EXPECT_EQ(st.requests_rejected, refused) << "every sequence of a refused group counts";

  // The free place takes one sequence; after that a single request is refused the same way.
  ids.push_back(s.engine->submit(filler(false)));
  const auto [status, text] = s.post("/v1/completions", {{"prompt", "The jury said"}, {"max_tokens", 5}});
  EXPECT_EQ(status, 429) << text;
  EXPECT_EQ(Json::parse(text)["error"]["type"], "rate_limit_error");

  // Let the engine go and cancel the fillers: only they ever ran, and every block comes back.
  gate->open();
  for (uint64_t id : ids) s.engine->cancel(id);
  for (int i = 0; i < 500; ++i) {
    st = s.engine->stats();
    if (st.requests_finished == 4 && st.running + st.waiting == 0 && st.kv_blocks_used == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(st.requests_submitted, 4);
  EXPECT_EQ(st.requests_finished, 4);
  EXPECT_EQ(st.requests_cancelled, 4);
  EXPECT_EQ(st.running + st.waiting, 0);
  EXPECT_EQ(st.kv_blocks_used, 0);
}

// A client that goes away mid-stream cancels every sequence of its request and frees their blocks.
TEST_F(ServeChoices, DisconnectCancelsEveryChoice) {
  LiveServer s(*model_, *tokenizer_, kTemplate, false);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = {{"Content-Type", "application/json"}};
  req.body = Json{{"prompt", {"The jury said", "In the morning"}}, {"n", 2}, {"max_tokens", 200},
                  {"temperature", 0.8}, {"stream", true}}
                 .dump();
  int pieces = 0;
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++pieces < 4; };
  (void)s.client->send(req);  // fails: the receiver stopped reading
  EXPECT_GE(pieces, 4);
  for (int i = 0; i < 500; ++i) {
    const EngineStats st = s.engine->stats();
    if (st.requests_cancelled == 4 && st.kv_blocks_used == 0 && st.running == 0 && st.waiting == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const EngineStats st = s.engine->stats();
  EXPECT_EQ(st.requests_cancelled, 4);
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_EQ(st.running + st.waiting, 0);
  EXPECT_LT(st.generated_tokens, 4 * 200);
}

}  // namespace
}  // namespace dseek::server
