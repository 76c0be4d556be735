#!/usr/bin/env python3
"""The wine-review dataset: reviews of French wines -> grape variety, in chat JSONL.

A deterministic generator (Python 3 standard library only). Every example is drawn from an explicit
generative model (the tables below, documented in README.md):

    variety ~ PRIOR
    style   ~ STYLE[variety]                  red / white / rose / sparkling
    region  ~ REGION[variety]                 shown with probability 1 - P_REGION_OMITTED
    aromas  : k ~ N_AROMAS, then k draws without replacement, each draw from the variety's own
              AROMA table with probability 1 - EPS, else from a confusable NEIGHBOUR's table
    texture, tannin (reds only), acidity, body: one draw each, own table with 1 - EPS, else neighbour
    age     ~ AGE_PROFILE[variety]            vintage = REFERENCE_YEAR - age (not shown on sparkling
                                              wines with probability P_SPARKLING_NV)
    price   = max(PRICE_MIN, round(exp(N(log(BASE_PRICE[variety] * REGION_PRICE[region]), PRICE_SIGMA))))
    text    : sentence templates and synonyms chosen independently of the variety

Because the text is a function of these features and of variety-independent template choices, the
exact posterior P(variety | features) is computable (`log_likelihoods`), and `--bayes N` estimates the
Bayes-optimal accuracy by Monte Carlo.

Usage:
    python3 data/wine-fr/generate.py [--out DIR] [--seed S] [--train N] [--eval N]
    python3 data/wine-fr/generate.py --check [--out DIR] ...   # regenerate in memory, compare sha256
    python3 data/wine-fr/generate.py --bayes 200000            # Bayes-optimal accuracy estimate
"""

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time

DEFAULT_SEED = 7
DEFAULT_TRAIN = 15000
DEFAULT_EVAL = 5000
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "out")

SYSTEM_PROMPT = "You are a sommelier. Answer with the grape variety only."
QUESTION = "Which grape variety is this wine made from?"
MAX_USER_WORDS = 60

# ----------------------------------------------------------------------------------------------
# The generative model.

PRIOR = {
    "Chardonnay": 0.15,
    "Pinot Noir": 0.14,
    "Merlot": 0.12,
    "Cabernet Sauvignon": 0.11,
    "Syrah": 0.09,
    "Sauvignon Blanc": 0.09,
    "Grenache": 0.08,
    "Cabernet Franc": 0.05,
    "Chenin Blanc": 0.05,
    "Gamay": 0.05,
    "Riesling": 0.04,
    "Viognier": 0.03,
}
VARIETIES = list(PRIOR)

STYLES = ["red", "white", "rosé", "sparkling"]
STYLE = {
    "Chardonnay": {"white": 0.85, "sparkling": 0.15},
    "Pinot Noir": {"red": 0.85, "rosé": 0.05, "sparkling": 0.10},
    "Merlot": {"red": 0.95, "rosé": 0.05},
    "Cabernet Sauvignon": {"red": 0.97, "rosé": 0.03},
    "Syrah": {"red": 0.90, "rosé": 0.10},
    "Sauvignon Blanc": {"white": 1.0},
    "Grenache": {"red": 0.70, "rosé": 0.30},
    "Cabernet Franc": {"red": 0.85, "rosé": 0.15},
    "Chenin Blanc": {"white": 0.85, "sparkling": 0.15},
    "Gamay": {"red": 0.90, "rosé": 0.10},
    "Riesling": {"white": 0.95, "sparkling": 0.05},
    "Viognier": {"white": 1.0},
}

REGIONS = ["Bourgogne", "Bordeaux", "Loire", "Rhône", "Alsace", "Beaujolais", "Languedoc",
           "Champagne", "Provence", "Sud-Ouest"]
