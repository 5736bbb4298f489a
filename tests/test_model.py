import math

import pytest
import torch

from lra.build import build_model
from lra.config import compose_config
from lra.module import lr_factor
from models.encoder import Classifier, Encoder, PairClassifier, sinusoidal_positions


def encoder(**kw):
    base = dict(vocab_size=10, max_len=32, d_model=32, n_heads=4, n_layers=2, d_mlp=64, dropout=0.0)
    return Encoder(**{**base, **kw}).eval()


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_padding_never_changes_the_prediction(pool, positions):
    model = Classifier(encoder(pool=pool, positions=positions), n_classes=3, d_model=32, d_head=16).eval()
    ids = torch.randint(1, 10, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, 12:] = False
    other = ids.clone()
    other[0, 12:] = torch.randint(1, 10, (8,))  # different garbage behind the mask
    torch.testing.assert_close(model(ids, mask), model(other, mask))
    torch.testing.assert_close(model(ids[:1, :12], None), model(ids, mask)[:1])


def test_mean_pool_is_the_mean_over_real_tokens():
    enc = encoder(pool="mean", n_layers=0, positions="none")
    ids = torch.tensor([[1, 2, 3, 0]])
    mask = ids != 0
    expected = enc.norm(enc.embed(ids))[0, :3].mean(0)
    torch.testing.assert_close(enc(ids, mask)[0], expected)


def test_pair_classifier_runs_both_towers_with_shared_weights():
    enc = encoder()
    model = PairClassifier(enc, n_classes=2, d_model=32, d_head=16).eval()
    ids = torch.randint(1, 10, (3, 2, 16))
    u, v = enc(ids[:, 0]), enc(ids[:, 1])
    expected = model.head(torch.cat([u, v, u * v, u - v], dim=-1))
    torch.testing.assert_close(model(ids), expected)
    concat = PairClassifier(enc, n_classes=2, d_model=32, d_head=16, combine="concat").eval()
    torch.testing.assert_close(concat(ids), concat.head(torch.cat([u, v], -1)))


def test_layer_scale_starts_blocks_near_identity():
    enc = encoder(layer_scale_init=1e-6, pool="mean")
    assert enc.blocks[0].gamma1.shape == (32,)
    x = torch.randn(1, 5, 32)
    torch.testing.assert_close(enc.blocks[0](x, None), x, atol=1e-4, rtol=0)


def test_bad_model_options_name_the_choices():
    with pytest.raises(ValueError, match="cls"):
        encoder(pool="max")
    with pytest.raises(ValueError, match="sinusoidal"):
        encoder(positions="rope")
    with pytest.raises(ValueError, match="max_len"):
        encoder(max_len=8)(torch.ones(1, 20, dtype=torch.long))


def test_sinusoidal_table():
    t = sinusoidal_positions(4, 6)
    assert t[0, 0] == 0 and t[0, 1] == 1
    assert math.isclose(float(t[3, 2]), math.sin(3 / 10000 ** (2 / 6)), rel_tol=1e-6)


def test_lra_rsqrt_schedule():
    f = lambda s: lr_factor(s, schedule="rsqrt", warmup_steps=1000, total_steps=5000)  # noqa: E731
    assert math.isclose(f(0), (1 / 1000) / math.sqrt(1000))
    assert math.isclose(f(999), 1 / math.sqrt(1000))  # the peak: base lr / sqrt(warm-up)
    assert math.isclose(f(3999), 1 / math.sqrt(4000))


def test_cosine_schedule():
    f = lambda s: lr_factor(s, schedule="cosine", warmup_steps=10, total_steps=110)  # noqa: E731
    assert math.isclose(f(4), 0.5) and math.isclose(f(9), 1.0)
    assert math.isclose(f(59), 0.5) and math.isclose(f(109), 0.0, abs_tol=1e-12)
    with pytest.raises(ValueError, match="rsqrt"):
        lr_factor(0, schedule="linear", warmup_steps=1, total_steps=2)


def test_peak_rss_is_reset_between_jobs():
    import numpy as np

    from lra.measure import peak_rss_mb, reset_peak_rss

    big = np.ones(200 * 2**20, dtype=np.uint8)  # touch 200 MB
    high = peak_rss_mb()
    del big
    if not reset_peak_rss():
        pytest.skip("this kernel cannot reset the peak RSS")
    assert peak_rss_mb() < high - 150


# A transcription of the LRA code's mask handling (lra_benchmarks/models/transformer/transformer.py,
# TransformerEncoder.apply, and layers/common_layers.py, classifier_head), in torch.
def lra_padding_mask(inputs: torch.Tensor, cls: bool) -> torch.Tensor:
    src_padding_mask = (inputs > 0)[..., None]
    if cls:
        src_padding_mask = torch.cat([src_padding_mask[:, :1], src_padding_mask], dim=1)
    return src_padding_mask[..., 0]


def lra_mean_pool(encoded: torch.Tensor) -> torch.Tensor:
    return encoded.mean(dim=1)


def masks_and_pooled(enc: Encoder, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mask the blocks receive, the final LayerNorm's output (B, N, D) and the pooled features (B, D)."""
    seen = {}
    h1 = enc.blocks[0].register_forward_pre_hook(lambda m, args: seen.update(mask=args[1]))
    h2 = enc.norm.register_forward_hook(lambda m, args, out: seen.update(encoded=out))
    pooled = enc(ids, ids > 0)
    h1.remove()
    h2.remove()
    return seen["mask"], seen["encoded"], pooled


PIXELS = torch.tensor([[0, 5, 0, 7, 3, 0], [4, 0, 9, 0, 0, 1]])  # sequence 0 starts with a masked pixel


def test_lra_mask_gives_cls_the_first_pixels_mask_as_lra_does():
    mask, encoded, pooled = masks_and_pooled(encoder(pool="cls", lra_mask=True), PIXELS)
    torch.testing.assert_close(mask, lra_padding_mask(PIXELS, cls=True), rtol=0, atol=0)
    assert mask[:, 0].tolist() == [False, True]
    torch.testing.assert_close(pooled, encoded[:, 0])
    mask, _, _ = masks_and_pooled(encoder(pool="cls"), PIXELS)  # without the switch: CLS is always real
    assert mask[:, 0].tolist() == [True, True] and torch.equal(mask[:, 1:], PIXELS > 0)


def test_lra_mask_mean_pools_every_position_as_lra_does():
    _, encoded, pooled = masks_and_pooled(encoder(pool="mean", lra_mask=True), PIXELS)
    torch.testing.assert_close(pooled, lra_mean_pool(encoded))
    _, encoded, pooled = masks_and_pooled(encoder(pool="mean"), PIXELS)  # without: the mean over real pixels
    real = (PIXELS > 0)[..., None].float()
    torch.testing.assert_close(pooled, (encoded * real).sum(1) / real.sum(1))
    assert not torch.allclose(pooled, lra_mean_pool(encoded))


@pytest.mark.parametrize(("switch", "expected"), [([], False), (["task.mask_zero_pixels=true"], True)])
def test_mask_zero_pixels_switches_the_lra_mask_on(switch, expected):
    cfg = compose_config(["task=image", "model=tiny", *switch])
    assert build_model(cfg).encoder.lra_mask is expected
