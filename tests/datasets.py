"""Small deterministic datasets for tests: a multi-class and a regression table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def multiclass_table(rows: int = 600, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    species = np.where(x1 + (colour == "red") > 0.8, "setosa", np.where(x2 > 0, "versicolor", "virginica"))
    count = pa.array(rng.integers(0, 5, rows), mask=rng.random(rows) < 0.1)  # nullable integers
    return pa.table({"x1": x1, "x2": x2, "colour": colour, "count": count, "species": species})


def regression_table(rows: int = 600, seed: int = 6) -> pa.Table:
    rng = np.random.default_rng(seed)
    size = rng.uniform(20, 200, rows)
    rooms = rng.integers(1, 7, rows)
    district = rng.choice(["centre", "suburb", "rural"], rows)
    garden = rng.random(rows) < 0.5
    price = 1000 * size * np.where(district == "centre", 1.5, 1.0) + 5000 * rooms + 20000 * garden + rng.normal(0, 5000, rows)
    return pa.table({"size": size, "rooms": rooms, "district": district, "garden": garden, "price": price})
