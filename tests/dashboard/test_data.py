"""The Data page: samples, uploads (good and bad), target, task, split, profile."""

from pathlib import Path

from apptest_helpers import open_page, texts

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _charts(at) -> int:
    return len(at.get("plotly_chart"))


def test_credit_sample_is_ready_on_first_visit(app):
    app.run()
    assert not app.exception
    assert app.selectbox(key="data.target").value == "credit_risk"
    assert "Task: **binary**" in texts(app.success)
    assert "credit_risk.csv" in texts(app.caption)
    assert _charts(app) >= 3  # class balance, missing values, distributions


def test_load_another_sample_sets_its_target(app):
    app.run()
    app.selectbox(key="data.sample_choice").select("fin_sentiment.csv")
    app.button[0].click().run()
    assert not app.exception
    assert app.selectbox(key="data.target").value == "label"
    assert "multiclass" in texts(app.success)


def test_upload_csv_and_pick_the_target(app):
    app.run()
    app.file_uploader[0].set_value(
        ("market.csv", (SAMPLES / "market_daily.csv").read_bytes(), "text/csv")
    ).run()
    assert not app.exception
    assert "market.csv" in texts(app.caption)
    app.selectbox(key="data.target").select("next_day_direction").run()
    assert "Task: **binary**" in texts(app.success)


def test_chronological_split_by_a_date_column(app):
    app.run()
    app.file_uploader[0].set_value(
        ("market.csv", (SAMPLES / "market_daily.csv").read_bytes(), "text/csv")
    ).run()
    app.selectbox(key="data.target").select("next_day_direction").run()
    app.radio(key="data.split_kind").set_value("time").run()
    assert not app.exception
    assert app.selectbox(key="data.split_column").value == "date"
    assert "Task: **binary**" in texts(app.success)  # the time split validates


def test_a_time_series_is_profiled_over_time(app):
    app.run()
    assert "per month" not in _chart_titles(app)  # German credit has no dates
    app.file_uploader[0].set_value(
        ("market.csv", (SAMPLES / "market_daily.csv").read_bytes(), "text/csv")
    ).run()
    app.selectbox(key="data.target").select("next_day_direction").run()
    assert not app.exception
    titles = _chart_titles(app)
    # Six years of days: the target's share per month, and the date column as rows per month.
    assert "next_day_direction per month" in titles
    app.multiselect[0].set_value(["date"]).run()
    assert "date: rows per month" in _chart_titles(app)


def _chart_titles(at) -> str:
    import json

    return "\n".join(
        str(json.loads(chart.proto.spec).get("layout", {}).get("title", {}).get("text"))
        for chart in at.get("plotly_chart")
    )


def test_empty_file_shows_the_engine_message(app):
    app.run()
    app.file_uploader[0].set_value(("empty.csv", b"", "text/csv")).run()
    assert not app.exception
    assert "empty.csv is empty" in texts(app.error)
    assert "credit_risk.csv" in texts(app.caption)  # the app keeps working on the previous table


def test_binary_garbage_shows_the_engine_message(app):
    app.run()
    garbage = bytes(range(256)) * 40
    app.file_uploader[0].set_value(("garbage.csv", garbage, "text/csv")).run()
    assert not app.exception
    assert "binary file" in texts(app.error)


def test_one_class_target_is_refused_with_the_fix(app):
    app.run()
    rows = "amount,note,label\n" + "".join(f"{i},row {i},yes\n" for i in range(40))
    app.file_uploader[0].set_value(("one_class.csv", rows.encode(), "text/csv")).run()
    assert not app.exception
    app.selectbox(key="data.target").select("label").run()
    assert not app.exception
    assert "only one class" in texts(app.error)


def test_other_pages_stay_usable_after_a_bad_upload(app):
    app.run()
    app.file_uploader[0].set_value(("empty.csv", b"  ", "text/csv")).run()
    open_page(app, "train")
    assert not app.exception
    assert [b for b in app.button if b.label == "Start fine-tuning"]


