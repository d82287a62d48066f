"""TernaryLinear, the tritter:: custom ops and their gradients against the
pure-PyTorch formula (float64), opcheck, conversion and packed files."""
import math

import numpy as np

import pytest

torch = pytest.importorskip("torch")

import tritter_accel as ta  # noqa: E402
from tritter_accel.torch import (TernaryLinear, TernaryLinearInference, linear_weight_bytes,  # noqa: E402
                                 load_packed, save_packed, ternarize)
from tritter_accel.torch import ops  # noqa: E402
from tritter_accel.torch.linear import (QuantSpec, expand_scales, fake_quant_reference,  # noqa: E402
                                        ternary_linear_reference, ternary_quantize_reference)

U = 2.0 ** -24

# (mode, per_channel, group_size): every mode at every granularity
CONFIGS = [(m, pc, g) for m in ("bittorch", "bitnet") for (pc, g) in ((True, None), (False, None), (None, 16))]


def cfg_id(c):
    m, pc, g = c
    return f"{m}-{'group' if g else ('row' if pc else 'tensor')}"


def seeded(*shape, seed=0, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def lib_quantized(layer):
    """(trits float64, per-weight scales float64) the library quantized to."""
    packed, scales = layer.quantized()
    s = layer.spec
    t = ops.unpack_2bit(packed, layer.in_features).double()
    return t, expand_scales(scales.double(), layer.out_features, layer.in_features, s.granularity, s.group_size)


def make(cfg, n_in=70, n_out=37, bias=True, seed=1, backend="cpu"):
    mode, pc, g = cfg
    torch.manual_seed(seed)
    return TernaryLinear(n_in, n_out, bias=bias, per_channel=pc, group_size=g, mode=mode, backend=backend)


# ---------------------------------------------------------------- quantizer

@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_library_quantizer_equals_the_reference_rule(cfg):
    layer = make(cfg, n_in=333, n_out=29)
    packed, scales = layer.quantized()
    t_ref, s_ref = ternary_quantize_reference(layer.weight.detach(), layer.spec)
    assert torch.allclose(scales, s_ref.float(), rtol=2e-6, atol=0)
    t_lib = ops.unpack_2bit(packed, 333).float()
    diff = (t_lib != t_ref)
    if layer.spec.threshold < 0:
        # AbsMean scales may differ in the last bit (summation order): only
        # weights within a hair of the rounding boundary may flip
        q = layer.weight.detach() / (expand_scales(scales, 29, 333, layer.spec.granularity,
                                                   layer.spec.group_size) + 1e-5)
        assert torch.all((q[diff].abs() - 0.5).abs() < 1e-5)
    else:
        assert not diff.any()  # AbsMax: exact scales, exact rule
    assert set(torch.unique(t_lib).tolist()) <= {-1.0, 0.0, 1.0}


def test_get_quantized_weight_matches_bittorch_shapes():
    for pc, shape in ((True, (37,)), (False, ())):
        layer = make(("bittorch", pc, None))
        t, s = layer.get_quantized_weight()
        assert t.shape == (37, 70) and s.shape == shape
        assert set(torch.unique(t).tolist()) <= {-1.0, 0.0, 1.0}
        # BitTorch's rule: scale = max|w|, t = sign(w) where |w| > 0.05 * scale
        w = layer.weight.detach()
        smax = w.abs().amax(dim=1, keepdim=True) if pc else w.abs().amax()
        assert torch.equal(s, smax.reshape(shape))
        assert torch.equal(t, torch.sign(w) * (w.abs() > 0.05 * smax))
    t, s = make(("bitnet", None, 16)).get_quantized_weight()
    assert s.shape == (37, 5)


# ---------------------------------------------------------------- forward and gradients vs float64

def reference64(layer, x, t, sf):
    """The STE formula in float64 with the library's own quantized weights."""
    x64 = x.detach().double().requires_grad_(True)
    w64 = layer.weight.detach().double().requires_grad_(True)
    b64 = None if layer.bias is None else layer.bias.detach().double().requires_grad_(True)
    wq = t * sf
    w_ste = w64 + (wq - w64).detach()
    xe = x64
    if layer.spec.act_mode == ops.ACT_INT8:
        # the library quantizes activations in float32: same here, then widen
        xe = x64 + (ops.fake_quant_activations(x.detach()).double() - x64).detach()
    y = torch.nn.functional.linear(xe, w_ste, b64)
    return y, x64, w64, b64, xe.detach()


@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
@pytest.mark.parametrize("batch", [1, 2, 9, 33])
def test_forward_and_gradients_equal_the_float64_formula(cfg, batch):
    layer = make(cfg, seed=batch)
    x = seeded(batch, 70, seed=100 + batch).requires_grad_(True)
    y = layer(x)
    gy = seeded(batch, 37, seed=200 + batch)
    y.backward(gy)
    t, sf = lib_quantized(layer)
    y64, x64, w64, b64, xe = reference64(layer, x, t, sf)
    y64.backward(gy.double())
    wq = (t * sf).abs()
    # forward: FMA sums of K products, then the bias add (module docs of train.rs)
    bound = (70 + 2) * U * (xe.abs() @ wq.t() + layer.bias.detach().double().abs()) * 1.001
    assert torch.all((y.double() - y64).abs() <= bound), (y.double() - y64).abs().max()
    # grad_x = gy · (s·t): sums of 37 products
    bound = (37 + 2) * U * (gy.double().abs() @ wq) * 1.001
    assert torch.all((x.grad.double() - x64.grad).abs() <= bound)
    # grad_w = gyᵀ · x_eff (torch's own f32 GEMM: any order, twice the length as slack)
    bound = 2 * (batch + 2) * U * (gy.double().abs().t() @ xe.abs()) + 1e-30
    assert torch.all((layer.weight.grad.double() - w64.grad).abs() <= bound)
    assert torch.allclose(layer.bias.grad.double(), b64.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_python_backend_equals_the_library(cfg):
    lib = make(cfg, backend="cpu")
    py = make(cfg, backend="python")
    py.load_state_dict(lib.state_dict())
    x = seeded(5, 3, 70, seed=7)
    assert torch.allclose(lib(x), py(x), rtol=1e-4, atol=1e-5)


def test_gradcheck_of_the_reference_formula():
    # in f32-activation mode the STE formula is the true derivative w.r.t. x and bias
    spec = QuantSpec.for_mode("bittorch", 0.05, True, None)
    w = seeded(6, 10, seed=3, dtype=torch.float64)
    x = seeded(4, 10, seed=4, dtype=torch.float64).requires_grad_(True)
    b = seeded(6, seed=5, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, b: ternary_linear_reference(x, w, b, spec), (x, b))
    # and the STE weight gradient is gyᵀ · x
    w.requires_grad_(True)
    y = ternary_linear_reference(x, w, b, spec)
    gy = seeded(4, 6, seed=6, dtype=torch.float64)
    y.backward(gy)
    assert torch.allclose(w.grad, gy.t() @ x.detach())


def test_bf16_activations():
    layer = make(("bittorch", True, None))
    x = seeded(8, 70, seed=9).bfloat16().requires_grad_(True)
    y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and layer.weight.grad.dtype == torch.float32
    t, sf = lib_quantized(layer)
    want = x.detach().double() @ (t * sf).t() + layer.bias.detach().double()
    assert torch.allclose(y.double(), want, rtol=2 ** -7, atol=1e-3)


def test_any_batch_shape_and_strides():
    layer = make(("bittorch", True, None))
    x = seeded(3, 4, 70, seed=11)
    y = layer(x)
    assert y.shape == (3, 4, 37)
    xt = seeded(70, 6, seed=12).t()  # non-contiguous [6, 70] view: crosses by its strides
    assert not xt.is_contiguous()
    assert torch.equal(layer(xt), layer(xt.contiguous()))


def test_quantize_false_is_nn_linear():
    layer = TernaryLinear(20, 7, quantize=False)
    ref = torch.nn.Linear(20, 7)
    ref.load_state_dict(layer.state_dict())
    x = seeded(3, 20)
    assert torch.equal(layer(x), ref(x))


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        TernaryLinear(4, 4, threshold_factor=1.5)
    with pytest.raises(ValueError):
        TernaryLinear(4, 4, mode="int4")
    with pytest.raises(ValueError):
        TernaryLinear(4, 4, backend="tpu")
    with pytest.raises(ValueError):
        TernaryLinear(4, 4, group_size=0)


# ---------------------------------------------------------------- caching and the batch-1 path

def test_eval_cache_follows_weight_updates_and_batch1_gemv():
    layer = make(("bittorch", True, None))
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    x1 = seeded(1, 70, seed=13)
    with torch.no_grad():
        y_gemv = layer(x1)                               # cached matrix, GEMV
        y_op = torch.ops.tritter.ternary_linear(x1, layer.weight, *layer.quantized(), layer.bias,
                                                layer.spec.granularity, 0, ops.ACT_F32)
    t, sf = lib_quantized(layer)
    want = x1.double() @ (t * sf).t() + layer.bias.detach().double()
    bound = 72 * U * (x1.double().abs() @ (t * sf).abs().t() + layer.bias.detach().double().abs()) * 1.001
    assert torch.all((y_gemv.double() - want).abs() <= bound)
    assert torch.all((y_op.double() - want).abs() <= bound)
    layer(seeded(4, 70, seed=14)).sum().backward()
    opt.step()                                           # bumps weight._version
    with torch.no_grad():
        y_after = layer(x1)
        t2, sf2 = lib_quantized(layer)
    want2 = x1.double() @ (t2 * sf2).t() + layer.bias.detach().double()
    assert torch.allclose(y_after.double(), want2, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(y_after, y_gemv)


# ---------------------------------------------------------------- custom ops

def test_opcheck():
    from torch.library import opcheck

    torch.manual_seed(0)
    # every opcheck test on the first configuration; the others skip the
    # slow AOT-dispatch tests (the same op code under other arguments)
    cheap = ("test_schema", "test_autograd_registration", "test_faketensor")
    for i, (gran, gs, act) in enumerate(((ops.GRANULARITIES["row"], 0, ops.ACT_F32),
                                         (ops.GRANULARITIES["tensor"], 0, ops.ACT_INT8),
                                         (ops.GRANULARITIES["group"], 8, ops.ACT_F32))):
        kw = {} if i == 0 else {"test_utils": cheap}
        w = torch.randn(12, 20)
        method = ops.METHODS["absmax" if act == ops.ACT_F32 else "absmean"]
        thr = 0.05 if act == ops.ACT_F32 else -1.0
        opcheck(torch.ops.tritter.quantize_weight.default, (w, method, gran, gs, thr, 1e-5), **kw)
        packed, scales = torch.ops.tritter.quantize_weight(w, method, gran, gs, thr, 1e-5)
        for x, b in ((torch.randn(5, 20, requires_grad=True), torch.randn(12, requires_grad=True)),
                     (torch.randn(2, 3, 20, requires_grad=True), None)):
            wp = w.clone().requires_grad_(True)
            opcheck(torch.ops.tritter.ternary_linear.default, (x, wp, packed, scales, b, gran, gs, act), **kw)
        opcheck(torch.ops.tritter.ternary_linear_grad_input.default, (torch.randn(4, 12), packed, scales, 20, gran, gs),
                **kw)


def test_torch_compile_fullgraph_matches_eager():
    """inductor (C++ codegen: the slow part) on a bittorch-mode model; both
    modes through dynamo + AOT autograd without codegen ("aot_eager")."""
    import time

    def check(mode, backend):
        torch.manual_seed(0)

        def model():
            return torch.nn.Sequential(TernaryLinear(24, 32, mode=mode), torch.nn.ReLU(),
                                       TernaryLinear(32, 8, mode=mode, group_size=8))

        eager, comp = model(), model()
        comp.load_state_dict(eager.state_dict())
        t0 = time.perf_counter()
        cm = torch.compile(comp, fullgraph=True, backend=backend)
        x = torch.randn(6, 24)
        y_c = cm(x)
        y_c.square().sum().backward()
        print(f"torch.compile({backend}, fullgraph) {mode}: first forward+backward {time.perf_counter() - t0:.1f} s")
        y_e = eager(x)
        y_e.square().sum().backward()
        assert torch.allclose(y_c, y_e, rtol=1e-5, atol=1e-6)
        for pc, pe in zip(comp.parameters(), eager.parameters()):
            assert torch.allclose(pc.grad, pe.grad, rtol=1e-4, atol=1e-6)

    check("bittorch", "inductor")
    check("bitnet", "aot_eager")


# ---------------------------------------------------------------- devices

def test_cuda_tensors_get_a_clear_error():
    layer = make(("bittorch", True, None))
    with pytest.raises(ta.CudaUnavailableError, match="CUDA unavailable"):
        TernaryLinear(4, 4, backend="cuda")(torch.randn(2, 4))
    # a tensor on another device never reaches the kernels
    with pytest.raises(ta.CudaUnavailableError, match="CUDA unavailable"):
        layer(torch.randn(2, 70, device="meta"))
    # and the library refuses a CUDA DLPack descriptor by itself
    x = torch.randn(3, 70)
    packed, scales = layer.quantized()
    y = torch.empty(3, 37)
    xv = ops.dl_tensor(x)
    xv.tensor.device = ta._c_api.tritter_dl_device_t(ta._c_api.TRITTER_DL_CUDA, 0)
    pv, sv, yv = ops.dl_tensor(packed), ops.dl_tensor(scales), ops.dl_tensor(y)
    with pytest.raises(ta.CudaUnavailableError):
        ta._lib.call("tritter_ternary_linear_dlpack", pv.ref, 70, sv.ref, layer.spec.granularity, 0, xv.ref, None,
                     0, yv.ref)
    if torch.cuda.is_available():
        with pytest.raises(ta.CudaUnavailableError, match="CUDA unavailable"):
            layer.cuda()(torch.randn(2, 70, device="cuda"))


def test_python_backend_runs_on_any_device():
    layer = make(("bittorch", True, None), backend="python").to("meta")
    assert layer(torch.randn(2, 70, device="meta")).shape == (2, 37)


# ---------------------------------------------------------------- inference layer, conversion, files

@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_inference_layer_equals_the_trained_layer(cfg):
    layer = make(cfg, n_in=300, n_out=40)
    inf = TernaryLinearInference.from_linear(layer)
    x = seeded(7, 300, seed=21)
    with torch.no_grad():
        y_t = layer(x)
    y_i = inf(x)
    t, sf = lib_quantized(layer)
    xe = fake_quant_reference(x.double()) if layer.spec.act_mode == ops.ACT_INT8 else x.double()
    mag = xe.abs() @ (t * sf).abs().t() + layer.bias.detach().double().abs()
    for y in (y_t, y_i):
        assert torch.all((y.double() - (xe @ (t * sf).t() + layer.bias.detach().double())).abs()
                         <= 2 * 302 * U * mag + 1e-6)
    assert inf.act == ("int8" if cfg[0] == "bitnet" else "f32")
    # packed weights only: 2 bits a weight, rows padded to whole 256-weight blocks
    nscales = {"tensor": 1, "row": 40, "group": 40 * 19}[inf.granularity]
    assert inf.weight_memory_bytes() == 40 * 512 // 4 + 4 * nscales
    sd = inf.state_dict()
    assert sd["weight"].dtype == torch.uint8 and sd["weight"].shape == (40, 75)
    inf2 = TernaryLinearInference(300, 40, act=inf.act, granularity=inf.granularity, group_size=inf.group_size)
    inf2.load_state_dict(sd)
    assert torch.equal(inf2(x), y_i)


def test_ternarize_include_exclude_and_memory():
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("enc", torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512)))
    model.add_module("head", torch.nn.Linear(512, 10))
    x = seeded(3, 256)
    f32_bytes = linear_weight_bytes(model)
    ternarize(model, include="enc.*", exclude="enc.2")
    assert model._tritter_ternarized == ["enc.0"]
    assert isinstance(model.enc[0], TernaryLinear) and type(model.enc[2]) is torch.nn.Linear
    ternarize(model, exclude=lambda n: n == "head")
    assert isinstance(model.enc[2], TernaryLinear) and type(model.head) is torch.nn.Linear
    assert model(x).shape == (3, 10)
    inf = ternarize(torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.Linear(512, 512)), inference=True)
    assert all(isinstance(m, TernaryLinearInference) for m in inf)
    # converted linear weights: <= 1/14 of f32
    assert linear_weight_bytes(inf) * 14 <= (256 * 512 + 512 * 512) * 4
    assert f32_bytes == (256 * 512 + 512 * 512 + 512 * 10) * 4


