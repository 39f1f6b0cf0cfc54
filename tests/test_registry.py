"""The model registry: names, builders, kwargs, weight enums, and helpful errors."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import tp3nets
from tp3nets import (
    ConvNet2,
    ConvNet2_Weights,
    ConvNet3,
    ConvNet3_Weights,
    ConvNet4,
    ConvNet4_Weights,
    MultinomialLogisticRegression,
    MultinomialLogisticRegression_Weights,
)
from tp3nets.models import register_model

MLR = "multinomial_logistic_regression"

# name → (builder, class, weights enum): what the registry must hand out.
EXPECTED = {
    "convnet2": (tp3nets.convnet2, ConvNet2, ConvNet2_Weights),
    "convnet3": (tp3nets.convnet3, ConvNet3, ConvNet3_Weights),
    "convnet4": (tp3nets.convnet4, ConvNet4, ConvNet4_Weights),
    MLR: (tp3nets.multinomial_logistic_regression, MultinomialLogisticRegression,
          MultinomialLogisticRegression_Weights),
}  # fmt: skip

MODELS = tp3nets.list_models()


def test_list_models() -> None:
    """list_models() names the four registered models, sorted."""
    assert tp3nets.list_models() == ["convnet2", "convnet3", "convnet4", MLR]
    assert tp3nets.list_models() is not tp3nets.list_models()  # a copy, safe to mutate


def _float_and_int8() -> set[str]:
    from tp3nets.models import quantization  # noqa: F401  (registers the int8 builders)

    return set(tp3nets.list_models()) | set(tp3nets.list_models(quantized=True))


@pytest.mark.parametrize(
    "include", [None, [], (), "", "*convnet*", ["*logistic*"], "*not-a-model?",
                ["convnet2", "*logistic*"], ("convnet?",), {"*4", "*2"}])
@pytest.mark.parametrize(
    "exclude", [None, [], (), "", "*convnet*", ["*logistic*"], ["*not-a-model?"],
                ["convnet4", "*3"], ("convnet4", "*3"), {"convnet4", "*3"}])
def test_list_models_filters_as_torchvision(include: object, exclude: object) -> None:
    """include and exclude take an fnmatch pattern or an iterable of them, as torchvision's
    (its test_list_models_filters): the names matching any include, less those matching
    any exclude; an empty filter filters nothing."""
    names = set(tp3nets.list_models())
    includes = list(include or []) if not isinstance(include, str) else [include] * bool(include)
    excludes = list(exclude or []) if not isinstance(exclude, str) else [exclude] * bool(exclude)
    expected = {n for n in names if any(re.fullmatch(_regex(p), n) for p in includes)
                } if includes else names
    expected -= {n for n in names if any(re.fullmatch(_regex(p), n) for p in excludes)}
    got = tp3nets.list_models(include=include, exclude=exclude)  # type: ignore[arg-type]
    assert got == sorted(expected)


def _regex(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def test_list_models_filters_by_the_module_a_builder_lives_in() -> None:
    """module= lists the builders of that module, as torchvision's list_models(module):
    tp3nets.models has the float ones, tp3nets.models.quantization the int8 ones; quantized=
    narrows further, and the filters combine with it."""
    from tp3nets.models import quantization

    floats = ["convnet2", "convnet3", "convnet4", MLR]
    int8 = ["quantized_convnet2", "quantized_convnet3", "quantized_convnet4"]
    assert tp3nets.list_models(tp3nets.models) == floats
    assert tp3nets.list_models(quantization) == int8
    assert tp3nets.list_models(module=quantization, quantized=True) == int8
    assert tp3nets.list_models(quantization, quantized=False) == []
    assert tp3nets.list_models(tp3nets.models, quantized=True) == []
    assert tp3nets.list_models(tp3nets.models.layers) == []
    assert tp3nets.list_models(quantization, include="*CONVNET4") == ["quantized_convnet4"]
    assert tp3nets.list_models(quantized=False) == floats
    assert tp3nets.list_models(quantized=True) == int8
    assert set(tp3nets.list_models(tp3nets)) == set()  # builders live in tp3nets.models
    assert _float_and_int8() == set(floats) | set(int8)


def test_list_models_lists_a_builder_registered_in_a_public_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A builder defined in a public module is listed under that module; one defined in a
    private module, under its package (as tp3nets' own)."""
    import types

    from tp3nets.models import _registry

    monkeypatch.setattr(_registry, "_BUILDERS", dict(_registry._BUILDERS))
    public, private = types.ModuleType("mypkg.nets"), types.ModuleType("mypkg._nets")

    def mynet() -> nn.Module:
        return nn.Linear(1, 1)

    def othernet() -> nn.Module:
        return nn.Linear(1, 1)

    mynet.__module__, othernet.__module__ = public.__name__, private.__name__
    register_model()(mynet)
    register_model()(othernet)
    assert tp3nets.list_models(public) == ["mynet"]
    assert tp3nets.list_models(types.ModuleType("mypkg")) == ["othernet"]
    assert "mynet" in tp3nets.list_models(include="my*")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"module": "convnet*"}, "module to be a module such as tp3nets.models.quantization, "
                                 "got 'convnet\\*'; to select names by pattern, pass "
                                 "include='convnet\\*'"),
        ({"module": 4}, "module to be a module .*, got 4$"),
        ({"include": 4}, "include to be a pattern \\(str\\) or an iterable of patterns, got 4"),
        ({"exclude": b"conv*"}, "exclude to be a pattern"),
        ({"include": ["conv*", None]}, "include patterns to be strings, got None in"),
        ({"quantized": "yes"}, "quantized to be a bool or None, got 'yes'"),
    ],
)
def test_list_models_refuses_bad_types_saying_what_was_expected(
    kwargs: dict[str, object], message: str
) -> None:
    """A wrong type for module, include, exclude or quantized raises TypeError naming what
    was expected and what came (a string for module points to include=)."""
    with pytest.raises(TypeError, match=message):
        tp3nets.list_models(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", MODELS)
def test_get_model_builder(name: str) -> None:
    """get_model_builder(name) is the public builder function of that name."""
    builder, _, _ = EXPECTED[name]
    assert tp3nets.get_model_builder(name) is builder
    assert builder.__name__ == name


@pytest.mark.parametrize("name", MODELS)
def test_get_model_builds_the_class(name: str) -> None:
    """get_model(name) builds a fresh, randomly initialised model of the class, in train mode."""
    _, cls, _ = EXPECTED[name]
    a, b = tp3nets.get_model(name), tp3nets.get_model(name)
    assert type(a) is cls
    assert a.training
    assert a is not b
    assert a.num_classes == 10


@pytest.mark.parametrize("name", MODELS)
def test_get_model_passes_kwargs(name: str) -> None:
    """get_model(name, **kwargs) hands the kwargs to the model's constructor."""
    model = tp3nets.get_model(name, num_classes=4)
    assert model.num_classes == 4
    assert model.get_classifier().out_features == 4
    assert model.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 4)


