#!/usr/bin/env python3
"""Trains the project's tiny CoSMoE family on code, so that quality and routing locality are measured on
models that learned something, not on random weights.

Four models, same data, steps, batch and seed (../tests/fixtures/cosmoe_reference.py is the model):

    dense     a Llama-3-style dense model
    moe       8 experts top-2, FLOP-aligned with `dense` (about the same active parameters per token)
    wd        the same with weight-decomposed experts (rank r = hidden / 2), more layers for the same
              active parameters, as the paper trades them
    moe_bles  `moe` with the paper's block-wise expert selection loss (../../shared/PAPER.md, Eq. 2-7)

Every MoE is trained with a load-balancing loss computed per sequence (the paper's choice: the model
cannot satisfy BlES by collapsing onto a few experts).

Corpus: the CPython standard library sources of this machine (`/usr/lib/python3.X`, tests excluded) and
Debian's licence texts (`/usr/share/common-licenses`), split into train and held-out by file (a hash of
the path decides, 1 file in 10 held out). A byte-level BPE tokenizer is trained on the train split only.

    python3 research/train_cosmoe.py --out research/runs/v1 --models dense,moe,wd,moe_bles

writes `OUT/tokenizer.json`, `OUT/corpus.json` (the files of each split), `OUT/heldout.txt` (the held-out
text, for `cosmoe perplexity`), and per model `OUT/NAME/` (config.json, model.safetensors, tokenizer.json:
a Hugging Face folder `cosmoe run` loads) with `OUT/NAME/loss.csv` (step, train loss, its parts, tokens/s)
and `OUT/NAME/train.json` (the settings, parameter counts, times).
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "fixtures"))
from cosmoe_reference import CosmoeConfig, CosmoeForCausalLM  # noqa: E402

EOS = "<|endoftext|>"


# ---------------------------------------------------------------------------------------------------
# Data


def corpus_files() -> list[Path]:
    py = sorted(glob.glob("/usr/lib/python3.*/"))
    if not py:
        sys.exit("no /usr/lib/python3.* on this machine")
    root = Path(py[-1])
    files = [
        p
        for p in root.rglob("*.py")
        if not any(part in {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__"}
                   for part in p.relative_to(root).parts)
    ]
    files += [p for p in Path("/usr/share/common-licenses").glob("*") if p.is_file()]
    return sorted(files)


def held_out(p: Path) -> bool:
    return hashlib.sha256(str(p).encode()).digest()[0] % 10 == 0


def read(p: Path) -> str:
    return p.read_bytes().decode("utf-8", errors="replace")


def train_tokenizer(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def encode_all(tok, texts: list[str]) -> torch.Tensor:
    eos = tok.token_to_id(EOS)
    ids: list[int] = []
    for enc in tok.encode_batch(texts):
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


# ---------------------------------------------------------------------------------------------------
# Models


def model_config(name: str, vocab: int, a) -> CosmoeConfig:
    """The four shapes: `dense` with a FFN of 4 x hidden; the MoEs with 8 experts top-2 of half that
    width each (so two active experts cost what the dense FFN costs); `wd` with rank hidden/2 experts
    and the layers that its smaller active size buys (the paper's WD trade)."""
    h = a.hidden
    base = dict(
        vocab_size=vocab,
        hidden_size=h,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.heads // 2,
        max_position_embeddings=a.seq,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        eos_token_id=0,
    )
    moe = dict(num_local_experts=8, num_experts_per_tok=2, moe_intermediate_size=2 * h)
    if name == "dense":
        return CosmoeConfig(**base, intermediate_size=4 * h)
    if name in ("moe", "moe_bles"):
        return CosmoeConfig(**base, **moe)
    if name == "wd":
        # A WD expert's three factored matrices hold 3 r (h + 2h) parameters against 6 h^2 for a full
        # one: at r = h/2 it is 3/4 of the active FFN; spend the rest on layers.
        per_layer_full = 4 * h * h + 2 * 6 * h * h  # attention + two active experts
        per_layer_wd = 4 * h * h + 2 * (3 * (h // 2) * 3 * h)
        layers = round(a.layers * per_layer_full / per_layer_wd)
        return CosmoeConfig(**dict(base, num_hidden_layers=layers), **moe, expert_rank=h // 2)
    raise SystemExit(f"unknown model {name}")


def load_balance(router_logits: list[torch.Tensor], b: int, t: int, k: int) -> torch.Tensor:
    """Switch-style balance E * sum_e f_e P_e, per sequence, then averaged over sequences and layers
    (f_e: share of the sequence's top-k slots on expert e; P_e: its mean router probability)."""
    losses = []
    for r in router_logits:
        e = r.shape[-1]
        p = F.softmax(r.float(), dim=-1).view(b, t, e)
        top = torch.topk(p, k, dim=-1).indices
        f = F.one_hot(top, e).sum(2).float().mean(1) / k  # (b, e)
        losses.append((e * (f * p.mean(1)).sum(-1)).mean())
    return torch.stack(losses).mean()


def bles(router_logits: list[torch.Tensor], b: int, t: int, k: int, tau: float = 1.0) -> torch.Tensor:
    """The paper's block-wise expert selection loss (PAPER.md Eq. 2-7), averaged over layers:
    W = softmax(tau R); S = top_k(W); H = sum |S(t+1) - S(t)| (experts entering or leaving);
    H_norm = floor(H / 2) / (B K (T - 1)); L = sum |W(t+1) - W(t)|, L_norm = L / (B T);
    loss = H_norm * L_norm (H_norm a count: the gradient flows through L_norm)."""
    losses = []
    for r in router_logits:
        e = r.shape[-1]
        w = F.softmax(tau * r.float(), dim=-1).view(b, t, e)
        s = F.one_hot(torch.topk(w, k, dim=-1).indices, e).sum(2).float()
        h = (s[:, 1:] - s[:, :-1]).abs().sum()
        h_norm = torch.floor(h / 2) / (b * k * (t - 1))
        l_norm = (w[:, 1:] - w[:, :-1]).abs().sum() / (b * t)
        losses.append(h_norm.detach() * l_norm)
    return torch.stack(losses).mean()


# ---------------------------------------------------------------------------------------------------
# Training


def batches(data: torch.Tensor, b: int, t: int, g: torch.Generator):
    while True:
        starts = torch.randint(0, len(data) - t - 1, (b,), generator=g)
        x = torch.stack([data[s : s + t + 1] for s in starts])
        yield x[:, :-1], x[:, 1:]


def train(name: str, cfg: CosmoeConfig, train_ids: torch.Tensor, out: Path, a) -> dict:
    torch.manual_seed(a.seed)
    model = CosmoeForCausalLM(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" not in n:
                p.normal_(0.0, 0.02)
    total, active = model.param_counts()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, a.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / a.steps)))),
    )
    g = torch.Generator().manual_seed(a.seed)
    it = batches(train_ids, a.batch, a.seq, g)
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(d / "loss.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "ce", "balance", "bles", "tokens_per_s"])
        for step in range(a.steps):
            x, y = next(it)
            logits, routers = model(x)
            ce = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
            loss = ce
            bal = bl = torch.zeros(())
            if routers:
                bal = load_balance(routers, a.batch, a.seq, cfg.num_experts_per_tok)
                loss = loss + a.balance * bal
                if name == "moe_bles":
                    bl = bles(routers, a.batch, a.seq, cfg.num_experts_per_tok)
                    loss = loss + a.bles * bl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if step % a.log_every == 0 or step == a.steps - 1:
                tps = (step + 1) * a.batch * a.seq / (time.time() - t0)
                w.writerow([step, f"{loss.item():.4f}", f"{ce.item():.4f}", f"{bal.item():.4f}", f"{bl.item():.5f}", f"{tps:.0f}"])
                f.flush()
                print(f"{name} step {step} loss {loss.item():.4f} (ce {ce.item():.4f}) {tps:.0f} tok/s", flush=True)
    model.eval()
    model.save_pretrained(d)
    info = {
        "model": name,
        "config": cfg.to_json(),
        "params_total": total,
        "params_active": active,
        "steps": a.steps,
        "batch": a.batch,
        "seq": a.seq,
        "lr": a.lr,
        "seed": a.seed,
        "balance": a.balance,
        "bles": a.bles if name == "moe_bles" else 0.0,
        "seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (d / "train.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "runs" / "v1"))
    ap.add_argument("--models", default="dense,moe,wd,moe_bles")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--balance", type=float, default=0.01, help="weight of the per-sequence load-balancing loss")
    ap.add_argument("--bles", type=float, default=1.0, help="weight of the BlES loss (moe_bles)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--max-train-mb", type=float, default=0, help="use at most this much training text (0: all)")
    a = ap.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    files = corpus_files()
    train_files = [p for p in files if not held_out(p)]
    test_files = [p for p in files if held_out(p)]
    train_texts = [read(p) for p in train_files]
    if a.max_train_mb:
        keep, size = [], 0
        for t in train_texts:
            if size > a.max_train_mb * 1e6:
                break
            keep.append(t)
            size += len(t)
        train_texts = keep
    test_text = "\n".join(read(p) for p in test_files)
    (out / "corpus.json").write_text(json.dumps({
        "train": [str(p) for p in train_files],
        "heldout": [str(p) for p in test_files],
    }, indent=1) + "\n")
    (out / "heldout.txt").write_text(test_text)
    tok = train_tokenizer(train_texts, a.vocab)
    tok.save(str(out / "tokenizer.json"))
    ids = encode_all(tok, train_texts)
    print(f"{len(train_files)} train files ({ids.numel()} tokens), {len(test_files)} held-out", flush=True)
    torch.set_num_threads(os.cpu_count() or 1)
    for name in filter(None, a.models.split(",")):
        cfg = model_config(name, tok.get_vocab_size(), a)
        info = train(name, cfg, ids, out, a)
        tok.save(str(out / name / "tokenizer.json"))
        print(json.dumps({k: info[k] for k in ("model", "params_total", "params_active", "seconds")}), flush=True)


if __name__ == "__main__":
    main()
