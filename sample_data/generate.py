"""Regenerate the FinTune sample datasets in this folder.

Four CSV files are written next to this script:

* ``credit_risk.csv``   - exact copy of the shared UCI Statlog German Credit file.
* ``fin_sentiment.csv`` - shared Twitter Financial News Sentiment file, ``text,label`` only.
* ``card_fraud.csv``    - SYNTHETIC card transactions with a rare fraud class.
* ``market_daily.csv``  - SYNTHETIC daily prices and headlines for a fictional stock.

The two synthetic tables come from fixed seeds, so running the script twice gives
byte-identical files. Only numpy, pandas and the standard library are used.

Usage::

    python sample_data/generate.py [--shared DIR]

``--shared`` points at the folder holding ``german_credit.csv`` and
``fin_sentiment.csv``; by default it is ``<repo>/../shared/datasets``.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

OUT_DIR = Path(__file__).resolve().parent
DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

CARD_SEED = 20240601
MARKET_SEED = 20190102


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-z))


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write a DataFrame as UTF-8 CSV with LF line ends (same style as the shared files)."""
    df.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")


def summarize(path: Path, df: pd.DataFrame, target: str) -> None:
    """Print the one-line summary for a written file."""
    counts = df[target].value_counts()
    balance = ", ".join(f"{k} {v} ({v / len(df):.1%})" for k, v in counts.items())
    print(f"{path.name}: {len(df)} rows x {df.shape[1]} cols; {target}: {balance}")


# ---------------------------------------------------------------------------
# (a) credit_risk.csv and (b) fin_sentiment.csv: real data, copied / derived
# ---------------------------------------------------------------------------


def copy_credit(shared: Path) -> Path:
    """Copy the German credit file unchanged (byte-for-byte)."""
    dest = OUT_DIR / "credit_risk.csv"
    shutil.copyfile(shared / "german_credit.csv", dest)
    return dest