REGION = {
    "Chardonnay": {"Bourgogne": 0.50, "Champagne": 0.15, "Languedoc": 0.15, "Beaujolais": 0.07,
                   "Loire": 0.05, "Provence": 0.03, "Sud-Ouest": 0.05},
    "Pinot Noir": {"Bourgogne": 0.58, "Champagne": 0.12, "Alsace": 0.10, "Loire": 0.08,
                   "Languedoc": 0.06, "Beaujolais": 0.06},
    "Merlot": {"Bordeaux": 0.65, "Languedoc": 0.15, "Sud-Ouest": 0.15, "Provence": 0.05},
    "Cabernet Sauvignon": {"Bordeaux": 0.68, "Languedoc": 0.15, "Sud-Ouest": 0.10, "Provence": 0.07},
    "Syrah": {"Rhône": 0.62, "Languedoc": 0.30, "Provence": 0.08},
    "Sauvignon Blanc": {"Loire": 0.58, "Bordeaux": 0.25, "Languedoc": 0.10, "Sud-Ouest": 0.07},
    "Grenache": {"Rhône": 0.50, "Languedoc": 0.25, "Provence": 0.25},
    "Cabernet Franc": {"Loire": 0.55, "Bordeaux": 0.35, "Sud-Ouest": 0.10},
    "Chenin Blanc": {"Loire": 0.88, "Languedoc": 0.12},
    "Gamay": {"Beaujolais": 0.82, "Loire": 0.12, "Bourgogne": 0.06},
    "Riesling": {"Alsace": 1.0},
    "Viognier": {"Rhône": 0.72, "Languedoc": 0.28},
}
# How a region is written in the text (chosen uniformly, independently of the variety).
REGION_NAMES = {
    "Bourgogne": ["Burgundy", "Bourgogne"],
    "Bordeaux": ["Bordeaux"],
    "Loire": ["the Loire Valley", "the Loire", "Val de Loire"],
    "Rhône": ["the Rhône Valley", "the Rhône", "Vallée du Rhône"],
    "Alsace": ["Alsace"],
    "Beaujolais": ["Beaujolais", "the Beaujolais"],
    "Languedoc": ["the Languedoc", "Languedoc-Roussillon"],
    "Champagne": ["Champagne"],
    "Provence": ["Provence"],
    "Sud-Ouest": ["the South-West", "Sud-Ouest"],
}
P_REGION_OMITTED = 0.35

# Aroma descriptors: unnormalised weights per variety (normalised at load).
AROMA = {
    "Pinot Noir": {"cherry": 3, "raspberry": 3, "strawberry": 2, "redcurrant": 1.5, "mushroom": 2,
                   "forest floor": 1.5, "earth": 1, "violet": 1, "clove": 1},
    "Gamay": {"strawberry": 3, "raspberry": 3, "cherry": 2, "banana": 2, "violet": 2,
              "redcurrant": 1.5, "white pepper": 0.5, "earth": 0.5},
    "Cabernet Sauvignon": {"blackcurrant": 4, "blackberry": 2, "cedar": 2.5, "tobacco": 1.5,
                           "graphite": 1.5, "green pepper": 1, "mint": 1, "vanilla": 1, "plum": 0.5},
    "Merlot": {"plum": 4, "black cherry": 3, "blackcurrant": 1.5, "mocha": 1.5, "vanilla": 1,
               "fig": 1, "blackberry": 1, "cedar": 0.5, "tobacco": 0.5},
    "Cabernet Franc": {"green pepper": 3, "raspberry": 2, "blackcurrant": 1.5, "violet": 1.5,
                       "graphite": 1.5, "cherry": 1.5, "tobacco": 1, "earth": 1, "cedar": 0.5},
    "Syrah": {"black pepper": 4, "blackberry": 3, "black olive": 2, "violet": 1.5, "smoke": 1.5,
              "plum": 1, "leather": 1, "licorice": 1},
    "Grenache": {"garrigue": 2.5, "strawberry": 2, "raspberry": 2, "cherry": 2, "plum": 1.5,
                 "licorice": 1, "white pepper": 1, "fig": 1, "leather": 0.5, "clove": 1},
    "Chardonnay": {"butter": 2.5, "brioche": 2, "hazelnut": 2, "green apple": 1.5, "lemon": 1.5,
                   "pear": 1.5, "flint": 1.5, "vanilla": 1, "peach": 0.5, "honey": 0.5},
    "Chenin Blanc": {"quince": 3, "honey": 2.5, "beeswax": 2, "green apple": 2, "pear": 1.5,
                     "chamomile": 1, "lemon": 1, "almond": 0.5, "ginger": 0.5, "apricot": 0.5},
    "Sauvignon Blanc": {"cut grass": 3, "gooseberry": 3, "grapefruit": 2.5, "lime": 1.5,
                        "elderflower": 1.5, "flint": 1.5, "passion fruit": 1, "lemon": 1,
                        "green pepper": 0.5},
    "Riesling": {"lime": 3, "petrol": 2.5, "green apple": 2, "wet stone": 2, "lemon": 1.5,
                 "peach": 1, "honey": 1, "honeysuckle": 1, "apricot": 0.5},
    "Viognier": {"apricot": 4, "peach": 3, "honeysuckle": 2, "orange blossom": 2, "ginger": 1,
                 "honey": 1, "almond": 0.5, "pear": 0.5},
}
N_AROMAS = {1: 0.15, 2: 0.45, 3: 0.40}

