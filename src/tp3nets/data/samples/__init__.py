"""Sample digit images shipped inside the package, to try the models from any folder.

Ten small PNG files, ``digit_0.png`` to ``digit_9.png``, one per digit, drawn with a font in
dark ink on paper of several shades, sizes and slants (none comes from MNIST; they are
rendered by ``examples/digits/make_digits.py`` in the repository). They are part of the
wheel, like the weights, so the quickstart needs neither a clone nor MNIST, in the manner
of scikit-image's ``skimage.data``.

Example:
    >>> from tp3nets.data import samples
    >>> image = samples.digit(7)
    >>> image.size, image.mode
    ((128, 96), 'L')
    >>> [p.name for p in samples.digit_paths()][:3]
    ['digit_0.png', 'digit_1.png', 'digit_2.png']
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..._util._checks import check_int as _check_int

if TYPE_CHECKING:
    from PIL import Image
    from torch import Tensor

__all__ = ["DIGITS", "digit", "digit_batch", "digit_path", "digit_paths", "digits"]

#: The labels of the sample images, in the order every function here returns them.
DIGITS: Final[tuple[int, ...]] = tuple(range(10))


def _folder() -> Path:
    # tp3nets is installed as files (its weights are read the same way), so the package's
    # resources are a real folder.
    return Path(str(resources.files("tp3nets.data.samples").joinpath("digits")))


def _check_label(label: object, who: str) -> int:
    return _check_int(label, "label", who=who, minimum=DIGITS[0], maximum=DIGITS[-1],
                      what="an int from 0 to 9", wrong_type=TypeError)


def digit_path(label: int) -> Path:
    """The file of the sample image of one digit.

    Args:
        label: the digit, 0 to 9.

    Returns:
        The path of ``digit_<label>.png`` inside the installed package.

    Raises:
        TypeError: ``label`` is not an int.
        ValueError: ``label`` is not between 0 and 9.

    Example:
        >>> from tp3nets.data.samples import digit_path
        >>> digit_path(3).name
        'digit_3.png'
        >>> digit_path(3).is_file()
        True
    """
    return _folder() / f"digit_{_check_label(label, 'digit_path')}.png"


def digit_paths() -> list[Path]:
    """The files of the ten sample images, from ``digit_0.png`` to ``digit_9.png``.

    What ``tp3nets predict MODEL FILE...`` takes; the digit is the last character of each
    file's stem.

    Returns:
        Ten paths, in the order of :data:`DIGITS`.

    Example:
        >>> from tp3nets.data.samples import digit_paths
        >>> paths = digit_paths()
        >>> len(paths), paths[9].name, all(p.is_file() for p in paths)
        (10, 'digit_9.png', True)
    """
    return [digit_path(label) for label in DIGITS]


def digit(label: int) -> Image.Image:
    """The sample image of one digit, as a PIL image (grayscale or RGB, as stored).

    The image is read completely, so its file is closed on return.

    Args:
        label: the digit, 0 to 9.

    Returns:
        A :class:`PIL.Image.Image`, dark ink on light paper, not yet preprocessed.

    Raises:
        TypeError: ``label`` is not an int.
        ValueError: ``label`` is not between 0 and 9.

    Example:
        >>> import tp3nets
        >>> weights = tp3nets.ConvNet4_Weights.DEFAULT
        >>> model = tp3nets.convnet4(weights=weights).eval()
        >>> x = weights.transforms()(tp3nets.data.samples.digit(7)).unsqueeze(0)
        >>> weights.meta["categories"][model(x).argmax(1).item()]
        '7'
    """
    from PIL import Image

    with Image.open(digit_path(_check_label(label, "digit"))) as image:
        image.load()
        loaded: Image.Image = image.copy()
    return loaded


def digits() -> list[Image.Image]:
    """The ten sample images, from the 0 to the 9, as PIL images.

    Returns:
        Ten images, in the order of :data:`DIGITS`.

    Example:
        >>> from tp3nets.data.samples import digits
        >>> [im.mode for im in digits()][:6]
        ['L', 'L', 'RGB', 'L', 'L', 'RGB']
    """
    return [digit(label) for label in DIGITS]


def digit_batch(
    transform: Callable[[Any], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """The ten sample images preprocessed and stacked, with their labels.

    Args:
        transform: turns one PIL image into a tensor; default
            :class:`~tp3nets.MNISTPreprocess`, the preprocessing of every bundled weight
            set (``weights.transforms()``).

    Returns:
        ``(images, labels)``: images of shape ``(10, *transform's output shape)``
        (``(10, 1, 28, 28)`` by default) and the int64 labels ``0, 1, ..., 9``.

    Raises:
        TypeError: ``transform`` does not return a tensor.

    Example:
        >>> import tp3nets
        >>> x, y = tp3nets.data.samples.digit_batch()
        >>> x.shape, y.tolist()
        (torch.Size([10, 1, 28, 28]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        >>> model = tp3nets.convnet4(weights="DEFAULT")
        >>> (tp3nets.predict(model, x).argmax(1) == y).float().mean().item()
        1.0
    """
    import torch

    if transform is None:
        from .._transforms import MNISTPreprocess

        transform = MNISTPreprocess()
    tensors = []
    for label in DIGITS:
        out = transform(digit(label))
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"digit_batch's transform must return a tensor, got {type(out).__name__} "
                f"for digit {label}"
            )
        tensors.append(out)
    return torch.stack(tensors), torch.tensor(DIGITS, dtype=torch.int64)
