#!/usr/bin/python3
"""PyTorch peer for BenchmarkGemma2SmallExtract (gpu/dpo/cpu_bench_test.go).

Per-pair LoRA gradients of the LP-DPO loss on a Gemma-2-style decoder read
from a HF-style config.json (default scripts/peers/gemma2-4l-256.json: 4
layers, hidden 256), random weights, LoRA rank 8 (alpha 16) on q_proj and
v_proj with fresh adapters (B = 0, so pi_ref = pi_theta and the reference
log-probs are the detached policy ones, as in gpu/dpo), batches of 8 pairs
of 128 tokens. Three ways to get per-pair gradients:

  copies  one forward/backward per batch; each adapter tensor enters as B
          per-pair copies [B, ...] and sequence n uses copy n % B (the
          trick gpu/dpo uses), so d(sum of losses)/d(copy i) = g_i
  vmap    functorch.vmap(functorch.grad(loss of one pair)) over the batch
  loop    one forward/backward per pair

Prints one line per method: pairs/s (wall), CPU seconds per pair
(getrusage RUSAGE_SELF, all threads, user+system), threads, load average.

Run with Debian's torch (apt-get install python3-torch) and, for the
OpenBLAS figure, OpenBLAS first on the library path, e.g.
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread \
    /usr/bin/python3 scripts/peers/torch_grad.py --threads 2 --iters 4
"""

import argparse
import json
import math
import os
import resource
import time

import torch
import torch.nn.functional as F


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Cfg:
    def __init__(self, d):
        self.V = d["vocab_size"]
        self.H = d["hidden_size"]
        self.I = d["intermediate_size"]
        self.L = d["num_hidden_layers"]
        self.nh = d["num_attention_heads"]
        self.kv = d.get("num_key_value_heads", self.nh)
        self.hd = d.get("head_dim", self.H // self.nh)
        self.eps = d.get("rms_norm_eps", 1e-6)
        self.theta = d.get("rope_theta", 10000.0)
        self.qscale = d.get("query_pre_attn_scalar", self.hd) ** -0.5
        self.attn_cap = d.get("attn_logit_softcapping") or 0.0
        self.final_cap = d.get("final_logit_softcapping") or 0.0
        self.window = d.get("sliding_window") or 0


def init_weights(c, gen):
    def n(*shape, std=0.02):
        return torch.randn(*shape, generator=gen) * std

    w = {"embed": n(c.V, c.H), "norm": n(c.H, std=0.1)}
    for l in range(c.L):
        p = f"l{l}."
        w[p + "q"] = n(c.nh * c.hd, c.H)
        w[p + "k"] = n(c.kv * c.hd, c.H)
        w[p + "v"] = n(c.kv * c.hd, c.H)
        w[p + "o"] = n(c.H, c.nh * c.hd)
        w[p + "gate"] = n(c.I, c.H)
        w[p + "up"] = n(c.I, c.H)
        w[p + "down"] = n(c.H, c.I)
        for ln in ("in_ln", "post_attn_ln", "pre_ff_ln", "post_ff_ln"):
            w[p + ln] = n(c.H, std=0.1)
    return w


def lora_shapes(c, rank):
    """(name, base, shape) in gpu/model LoRAParams order: layer, q then v, A then B."""
    out = []
    for l in range(c.L):
        for t, o in (("q", c.nh * c.hd), ("v", c.kv * c.hd)):
            out.append((f"l{l}.{t}.A", f"l{l}.{t}", (rank, c.H)))
            out.append((f"l{l}.{t}.B", f"l{l}.{t}", (o, rank)))
    return out


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w)