TEXTURE = {
    "Pinot Noir": {"silky": 3, "elegant": 2, "fresh": 1.5, "supple": 1},
    "Gamay": {"juicy": 3, "fresh": 2, "supple": 1.5, "silky": 0.5},
    "Cabernet Sauvignon": {"structured": 2.5, "chewy": 1.5, "elegant": 1, "rich": 1},
    "Merlot": {"plush": 2.5, "velvety": 2.5, "round": 2, "rich": 1},
    "Cabernet Franc": {"fresh": 2, "supple": 1.5, "elegant": 1.5, "savoury": 1.5, "structured": 0.5},
    "Syrah": {"savoury": 2, "chewy": 2, "rich": 1.5, "structured": 1, "velvety": 1},
    "Grenache": {"rich": 2, "plush": 1.5, "rustic": 1.5, "round": 1.5, "savoury": 1},
    "Chardonnay": {"creamy": 3, "rich": 2, "round": 1.5, "mineral": 1, "elegant": 1},
    "Chenin Blanc": {"waxy": 2.5, "fresh": 1.5, "rich": 1, "mineral": 1, "round": 1},
    "Sauvignon Blanc": {"zesty": 3, "crisp": 2.5, "fresh": 1.5, "mineral": 1},
    "Riesling": {"steely": 2.5, "mineral": 2, "crisp": 1.5, "zesty": 1, "lean": 1},
    "Viognier": {"lush": 2.5, "oily": 2, "round": 1.5, "rich": 1.5, "creamy": 1},
}

LEVELS = ["low", "medium", "high"]
# Tannin is only written for red wines.
TANNIN = {
    "Pinot Noir": (0.40, 0.50, 0.10), "Gamay": (0.60, 0.35, 0.05),
    "Cabernet Sauvignon": (0.02, 0.28, 0.70), "Merlot": (0.15, 0.60, 0.25),
    "Cabernet Franc": (0.15, 0.55, 0.30), "Syrah": (0.05, 0.40, 0.55),
    "Grenache": (0.25, 0.55, 0.20),
    # whites: never written, defined so that every variety has a table
    "Chardonnay": (0.8, 0.2, 0.0), "Chenin Blanc": (0.8, 0.2, 0.0),
    "Sauvignon Blanc": (0.8, 0.2, 0.0), "Riesling": (0.8, 0.2, 0.0), "Viognier": (0.8, 0.2, 0.0),
}
ACIDITY = {
    "Pinot Noir": (0.05, 0.45, 0.50), "Gamay": (0.05, 0.45, 0.50),
    "Cabernet Sauvignon": (0.10, 0.60, 0.30), "Merlot": (0.30, 0.55, 0.15),
    "Cabernet Franc": (0.05, 0.45, 0.50), "Syrah": (0.15, 0.60, 0.25),
    "Grenache": (0.45, 0.45, 0.10), "Chardonnay": (0.15, 0.55, 0.30),
    "Chenin Blanc": (0.02, 0.30, 0.68), "Sauvignon Blanc": (0.02, 0.25, 0.73),
    "Riesling": (0.01, 0.19, 0.80), "Viognier": (0.50, 0.40, 0.10),
}
BODY = {
    "Pinot Noir": (0.30, 0.60, 0.10), "Gamay": (0.60, 0.35, 0.05),
    "Cabernet Sauvignon": (0.02, 0.28, 0.70), "Merlot": (0.10, 0.50, 0.40),
    "Cabernet Franc": (0.20, 0.60, 0.20), "Syrah": (0.05, 0.40, 0.55),
    "Grenache": (0.05, 0.40, 0.55), "Chardonnay": (0.10, 0.50, 0.40),
    "Chenin Blanc": (0.20, 0.55, 0.25), "Sauvignon Blanc": (0.50, 0.45, 0.05),
    "Riesling": (0.55, 0.40, 0.05), "Viognier": (0.05, 0.35, 0.60),
}

