// dseek serve end to end, driven by the official `openai` npm client and by curl.
// Models: the embedded demo model (byte-level tokenizer, writes English) and, for chat, a tiny
// random-weight DeepSeek-V3 built here with `dseek init` and the real DeepSeek-V3 tokenizer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';

const BIN = process.env.DSEEK_BIN;
const SRC = process.env.DSEEK_SOURCE_DIR;
const SHARED = process.env.DSEEK_SHARED_DIR;
const DEMO = path.join(SRC, 'models/brown-demo');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dseek-e2e-'));
const servers = [];

// Starts `dseek serve` on a free port; resolves once it prints its address.
function serve(model, extra = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['serve', '--model', model, '--port', '0', '--no-warm', '-t', '1', '--kv-cache-gb', '0.25', ...extra],
                       { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const timer = setTimeout(() => reject(new Error('server did not start:\n' + log)), 30000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/serving '([^']+)' on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && !proc.started) {
        proc.started = true;
        clearTimeout(timer);
        const s = { proc, model: m[1], url: `http://127.0.0.1:${m[2]}`, log: () => log };
        s.exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
        servers.push(s);
        resolve(s);
      }
    });
    proc.on('exit', (code) => { if (!proc.started) { clearTimeout(timer); reject(new Error(`server exited ${code}:\n${log}`)); } });
  });
}