def test_get_model_specific_kwargs() -> None:
    """Model-specific options reach their layers through get_model."""
    assert tp3nets.get_model("convnet2", dropout=0.1).classifier[0].p == 0.1
    assert tp3nets.get_model("convnet3", input_size=16).classifier[1].in_features == 64 * 2 * 2
    assert tp3nets.get_model("convnet4", width=8).lin1.in_features == 32
    assert tp3nets.get_model(MLR, input_size=64).classifier.in_features == 64


def test_get_model_rejects_unknown_kwargs() -> None:
    """An unknown keyword argument raises TypeError naming it."""
    with pytest.raises(TypeError, match="widht"):
        tp3nets.get_model("convnet4", widht=8)


@pytest.mark.parametrize("name", ["ConvNet4", "CONVNET2", "Multinomial_Logistic_Regression"])
def test_names_are_case_insensitive(name: str) -> None:
    """Names are looked up case-insensitively."""
    assert tp3nets.get_model_builder(name) is tp3nets.get_model_builder(name.lower())


@pytest.mark.parametrize(
    ("name", "suggested"),
    [
        ("convnet5", ["convnet2", "convnet3", "convnet4"]),
        ("convnet", ["convnet2", "convnet3", "convnet4"]),
        ("conv_net4", ["convnet4"]),
        ("multinomial_logistic_regresion", [MLR]),
    ],
)
def test_unknown_name_suggests_close_matches(name: str, suggested: list[str]) -> None:
    """An unknown name raises ValueError that suggests the close matches and lists all."""
    with pytest.raises(ValueError, match=re.escape(f"unknown model {name!r}")) as info:
        tp3nets.get_model(name)
    hint = str(info.value).split("did you mean ")[1].split("?")[0]
    assert all(s in hint.split(", ") for s in suggested)
    assert "available: convnet2, convnet3, convnet4, multinomial_logistic_regression" in str(
        info.value
    )
    with pytest.raises(ValueError, match="did you mean"):
        tp3nets.get_model_builder(name)
    with pytest.raises(ValueError, match="did you mean"):
        tp3nets.get_model_weights(name)