def test_auto_split_is_chronological_when_there_is_a_date(app):
    app.run()
    assert "split: stratified random" in texts(app.success)  # credit has no date column
    app.file_uploader[0].set_value(
        ("market.csv", (SAMPLES / "market_daily.csv").read_bytes(), "text/csv")
    ).run()
    app.selectbox(key="data.target").select("next_day_direction").run()
    assert not app.exception
    assert "split: chronological by 'date'" in texts(app.success)
    app.number_input(key="data.embargo").set_value(5).run()
    assert "embargo 5 dates" in texts(app.success)


def test_a_column_that_restates_the_target_is_flagged(app):
    import core

    app.run()
    frame = core.read_table(SAMPLES / "credit_risk.csv")
    frame["collections_flag"] = (frame["credit_risk"] == "bad").astype(int)
    app.file_uploader[0].set_value(
        ("leaky.csv", frame.to_csv(index=False).encode(), "text/csv")
    ).run()
    app.selectbox(key="data.target").select("credit_risk").run()
    assert not app.exception
    assert "'collections_flag'" in texts(app.warning)


def test_positive_class_defaults_to_the_rarer(app):
    app.run()
    assert app.selectbox(key="data.positive_class").value == "auto"
    assert "auto (bad, the rarer)" in app.selectbox(key="data.positive_class").options


def test_market_helper_derives_features_and_target(app):
    app.run()
    raw = (SAMPLES / "market_daily.csv").read_text().splitlines()
    header = raw[0].split(",")
    keep = [header.index(c) for c in ("date", "open", "high", "low", "close", "volume", "headline")]
    import csv
    import io

    rows = list(csv.reader(io.StringIO("\n".join(raw))))
    out = io.StringIO()
    csv.writer(out).writerows([[r[i] for i in keep] for r in rows])
    app.file_uploader[0].set_value(("prices.csv", out.getvalue().encode(), "text/csv")).run()
    assert not app.exception
    helper = next(e for e in app.expander if e.label.startswith("Market data"))
    assert helper.proto.expanded  # a price file without a target: the helper is offered open
    app.number_input(key="data.market_horizon").set_value(5).run()
    next(b for b in app.button if b.label == "Derive features and use them").click().run()
    assert not app.exception
    assert "prices-features.csv" in texts(app.caption)
    assert app.selectbox(key="data.target").value == "next_5d_direction"
    assert app.number_input(key="data.embargo").value == 5
    assert "split: chronological by 'date', embargo 5 dates" in texts(app.success)
    # Raw levels are left out by default; the derived returns and volume ratio stay in.
    roles = app.session_state["data.roles"]
    assert {c for c, r in roles.items() if r == "ignore"} == {
        "open",
        "high",
        "low",
        "close",
        "volume",
    }


def _trailing_table(extra: str = "") -> bytes:
    rows = [f"{i * 10.5},s{i % 4},{'yes' if i % 3 else 'no'}," for i in range(40)]
    rows[0] += extra
    return ("amount,segment,label\n" + "\n".join(rows) + "\n").encode()


def test_trailing_commas_do_not_shift_the_columns(app):
    app.run()
    app.file_uploader[0].set_value(("export.csv", _trailing_table(), "text/csv")).run()
    assert not app.exception
    assert not app.error
    assert "40 rows × 3 columns" in texts(app.caption)
    shown = app.dataframe[0].value
    assert list(shown.columns) == ["amount", "segment", "label"]
    assert shown.iloc[1].tolist() == [10.5, "s1", "yes"]  # was: 's1', 'yes' and an empty label
    assert app.selectbox(key="data.target").value == "label"
    assert "Task: **binary**" in texts(app.success)


def test_a_row_with_an_extra_value_shows_its_line(app):
    app.run()
    app.file_uploader[0].set_value(("export.csv", _trailing_table(extra="oops"), "text/csv")).run()
    assert not app.exception
    assert (
        "export.csv could not be parsed at line 2: it has 4 fields but the header has 3 "
        "(extra value 'oops'). Remove the extra field(s) or add a column name to the "
        "header."
    ) in texts(app.error)
    assert "credit_risk.csv" in texts(app.caption)  # the previous table stays
