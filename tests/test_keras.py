"""Keras import: models built and saved by Keras 3 (torch backend) must load with h5py alone and agree.

Keras computes NHWC, our modules NCHW: inputs are transposed with ``permute(0, 3, 1, 2)``.
"""

import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
from keras import layers  # noqa: E402

import spikeport as sp  # noqa: E402
from spikeport.errors import ConversionError  # noqa: E402
from spikeport.neurons import SpikingMaxPool  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

ATOL = 1e-4
SUFFIXES = [".keras", ".h5"]


@pytest.fixture(autouse=True)
def _keras_seed():
    keras.utils.set_random_seed(0)


def randomize_batchnorms(model, seed: int = 1):
    """Non-trivial gamma, beta and moving statistics, so that a wrong BN translation shows."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            n = layer.get_weights()[0].shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0, 0.2, n),
                    rng.normal(0, 0.3, n),
                    rng.uniform(0.5, 2, n),
                ]
            )
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def save(model, tmp_path, suffix: str, name: str = "model") -> str:
    path = str(tmp_path / f"{name}{suffix}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras calls .h5 legacy
        model.save(path)
    return path


def keras_output(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, verbose=0))


def ours(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = module(torch.from_numpy(x).permute(0, 3, 1, 2))
    return out.numpy()


def load_quietly(path: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sp.load_model(path)


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


# -- equivalence ----------------------------------------------------------------------------------------


def sequential_cnn(with_pooling: bool = True):
    pool = layers.MaxPooling2D() if with_pooling else layers.AveragePooling2D(2)
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            layers.Conv2D(6, 3, activation="relu"),
            layers.BatchNormalization(),  # after the ReLU, as many Keras models have it
            pool,
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(16, activation="relu"),
            layers.Dense(5, activation="softmax"),
        ]
    )


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_sequential_cnn_matches_logits_and_drops_the_final_softmax(tmp_path, suffix):
    model = randomize_batchnorms(sequential_cnn())
    path = save(model, tmp_path, suffix)
    with pytest.warns(UserWarning, match="softmax"):
        module = sp.load_model(path)
    assert isinstance(module, torch.fx.GraphModule)
    assert any("softmax" in note for note in module.import_notes)
    x = images(7, (12, 12, 3))
    probabilities = keras_output(model, x)
    model.layers[-1].activation = keras.activations.linear  # the same network, returning logits
    logits = keras_output(model, x)
    np.testing.assert_allclose(ours(module, x), logits, atol=ATOL)
    np.testing.assert_array_equal(ours(module, x).argmax(1), probabilities.argmax(1))
    np.testing.assert_allclose(ours(module, x[:1]), logits[:1], atol=ATOL)  # any batch size
    # The flatten order is fixed in the Dense weights, not with a permute in the graph.
    assert not any(node.target is torch.permute for node in module.graph.nodes)


def functional_model():
    inputs = keras.Input((9, 9, 3), name="image")
    even = layers.Conv2D(4, 2, strides=2, padding="same", name="even_stride2")(inputs)  # pads 0 top, 1 bottom
    odd = layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False, name="odd_stride2")(inputs)
    x = layers.Add(name="sum")([even, odd])
    x = layers.Activation("relu")(x)
    x = layers.Concatenate(name="concat")([x, even])
    x = layers.BatchNormalization()(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(x)
    x = layers.ZeroPadding2D(((1, 0), (2, 1)))(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.ReLU()(x)
    outputs = layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_functional_model_with_add_concat_asymmetric_same_padding_and_depthwise(tmp_path, suffix):
    model = randomize_batchnorms(functional_model())
    module = sp.load_model(save(model, tmp_path, suffix))
    assert module.import_notes == []
    assert isinstance(module.even_stride2_pad, torch.nn.ZeroPad2d)  # TF 'same': the odd pixel at the end
    assert module.odd_stride2.padding == (1, 1) and module.odd_stride2.bias is None
    x = images(5, (9, 9, 3))
    np.testing.assert_allclose(ours(module, x), keras_output(model, x), atol=ATOL)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_smooth_activations_import_exactly_and_convert_with_fs(tmp_path, suffix):
    inputs = keras.Input((6, 6, 2))
    x = layers.Conv2D(4, 3, activation="swish")(inputs)
    x = layers.Conv2D(4, 3, activation="gelu")(x)
    x = layers.Activation("hard_swish")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(5, activation="tanh")(x)
    outputs = layers.Dense(3, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    module = sp.load_model(save(model, tmp_path, suffix))
    x = images(6, (6, 6, 2))
    # the final sigmoid is kept (it is no softmax), so the outputs compare directly
    np.testing.assert_allclose(ours(module, x), keras_output(model, x), atol=ATOL)
    # rate codes compute the smooth activations on accumulated inputs
    assert sp.convert(module, torch.from_numpy(x).permute(0, 3, 1, 2), "ecc").coding.name == "rate"
    snn = sp.convert(module, torch.from_numpy(x).permute(0, 3, 1, 2), "fs", steps=16)
    assert snn.coding.name == "temporal"


def layout_model():
    """Every place where channels-last and channels-first differ, with a nested Sequential block."""
    inputs = keras.Input((7, 7, 2))
    x = layers.Conv2D(4, 3, padding="same", dilation_rate=2, activation="relu")(inputs)
    x = layers.MaxPooling2D(2, strides=1, padding="same")(x)  # uneven: -inf padding
    x = layers.AveragePooling2D(2, padding="same")(x)  # 7 -> 4, uneven: torch ceil_mode is exact
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)  # 4 -> 2, uneven: ceil_mode again
    image = layers.Dense(3, activation="relu")(x)  # Dense on an image acts on channels
    flat = layers.Flatten()(image)
    normed = layers.BatchNormalization()(flat)  # per-feature parameters in Keras' flatten order
    back = layers.Reshape((2, 2, 3))(normed)  # undoes the flatten
    joined = layers.Concatenate()([normed, layers.Flatten()(x)])
    grid = layers.Reshape((2, 2, -1))(joined)  # channels-last target shape
    grid = layers.AveragePooling2D(2, strides=1, padding="same")(grid)  # uneven: edge replication
    sequence = layers.Reshape((4, -1))(grid)
    block = keras.Sequential([layers.Flatten(), layers.Dense(6), layers.BatchNormalization()], name="block")
    pooled = layers.GlobalAveragePooling2D(keepdims=True)(grid)
    vector = layers.Reshape((-1,))(pooled)
    corner = layers.Flatten()(layers.Conv2D(2, 1)(back))
    outputs = layers.Concatenate()([block(sequence), vector, corner])
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_reshape_flatten_order_pooling_and_nested_model(tmp_path, suffix):
    model = randomize_batchnorms(layout_model())
    module = sp.load_model(save(model, tmp_path, suffix))
    x = images(6, (7, 7, 2))
    np.testing.assert_allclose(ours(module, x), keras_output(model, x), atol=ATOL)


def strip_layer_names(archive_path: Path) -> None:
    """Older Keras 3 files lack the ``name`` attribute of each ``vars`` group: weights are found by path."""
    with zipfile.ZipFile(archive_path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights_path = archive_path.with_suffix(".weights.h5")
    weights_path.write_bytes(members["model.weights.h5"])
    with h5py.File(weights_path, "r+") as f:
        f.visititems(lambda _, item: item.attrs.__delitem__("name") if "name" in item.attrs else None)
    members["model.weights.h5"] = weights_path.read_bytes()
    with zipfile.ZipFile(archive_path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("build", [functional_model, layout_model])
def test_keras_archive_without_layer_names_in_the_weights_file(tmp_path, build):
    model = randomize_batchnorms(build())
    path = Path(save(model, tmp_path, ".keras"))
    strip_layer_names(path)
    module = sp.load_model(path)
    x = images(3, model.input_shape[1:])
    np.testing.assert_allclose(ours(module, x), keras_output(model, x), atol=ATOL)


def test_unknown_spatial_size_is_fine_for_fully_convolutional_models(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = layers.Dense(2)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    module = sp.load_model(save(model, tmp_path, ".keras"))
    for size in (5, 8):
        x = images(2, (size, size, 3))
        np.testing.assert_allclose(ours(module, x), keras_output(model, x), atol=ATOL)


# -- Keras 2 (tf.keras) legacy HDF5, written by hand --------------------------------------------------------


def keras2_layer(class_name: str, name: str, inbound: list[str] | None = None, **config) -> dict:
    layer = {
        "class_name": class_name,
        "config": {"name": name, "trainable": True, "dtype": "float32", **config},
    }
    if inbound is not None:
        layer["name"] = name
        layer["inbound_nodes"] = [[[source, 0, 0, {}] for source in inbound]] if inbound else []
    return layer


def write_keras2_h5(path, model_config: dict, weights: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    """The layout of tf.keras 2.x ``model.save('x.h5')``: model_config + model_weights/<layer>/<layer>/<var>:0."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(model_config)
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in weights]
        for layer_name, variables in weights.items():
            layer_group = group.create_group(layer_name)
            names = [f"{layer_name}/{var}:0" for var, _ in variables]
            layer_group.attrs["weight_names"] = [n.encode() for n in names]
            for name, (_, array) in zip(names, variables, strict=True):
                layer_group.create_dataset(name, data=array)


