"""The plain container every data source returns and research code can build itself."""
from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from jaxgd.errors import DataError


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test splits: inputs stored as flat float32 rows, labels as int32, and the inputs' shape.

    Attributes:
      x_train: ``(n_train, ...)`` inputs; stored flattened, ``(n_train, input_dim)`` float32.
        Arrays are taken as they are (no scaling).
      y_train: ``(n_train,)`` integer labels in ``[0, num_classes)``.
      x_test, y_test: the same for the held-out split.
      num_classes: number of classes (default: the largest label plus one).
      name: where the data came from.
      input_shape: one example's shape as models see it, e.g. ``(28, 28, 1)`` for MNIST,
        ``(8, 8, 1)`` for the digits, ``(40,)`` for MNIST-1D. Default: the shape of the
        arrays given (``(64,)`` for flat rows). ``replace(input_shape=(64,))`` views images
        as flat vectors.
      x_val, y_val: an optional validation split carved from the training data.
      image_shape: the older name of ``input_shape`` (a 2-D ``(H, W)`` becomes ``(H, W, 1)``);
        kept equal to it.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int | None = None
    name: str = "custom"
    input_shape: tuple[int, ...] | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        fields = {}
        given_shape = None
        for split in ("train", "test", "val"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if split == "val" and x is None and y is None:
                continue
            if x is None or y is None:
                raise DataError(f"Dataset needs both x_{split} and y_{split}.")
            x = np.asarray(x)
            y = np.asarray(y)
            if x.ndim < 2:
                raise DataError(f"x_{split} must have shape (examples, features...), got {x.shape}.")
            if x.shape[0] == 0 and split != "val":
                raise DataError(f"The {split} split is empty (x_{split} has no examples): a run needs examples to "
                                f"{'train on' if split == 'train' else 'measure on'}.")
            if split == "train":
                given_shape = tuple(int(s) for s in x.shape[1:])
            x = x.reshape(x.shape[0], -1)
            if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
                    or x.dtype == np.bool_):
                raise DataError(f"x_{split} must hold numbers, got dtype {x.dtype}.")
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise DataError(
                    f"y_{split} must be a vector of {x.shape[0]} labels to match x_{split}, got shape {y.shape}."
                )
            if y.size and not np.issubdtype(y.dtype, np.integer):
                if not np.issubdtype(y.dtype, np.number) or not np.all(np.equal(np.mod(y, 1), 0)):
                    raise DataError(f"y_{split} must hold integer class labels, got dtype {y.dtype}.")
            if y.size and (y.min() < 0 or y.max() > np.iinfo(np.int32).max):
                bad = int(np.flatnonzero((y < 0) | (y > np.iinfo(np.int32).max))[0])
                raise DataError(f"y_{split}[{bad}] = {y[bad]} is not a class index (labels must lie in "
                                 "[0, num_classes)).")
            fields[f"x_{split}"] = x.astype(np.float32, copy=False)
            fields[f"y_{split}"] = y.astype(np.int32, copy=False)
        if fields["x_train"].shape[1] != fields["x_test"].shape[1]:
            raise DataError(
                f"x_train has {fields['x_train'].shape[1]} features but x_test has {fields['x_test'].shape[1]}."
            )
        num_classes = self.num_classes
        if num_classes is not None and (not isinstance(num_classes, numbers.Integral)
                                        or isinstance(num_classes, (bool, np.bool_)) or num_classes < 1):
            raise DataError(f"num_classes must be a positive integer, got {num_classes!r}.")
        labels = [(k, fields[k]) for k in ("y_train", "y_test", "y_val") if k in fields and fields[k].size]
        top = max((int(l.max()) for _, l in labels), default=-1)
        num_classes = int(num_classes) if num_classes is not None else top + 1
        if num_classes < 2:
            raise DataError(f"The labels name {num_classes} class{'es' if num_classes != 1 else ''} (every label "
                            f"is {top}); classification needs at least two: check the labels, or give num_classes.")
        for name, l in labels:
            if int(l.max()) >= num_classes:
                bad = int(np.flatnonzero(l >= num_classes)[0])
                raise DataError(f"{name}[{bad}] = {int(l[bad])} is out of range for num_classes={num_classes}.")
        for name, x in ((k, fields[k]) for k in ("x_train", "x_test", "x_val") if k in fields):
            if x.size and not np.all(np.isfinite(x)):
                raise DataError(f"{name} contains NaN or infinite values.")
        fields["num_classes"] = num_classes
        features = fields["x_train"].shape[1]
        shape = self.input_shape
        if shape is None and self.image_shape is not None:
            shape = tuple(self.image_shape)
            shape = shape + (1,) if len(shape) == 2 else shape
        if shape is None:
            shape = given_shape
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise DataError(f"input_shape must be a tuple of positive integers, got {shape!r}.") from None
        if not shape or any(s < 1 for s in shape) or int(np.prod(shape)) != features:
            raise DataError(f"input_shape {shape} does not hold the {features} features of each example.")
        fields["input_shape"] = fields["image_shape"] = shape
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    @property
    def input_dim(self) -> int:
        """Features per example: the product of ``input_shape``."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def __repr__(self):
        val = f", n_val={self.x_val.shape[0]}" if self.x_val is not None else ""
        return (f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.x_test.shape[0]}{val}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")

    def arrays(self) -> dict[str, np.ndarray]:
        """The four split arrays, as the training loop takes them (inputs as flat rows)."""
        return {"x_train": self.x_train, "y_train": self.y_train, "x_test": self.x_test, "y_test": self.y_test}

    def images(self, split: str = "train") -> np.ndarray:
        """A split's inputs in their shape, ``(n, *input_shape)`` (a view of the flat rows)."""
        return getattr(self, f"x_{split}").reshape((-1,) + self.input_shape)

    def replace(self, **changes) -> "Dataset":
        return dataclasses.replace(self, **changes)