# Confusable neighbours: with probability EPS a descriptor is drawn from a neighbour's table
# (the neighbour picked with these weights) instead of the variety's own.
EPS = 0.35
NEIGHBOUR = {
    "Pinot Noir": {"Gamay": 0.7, "Grenache": 0.3},
    "Gamay": {"Pinot Noir": 1.0},
    "Cabernet Sauvignon": {"Merlot": 0.5, "Cabernet Franc": 0.5},
    "Merlot": {"Cabernet Sauvignon": 0.6, "Cabernet Franc": 0.4},
    "Cabernet Franc": {"Cabernet Sauvignon": 0.5, "Merlot": 0.5},
    "Syrah": {"Grenache": 1.0},
    "Grenache": {"Syrah": 0.7, "Gamay": 0.3},
    "Chardonnay": {"Chenin Blanc": 0.6, "Viognier": 0.4},
    "Chenin Blanc": {"Chardonnay": 0.6, "Sauvignon Blanc": 0.4},
    "Sauvignon Blanc": {"Chenin Blanc": 0.5, "Riesling": 0.5},
    "Riesling": {"Sauvignon Blanc": 0.6, "Chenin Blanc": 0.4},
    "Viognier": {"Chardonnay": 0.7, "Riesling": 0.3},
}

REFERENCE_YEAR = 2024
AGE_PROFILES = {  # weights for age 1..12 years (vintage = REFERENCE_YEAR - age)
    "young": [5, 6, 4, 2, 1, 0.5, 0.3, 0.2, 0.1, 0.1, 0.05, 0.05],
    "medium": [1, 3, 4, 4, 3, 2, 1.5, 1, 0.5, 0.3, 0.2, 0.1],
    "long": [0.3, 1, 2, 3, 3, 3, 2.5, 2, 2, 1.5, 1, 1],
}
AGE_PROFILE = {
    "Pinot Noir": "medium", "Gamay": "young", "Cabernet Sauvignon": "long", "Merlot": "medium",
    "Cabernet Franc": "medium", "Syrah": "long", "Grenache": "medium", "Chardonnay": "medium",
    "Chenin Blanc": "medium", "Sauvignon Blanc": "young", "Riesling": "medium", "Viognier": "young",
}
P_SPARKLING_NV = 0.6  # a sparkling wine is non-vintage (no year written) with this probability

BASE_PRICE = {  # median price in euros before the region factor
    "Pinot Noir": 35, "Chardonnay": 30, "Cabernet Sauvignon": 32, "Merlot": 24,
    "Cabernet Franc": 20, "Syrah": 28, "Grenache": 18, "Sauvignon Blanc": 18, "Chenin Blanc": 20,
    "Gamay": 15, "Riesling": 20, "Viognier": 32,
}
REGION_PRICE = {
    "Bourgogne": 1.3, "Champagne": 1.6, "Bordeaux": 1.15, "Rhône": 1.0, "Loire": 0.9,
    "Alsace": 0.95, "Beaujolais": 0.85, "Languedoc": 0.7, "Provence": 0.85, "Sud-Ouest": 0.75,
}
PRICE_SIGMA = 0.45
PRICE_MIN = 6
P_PRICE_SHOWN = 0.75