def keras2_weights(model) -> dict[str, list[tuple[str, np.ndarray]]]:
    roles = {
        "Conv2D": ["kernel", "bias"],
        "Dense": ["kernel", "bias"],
        "BatchNormalization": ["gamma", "beta", "moving_mean", "moving_variance"],
    }
    return {
        layer.name: list(zip(roles.get(type(layer).__name__, []), layer.get_weights(), strict=True))
        for layer in model.layers
    }


def test_keras2_functional_h5_written_by_hand(tmp_path):
    inputs = keras.Input((6, 6, 2), name="input_1")
    a = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2d")(inputs)
    a = layers.BatchNormalization(name="batch_normalization")(a)
    b = layers.Conv2D(4, 1, name="conv2d_1")(inputs)
    x = layers.Add(name="add")([a, b])
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(5, name="dense")(x)
    model = randomize_batchnorms(keras.Model(inputs, outputs))
    conv = {"kernel_size": [3, 3], "strides": [1, 1], "dilation_rate": [1, 1], "data_format": "channels_last"}
    config = {
        "class_name": "Functional",
        "config": {
            "name": "model",
            "layers": [
                keras2_layer("InputLayer", "input_1", [], batch_input_shape=[None, 6, 6, 2], sparse=False),
                keras2_layer(
                    "Conv2D",
                    "conv2d",
                    ["input_1"],
                    filters=4,
                    padding="same",
                    activation="relu",
                    use_bias=True,
                    **conv,
                ),
                keras2_layer(
                    "BatchNormalization",
                    "batch_normalization",
                    ["conv2d"],
                    axis=[3],
                    epsilon=0.001,
                    center=True,
                    scale=True,
                ),
                keras2_layer(
                    "Conv2D",
                    "conv2d_1",
                    ["input_1"],
                    filters=4,
                    padding="valid",
                    activation="linear",
                    use_bias=True,
                    **{**conv, "kernel_size": [1, 1]},
                ),
                keras2_layer("Add", "add", ["batch_normalization", "conv2d_1"]),
                keras2_layer("Flatten", "flatten", ["add"], data_format="channels_last"),
                keras2_layer("Dense", "dense", ["flatten"], units=5, activation="linear", use_bias=True),
            ],
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [["dense", 0, 0]],
        },
    }
    path = tmp_path / "keras2_functional.h5"
    write_keras2_h5(path, config, keras2_weights(model))
    module = sp.load_model(path)
    x = images(4, (6, 6, 2))
    np.testing.assert_allclose(ours(module, x), keras_output(model, x), atol=ATOL)


