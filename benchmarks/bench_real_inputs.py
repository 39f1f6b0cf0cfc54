"""How the bundled weights read digits as people give them: photos, canvas exports, print,
low-resolution scans, and pictures that hold no digit (benchmarks/real_inputs.py).

    python benchmarks/bench_real_inputs.py --data ../shared/datasets \\
        --json benchmarks/results/real_inputs.json --figure docs/_static/real_inputs.png
    python benchmarks/bench_real_inputs.py --models convnet4 --n 500
    python benchmarks/bench_real_inputs.py --quick        # a few pictures: checks that it runs
    python benchmarks/bench_real_inputs.py --split val --models convnet4 --n 300 \\
        --kinds photo --causes --errors /tmp/errors.png   # while tuning: never on "bench"

Builds the ``"bench"`` split of every kind of :mod:`real_inputs` (its handwriting is the
second half of the 5,000-image validation split of the MNIST training set, its fonts font set
C, plus the UCI 8×8 digits; never the MNIST test set), ``--n`` pictures a kind, seeded. Every
distinct fp32 weights member of each model reads every picture through the public path:
``weights.transforms()`` on the PIL picture, the model, a softmax. Where the preprocessing
has ``inspect`` (``MNISTPreprocess.inspect(img)``: ``.image``, ``.found``, ``.reason``), its
``found`` is the "a single digit is there" answer; without it, a picture counts as found when
the image the model sees is not uniform.

Per kind and weights:

* digit kinds (and ``mnist``, a control: validation-split images saved as 28×28 PNG and
  read back): top-1 accuracy (on every picture, found or not), ECE (15 equal-width bins of
  the top probability), confident errors (share of pictures answered wrongly with a top
  probability >= 0.99 and a digit found: what a user would be told with certainty), the
  abstention rate (no digit found, or top probability under ``--min-confidence``), the
  accuracy on the pictures answered, and the share said to hold no digit;
* non-digit kinds: the share rejected (no digit found, or under ``--min-confidence``) and
  the share given a digit at >= 0.99.

Also: the time to make each kind (ms a picture), the preprocessing's time on a synthetic
4000×3000 phone photo (one thread, median of several runs), and with ``--figure PATH`` a
PNG grid showing, for four pictures of each kind (the first two, then the first the reader
gets wrong), the picture and the 28×28 image the model saw, with the answer (of the last
model's default weights).

``--split val`` reads the ``"val"`` split instead (its handwriting is the *first* half of
the validation split, its fonts font set B; the control, the first half too): tune on it,
and run ``"bench"`` once, to report. ``--causes`` sorts the errors (top-1 wrong) of the last
model's default weights per digit kind: no digit found (and why), the ink's polarity taken
the wrong way, a crop that holds something else than the digit (photos: the image the model
saw is unlike what the same ink on clean paper gives), or the model's own error (the model
also misreads the clean picture: a digit hard to read; or not). ``--errors PNG`` draws those
errors: the picture, what the model saw and, for photos, what clean paper gives.

The pictures are preprocessed one by one with ``--preprocess-threads`` torch threads
(default 1); the models then read each kind in one batch with ``--threads``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_inputs as ri
from _common import (
    BUILDERS,
    DEFAULT_DATA,
    MODELS,
    machine,
    markdown_table,
    median,
    print_machine,
    write_json,
)

import tp3nets

CONTROL = "mnist"
BINS = 15
CERTAIN = 0.99


def control_set(data: str, n: int, seed: int, split: str = "bench"
                ) -> list[tuple[Image.Image, int | None]]:
    """``n`` images of the split's MNIST rows (``"bench"``: the second half of the
    validation split; ``"val"``: the first half), as 28×28 PNG files read back."""
    images, labels = ri.read_mnist_training_set(str(Path(data).expanduser().resolve()))
    train, val = ri.split_rows(len(images))
    rows = {"train": train, "val": val[: len(val) // 2], "bench": val[len(val) // 2 :]}[split]
    pick = np.random.default_rng([seed, 28]).permutation(len(rows))[:n]
    out: list[tuple[Image.Image, int | None]] = []
    for r in rows[pick]:
        buf = io.BytesIO()
        Image.fromarray(images[r]).save(buf, "PNG")
        img = Image.open(io.BytesIO(buf.getvalue()))
        img.load()
        out.append((img, int(labels[r])))
    return out


def read_pictures(
    pre: Any, pictures: Sequence[tuple[Image.Image, int | None]]
) -> tuple[Tensor, list[bool], list[str | None], float]:
    """What the model sees of each picture, whether a digit was found (and why not), and
    the preprocessing's milliseconds a picture."""
    seen, found, reasons = [], [], []
    start = time.perf_counter()
    for img, _ in pictures:
        if hasattr(pre, "inspect"):
            result = pre.inspect(img)
            x, ok, why = result.image, bool(result.found), result.reason
        else:  # before inspect(): a uniform image holds nothing
            x = pre(img)
            ok = float(x.max() - x.min()) > 1e-6
            why = None if ok else "uniform"
        seen.append(x.reshape(1, *x.shape[-2:]).float())
        found.append(ok)
        reasons.append(why)
    ms = 1000 * (time.perf_counter() - start) / max(len(pictures), 1)
    return torch.stack(seen), found, reasons, ms


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error over equal-width bins of the top probability."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = index == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def score(kind: str, probs: Tensor, labels: Sequence[int | None], found: Sequence[bool],
          threshold: float) -> dict[str, Any]:
    conf_t, pred_t = probs.max(dim=1)
    conf, pred = conf_t.numpy().astype(np.float64), pred_t.numpy()
    ok = np.asarray(found, bool)
    sure = conf >= threshold
    if labels[0] is None:
        return {
            "rejected %": 100 * float(np.mean(~ok | ~sure)),
            "no digit %": 100 * float(np.mean(~ok)),
            "digit at >=0.99 %": 100 * float(np.mean(ok & (conf >= CERTAIN))),
        }
    y = np.asarray(labels, np.int64)
    correct = pred == y
    answered = ok & sure
    return {
        "acc %": 100 * float(correct.mean()),
        "ECE %": 100 * ece(conf, correct.astype(np.float64)),
        "errors at >=0.99 %": 100 * float(np.mean(ok & ~correct & (conf >= CERTAIN))),
        "abstain %": 100 * float(1 - answered.mean()),
        "answered acc %": (100 * float(correct[answered].mean()) if answered.any()
                           else float("nan")),
        "no digit %": 100 * float(np.mean(~ok)),
    }