function curl(args) {
  // -w appends the status on its own line after the body.
  const out = execFileSync('curl', ['-s', '-w', '\n%{http_code}', ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const i = out.lastIndexOf('\n');
  return { status: Number(out.slice(i + 1)), body: out.slice(0, i) };
}

async function metrics(s) {
  const text = await (await fetch(s.url + '/metrics')).text();
  const m = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [k, v] = line.split(' ');
    m[k] = Number(v);
  }
  return m;
}

async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let demo, demoClient, tiny, tinyR1;

before(async () => {
  demo = await serve(DEMO, ['--api-key', 'sk-test', '--max-body-mb', '0.05']);
  demoClient = new OpenAI({ baseURL: demo.url + '/v1', apiKey: 'sk-test', maxRetries: 0 });
  // A tiny DeepSeek-V3 (golden v3 shapes) with the real tokenizer and chat template; a second copy
  // whose template opens <think> after the assistant tag, as DeepSeek-R1's does.
  const cfg = JSON.parse(fs.readFileSync(path.join(SHARED, 'golden/model/v3/config.json'), 'utf8'));
  cfg.vocab_size = 129280;
  const cfgPath = path.join(work, 'tiny.json');
  fs.writeFileSync(cfgPath, JSON.stringify(cfg));
  const dir = path.join(work, 'tiny-v3');
  execFileSync(BIN, ['init', '--config', cfgPath, '--out', dir, '--seed', '7', '--dtype', 'bf16', '--std', '0.1'], { stdio: 'ignore' });
  const tok = path.join(SHARED, 'data/tokenizers/deepseek-v3');
  fs.copyFileSync(path.join(tok, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  fs.copyFileSync(path.join(tok, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  const r1 = path.join(work, 'tiny-r1');
  fs.mkdirSync(r1);
  for (const f of fs.readdirSync(dir)) fs.copyFileSync(path.join(dir, f), path.join(r1, f));
  const tc = JSON.parse(fs.readFileSync(path.join(tok, 'tokenizer_config.json'), 'utf8'));
  const opener = "{{'<｜Assistant｜>'}}{% endif %}";
  assert.ok(tc.chat_template.endsWith(opener), 'the V3 template ends with the assistant opener');
  tc.chat_template = tc.chat_template.slice(0, -opener.length) + "{{'<｜Assistant｜><think>\\n'}}{% endif %}";
  fs.writeFileSync(path.join(r1, 'tokenizer_config.json'), JSON.stringify(tc));
  tiny = await serve(dir);
  tinyR1 = await serve(r1);
});

after(async () => {
  for (const s of servers) if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
  fs.rmSync(work, { recursive: true, force: true });
});

test('GET /health and /v1/models', async () => {
  assert.deepEqual(await (await fetch(demo.url + '/health')).json(), { status: 'ok' });
  const models = await demoClient.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['brown-demo']);
});

test('greedy completion through the server equals `dseek generate`', async () => {
  const prompt = 'The jury said';
  const out = execFileSync(BIN, ['generate', '--model', DEMO, '--prompt', prompt, '-n', '40', '--no-warm', '-t', '1'],
                           { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const expected = out.slice(prompt.length, -1);  // generate echoes the prompt and ends with a newline
  const r = await demoClient.completions.create({ model: 'brown-demo', prompt, max_tokens: 40, temperature: 0 });
  assert.equal(r.choices[0].text, expected);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 40);
  assert.equal(r.usage.prompt_tokens, prompt.length);  // byte-level tokenizer, no BOS

  const stream = await demoClient.completions.create({ model: 'brown-demo', prompt, max_tokens: 40, temperature: 0,
                                                        stream: true, stream_options: { include_usage: true } });
  let text = '', chunks = 0, usage = null, finish = null;
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
    if (c.choices.length) { text += c.choices[0].text; chunks++; finish = c.choices[0].finish_reason ?? finish; }
  }
  assert.equal(text, expected);
  assert.ok(chunks > 10, 'streamed in pieces');
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 40);
});

test('stop strings and seeded sampling', async () => {
  const base = { model: 'brown-demo', prompt: 'The jury said', max_tokens: 40, temperature: 0 };
  const full = (await demoClient.completions.create(base)).choices[0].text;
  const stop = full.slice(10, 13);
  const r = await demoClient.completions.create({ ...base, stop: [stop] });
  assert.equal(r.choices[0].text, full.slice(0, full.indexOf(stop)));
  assert.equal(r.choices[0].finish_reason, 'stop');
  const s = { ...base, temperature: 0.9, seed: 123 };
  const a = await demoClient.completions.create(s), b = await demoClient.completions.create(s);
  assert.equal(a.choices[0].text, b.choices[0].text, 'same seed, same text');
});

test('n=2 choices and a prompt array: each choice is what its prompt gives alone', async () => {
  const base = { model: 'brown-demo', max_tokens: 16, temperature: 0 };
  const alone = [];
  for (const prompt of ['The jury said', 'In the morning the'])
    alone.push((await demoClient.completions.create({ ...base, prompt })).choices[0].text);
  const r = await demoClient.completions.create({ ...base, prompt: ['The jury said', 'In the morning the'], n: 2 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.deepEqual(r.choices.map((c) => c.text), [alone[0], alone[0], alone[1], alone[1]]);
  assert.equal(r.usage.prompt_tokens, 'The jury said'.length + 'In the morning the'.length, 'each prompt once');
  assert.equal(r.usage.completion_tokens, 4 * 16);
  // Streamed, seeded: chunks name their choice; the choices differ and repeat with the seed.
  const seeded = { ...base, prompt: 'The jury said', n: 2, temperature: 1, seed: 5, stream: true };
  const run = async () => {
    const texts = ['', ''];
    for await (const c of await demoClient.completions.create(seeded)) for (const ch of c.choices) texts[ch.index] += ch.text;
    return texts;
  };
  const a = await run(), b = await run();
  assert.deepEqual(a, b, 'same seed, same choices');
  assert.notEqual(a[0], a[1], 'choice i samples with seed + i');
});

test('overlapping requests sharing a prefix reuse its blocks and give the same outputs', async () => {
  const system = 'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced no evidence that any irregularities took place. ';
  const prompts = ['The jury further said', 'It recommended that', 'The September-October term jury', 'Only a relative handful'].map((p) => system + p);
  const req = (prompt) => demoClient.completions.create({ model: 'brown-demo', prompt, max_tokens: 24, temperature: 0 });
  const alone = [];
  for (const p of prompts) alone.push((await req(p)).choices[0].text);  // one at a time
  const before = await metrics(demo);
  const together = (await Promise.all(prompts.map(req))).map((r) => r.choices[0].text);
  const after = await metrics(demo);
  assert.deepEqual(together, alone);
  const hit = after.dseek_prefix_cache_hit_tokens_total - before.dseek_prefix_cache_hit_tokens_total;
  assert.ok(hit >= 4 * 128, `prefix blocks reused (${hit} tokens served from the cache)`);
  assert.ok(after['dseek_batch_size_mean'] > 1 || after.dseek_step_sequences_total - before.dseek_step_sequences_total >
            after.dseek_steps_total - before.dseek_steps_total, 'the overlapping requests shared steps');
});

test('a client that disconnects mid-stream cancels its sequence and frees its blocks', async () => {
  const before = await metrics(demo);
  const ac = new AbortController();
  const stream = await demoClient.completions.create({ model: 'brown-demo', prompt: 'The jury said', max_tokens: 900,
                                                        temperature: 0.8, stream: true }, { signal: ac.signal });
  let n = 0;
  try {
    for await (const _ of stream) if (++n === 3) ac.abort();
  } catch (e) {
    assert.ok(/abort/i.test(String(e.name) + String(e.message)), String(e));
  }
  await until('the cancel', async () => {
    const m = await metrics(demo);
    return m['dseek_requests_total{state="cancelled"}'] === before['dseek_requests_total{state="cancelled"}'] + 1 &&
           m.dseek_kv_blocks_used === 0 && m.dseek_running_sequences === 0;
  });
});

test('error paths answer OpenAI error objects with the right status', async () => {
  const url = demo.url + '/v1/completions';
  const auth = ['-H', 'Authorization: Bearer sk-test', '-H', 'Content-Type: application/json'];
  const check = (r, status, field) => {
    assert.equal(r.status, status, r.body);
    const e = JSON.parse(r.body).error;
    assert.equal(typeof e.message, 'string');
    assert.equal(typeof e.type, 'string');
    if (field) assert.equal(e.param, field, r.body);
    return e;
  };
  check(curl([url, ...auth, '-d', '{"prompt": "x", ']), 400);
  check(curl([url, ...auth, '-d', '{"prompt": "x", "temperature": "hot"}']), 400, 'temperature');
  check(curl([url, ...auth, '-d', '{"prompt": 5}']), 400, 'prompt');
  check(curl([url, ...auth, '-d', '{"prompt": "x", "n": 17}']), 400, 'n');
  check(curl([url, ...auth, '-d', '{"prompt": ["a", ""]}']), 400, 'prompt[1]');
  check(curl([url, ...auth, '-d', '{"prompt": "x", "max_tokens": 0}']), 400, 'max_tokens');
  assert.equal(check(curl([url, ...auth, '-d', '{"model": "gpt-4", "prompt": "x"}']), 404, 'model').code, 'model_not_found');
  assert.equal(check(curl([url, ...auth, '-d', JSON.stringify({ prompt: 'word '.repeat(300) })]), 400).code,
               'context_length_exceeded');
  assert.equal(check(curl([url, '-d', '{"prompt": "x"}']), 401).code, 'invalid_api_key');
  check(curl([demo.url + '/v1/nothing', ...auth]), 404);
  assert.equal(check(curl([demo.url + '/v1/chat/completions', ...auth, '-d', '{"messages":[{"role":"user","content":"hi"}]}']),
                     400).code, 'no_chat_template');
  // Body limit (this server: --max-body-mb 0.05).
  check(curl([url, ...auth, '--data-binary', JSON.stringify({ prompt: 'x'.repeat(100000) })]), 413);
  await assert.rejects(demoClient.chat.completions.create({ model: 'brown-demo', messages: [{ role: 'user', content: 'hi' }] }),
                       (e) => e.status === 400);
  // The server is still healthy.
  assert.equal((await fetch(demo.url + '/health')).status, 200);
  assert.equal((await metrics(demo))['dseek_http_responses_total{code="5xx"}'], 0);
});

test('chat completions: message, streaming deltas and usage', async () => {
  const client = new OpenAI({ baseURL: tiny.url + '/v1', apiKey: 'none', maxRetries: 0 });
  const body = { model: tiny.model, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }],
                 max_tokens: 12, temperature: 0 };
  const r = await client.chat.completions.create(body);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['length', 'stop'].includes(r.choices[0].finish_reason));
  // BOS + system + <｜User｜> + "Hello!" + <｜Assistant｜>: rendered by the checkpoint's template.
  assert.ok(r.usage.prompt_tokens > 4 && r.usage.prompt_tokens < 20, String(r.usage.prompt_tokens));
  const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  let content = '', role = null, usage = null;
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
    if (!c.choices.length) continue;
    role = role ?? c.choices[0].delta.role;
    content += c.choices[0].delta.content ?? '';
  }
  assert.equal(role, 'assistant');
  assert.equal(content, r.choices[0].message.content);
  assert.equal(usage.completion_tokens, r.usage.completion_tokens);
  // The same conversation again: its prompt blocks come from the prefix cache.
  const again = await client.chat.completions.create({ ...body, messages: [...body.messages, { role: 'assistant', content: 'Hi.' },
                                                                          { role: 'user', content: 'What is a jury? Tell me in a few words.' }] });
  assert.equal(again.object, 'chat.completion');
});

test('R1-style reasoning goes to reasoning_content, in messages and in stream deltas', async () => {
  const client = new OpenAI({ baseURL: tinyR1.url + '/v1', apiKey: 'none', maxRetries: 0 });
  const body = { model: tinyR1.model, messages: [{ role: 'user', content: 'Why is the sky blue?' }], max_tokens: 16, temperature: 0 };
  const r = await client.chat.completions.create(body);
  const msg = r.choices[0].message;
  // A random model never closes </think> within 16 tokens: everything it says is reasoning.
  assert.equal(typeof msg.reasoning_content, 'string');
  assert.ok(msg.reasoning_content.length > 0);
  assert.ok(!msg.content, 'no content outside <think>');
  const stream = await client.chat.completions.create({ ...body, stream: true });
  let reasoning = '';
  for await (const c of stream) if (c.choices.length) reasoning += c.choices[0].delta.reasoning_content ?? '';
  assert.equal(reasoning, msg.reasoning_content);
});

test('tools are described to the model and the response stays well-formed', async () => {
  const client = new OpenAI({ baseURL: tiny.url + '/v1', apiKey: 'none', maxRetries: 0 });
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Current weather of a city',
                   parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
  const plain = await client.chat.completions.create({ model: tiny.model, messages, max_tokens: 4, temperature: 0 });
  const withTools = await client.chat.completions.create({ model: tiny.model, messages, tools, max_tokens: 4, temperature: 0 });
  assert.ok(withTools.usage.prompt_tokens > plain.usage.prompt_tokens + 20, 'the tool description is in the prompt');
  const none = await client.chat.completions.create({ model: tiny.model, messages, tools, tool_choice: 'none', max_tokens: 4, temperature: 0 });
  assert.equal(none.usage.prompt_tokens, plain.usage.prompt_tokens);
  await assert.rejects(client.chat.completions.create({ model: tiny.model, messages, tools: [{ type: 'function' }], max_tokens: 4 }),
                       (e) => e.status === 400);
});

// What a logprobs `token` string must be for its bytes: the text when valid UTF-8, else "bytes:" and
// the bytes as Python's repr writes them (OpenAI's convention).
function tokenText(bytes) {
  const buf = Buffer.from(bytes);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    let s = 'bytes:';
    for (const b of buf) {
      if (b === 0x5c) s += '\\\\';
      else if (b === 0x09) s += '\\t';
      else if (b === 0x0a) s += '\\n';
      else if (b === 0x0d) s += '\\r';
      else if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
      else s += '\\x' + b.toString(16).padStart(2, '0');
    }
    return s;
  }
}

