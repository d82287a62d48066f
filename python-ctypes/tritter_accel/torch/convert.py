"""Model conversion and packed-weight files.

* ``ternarize(model, include=None, exclude=None, inference=False, **kw)``:
  replaces a model's ``nn.Linear`` layers in place by ``TernaryLinear``
  (latent weights = the old weights) or, with ``inference=True``, by
  ``TernaryLinearInference`` (packed weights only).
* ``save_packed(model, path)`` / ``load_packed(model, path)``: the ternary
  layers' packed weights as a safetensors file in the library's own layout
  (format ``tritter-accel`` version 1, the one ``src/io`` reads): for a layer
  ``name``, ``name.weight`` (U8 ``[out, ceil(in/4)]``, canonical 2-bit),
  ``name.weight.scales`` (F32 ``[scale_rows, groups]``), ``name.bias`` (F32),
  and ``__metadata__["tritter:name.weight"]`` = ``{"shape", "granularity",
  "group_size", "layout": "2bit", "compute": "2bit"}``; the activation mode of
  each layer under ``__metadata__["tritter-torch:name"]``.
"""
import fnmatch
import json
import struct

import torch
import torch.nn as nn

from .linear import TernaryLinear, TernaryLinearInference

__all__ = ["ternarize", "save_packed", "load_packed", "ternary_layers", "linear_weight_bytes"]

FORMAT_NAME = "tritter-accel"
FORMAT_VERSION = "1"

_ST_DTYPES = {torch.uint8: "U8", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int8: "I8"}
_ST_BACK = {v: k for k, v in _ST_DTYPES.items()}


def _matches(name, patterns):
    if patterns is None:
        return None
    if callable(patterns):
        return bool(patterns(name))
    if isinstance(patterns, str):
        patterns = [patterns]
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def ternarize(model, include=None, exclude=None, inference=False, **kwargs):
    """Swaps every ``nn.Linear`` of ``model`` whose qualified name matches
    ``include`` (glob patterns, e.g. ``"layers.*.mlp.*"``, or a predicate;
    ``None`` = all) and not ``exclude`` for a ternary layer, in place.

    ``kwargs`` go to ``TernaryLinear`` (``mode``, ``threshold_factor``,
    ``per_channel``, ``group_size``, ``backend``). Returns ``model``; the
    names swapped are in ``model._tritter_ternarized``.
    """
    done = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is not nn.Linear:
                continue
            if include is not None and not _matches(full, include):
                continue
            if exclude is not None and _matches(full, exclude):
                continue
            layer = TernaryLinear.from_linear(child, **kwargs)
            if inference:
                layer = TernaryLinearInference.from_linear(layer)
            setattr(module, child_name, layer)
            done.append(full)
    model._tritter_ternarized = done
    return model


