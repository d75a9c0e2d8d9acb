"""Issue 32: pt_plugin's cached sampler (context.onnx + step.onnx) draws, for one seed, exactly the values a
re-encoding sampler with the causal buffer's masks draws (torch, export.model), for every kind's shape; bad
cache requests are refused with a message."""
import numpy as np
import pytest
import torch

import pt_plugin
from export.config import ModelConfig
from export.model import PixelTransformer, buffer_biases, key_bias
from export.onnx.cache_graphs import add_to_folder
from export.onnx.graphs import export
from pt_plugin.distribution import Distribution
from pt_plugin.errors import InputError
from pt_plugin.sampling import step_sizes
from tiny_configs import CONFIGS


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request, tmp_path_factory):
    """(torch model, pt_plugin model with cache graphs) of a random tiny network."""
    torch.manual_seed(0)
    model = PixelTransformer(CONFIGS[request.param]).eval()
    folder = tmp_path_factory.mktemp(request.param)
    ck = {"config": {"model": {}, "train": {}}, "step": 0}
    export(model, ck, folder, request.param, kind={1: "curve", 2: "image", 3: "volume"}[model.cfg.pos_dim])
    add_to_folder(model, folder)
    return model, pt_plugin.load(folder, device="cpu", threads=1)


def observed(cfg: ModelConfig, k: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lo, hi = cfg.value_range
    p = rng.uniform(-1, 1, (k, cfg.pos_dim)).astype(np.float32)
    v = rng.uniform(lo, hi, (k, cfg.val_dim)).astype(np.float32)
    return p, v, rng.uniform(-1, 1, (n, cfg.pos_dim)).astype(np.float32)


@torch.no_grad()
def causal_law(model, cpos, cval, bpos, bval, qpos, centers) -> Distribution:
    """The law at qpos [B, m, ·] given each sample's context [B, K, ·] (bidirectional) and its buffer so far, by
    encoding both again with the causal buffer's masks (no caches)."""
    b, g = bpos.shape[:2]
    spos, sval = torch.from_numpy(np.ascontiguousarray(cpos)), torch.from_numpy(np.ascontiguousarray(cval))
    smask = torch.ones(b, spos.shape[1], dtype=torch.bool)
    enc_bias, _ = buffer_biases(smask, g, 0)
    mask = torch.ones(b, spos.shape[1] + g, dtype=torch.bool)
    memory = model.encoder(torch.cat([spos, torch.from_numpy(bpos)], 1), torch.cat([sval, torch.from_numpy(bval)], 1),
                           mask, enc_bias)
    out = model.decoder(memory, mask, torch.from_numpy(qpos), key_bias(mask))
    return Distribution(*(t.numpy() for t in out), centers, model.cfg.value_range)  # means clipped as Model.mean


def reference_sample(model, p, v, q, num_samples, seed, n_ar, fraction, buffer_size=None):
    """hybrid_sample's algorithm and random numbers, each law computed by causal re-encoding; once the buffer holds
    more than buffer_size tokens, everything drawn joins the bidirectional context."""
    rng = np.random.default_rng(seed)
    n = len(q)
    orders = np.stack([rng.permutation(n) for _ in range(num_samples)])
    lo, hi = model.cfg.value_range
    centers = model.centers.numpy().astype(np.float64)
    out = np.empty((num_samples, n, model.cfg.val_dim), np.float32)
    rows = np.arange(num_samples)[:, None]
    done = context = 0  # drawn so far; of those, how many are in the context

    def law_at(cols):
        nonlocal context
        if buffer_size is not None and done - context > buffer_size:
            context = done
        ctx, buf = orders[:, :context], orders[:, context:done]
        cpos = np.concatenate([np.broadcast_to(p, (num_samples, *p.shape)), q[ctx]], 1)
        cval = np.concatenate([np.broadcast_to(v, (num_samples, *v.shape)), out[rows, ctx]], 1)
        return causal_law(model, cpos, cval, q[buf], out[rows, buf], q[cols], centers)

    for m in step_sizes(len(p), n_ar, fraction):
        cols = orders[:, done:done + m]
        out[rows, cols] = np.clip(law_at(cols).sample(rng), lo, hi)
        done += m
    if done < n:
        out[rows, orders[:, done:]] = law_at(orders[:, done:]).mean()
    return out


@pytest.mark.parametrize("n_ar, fraction", [(40, 0.0), (25, 0.0), (40, 0.25)])
def test_cached_draws_equal_causal_re_encoding(exported, n_ar, fraction):
    """Exact (one token per step), hybrid (the rest take the mean) and scheduled (several per step) sampling."""
    model, runtime = exported
    p, v, q = observed(model.cfg, 6, 40)
    got = runtime.sample(p, v, q, 3, seed=7, autoregressive=n_ar, step_fraction=fraction, cache=True)
    want = reference_sample(model, p, v, q, 3, 7, n_ar, fraction)
    np.testing.assert_allclose(got, want, atol=2e-4)


@pytest.mark.parametrize("n_ar, fraction, buffer_size", [(40, 0.0, 7), (25, 0.0, 3), (40, 0.25, 5)])
def test_a_bounded_buffer_encodes_the_grown_set_again(exported, n_ar, fraction, buffer_size):
    """buffer_size: once the buffer would overflow, everything drawn joins the context (context.onnx again)."""
    model, runtime = exported
    p, v, q = observed(model.cfg, 6, 40)
    got = runtime.sample(p, v, q, 3, seed=7, autoregressive=n_ar, step_fraction=fraction, cache=True,
                         buffer_size=buffer_size)
    want = reference_sample(model, p, v, q, 3, 7, n_ar, fraction, buffer_size)
    np.testing.assert_allclose(got, want, atol=2e-4)
    unbounded = runtime.sample(p, v, q, 3, seed=7, autoregressive=n_ar, step_fraction=fraction, cache=True)
    assert not np.allclose(got, unbounded, atol=2e-4)  # the bound changed the conditionals


@pytest.mark.parametrize("n_ar, fraction", [(40, 0.0), (25, 0.0), (40, 0.25)])
def test_buffer_size_0_draws_what_re_encoding_draws(exported, n_ar, fraction):
    """Encoding the grown set at every step is the re-encoding sampler (encoder.onnx + decoder.onnx), through the
    cache graphs: the same draws for a seed."""
    model, runtime = exported
    p, v, q = observed(model.cfg, 6, 40)
    got = runtime.sample(p, v, q, 3, seed=7, autoregressive=n_ar, step_fraction=fraction, cache=True, buffer_size=0)
    want = runtime.sample(p, v, q, 3, seed=7, autoregressive=n_ar, step_fraction=fraction, cache=False)
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_bad_buffer_sizes_are_refused(exported):
    model, runtime = exported
    p, v, q = observed(model.cfg, 4, 10)
    for bad in (-1, 2.5, "8", True):
        with pytest.raises(InputError, match="buffer_size must be an integer >= 0"):
            runtime.sample(p, v, q, cache=True, buffer_size=bad)
    with pytest.raises(InputError, match="applies to cached sampling only"):
        runtime.sample(p, v, q, cache=False, buffer_size=4)


def test_defaults_with_cache_graphs_draw_every_position_exactly(exported):
    _, runtime = exported
    assert runtime.has_cache
    assert runtime.sampling_plan() == (True, pt_plugin.sampling.ALL_POSITIONS, 0.0)
    assert runtime.sampling_plan(cache=False) == (False, pt_plugin.sampling.DEFAULT_AUTOREGRESSIVE,
                                                  pt_plugin.sampling.DEFAULT_STEP_FRACTION)


def test_a_recorded_cached_autoregressive_is_the_default(exported, monkeypatch):
    """A model of tens of thousands of positions records how many the cached sampler draws by default (the rest take
    the mean): the default follows it, an explicit autoregressive wins, a bad record is a WeightsError."""
    model, runtime = exported
    monkeypatch.setitem(runtime.meta["cache"], "autoregressive", 6)
    assert runtime.sampling_plan() == (True, 6, 0.0)
    assert runtime.sampling_plan(autoregressive=9) == (True, 9, 0.0)
    assert runtime.sampling_plan(cache=False)[1] == pt_plugin.sampling.DEFAULT_AUTOREGRESSIVE
    p, v, q = observed(model.cfg, 4, 10)
    drawn = runtime.sample(p, v, q, 2, seed=3)
    np.testing.assert_array_equal(drawn, runtime.sample(p, v, q, 2, seed=3, autoregressive=6))
    for bad in (0, "many", True):
        monkeypatch.setitem(runtime.meta["cache"], "autoregressive", bad)
        with pytest.raises(pt_plugin.WeightsError, match="cache.autoregressive must be a whole number >= 1"):
            runtime.sample(p, v, q, seed=0)


def test_bad_cache_requests_are_refused(exported, tmp_path, monkeypatch):
    model, runtime = exported
    p, v, q = observed(model.cfg, 4, 10)
    with pytest.raises(InputError, match="cache must be True, False or None"):
        runtime.sample(p, v, q, cache="yes")
    plain = tmp_path / "plain"
    export(model, {"config": {"model": {}, "train": {}}, "step": 0}, plain, "plain",
           kind={1: "curve", 2: "image", 3: "volume"}[model.cfg.pos_dim])
    with pytest.raises(InputError, match="has no cache graphs"):
        pt_plugin.load(plain, device="cpu").sample(p, v, q, cache=True)
    assert pt_plugin.load(plain, device="cpu").sample(p, v, q, seed=0).shape == (1, 10, model.cfg.val_dim)
    monkeypatch.setenv("PT_PLUGIN_MAX_MEMORY_GB", "1e-6")
    with pytest.raises(InputError, match="caching keys and values"):
        runtime.sample(p, v, q, cache=True)


def test_the_weights_registry_lists_the_cache_graphs(exported, tmp_path):
    """A bundled model's context.onnx and step.onnx are registered (sha256 checked at load) like its other graphs."""
    import shutil

    from export.onnx.registry import write_registry

    _, runtime = exported
    shutil.copytree(runtime.path, tmp_path / "m")
    listed = {line.split()[0] for line in write_registry(tmp_path)}
    assert {"m/context.onnx", "m/step.onnx", "m/encoder.onnx", "m/model.json"} <= listed


def test_the_command_line_samples_over_the_cache(tmp_path):
    """`pt-plugin sample --buffer-size N` draws over the cache graphs; `--no-cache --buffer-size` is refused."""
    from PIL import Image

    from cli_helpers import cli, refused
    from export.onnx.cache_graphs import main as add_cache_graphs
    from export.onnx.graphs import main as export_graphs

    torch.manual_seed(0)
    model = PixelTransformer(CONFIGS["image"]).eval()
    ck = tmp_path / "model.pt"
    torch.save({"config": {"model": vars(model.cfg), "train": {"buffer_max": 8}}, "model": model.state_dict(),
                "step": 0}, ck)
    folder = tmp_path / "m"
    assert export_graphs([str(ck), "--out", str(folder), "--grid", "12,12", "--kind", "image", "--sizes", "1,7"]) == 0
    assert add_cache_graphs([str(ck), "--into", str(folder)]) == 0
    assert pt_plugin.load(folder, device="cpu").buffer_plan() == 8  # the checkpoint's train.buffer_max
    Image.fromarray((np.random.default_rng(0).random((12, 12)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    r = cli("sample", tmp_path / "in.png", "--model", folder, "--observed", "20", "-n", "2", "--buffer-size", "3",
            "--out", tmp_path / "s.png", "--yes")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.png").is_file()
    refused(cli("sample", tmp_path / "in.png", "--model", folder, "--no-cache", "--buffer-size", "3"),
            "applies to cached sampling only")


def test_re_encoding_in_groups_draws_the_same(exported):
    """The grown sets go through context.onnx in groups that fit the attention budget: same draws either way."""
    model, runtime = exported
    p, v, q = observed(model.cfg, 6, 30)
    whole = runtime.sample(p, v, q, 4, seed=3, cache=True, buffer_size=5)
    budget = runtime.attention_budget
    try:
        runtime.attention_budget = 1  # one sample per context.onnx call
        grouped = runtime.sample(p, v, q, 4, seed=3, cache=True, buffer_size=5)
    finally:
        runtime.attention_budget = budget
    np.testing.assert_allclose(grouped, whole, atol=1e-6)


@pytest.mark.parametrize("buffer_size, fraction", [(None, 0.0), (16, 0.0), (16, 0.05)])
def test_the_cost_model_reads_the_caches_the_sampler_feeds(exported, buffer_size, fraction):
    """pt_plugin.cost prices each step.onnx call by the cache slots it reads: the slots the sampler really feeds,
    call by call, and a context.onnx call wherever the sampler encodes the grown set again."""
    from pt_plugin import cost

    model, m = exported
    p, v, q = observed(model.cfg, 5, 150)
    fed: list[int | None] = []
    step_run, context_run = m.step_graph.run, m.context_graph.run

    def step(feeds, *args, **kwargs):
        fed.append(feeds["cache_mask"].shape[1])
        return step_run(feeds, *args, **kwargs)

    def context(feeds, *args, **kwargs):
        fed.append(None)
        return context_run(feeds, *args, **kwargs)

    m.step_graph.run, m.context_graph.run = step, context
    try:
        m.sample(p, v, q, num_samples=2, seed=0, cache=True, autoregressive=150, step_fraction=fraction,
                 buffer_size=buffer_size)
    finally:
        m.step_graph.run, m.context_graph.run = step_run, context_run
    sizes = step_sizes(5, 150, fraction)
    assert fed[0] is None and len(fed) == len(sizes)  # S encoded first, then one call per further step
    assert fed[1:] == cost.cache_rooms(5, sizes, 5 + 150, buffer_size)
