"""Data: load a table, choose the target, check column roles and the split, look at the profile."""

import dataclasses
import json

import streamlit as st

import core
from dashboard import charts, state, tables


@st.cache_data(max_entries=16, show_spinner="Checking for leakage ...")
def leakage(digest: str, config_json: str, _frame, _spec) -> list:
    config = core.DataConfig(**json.loads(config_json))
    split = core.resolve_split(_spec, config)
    splits = core.split_rows(_frame, _spec, config, core.TrainConfig().seed)
    return core.find_leakage(
        _frame, _spec, splits, time_column=split[5:] if split.startswith("time:") else None
    )


MARKET_ERROR = "data.market_error"


def derive_market(frame, name: str, columns: dict) -> None:
    """Button callback (runs before the page, so it may set the target widget's value)."""
    horizon, kind = (
        int(st.session_state["data.market_horizon"]),
        st.session_state["data.market_target"],
    )
    try:
        derived = core.derive_market_features(frame, horizon=horizon, target=kind, **columns)
    except core.FinTuneError as exc:
        st.session_state[MARKET_ERROR] = str(exc)
        return
    st.session_state[MARKET_ERROR] = None
    state.load_bytes(derived.to_csv(index=False).encode(), f"{name.rsplit('.', 1)[0]}-features.csv")
    st.session_state[state.TARGET] = f"next_{horizon}d_{kind}"
    st.session_state[state.EMBARGO] = horizon if horizon > 1 else 0
    # Raw prices and volume stay in the file but out of the model: returns carry their signal.
    st.session_state[state.ROLES] = {
        c: "ignore" for c in core.price_level_columns(derived, columns)
    }


def leave_out(columns: list[str]) -> None:
    """Button callback (before the roles editor draws): the columns' role becomes ignore."""
    st.session_state[state.ROLES] = {
        **st.session_state.get(state.ROLES, {}),
        **dict.fromkeys(columns, "ignore"),
    }


st.title("Data")

left, right = st.columns([3, 2])
with left:
    upload = st.file_uploader("Upload a CSV or Parquet file", type=["csv", "parquet", "pq"])
with right:
    sample = st.selectbox("Or use a sample dataset", list(state.SAMPLES), key="data.sample_choice")
    if st.button("Load sample", icon=":material/dataset:"):
        state.load_sample(sample)

limit_mb = st.get_option(
    "server.maxUploadSize"
)  # the browser enforces it; AppTest and scripts do not
if upload is not None and upload.size > limit_mb * 1024 * 1024:
    st.error(
        f"{upload.name} is {upload.size / 2**20:,.1f} MB, over the dashboard's upload limit of "
        f"{limit_mb} MB: use `fintune train` from the command line for larger files, or sample the "
        "rows.",
        icon=":material/error:",
    )
elif upload is not None and upload.file_id != st.session_state.get(state.LAST_UPLOAD):
    try:
        state.load_bytes(upload.getvalue(), upload.name)
        st.session_state[state.LAST_UPLOAD] = upload.file_id
    except core.DataError as exc:
        st.error(str(exc), icon=":material/error:")

for note in st.session_state.get(state.SESSION_NOTES, ()):  # from a reload (saved_session.py)
    st.info(note, icon=":material/history:")
loaded = state.table()
if loaded is None:
    st.info("Upload a file or load a sample dataset to begin.")
    st.stop()
name, frame = loaded
st.caption(f"**{name}** · {len(frame):,} rows × {frame.shape[1]} columns")
st.dataframe(frame.head(200), height=230)

columns = list(frame.columns)
c1, c2, c3 = st.columns(3)
target = c1.selectbox("Target column", columns, key=state.TARGET, persist_state=state.PERSIST)
c2.selectbox(
    "Task",
    ["auto", "binary", "multiclass", "regression"],
    key=state.TASK,
    persist_state=state.PERSIST,
    help="auto: inferred from the target column",
)
inferred = core.infer_roles(frame, target)
state.init_widget(state.SPLIT_KIND, "auto")
split_kind = c3.radio(
    "Split",
    ["auto", "random", "time"],
    key=state.SPLIT_KIND,
    persist_state=state.PERSIST,
    horizontal=True,
    help="Auto: chronological when the table has a date column, else random.",
    format_func={"auto": "Auto", "random": "Stratified random", "time": "Chronological"}.get,
)
if split_kind == "time":
    dates = sorted(inferred, key=lambda c: inferred[c] != "datetime")  # date-like columns first
    if st.session_state.get(state.SPLIT_COLUMN) not in dates:
        st.session_state.pop(state.SPLIT_COLUMN, None)
    c3.selectbox("Date column", dates, key=state.SPLIT_COLUMN, persist_state=state.PERSIST)
# The embargo only applies to a chronological split: an auto split is one when there is a date.
has_dates = "datetime" in {**inferred, **st.session_state.get(state.ROLES, {})}.values()
if split_kind == "time" or (split_kind == "auto" and has_dates):
    state.init_widget(state.EMBARGO, 0)
    c3.number_input(
        "Embargo (dates left out between periods)",
        0,
        365,
        key=state.EMBARGO,
        persist_state=state.PERSIST,
        help="Set it to the target's horizon (5 for a 5-day return) so no label overlaps the next "
        "period.",
    )

