"""Keras import end to end: train a small Keras CNN on MNIST, save it, load it with sp.load_model, compare.

The CNN is Conv2D(valid) -> ReLU -> BatchNormalization -> MaxPooling2D, twice (BN *after* the ReLU, as
many Keras models have it), then Flatten -> Dense(relu) -> Dense(softmax). It trains for a short while on
CPU with Keras 3 on the torch backend, is saved as ``.keras`` and legacy ``.h5``, and each file is loaded
with ``sp.load_model`` (h5py only) and checked against Keras on test images: our module returns the
logits (the final softmax is dropped), so both the logits and the softmax of ours are compared.
Then the ``.keras`` import is converted (default ``ecc``) and simulated on the MNIST test set; the table
gives its agreement with Keras' own predictions at every T.
Run: python bench/keras_cnn.py [--epochs 1] [--out results/keras] [--compare 1000] [--method ecc]
Needs: pip install -c constraints.txt "keras>=3" h5py
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from keras import layers  # noqa: E402

import spikeport as sp  # noqa: E402
from spikeport.data.mnist import load_mnist  # noqa: E402


def mnist_cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 3, padding="valid"),
            layers.ReLU(),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="valid"),
            layers.ReLU(),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ],
        name="mnist_cnn",
    )


def nhwc(images: torch.Tensor) -> np.ndarray:
    """spikeport's MNIST is NCHW float32; Keras wants NHWC."""
    return images.permute(0, 2, 3, 1).numpy()


def keras_logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The same network without its final softmax (what the imported module computes)."""
    head = model.layers[-1]
    softmax = head.activation
    head.activation = keras.activations.linear
    try:
        return np.asarray(model.predict(x, batch_size=500, verbose=0))
    finally:
        head.activation = softmax


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def compare(path: Path, model: keras.Model, x: np.ndarray, labels: np.ndarray) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        module = sp.load_model(path)
        load_seconds = time.perf_counter() - start
    with torch.no_grad():
        ours = module(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()  # NHWC -> NCHW
    reference_logits = keras_logits(model, x)
    reference = np.asarray(model.predict(x, batch_size=500, verbose=0))
    return {
        "file": str(path),
        "load_seconds": round(load_seconds, 3),
        "max_abs_diff_logits": float(np.abs(ours - reference_logits).max()),
        "max_abs_diff_probabilities": float(np.abs(softmax(ours) - reference).max()),
        "argmax_agreement": float((ours.argmax(1) == reference.argmax(1)).mean()),
        "accuracy_ours": float((ours.argmax(1) == labels).mean()),
        "import_notes": list(module.import_notes),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, UserWarning)],
    }


class KerasReference(torch.nn.Module):
    """Keras' own predictions (logits, NCHW in) as the reference for agreement: the SNN is compared with
    the Keras model itself, not only with our import of it."""

    def __init__(self, model: keras.Model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(keras_logits(self.model, x.permute(0, 2, 3, 1).numpy()))


def convert_and_evaluate(path: Path, model: keras.Model, args) -> dict:
    """Import the .keras file, convert it with ``args.method`` and measure agreement with Keras at every T."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dropped softmax was reported above
        module = sp.load_model(path)  # NCHW input, so spikeport's MNIST (N, 1, 28, 28) fits as is
    start = time.perf_counter()
    snn = sp.convert(module, "mnist:train", args.method, calibration_samples=args.calibration_samples)
    convert_seconds = time.perf_counter() - start
    start = time.perf_counter()
    evaluation = sp.evaluate(
        snn, "mnist:test", args.timesteps, ann=KerasReference(model), limit=args.snn_images, progress=False
    )
    simulate_seconds = time.perf_counter() - start
    print(
        f"\nSNN ({args.method}) of the imported .keras model vs Keras' own predictions, {evaluation.samples} "
        f"test images (converted in {convert_seconds:.1f} s, simulated in {simulate_seconds:.0f} s):"
    )
    print(evaluation.to_markdown())
    return {
        "method": args.method,
        "calibration_samples": args.calibration_samples,
        "images": evaluation.samples,
        "convert_seconds": round(convert_seconds, 1),
        "simulate_seconds": round(simulate_seconds, 1),
        "agreement_with_keras": {str(t): a for t, a in evaluation.agreement.items()},
        "accuracy": {str(t): a for t, a in evaluation.accuracy.items()},
        "keras_accuracy": evaluation.ann_accuracy,
        "spikes_per_image": {str(t): v for t, v in evaluation.spikes_per_image.items()},
        "sops_per_image": {str(t): v for t, v in evaluation.sops_per_image.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", default="results/keras")
    parser.add_argument("--compare", type=int, default=1000, help="test images for the equivalence check")
    parser.add_argument("--method", default="ecc", help="conversion method spec, e.g. ecc or max[reset=soft]")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--snn-images", type=int, default=10000, help="test images simulated")
    parser.add_argument("--calibration-samples", type=int, default=5000)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)

    train, test = load_mnist("train"), load_mnist("test")
    x_train, y_train = nhwc(train.x), train.y.numpy()
    x_test, y_test = nhwc(test.x), test.y.numpy()

    model = mnist_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch, epochs=args.epochs, verbose=2)
    train_seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=500, verbose=0)
    print(
        f"keras ({keras.__version__}, backend {keras.backend.backend()}): test accuracy {accuracy:.4f} "
        f"after {args.epochs} epoch(s), {train_seconds:.0f} s"
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "mnist_cnn.keras", out / "mnist_cnn.h5"]
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras calls .h5 "legacy"
            model.save(path)

    x, labels = x_test[: args.compare], y_test[: args.compare]
    rows = [compare(path, model, x, labels) for path in paths]
    for row in rows:
        print(
            f"{row['file']}: max |logits diff| {row['max_abs_diff_logits']:.2e}, max |prob diff| "
            f"{row['max_abs_diff_probabilities']:.2e}, argmax agreement {row['argmax_agreement']:.4f}, "
            f"accuracy {row['accuracy_ours']:.4f} on {len(x)} test images (loaded in {row['load_seconds']} s)"
        )
        for note in row["import_notes"]:
            print(f"  note: {note}")

    conversion = convert_and_evaluate(paths[0], model, args)
    summary = {
        "keras_version": keras.__version__,
        "test_accuracy_keras": float(accuracy),
        "files": rows,
        "snn": conversion,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'summary.json'}")


if __name__ == "__main__":
    main()
