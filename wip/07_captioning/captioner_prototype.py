"""Prototype of notebook 07's captioner: how good, how fast, on 2 CPU cores."""
import argparse, time, math, sys
import torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, "/work/main")
from course_utils import data, training
from course_utils.blocks.transformer import TransformerBlock, sincos_position_embedding

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=6000)
p.add_argument("--epochs", type=int, default=8)
p.add_argument("--bs", type=int, default=128)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--dim", type=int, default=64)
p.add_argument("--enc_depth", type=int, default=2)
p.add_argument("--dec_depth", type=int, default=2)
p.add_argument("--patch", type=int, default=4)
p.add_argument("--overlap", type=int, default=0)
p.add_argument("--clip_weight", type=float, default=0.0)
p.add_argument("--recaption", type=int, default=1)
p.add_argument("--max_objects", type=int, default=3)
p.add_argument("--uni_depth", type=int, default=0)
p.add_argument("--cap_weight", type=float, default=1.0)
p.add_argument("--stem", default="patch")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--eval_n", type=int, default=500)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
L = 24

class CrossAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__(); self.h = heads
        self.q = nn.Linear(dim, dim); self.kv = nn.Linear(dim, 2 * dim); self.proj = nn.Linear(dim, dim)
    def forward(self, x, context, context_mask=None):
        B, T, D = x.shape; M = context.shape[1]; h = self.h
        q = self.q(x).reshape(B, T, h, D // h).transpose(1, 2)
        k, v = self.kv(context).reshape(B, M, 2, h, D // h).permute(2, 0, 3, 1, 4)
        mask = None if context_mask is None else context_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))

class DecoderBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4.0):
        super().__init__(); self.h = heads
        self.norm1 = nn.LayerNorm(dim); self.qkv = nn.Linear(dim, 3 * dim); self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim); self.cross_attn = CrossAttention(dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
    def forward(self, x, context, context_mask=None):
        B, T, D = x.shape; h = self.h
        q, k, v = self.qkv(self.norm1(x)).reshape(B, T, 3, h, D // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(out.transpose(1, 2).reshape(B, T, D))
        x = x + self.cross_attn(self.norm2(x), context, context_mask)
        return x + self.mlp(self.norm3(x))

class Captioner(nn.Module):
    def __init__(self, vocab_size, dim, enc_depth, dec_depth, patch, overlap, heads=4):
        super().__init__()
        if a.stem == "conv":
            self.patch_proj = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.GELU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
                nn.Conv2d(64, dim, 3, stride=2, padding=1))
            g = 8
        else:
            self.patch_proj = nn.Conv2d(3, dim, patch + 2 * overlap, stride=patch, padding=overlap)
            g = 32 // patch
        self.img_pos = nn.Parameter(sincos_position_embedding(g, dim)[None].clone())
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(enc_depth))
        self.enc_norm = nn.LayerNorm(dim)
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(1, L, dim) * 0.02)
        self.unimodal = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(a.uni_depth))
        self.uni_norm = nn.LayerNorm(dim)
        self.decoder = nn.ModuleList(DecoderBlock(dim, heads) for _ in range(dec_depth))
        self.norm = nn.LayerNorm(dim); self.head = nn.Linear(dim, vocab_size)
        self.img_proj = nn.Linear(dim, dim); self.txt_proj = nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    def encode(self, images):
        x = self.patch_proj(images).flatten(2).transpose(1, 2) + self.img_pos
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1)
        for b in self.encoder: x = b(x)
        return self.enc_norm(x)
    def text(self, tokens):
        x = self.tok(tokens) + self.pos[:, :tokens.shape[1]]
        T = tokens.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
        for b in self.unimodal: x = b(x, causal)
        return x
    def decode(self, context, tokens, return_text=False):
        x = self.text(tokens)
        t = x
        for b in self.decoder: x = b(x, context)
        return (self.norm(x), self.uni_norm(t)) if return_text else self.norm(x)
    def forward(self, images, tokens):
        return self.head(self.decode(self.encode(images), tokens))

def tokenize(caps, vocab):
    t = torch.zeros(len(caps), L, dtype=torch.long)
    for i, c in enumerate(caps):
        ids = [vocab.start_id] + vocab.encode(c)[:L - 2] + [vocab.end_id]
        t[i, :len(ids)] = torch.tensor(ids)
    return t

