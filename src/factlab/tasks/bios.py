"""bioS-style synthetic biographies and their Q&A (Physics of LMs 3.1; specs §8.1).

Each person has a unique full name (first, middle, last) and six independent uniform
attributes; the employer's city is its headquarters. An entry is six sentences, one per
attribute, each from that attribute's template pool; the name opens the first sentence and the
rest use the pronoun. Augmentations combine with "+":

    single        one entry, fixed sentence order
    multiM        M entries, templates resampled for each (multi2, multi5)
    permute       every entry's sentences shuffled (name stays in the first sentence)
    permuteP      P shuffled copies of the same six sentences (permute1, permute2, permute5)
    fullname      the full name replaces every pronoun

Names and pools are our own (synthetic syllable words); only the pool sizes matter. Text is
tokenised at the word/punctuation level; every sampler draws from an explicit generator.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import torch

from factlab.config import require

ATTRIBUTES = ("birth_date", "birth_city", "university", "major", "employer", "company_city")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
STATES = ("NY", "CA", "TX", "WA", "IL", "MA", "FL", "OH", "GA", "CO", "AZ", "OR")
PRONOUNS = ("he", "she")  # the paper also uses "they"; two keep the templates grammatical

#: Core sentence per attribute; {P} is the person (name or pronoun), {V} the value.
CORES: dict[str, tuple[str, ...]] = {
    "birth_date": ("{P} was born on {V}.", "{P} came into this world on {V}.",
                   "{P} has {V} as the birth date.", "{P} celebrates a birthday on {V}.",
                   "the birth of {P} took place on {V}.", "{P} first saw daylight on {V}."),
    "birth_city": ("{P} was born in {V}.", "{P} spent the early years in {V}.",
                   "{P} hails from {V}.", "the birthplace of {P} is {V}.",
                   "{P} grew up in {V}.", "{P} has roots in {V}."),
    "university": ("{P} studied at {V}.", "{P} graduated from {V}.",
                   "{P} received an education at {V}.", "{P} attended {V}.",
                   "{P} earned a degree at {V}.", "{P} was a student at {V}."),
    "major": ("{P} majored in {V}.", "{P} focused on {V}.", "{P} specialised in {V}.",
              "{P} completed a degree in {V}.", "{P} took {V} as a field of study.",
              "{P} devoted the studies to {V}."),
    "employer": ("{P} worked for {V}.", "{P} was employed by {V}.",
                 "{P} had a career at {V}.", "{P} took a job at {V}.",
                 "{P} joined {V}.", "{P} was on the staff of {V}."),
    "company_city": ("{P} worked in {V}.", "{P} had an office in {V}.",
                     "{P} commuted to work in {V}.", "{P} was based in {V}.",
                     "{P} earned a living in {V}.", "the workplace of {P} was in {V}."),
}
OPENERS = ("", "Notably, ", "In addition, ", "As records show, ", "It is known that ",
           "Moreover, ", "According to friends, ", "Interestingly, ")
QUESTIONS = {
    "birth_date": "What is the birth date of {N}?", "birth_city": "Which city was {N} born in?",
    "university": "Which university did {N} study at?", "major": "What major did {N} study?",
    "employer": "Which company did {N} work for?", "company_city": "Where did {N} work?",
}
BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words and punctuation marks."""
    return _TOKEN.findall(text)