def test_unknown_name_without_close_match() -> None:
    """A name with no close match still raises ValueError listing the available models."""
    with pytest.raises(ValueError, match=r"unknown model 'resnet50' \(available: convnet2") as e:
        tp3nets.get_model("resnet50")
    assert "did you mean" not in str(e.value)


@pytest.mark.parametrize("name", MODELS)
def test_get_model_weights_by_name_and_builder(name: str) -> None:
    """get_model_weights accepts the name or the builder and gives the model's enum."""
    builder, _, enum = EXPECTED[name]
    assert tp3nets.get_model_weights(name) is enum
    assert tp3nets.get_model_weights(name.upper()) is enum
    assert tp3nets.get_model_weights(builder) is enum
    # ConvNet4's DEFAULT is the weights for realistic pictures, taken by their rule;
    # ConvNet2/3's V2 read fewer clean digits than V1, which stays the DEFAULT
    # (recipes/results/SELECTION.md).
    expected = "MNIST_REAL_V8" if name == "convnet4" else "MNIST_V1"
    assert enum.DEFAULT is enum[expected]


def test_get_model_weights_rejects_unregistered_builder() -> None:
    """A callable that is not a registered builder raises ValueError."""

    def convnet9() -> nn.Module:
        return nn.Linear(1, 1)

    with pytest.raises(ValueError, match="is not a registered builder"):
        tp3nets.get_model_weights(convnet9)


@pytest.mark.parametrize("name", MODELS)
def test_get_weight_by_qualified_name(name: str) -> None:
    """get_weight("<Enum>.DEFAULT") and "<Enum>.MNIST_V1" give the enum's member."""
    _, _, enum = EXPECTED[name]
    assert tp3nets.get_weight(f"{enum.__name__}.DEFAULT") is enum.DEFAULT
    assert tp3nets.get_weight(f"{enum.__name__}.MNIST_V1") is enum.MNIST_V1


def test_get_weight_convnet4_default() -> None:
    """get_weight("ConvNet4_Weights.DEFAULT") is ConvNet4_Weights.MNIST_REAL_V8; V1 is still
    there."""
    weight = tp3nets.get_weight("ConvNet4_Weights.DEFAULT")
    assert weight is ConvNet4_Weights.DEFAULT
    assert weight is ConvNet4_Weights.MNIST_REAL_V8
    assert tp3nets.get_weight("ConvNet4_Weights.MNIST_V1") is not weight
    assert weight.meta["categories"] == tuple("0123456789")


@pytest.mark.parametrize("bad", ["ConvNet4_Weights", "ConvNet5_Weights.DEFAULT", ""])
def test_get_weight_unknown_raises(bad: str) -> None:
    """An unknown qualified weights name raises ValueError quoting it."""
    with pytest.raises(ValueError, match=re.escape(f"unknown weights {bad!r}")):
        tp3nets.get_weight(bad)


