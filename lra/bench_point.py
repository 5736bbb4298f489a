"""One point of ``lra-bench``: build the model for (row, length) and time its two phases (runs in a child).

LRA Table 2 protocol: the Text task's encoder and classifier at sequence length N, batch B, on
random ids (no padding, the mask passed as ``lra-train`` passes it). After ``warmup`` untimed calls,
``repeats`` timed calls of each phase, CUDA synchronised around each (lra.measure.time_calls):

- infer: a forward in eval mode under ``torch.no_grad()``;
- train: a full training step, forward, cross-entropy, backward and an AdamW step.

Throughputs come from the median call: ``<phase>_tokens_per_s = B * N / median``. ``floor`` is the same
encoder with every attention layer replaced by the identity (no token mixing, no projections), so
``(step - floor) / (vanilla - floor)`` is the share of vanilla's attention cost a mechanism keeps.

Peak memory per phase (lra.measure.peak_mb): on CUDA ``max_memory_allocated`` after a reset (weights
and optimizer state included); on CPU the child's peak resident set during the phase (reset before
each phase) minus its resident set before the model and inputs exist, taken after one step of a tiny
model so that the torch libraries' code pages and lazily initialised runtime state are in the
baseline (weights, gradients, optimizer state and activations are counted).
"""

from __future__ import annotations

from collections.abc import Iterator

from lra.measure import BASELINE, peak_mb, reset_peak, rss_mb, summarise, time_calls


def no_mixing():
    """The floor's "attention" layer."""
    from torch import Tensor, nn

    from models.attention import zero_padding

    class NoMixing(nn.Module):
        """The floor's "attention": the identity (no token mixing, no projections), zero at padding."""

        def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
            return zero_padding(x, mask)  # (B, N, D)

    return NoMixing()


def build_classifier(
    *, attention: str | None, options: dict, length: int, model: dict, vocab_size: int, n_classes: int
):
    """The Text-task classifier for one point; ``attention=None`` builds the no-mixing floor."""
    from models.encoder import Classifier, Encoder

    enc_args = {k: v for k, v in model.items() if k != "d_head"}
    encoder = Encoder(
        vocab_size=vocab_size,
        max_len=length,
        attention=attention or BASELINE,
        attention_options=options if attention else {},
        **enc_args,
    )
    if attention is None:
        for block in encoder.blocks:
            block.attn = no_mixing()
    return Classifier(encoder, n_classes=n_classes, d_model=model["d_model"], d_head=model["d_head"])


def measure(
    *,
    attention: str | None,
    options: dict,
    length: int,
    model: dict,
    vocab_size: int,
    n_classes: int,
    batch: int,
    device: str,
    dtype: str,
    warmup: int,
    repeats: int,
    seed: int,
    threads: int | None = None,
) -> Iterator[dict]:
    """Time inference forwards, then training steps, of one point; yields one record per phase."""
    import contextlib
    import gc

    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()

    def calls(net, n: int):
        """infer() and train_step() of ``net`` on a random batch of ``n`` tokens."""
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.1)
        ids = torch.randint(1, vocab_size, (batch, n), device=dev)  # (B, N), no padding id 0
        mask = ids != 0  # (B, N) all True, passed as lra-train passes it
        labels = torch.randint(0, n_classes, (batch,), device=dev)

        def infer():
            with torch.no_grad(), autocast:
                net(ids, mask)

        def train_step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                logits = net(ids, mask)  # (B, n_classes)
            F.cross_entropy(logits.float(), labels).backward()
            opt.step()

        return infer, train_step

    def build(attention, n, layers):
        args = dict(options=options, model={**model, "n_layers": layers}, vocab_size=vocab_size, n_classes=n_classes)
        return build_classifier(attention=attention, length=n, **args).to(dev)

    # One step of a tiny floor model first, so that code pages and lazily initialised runtime state
    # (autograd engine, optimizer kernels, thread pools: ~90 MB RSS) are in the CPU baseline.
    for fn in calls(build(None, 16, 1), 16):
        fn()
    gc.collect()
    torch.manual_seed(seed)
    base_rss = rss_mb()  # before the measured model and its inputs
    net = build(attention, length, model["n_layers"])
    infer, train_step = calls(net, length)

    for phase, fn, rate in (("infer", infer, "infer_forwards_per_s"), ("train", train_step, "train_steps_per_s")):
        net.train(phase == "train")  # inference in eval mode
        reset_peak(dev)
        rec = summarise(time_calls(fn, warmup=warmup, repeats=repeats, dev=dev), phase)
        median_s = rec[f"{phase}_median_ms"] / 1000
        yield {"phase": phase, **rec, rate: 1 / median_s, f"{phase}_tokens_per_s": batch * length / median_s,
               f"{phase}_peak_mem_mb": peak_mb(dev, base_rss)}  # fmt: skip