@dataclasses.dataclass
class BiosConfig:
    """Population and pool sizes (paper: 100k people, pools 400/400/1000, 200/300/100/263)."""

    n_people: int = 10000
    n_first: int = 400
    n_middle: int = 400
    n_last: int = 1000
    n_cities: int = 200
    n_universities: int = 300
    n_majors: int = 100
    n_employers: int = 263
    n_templates: int = 48  # per attribute (paper 46-52); at most 6 x 8 = 48 here
    n_years: int = 200  # birth years 1900 .. 1900 + n_years - 1 (paper: 1900-2099)
    ny_share: float = 0.137  # share of employers headquartered in the first city

    def check(self) -> None:
        for key in ("n_people", "n_first", "n_middle", "n_last", "n_cities", "n_universities",
                    "n_majors", "n_employers"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(self.n_people <= self.n_first * self.n_middle * self.n_last, "n_people",
                "exceeds the number of distinct full names")
        limit = len(OPENERS) * len(CORES["birth_date"])
        require(1 <= self.n_templates <= limit, "n_templates", f"must be in 1..{limit}")
        require(0 <= self.ny_share <= 1, "ny_share", "must be in [0, 1]")
        require(1 <= self.n_years <= 1000, "n_years", "must be in 1..1000")


@dataclasses.dataclass(frozen=True)
class Augment:
    """A parsed augmentation: entries = multi x copies, shuffled or not, names or pronouns."""

    multi: int = 1
    copies: int = 1  # permuteP: P shuffled copies of the same sentences
    shuffle: bool = False
    fullname: bool = False


def parse_augment(spec: str) -> Augment:
    """'multi5+permute+fullname' -> Augment(5, 1, True, True); ValueError on unknown parts."""
    multi, copies, shuffle, fullname = 1, 1, False, False
    for part in spec.split("+"):
        part = part.strip()
        if part == "single":
            continue
        if part == "fullname":
            fullname = True
        elif (m := re.fullmatch(r"multi(\d+)", part)) and int(m.group(1)) >= 1:
            multi = int(m.group(1))
        elif (m := re.fullmatch(r"permute(\d*)", part)):
            shuffle, copies = True, int(m.group(1) or 1)
            if copies < 1:
                raise ValueError(f"bad augmentation {part!r}")
        else:
            raise ValueError(f"unknown augmentation {part!r}; use single, multiM, permute[P], "
                             "fullname joined by +")
    return Augment(multi, copies, shuffle, fullname)


def _words(n: int, gen: torch.Generator, taken: set[str]) -> list[str]:
    """n unique synthetic capitalised words, disjoint from `taken`."""
    syl = ["ba", "ke", "li", "mo", "nu", "ra", "se", "ti", "vo", "za", "dor", "fen", "gal",
           "hun", "jas", "kel", "mar", "nis", "por", "quin", "rus", "sol", "tam", "ver", "wyn"]
    out: list[str] = []
    while len(out) < n:
        k = int(torch.randint(2, 4, (1,), generator=gen))
        idx = torch.randint(0, len(syl), (k,), generator=gen).tolist()
        word = "".join(syl[i] for i in idx).capitalize()
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


class Bios:
    """A population of synthetic people with their attribute values and template pools."""

    def __init__(self, cfg: BiosConfig, gen: torch.Generator):
        cfg.check()
        self.cfg = cfg
        taken: set[str] = set()
        first, middle, last = (_words(n, gen, taken) for n in
                               (cfg.n_first, cfg.n_middle, cfg.n_last))
        cities = [f"{w}, {STATES[i % len(STATES)]}"
                  for i, w in enumerate(_words(cfg.n_cities, gen, taken))]
        self.pools: dict[str, list[str]] = {
            "birth_city": cities,
            "university": [f"{w} University" for w in _words(cfg.n_universities, gen, taken)],
            "major": [f"{w} Studies" for w in _words(cfg.n_majors, gen, taken)],
            "employer": [f"{w} Corp" for w in _words(cfg.n_employers, gen, taken)],
        }
        # headquarters: a share ny_share in the first city, the rest uniform
        n_e = cfg.n_employers
        in_first = torch.rand(n_e, generator=gen) < cfg.ny_share
        self.hq = torch.where(in_first, 0, torch.randint(0, cfg.n_cities, (n_e,), generator=gen))
        # unique full names by rejection (draw extra, drop duplicates, keep the first N)
        names: list[str] = []
        seen: set[tuple[int, int, int]] = set()
        while len(names) < cfg.n_people:
            draw = torch.stack([torch.randint(0, n, (2 * cfg.n_people,), generator=gen)
                                for n in (cfg.n_first, cfg.n_middle, cfg.n_last)], 1).tolist()
            for f, m, l in draw:
                if (f, m, l) not in seen and len(names) < cfg.n_people:
                    seen.add((f, m, l))
                    names.append(f"{first[f]} {middle[m]} {last[l]}")
        self.names = names
        N = cfg.n_people
        self.pronoun = torch.randint(0, len(PRONOUNS), (N,), generator=gen)
        year = torch.randint(1900, 1900 + cfg.n_years, (N,), generator=gen)
        month = torch.randint(0, 12, (N,), generator=gen)
        day = torch.randint(1, 29, (N,), generator=gen)
        self.dates = [f"{MONTHS[m]} {d}, {y}" for y, m, d in
                      zip(year.tolist(), month.tolist(), day.tolist())]
        self.attr = {k: torch.randint(0, len(v), (N,), generator=gen) for k, v in self.pools.items()}
        # the plain cores first, then each opener in turn: small pools stay short
        product = [(o, c) for o in range(len(OPENERS)) for c in range(len(CORES["birth_date"]))]
        self.templates = {a: [OPENERS[o] + CORES[a][c] for o, c in product[:cfg.n_templates]]
                          for a in ATTRIBUTES}
        self.vocab = self._build_vocab()
        self.stoi = {t: i for i, t in enumerate(self.vocab)}

    def value(self, person: int, attribute: str) -> str:
        """The attribute's value for a person, as text."""
        if attribute == "birth_date":
            return self.dates[person]
        if attribute == "company_city":
            return self.pools["birth_city"][int(self.hq[self.attr["employer"][person]])]
        return self.pools[attribute][int(self.attr[attribute][person])]

    def _build_vocab(self) -> list[str]:
        words = {BOS, EOS, PAD, "Answer", ":"}
        years = (str(x) for x in range(1900, 1900 + self.cfg.n_years))
        texts = [*self.names, *MONTHS, *years,
                 *(str(x) for x in range(1, 29)), *(t for v in self.pools.values() for t in v),
                 *(t for v in self.templates.values() for t in v), *QUESTIONS.values(),
                 *(t[0].upper() + t[1:] for v in self.templates.values() for t in v),
                 *PRONOUNS, *(p.capitalize() for p in PRONOUNS)]
        for text in texts:
            words.update(tokenize(text))
        return sorted(words)

    def encode(self, text: str) -> list[int]:
        """Token ids of a text."""
        return [self.stoi[t] for t in tokenize(text)]

    def sentence(self, person: int, attribute: str, template: int, use_name: bool) -> str:
        """One sentence about a person's attribute, with the name or the pronoun."""
        ref = self.names[person] if use_name else PRONOUNS[int(self.pronoun[person])]
        text = self.templates[attribute][template].format(P=ref, V=self.value(person, attribute))
        return text[0].upper() + text[1:]

    def entries(self, people: Sequence[int], augment: str | Augment,
                gen: torch.Generator) -> list[list[int]]:
        """Token ids (BOS ... EOS) of every entry of every listed person, in person order."""
        aug = parse_augment(augment) if isinstance(augment, str) else augment
        n_t = self.cfg.n_templates
        out: list[list[int]] = []
        for person in people:
            for _ in range(aug.multi):
                templates = torch.randint(0, n_t, (len(ATTRIBUTES),), generator=gen).tolist()
                for _ in range(aug.copies):
                    order = (torch.randperm(len(ATTRIBUTES), generator=gen).tolist()
                             if aug.shuffle else list(range(len(ATTRIBUTES))))
                    text = " ".join(self.sentence(person, ATTRIBUTES[a], templates[a],
                                                  use_name=aug.fullname or pos == 0)
                                    for pos, a in enumerate(order))
                    out.append([self.stoi[BOS], *self.encode(text), self.stoi[EOS]])
        return out

    def qa(self, people: Sequence[int]) -> list[tuple[list[int], list[int], int]]:
        """(prompt ids ending in "Answer :", answer ids + EOS, attribute index) per question."""
        out = []
        for person in people:
            for a_idx, a in enumerate(ATTRIBUTES):
                prompt = QUESTIONS[a].format(N=self.names[person]) + " Answer:"
                out.append(([self.stoi[BOS], *self.encode(prompt)],
                            [*self.encode(self.value(person, a)), self.stoi[EOS]], a_idx))
        return out


def pad_batch(seqs: Sequence[Sequence[int]], labels: Sequence[Sequence[int]] | None,
              pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to (inputs [n, T], next-token targets [n, T]) with -100 where no loss.

    `labels` gives per-sequence targets aligned with the sequence (-100 = no loss); by
    default every next token is a target.
    """
    width = max(len(s) for s in seqs)
    x = torch.full((len(seqs), width - 1), pad, dtype=torch.long)
    y = torch.full((len(seqs), width - 1), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        lab = list(s) if labels is None else list(labels[i])
        x[i, :len(s) - 1] = torch.tensor(s[:-1])
        y[i, :len(s) - 1] = torch.tensor(lab[1:])
    return x, y


def qa_batch(items: Sequence[tuple[list[int], list[int], int]], pad: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q&A items -> (inputs, targets on the answer only, attribute index per item)."""
    seqs = [p + a for p, a, _ in items]
    labels = [[-100] * len(p) + a for p, a, _ in items]
    x, y = pad_batch(seqs, labels, pad)
    return x, y, torch.tensor([k for _, _, k in items])
