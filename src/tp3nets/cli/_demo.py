"""``tp3nets demo``: the draw-a-digit page (:mod:`tp3nets.demo`), served locally."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from ._common import (
    PROG,
    UsageError,
    _default_member,
    _load_model,
    _load_quantized,
    _probability_or_zero,
)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 1..65535, got {text!r}")
    return value


def _choices(args: argparse.Namespace) -> list[Any] | None:
    """The models of ``--model`` (with ``--weights`` or ``--quantized``), checked and
    loaded now so that a mistake is one line before anything is served; ``None``: the
    page's default, each model's default weights side by side."""
    from ..demo import ModelChoice
    from ..models import get_model_builder

    if not args.model:
        for option, given in (("--weights", args.weights is not None),
                              ("--quantized", args.quantized)):
            if given:
                raise UsageError(f"{option} needs --model NAME (the model it applies to)")
        return None
    out = []
    for name in args.model:
        if args.quantized:
            model, member, source = _load_quantized(name, args.weights, torch.device("cpu"))
        else:
            model, member, source = _load_model(name, args.weights or "DEFAULT")
            if member is None and str(args.weights).lower() == "none":
                raise UsageError("--weights none: the demo shows trained models; give a "
                                 "member name (DEFAULT, MNIST_V1, ...) or a weights file")
        key = get_model_builder(name).__name__
        if member is not None:
            out.append(ModelChoice(key, member, quantized=args.quantized))
        else:  # a weights file: read with the default weights' preprocessing and names
            out.append(ModelChoice(key, _default_member(key), source=source, module=model))
    return out


def _cmd_demo(args: argparse.Namespace) -> int:
    from .. import demo

    # The cheap checks first, each a one-line error: the options, the port, then Gradio.
    choices = _choices(args)
    demo._check_port(args.host, args.port)
    try:
        demo._gradio()
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    page = demo.build_demo(selected=choices, min_confidence=args.min_confidence)

    def ready(url: str) -> None:
        print(f"{PROG} demo: serving on {url} (Ctrl-C stops it)", flush=True)

    try:
        demo.serve(page, args.host, args.port, on_ready=ready)
    except KeyboardInterrupt:
        print(f"{PROG} demo: stopped", file=sys.stderr, flush=True)
    return 0


def add_parser(sub: Any) -> None:
    """The ``demo`` command's parser, in ``tp3nets``' subcommands."""
    from ..reading import DEFAULT_MIN_CONFIDENCE

    p = sub.add_parser(
        "demo", help="a local page to draw a digit and see what the models read",
        description="Serve a local web page (Gradio; pip install 'tp3nets[demo]') with a "
        "sketchpad to draw a digit with the mouse and an upload box for a photo or scan. "
        "For each chosen model and weights (fp32 and int8, side by side) it shows the "
        "28x28 image the model saw, the three most probable classes with their "
        "calibrated probabilities, and the answer, 'not sure' or 'no digit'. Nothing is "
        "fetched from the network. Ctrl-C stops it.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; "
                   "0.0.0.0: every interface)")
    p.add_argument("--port", type=_port, default=7860, help="default: 7860")
    p.add_argument("--model", action="append", metavar="NAME",
                   help="a registered model to show (repeat for several; default: the "
                   "four models with their default weights, side by side; every bundled "
                   "weight set can be picked in the page)")
    p.add_argument("--weights", default=None, metavar="WEIGHTS",
                   help="the weights of --model: DEFAULT, MNIST_V1 (or qualified), or a "
                   ".safetensors/.pt file (default: DEFAULT)")
    p.add_argument("--quantized", action="store_true",
                   help="the int8 model of --model with its bundled int8 weights "
                   "(ConvNet2/3/4; --weights then names an int8 member)")
    p.add_argument("--min-confidence", type=_probability_or_zero, metavar="P",
                   default=DEFAULT_MIN_CONFIDENCE,
                   help="answer 'not sure' below this probability, in [0, 1], at first "
                   f"(the page has a slider; 0 answers every digit; default: "
                   f"{DEFAULT_MIN_CONFIDENCE})")
    p.set_defaults(func=_cmd_demo)