def test_keras2_sequential_h5_without_input_layer(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((5, 5, 1)),
            layers.Conv2D(3, 2, activation="relu", name="conv2d"),
            layers.Flatten(name="flatten"),
        ]
        + [layers.Dense(4, activation="softmax", name="dense")]
    )
    conv = {"kernel_size": [2, 2], "strides": [1, 1], "dilation_rate": [1, 1], "padding": "valid"}
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                keras2_layer(
                    "Conv2D",
                    "conv2d",
                    filters=3,
                    activation="relu",
                    batch_input_shape=[None, 5, 5, 1],
                    **conv,
                ),
                keras2_layer("Flatten", "flatten"),
                keras2_layer("Dense", "dense", units=4, activation="softmax"),
            ],
        },
    }
    path = tmp_path / "keras2_sequential.h5"
    write_keras2_h5(path, config, keras2_weights(model))
    module = load_quietly(path)
    x = images(3, (5, 5, 1))
    model.layers[-1].activation = keras.activations.linear
    np.testing.assert_allclose(ours(module, x), keras_output(model, x), atol=ATOL)


# -- conversion -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ecc", "max[reset=soft]"])  # hard reset biases the rates
def test_loaded_keras_model_with_max_pooling_converts_and_the_snn_agrees_in_argmax(tmp_path, method):
    model = randomize_batchnorms(sequential_cnn(with_pooling=True))
    module = load_quietly(save(model, tmp_path, ".keras"))
    calibration = torch.from_numpy(np.abs(images(128, (12, 12, 3), seed=1))).permute(0, 3, 1, 2)
    snn = sp.convert(module, calibration, method=method)
    assert any(isinstance(layer, SpikingMaxPool) for layer in snn.spiking_layers().values())
    x = np.abs(images(64, (12, 12, 3), seed=2))
    with torch.no_grad():
        readout = snn(torch.from_numpy(x).permute(0, 3, 1, 2), timesteps=256)[-1]
    agreement = (readout.argmax(1).numpy() == keras_output(model, x).argmax(1)).mean()
    assert agreement >= 0.9


