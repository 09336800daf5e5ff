"""Options, step counts, inputs and labels of the wrong kind or range fail at once with one named line, never
deep inside PyTorch or as a silently wrong result."""

import re

import pytest
import torch
from torch import nn

import spikeport as sp
from spikeport.errors import ConversionError, InputError, OptionError
from spikeport.methods import make_method, parse_method


def mlp(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, classes)).eval()


def from_spec(spec: str):
    name, options = parse_method(spec)
    return make_method(name, **options)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(24, 6, generator=torch.Generator().manual_seed(1))
    return x, mlp()(x).argmax(dim=-1)


@pytest.fixture(scope="module", params=["max", "fs"])
def snn(request, data):
    return sp.convert(mlp(), data[0], request.param)


# -- 1. method options: typed by their hints, in the range the math needs ----------------------------------


@pytest.mark.parametrize(
    ("spec", "option", "value"),
    [
        ("max[channelwise=no]", "channelwise", "'no'"),  # "no" is a truthy string: it turned channel-wise on
        ("max[channelwise=2]", "channelwise", "2"),
        ("calibrated[timesteps=1.5]", "timesteps", "1.5"),
        ("calibrated[timesteps=0]", "timesteps", "0"),
        ("calibrated[calibration_limit=0]", "calibration_limit", "0"),
        ("rmp[alpha=nan]", "alpha", "nan"),
        ("rmp[alpha=inf]", "alpha", "inf"),
        ("rmp[alpha=abc]", "alpha", "'abc'"),
        ("rmp[alpha=0]", "alpha", "0"),
        ("rmp[calibration_timesteps=0]", "calibration_timesteps", "0"),
        ("rmp[current=peak]", "current", "'peak'"),
        ("percentile[percentile=0]", "percentile", "0"),
        ("ecc[percentile=101]", "percentile", "101"),
        ("ecc[weight_bits=1]", "weight_bits", "1"),
        ("ecc[weight_bits=4.0]", "weight_bits", "4.0"),
        ("ecc[thresholding=1]", "thresholding", "1"),
        ("max[reset=never]", "reset", "'never'"),
        ("max[initial_potential=-0.5]", "initial_potential", "-0.5"),
        ("fs[steps=0]", "steps", "0"),
        ("fs[rounding=up]", "rounding", "'up'"),
    ],
)
def test_bad_method_options_name_the_option_and_the_value(spec, option, value):
    with pytest.raises(OptionError) as error:
        from_spec(spec)
    message = one_line(error)
    assert (
        f"method {spec.split('[')[0]!r}" in message and f"{option} " in message and f"got {value}" in message
    )


