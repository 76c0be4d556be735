#!/usr/bin/env python3
"""Pretraining corpus for the tiny base model: wine-and-food prose plus generic English prose.

A deterministic generator (Python 3 standard library only). Writes, to --out:

    corpus.jsonl          one {"text": ...} document per line, 50-200 words each
    tokenizer_corpus.txt  the same documents, one per line, plus the chat role names and the fixed
                          prompt strings of the wine-fr dataset (for BPE training)
    stats.json            documents, bytes, words, documents per kind, sha256 of both files

The wine prose uses the vocabulary of data/wine-fr/generate.py (varieties, regions, aromas, textures,
structure words), with realistic variety/region/descriptor associations taken from its tables, but
never in the review -> variety question/answer format: no "Review:", no question, no system prompt.
Every document is also checked not to contain any wine-fr review (train or eval, default seed and
sizes) verbatim; a document that does is redrawn (stats.json counts them).

Usage:
    python3 data/corpus/generate.py [--out DIR] [--seed S] [--docs N]
    python3 data/corpus/generate.py --check [--out DIR] ...   # regenerate in memory, compare sha256
"""

import argparse
import hashlib
import importlib.util
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "out")
DEFAULT_SEED = 11
DEFAULT_DOCS = 8000
MIN_WORDS, MAX_WORDS = 50, 200


