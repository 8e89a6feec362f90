"""The plain container every data source returns and research code can build itself."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test splits as flattened float inputs in [0, 1] and int32 labels.

    Attributes:
      x_train: ``(n_train, input_dim)`` float32.
      y_train: ``(n_train,)`` int32 in ``[0, num_classes)``.
      x_test, y_test: the same for the held-out split.
      num_classes: number of classes.
      name: where the data came from.
      image_shape: the input's shape as an image (for drawing weights), if known.
      x_val, y_val: an optional validation split carved from the training data.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int | None = None
    name: str = "custom"
    image_shape: tuple[int, ...] | None = None
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    def __post_init__(self):
        fields = {}
        for split in ("train", "test", "val"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if split == "val" and x is None and y is None:
                continue
            if x is None or y is None:
                raise ValueError(f"Dataset needs both x_{split} and y_{split}.")
            x = np.asarray(x)
            y = np.asarray(y)
            if x.ndim < 2:
                raise ValueError(f"x_{split} must have shape (examples, features...), got {x.shape}.")
            x = x.reshape(x.shape[0], -1)
            if not np.issubdtype(x.dtype, np.floating):
                x = x.astype(np.float32)
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"y_{split} must be a vector of {x.shape[0]} labels to match x_{split}, got shape {y.shape}."
                )
            if y.size and not np.issubdtype(y.dtype, np.integer):
                if not np.all(np.equal(np.mod(y, 1), 0)):
                    raise ValueError(f"y_{split} must hold integer class labels, got dtype {y.dtype}.")
            fields[f"x_{split}"] = x.astype(np.float32, copy=False)
            fields[f"y_{split}"] = y.astype(np.int32, copy=False)
        if fields["x_train"].shape[1] != fields["x_test"].shape[1]:
            raise ValueError(
                f"x_train has {fields['x_train'].shape[1]} features but x_test has {fields['x_test'].shape[1]}."
            )
        labels = [fields[k] for k in ("y_train", "y_test", "y_val") if k in fields and fields[k].size]
        top = max((int(l.max()) for l in labels), default=-1)
        low = min((int(l.min()) for l in labels), default=0)
        if low < 0:
            raise ValueError(f"Labels must be non-negative class indices, got {low}.")
        num_classes = self.num_classes if self.num_classes is not None else top + 1
        if top >= num_classes:
            raise ValueError(f"Label {top} is out of range for num_classes={num_classes}.")
        for name, x in ((k, fields[k]) for k in ("x_train", "x_test", "x_val") if k in fields):
            if x.size and not np.all(np.isfinite(x)):
                raise ValueError(f"{name} contains NaN or infinite values.")
        fields["num_classes"] = int(num_classes)
        if self.image_shape is not None:
            shape = tuple(int(s) for s in self.image_shape)
            if int(np.prod(shape)) != fields["x_train"].shape[1]:
                raise ValueError(f"image_shape {shape} does not hold {fields['x_train'].shape[1]} features.")
            fields["image_shape"] = shape
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def __repr__(self):
        val = f", n_val={self.x_val.shape[0]}" if self.x_val is not None else ""
        return (f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.x_test.shape[0]}{val}, "
                f"input_dim={self.input_dim}, num_classes={self.num_classes})")

    def arrays(self) -> dict[str, np.ndarray]:
        """The four split arrays, as the training loop takes them."""
        return {"x_train": self.x_train, "y_train": self.y_train, "x_test": self.x_test, "y_test": self.y_test}

    def replace(self, **changes) -> "Dataset":
        return dataclasses.replace(self, **changes)