def rope_tables(c, t):
    inv = 1.0 / (c.theta ** (torch.arange(0, c.hd // 2, dtype=torch.float64) * 2 / c.hd))
    ang = torch.arange(t, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    return ang.cos().float(), ang.sin().float()


def rope(x, cos, sin):  # x [N, T, heads, D]
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], -1)
    return x * cos[None, :, None, :] + rot * sin[None, :, None, :]


def seq_logps(c, w, lora, scale, tokens, mask, groups):
    """Sum of masked next-token log-probs per row of tokens [N, T].

    lora maps "l{l}.{q,v}.{A,B}" to [G, r, in] / [G, out, r]; row n uses
    group n % G (G = groups). With groups = 1 and unbatched tensors it is
    the plain model with one adapter."""
    n, t = tokens.shape
    cos, sin = rope_tables(c, t)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    x = w["embed"][tokens] * float(torch.tensor(math.sqrt(c.H), dtype=torch.float32))

    def lin(name, h):
        y = h @ w[name].t()
        if name + ".A" in lora:
            a, b = lora[name + ".A"], lora[name + ".B"]
            hg = h.reshape(n // groups, groups, t, h.shape[-1])
            d = torch.einsum("kgti,gri->kgtr", hg, a)
            d = torch.einsum("kgtr,gor->kgto", d, b)
            y = y + scale * d.reshape(n, t, -1)
        return y

    for l in range(c.L):
        p = f"l{l}."
        h = rms(x, w[p + "in_ln"], c.eps)
        q = rope(lin(p + "q", h).reshape(n, t, c.nh, c.hd), cos, sin)
        k = rope(lin(p + "k", h).reshape(n, t, c.kv, c.hd), cos, sin)
        v = lin(p + "v", h).reshape(n, t, c.kv, c.hd)
        rep = c.nh // c.kv
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        s = torch.einsum("nthd,nshd->nhts", q, k) * c.qscale
        if c.attn_cap > 0:
            s = torch.tanh(s / c.attn_cap) * c.attn_cap
        m = causal
        if c.window > 0 and l % 2 == 0:  # Gemma-2: even layers slide
            i = torch.arange(t)
            m = m & ((i[:, None] - i[None, :]) < c.window)
        s = s.masked_fill(~m, -1e9)
        a = torch.einsum("nhts,nshd->nthd", s.softmax(-1), v).reshape(n, t, c.nh * c.hd)
        h = rms(a @ w[p + "o"].t(), w[p + "post_attn_ln"], c.eps)
        x = x + h
        h = rms(x, w[p + "pre_ff_ln"], c.eps)
        h = (F.gelu(h @ w[p + "gate"].t(), approximate="tanh") * (h @ w[p + "up"].t())) @ w[p + "down"].t()
        x = x + rms(h, w[p + "post_ff_ln"], c.eps)
    x = rms(x, w["norm"], c.eps)
    logits = x @ w["embed"].t()
    if c.final_cap > 0:
        logits = torch.tanh(logits / c.final_cap) * c.final_cap
    lp = logits.log_softmax(-1)
    nxt = torch.cat([tokens[:, 1:], torch.zeros(n, 1, dtype=tokens.dtype)], 1)
    tok = lp.gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
    return (tok * mask).sum(-1)


def lpdpo(pol, ref, b, len_diff, beta, alpha):
    z = beta * ((pol[:b] - ref[:b]) - (pol[b:] - ref[b:])) - alpha * len_diff
    return F.softplus(-z)


def make_batch(b, t):
    """Same layout as gpu/dpo benchPairs: [BOS] prompt response [EOS], bytes."""
    bos, eos, pad = 256, 257, 258
    p = (t - 2) // 2
    r = t - 2 - p
    fill = lambda n, i, c: [ord("a") + (j * 7 + i * 3 + c) % 26 for j in range(n)]
    tokens = torch.full((2 * b, t), pad, dtype=torch.long)
    mask = torch.zeros(2 * b, t)
    for i in range(b):
        for side, c in ((0, 1), (1, 2)):
            seq = [bos] + fill(p, i, 0) + fill(r, i, c) + [eos]
            row = side * b + i
            tokens[row, : len(seq)] = torch.tensor(seq)
            mask[row, p : len(seq) - 1] = 1.0  # positions predicting response tokens and EOS
    return tokens, mask, torch.zeros(b)


def run(method, c, w, lora0, scale, tokens, mask, len_diff, beta, alpha):
    b = len(len_diff)
    if method == "copies":
        lora = {k: v.unsqueeze(0).expand(b, *v.shape).clone().requires_grad_(True) for k, v in lora0.items()}
        pol = seq_logps(c, w, lora, scale, tokens, mask, b)
        loss = lpdpo(pol, pol.detach(), b, len_diff, beta, alpha)
        gs = torch.autograd.grad(loss.sum(), list(lora.values()))
        return torch.cat([g.reshape(b, -1) for g in gs], 1)
    if method == "loop":
        rows = []
        for i in range(b):
            lora = {k: v.unsqueeze(0).clone().requires_grad_(True) for k, v in lora0.items()}
            tk, mk = tokens[[i, b + i]], mask[[i, b + i]]
            pol = seq_logps(c, w, lora, scale, tk, mk, 1)
            loss = lpdpo(pol, pol.detach(), 1, len_diff[i : i + 1], beta, alpha)
            gs = torch.autograd.grad(loss.sum(), list(lora.values()))
            rows.append(torch.cat([g.reshape(-1) for g in gs]))
        return torch.stack(rows)
    if method == "vmap":
        from functorch import grad, vmap

        names = list(lora0.keys())

        def one(params, tk, mk, ld):  # tk [2, T]: chosen, rejected
            lora = {k: v.unsqueeze(0) for k, v in zip(names, params)}
            pol = seq_logps(c, w, lora, scale, tk, mk, 1)
            return lpdpo(pol, pol.detach(), 1, ld.reshape(1), beta, alpha).sum()

        tk = torch.stack([tokens[:b], tokens[b:]], 1)  # [B, 2, T]
        mk = torch.stack([mask[:b], mask[b:]], 1)
        gs = vmap(grad(one), in_dims=(None, 0, 0, 0))(tuple(lora0[k] for k in names), tk, mk, len_diff)
        return torch.cat([g.reshape(b, -1) for g in gs], 1)
    raise ValueError(method)


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--config", default=os.path.join(here, "gemma2-4l-256.json"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="copies,vmap,loop")
    ap.add_argument("--check", action="store_true", help="compare the methods' gradients (B random, not 0)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.config) as f:
        c = Cfg(json.load(f))
    gen = torch.Generator().manual_seed(1)
    w = init_weights(c, gen)
    lora0 = {}
    for name, _, shape in lora_shapes(c, a.rank):
        if name.endswith(".A"):
            lora0[name] = torch.randn(*shape, generator=gen) / math.sqrt(shape[1])
        else:
            lora0[name] = torch.randn(*shape, generator=gen) * 0.02 if a.check else torch.zeros(*shape)
    scale = 2.0  # alpha 16 / rank 8
    tokens, mask, len_diff = make_batch(a.batch, a.seq)
    beta, alpha = 0.1, 0.0
    methods = a.methods.split(",")
    if a.check:
        with torch.no_grad():
            pass
        ref = None
        for m in methods:
            g = run(m, c, w, lora0, scale, tokens, mask, len_diff, beta, alpha)
            if ref is None:
                ref = g
            print(f"check {m}: max |g - g_{methods[0]}| / max |g| = {((g - ref).abs().max() / ref.abs().max()).item():.2e}")
        return
    blas = os.environ.get("LD_LIBRARY_PATH", "") or "system libblas.so.3"
    for m in methods:
        t0 = time.time()
        g = run(m, c, w, lora0, scale, tokens, mask, len_diff, beta, alpha)  # warm-up
        warm = time.time() - t0
        c0, w0 = cpu_seconds(), time.time()
        for _ in range(a.iters):
            g = run(m, c, w, lora0, scale, tokens, mask, len_diff, beta, alpha)
        cpu, wall = cpu_seconds() - c0, time.time() - w0
        pairs = a.iters * a.batch
        print(f"torch {torch.__version__} method={m} threads={torch.get_num_threads()} d={g.shape[1]} "
              f"pairs_per_s={pairs / wall:.4f} cpu_s_per_pair={cpu / pairs:.4f} warmup_s={warm:.2f} "
              f"blas={blas} loadavg={open('/proc/loadavg').read().split()[:3]}", flush=True)


if __name__ == "__main__":
    main()