market = core.market_columns(frame)
if market is not None:
    derived_already = any(str(c).startswith("next_") for c in frame.columns)
    with st.expander(
        "Market data: derive returns, volatility and a next-period target",
        icon=":material/candlestick_chart:",
        expanded=not derived_already,  # the main use of such a file: offered up front
    ):
        st.caption(
            f"Found dates in `{market['date']}` and prices in `{market['close']}`"
            + (f", volume in `{market['volume']}`" if market["volume"] else "")
            + (f", instruments in `{market['group']}`" if market["group"] else "")
            + ". Every feature reads only past rows; only the target looks ahead. The raw "
            "prices and volume are then left out of the model (role ignore; change it below)."
        )
        m1, m2 = st.columns(2)
        horizon = m1.number_input("Horizon (periods ahead)", 1, 250, 1, key="data.market_horizon")
        kind = m2.radio(
            "Target",
            ["direction", "return"],
            horizontal=True,
            key="data.market_target",
            format_func={"direction": "Up / down", "return": "Return (regression)"}.get,
        )
        st.button(
            "Derive features and use them",
            icon=":material/add_chart:",
            on_click=derive_market,
            args=(frame, name, market),
        )
        if st.session_state.get(MARKET_ERROR):
            st.error(st.session_state[MARKET_ERROR], icon=":material/error:")

overrides = {c: r for c, r in st.session_state.get(state.ROLES, {}).items() if c in inferred}
roles = {**inferred, **overrides}
st.subheader("Column roles")
edited = st.data_editor(
    tables.roles_table(frame, roles),
    key=f"data.roles_editor.{st.session_state[state.DATA_DIGEST]}.{target}",
    hide_index=True,
    width="stretch",
    disabled=["column", "type", "missing", "distinct", "example"],
    column_config={
        "role": st.column_config.SelectboxColumn("role", options=list(core.ROLES), required=True)
    },
)
st.session_state[state.ROLES] = {
    c: r for c, r in zip(edited["column"], edited["role"], strict=True) if inferred.get(c) != r
}

try:
    spec = core.describe_table(frame, state.data_config())
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
for note in spec.warnings:
    st.warning(note)
protected = core.likely_protected(spec.feature_columns)
if protected:
    st.warning(
        f"{', '.join(f'`{c}`' for c in protected)} look{'s' if len(protected) == 1 else ''} like "
        "a protected attribute (sex, age, nationality, ...) and "
        f"{'is a model input' if len(protected) == 1 else 'are model inputs'}. Decisions that "
        "use it may be unlawful or unfair: leave it out, or keep it and check the run's "
        "Fairness tab on the Results page.",
        icon=":material/balance:",
    )
    st.button(
        f"Leave {'it' if len(protected) == 1 else 'them'} out of the model (role ignore)",
        icon=":material/visibility_off:",
        key="data.leave_out_protected",
        on_click=leave_out,
        args=(protected,),
        help="Sets their role to ignore in the roles table above; the column stays in the "
        "table, so the Results page can still compare outcomes across its groups.",
    )
classes = (
    f" · classes: {', '.join(spec.classes[:10])}{' …' if len(spec.classes) > 10 else ''}"
    if spec.classes
    else ""
)
st.success(
    f"Task: **{spec.task}** · {len(spec.feature_columns)} feature columns{classes} · split: "
    f"{core.describe_split(spec, state.data_config())}"
)
if spec.task == "binary":
    state.init_widget(state.POSITIVE_CLASS, "auto")
    if st.session_state[state.POSITIVE_CLASS] not in ("auto", *spec.classes):
        st.session_state[state.POSITIVE_CLASS] = "auto"
    # The browser keeps the chosen option's label and sends it back: after another target,
    # "auto (bad, the rarer)" would come back as the value. Setting it sends the new label.
    st.session_state[state.POSITIVE_CLASS] = st.session_state[state.POSITIVE_CLASS]
    st.selectbox(
        "Positive class (the event: default, fraud, …)",
        ["auto", *spec.classes],
        key=state.POSITIVE_CLASS,
        persist_state=state.PERSIST,
        format_func=lambda c: f"auto ({spec.positive_class}, the rarer)" if c == "auto" else c,
        help="KS, lift, PR AUC and the decision threshold are about this class.",
    )
try:
    leaks = leakage(
        st.session_state[state.DATA_DIGEST],
        json.dumps(dataclasses.asdict(state.data_config())),
        frame,
        spec,
    )
except core.FinTuneError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
for warning in leaks:
    st.warning(warning.message, icon=":material/warning:")

st.subheader("Profile")
p1, p2 = st.columns(2)
with p1:
    charts.plot(charts.class_balance(frame[target], spec.task))
with p2:
    charts.plot(charts.missing_values(frame))
dates = spec.columns("datetime")
if dates:  # a time series: how the target moves over time says more than any histogram
    chosen = st.session_state.get(state.SPLIT_COLUMN)
    column = chosen if chosen in dates else dates[0]
    charts.plot(
        charts.target_over_time(frame[column], frame[target], spec.task, spec.positive_class)
    )
shown = st.multiselect("Distributions of", spec.feature_columns, default=spec.feature_columns[:4])
grid = st.columns(2)
for i, column in enumerate(shown):
    with grid[i % 2]:
        charts.plot(charts.distribution(frame[column], spec.roles[column]))