test('chat logprobs: per-token entries with sorted top_logprobs, the same when streamed', async () => {
  const client = new OpenAI({ baseURL: tiny.url + '/v1', apiKey: 'none', maxRetries: 0 });
  const body = { model: tiny.model, messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 16, temperature: 0,
                 logprobs: true, top_logprobs: 4 };
  const r = await client.chat.completions.create(body);
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens, 'one entry per generated token');
  for (const e of content) {
    assert.equal(e.token, tokenText(e.bytes));
    assert.ok(e.logprob <= 0 && e.logprob > -1000, String(e.logprob));
    assert.equal(e.top_logprobs.length, 4);
    for (let k = 1; k < 4; k++) assert.ok(e.top_logprobs[k - 1].logprob >= e.top_logprobs[k].logprob, 'sorted');
    for (const t of e.top_logprobs) assert.equal(t.token, tokenText(t.bytes));
    // Greedy: the chosen token is the most likely one.
    assert.deepEqual(e.top_logprobs[0].bytes, e.bytes);
    assert.equal(e.top_logprobs[0].logprob, e.logprob);
  }
  // The tokens' bytes spell the message (a random model: whatever it says, special tokens kept).
  assert.equal(Buffer.concat(content.map((e) => Buffer.from(e.bytes))).toString('utf8'), r.choices[0].message.content);

  const stream = await client.chat.completions.create({ ...body, stream: true });
  const streamed = [];
  for await (const c of stream) {
    if (c.choices.length && c.choices[0].logprobs) streamed.push(...c.choices[0].logprobs.content);
  }
  assert.equal(streamed.length, content.length);
  streamed.forEach((e, j) => {
    assert.equal(e.token, content[j].token);
    assert.ok(Math.abs(e.logprob - content[j].logprob) < 1e-4);  // another run: float rounding of the batch
    assert.deepEqual(e.top_logprobs.map((t) => t.token), content[j].top_logprobs.map((t) => t.token));
  });
  // Without logprobs the field is null; bad values are 400s naming the field.
  assert.equal((await client.chat.completions.create({ ...body, logprobs: false, top_logprobs: undefined })).choices[0].logprobs, null);
  await assert.rejects(client.chat.completions.create({ ...body, top_logprobs: 21 }), (e) => e.status === 400 && e.param === 'top_logprobs');
  await assert.rejects(client.chat.completions.create({ ...body, logprobs: 'yes' }), (e) => e.status === 400 && e.param === 'logprobs');
});