def derive_sentiment(shared: Path) -> Path:
    """Keep only ``text,label``; the ``split`` column is bookkeeping, not a feature.

    The csv module (not pandas) is used so texts cannot be altered by type
    inference or NA parsing; ``newline=""`` keeps embedded line breaks intact and
    QUOTE_MINIMAL quotes every field that contains a comma, quote or newline.
    """
    dest = OUT_DIR / "fin_sentiment.csv"
    with open(shared / "fin_sentiment.csv", newline="", encoding="utf-8") as src:
        reader = csv.DictReader(src)
        rows = [(r["text"], r["label"]) for r in reader]
    with open(dest, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return dest


# ---------------------------------------------------------------------------
# (c) card_fraud.csv: synthetic card transactions
# ---------------------------------------------------------------------------

# category: (share of transactions, lognormal mu, lognormal sigma, P(card present))
CATEGORIES = {
    "grocery": (0.20, 3.7, 0.60, 0.95),
    "restaurants": (0.17, 3.2, 0.60, 0.85),
    "fuel": (0.11, 3.7, 0.35, 0.97),
    "online retail": (0.17, 3.8, 0.90, 0.00),
    "travel": (0.06, 5.6, 0.80, 0.30),
    "electronics": (0.06, 5.1, 0.90, 0.55),
    "entertainment": (0.08, 3.0, 0.70, 0.30),
    "health": (0.07, 3.3, 0.70, 0.90),
    "money services": (0.08, 4.8, 1.00, 0.20),
}

# Ordinary descriptors. {loc} is "CITY ST" (or "CITY CC" abroad); the others
# are random digits / reference codes, as on real card statements.
NORMAL_DESCRIPTORS = {
    "grocery": [
        "SAFEWAY #{n4} {loc}",
        "TRADER JOE S #{n3} {loc}",
        "KROGER #{n3} {loc}",
        "WHOLEFDS {ab} {n5} {loc}",
        "ALDI {n5} {loc}",
        "COSTCO WHSE #{n4} {loc}",
        "SQ *FARMERS MARKET {loc}",
    ],
    "restaurants": [
        "SQ *BLUE BOTTLE COFFEE {loc}",
        "STARBUCKS STORE {n5} {loc}",
        "CHIPOTLE {n4} {loc}",
        "TST* THE LOCAL TAVERN {loc}",
        "MCDONALD'S F{n5} {loc}",
        "SQ *TAQUERIA EL SOL {loc}",
        "DOORDASH*{dish} SAN FRANCISCO CA",
        "UBER *EATS HELP.UBER.COM CA",
    ],
    "fuel": [
        "SHELL OIL {n8} {loc}",
        "CHEVRON {n6} {loc}",
        "EXXONMOBIL {n8} {loc}",
        "BP#{n7} {loc}",
        "76 - {n4} {loc}",
        "COSTCO GAS #{n4} {loc}",
    ],
    "online retail": [
        "AMZN MKTP US*{ref} SEATTLE WA",
        "AMAZON.COM*{ref} AMZN.COM/BILL WA",
        "EBAY O*{n2}-{n5}-{n5} SAN JOSE CA",
        "ETSY.COM - {shop} BROOKLYN NY",
        "TARGET.COM * {n6} MINNEAPOLIS MN",
        "PAYPAL *{shop} 402-935-7733 CA",
        "WALMART.COM {ref} BENTONVILLE AR",
    ],
    "travel": [
        "UNITED {n10} HOUSTON TX",
        "DELTA AIR {n10} ATLANTA GA",
        "MARRIOTT {loc}",
        "UBER *TRIP HELP.UBER.COM CA",
        "LYFT *RIDE {ref} SAN FRANCISCO CA",
        "AIRBNB * {ref} SAN FRANCISCO CA",
        "HERTZ RENT-A-CAR {loc}",
        "HILTON HOTELS {loc}",
    ],
    "electronics": [
        "BEST BUY {n8} {loc}",
        "APPLE.COM/BILL 866-712-7753 CA",
        "APPLE STORE R{n3} {loc}",
        "NEWEGG INC 800-390-1119 CA",
        "MICRO CENTER #{n3} {loc}",
    ],
    "entertainment": [
        "NETFLIX.COM LOS GATOS CA",
        "SPOTIFY USA NEW YORK NY",
        "AMC {n4} {loc}",
        "STEAMGAMES.COM 4259522 WA",
        "TICKETMASTER 800-653-8000 CA",
        "REGAL CINEMAS {n4} {loc}",
    ],
    "health": [
        "CVS/PHARMACY #{n5} {loc}",
        "WALGREENS #{n5} {loc}",
        "RITE AID STORE - {n4} {loc}",
        "SQ *DENTAL ASSOCIATES {loc}",
    ],
    "money services": [
        "VENMO *{name} VISA DIRECT NY",
        "PAYPAL *TRANSFER 402-935-7733 CA",
        "WESTERN UNION {n6} {loc}",
        "COINBASE.COM SAN FRANCISCO CA",
        "CASH APP*{name} CA",
    ],
}

# Descriptors typical of card fraud and money-laundering cash-out. They are
# more likely on fraud rows (through the logistic model below) but also occur
# on legitimate rows, so they are a strong but not deterministic signal.
RISKY_DESCRIPTORS = {
    "online retail": [
        "GIFT CARD MALL/GCM {ref} MA",
        "WWW.{shop}-DEALS.COM {loc}",
        "VANILLA GIFT {n8} 833-322-6760 MA",
    ],
    "electronics": ["ELECTRO OUTLET {ref} {loc}", "WWW.{shop}-DEALS.COM {loc}"],
    "travel": ["INTL TRAVEL AGENCY {ref} {loc}", "CHEAP FLIGHTS*{ref} {loc}"],
    "entertainment": ["GAMING CREDITS*{ref} {loc}", "ONLINE CASINO {ref} {loc}"],
    "money services": [
        "INTL WIRE XFER {ref}",
        "CRYPTO EXCHANGE {ref} {loc}",
        "BTC ATM {n5} {loc}",
        "GIFT CARD MALL/GCM {ref} MA",
        "MONEYGRAM INTL {n6} {loc}",
    ],
}
# P(risky descriptor | category); categories not listed never get one.
RISKY_SHARE = {
    "online retail": 0.04,
    "electronics": 0.05,
    "travel": 0.03,
    "entertainment": 0.03,
    "money services": 0.30,
}

US_LOCATIONS = [
    ("SEATTLE", "WA"),
    ("HOUSTON", "TX"),
    ("OAKLAND", "CA"),
    ("CHICAGO", "IL"),
    ("AUSTIN", "TX"),
    ("DENVER", "CO"),
    ("BOSTON", "MA"),
    ("ATLANTA", "GA"),
    ("PHOENIX", "AZ"),
    ("PORTLAND", "OR"),
    ("MIAMI", "FL"),
    ("COLUMBUS", "OH"),
    ("BROOKLYN", "NY"),
    ("SAN DIEGO", "CA"),
    ("CHARLOTTE", "NC"),
    ("MINNEAPOLIS", "MN"),
]
# foreign country: (share among foreign rows, city shown in the descriptor)
FOREIGN = {
    "CA": (0.20, "TORONTO"),
    "MX": (0.15, "CANCUN"),
    "GB": (0.15, "LONDON"),
    "DE": (0.08, "BERLIN"),
    "FR": (0.08, "PARIS"),
    "JP": (0.06, "TOKYO"),
    "NG": (0.07, "LAGOS"),
    "RO": (0.06, "BUCHAREST"),
    "CN": (0.07, "SHENZHEN"),
    "BR": (0.08, "SAO PAULO"),
}
# P(merchant abroad | category): travel and online are abroad far more often.
FOREIGN_SHARE = {"travel": 0.25, "online retail": 0.08, "electronics": 0.05, "money services": 0.10}
FOREIGN_DEFAULT = 0.015

# Hour-of-day weights for transactions: few at night, peaks at lunch and evening.
HOUR_WEIGHTS = np.array(
    [
        1.0,
        0.6,
        0.4,
        0.3,
        0.3,
        0.5,
        1.2,
        2.5,
        3.5,
        4.0,
        4.5,
        5.0,
        6.0,
        5.5,
        4.8,
        4.6,
        5.0,
        5.8,
        6.2,
        5.8,
        4.5,
        3.5,
        2.5,
        1.6,
    ]
)

# Logistic fraud model: logit = FRAUD_INTERCEPT + sum(coef * feature) + noise.
FRAUD_INTERCEPT = -5.7
FRAUD_COEF = {
    "log_amount": 0.55,  # per unit of ln(amount) - 4  (ln 55 USD ~ 4)
    "night": 1.1,  # hour in 0..5
    "card_not_present": 1.0,
    "log_distance": 0.45,  # per unit of ln(1 + km / 100)
    "foreign": 0.9,
    "risky_descriptor": 2.3,
}
FRAUD_NOISE_SD = 0.8  # unobserved factors, so the labels are not a function of the columns
MISSING_SHARE = 0.01


def fill_template(rng: np.random.Generator, template: str, loc: str) -> str:
    """Fill the random placeholders of a descriptor template."""
    digits = lambda k: "".join(rng.choice(list("0123456789"), size=k))  # noqa: E731
    alnum = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    values = {
        "loc": loc,
        "n2": digits(2),
        "n3": digits(3),
        "n4": digits(4),
        "n5": digits(5),
        "n6": digits(6),
        "n7": digits(7),
        "n8": digits(8),
        "n10": digits(10),
        "ref": "".join(rng.choice(list(alnum), size=5)),
        "ab": str(rng.choice(["SFO", "ATX", "BOS", "CHI", "DEN"])),
        "dish": str(rng.choice(["THAI BASIL", "PIZZA PALACE", "SUSHI ZEN", "BURGER BARN"])),
        "shop": str(
            rng.choice(
                ["BESTPRICE", "TECHZONE", "MEGASTORE", "HANDMADEGOODS", "VINTAGEFINDS", "GADGETHUB"]
            )
        ),
        "name": str(rng.choice(["J SMITH", "M GARCIA", "A NGUYEN", "K PATEL", "R JONES"])),
    }
    return template.format(**values)


def sample_card_features(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Draw the observable transaction attributes (everything except the label)."""
    names = list(CATEGORIES)
    shares = np.array([CATEGORIES[c][0] for c in names])
    category = rng.choice(names, size=n, p=shares / shares.sum())
    mu = np.array([CATEGORIES[c][1] for c in category])
    sd = np.array([CATEGORIES[c][2] for c in category])
    amount = np.round(np.exp(rng.normal(mu, sd)), 2).clip(0.5)
    card_present = rng.random(n) < np.array([CATEGORIES[c][3] for c in category])

    foreign = rng.random(n) < np.array([FOREIGN_SHARE.get(c, FOREIGN_DEFAULT) for c in category])
    codes = list(FOREIGN)
    fshares = np.array([FOREIGN[c][0] for c in codes])
    country = np.where(foreign, rng.choice(codes, size=n, p=fshares / fshares.sum()), "US")

    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    # Distance from the cardholder's home: a few km for local card-present use,
    # hundreds to thousands of km abroad (and for remote purchases shipped far away).
    distance = np.where(
        card_present, rng.lognormal(np.log(6), 1.0, n), rng.lognormal(np.log(40), 1.4, n)
    )
    distance = np.where(foreign, rng.uniform(800, 9000, n), distance)
    age = np.clip(np.round(rng.normal(44, 15, n)), 18, 90).astype(int)

    risky = rng.random(n) < np.array([RISKY_SHARE.get(c, 0.0) for c in category])
    return pd.DataFrame(
        {
            "category": category,
            "amount": amount,
            "card_present": card_present,
            "country": country,
            "foreign": foreign,
            "hour": hour,
            "distance": np.round(distance, 1),
            "age": age,
            "risky": risky,
        }
    )


def make_descriptors(rng: np.random.Generator, feats: pd.DataFrame) -> list[str]:
    """Build a card-statement descriptor per row, consistent with category and country."""
    out = []
    for cat, risky, country in zip(
        feats["category"], feats["risky"], feats["country"], strict=True
    ):
        if country == "US":
            city, region = US_LOCATIONS[rng.integers(len(US_LOCATIONS))]
        else:
            city, region = FOREIGN[country][1], country
        pool = RISKY_DESCRIPTORS[cat] if risky else NORMAL_DESCRIPTORS[cat]
        if country != "US":
            # Abroad, prefer templates that show the merchant's own city.
            local = [t for t in pool if "{loc}" in t]
            pool = local or pool
        out.append(fill_template(rng, str(rng.choice(pool)), f"{city} {region}"))
    return out


def fraud_logit(feats: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Linear predictor of the logistic fraud model (see FRAUD_COEF)."""
    x = {
        "log_amount": np.log(feats["amount"]) - 4.0,
        "night": (feats["hour"] <= 5).astype(float),
        "card_not_present": (~feats["card_present"]).astype(float),
        "log_distance": np.log1p(feats["distance"] / 100.0),
        "foreign": feats["foreign"].astype(float),
        "risky_descriptor": feats["risky"].astype(float),
    }
    z = FRAUD_INTERCEPT + sum(FRAUD_COEF[k] * np.asarray(v) for k, v in x.items())
    return z + rng.normal(0.0, FRAUD_NOISE_SD, len(feats))


def make_timestamps(rng: np.random.Generator, hours: np.ndarray) -> pd.Series:
    """Random day in 2024-01-01..2024-06-30 plus the sampled hour and random minute/second."""
    days = rng.integers(0, 182, len(hours))
    seconds = rng.integers(0, 3600, len(hours))
    ts = (
        pd.Timestamp("2024-01-01")
        + pd.to_timedelta(days, unit="D")
        + pd.to_timedelta(hours, unit="h")
        + pd.to_timedelta(seconds, unit="s")
    )
    return pd.Series(ts)


def inject_missing(rng: np.random.Generator, values: pd.Series) -> pd.Series:
    """Blank out ~1% of a column completely at random (after the label is drawn)."""
    return values.mask(rng.random(len(values)) < MISSING_SHARE)


def build_card_fraud(n: int = 6000) -> pd.DataFrame:
    """Assemble the synthetic card-fraud table, ordered by time."""
    rng = np.random.default_rng(CARD_SEED)
    feats = sample_card_features(rng, n)
    feats["descriptor"] = make_descriptors(rng, feats)
    is_fraud = rng.random(n) < sigmoid(fraud_logit(feats, rng))
    feats["timestamp"] = make_timestamps(rng, feats["hour"].to_numpy())
    feats["is_fraud"] = np.where(is_fraud, "fraud", "legit")

    feats = feats.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return pd.DataFrame(
        {
            "transaction_id": [f"T{i:06d}" for i in range(1, n + 1)],
            "timestamp": feats["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S"),
            "amount": feats["amount"],
            "merchant_category": feats["category"],
            "merchant_description": feats["descriptor"],
            "card_present": np.where(feats["card_present"], "yes", "no"),
            "country": feats["country"],
            "hour": feats["hour"],
            "customer_age": inject_missing(rng, feats["age"]).astype("Int64"),
            "distance_from_home_km": inject_missing(rng, feats["distance"]),
            "is_fraud": feats["is_fraud"],
        }
    )


# ---------------------------------------------------------------------------
# (d) market_daily.csv: synthetic daily stock data with headlines
# ---------------------------------------------------------------------------

COMPANY = "Halvorsen Microsystems"
TICKER = "HLVM"
N_MARKET_ROWS = 1500
BURN_IN = 40  # simulated days before 2019-01-02 so the first rows have full history
START_PRICE = 42.0

# Two-state volatility regime (daily log-return std) and its Markov transitions.
VOL = {"calm": 0.011, "turbulent": 0.026}
P_CALM_TO_TURB = 0.02
P_TURB_TO_CALM = 0.08
DRIFT = 0.0003  # daily log drift (~7.5% a year)
MOMENTUM = 0.05  # AR(1) coefficient on yesterday's log return
SENTIMENT_EFFECT = 0.6  # next-day shift, in units of next day's volatility
SENTIMENT_PROBS = {-1: 0.30, 0: 0.40, 1: 0.30}
HEADLINE_NOISE = 0.15  # share of days whose headline wording does not reveal the sentiment

PRODUCTS = [
    "AI accelerator",
    "automotive chip",
    "data-center GPU",
    "memory controller",
    "5G modem",
    "power semiconductor",
]
BANKS = ["Morgan Stanley", "Goldman Sachs", "Barclays", "UBS", "Jefferies", "Citi"]
PARTNERS = [
    "a major cloud provider",
    "a European automaker",
    "a leading smartphone maker",
    "the Department of Defense",
    "a Japanese electronics group",
]
HEADLINES = {
    1: [
        "{co} beats quarterly earnings estimates on strong {product} demand",
        "{bank} upgrades {co} to buy, sees upside in {product} sales",
        "{co} wins multi-year {product} contract with {partner}",
        "{co} raises full-year revenue guidance",
        "{co} announces $2 billion share buyback",
        "Chip stocks rally as {co} reports record {product} orders",
        "{bank} lifts {ticker} price target after upbeat investor day",
    ],
    -1: [
        "{co} misses earnings estimates as {product} sales slump",
        "{bank} downgrades {co} to sell on weak {product} outlook",
        "{co} cuts full-year guidance amid inventory glut",
        "Regulators open probe into {co} export practices",
        "{co} delays {product} launch after manufacturing defects",
        "Semiconductor stocks slide as {co} warns of weaker demand",
        "{co} loses {product} contract with {partner}",
    ],
    0: [
        "{co} to present at {bank} technology conference",
        "{co} sets date for quarterly results",
        "{co} names new chief financial officer",
        "{ticker} shares in focus ahead of sector data",
        "{co} opens design center in Austin",
        "{bank} initiates coverage of {co} with neutral rating",
        "{co} files annual report with regulators",
    ],
}


def simulate_regimes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two-state Markov chain; returns each day's daily volatility."""
    turbulent = np.zeros(n, dtype=bool)
    for t in range(1, n):
        p_switch = P_TURB_TO_CALM if turbulent[t - 1] else P_CALM_TO_TURB
        turbulent[t] = turbulent[t - 1] ^ (rng.random() < p_switch)
    return np.where(turbulent, VOL["turbulent"], VOL["calm"])


def simulate_log_returns(
    rng: np.random.Generator, sigma: np.ndarray, sentiment: np.ndarray
) -> np.ndarray:
    """r_t = drift + momentum * r_{t-1} + sigma_t * (effect * s_{t-1} + eps_t).

    s_{t-1} is the headline published after day t-1's close, so it can only move
    day t's price: this is the (weak) predictable part of the next-day direction.
    """
    n = len(sigma)
    eps = rng.standard_normal(n)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = (
            DRIFT + MOMENTUM * r[t - 1] + sigma[t] * (SENTIMENT_EFFECT * sentiment[t - 1] + eps[t])
        )
    return r


def make_headlines(rng: np.random.Generator, sentiment: np.ndarray) -> list[str]:
    """One templated headline per day; a few days use neutral wording regardless of sentiment."""
    out = []
    for s in sentiment:
        tone = 0 if rng.random() < HEADLINE_NOISE else int(s)
        template = str(rng.choice(HEADLINES[tone]))
        out.append(
            template.format(
                co=COMPANY,
                ticker=TICKER,
                bank=rng.choice(BANKS),
                product=rng.choice(PRODUCTS),
                partner=rng.choice(PARTNERS),
            )
        )
    return out


def make_ohlcv(
    rng: np.random.Generator, close: np.ndarray, sigma: np.ndarray, log_ret: np.ndarray
) -> dict[str, np.ndarray]:
    """Open/high/low/volume that are consistent with each day's close and volatility."""
    n = len(close)
    prev_close = np.concatenate([[close[0]], close[:-1]])
    # The opening gap is part of the same day's return, so it uses no future data.
    open_ = prev_close * np.exp(0.3 * log_ret + 0.25 * sigma * rng.standard_normal(n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.5 * sigma)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.5 * sigma)))
    # Volume rises with the size of the move and in turbulent regimes.
    volume = (
        1.2e6
        * (sigma / VOL["calm"]) ** 0.7
        * np.exp(0.25 * np.abs(log_ret) / sigma + rng.normal(0, 0.25, n))
    )
    return {"open": open_, "high": high, "low": low, "volume": np.round(volume).astype(int)}


