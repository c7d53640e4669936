"""FinTune dashboard: the router.

Run with ``fintune dashboard`` or ``streamlit run dashboard/app.py``.
"""

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on the path, not the repository root.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import auth, saved_session, state  # noqa: E402

st.set_page_config(page_title="FinTune", page_icon=":material/model_training:", layout="wide")
auth.gate()  # a password whenever the app is bound to anything but this machine

pages = [
    st.Page("views/data.py", title="Data", icon=":material/table:", default=True),
    st.Page("views/model.py", title="Model", icon=":material/tune:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/results.py", title="Results", icon=":material/insights:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("views/predict.py", title="Predict", icon=":material/batch_prediction:"),
    st.Page("views/explain.py", title="Explain", icon=":material/psychology_alt:"),
]
state.explain_jobs()  # created at start-up: compiles shap's kernels in the background meanwhile
saved_session.restore()  # a reloaded tab gets its choices back before the page draws
try:
    st.navigation(pages).run()
finally:  # st.stop() and st.rerun() in a page raise out of run(): save after those runs too
    saved_session.save()