def test_get_weight_unknown_member_names_enum_and_member() -> None:
    """An unknown member of a known enum raises ValueError naming both, with a suggestion."""
    with pytest.raises(ValueError, match=r"'V2'.*ConvNet4_Weights.*MNIST_V1"):
        tp3nets.get_weight("ConvNet4_Weights.V2")
    with pytest.raises(ValueError, match=r"DEFAUL.*did you mean .*DEFAULT"):
        tp3nets.get_weight("ConvNet4_Weights.DEFAUL")


@pytest.mark.parametrize("name", MODELS)
def test_pretrained_weights_load_and_match_meta(name: str) -> None:
    """weights="DEFAULT" loads the enum's state_dict; meta num_params is the real count."""
    _, _, enum = EXPECTED[name]
    model = tp3nets.get_model(name, weights="DEFAULT")
    state = enum.DEFAULT.get_state_dict()
    assert set(state) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert enum.DEFAULT.meta["num_params"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_pretrained_weights_reject_other_class_count(name: str) -> None:
    """Pretrained weights with num_classes != 10 raise ValueError pointing to reset_classifier."""
    with pytest.raises(ValueError, match=r"has 10 classes but num_classes=3 .*reset_classifier"):
        tp3nets.get_model(name, weights="DEFAULT", num_classes=3)


def test_register_model_refuses_a_taken_name() -> None:
    """Registering a second builder under a taken name raises ValueError, keeps the first."""

    def convnet4() -> nn.Module:
        return nn.Linear(1, 1)

    with pytest.raises(ValueError, match="a model named 'convnet4' is already registered"):
        register_model()(convnet4)
    assert tp3nets.get_model_builder("convnet4") is tp3nets.convnet4


def test_register_model_keeps_names_in_lower_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mixed-case name used to be stored as given and looked up in lower case: nobody
    could reach it; "ConvNet2" beside "convnet2" is the same name."""
    from tp3nets.models import _registry

    monkeypatch.setattr(_registry, "_BUILDERS", dict(_registry._BUILDERS))

    def my_net() -> nn.Module:
        return nn.Linear(1, 1)

    register_model("MyNet")(my_net)
    assert tp3nets.get_model_builder("MyNet") is my_net
    assert tp3nets.get_model_builder(" mynet ") is my_net
    assert "mynet" in tp3nets.list_models()
    with pytest.raises(ValueError, match="a model named 'convnet2' is already registered"):
        register_model("ConvNet2")(my_net)
    with pytest.raises(TypeError, match="a model name must be a non-empty string, got 4"):
        tp3nets.get_model_builder(4)  # type: ignore[arg-type]


@pytest.mark.parametrize("alias", ["mlr", "MLR", "logistic", "logreg", "logistic_regression"])
def test_short_names_of_the_logistic_regression(alias: str) -> None:
    """The names users type for the logistic regression find it (tp3nets info mlr found
    nothing)."""
    assert tp3nets.get_model_builder(alias) is tp3nets.multinomial_logistic_regression
    assert tp3nets.get_model_weights(alias) is tp3nets.MultinomialLogisticRegression_Weights


def test_a_part_of_a_name_suggests_the_models_holding_it() -> None:
    """An unknown name that is part of registered ones suggests them."""
    with pytest.raises(ValueError, match="unknown model 'logist'; did you mean "
                                         "multinomial_logistic_regression"):
        tp3nets.get_model("logist")


@pytest.mark.parametrize("old", ["pretrained", "pretrained_backbone"])
def test_torchvision_pretrained_argument_points_to_weights(old: str) -> None:
    """convnet4(pretrained=True), torchvision's old habit, says to use weights=, for the
    float and the quantized builders."""
    from tp3nets.models import quantization

    for build in (tp3nets.convnet4, tp3nets.multinomial_logistic_regression,
                  lambda **kw: quantization.convnet4(quantize=True, **kw)):
        with pytest.raises(TypeError, match=rf"takes weights=, not {old}=.*weights='DEFAULT'"):
            build(**{old: True})
