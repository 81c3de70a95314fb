// Load test of a running `dseek serve`: C concurrent clients send completions for D seconds, then
// stop by themselves. Prints a table: requests, errors, aggregate generated tokens/s, and the
// server's resident memory before, right after and a few seconds after the load (with --pid).
//   node bench/serve_load.mjs --url http://127.0.0.1:8080 [--clients 16] [--seconds 60] [--max-tokens 64] [--pid PID]
import fs from 'node:fs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const url = args.url ?? 'http://127.0.0.1:8080';
const clients = Number(args.clients ?? 16), seconds = Number(args.seconds ?? 60), maxTokens = Number(args['max-tokens'] ?? 64);
const prompts = ['The jury said', 'In the morning the', 'She looked at him and said', 'The committee of the state',
                 'He', 'It was the first time', 'The city of Atlanta', 'After the election'];

function rssMiB(pid) {
  if (!pid) return NaN;
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
}

async function client(id, deadline, stats) {
  let i = id;
  while (Date.now() < deadline) {
    const body = { prompt: prompts[i++ % prompts.length], max_tokens: maxTokens, temperature: 0.8, seed: i };
    try {
      const r = await fetch(url + '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                                        body: JSON.stringify(body) });
      const j = await r.json();
      if (r.status !== 200) { stats.errors[r.status] = (stats.errors[r.status] ?? 0) + 1; continue; }
      stats.requests++;
      stats.tokens += j.usage.completion_tokens;
    } catch (e) {
      stats.errors.network = (stats.errors.network ?? 0) + 1;
    }
  }
}

const pid = Number(args.pid ?? 0);
const rssBefore = rssMiB(pid);
const stats = { requests: 0, tokens: 0, errors: {} };
const t0 = Date.now();
await Promise.all(Array.from({ length: clients }, (_, c) => client(c, t0 + seconds * 1000, stats)));
const elapsed = (Date.now() - t0) / 1000;
const rssAfter = rssMiB(pid);
await new Promise((r) => setTimeout(r, 3000));
const rssLater = rssMiB(pid);
console.log('| clients | seconds | requests | errors | generated tokens | tokens/s | RSS before / after / +3 s (MiB) |');
console.log('|---:|---:|---:|---|---:|---:|---|');
console.log(`| ${clients} | ${elapsed.toFixed(1)} | ${stats.requests} | ${JSON.stringify(stats.errors)} | ${stats.tokens} | ` +
            `${(stats.tokens / elapsed).toFixed(1)} | ${rssBefore.toFixed(1)} / ${rssAfter.toFixed(1)} / ${rssLater.toFixed(1)} |`);
process.exitCode = Object.keys(stats.errors).length ? 1 : 0;