ds = data.ShapesCaptions("train", size=a.n, seed=0, num_objects=(1, a.max_objects), hold_out=False)
vocab = data.build_vocabulary()
print("vocab", len(vocab))
caption_sets = [tokenize(ds.captions, vocab)]
for r in range(1, a.recaption):
    caption_sets.append(tokenize(data.caption_scenes(ds.scenes, seed=1000 + r), vocab))
tokens_all = torch.cat(caption_sets); images_all = ds.images.repeat(a.recaption, 1, 1, 1)
model = Captioner(len(vocab), a.dim, a.enc_depth, a.dec_depth, a.patch, a.overlap)
print("params", sum(p.numel() for p in model.parameters()))

def loss_fn(model, images, tokens):
    inputs, targets = tokens[:, :-1], tokens[:, 1:].masked_fill(tokens[:, 1:] == 0, -100)
    ctx = model.encode(images)
    h, t = model.decode(ctx, inputs, return_text=True)
    logits = model.head(h)
    loss = a.cap_weight * F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    if a.clip_weight:
        img = F.normalize(model.img_proj(ctx[:, 0]), dim=-1)
        end = (inputs != 0).sum(1) - 1  # the last word of the input (the unimodal text has read it all)
        txt = F.normalize(model.txt_proj(t[torch.arange(len(t)), end]), dim=-1)
        lg = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        lab = torch.arange(len(lg))
        loss = loss + a.clip_weight * (F.cross_entropy(lg, lab) + F.cross_entropy(lg.T, lab)) / 2
    return loss

start = time.time()
losses = training.train(model, loss_fn, (images_all, tokens_all), epochs=a.epochs, batch_size=a.bs, lr=a.lr)
train_s = time.time() - start
print(f"train {train_s:.1f}s final loss {sum(losses[-20:])/20:.3f}")

@torch.no_grad()
def greedy(model, images, max_len=L):
    model.eval(); ctx = model.encode(images)
    toks = torch.full((len(images), 1), vocab.start_id)
    done = torch.zeros(len(images), dtype=torch.bool)
    for _ in range(max_len - 1):
        nxt = model.head(model.decode(ctx, toks))[:, -1].argmax(-1)
        nxt[done] = 0
        toks = torch.cat([toks, nxt[:, None]], 1); done |= nxt == vocab.end_id
        if done.all(): break
    return toks

test = data.ShapesCaptions("test", size=a.eval_n, seed=1, num_objects=(1, a.max_objects), hold_out=False)
t0 = time.time(); out = greedy(model, test.images); dec_s = time.time() - t0
def decode(row):
    ids = []
    for t in row.tolist()[1:]:
        if t == vocab.end_id or t == 0: break
        ids.append(t)
    return vocab.decode(ids)
texts = [decode(r) for r in out]
try:
    from course_utils.data import caption_truth
    res = [caption_truth(t, s) for t, s in zip(texts, test.scenes)]
    tc = sum(r.true and r.complete for r in res) / len(res)
    by_n = {}
    for r, s in zip(res, test.scenes):
        by_n.setdefault(len(s), []).append(r.true and r.complete)
    print(f"entirely true and complete: {tc:.3f}", {k: round(sum(v)/len(v), 3) for k, v in sorted(by_n.items())},
          f"parsed {sum(r.parsed for r in res)/len(res):.3f} true {sum(r.true for r in res)/len(res):.3f} complete {sum(r.complete for r in res)/len(res):.3f}")
    import collections, re
    kinds = collections.Counter()
    for r in res:
        for f in r.failures:
            kinds[re.sub(r"(red|green|blue|yellow|purple|small|large|circles?|squares?|triangles?|one|two|three|four)", "_", f)[:40]] += 1
    print(kinds.most_common(8))
    for t, s, r in list(zip(texts, test.scenes, res))[:0]:
        print(" ", r.true and r.complete, "|", t, "|", r.failures[:2])
except ImportError as e:
    print("no caption_truth yet", e)
    for t, c in list(zip(texts, test.captions))[:10]: print(" ", t, "||", c)
print(f"decode {dec_s:.1f}s")