def _load_wine():
    path = os.path.join(HERE, "..", "wine-fr", "generate.py")
    spec = importlib.util.spec_from_file_location("wine_fr_generate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


W = _load_wine()

# Share of each document kind.
KINDS = {
    "tasting_diary": 0.16, "region_profile": 0.10, "variety_profile": 0.10, "cellar_notes": 0.10,
    "food_pairing": 0.08, "winemaking": 0.06, "vintage_report": 0.05,
    "cooking": 0.13, "travel": 0.12, "weather": 0.10,
}


# ----------------------------------------------------------------------------------------------
# Helpers (only rng.random() is used).

def pick(rng, items):
    return items[min(int(rng.random() * len(items)), len(items) - 1)]


def draw(rng, dist, exclude=()):
    return W._draw(rng, dist, exclude)


def sample_k(rng, dist, k):
    out = []
    for _ in range(min(k, len(dist))):
        out.append(draw(rng, dist, exclude=out))
    return out


def randint(rng, lo, hi):
    return lo + min(int(rng.random() * (hi - lo + 1)), hi - lo)


def join(words):
    return W._join(words)


def cap(s):
    return W._cap(s)


def fill(rng, template, **kw):
    """Format a template; {a|b|c} picks one alternative."""
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c == "{":
            j = template.index("}", i)
            body = template[i + 1:j]
            if "|" in body:
                out.append(pick(rng, body.split("|")))
            else:
                out.append(str(kw[body]))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def region_name(rng, region):
    return pick(rng, W.REGION_NAMES[region])


# P(variety | region) from the wine-fr tables.
VARIETIES_OF = {}
for _r in W.REGIONS:
    _d = {v: W.PRIOR[v] * W.REGION[v].get(_r, 0.0) for v in W.VARIETIES}
    _d = {v: p for v, p in _d.items() if p > 0}
    _s = sum(_d.values())
    VARIETIES_OF[_r] = {v: p / _s for v, p in sorted(_d.items(), key=lambda x: -x[1])}


def typical_level(tab, v):
    probs = tab[v]
    return W.LEVELS[max(range(3), key=lambda i: probs[i])]


LEVEL_ADJ = {"low": "low", "medium": "moderate", "high": "high"}
BODY_ADJ = W.BODY_WORDS
COLOUR_OF = {v: ("white" if "white" in W.STYLE[v] else "red") for v in W.VARIETIES}

PRODUCER_FIRST = ["Domaine", "Château", "Clos", "Maison", "Domaine de la", "Château de"]
PRODUCER_NAME = ["Moreau", "Lefèvre", "Garnier", "Roux", "Fontaine", "Chevalier", "Girard",
                 "Bonnet", "Mercier", "Blanchard", "Perrin", "Lambert", "Marchand", "Rousseau",
                 "Vidal", "Faure", "Morel", "Brun", "Caron", "Dubois", "Laurent", "Simon",
                 "Colline", "Source", "Tour", "Pierre Blanche", "Vieux Chêne", "Bois Joli",
                 "Grange", "Croix", "Montagne", "Rivière", "Belair", "Beauregard", "Sablons"]
FIRST_NAMES = ["Claire", "Marc", "Sophie", "Julien", "Anne", "Pierre", "Louise", "Thomas",
               "Emma", "Paul", "Camille", "Hugo", "Léa", "Nicolas", "Marie", "Antoine", "Sarah",
               "David", "Lucy", "James", "Tom", "Helen", "Maria", "Peter", "Laura", "Ben"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
TOWNS = {
    "Bourgogne": ["Beaune", "Dijon", "Chablis", "Mâcon", "Nuits-Saint-Georges"],
    "Bordeaux": ["Bordeaux", "Saint-Émilion", "Pauillac", "Libourne", "Margaux"],
    "Loire": ["Tours", "Angers", "Saumur", "Chinon", "Sancerre", "Nantes"],
    "Rhône": ["Avignon", "Orange", "Tain-l'Hermitage", "Vienne", "Châteauneuf-du-Pape"],
    "Alsace": ["Colmar", "Strasbourg", "Riquewihr", "Eguisheim", "Kaysersberg"],
    "Beaujolais": ["Villefranche", "Fleurie", "Juliénas", "Beaujeu"],
    "Languedoc": ["Montpellier", "Narbonne", "Carcassonne", "Béziers", "Pézenas"],
    "Champagne": ["Reims", "Épernay", "Troyes", "Aÿ"],
    "Provence": ["Aix-en-Provence", "Bandol", "Cassis", "Toulon", "Brignoles"],
    "Sud-Ouest": ["Toulouse", "Cahors", "Bergerac", "Madiran", "Gaillac"],
}
DISHES = {
    "red": ["roast lamb", "beef stew", "duck breast", "a mushroom risotto", "grilled sausages",
            "coq au vin", "a cassoulet", "roast chicken", "a cheese board", "steak frites",
            "a lentil stew", "pork chops with apples", "boeuf bourguignon", "grilled aubergine"],
    "white": ["grilled fish", "oysters", "a goat cheese salad", "roast chicken", "scallops",
              "a creamy pasta", "trout with almonds", "a vegetable tart", "sushi", "a spicy curry",
              "choucroute", "lobster", "a quiche", "mussels"],
    "rosé": ["a salad niçoise", "grilled prawns", "tapas", "a picnic", "ratatouille",
             "grilled vegetables", "a bouillabaisse"],
    "sparkling": ["oysters", "fried snacks", "smoked salmon", "a birthday cake", "gougères",
                  "popcorn", "a plate of cheese"],
}


# ----------------------------------------------------------------------------------------------
# Wine documents. Each returns a list of sentences (the assembler cuts it to length).

def aromas_of(rng, v, k=None):
    k = k or randint(rng, 2, 4)
    return sample_k(rng, W.AROMA[v], k)


def texture_of(rng, v):
    return draw(rng, W.TEXTURE[v])


def producer(rng):
    return f"{pick(rng, PRODUCER_FIRST)} {pick(rng, PRODUCER_NAME)}"


def vintage(rng):
    return randint(rng, 2010, 2023)


def doc_tasting_diary(rng):
    v = draw(rng, W.PRIOR)
    r = draw(rng, W.REGION[v])
    style = draw(rng, W.STYLE[v])
    who = pick(rng, FIRST_NAMES)
    dish = pick(rng, DISHES[style])
    ar = aromas_of(rng, v)
    s = [
        fill(rng, "{Last|On} {day} {we|my friends and I|my partner and I} opened a bottle of "
                  "{vin} {v} from {reg}.", day=pick(rng, WEEKDAYS), vin=vintage(rng), v=v,
             reg=region_name(rng, r)),
        fill(rng, "{It was|The bottle was} a gift from {who}, who {had visited|spent a week in|"
                  "loves} {reg}.", who=who, reg=region_name(rng, r)),
        fill(rng, "{In the glass it was|Once poured it looked} {col}, and the first thing "
                  "{I noticed|we noticed|that came out} was {a}.", col=pick(rng, COLOUR_WORDS[style]),
             a=ar[0]),
        fill(rng, "After {ten minutes|half an hour|a while} {more came through|it opened up}: "
                  "{rest}.", rest=join(ar[1:]) if len(ar) > 1 else ar[0]),
        fill(rng, "The wine felt {t} and {b}{tan}, which is {typical|what you expect|classic} "
                  "for {v}.", t=texture_of(rng, v), b=BODY_ADJ[typical_level(W.BODY, v)],
             tan=(f", with {LEVEL_ADJ[typical_level(W.TANNIN, v)]} tannins" if style == "red" else ""),
             v=v),
        fill(rng, "We {had it|drank it} with {dish} and {the match was lovely|it worked well|"
                  "it was a good pairing|the pairing was only fair}.", dish=dish),
        fill(rng, "{Next time|Another time} I {would|might} {decant it|serve it a little cooler|"
                  "keep it a few more years|buy two bottles}."),
        fill(rng, "{who} said it reminded {her|him|them} of a {holiday|summer|trip} in {town}.",
             who=who, town=pick(rng, TOWNS[r])),
    ]
    extras = [
        fill(rng, "The label said {prod}, a {small|family|well known|young} {estate|producer} "
                  "{near|outside|north of|south of} {town}.", prod=producer(rng),
             town=pick(rng, TOWNS[r])),
        fill(rng, "It cost {p} euros at {a local shop|the supermarket|the wine fair|the domaine}.",
             p=max(6, round(W.BASE_PRICE[v] * W.REGION_PRICE[r] * (0.6 + rng.random())))),
        fill(rng, "On the second day the {fruit|wine} was {softer|more open|a little tired|"
                  "even better}."),
        fill(rng, "{I would not call it|It is not} {a great wine|a bargain|complex}, but it was "
                  "{honest|very pleasant|easy to drink|good company}."),
        fill(rng, "{A friend|My neighbour|Someone at the table} {thought|guessed} it was {n}, "
                  "{which was a fair guess|which made us laugh|and we could see why}.",
             n=draw(rng, W.NEIGHBOUR[v])),
        fill(rng, "{There was also|We also noticed} a hint of {a}.", a=draw(rng, W.AROMA[v])),
    ]
    s[2:2] = sample_k(rng, {e: 1.0 for e in extras}, randint(rng, 0, 4))
    return s


COLOUR_WORDS = {
    "red": ["deep ruby", "pale ruby", "dark purple", "garnet", "bright cherry red"],
    "white": ["pale lemon", "golden", "straw yellow", "almost clear", "pale green"],
    "rosé": ["pale salmon", "light pink", "onion skin", "bright pink"],
    "sparkling": ["pale gold with fine bubbles", "straw coloured with a steady mousse",
                  "light gold and lively"],
}


def doc_region_profile(rng):
    r = pick(rng, W.REGIONS)
    name = region_name(rng, r)
    vs = list(VARIETIES_OF[r])
    main = vs[:2]
    town = pick(rng, TOWNS[r])
    s = [fill(rng, "{name} is one of the {best known|most visited|oldest} wine regions of France.",
              name=cap(name)),
         fill(rng, "{Most of the vineyards|The vineyards} lie {near|around|not far from} {town}, "
                   "and {visitors|tourists|wine lovers} come {every year|in every season}.",
              town=town)]
    if len(main) == 1:
        s.append(fill(rng, "The {main|leading} grape here is {v}.", v=main[0]))
    else:
        s.append(fill(rng, "The {main|leading} grapes here are {a} and {b}.", a=main[0], b=main[1]))
    for v in vs[:randint(rng, 1, 4)]:
        ar = aromas_of(rng, v, 3)
        s.append(fill(rng, "{v} from {name} often {shows|gives|brings} {a}.", v=v, name=name,
                      a=join(ar)))
        s.append(fill(rng, "These wines are usually {b}, with {acid} acidity.",
                      b=BODY_ADJ[typical_level(W.BODY, v)],
                      acid=LEVEL_ADJ[typical_level(W.ACIDITY, v)]))
    s.append(fill(rng, "{The climate is|Summers here are} {cool|mild|warm|hot and dry}, and "
                       "{the soils|the slopes} {are|can be} {chalky|stony|sandy|full of clay|"
                       "rich in limestone}."))
    price = round(W.BASE_PRICE[main[0]] * W.REGION_PRICE[r])
    s.append(fill(rng, "A good bottle {costs|sells for} {around|about} {p} euros.", p=price))
    s.append(fill(rng, "{Local food|The local cooking} {goes well with these wines|"
                       "is made for these wines}, from {d1} to {d2}.",
                  d1=pick(rng, DISHES["red"]), d2=pick(rng, DISHES["white"])))
    return s


def doc_variety_profile(rng):
    v = draw(rng, W.PRIOR)
    regs = list(W.REGION[v])
    top = sorted(regs, key=lambda r: -W.REGION[v][r])
    col = COLOUR_OF[v]
    s = [fill(rng, "{v} is a {col} grape {grown|planted|found} in {regs}.", v=v, col=col,
              regs=join([region_name(rng, r) for r in top[:3]])),
         fill(rng, "Its {best known|most famous|classic} wines come from {r}.",
              r=region_name(rng, top[0])),
         fill(rng, "{Typical aromas are|Tasters often find|Expect} {a}.", a=join(aromas_of(rng, v, 4))),
         fill(rng, "On the palate {v} is often {t}, {b}, with {acid} acidity.", v=v,
              t=texture_of(rng, v), b=BODY_ADJ[typical_level(W.BODY, v)],
              acid=LEVEL_ADJ[typical_level(W.ACIDITY, v)])]
    if col == "red":
        s.append(fill(rng, "Its tannins are {lvl} {in most years|as a rule|for the most part}.",
                      lvl=LEVEL_ADJ[typical_level(W.TANNIN, v)]))
    n = draw(rng, W.NEIGHBOUR[v])
    s.append(fill(rng, "It is {sometimes|often|easily} confused with {n}, which can show "
                       "{a} as well.", n=n, a=join(sample_k(rng, W.AROMA[n], 2))))
    prof = W.AGE_PROFILE[v]
    s.append({"young": "Most bottles are best drunk young, within two or three years.",
              "medium": "Most bottles are best within five or six years of the vintage.",
              "long": "The best bottles can age for ten years or more."}[prof])
    styles = [st for st in W.STYLE[v] if st not in ("red", "white")]
    if styles:
        s.append(fill(rng, "Some producers also make {st} wine from it.", st=join(styles)))
    s.append(fill(rng, "{Try it|Serve it} with {d}.", d=pick(rng, DISHES[col])))
    s.append(fill(rng, "Prices start at about {p} euros.", p=max(6, round(W.BASE_PRICE[v] * 0.5))))
    return s


def doc_cellar_notes(rng):
    """A list of short unlabelled notes (producer, region, vintage, descriptors, no variety)."""
    s = [fill(rng, "{Notes from|A few wines from|Tasting notes from} {a tasting in|a visit to|"
                   "a dinner in|the cellar in} {town}.",
              town=pick(rng, TOWNS[pick(rng, W.REGIONS)]))]
    for _ in range(randint(rng, 2, 8)):
        f = W.sample_features(rng)
        reg = f["region"] or draw(rng, W.REGION[f["variety"]])
        price = f["price"] or randint(rng, 8, 60)
        s.append(fill(rng, "{prod}, {reg} {vin}: {a}; {t}, {b}{tan}; {p} euros.",
                      prod=producer(rng), reg=region_name(rng, reg),
                      vin=f["vintage"] or "non-vintage", a=join(f["aromas"]), t=f["texture"],
                      b=BODY_ADJ[f["body"]],
                      tan=(f", {LEVEL_ADJ[f['tannin']]} tannins" if f["tannin"] else ""), p=price))
    s.append(fill(rng, "{The best value of the day|My favourite|The surprise of the evening} "
                       "was the {first|second|last} one."))
    return s


def doc_food_pairing(rng):
    style = pick(rng, W.STYLES)
    dish = pick(rng, DISHES[style])
    vs = [v for v in W.VARIETIES if style in W.STYLE[v]]
    v1 = pick(rng, vs)
    v2 = pick(rng, vs)
    r1 = draw(rng, W.REGION[v1])
    s = [fill(rng, "What should you drink with {dish}?", dish=dish),
         fill(rng, "A {st} wine is {a safe choice|the classic answer|a good place to start}.",
              st=style),
         fill(rng, "{A|One} {v} from {r}, with its {a}, {works well|is a fine match|"
                   "balances the dish}.", v=v1, r=region_name(rng, r1), a=join(aromas_of(rng, v1, 2))),
         fill(rng, "If you prefer something {lighter|richer|cheaper|different}, {try|look for} "
                   "{v}.", v=v2),
         fill(rng, "{Acidity|Fresh acidity} cuts through fat, {while|and} {tannins|a firm structure} "
                   "{suit|match} red meat."),
         fill(rng, "Serve {red wines|reds} {slightly cool|at cellar temperature} and {whites|"
                   "white wines} {chilled|well chilled}, but not ice cold."),
         fill(rng, "{Above all|In the end}, drink what you enjoy."),
         fill(rng, "{Salty|Spicy|Sweet} food {changes|can change} how a wine tastes, so "
                   "{taste the dish first|try a small glass first}.")]
    return s


WINEMAKING = [
    "Harvest usually starts in {September|late August|early October}, when the grapes are ripe.",
    "The grapes are {picked by hand|machine harvested} and {sorted|checked} at the winery.",
    "Red wines ferment with their skins, which gives colour and tannin.",
    "White wines are pressed first, and only the juice is fermented.",
    "Rosé gets a short contact with the skins, often only a few hours.",
    "Many producers age their wines in oak barrels, which can add vanilla and toast.",
    "A second fermentation, called malolactic, softens the acidity and can give a buttery note.",
    "In Champagne, the second fermentation happens in the bottle and creates the bubbles.",
    "Bordeaux wines are often blends of Merlot, Cabernet Sauvignon and Cabernet Franc.",
    "In the southern Rhône, Grenache and Syrah are often blended together.",
    "Cool cellars keep the fermentation slow and the aromas fresh.",
    "Some winemakers use whole bunches, which can add spice and a fresh lift.",
    "Steel tanks keep a wine crisp and fruity, while old barrels add texture.",
    "Wines are usually bottled in spring or after a year or two in the cellar.",
    "Organic growers avoid synthetic sprays and look after the soil.",
    "Yields matter: fewer grapes per vine often means more concentrated wine.",
    "Frost in April and hail in summer are the fears of every grower.",
    "Beaujolais often uses carbonic maceration, which gives aromas of banana and fresh fruit.",
    "In Alsace, most wines are sold by grape variety, which is unusual in France.",
    "In the Loire, Sauvignon Blanc and Chenin Blanc make very different white wines.",
]


def doc_winemaking(rng):
    idx = sample_k(rng, {i: 1.0 for i in range(len(WINEMAKING))}, randint(rng, 4, 14))
    s = [fill(rng, "{How is wine made?|From grape to bottle.|A short guide to winemaking.} "
                   "{Here is|This is} {a simple overview|the basic idea|what happens}.")]
    s += [fill(rng, WINEMAKING[i]) for i in idx]
    return s


def doc_vintage_report(rng):
    r = pick(rng, W.REGIONS)
    year = vintage(rng)
    good = rng.random() < 0.6
    s = [fill(rng, "The {year} vintage in {reg}.", year=year, reg=region_name(rng, r)),
         fill(rng, "Winter was {mild|cold|wet|dry}, and {budburst|flowering} came {early|late|"
                   "on time}.")]
    if good:
        s += [fill(rng, "Summer was {warm and sunny|hot but not too hot|dry with cool nights}."),
              fill(rng, "The grapes reached {full ripeness|good ripeness} with {healthy|clean} "
                        "skins."),
              fill(rng, "Growers {are happy|speak of a great year|were smiling at harvest}.")]
    else:
        s += [fill(rng, "Summer was {wet|cool and grey|marked by storms|hit by hail}."),
              fill(rng, "{Rot|Mildew} was a problem and {yields|volumes} were {low|down}."),
              fill(rng, "The best growers still made {good|fine|honest} wines by sorting "
                        "carefully.")]
    for v in list(VARIETIES_OF[r])[:2]:
        s.append(fill(rng, "{v} {shows|gave} {a} this year.", v=v, a=join(aromas_of(rng, v, 2))))
    s.append(fill(rng, "{Drink the lighter wines now|Keep the best wines a few years|"
                       "Prices should stay stable}."))
    return s


# ----------------------------------------------------------------------------------------------
# Generic prose.

VEG = ["onions", "carrots", "potatoes", "tomatoes", "mushrooms", "leeks", "shallots", "spinach",
       "courgettes", "peppers", "apples", "pears", "garlic", "celery", "aubergines", "bacon",
       "chicken thighs", "lentils", "beans", "rice"]
LIQUIDS = ["chicken stock", "vegetable stock", "white wine", "red wine", "cream", "milk", "water"]
FATS = ["olive oil", "butter", "duck fat", "sunflower oil"]
HERBS = ["thyme", "rosemary", "bay leaves", "parsley", "chives", "tarragon", "nutmeg", "paprika"]
BAKING = ["flour", "eggs", "sugar", "grated cheese", "breadcrumbs", "ground almonds", "honey"]
DISH_NAMES = ["a simple vegetable soup", "a French onion soup", "a potato gratin", "a lemon tart",
              "a pear crumble", "a chicken casserole", "a lentil salad", "a leek and bacon quiche",
              "ratatouille", "a mushroom omelette", "an apple cake", "a bean stew",
              "a tomato sauce", "a rice pilaf", "roast vegetables", "a cheese soufflé"]
COOK_STEPS = [
    "Chop the {veg} and the {veg2}.",
    "Peel the {veg} and cut {it|them} into {small pieces|thin slices|cubes}.",
    "Heat the {fat} in a large pan over {low|medium|high} heat.",
    "Add the {veg} and cook for {five|ten|fifteen|twenty} minutes, stirring {often|from time to time}.",
    "Season with salt, pepper and {herb}.",
    "Add a little {herb} and a pinch of salt.",
    "Pour in the {liquid} and bring to a {simmer|boil}.",
    "Cover and leave to cook gently for {half an hour|an hour|forty minutes}.",
    "Meanwhile, {whisk|mix|beat} the {bake} with the {bake2} in a bowl.",
    "Preheat the oven to {160|180|200|220} degrees.",
    "Bake for {twenty|thirty|forty-five} minutes, until golden.",
    "Taste and adjust the seasoning.",
    "Let it rest for a few minutes before serving.",
    "Serve {hot|warm|at room temperature} with {fresh bread|a green salad|rice|boiled potatoes}.",
    "Sprinkle with {herb} just before serving.",
    "It keeps well in the fridge for {two|three} days.",
    "If the sauce is too thick, add a splash of {liquid}.",
    "Do not let the {fat} burn, or the dish will taste bitter.",
]


def doc_cooking(rng):
    dish = pick(rng, DISH_NAMES)
    veg = sample_k(rng, {x: 1.0 for x in VEG}, randint(rng, 2, 4))
    fat, liquid, herb = pick(rng, FATS), pick(rng, LIQUIDS), pick(rng, HERBS)
    bake = sample_k(rng, {x: 1.0 for x in BAKING}, 2)
    s = [fill(rng, "{How to make|A recipe for|Today we cook} {dish}.", dish=dish),
         fill(rng, "{This is|It is} {an easy|a cheap|a quick|a classic} dish for {a weeknight|"
                   "a family dinner|a cold evening|a summer lunch}."),
         fill(rng, "You will need {i}.", i=join(veg + [fat, liquid, herb] + bake)),
         fill(rng, "{It serves|This is enough for} {two|four|six} people.")]
    steps = sample_k(rng, {i: 1.0 for i in range(len(COOK_STEPS))}, randint(rng, 4, 12))
    for i in sorted(steps):  # roughly in cooking order
        v1, v2 = pick(rng, veg), pick(rng, veg)
        s.append(fill(rng, COOK_STEPS[i], veg=v1, veg2=v2 if v2 != v1 else "herbs", fat=fat,
                      liquid=liquid, herb=herb, bake=bake[0], bake2=bake[1]))
    s.append(fill(rng, "{Enjoy|Bon appétit}!"))
    return s


TRAVEL = [
    "The old town of {town} is {small and |compact and |}easy to explore on foot.",
    "{Start|Begin} the day at the {market|cathedral|river|main square}, {when it is quiet|"
    "before the crowds arrive}.",
    "The {train|bus} from {city} takes about {one|two|three} hours.",
    "{Many|Some} visitors rent a bicycle and ride between the villages.",
    "There are {good|cheap|friendly} hotels near the station.",
    "The {museum|castle|abbey} is open every day except {day}.",
    "For lunch, try a {small|family} restaurant {on the square|by the river|in a side street}.",
    "In the evening the streets fill with people and music.",
    "{Spring|Autumn} is the best season to visit, when it is {mild|quiet|less crowded}.",
    "Bring comfortable shoes, because the streets are steep and paved with stones.",
    "The {market|fair} on {day} sells cheese, bread, fruit and flowers.",
    "From the hill above the town there is a wide view over the {valley|vineyards|river}.",
    "Local people are {friendly|helpful|proud of their town} and happy to give directions.",
    "Many shops close at lunchtime and on {Sunday|Monday}.",
    "A day is enough to see the centre, but two days are better.",
]
CITIES = ["Paris", "Lyon", "Marseille", "Nantes", "Lille", "Toulouse", "Bordeaux", "Strasbourg"]


def doc_travel(rng):
    r = pick(rng, W.REGIONS)
    town = pick(rng, TOWNS[r])
    s = [fill(rng, "{A weekend in|Visiting|Two days in} {town}.", town=town),
         fill(rng, "{town} is a {pretty|lively|quiet|historic} town in {reg}.", town=town,
              reg=region_name(rng, r))]
    idx = sample_k(rng, {i: 1.0 for i in range(len(TRAVEL))}, randint(rng, 4, 15))
    for i in idx:
        s.append(fill(rng, TRAVEL[i], town=town, city=pick(rng, CITIES),
                      day=pick(rng, WEEKDAYS)))
    return s


def doc_weather(rng):
    r = pick(rng, W.REGIONS)
    month = pick(rng, MONTHS)
    t = randint(rng, -2, 34)
    when = pick(rng, ["this week", "for the weekend", f"in {month}"])
    s = [fill(rng, "{Weather|The forecast} for {reg} {when}.", reg=region_name(rng, r), when=when),
         fill(rng, "{Monday|The week} {starts|will start} {sunny|cloudy|wet|windy|foggy}, with "
                   "temperatures around {t} degrees.", t=t),
         fill(rng, "{By|On} {day} {a band of rain|a cold front|warmer air|a storm} {will move in|"
                   "is expected} from the {west|north|south|Atlantic}.", day=pick(rng, WEEKDAYS)),
         fill(rng, "{Winds|Gusts} {could reach|may reach} {n} kilometres per hour {near the coast|"
                   "on the hills|in the afternoon}.", n=randint(rng, 20, 90)),
         fill(rng, "Nights will be {cool|cold|mild|warm}, {with frost in the valleys|"
                   "with some fog at dawn|under clear skies}.")]
    s += [pick(rng, [fill(rng, "{Farmers|Growers|Gardeners} hope that the rain will help the "
                               "{crops|vines|orchards|gardens}."),
                     fill(rng, "{Farmers|Growers|Gardeners} worry that the {heat|frost|wind|hail} "
                               "may damage the {crops|vines|orchards|young shoots}.")]),
          fill(rng, "The weekend {looks|should be} {bright and dry|unsettled|warm|changeable}, "
                    "with {t2} degrees in the afternoon.", t2=t + randint(rng, -4, 5)),
          fill(rng, "{Take an umbrella|Wear a hat|Dress in layers} if you go out.")]
    for _ in range(randint(rng, 0, 6)):
        s.append(fill(rng, "{In|Around} {town}, {expect|look for} {showers|sunshine|clouds|"
                           "light winds} {in the morning|after lunch|late in the day}.",
                      town=pick(rng, TOWNS[r])))
    return s


GENERATORS = {
    "tasting_diary": doc_tasting_diary, "region_profile": doc_region_profile,
    "variety_profile": doc_variety_profile, "cellar_notes": doc_cellar_notes,
    "food_pairing": doc_food_pairing, "winemaking": doc_winemaking,
    "vintage_report": doc_vintage_report, "cooking": doc_cooking, "travel": doc_travel,
    "weather": doc_weather,
}


def assemble(rng, kind):
    """One document of `kind`: its sentences up to MAX_WORDS words (the caller redraws a document
    shorter than MIN_WORDS)."""
    out, n = [], 0
    for sent in GENERATORS[kind](rng):
        w = len(sent.split())
        if n + w > MAX_WORDS:
            break
        out.append(sent)
        n += w
    return " ".join(out)


# ----------------------------------------------------------------------------------------------
# Guard: no wine-fr review verbatim.

class ReviewIndex:
    KEY = 20

    def __init__(self, texts):
        self.by_prefix = {}
        for t in texts:
            self.by_prefix.setdefault(t[:self.KEY], []).append(t)

    def contains_any(self, doc):
        k = self.KEY
        for i, c in enumerate(doc):
            if c.isupper():
                cands = self.by_prefix.get(doc[i:i + k])
                if cands and any(doc.startswith(t, i) for t in cands):
                    return True
        return False


FORBIDDEN = ["Review:", W.QUESTION, W.SYSTEM_PROMPT]


def generate(seed=DEFAULT_SEED, n_docs=DEFAULT_DOCS):
    splits, _ = W.generate(W.DEFAULT_SEED, W.DEFAULT_TRAIN, W.DEFAULT_EVAL)
    index = ReviewIndex([t for rows in splits.values() for t, _, _ in rows])
    rng = random.Random(f"corpus/{seed}")
    docs, kinds, redrawn = [], {k: 0 for k in KINDS}, 0
    while len(docs) < n_docs:
        kind = draw(rng, KINDS)
        text = assemble(rng, kind)
        nw = len(text.split())
        if nw < MIN_WORDS or nw > MAX_WORDS:
            continue
        if any(f in text for f in FORBIDDEN) or index.contains_any(text):
            redrawn += 1
            continue
        docs.append(text)
        kinds[kind] += 1
    return docs, kinds, redrawn


def build_files(seed, n_docs):
    docs, kinds, redrawn = generate(seed, n_docs)
    jsonl = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
    extra = ["system", "user", "assistant"] * 3 + [W.SYSTEM_PROMPT, W.QUESTION] * 3
    tok = ("".join(d + "\n" for d in docs) + "".join(e + "\n" for e in extra)).encode("utf-8")
    words = [len(d.split()) for d in docs]
    stats = {
        "seed": seed, "documents": len(docs), "kinds": kinds,
        "redrawn_for_wine_fr_overlap": redrawn,
        "words": {"total": sum(words), "mean": round(sum(words) / max(1, len(words)), 2),
                  "min": min(words) if words else 0, "max": max(words) if words else 0},
        "corpus.jsonl": {"bytes": len(jsonl), "sha256": hashlib.sha256(jsonl).hexdigest()},
        "tokenizer_corpus.txt": {"bytes": len(tok), "sha256": hashlib.sha256(tok).hexdigest()},
    }
    files = {"corpus.jsonl": jsonl, "tokenizer_corpus.txt": tok,
             "stats.json": (json.dumps(stats, indent=2, ensure_ascii=False) + "\n").encode("utf-8")}
    return files, stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--docs", type=int, default=DEFAULT_DOCS)
    ap.add_argument("--check", action="store_true",
                    help="regenerate in memory and compare sha256 with the files in --out")
    args = ap.parse_args(argv)
    t0 = time.time()
    files, stats = build_files(args.seed, args.docs)
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
    print(f"{stats['documents']} documents, {stats['words']['total']} words "
          f"(mean {stats['words']['mean']}, {stats['words']['min']}-{stats['words']['max']}), "
          f"corpus.jsonl {stats['corpus.jsonl']['bytes']} bytes, "
          f"sha256 {stats['corpus.jsonl']['sha256']}")
    print(f"wrote {args.out} in {gen_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