test('completion logprobs: legacy layout, streamed per chunk, identical under MTP speculative decoding', async () => {
  const base = { model: 'brown-demo', prompt: 'The jury said', max_tokens: 32, temperature: 0, logprobs: 2 };
  const r = await demoClient.completions.create(base);
  const text = r.choices[0].text;
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, 32);
  assert.equal(lp.tokens.join(''), text, 'the demo writes ASCII: the tokens spell the text');
  let offset = 0;
  lp.tokens.forEach((t, j) => {
    assert.equal(lp.text_offset[j], offset);
    offset += t.length;
    const top = lp.top_logprobs[j];
    assert.equal(Object.keys(top).length, 2, 'greedy: the chosen token is one of the top 2');
    assert.equal(top[t], lp.token_logprobs[j]);
    assert.equal(Math.max(...Object.values(top)), lp.token_logprobs[j]);
    assert.ok(lp.token_logprobs[j] <= 0);
  });

  const stream = await demoClient.completions.create({ ...base, stream: true });
  const tokens = [], logprobs = [], offsets = [];
  for await (const c of stream) {
    const l = c.choices[0].logprobs;
    if (!l) continue;
    assert.equal(l.tokens.join(''), c.choices[0].text, 'each chunk carries its own tokens');
    tokens.push(...l.tokens);
    logprobs.push(...l.token_logprobs);
    offsets.push(...l.text_offset);
  }
  assert.deepEqual(tokens, lp.tokens);
  assert.deepEqual(offsets, lp.text_offset);
  logprobs.forEach((x, j) => assert.ok(Math.abs(x - lp.token_logprobs[j]) < 1e-4));

  // --speculative mtp: the logprobs are the main model's verified rows, so they do not change.
  const spec = await serve(DEMO, ['--speculative', 'mtp']);
  const client = new OpenAI({ baseURL: spec.url + '/v1', apiKey: 'none', maxRetries: 0 });
  const rs = await client.completions.create(base);
  assert.equal(rs.choices[0].text, text);
  assert.deepEqual(rs.choices[0].logprobs.tokens, lp.tokens);
  rs.choices[0].logprobs.token_logprobs.forEach((x, j) => assert.ok(Math.abs(x - lp.token_logprobs[j]) < 1e-4, `${j}: ${x}`));
  assert.ok((await metrics(spec))['dseek_mtp_draft_tokens_total{position="1",state="accepted"}'] > 0, 'drafts were accepted');
  spec.proc.kill('SIGTERM');
  assert.equal((await spec.exited).code, 0);

  await assert.rejects(demoClient.completions.create({ ...base, logprobs: 6 }), (e) => e.status === 400 && e.param === 'logprobs');
  await assert.rejects(demoClient.completions.create({ ...base, max_tokens: 0 }), (e) => e.status === 400 && e.param === 'max_tokens');

  // echo + logprobs + max_tokens 0, as lm-evaluation-harness scores a text: the prompt's tokens, the
  // first with null logprob and top_logprobs, offsets into the echoed prompt.
  const scored = await demoClient.completions.create({ ...base, echo: true, max_tokens: 0 });
  assert.equal(scored.choices[0].text, base.prompt);
  assert.equal(scored.choices[0].finish_reason, 'length');
  const sp = scored.choices[0].logprobs;
  assert.equal(sp.tokens.join(''), base.prompt);
  assert.equal(sp.token_logprobs[0], null);
  assert.equal(sp.top_logprobs[0], null);
  assert.deepEqual(sp.text_offset, sp.tokens.map((_, j) => j));
  for (let j = 1; j < sp.tokens.length; j++) assert.ok(sp.token_logprobs[j] <= 0 && sp.token_logprobs[j] > -100);
  // With output, the prompt's entries come first; the generated ones equal the plain request's.
  const both = (await demoClient.completions.create({ ...base, echo: true })).choices[0];
  assert.equal(both.text, base.prompt + text);
  assert.deepEqual(both.logprobs.tokens, [...sp.tokens, ...lp.tokens]);
  assert.deepEqual(both.logprobs.text_offset.slice(sp.tokens.length), lp.text_offset.map((o) => o + base.prompt.length));
});

