"""TrainedModel: predictions by column name (as the pipeline exported them), and the comparison with
the truth, on a small booster trained here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

import snowsage.pipeline as tp

FEATURES = ("SQFT", "BEDROOMS")


@pytest.fixture(scope="module")
def model() -> tp.TrainedModel:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, size=(400, 2))
    y = 1000 * x[:, 0] + 50 * x[:, 1]
    booster = xgb.train({"objective": "reg:squarederror", "max_depth": 3}, xgb.DMatrix(x, label=y), 30)
    return tp.TrainedModel(
        booster=booster,
        label="PRICE",
        features=FEATURES,
        package=None,
        model_data_url="s3://b/k",  # type: ignore[arg-type]
    )


def test_predict_takes_the_features_by_name_in_any_order_and_case(model: tp.TrainedModel) -> None:
    frame = pd.DataFrame(
        {"bedrooms": [1.0, 9.0], "price": [0.0, 0.0], "sqft": [2.0, 8.0], "CITY": ["a", "b"]}
    )
    predicted = model.predict(frame)
    expected = model.booster.predict(xgb.DMatrix(np.array([[2.0, 1.0], [8.0, 9.0]])))
    assert predicted.tolist() == expected.tolist()
    assert predicted[1] > predicted[0]  # the larger house


def test_compare_puts_each_prediction_next_to_its_label(model: tp.TrainedModel) -> None:
    frame = pd.DataFrame(
        {"SQFT": [1.0, 5.0, 9.0], "BEDROOMS": [2.0, 3.0, 4.0], "PRICE": [1100.0, 5150.0, 9200.0]}
    )
    result = model.compare(frame)
    predicted = model.predict(frame)
    assert result.table["actual"].tolist() == [1100.0, 5150.0, 9200.0]
    assert result.table["error"].tolist() == (predicted - frame["PRICE"].to_numpy()).tolist()
    assert result.rmse == pytest.approx(float(np.sqrt(np.mean((predicted - frame["PRICE"].to_numpy()) ** 2))))
    assert result.mae == pytest.approx(float(np.mean(np.abs(predicted - frame["PRICE"].to_numpy()))))
    assert str(result).startswith("3 rows: RMSE ")


def test_a_frame_without_the_features_or_the_label_is_refused_naming_them(model: tp.TrainedModel) -> None:
    with pytest.raises(tp.InvalidArgument) as err:
        model.predict(pd.DataFrame({"SQFT": [1.0]}))
    assert str(err.value).startswith("the DataFrame has no column BEDROOMS; the model needs SQFT, BEDROOMS")
    with pytest.raises(tp.InvalidArgument, match="has no column PRICE"):
        model.compare(pd.DataFrame({"SQFT": [1.0], "BEDROOMS": [2.0]}))
    with pytest.raises(tp.InvalidArgument, match="pass a pandas DataFrame"):
        model.predict([[1.0, 2.0]])
    with pytest.raises(tp.InvalidArgument, match="not all numeric"):
        model.predict(pd.DataFrame({"SQFT": ["big"], "BEDROOMS": [2.0]}))
