"""``tp3nets list`` and ``tp3nets info``."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import _acc, _default_member, _input_shape, _json, _members, _num_params


def _cmd_list(args: argparse.Namespace) -> int:
    from ..models import get_model, get_model_weights, list_models

    rows: list[dict[str, Any]] = []
    for name in list_models():
        model = get_model(name)
        try:
            enum_cls: Any = get_model_weights(name)
        except ValueError:
            enum_cls = None
        default = _default_member(name)
        weights = [
            {
                "name": member.name,
                "qualified_name": repr(member),
                "aliases": aliases,
                "file": member.file,
                "acc@1": _acc(member.meta),
            }
            for member, aliases in (_members(enum_cls) if enum_cls is not None else [])
        ]
        rows.append({
            "name": name,
            "class": type(model).__name__,
            "num_params": _num_params(model),
            "input_size": list(_input_shape(model, default)),
            "weights": weights,
        })
    if args.json:
        print(_json(rows))
        return 0
    print(f"{'MODEL':<32} {'PARAMS':>10}  {'INPUT':<8}  {'WEIGHTS':<20} {'MNIST ACC@1':>11}")
    for row in rows:
        shape = "x".join(str(s) for s in row["input_size"])
        lines = row["weights"] or [{"name": "-", "aliases": [], "acc@1": None}]
        for i, w in enumerate(lines):
            label = w["name"] + (f" ({', '.join(w['aliases'])})" if w["aliases"] else "")
            acc = "-" if w["acc@1"] is None else f"{w['acc@1']:.2f}%"
            if i == 0:
                print(f"{row['name']:<32} {row['num_params']:>10,}  {shape:<8}  {label:<20} "
                      f"{acc:>11}")
            else:
                print(f"{'':<32} {'':>10}  {'':<8}  {label:<20} {acc:>11}")
    return 0


def _describe_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_describe_value(v) for v in value)
    return str(value)


def _backends() -> dict[str, Any]:
    """The inference backends this machine has, and the one ``--backend auto`` tries first."""
    from ..deploy import auto_backend, available_backends

    return {"available": list(available_backends()), "auto": auto_backend()}


def _cmd_info(args: argparse.Namespace) -> int:
    from ..models import get_model, get_model_builder, get_model_weights, list_models

    builder = get_model_builder(args.model)
    name = builder.__name__
    model = get_model(name)
    try:
        enum_cls: Any = get_model_weights(name)
    except ValueError:
        enum_cls = None
    default = _default_member(name)
    shape = _input_shape(model, default)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    num_classes = int(getattr(model, "num_classes", 0))
    weights = []
    enums = [(enum_cls, False)] if enum_cls is not None else []
    if f"quantized_{name}" in list_models(quantized=True):
        enums.append((get_model_weights(f"quantized_{name}"), True))  # the int8 set too
    for enum, int8 in enums:
        for member, aliases in _members(enum):
            meta = {k: v for k, v in member.meta.items() if args.history or k != "history"}
            weights.append({"name": repr(member), "aliases": aliases, "file": member.file,
                            "sha256": member.sha256, "quantized": int8, "meta": meta})
    if args.json:
        print(_json({
            "name": name,
            "class": type(model).__name__,
            "num_params": _num_params(model),
            "trainable_params": trainable,
            "input_size": list(shape),
            "num_classes": num_classes,
            "architecture": repr(model),
            "weights": weights,
            "backends": _backends(),
        }))
        return 0
    print(f"{name}: {type(model).__name__}")
    print(f"parameters: {_num_params(model):,} ({trainable:,} trainable)")
    print(f"input: (N, {', '.join(str(s) for s in shape)}) float in [0, 1], light ink on dark")
    print(f"output: (N, {num_classes}) logits")
    backends = _backends()
    tried = [b for b in ("onnxruntime", "torch") if b in backends["available"]]
    print(f"inference backends here: {', '.join(backends['available'])} (--backend auto "
          f"picks {backends['auto']}; it tries {', then '.join(tried)}, then eager, keeping "
          f"the first that agrees with eager)")
    print("architecture:")
    print(repr(model))
    if not weights:
        print("weights: none")
        return 0
    print("weights:")
    for w in weights:
        meta = w["meta"]
        label = w["name"] + (f" ({', '.join(w['aliases'])})" if w["aliases"] else "")
        if w["quantized"]:
            label += f"  [int8, {meta.get('backend', 'x86')} backend: --quantized]"
        print(f"  {label}")
        size = meta.get("file_size")
        size_text = f", {size / 1e6:.2f} MB" if isinstance(size, int) else ""
        print(f"    file: {w['file']}{size_text}, sha256 {w['sha256']}")
        metrics = meta.get("metrics", {})
        test = metrics.get("MNIST", {})
        parts = []
        if "acc@1" in test:
            parts.append(f"MNIST test acc@1 {float(test['acc@1']):.2f}%")
        if "loss" in test:
            parts.append(f"test loss {float(test['loss']):.4f}")
        if "ece" in test:
            parts.append(f"test ECE {float(test['ece']):.2f}%")
        if "val_acc@1" in metrics:
            parts.append(f"validation acc@1 {float(metrics['val_acc@1']):.2f}%")
        if parts:
            print(f"    metrics: {', '.join(parts)}")
        if "num_params" in meta:
            print(f"    num_params: {meta['num_params']:,}")
        if "categories" in meta:
            print(f"    categories: {' '.join(str(c) for c in meta['categories'])}")
        recipe = meta.get("recipe")
        if isinstance(recipe, dict):
            print("    recipe:")
            for key, value in recipe.items():
                print(f"      {key}: {_describe_value(value)}")
        if "dataset_license" in meta:
            print(f"    dataset: {meta['dataset_license']}")
        for row in meta.get("history", []) if args.history else []:
            print("    history: " + "  ".join(f"{k} {_describe_value(v)}" for k, v in row.items()))
    return 0