def phone_photo_timing(pre: Any, data: str, repeats: int) -> dict[str, float]:
    """Milliseconds the preprocessing (and inspect) takes on a 4000×3000 phone photo, one
    thread, median of ``repeats`` runs."""
    src = ri.load_sources("bench", data)
    img, _ = ri.photo(np.random.default_rng(4000), src, size=(4000, 3000))
    img = ImageOps.exif_transpose(img)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out: dict[str, float] = {}
        calls = {"forward": pre}
        if hasattr(pre, "inspect"):
            calls["inspect"] = pre.inspect
        for name, call in calls.items():
            call(img)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                call(img)
                times.append(1000 * (time.perf_counter() - start))
            out[name] = median(times)
        return out
    finally:
        torch.set_num_threads(threads)


def _label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                 "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"):
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def _thumbnail(img: Image.Image, side: int) -> Image.Image:
    """The picture as a viewer shows it (upright; transparency over a checkerboard)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA", "P") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        yy, xx = np.mgrid[: rgba.height, : rgba.width]
        check = (((yy // 8 + xx // 8) % 2) * 70 + 150).astype(np.uint8)
        board = Image.fromarray(np.stack([check] * 3 + [np.full_like(check, 255)], -1), "RGBA")
        img = Image.alpha_composite(board, rgba)
    img = img.convert("RGB")
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return img


def failed(label: int | None, prob: Tensor, found: bool, threshold: float) -> bool:
    """Whether the reader got a picture wrong: a digit not answered or answered wrongly, or
    a picture without a digit given one."""
    p, k = prob.max(dim=0)
    answered = found and float(p) >= threshold
    if label is None:
        return answered
    return not answered or int(k) != label


def pick(labels: Sequence[int | None], probs: Tensor, found: Sequence[bool],
         threshold: float, per_kind: int = 4) -> list[int]:
    """Pictures to show: the first two, then the first failures, then the next ones."""
    first = list(range(min(2, len(labels))))
    bad = [i for i in range(len(labels)) if i not in first
           and failed(labels[i], probs[i], found[i], threshold)]
    rest = [i for i in range(len(labels)) if i not in first and i not in bad]
    return sorted((first + bad + rest)[:per_kind])


def figure(path: str, kinds: Sequence[str], sets: dict[str, list[tuple[Image.Image, int | None]]],
           seen: dict[str, Tensor], probs: dict[str, Tensor], found: dict[str, list[bool]],
           reasons: dict[str, list[str | None]], title: str,
           picks: dict[str, list[int]] | None = None, per_kind: int = 4,
           threshold: float = 0.9) -> None:
    """A PNG grid: per kind, ``per_kind`` pictures (``picks``: which; default the first)
    and the 28×28 images the model saw, with its answer (red: wrong, or not a digit
    answered as one)."""
    thumb, zoom, pad, label_w, text_h = 104, 3, 8, 118, 30
    cell_w = thumb + 4 + 28 * zoom + pad
    row_h = thumb + text_h + pad
    width = label_w + per_kind * cell_w
    height = 52 + len(kinds) * row_h
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    big, small = _label_font(14), _label_font(11)
    draw.multiline_text((8, 6), title, fill=(0, 0, 0), font=big, spacing=3)
    for r, kind in enumerate(kinds):
        y0 = 52 + r * row_h
        draw.text((8, y0 + thumb // 2 - 8), kind, fill=(0, 0, 0), font=big)
        chosen = picks[kind] if picks else list(range(min(per_kind, len(sets[kind]))))
        for slot, c in enumerate(chosen):
            x0 = label_w + slot * cell_w
            img, label = sets[kind][c]
            t = _thumbnail(img, thumb)
            sheet.paste(t, (x0 + (thumb - t.width) // 2, y0 + (thumb - t.height) // 2))
            draw.rectangle([x0 - 1, y0 - 1, x0 + thumb, y0 + thumb], outline=(200, 200, 200))
            view = (seen[kind][c, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            view_img = Image.fromarray(view).resize((28 * zoom, 28 * zoom),
                                                    Image.Resampling.NEAREST)
            sheet.paste(view_img, (x0 + thumb + 4, y0 + (thumb - 28 * zoom) // 2))
            p, k = (float(v) for v in probs[kind][c].max(dim=0))
            truth = "no digit" if label is None else f"label {label}"
            good = not failed(label, probs[kind][c], found[kind][c], threshold)
            if found[kind][c]:
                answer = f"says {int(k)} ({p:.2f})"
            else:
                why = (reasons[kind][c] or "").split(" (")[0].split(":")[0]
                answer = f"no digit: {why[:22]}"
            draw.text((x0, y0 + thumb + 2), truth, fill=(60, 60, 60), font=small)
            draw.text((x0, y0 + thumb + 15), answer, font=small,
                      fill=(0, 120, 0) if good else (190, 0, 0))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    print(f"wrote {path}")


def write_csv(path: str, rows: list[dict[str, Any]], digit_kinds: list[str],
              other_kinds: list[str]) -> None:
    """The docs' summary: per weights, each digit kind's top-1 and ECE, the confident errors
    and abstentions over the realistic digit kinds, and the pictures without a digit
    rejected (the worst kind and the mean)."""
    import csv

    real = [k for k in digit_kinds if k != CONTROL]
    header = ["Weights", *(f"{k} acc / ECE %" for k in digit_kinds),
              "wrong at >=0.99 %", "abstained %", "no digit: rejected % (worst kind)"]
    out = []
    for weights in dict.fromkeys(r["weights"] for r in rows):
        mine = {r["kind"]: r for r in rows if r["weights"] == weights}
        line = [weights, *(f"{mine[k]['acc %']:.1f} / {mine[k]['ECE %']:.1f}"
                           for k in digit_kinds)]
        line.append(f"{np.mean([mine[k]['errors at >=0.99 %'] for k in real]):.2f}")
        line.append(f"{np.mean([mine[k]['abstain %'] for k in real]):.1f}")
        rejected = [mine[k]["rejected %"] for k in other_kinds]
        line.append(f"{np.mean(rejected):.1f} ({min(rejected):.1f})" if rejected else "-")
        out.append(line)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(out)


def _seen_polarity(pre: Any, img: Image.Image) -> bool | None:
    """Whether the preprocessing took the ink as dark on light (``None``: it never asked),
    recorded from its polarity step (a private function: this is a diagnosis, not the
    public path)."""
    from tp3nets.data import _ink

    calls: list[bool] = []
    original = _ink.light_ink

    def record(lum: Tensor) -> bool:
        light = original(lum)
        calls.append(light)
        return light

    _ink.light_ink = record  # type: ignore[assignment]
    try:
        pre.inspect(img)
    finally:
        _ink.light_ink = original  # type: ignore[assignment]
    return (not calls[0]) if calls else None


def _clean_picture(ink: np.ndarray) -> Image.Image:
    """The same ink on white paper, sharp, without lighting or noise."""
    return Image.fromarray(np.clip(255 * (1 - ink) + 0.5, 0, 255).astype(np.uint8), "L")


def error_causes(
    kind: str, truths: Sequence[ri.Truth], pictures: Sequence[tuple[Image.Image, int | None]],
    seen: Tensor, probs: Tensor, found: Sequence[bool], reasons: Sequence[str | None],
    pre: Any, model: torch.nn.Module,
) -> list[tuple[int, str, Tensor | None]]:
    """Each top-1 error of a digit kind with its cause (see the module's docstring) and,
    for photos, the 28×28 image the same ink on clean paper gives."""
    out: list[tuple[int, str, Tensor | None]] = []
    pred = probs.argmax(dim=1)
    for i, ((img, label), truth) in enumerate(zip(pictures, truths, strict=True)):
        if label is None or int(pred[i]) == label:
            continue
        clean: Tensor | None = None
        if truth.ink is not None:
            clean = pre.inspect(_clean_picture(truth.ink)).image.reshape(1, 28, 28)
        if not found[i]:
            cause = f"not found: {(reasons[i] or '').split(' (')[0].split(':')[0]}"
        elif truth.dark_ink is not None and _seen_polarity(pre, img) not in (
                None, truth.dark_ink):
            cause = "polarity"
        elif clean is not None and float(torch.nn.functional.cosine_similarity(
                seen[i].flatten(), clean.flatten(), dim=0)) < 0.6:
            cause = "crop"
        elif clean is not None:
            with torch.inference_mode():
                again = int(model(clean[None]).argmax(dim=1)[0])
            cause = "model (clean also wrong)" if again != label else "model (clean right)"
        else:
            cause = "crop or model"
        if truth.ink_kind and kind == "photo":
            cause += f" [{truth.ink_kind}]"
        out.append((i, cause, clean))
    return out


def error_grid(path: str, cells: Sequence[tuple[Image.Image, Tensor, Tensor | None, str]],
               per_row: int = 6) -> None:
    """A PNG grid of errors: the picture, the 28×28 image the model saw, the one clean
    paper gives (when known), and a caption."""
    thumb, zoom, pad, text_h = 96, 3, 8, 30
    cell_w = thumb + 2 * (28 * zoom + 4) + pad
    rows = max(1, -(-len(cells) // per_row))
    sheet = Image.new("RGB", (per_row * cell_w, rows * (thumb + text_h + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _label_font(11)
    for n, (img, seen, clean, caption) in enumerate(cells):
        x0, y0 = (n % per_row) * cell_w, (n // per_row) * (thumb + text_h + pad)
        t = _thumbnail(img, thumb)
        sheet.paste(t, (x0 + (thumb - t.width) // 2, y0 + (thumb - t.height) // 2))
        for slot, view in enumerate((seen, clean)):
            if view is None:
                continue
            pixels = (view.reshape(28, 28).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            big = Image.fromarray(pixels).resize((28 * zoom, 28 * zoom), Image.Resampling.NEAREST)
            sheet.paste(big, (x0 + thumb + 4 + slot * (28 * zoom + 4),
                              y0 + (thumb - 28 * zoom) // 2))
        for line, text in enumerate(caption.split("\n")[:2]):
            draw.text((x0, y0 + thumb + 2 + 13 * line), text, fill=(150, 0, 0), font=font)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder holding MNIST/raw/")
    parser.add_argument("--n", type=int, default=200, help="pictures per kind")
    parser.add_argument("--models", default="mlr,convnet2,convnet3,convnet4",
                        help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--kinds", default=",".join(ri.KINDS),
                        help="comma-separated, from " + ", ".join(ri.KINDS))
    parser.add_argument("--min-confidence", type=float, default=0.9,
                        help="answer only at or above this top probability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="bench", choices=ri.SPLITS,
                        help="which pictures: 'bench' (the default, to report) or 'val' "
                        "(to tune on; other handwriting and fonts)")
    parser.add_argument("--causes", action="store_true",
                        help="sort the last model's default weights' errors by cause")
    parser.add_argument("--errors", default=None, metavar="PNG",
                        help="draw those errors (implies --causes)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for the models")
    parser.add_argument("--preprocess-threads", type=int, default=1,
                        help="torch threads while preprocessing the pictures one by one "
                        "(default 1: a picture is too small to share, and two threads were "
                        "5x slower on a busy 2-core machine); 0: leave as is")
    parser.add_argument("--repeats", type=int, default=5,
                        help="runs of the 4000x3000 photo timing (median)")
    parser.add_argument("--quick", action="store_true",
                        help="a handful of pictures: checks that it runs")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results")
    parser.add_argument("--csv", default=None, metavar="PATH",
                        help="also write the summary table of the docs' models page")
    parser.add_argument("--figure", default=None, metavar="PNG",
                        help="write a grid of pictures and what the model saw")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if any(k not in ri.KINDS for k in kinds):
        parser.error(f"--kinds takes {', '.join(ri.KINDS)}")
    if not 0.0 <= args.min_confidence <= 1.0:
        parser.error("--min-confidence must lie in [0, 1]")
    if args.quick:
        args.n, args.repeats = 6, 1
    if args.n < 1:
        parser.error("--n must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = str(Path(args.data).expanduser().resolve())

    info = machine("cpu")
    print_machine(info)

    start = time.perf_counter()
    sources = ri.load_sources(args.split, data)
    if args.split == "bench" and sources.uci is None and "lowres" in kinds:
        print("note: scikit-learn is not importable; lowres uses shrunk MNIST digits instead "
              "of the UCI 8x8 digits")
    fonts = sum(len(f) for f in sources.fonts)
    families = ", ".join(ri.font_family(f[0]) for f in sources.fonts)
    print(f"sources: {len(sources.digits)} handwritten digits, {fonts} font files in "
          f"{len(sources.fonts)} families ({families}), UCI digits "
          f"{'yes' if sources.uci is not None else 'no'}; "
          f"loaded in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    sets: dict[str, list[tuple[Image.Image, int | None]]] = {
        CONTROL: control_set(data, args.n, args.seed, args.split)
    }
    make_ms: dict[str, float] = {CONTROL: 1000 * (time.perf_counter() - start) / args.n}
    truths: dict[str, list[ri.Truth]] = {CONTROL: [ri.Truth()] * args.n}
    for kind in kinds:
        start = time.perf_counter()
        made = [ri.make_one_with_truth(kind, i, sources, seed=args.seed)
                for i in range(args.n)]
        sets[kind] = [(img, label) for img, label, _ in made]
        truths[kind] = [truth for _, _, truth in made]
        make_ms[kind] = 1000 * (time.perf_counter() - start) / args.n
    all_kinds = [CONTROL, *kinds]
    digit_kinds = [k for k in all_kinds if sets[k][0][1] is not None]
    other_kinds = [k for k in all_kinds if sets[k][0][1] is None]

    rows: list[dict[str, Any]] = []
    cache: dict[str, tuple[dict[str, Tensor], dict[str, list[bool]],
                           dict[str, list[str | None]], dict[str, float]]] = {}
    figure_data: tuple[str, dict[str, Tensor], dict[str, Tensor], dict[str, list[bool]],
                       dict[str, list[str | None]]] | None = None
    pre: Any = None
    default_model: torch.nn.Module | None = None
    for name in names:
        builder = BUILDERS[name]
        for member in tp3nets.get_model_weights(builder):
            model = tp3nets.get_model(builder, weights=member).eval()
            pre = member.transforms()
            key = repr(pre)
            if key not in cache:  # the same preprocessing for every weights: read once
                seen_k, found_k, why_k, ms_k = {}, {}, {}, {}
                threads = torch.get_num_threads()
                if args.preprocess_threads:
                    torch.set_num_threads(args.preprocess_threads)
                try:
                    for kind in all_kinds:
                        seen_k[kind], found_k[kind], why_k[kind], ms_k[kind] = read_pictures(
                            pre, sets[kind])
                finally:
                    torch.set_num_threads(threads)
                cache[key] = (seen_k, found_k, why_k, ms_k)
            seen, found, reasons, _ = cache[key]
            probs: dict[str, Tensor] = {}
            with torch.inference_mode():
                for kind in all_kinds:
                    probs[kind] = torch.softmax(model(seen[kind]).float(), dim=1)
            weights = f"{name} {member.name}"
            for kind in all_kinds:
                labels = [label for _, label in sets[kind]]
                rows.append({"weights": weights, "kind": kind, "n": len(labels),
                             **score(kind, probs[kind], labels, found[kind],
                                     args.min_confidence)})
            if member is tp3nets.get_model_weights(builder)["DEFAULT"]:
                figure_data = (weights, seen, probs, found, reasons)
                default_model = model

    # Tables: one per figure, weights down, kinds across.
    def pivot(kind_list: Sequence[str], metric: str) -> str:
        table = []
        for weights in dict.fromkeys(r["weights"] for r in rows):
            line: dict[str, Any] = {"weights": weights}
            for r in rows:
                if r["weights"] == weights and r["kind"] in kind_list:
                    line[r["kind"]] = round(r[metric], 1)
            table.append(line)
        return markdown_table(table, ["weights", *kind_list])

    print(f"\n{args.n} pictures a kind ({args.split} split, seed {args.seed}); answered = a digit "
          f"found and top probability >= {args.min_confidence}")
    for metric, what in (
        ("acc %", "top-1 accuracy, %"),
        ("answered acc %", "accuracy on the pictures answered, %"),
        ("abstain %", "abstained (no digit found, or under the threshold), %"),
        ("errors at >=0.99 %", "wrong answers given at >= 0.99, % of pictures"),
        ("ECE %", f"expected calibration error ({BINS} bins), %"),
    ):
        print(f"\n**Digit pictures: {what}**\n")
        print(pivot(digit_kinds, metric))
    if other_kinds:
        for metric, what in (
            ("rejected %", "rejected (no digit found, or under the threshold), %"),
            ("digit at >=0.99 %", "given a digit at >= 0.99, %"),
        ):
            print(f"\n**Pictures without a (single) digit: {what}**\n")
            print(pivot(other_kinds, metric))

    _, found0, reasons0, pre_ms0 = next(iter(cache.values()))
    found_rows = []
    for kind in all_kinds:
        why = Counter(r for r in reasons0[kind] if r)
        found_rows.append({
            "kind": kind,
            "make ms/picture": round(make_ms[kind], 2),
            "preprocess ms/picture": round(pre_ms0[kind], 2),
            "digit found %": round(100 * float(np.mean(found0[kind])), 1),
            "reasons (count)": "; ".join(f"{r} ({c})" for r, c in why.most_common(3)) or "-",
        })
    print("\n**Per kind: time to make a picture, to preprocess it "
          f"({args.preprocess_threads or torch.get_num_threads()} torch thread(s)), and what "
          "the preprocessing said**\n")
    print(markdown_table(found_rows, list(found_rows[0])))

    causes_rows: list[dict[str, Any]] = []
    if (args.causes or args.errors) and figure_data is not None and default_model is not None:
        weights, seen, probs, found, reasons = figure_data
        cells: list[tuple[Image.Image, Tensor, Tensor | None, str]] = []
        for kind in digit_kinds:
            if kind == CONTROL:
                continue
            errors = error_causes(kind, truths[kind], sets[kind], seen[kind], probs[kind],
                                  found[kind], reasons[kind], pre, default_model)
            count = Counter(cause for _, cause, _ in errors)
            causes_rows.append({"kind": kind, "errors": len(errors),
                                "causes (count)": "; ".join(
                                    f"{c} ({k})" for c, k in count.most_common()) or "-"})
            for i, cause, clean in errors:
                p, k = (float(v) for v in probs[kind][i].max(dim=0))
                cells.append((sets[kind][i][0], seen[kind][i], clean,
                              f"{kind} #{i}: {sets[kind][i][1]} read {int(k)} ({p:.2f})\n"
                              f"{cause}"))
        print(f"\n**Why {weights} gets digits wrong (top-1 errors by cause)**\n")
        print(markdown_table(causes_rows, ["kind", "errors", "causes (count)"]))
        if args.errors:
            error_grid(args.errors, cells)

    timing = phone_photo_timing(pre, data, args.repeats)
    print("\n4000x3000 phone photo, one thread, median of "
          f"{args.repeats}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in timing.items()))
    if not hasattr(pre, "inspect"):
        print("note: this MNISTPreprocess has no inspect(); 'no digit' means a uniform image")

    if args.figure and figure_data is not None:
        weights, seen, probs, found, reasons = figure_data
        picks = {k: pick([label for _, label in sets[k]], probs[k], found[k],
                         args.min_confidence) for k in all_kinds}
        figure(args.figure, all_kinds, sets, seen, probs, found, reasons,
               f"What {weights} sees (left: the picture; right: the 28x28 image it reads).\n"
               f"Per kind: the first two pictures, then the first ones it gets wrong (red)",
               picks,
               threshold=args.min_confidence)
    if args.csv:
        write_csv(args.csv, rows, digit_kinds, other_kinds)
    write_json(args.json, {
        "benchmark": "real_inputs", "machine": info,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "rows": rows, "kinds": found_rows, "phone_photo_ms": timing,
        **({"causes": causes_rows} if causes_rows else {}),
        "fonts": {ri.font_family(fam[0]): list(fam) for fam in sources.fonts},
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