def _normalise(d):
    s = float(sum(d.values()))
    return {k: v / s for k, v in d.items()}


PRIOR = _normalise(PRIOR)
STYLE = {v: _normalise(d) for v, d in STYLE.items()}
REGION = {v: _normalise(d) for v, d in REGION.items()}
AROMA = {v: _normalise(d) for v, d in AROMA.items()}
TEXTURE = {v: _normalise(d) for v, d in TEXTURE.items()}
NEIGHBOUR = {v: _normalise(d) for v, d in NEIGHBOUR.items()}
N_AROMAS = _normalise(N_AROMAS)
AGE = {p: [w / sum(ws) for w in ws] for p, ws in AGE_PROFILES.items()}

# ----------------------------------------------------------------------------------------------
# Surface text: choices independent of the variety.

STYLE_WORDS = {
    "red": ["red", "red wine"],
    "white": ["white", "dry white"],
    "rosé": ["rosé", "dry rosé"],
    "sparkling": ["sparkling wine", "brut sparkling wine"],
}
TANNIN_WORDS = {"low": ["soft", "light"], "medium": ["medium", "moderate"], "high": ["firm", "grippy"]}
ACID_WORDS = {"low": ["low", "gentle"], "medium": ["moderate", "balanced"], "high": ["high", "bright"]}
BODY_WORDS = {"low": "light-bodied", "medium": "medium-bodied", "high": "full-bodied"}
CLOSINGS = ["Drink now.", "Drink now or hold a few years.", "Best with food.", "Well made.",
            "Good value.", "Needs some air.", "A fine effort.", "Ready to drink.", "Worth a look."]
P_CLOSING = 0.35


# ----------------------------------------------------------------------------------------------
# Sampling (only rng.random() is used, so the stream is stable across Python versions).

def _pick(rng, items):
    return items[min(int(rng.random() * len(items)), len(items) - 1)]


def _draw(rng, dist, exclude=()):
    """One draw from a {key: prob} dict restricted to keys not in exclude (renormalised)."""
    keys = [k for k in dist if k not in exclude and dist[k] > 0]
    total = sum(dist[k] for k in keys)
    u = rng.random() * total
    acc = 0.0
    for k in keys:
        acc += dist[k]
        if u < acc:
            return k
    return keys[-1]


def _draw_level(rng, probs):
    return _draw(rng, dict(zip(LEVELS, probs)))


def _source(rng, variety):
    """The table a descriptor comes from: the variety's own, or a confusable neighbour's."""
    if rng.random() < EPS:
        return _draw(rng, NEIGHBOUR[variety])
    return variety


def sample_features(rng):
    v = _draw(rng, PRIOR)
    style = _draw(rng, STYLE[v])
    region = _draw(rng, REGION[v])
    region_shown = rng.random() >= P_REGION_OMITTED
    k = _draw(rng, N_AROMAS)
    aromas = []
    for _ in range(k):
        aromas.append(_draw(rng, AROMA[_source(rng, v)], exclude=aromas))
    texture = _draw(rng, TEXTURE[_source(rng, v)])
    tannin = _draw_level(rng, TANNIN[_source(rng, v)]) if style == "red" else None
    acidity = _draw_level(rng, ACIDITY[_source(rng, v)])
    body = _draw_level(rng, BODY[_source(rng, v)])
    age = 1 + _draw(rng, dict(enumerate(AGE[AGE_PROFILE[v]])))
    vintage_shown = not (style == "sparkling" and rng.random() < P_SPARKLING_NV)
    # price: Box-Muller normal from two uniforms
    u1, u2 = rng.random(), rng.random()
    z = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)
    mu = math.log(BASE_PRICE[v] * REGION_PRICE[region])
    price = max(PRICE_MIN, int(math.floor(math.exp(mu + PRICE_SIGMA * z) + 0.5)))
    price_shown = rng.random() < P_PRICE_SHOWN
    return {
        "variety": v, "style": style, "region": region if region_shown else None,
        "aromas": aromas, "texture": texture, "tannin": tannin, "acidity": acidity, "body": body,
        "vintage": REFERENCE_YEAR - age if vintage_shown else None,
        "price": price if price_shown else None,
    }


