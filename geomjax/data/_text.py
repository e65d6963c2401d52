"""Sentence templates whose part-of-speech tags are known by construction.

Every sentence is a template of Penn Treebank tags filled from tagged word lists, so word, POS and
character labels hold without a tagger. Content words (NN, VBD, JJ, RB) come from a vocabulary
whose size sets the number of word classes; each slot draws from a per-tag deck that is reshuffled
when used up, so every content word occurs about equally often and with many speakers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CONTENT_WORDS", "FUNCTION_WORDS", "TEMPLATES", "vocabulary", "SentenceMaker"]

# Content words, ordered so that any prefix of each list is a usable smaller vocabulary.
CONTENT_WORDS: dict[str, tuple[str, ...]] = {
    "NN": (
        "table", "window", "garden", "letter", "basket", "river", "candle", "pencil", "bottle",
        "doctor", "kitten", "carpet", "ladder", "mirror", "rabbit", "button", "jacket", "wagon",
        "tiger", "pocket", "lemon", "hammer", "blanket", "castle", "dragon", "engine", "forest",
        "guitar", "island", "kettle", "monkey", "needle", "orange", "parrot", "rocket", "saddle",
        "tunnel", "violin", "wallet", "zebra", "anchor", "banner", "camera", "dinner", "feather",
        "helmet", "jungle", "lantern", "magnet", "napkin", "onion", "pepper", "pillow", "puppet",
        "robot", "sandal", "tomato", "turtle", "valley", "walnut", "cabin", "desert", "finger",
        "hotel", "market", "medal", "motor", "paddle", "planet", "poster", "sugar", "ticket",
        "towel", "velvet", "whistle", "cookie", "spider", "coffee", "bucket", "cotton",
    ),
    "VBD": (
        "moved", "found", "painted", "carried", "opened", "pushed", "watched", "cleaned", "dropped",
        "lifted", "covered", "followed", "touched", "washed", "counted", "folded", "grabbed",
        "hugged", "kicked", "locked", "mended", "packed", "pulled", "rolled", "sorted", "tapped",
        "turned", "visited", "wrapped", "chased", "dragged", "fixed", "hid", "held", "kept",
        "loaded", "marked", "noticed", "ordered", "passed", "raised", "saved", "shook", "stirred",
        "tested", "traded", "warmed", "weighed", "wiped", "admired",
    ),
    "JJ": (
        "green", "old", "small", "heavy", "bright", "quiet", "yellow", "round", "soft", "broken",
        "empty", "golden", "happy", "little", "purple", "silver", "simple", "sticky", "tiny",
        "wooden", "black", "clever", "dusty", "famous", "gentle", "hollow", "lovely", "narrow",
        "shiny", "sleepy", "smooth", "strange", "tall", "warm", "wet", "windy", "young", "rusty",
        "noisy", "frozen",
    ),
    "RB": (
        "slowly", "quickly", "today", "again", "gently", "loudly", "early", "later", "carefully",
        "happily", "badly", "softly", "often", "never", "safely", "yesterday", "tomorrow",
        "suddenly", "rarely", "quietly", "proudly", "calmly", "eagerly", "firmly", "neatly",
        "openly", "politely", "rapidly", "sadly", "warmly",
    ),
}

FUNCTION_WORDS: dict[str, tuple[str, ...]] = {
    "DT": ("the", "a", "this", "that", "every"),
    "PRP": ("she", "he", "we", "they"),
    "IN": ("near", "under", "behind", "beside", "inside"),
    "CC": ("and",),
}

#: Sentence templates as Penn tag sequences (5-9 words, about 2-3.5 s of speech).
TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("DT", "JJ", "NN", "VBD", "DT", "NN", "RB"),
    ("PRP", "VBD", "DT", "JJ", "NN", "IN", "DT", "NN"),
    ("DT", "NN", "VBD", "DT", "JJ", "NN"),
    ("DT", "NN", "IN", "DT", "NN", "VBD", "RB"),
    ("PRP", "RB", "VBD", "DT", "JJ", "NN"),
    ("DT", "JJ", "NN", "CC", "DT", "NN", "VBD", "DT", "NN"),
)

#: Vocabulary share per tag (the rest of a size's vocabulary budget goes to nouns).
_SHARES = {"VBD": 0.25, "JJ": 0.2, "RB": 0.15}


def vocabulary(n_content_words: int) -> dict[str, tuple[str, ...]]:
    """The first ``n_content_words`` content words split over the tags (nouns get the rest)."""
    total = sum(len(v) for v in CONTENT_WORDS.values())
    if not 8 <= n_content_words <= total:
        raise ValueError(
            f"`n_content_words` must be between 8 and {total}; got {n_content_words}."
        )
    out = {}
    for tag, share in _SHARES.items():
        out[tag] = CONTENT_WORDS[tag][: max(2, min(len(CONTENT_WORDS[tag]),
                                                     round(share * n_content_words)))]
    n_nn = n_content_words - sum(len(v) for v in out.values())
    out["NN"] = CONTENT_WORDS["NN"][:n_nn]
    return {"NN": out["NN"], "VBD": out["VBD"], "JJ": out["JJ"], "RB": out["RB"]}


class SentenceMaker:
    """Seeded sentence generator with balanced content-word counts.

    Args:
        rng: a NumPy ``Generator`` (the corpus seed's stream).
        n_content_words: vocabulary size for NN/VBD/JJ/RB.
    """

    def __init__(self, rng: np.random.Generator, n_content_words: int):
        self.rng = rng
        self.words = {**vocabulary(n_content_words), **FUNCTION_WORDS}
        self._decks: dict[str, list[str]] = {t: [] for t in self.words}

    def _draw(self, tag: str) -> str:
        deck = self._decks[tag]
        if not deck:
            deck.extend(self.words[tag][i] for i in self.rng.permutation(len(self.words[tag])))
        return deck.pop()

    def sentence(self) -> tuple[list[str], list[str]]:
        """One sentence as parallel lists of words and POS tags."""
        tags = list(TEMPLATES[int(self.rng.integers(len(TEMPLATES)))])
        words = [self._draw(t) for t in tags]
        for i, (w, t) in enumerate(zip(words, tags)):  # "a" before a vowel-initial word
            if t == "DT" and w == "a" and i + 1 < len(words) and words[i + 1][0] in "aeiou":
                words[i] = "the"
        return words, tags