def test_same_padded_max_pool_converts(tmp_path):
    """An uneven 'same' max-pool (-inf padding at the end) is one spiking max-pool after import."""
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(4, 3, activation="relu"),
            layers.MaxPooling2D(2, strides=1, padding="same"),
            layers.Flatten(),
            layers.Dense(3),
        ]
    )
    module = load_quietly(save(model, tmp_path, ".keras"))
    x = np.abs(images(64, (8, 8, 1), seed=3))
    torch_x = torch.from_numpy(x).permute(0, 3, 1, 2)
    snn = sp.convert(module, torch_x, "ecc")
    assert sum(isinstance(layer, SpikingMaxPool) for layer in snn.spiking_layers().values()) == 1
    with torch.no_grad():
        readout = snn(torch_x, timesteps=512)[-1].numpy()
    expected = keras_output(model, x)
    assert np.abs(readout - expected).mean() < 0.02 * np.abs(expected).mean()


# -- errors ----------------------------------------------------------------------------------------------


def small_model():
    return keras.Sequential([keras.Input((4, 4, 1)), layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(2)])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_truncated_file_is_a_conversion_error(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    data = Path(save(small_model(), tmp_path, suffix)).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated or corrupt"):
        sp.load_model(path)


@pytest.mark.parametrize("suffix", [".keras", ".h5", ".hdf5"])
def test_random_bytes_are_not_a_keras_file(tmp_path, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ConversionError, match="not a Keras model file"):
        sp.load_model(path)


def test_weights_only_h5_says_so(tmp_path):
    weights = tmp_path / "model.weights.h5"
    small_model().save_weights(str(weights))
    renamed = tmp_path / "weights.h5"
    weights.rename(renamed)
    with pytest.raises(ConversionError, match="only weights"):
        sp.load_model(renamed)
    keras2_style = tmp_path / "keras2_weights.h5"
    with h5py.File(keras2_style, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
    with pytest.raises(ConversionError, match="only weights"):
        sp.load_model(keras2_style)


@pytest.mark.parametrize(
    ("model_config", "match"),
    [
        ("{not json", "model_config is not valid JSON"),
        ({"class_name": "MyModel", "config": {}}, "subclassed or custom model"),
        (
            {"class_name": "Functional", "config": {"layers": [], "input_layers": [], "output_layers": []}},
            "malformed",
        ),
        (
            {"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "config": {}}]}},
            "input shape",
        ),
        (
            {
                "class_name": "Sequential",
                "config": {"layers": [keras2_layer("Dense", "d", batch_input_shape=[None, 3])]},
            },
            r"layer 'd' \(Dense\): unreadable layer config \(KeyError: 'units'\)",
        ),
    ],
)
def test_broken_model_configs_are_conversion_errors(tmp_path, model_config, match):
    path = tmp_path / "broken.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = model_config if isinstance(model_config, str) else json.dumps(model_config)
    with pytest.raises(ConversionError, match=match):
        sp.load_model(path)


def test_missing_layer_weights_name_the_layer(tmp_path):
    config = {
        "class_name": "Sequential",
        "config": {"layers": [keras2_layer("Dense", "dense", units=2, batch_input_shape=[None, 3])]},
    }
    path = tmp_path / "no_weights.h5"
    write_keras2_h5(path, config, {})
    with pytest.raises(ConversionError, match=r"layer 'dense' \(Dense\): its weights are missing"):
        sp.load_model(path)


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        (
            layers.LSTM(3, name="recurrent"),
            r"layer 'recurrent' \(LSTM\) has no spikeport equivalent; supported Keras layers: .*Conv2D",
        ),
        (layers.Conv3D(2, 1, name="volume"), r"layer 'volume' \(Conv3D\) has no spikeport equivalent"),
        (
            layers.Dense(3, activation="elu", name="squash"),
            r"'squash' \(Dense\): activation 'elu' is not supported; use gelu",
        ),
        (layers.ReLU(negative_slope=0.1, name="leaky"), r"'leaky' \(ReLU\): only a ReLU from 0"),
        (layers.Softmax(name="early"), r"'early' \(Softmax\): softmax is only supported as the last"),
    ],
)
def test_unsupported_layers_and_options_name_the_layer(tmp_path, layer, match):
    shape = (4, 3, 3, 2) if isinstance(layer, layers.Conv3D) else (4, 3)
    model = keras.Sequential([keras.Input(shape), layer, layers.Flatten(), layers.Dense(2)])
    for suffix in SUFFIXES:
        with pytest.raises(ConversionError, match=match):
            sp.load_model(save(model, tmp_path, suffix))


@keras.saving.register_keras_serializable(package="SpikeportTest")
class TimesTwo(layers.Layer):
    def call(self, x):
        return x * 2


def test_custom_layer_is_a_conversion_error(tmp_path):
    model = keras.Sequential([keras.Input((3,)), TimesTwo(name="double"), layers.Dense(2)])
    with pytest.raises(
        ConversionError, match=r"'double' \(TimesTwo\): unsupported custom object 'SpikeportTest>TimesTwo'"
    ):
        sp.load_model(save(model, tmp_path, ".keras"))


def test_missing_file_and_wrong_zip(tmp_path):
    with pytest.raises(ConversionError, match="no such file"):
        sp.load_model(tmp_path / "absent.keras")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ConversionError, match="config.json"):
        sp.load_model(tmp_path / "other.keras")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_relu6_as_activation_and_as_a_capped_relu_layer(tmp_path, suffix):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            layers.Conv2D(4, 3, activation="relu6"),
            layers.Conv2D(4, 3),
            layers.ReLU(max_value=2.0),
            layers.Flatten(),
            layers.Dense(3),
        ]
    )
    path = save(model, tmp_path, suffix)
    module = load_quietly(path)
    x = images(5, (8, 8, 2)) * 4  # inputs large enough to reach both ceilings
    np.testing.assert_allclose(ours(module, x), keras_output(model, x), atol=ATOL)
    snn = sp.convert(module, torch.from_numpy(x).permute(0, 3, 1, 2), "rmp", progress=False)
    assert [float(n.threshold.max()) for n in snn.neurons().values()] <= [6.0, 2.0]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_preprocessing_separable_convs_and_global_max_pooling(tmp_path, suffix):
    model = keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            layers.Rescaling(1 / 255.0, offset=-0.5),
            layers.Normalization(mean=[0.1, -0.2, 0.0], variance=[0.5, 2.0, 1.0]),
            layers.SeparableConv2D(4, 3, depth_multiplier=2, padding="same", activation="relu"),
            layers.SeparableConv2D(6, 3, strides=2, use_bias=False),
            layers.ReLU(),
            layers.GlobalMaxPooling2D(),
            layers.Dense(3),
        ]
    )
    path = save(model, tmp_path, suffix)
    module = load_quietly(path)
    x = np.random.default_rng(0).uniform(0, 255, size=(5, 10, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(module, x), keras_output(model, x), atol=1e-4, rtol=1e-4)
    snn = sp.convert(module, torch.from_numpy(x).permute(0, 3, 1, 2), "ecc", progress=False)
    assert snn(torch.from_numpy(x).permute(0, 3, 1, 2), 8).shape == (8, 5, 3)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_layer_normalization_over_token_features(tmp_path, suffix):
    model = keras.Sequential(
        [
            keras.Input((5, 6)),
            layers.Dense(8, activation="relu"),
            layers.LayerNormalization(),
            layers.Dense(8, activation="relu"),
            layers.Flatten(),
            layers.Dense(3),
        ]
    )
    for layer in model.layers:  # a non-trivial scale and centre
        if isinstance(layer, layers.LayerNormalization):
            layer.gamma.assign(np.linspace(0.5, 1.5, 8).astype(np.float32))
            layer.beta.assign(np.linspace(-0.2, 0.2, 8).astype(np.float32))
    path = save(model, tmp_path, suffix)
    module = load_quietly(path)
    x = images(4, (5, 6))
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), keras_output(model, x), atol=ATOL)
    snn = sp.convert(module, torch.from_numpy(x), "percentile[spike_bits=4]", progress=False)
    assert snn.analog_layers()  # the normalisation is computed on values, counted apart


def test_per_feature_preprocessing_after_a_flatten_is_refused(tmp_path):
    """Keras flattens channels-last: per-feature values there would need reordering, which is not done."""
    model = keras.Sequential(
        [
            keras.Input((2, 2, 3)),
            layers.Flatten(),
            layers.Normalization(mean=np.zeros(12), variance=np.ones(12), name="norm"),
            layers.Dense(2),
        ]
    )
    with pytest.raises(
        ConversionError, match=r"'norm' \(Normalization\): its scale has 12 values for \(N, 12\)"
    ):
        sp.load_model(save(model, tmp_path, ".keras"))