def test_the_python_api_checks_options_the_same_way(data):
    with pytest.raises(OptionError, match="alpha is a finite number, got nan"):
        sp.convert(mlp(), data[0], method="rmp", alpha=float("nan"))
    with pytest.raises(OptionError, match="channelwise is true or false, got 'yes'"):
        sp.convert(mlp(), data[0], method="max", channelwise="yes")


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"seed": 1.5}, "seed is an integer, got 1.5"),
        ({"memory_budget": 0}, "memory_budget must be >= 1, got 0"),
        ({"encoding_scale": float("inf")}, "encoding_scale is a finite number, got inf"),
        ({"calibration_samples": 0}, "calibration_samples must be >= 1, got 0"),
        ({"batch_size": True}, "batch_size is an integer, got True"),
        ({"encoding": "bogus"}, "encoding must be 'analog' or 'poisson', got 'bogus'"),
    ],
)
def test_convert_checks_its_own_keywords(data, keywords, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        sp.convert(mlp(), data[0], method="max", **keywords)


def test_written_option_values_are_read_as_their_type():
    assert from_spec("max[channelwise=false]").channelwise is False
    assert from_spec("max[channelwise=0]").channelwise is False
    assert make_method("max", channelwise="TRUE").channelwise is True
    rmp = make_method("rmp", alpha=2, reset="hard", percentile=None)
    assert rmp.alpha == 2.0 and isinstance(rmp.alpha, float) and rmp.reset is sp.neurons.Reset.HARD
    assert from_spec("fs[steps=16, rounding=floor]").steps == 16


# -- 2. step counts: an int or several positive ints -------------------------------------------------------


@pytest.mark.parametrize("timesteps", ["16", [2.5], 2.0, [True], [0], [], None])
def test_evaluate_refuses_step_counts_that_are_not_positive_ints(snn, data, timesteps):
    with pytest.raises(OptionError, match="timesteps") as error:
        sp.evaluate(snn, data, timesteps=timesteps, progress=False)
    if timesteps == "16":
        assert "timesteps=[16] or timesteps=16" in one_line(error)


def test_evaluate_takes_one_int_or_several(data):
    snn = sp.convert(mlp(), data[0], "max")
    assert sp.evaluate(snn, data, timesteps=4, progress=False).timesteps == [4]
    assert sp.evaluate(snn, data, timesteps=(4, 2, 4), progress=False).timesteps == [2, 4]


@pytest.mark.parametrize("timesteps", [2.5, 0, "8", True])
def test_a_network_refuses_step_counts_that_are_not_positive_ints(snn, data, timesteps):
    with pytest.raises(OptionError, match="timesteps must be a positive integer"):
        snn(data[0], timesteps=timesteps)


@pytest.mark.parametrize(("argument", "value"), [("timesteps", "16"), ("codes", [2.5])])
def test_compare_checks_its_step_counts_before_any_conversion(data, argument, value):
    with pytest.raises(OptionError, match=argument):
        sp.compare(mlp(), data[0], data, ["max"], progress=False, **{argument: value})


# -- 3. what a network takes as input ----------------------------------------------------------------------


def test_a_network_casts_float_input_to_its_dtype_and_refuses_integers_and_empty_batches(snn, data):
    x = data[0]
    torch.testing.assert_close(snn(x.double()), snn(x))
    with pytest.raises(InputError, match="uint8.*x.float"):
        snn((x * 255).to(torch.uint8))
    with pytest.raises(InputError, match="empty batch"):
        snn(x[:0])


# -- 4. labels and the reference ANN must fit the network's classes ----------------------------------------


@pytest.mark.parametrize("label", [50, -1])
def test_labels_out_of_range_are_refused(snn, data, label):
    x, y = data
    y = y.clone()
    y[5] = label
    with pytest.raises(InputError) as error:
        sp.evaluate(snn, (x, y), timesteps=[2], batch_size=4, progress=False)
    message = one_line(error)
    assert f"batch 1 has label {label} at sample 1" in message and "3 classes" in message


def test_float_labels_are_refused(snn, data):
    x, y = data
    with pytest.raises(InputError, match="float32"):
        sp.evaluate(snn, (x, y.float() + 0.5), timesteps=[2], progress=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y.float() + 0.5), batch_size=4)
    with pytest.raises(InputError, match="labels of batch 0 are float32"):
        sp.evaluate(snn, loader, timesteps=[2], progress=False)


def test_an_ann_with_other_classes_is_refused(snn, data):
    with pytest.raises(OptionError, match="ann= outputs 5 classes, the network 3"):
        sp.evaluate(snn, data, timesteps=[2], ann=mlp(classes=5), progress=False)


# -- 5. the caller's model keeps its mode ------------------------------------------------------------------


def test_evaluate_restores_the_training_mode_of_the_ann(snn, data):
    model = mlp().train()
    model[1].eval()  # a mixed model: each module gets its own mode back
    sp.evaluate(snn, data, timesteps=[2], ann=model, progress=False)
    assert [m.training for m in model.modules()] == [True, True, False, True]


# -- 6. a model without activations has nothing to convert -------------------------------------------------


@pytest.mark.parametrize("method", ["max", "fs"])
def test_a_model_without_activation_is_refused(data, method):
    with pytest.raises(ConversionError, match="no activation to convert.*ReLU"):
        sp.convert(nn.Sequential(nn.Linear(6, 3)), data[0], method)