def test_save_and_load_packed_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(TernaryLinear(40, 30, mode="bitnet"), torch.nn.ReLU(),
                                TernaryLinear(30, 9, group_size=8, bias=False))
    path = tmp_path / "m.safetensors"
    assert save_packed(model, path) == ["0", "2"]
    from tritter_accel.torch.convert import read_safetensors

    tensors, meta = read_safetensors(path)
    assert meta["format"] == "tritter-accel" and meta["format_version"] == "1"
    assert tensors["0.weight"].dtype == torch.uint8 and tensors["0.weight"].shape == (30, 10)
    assert tensors["2.weight.scales"].shape == (9, 4)
    assert '"granularity": "group"' in meta["tritter:2.weight"]
    # the library's own checkpoint loader reads the file: the same s·t per layer
    ck = ta.open_checkpoint(path)
    for name, layer in (("0", model[0]), ("2", model[2])):
        t, s = layer.get_quantized_weight()
        if s.dim() == 2:  # per group
            s = s.repeat_interleave(layer.spec.group_size, dim=1)[:, :layer.in_features]
        elif s.dim() == 1:  # per row
            s = s.reshape(-1, 1)
        got = ck.ternary(f"{name}.weight").dequantize()
        assert got.shape == (layer.out_features, layer.in_features)
        assert np.allclose(got, (t * s).numpy(), rtol=1e-6, atol=0)
        assert np.array_equal(np.sign(got), t.numpy())
    # into inference layers: the same outputs as the trained model in eval
    inf = torch.nn.Sequential(TernaryLinearInference(40, 30, act="int8"), torch.nn.ReLU(),
                              TernaryLinearInference(30, 9, bias=False))
    assert load_packed(inf, path) == ["0", "2"]
    x = seeded(4, 40, seed=3)
    with torch.no_grad():
        assert torch.allclose(inf(x), model(x), rtol=1e-4, atol=1e-5)
    # into TernaryLinear layers: latent weights = s·t, which quantize back to the same bytes
    model2 = torch.nn.Sequential(TernaryLinear(40, 30, mode="bitnet"), torch.nn.ReLU(),
                                 TernaryLinear(30, 9, group_size=8, bias=False))
    load_packed(model2, path)
    for a, b in zip(ternary_layers_of(model), ternary_layers_of(model2)):
        assert torch.equal(a.quantized()[0], b.quantized()[0])
    with pytest.raises(KeyError):
        load_packed(torch.nn.Sequential(TernaryLinear(40, 30)), path)


def ternary_layers_of(model):
    return [m for m in model.modules() if isinstance(m, TernaryLinear)]


def test_lazy_exports_and_version():
    import tritter_accel.torch as tt

    assert tt.TernaryLinear is TernaryLinear
    assert ta.version() == ta.__version__
    assert math.isfinite(float(TernaryLinear(3, 2)(torch.ones(1, 3)).sum().detach()))