def ternary_layers(model):
    """(qualified name, layer) of every TernaryLinear / TernaryLinearInference."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (TernaryLinear, TernaryLinearInference))]


def linear_weight_bytes(model):
    """Bytes of the linear layers' weights as they are held for inference:
    f32 ``nn.Linear`` weights at their size, ``TernaryLinear`` as packed
    (2 bits a weight + scales, what ``TernaryLinearInference`` would hold),
    ``TernaryLinearInference`` as it holds them."""
    total = 0
    for _, m in model.named_modules():
        if isinstance(m, TernaryLinearInference):
            total += m.weight_memory_bytes()
        elif isinstance(m, TernaryLinear):
            rows, cols = m.out_features, m.in_features
            total += rows * ((cols + 3) // 4) + 4 * _num_scales(m)
        elif isinstance(m, nn.Linear):
            total += m.weight.numel() * m.weight.element_size()
    return total


def _num_scales(layer):
    g = layer.spec.granularity_name
    if g == "tensor":
        return 1
    if g == "row":
        return layer.out_features
    return layer.out_features * -(-layer.in_features // layer.spec.group_size)


def _layer_tensors(name, layer):
    if isinstance(layer, TernaryLinearInference):
        packed, scales = layer.packed()
        gran, gs, act = layer.granularity, layer.group_size or 0, layer.act
    else:
        packed, scales = layer.quantized()
        gran, gs, act = layer.spec.granularity_name, layer.spec.group_size, layer.spec.act_name
    tensors = {f"{name}.weight": packed.contiguous(), f"{name}.weight.scales": scales.float().contiguous()}
    if layer.bias is not None:
        tensors[f"{name}.bias"] = layer.bias.detach().float().cpu().contiguous()
    meta = {
        f"tritter:{name}.weight": json.dumps({"shape": [layer.out_features, layer.in_features], "granularity": gran,
                                              "group_size": int(gs), "layout": "2bit", "compute": "2bit"}),
        f"tritter-torch:{name}": json.dumps({"act": act, "bias": layer.bias is not None}),
    }
    return tensors, meta


def save_packed(model, path, metadata=None):
    """Writes the packed weights of every ternary layer of ``model`` to ``path``
    (safetensors, the library's layout; see the module docs). Returns the
    names of the layers written."""
    tensors, meta = {}, {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    for k, v in (metadata or {}).items():
        meta[str(k)] = str(v)
    layers = ternary_layers(model)
    for name, layer in layers:
        t, m = _layer_tensors(name, layer)
        tensors.update(t)
        meta.update(m)
    write_safetensors(path, tensors, meta)
    return [n for n, _ in layers]


def load_packed(model, path, strict=True):
    """Loads packed weights written by ``save_packed`` into ``model``'s ternary
    layers: ``TernaryLinearInference`` layers take the packed weights,
    ``TernaryLinear`` layers get the dequantized values ``s·t`` as latent
    weights. With ``strict``, every ternary layer must be in the file and
    every layer of the file in the model."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a {FORMAT_NAME} file (format {meta.get('format')!r})")
    layers = dict(ternary_layers(model))
    in_file = {k[len("tritter:"):-len(".weight")] for k in meta if k.startswith("tritter:") and k.endswith(".weight")}
    if strict:
        missing, extra = set(layers) - in_file, in_file - set(layers)
        if missing or extra:
            raise KeyError(f"layers missing from the file: {sorted(missing)}; not in the model: {sorted(extra)}")
    for name in sorted(in_file & set(layers)):
        layer = layers[name]
        info = json.loads(meta[f"tritter:{name}.weight"])
        rows, cols = info["shape"]
        if (rows, cols) != (layer.out_features, layer.in_features):
            raise ValueError(f"{name}: file has shape {[rows, cols]}, the layer "
                             f"[{layer.out_features}, {layer.in_features}]")
        packed = tensors[f"{name}.weight"]
        scales = tensors[f"{name}.weight.scales"]
        bias = tensors.get(f"{name}.bias")
        gran, gs = info["granularity"], info.get("group_size") or None
        if isinstance(layer, TernaryLinearInference):
            layer.set_packed(packed, scales, bias, granularity=gran, group_size=gs)
        else:
            from . import ops
            from .linear import expand_scales

            t = ops.unpack_2bit(packed, cols).float()
            g = ops.GRANULARITIES[gran]
            w = t * expand_scales(scales, rows, cols, g, gs or 0)
            with torch.no_grad():
                layer.weight.copy_(w)
                if bias is not None and layer.bias is not None:
                    layer.bias.copy_(bias)
            layer.invalidate_cache()
    return sorted(in_file & set(layers))


# ---------------------------------------------------------------- safetensors (the format is small)

def write_safetensors(path, tensors, metadata):
    """Writes ``{name: tensor}`` (CPU, contiguous) and string metadata."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _ST_DTYPES:
            raise TypeError(f"{name}: dtype {t.dtype} not supported")
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """``({name: tensor}, metadata)`` of a safetensors file (validated offsets)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: truncated (no header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        dt = _ST_BACK.get(info["dtype"])
        if dt is None:
            raise ValueError(f"{path}: tensor {name}: dtype {info['dtype']} not supported")
        a, b = info["data_offsets"]
        shape = info["shape"]
        numel = 1
        for s in shape:
            numel *= s
        if not (0 <= a <= b <= len(body)) or b - a != numel * torch.empty((), dtype=dt).element_size():
            raise ValueError(f"{path}: tensor {name}: bad data offsets {[a, b]}")
        t = torch.frombuffer(bytearray(body[a:b]), dtype=torch.uint8) if b > a else torch.empty(0, dtype=torch.uint8)
        out[name] = t.view(dt).reshape(shape)
    return out, meta