def _join(words):
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def _cap(s):
    return s[0].upper() + s[1:]


def render(rng, f):
    """The review text for features f; every choice here is independent of the variety."""
    style = _pick(rng, STYLE_WORDS[f["style"]])
    region = _pick(rng, REGION_NAMES[f["region"]]) if f["region"] else None
    vin = f["vintage"]
    # Opening sentence.
    if region and vin:
        opening = _pick(rng, [
            f"A {vin} {style} from {region}.",
            f"This {style} from {region}, vintage {vin}.",
            f"{_cap(region)}, {vin}: a {style}.",
        ])
    elif region:
        opening = _pick(rng, [f"A {style} from {region}.", f"This {style} comes from {region}."])
    elif vin:
        opening = _pick(rng, [f"A {vin} {style}.", f"This {style}, vintage {vin}."])
    else:
        opening = _pick(rng, [f"A {style}.", f"This {style}, non-vintage."])
    # Nose.
    a = _join(f["aromas"])
    nose = _pick(rng, [f"Aromas of {a}.", f"The nose shows {a}.", f"Notes of {a} on the nose.",
                       f"It smells of {a}."])
    # Palate.
    t, b = f["texture"], BODY_WORDS[f["body"]]
    acid = _pick(rng, ACID_WORDS[f["acidity"]])
    tan = _pick(rng, TANNIN_WORDS[f["tannin"]]) if f["tannin"] else None
    form = int(rng.random() * 3)
    if form == 0:
        palate = f"The palate is {t} and {b}, with {acid} acidity" + (
            f" and {tan} tannins." if tan else ".")
    elif form == 1:
        palate = f"{_cap(t)} and {b}, {acid} acidity" + (f", {tan} tannins." if tan else ".")
    else:
        palate = f"It is {t} on the palate, {b}, with {acid} acidity" + (
            f" and {tan} tannins." if tan else ".")
    parts = [opening, nose, palate]
    if f["price"] is not None:
        parts.append(_pick(rng, [f"€{f['price']}.", f"Priced at €{f['price']}.",
                                 f"Around €{f['price']}."]))
    if rng.random() < P_CLOSING:
        parts.append(_pick(rng, CLOSINGS))
    return " ".join(parts)


def user_content(text):
    return f"Review: {text}\n{QUESTION}"


