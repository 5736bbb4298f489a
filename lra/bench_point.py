"""One point of ``lra-bench``: time the phases of (row, length) in a child process (lra.bench_child).

The phases (``lra.measure.PHASES``, in this order; ``phases`` chooses a subset):

- ``op_forward``: one attention layer alone (as the encoder's blocks build it), eval mode under
  ``torch.no_grad()``, on x ~ N(0, 1) of shape (B, N, d_model) with an all-true mask;
- ``op_forward_backward``: the same layer in train mode, forward and backward of
  ``mean(layer(x, mask)^2)`` into x and the layer's weights (FlashAttention's forward + backward);
- ``inference``: the LRA Text classifier (the LRA Table 2 protocol: the Text task's encoder at N,
  batch B, random ids without padding, the mask passed as ``lra-train`` passes it), eval mode under
  ``torch.no_grad()``;
- ``train_step``: a full training step of that classifier, forward, cross-entropy, backward, AdamW.

Each phase: ``warmup`` untimed calls, then ``repeats`` timed calls, CUDA synchronised around each
(lra.measure.time_calls), summarised as median, p20 and p80 ms (lra.measure.summarise), and
``<phase>_tokens_per_s = B * N / median``. ``floor`` is the same encoder with every attention layer
replaced by the identity (no token mixing, no projections); its op phases time that identity.

Memory per phase (lra.measure): on CUDA ``<phase>_mem_mb`` is ``max_memory_allocated`` and
``<phase>_reserved_mb`` ``max_memory_reserved``, both after a reset; on CPU ``<phase>_mem_mb`` is the
child's peak resident set during the phase (reset before each phase) minus its resident set before
the measured objects (the layer and x for the op phases, the classifier and its inputs for the
encoder phases) exist. The first baseline is taken after one step of a tiny model, so that the torch
libraries' code pages and lazily initialised runtime state are in it; the op phases' objects are
freed before the encoder's baseline is read. So weights, gradients, optimizer state and activations
count; memory the allocator kept from an earlier phase does not count twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from lra.measure import (
    BASELINE,
    PHASES,
    peak_mb,
    peak_reserved_mb,
    release_freed,
    reset_peak,
    rss_mb,
    summarise,
    time_calls,
)

OP_PHASES, ENCODER_PHASES = PHASES[:2], PHASES[2:]


def no_mixing():
    """The floor's "attention" layer."""
    from torch import Tensor, nn

    from models.attention import zero_padding

    class NoMixing(nn.Module):
        """The floor's "attention": the identity (no token mixing, no projections), zero at padding."""

        def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
            return zero_padding(x, mask)  # (B, N, D)

    return NoMixing()


def build_layer(*, attention: str | None, options: dict, model: dict):
    """One attention layer as the encoder's blocks build it; ``attention=None`` is the floor's identity."""
    from models.attention import build_attention

    if attention is None:
        return no_mixing()
    d, h, p = model["d_model"], model["n_heads"], model["attn_dropout"]
    return build_attention(attention, d_model=d, n_heads=h, dropout=p, **options)


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


def op_calls(layer, *, batch: int, length: int, d_model: int, dev, autocast) -> dict[str, Callable[[], None]]:
    """``op_forward`` and ``op_forward_backward`` of ``layer`` on x ~ N(0, 1) (B, N, D), all-true mask."""
    import torch

    x = torch.randn(batch, length, d_model, device=dev, requires_grad=True)  # (B, N, D)
    mask = torch.ones(batch, length, dtype=torch.bool, device=dev)  # (B, N), all real tokens

    def forward():
        layer.eval()
        with torch.no_grad(), autocast:
            layer(x, mask)

    def forward_backward():
        layer.train()
        with autocast:
            y = layer(x, mask)  # (B, N, D)
        y.float().square().mean().backward()

    return {"op_forward": forward, "op_forward_backward": forward_backward}


def encoder_calls(net, *, batch: int, length: int, vocab_size: int, n_classes: int, dev, autocast) -> dict:
    """``inference`` and ``train_step`` of classifier ``net`` on random ids (B, N) without padding."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.1)
    ids = torch.randint(1, vocab_size, (batch, length), device=dev)  # (B, N), no padding id 0
    mask = ids != 0  # (B, N) all True, passed as lra-train passes it
    labels = torch.randint(0, n_classes, (batch,), device=dev)

    def inference():
        net.eval()
        with torch.no_grad(), autocast:
            net(ids, mask)

    def train_step():
        net.train()
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = net(ids, mask)  # (B, n_classes)
        F.cross_entropy(logits.float(), labels).backward()
        opt.step()

    return {"inference": inference, "train_step": train_step}


def timed(phase: str, fn, *, warmup: int, repeats: int, dev, tokens: int, base_mb: float) -> dict:
    """One phase's record: its timings (lra.measure.summarise), tokens/s at the median, its memory."""
    reset_peak(dev)
    rec = summarise(time_calls(fn, warmup=warmup, repeats=repeats, dev=dev), phase)
    rec.update({"phase": phase, f"{phase}_tokens_per_s": tokens / (rec[f"{phase}_median_ms"] / 1000)})
    rec[f"{phase}_mem_mb"] = peak_mb(dev, base_mb)
    if (reserved := peak_reserved_mb(dev)) is not None:
        rec[f"{phase}_reserved_mb"] = reserved
    return rec


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
    phases: list[str] | tuple[str, ...] = PHASES,
) -> Iterator[dict]:
    """Time the chosen ``phases`` of one point, in PHASES order; yields one record per phase."""
    import contextlib

    import torch

    dev = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
    run = dict(warmup=warmup, repeats=repeats, dev=dev, tokens=batch * length)
    sizes = dict(batch=batch, length=length, dev=dev, autocast=autocast)

    # One step of a tiny floor model first, so that code pages and lazily initialised runtime state
    # (autograd engine, optimizer kernels, thread pools: ~90 MB RSS) are in the CPU baseline.
    tiny = build_classifier(attention=None, options={}, length=16, model={**model, "n_layers": 1},
                            vocab_size=vocab_size, n_classes=n_classes).to(dev)  # fmt: skip
    for fn in encoder_calls(tiny, **{**sizes, "length": 16}, vocab_size=vocab_size, n_classes=n_classes).values():
        fn()
    del tiny
    if any(p in phases for p in OP_PHASES):
        release_freed()
        torch.manual_seed(seed)
        base_mb = rss_mb()  # before the layer and x
        layer = build_layer(attention=attention, options=options, model=model).to(dev)
        calls = op_calls(layer, d_model=model["d_model"], **sizes)
        for phase in (p for p in OP_PHASES if p in phases):
            yield timed(phase, calls[phase], base_mb=base_mb, **run)
        del layer, calls
    if any(p in phases for p in ENCODER_PHASES):
        release_freed()
        torch.manual_seed(seed)
        base_mb = rss_mb()  # before the classifier and its inputs
        net = build_classifier(attention=attention, options=options, length=length, model=model,
                               vocab_size=vocab_size, n_classes=n_classes).to(dev)  # fmt: skip
        calls = encoder_calls(net, vocab_size=vocab_size, n_classes=n_classes, **sizes)
        for phase in (p for p in ENCODER_PHASES if p in phases):
            yield timed(phase, calls[phase], base_mb=base_mb, **run)
