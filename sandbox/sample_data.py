"""A deterministic housing-price table for the sandbox and the tests: same seed, same rows.

``housing_frame`` builds it with numpy; ``load_housing`` (re)creates a table and loads it in
chunks of JSON through ``PARSE_JSON``/``FLATTEN``. fakesnow's server cannot run ``write_pandas``
(no stages), and its ``executemany`` parses every row (about 2 ms a row); one JSON literal per
5,000 rows loads 20,000 rows in seconds, and the same SQL runs on Snowflake.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from snowsage.notebook import quote_table

if TYPE_CHECKING:
    import pandas as pd

# column -> Snowflake type; the frame's columns come in this order.
COLUMNS = {
    "HOUSE_ID": "INTEGER",
    "CITY": "VARCHAR",
    "BEDROOMS": "INTEGER",
    "BATHROOMS": "FLOAT",
    "SQFT": "INTEGER",
    "LOT_SQFT": "INTEGER",
    "YEAR_BUILT": "INTEGER",
    "DISTANCE_KM": "FLOAT",
    "HAS_GARAGE": "BOOLEAN",
    "LISTED_ON": "DATE",
    "PRICE": "INTEGER",
}
# city -> (share of listings, price per square foot in the centre)
CITIES = {
    "Springfield": (0.30, 210.0),
    "Riverton": (0.20, 260.0),
    "Lakeside": (0.15, 340.0),
    "Hillcrest": (0.15, 300.0),
    "Oakmont": (0.12, 420.0),
    "Bayview": (0.08, 520.0),
}
FIRST_LISTING = dt.date(2023, 1, 1)
CHUNK_ROWS = 5000


def housing_frame(rows: int = 20000, seed: int = 7) -> pd.DataFrame:
    """``rows`` listings; the price follows size, location, age and garage, plus noise."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    names = list(CITIES)
    shares = np.array([CITIES[c][0] for c in names])
    city_idx = rng.choice(len(names), size=rows, p=shares / shares.sum())
    bedrooms = rng.integers(1, 7, size=rows)
    bathrooms = np.clip(np.round((bedrooms * 0.6 + rng.normal(0.4, 0.5, rows)) * 2) / 2, 1.0, 4.5)
    sqft = np.clip(np.round(bedrooms * 420 + rng.normal(350, 180, rows)), 350, None).astype(np.int64)
    lot_sqft = np.round(sqft * rng.uniform(1.2, 6.0, rows)).astype(np.int64)
    year_built = rng.integers(1920, 2025, size=rows)
    distance_km = np.round(rng.gamma(2.0, 4.0, rows), 2)
    has_garage = rng.random(rows) < 0.65
    listed_days = rng.integers(0, 730, size=rows)
    per_sqft = np.array([CITIES[c][1] for c in names])[city_idx]
    price = (
        sqft * per_sqft * np.exp(-distance_km / 40)
        - (2025 - year_built) * 350
        + has_garage * 18000
        + rng.normal(0, 25000, rows)
    )
    return pd.DataFrame(
        {
            "HOUSE_ID": np.arange(1, rows + 1, dtype=np.int64),
            "CITY": np.array(names, dtype=object)[city_idx],
            "BEDROOMS": bedrooms.astype(np.int64),
            "BATHROOMS": bathrooms.astype(np.float64),
            "SQFT": sqft,
            "LOT_SQFT": lot_sqft,
            "YEAR_BUILT": year_built.astype(np.int64),
            "DISTANCE_KM": distance_km,
            "HAS_GARAGE": has_garage,
            "LISTED_ON": [FIRST_LISTING + dt.timedelta(days=int(d)) for d in listed_days],
            "PRICE": np.clip(np.round(price / 100) * 100, 40000, None).astype(np.int64),
        }
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value  # numpy scalars -> Python


def load_housing(conn: Any, table: str = "HOUSING", frame: pd.DataFrame | None = None) -> int:
    """Create or replace ``table`` (validated, quoted) and load ``frame`` (default: 20,000 rows).

    Returns the number of rows loaded.
    """
    frame = housing_frame() if frame is None else frame
    if list(frame.columns) != list(COLUMNS):
        raise ValueError(f"frame columns {list(frame.columns)} are not the housing columns {list(COLUMNS)}")
    target = quote_table(table)
    columns = ", ".join(f'"{name}" {kind}' for name, kind in COLUMNS.items())
    names = ", ".join(f'"{name}"' for name in COLUMNS)
    casts = ", ".join(f"value[{i}]::{kind}" for i, kind in enumerate(COLUMNS.values()))
    cur = conn.cursor()
    try:
        # Only the validated, quoted table name and our constant column list go into the SQL text.
        cur.execute(" ".join(["create or replace table", target, "(" + columns + ")"]))
        insert = " ".join(
            [
                "insert into",
                target,
                "(" + names + ")",
                "select",
                casts,
                "from table(flatten(input => parse_json(%s)))",
            ]
        )
        for start in range(0, len(frame), CHUNK_ROWS):
            part = frame.iloc[start : start + CHUNK_ROWS].itertuples(index=False, name=None)
            cur.execute(insert, (json.dumps([[_json_value(v) for v in row] for row in part]),))
        return len(frame)
    finally:
        cur.close()
