"""The app's one class palette: the colour (and, past the palette's size,
the marker symbol) each class is drawn with, and how unlabeled points and
the next batch are drawn beside them.

Classes use Paul Tol's "muted" qualitative scheme (https://personal.sron.nl/
~pault/, "Colour schemes and templates", fig. 4): nine colours chosen to stay
distinct for the common forms of colour blindness (deuteranopia,
protanopia, tritanopia) and on screen and paper alike. Chosen over
Okabe-Ito (eight, and two of them, black and yellow, are lost against the
next-batch ring and a white page) and over Tol's "bright" (six plus a grey,
and grey is what unlabeled means here): nine medium-light colours, none near
white, none grey, none black. Tol reserves his pale grey for missing data,
which is what an unlabeled point is, so unlabeled is grey and hollow, never a
class colour.

A class keeps its colour by its place in the project's class order (the
number keys' order), not by which classes happen to have labels, so a
colour means the same class on every page and every round. Past nine
classes the colours repeat with the next marker symbol (the 10th class is
the 1st colour as a diamond).
"""

from __future__ import annotations

# Tol's "muted", in his recommended order.
MUTED = ("#332288",  # indigo
         "#88CCEE",  # cyan
         "#44AA99",  # teal
         "#117733",  # green
         "#999933",  # olive
         "#DDCC77",  # sand
         "#CC6677",  # rose
         "#882255",  # wine
         "#AA4499")  # purple
# One per pass through the colours; all drawn by Plotly's WebGL scatter.
SYMBOLS = ("circle", "diamond", "square", "triangle-up", "cross", "x", "star", "hexagon")

# A labeled point: opaque enough that the palest colour (sand) reads on white,
# with a thin dark outline so it also reads over other points.
LABELED_MARKER = {"size": 7, "opacity": 0.95, "line": {"color": "rgba(0,0,0,0.45)", "width": 0.5}}
# "Colour by Labeled": every labeled point one colour (the palette's first).
LABELED_COLOR = MUTED[0]

# Unlabeled: small hollow grey circles, fainter, drawn first (underneath),
# so the labeled points and the classes stand out; a shape no class uses.
UNLABELED_COLOR = "#8C8C8C"
UNLABELED_SYMBOL = "circle-open"
UNLABELED_MARKER = {"size": 5, "opacity": 0.55, "symbol": UNLABELED_SYMBOL, "color": UNLABELED_COLOR}

# The next batch (queued, unlabeled): a black ring drawn around the point; no
# palette colour is black, so a ring never reads as a class.
NEXT_BATCH_COLOR = "#000000"
NEXT_BATCH_MARKER = {"size": 11, "opacity": 1.0, "color": "rgba(0,0,0,0)",
                     "line": {"color": NEXT_BATCH_COLOR, "width": 1.5}}


# Explore's WebGL map draws every point as a dot (no marker symbols), so past
# nine classes it takes Tol's "vibrant" colours rather than repeating one.
VIBRANT = ("#EE7733", "#0077BB", "#CC3311", "#33BBEE", "#EE3377", "#009988")


def map_colors(classes: list[str]) -> list[str]:
    """One colour per class, in the classes' order, for the map that cannot
    vary symbols: the first nine as `class_colors`, then Tol's vibrant
    ones (past fifteen classes colours repeat)."""
    extra = MUTED + VIBRANT
    return [extra[i % len(extra)] for i in range(len(classes))]


def class_colors(classes: list[str]) -> dict[str, str]:
    """{class: hex colour} by the classes' order (the project's key order)."""
    return {name: MUTED[i % len(MUTED)] for i, name in enumerate(classes)}


def class_symbols(classes: list[str]) -> dict[str, str]:
    """{class: Plotly marker symbol}: circles for the first nine, then the
    next symbol each time the colours start over."""
    return {name: SYMBOLS[(i // len(MUTED)) % len(SYMBOLS)] for i, name in enumerate(classes)}


def class_marker(classes: list[str], name: str) -> dict:
    """The Plotly marker of one class of `classes` (colour, symbol, size,
    opacity, outline)."""
    return {**LABELED_MARKER, "color": class_colors(classes)[name], "symbol": class_symbols(classes)[name]}