test('a full queue answers 429 at once; SIGTERM drains in-flight requests and exits cleanly', async () => {
  const s = await serve(DEMO, ['--max-batch', '1', '--max-queue', '1']);
  const post = (n) => fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                                          body: JSON.stringify({ prompt: 'The jury said', max_tokens: n, temperature: 0 }) });
  const results = await Promise.all(Array.from({ length: 6 }, () => post(150)));
  const codes = results.map((r) => r.status).sort();
  assert.ok(codes.includes(429), `some requests refused: ${codes}`);
  assert.ok(codes.includes(200), `some requests served: ${codes}`);
  assert.ok(codes.every((c) => c === 200 || c === 429), `${codes}`);
  for (const r of results) if (r.status === 429) assert.equal((await r.json()).error.type, 'rate_limit_error');

  // SIGTERM while a stream is running: the stream still finishes, then the process exits 0.
  const resp = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                             body: JSON.stringify({ prompt: 'The jury said', max_tokens: 120, temperature: 0, stream: true }) });
  const reader = resp.body.getReader();
  await reader.read();
  s.proc.kill('SIGTERM');
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
  }
  assert.ok(text.includes('"finish_reason":"length"') && text.trimEnd().endsWith('data: [DONE]'), text.slice(-300));
  const { code } = await s.exited;
  assert.equal(code, 0, s.log());
});
