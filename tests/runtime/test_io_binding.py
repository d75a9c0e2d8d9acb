"""IOBinding, the attention budget, and CUDA parity (the CUDA tests skip where no GPU is usable)."""
import numpy as np
import onnxruntime as ort
import pytest

import pt_plugin
from pt_plugin import grid_positions, observe_random
from pt_plugin.sessions import cuda_driver_problem

CUDA_PROBLEM = cuda_driver_problem()
needs_cuda = pytest.mark.skipif(CUDA_PROBLEM is not None, reason=f"no CUDA here: {CUDA_PROBLEM}")


@pytest.fixture(scope="module")
def bound_model(tiny_export):
    return pt_plugin.load(model_path=tiny_export, device="cpu", io_binding=True)


def test_io_binding_is_off_on_the_cpu_by_default(runtime_model, bound_model):
    assert runtime_model.info.io_binding is False and bound_model.info.io_binding is True


def test_io_binding_keeps_the_memory_as_an_ortvalue(bound_model, test_image):
    ctx = bound_model.encode(*observe_random(test_image, 30, seed=0))
    (_, memory, _), = ctx.groups
    assert isinstance(memory, ort.OrtValue)
    assert ctx.memory.shape[:2] == (1, 30)  # the host copy is still there when asked for


def test_io_binding_answers_like_plain_numpy_io(runtime_model, bound_model, test_image):
    pos, val = observe_random(test_image, 40, seed=1)
    q = grid_positions(28, 28)
    a, b = runtime_model.query((pos, val), q), bound_model.query((pos, val), q)
    np.testing.assert_allclose(b.probs, a.probs, atol=1e-6)
    np.testing.assert_allclose(b.mean(), a.mean(), atol=1e-6)
    sets = [observe_random(test_image, k, seed=k) for k in (3, 50)]
    np.testing.assert_allclose(bound_model.mean(bound_model.encode_batch(sets), q),
                               runtime_model.mean(runtime_model.encode_batch(sets), q), atol=1e-6)


def test_io_binding_samples_like_plain_numpy_io(runtime_model, bound_model, test_image):
    pos, val = observe_random(test_image, 64, seed=2)
    kw = dict(num_samples=2, seed=5, step_fraction=0.1)
    np.testing.assert_allclose(bound_model.sample_images(pos, val, **kw), runtime_model.sample_images(pos, val, **kw),
                               atol=1e-5)


def test_attention_budget_splits_work_without_changing_answers(tiny_export, runtime_model, test_image):
    """A small budget encodes 2 sets per call and decodes few queries per call: same numbers, more calls."""
    small = pt_plugin.load(model_path=tiny_export, device="cpu")
    heads, k = small.heads, 60
    small.attention_budget = heads * k * k * 2
    sets = [observe_random(test_image, k, seed=s) for s in range(5)]
    ctx = small.encode_batch(sets)
    assert [g[0] for g in ctx.groups] == [slice(0, 2), slice(2, 4), slice(4, 5)]
    q = grid_positions(28, 28)
    pieces = list(small._decode_chunks(ctx, np.broadcast_to(q, (5,) + q.shape), 4096))
    widths = {rows.start: cols.stop - cols.start for rows, cols, _ in pieces if cols.start == 0}
    assert widths == {0: k, 2: k, 4: 2 * k}  # budget // (heads * sets in the group * k) queries per call
    ref_ctx = runtime_model.encode_batch(sets)
    assert len(ref_ctx.groups) == 1
    np.testing.assert_allclose(small.mean(ctx, q), runtime_model.mean(ref_ctx, q), atol=1e-6)
    np.testing.assert_allclose(ctx.memory, ref_ctx.memory, atol=1e-6)
    d_small, d_ref = small.query(ctx, np.broadcast_to(q, (5,) + q.shape)), runtime_model.query(ref_ctx, q)
    np.testing.assert_allclose(d_small.log_prob(np.full((5, len(q), 1), 0.5, np.float32)),
                               d_ref.log_prob(np.full((5, len(q), 1), 0.5, np.float32)), atol=1e-4)


@needs_cuda
@pytest.mark.parametrize("io_binding", [True, False])
def test_cuda_matches_cpu(tiny_export, runtime_model, test_image, io_binding):
    gpu = pt_plugin.load(model_path=tiny_export, device="cuda", io_binding=io_binding)
    assert gpu.info.providers[0] == "CUDAExecutionProvider" and gpu.info.io_binding is io_binding
    pos, val = observe_random(test_image, 64, seed=3)
    q = grid_positions(28, 28)
    a, b = runtime_model.query((pos, val), q), gpu.query((pos, val), q)
    np.testing.assert_allclose(b.mean(), a.mean(), atol=1e-3)
    np.testing.assert_allclose(b.probs, a.probs, atol=1e-3)
    sets = [observe_random(test_image, k, seed=k) for k in (5, 200)]
    np.testing.assert_allclose(gpu.mean(gpu.encode_batch(sets), q),
                               runtime_model.mean(runtime_model.encode_batch(sets), q), atol=1e-3)
    draws = gpu.sample_images(pos, val, num_samples=2, seed=1, step_fraction=0.1)
    assert draws.shape == (2, 28, 28, 1) and np.isfinite(draws).all()


@needs_cuda
def test_cuda_keeps_the_memory_on_the_device(tiny_export, test_image):
    gpu = pt_plugin.load(model_path=tiny_export, device="cuda")
    assert gpu.info.io_binding is True  # the default under CUDA
    (_, memory, _), = gpu.encode(*observe_random(test_image, 30, seed=0)).groups
    assert isinstance(memory, ort.OrtValue) and memory.device_name().lower() == "cuda"