def build_market_daily() -> pd.DataFrame:
    """Assemble the synthetic daily table; the target is the sign of the next day's return."""
    rng = np.random.default_rng(MARKET_SEED)
    n = BURN_IN + N_MARKET_ROWS + 1  # +1: the day that only serves as "next day"
    dates = pd.bdate_range(end=pd.Timestamp("2019-01-02"), periods=BURN_IN + 1)
    dates = dates.append(pd.bdate_range(start="2019-01-03", periods=n - BURN_IN - 1))

    sigma = simulate_regimes(rng, n)
    levels = list(SENTIMENT_PROBS)
    sentiment = rng.choice(levels, size=n, p=list(SENTIMENT_PROBS.values()))
    log_ret = simulate_log_returns(rng, sigma, sentiment)
    close = START_PRICE * np.exp(np.cumsum(log_ret))
    bars = make_ohlcv(rng, close, sigma, log_ret)

    df = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), **bars, "close": close})
    for col in ["open", "high", "low", "close"]:
        df[col] = df[col].round(2)
    # Features are computed from the rounded, published closes up to and including day t.
    ret = df["close"].pct_change()
    df["return_1d"] = ret.round(6)
    df["volatility_20d"] = ret.rolling(20).std().round(6)
    df["headline"] = make_headlines(rng, sentiment)
    # Target uses day t+1's close; flat (unchanged) closes count as "down".
    df["next_day_direction"] = np.where(df["close"].shift(-1) > df["close"], "up", "down")

    df = df.iloc[BURN_IN:-1].reset_index(drop=True)  # drop warm-up and the row without a next day
    cols = [
        "date",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "return_1d",
        "volatility_20d",
        "headline",
        "next_day_direction",
    ]
    return df[cols]


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def main() -> None:
    """Write all four files and print a one-line summary for each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=DEFAULT_SHARED,
        help="folder with german_credit.csv and fin_sentiment.csv",
    )
    shared = parser.parse_args().shared

    path = copy_credit(shared)
    summarize(path, pd.read_csv(path), "credit_risk")
    path = derive_sentiment(shared)
    summarize(path, pd.read_csv(path, keep_default_na=False), "label")

    for name, builder, target in [
        ("card_fraud.csv", build_card_fraud, "is_fraud"),
        ("market_daily.csv", build_market_daily, "next_day_direction"),
    ]:
        df = builder()
        write_table(df, OUT_DIR / name)
        summarize(OUT_DIR / name, df, target)


if __name__ == "__main__":
    main()