def example_json(text, variety):
    rec = {"messages": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_content(text)},
        {"role": "assistant", "content": variety},
    ]}
    return json.dumps(rec, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------
# Exact likelihoods (for the Bayes-optimal accuracy).

def _mix(v):
    """[(weight, table variety)] of the descriptor source mixture of variety v."""
    return [(1.0 - EPS, v)] + [(EPS * w, n) for n, w in NEIGHBOUR[v].items()]


def _norm_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _price_prob(price, v, region):
    mu = math.log(BASE_PRICE[v] * REGION_PRICE[region])
    hi = _norm_cdf((math.log(price + 0.5) - mu) / PRICE_SIGMA)
    if price == PRICE_MIN:
        return hi
    return hi - _norm_cdf((math.log(price - 0.5) - mu) / PRICE_SIGMA)


def log_likelihoods(f, use=("style", "region", "aromas", "texture", "structure", "vintage", "price")):
    """log P(observed features | v) + log prior, for every variety (unnormalised log posterior).

    Template choices, k, and whether region/price/vintage are shown do not depend on the variety
    (given the observed style), so they cancel and are left out."""
    out = {}
    for v in VARIETIES:
        lp = math.log(PRIOR[v])
        if "style" in use:
            p = STYLE[v].get(f["style"], 0.0)
            if p == 0.0:
                out[v] = -math.inf
                continue
            lp += math.log(p)
        mix = _mix(v)
        if "region" in use and f["region"] is not None:
            p = REGION[v].get(f["region"], 0.0)
            if p == 0.0:
                out[v] = -math.inf
                continue
            lp += math.log(p)
        if "aromas" in use:
            chosen = []
            for d in f["aromas"]:
                p = 0.0
                for w, src in mix:
                    tab = AROMA[src]
                    rest = 1.0 - sum(tab.get(c, 0.0) for c in chosen)
                    if rest > 0:
                        p += w * tab.get(d, 0.0) / rest
                if p == 0.0:
                    lp = -math.inf
                    break
                lp += math.log(p)
                chosen.append(d)
            if lp == -math.inf:
                out[v] = lp
                continue
        if "texture" in use:
            p = sum(w * TEXTURE[src].get(f["texture"], 0.0) for w, src in mix)
            if p == 0.0:
                out[v] = -math.inf
                continue
            lp += math.log(p)
        if "structure" in use:
            for key, tab in (("tannin", TANNIN), ("acidity", ACIDITY), ("body", BODY)):
                if f[key] is None:
                    continue
                i = LEVELS.index(f[key])
                p = sum(w * tab[src][i] for w, src in mix)
                lp = lp + math.log(p) if p > 0 else -math.inf
        if "vintage" in use and f["vintage"] is not None:
            lp += math.log(AGE[AGE_PROFILE[v]][REFERENCE_YEAR - f["vintage"] - 1])
        if "price" in use and f["price"] is not None:
            if f["region"] is not None:
                p = _price_prob(f["price"], v, f["region"])
            else:
                p = sum(pr * _price_prob(f["price"], v, r) for r, pr in REGION[v].items())
            lp = lp + math.log(p) if p > 0 else -math.inf
        out[v] = lp
    return out


def posterior(f, **kw):
    ll = log_likelihoods(f, **kw)
    m = max(ll.values())
    ex = {v: (math.exp(x - m) if x > -math.inf else 0.0) for v, x in ll.items()}
    s = sum(ex.values())
    return {v: x / s for v, x in ex.items()}


# ----------------------------------------------------------------------------------------------
# Splits.

def generate(seed=DEFAULT_SEED, n_train=DEFAULT_TRAIN, n_eval=DEFAULT_EVAL, keep_features=False):
    """Returns ({"train": [(text, variety, features)], "eval": [...]}, {split: resampled count});
    all texts are distinct."""
    seen = set()
    splits = {}
    rejected = {}
    for name, n in (("train", n_train), ("eval", n_eval)):
        rng = random.Random(f"wine-fr/{seed}/{name}")
        rows = []
        rejected[name] = 0
        while len(rows) < n:
            f = sample_features(rng)
            text = render(rng, f)
            if text in seen or len(user_content(text).split()) > MAX_USER_WORDS:
                rejected[name] += 1
                continue  # resample: texts are unique across and within splits
            seen.add(text)
            rows.append((text, f["variety"], f if keep_features else None))
        splits[name] = rows
    return splits, rejected


def serialise(splits, rejected):
    files = {}
    for name, rows in splits.items():
        files[f"{name}.jsonl"] = "".join(example_json(t, v) + "\n" for t, v, _ in rows).encode("utf-8")
    stats = {"seed": None, "splits": {}}
    for name, rows in splits.items():
        counts = {v: 0 for v in VARIETIES}
        words = [len(user_content(t).split()) for t, _, _ in rows]
        for _, v, _ in rows:
            counts[v] += 1
        stats["splits"][name] = {
            "examples": len(rows),
            "class_counts": counts,
            "mean_user_words": round(sum(words) / max(1, len(words)), 2),
            "max_user_words": max(words) if words else 0,
            "mean_review_words": round(sum(len(t.split()) for t, _, _ in rows) / max(1, len(rows)), 2),
            "sha256": hashlib.sha256(files[f"{name}.jsonl"]).hexdigest(),
            "bytes": len(files[f"{name}.jsonl"]),
            "resampled": rejected.get(name, 0),
        }
    return files, stats


def bayes_report(seed, n):
    """Monte Carlo estimate of the Bayes-optimal accuracy: E[max_v P(v | x)] over fresh samples,
    with the same estimate for feature subsets, and the majority-class baseline."""
    rng = random.Random(f"wine-fr/{seed}/bayes")
    subsets = {
        "all features": ("style", "region", "aromas", "texture", "structure", "vintage", "price"),
        "style + region only": ("style", "region"),
        "aromas only": ("aromas",),
        "style + region + aromas": ("style", "region", "aromas"),
    }
    sums = {k: 0.0 for k in subsets}
    sq = {k: 0.0 for k in subsets}
    hits = 0
    cls_n = {v: 0 for v in VARIETIES}
    cls_hit = {v: 0 for v in VARIETIES}
    for _ in range(n):
        f = sample_features(rng)
        for k, use in subsets.items():
            post = posterior(f, use=use)
            m = max(post.values())
            sums[k] += m
            sq[k] += m * m
            if k == "all features":
                best = max(VARIETIES, key=lambda v: post[v])
                hits += best == f["variety"]
                cls_n[f["variety"]] += 1
                cls_hit[f["variety"]] += best == f["variety"]
    res = {"samples": n, "majority_baseline": max(PRIOR.values()),
           "majority_class": max(PRIOR, key=PRIOR.get)}
    for k in subsets:
        mean = sums[k] / n
        var = max(0.0, sq[k] / n - mean * mean)
        res[k] = {"bayes_accuracy": round(mean, 4), "stderr": round(math.sqrt(var / n), 4)}
    res["all features"]["argmax_hit_rate"] = round(hits / n, 4)
    res["all features"]["per_class_argmax_recall"] = {
        v: round(cls_hit[v] / max(1, cls_n[v]), 4) for v in VARIETIES}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--train", type=int, default=DEFAULT_TRAIN)
    ap.add_argument("--eval", type=int, default=DEFAULT_EVAL)
    ap.add_argument("--check", action="store_true",
                    help="regenerate in memory and compare sha256 with the files in --out")
    ap.add_argument("--bayes", type=int, default=0, metavar="N",
                    help="also estimate the Bayes-optimal accuracy from N Monte Carlo samples")
    args = ap.parse_args(argv)

    t0 = time.time()
    splits, rejected = generate(args.seed, args.train, args.eval, keep_features=args.bayes > 0)
    files, stats = serialise(splits, rejected)
    stats["seed"] = args.seed
    files["stats.json"] = (json.dumps(stats, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    gen_s = time.time() - t0

    if args.check:
        bad = 0
        for name, data in files.items():
            path = os.path.join(args.out, name)
            want = hashlib.sha256(data).hexdigest()
            try:
                with open(path, "rb") as fh:
                    got = hashlib.sha256(fh.read()).hexdigest()
            except OSError as e:
                print(f"MISSING {path}: {e}")
                bad += 1
                continue
            print(f"{'OK      ' if got == want else 'MISMATCH'} {name} {got}")
            bad += got != want
        if bad:
            print(f"check failed: {bad} file(s) differ from a regeneration with seed {args.seed}")
            return 1
        print("check ok: the files equal a fresh regeneration")
        return 0

    os.makedirs(args.out, exist_ok=True)
    for name, data in files.items():
        tmp = os.path.join(args.out, name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, os.path.join(args.out, name))
    for name, s in stats["splits"].items():
        print(f"{name}: {s['examples']} examples, mean {s['mean_user_words']} user words "
              f"(max {s['max_user_words']}), {s['bytes']} bytes, sha256 {s['sha256']}")
    print(f"wrote {args.out} in {gen_s:.2f} s")
    if args.bayes > 0:
        t1 = time.time()
        rep = bayes_report(args.seed, args.bayes)
        # Argmax of the true posterior on the generated eval split itself.
        ev = splits["eval"]
        hit = sum(max(VARIETIES, key=lambda v, p=posterior(f): p[v]) == var for _, var, f in ev)
        rep["eval_split_bayes_argmax_accuracy"] = round(hit / max(1, len(ev)), 4)
        rep["eval_split_majority_accuracy"] = round(
            sum(var == rep["majority_class"] for _, var, _ in ev) / max(1, len(ev)), 4)
        with open(os.path.join(args.out, "bayes.json"), "w", encoding="utf-8") as fh:
            json.dump(rep, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        print(json.dumps(rep, indent=2, ensure_ascii=False))
        print(f"bayes estimate in {time.time() - t1:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
