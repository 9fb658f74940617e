"""Real facts, offline: PopQA-schema TSVs from the countryinfo and fanoutqa packages, and
fictional subjects that reuse real relations and real answer values.

countryinfo (MIT) ships one JSON file per country. Each country with the field gives rows for
capital (PopQA 422), capital of (PopQA 97, asked of the capital), continent (30), subregion
(361), demonym (1549) and shared border (47, every neighbour is a gold answer). The country's
population is `s_pop` (PopQA uses monthly page views; population is our stand-in for how often
a country is written about), and its alternative spellings of four or more characters are the
aliases: shorter ones (FR, FRA) would match almost any text under PopQA's substring rule.

fanoutqa (code MIT, data CC BY-SA 4.0) ships the dev split of FanOutQA with its decomposition
into single-hop Wikipedia sub-questions; every sub-question with a single string answer becomes
one verbatim row (prop_id 0, subject = the evidence page title, `s_pop` 0: the data has no
popularity).

Every written TSV gets a sidecar ``<file>.source.json`` with the package, version, licence and
row counts.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from factlab.config import ConfigError
from factlab.tasks.popqa import ALL_TEMPLATES, COLUMNS, PROP_NAMES, PopQARow

COUNTRY_RELATIONS = (422, 97, 30, 361, 1549, 47)
SOURCES = ("countryinfo", "fanoutqa")
LICENCES = {"countryinfo": "MIT (package countryinfo; data compiled from public sources)",
            "fanoutqa": "data CC BY-SA 4.0, code MIT (package fanoutqa; FanOutQA, Zhu et al. "
                        "2024, from English Wikipedia)"}


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"facts: the {name} package is not installed; pip install "
                          f"'factlab[real]' (or pip install {name})")
    return Path(list(spec.submodule_search_locations)[0])


def _aliases(names: Iterable[str], primary: str) -> list[str]:
    """Distinct spellings of >= 4 characters, primary first (short codes match too much)."""
    out = [primary]
    for n in names:
        n = str(n).strip()
        if len(n) >= 4 and n not in out and not n.isupper():
            out.append(n)
    return out


def _row(i: int, subj: str, prop_id: int, obj: str, answers: Sequence[str], s_pop: float,
         question: str | None = None, s_aliases: Sequence[str] = (), o_pop: float = 0.0,
         source: str = "") -> dict[str, Any]:
    q = question if question is not None else ALL_TEMPLATES[prop_id].format(subj)
    return {"id": f"{source}-{i}", "subj": subj, "prop": PROP_NAMES[prop_id], "obj": obj,
            "subj_id": "", "prop_id": prop_id, "obj_id": "",
            "s_aliases": json.dumps(list(s_aliases)), "o_aliases": json.dumps(list(answers[1:])),
            "s_uri": "", "o_uri": "", "s_wiki_title": subj, "o_wiki_title": obj,
            "s_pop": s_pop, "o_pop": o_pop, "question": q,
            "possible_answers": json.dumps(list(answers))}


def _text(value: Any) -> str:
    """A field as stripped text ('' for none; a list gives its first item, as Vatican's capital)."""
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value or "").strip()


def load_countries() -> list[dict[str, Any]]:
    """Every country of the countryinfo package (sorted by file), text fields normalised."""
    root = _package_dir("countryinfo") / "data"
    files = sorted(root.glob("*.json"))
    if not files:
        raise ConfigError(f"facts: no country files under {root}")
    out = []
    for f in files:
        c = json.loads(f.read_text(encoding="utf-8"))
        for key in ("name", "capital", "region", "subregion", "demonym"):
            c[key] = _text(c.get(key))
        out.append(c)
    return out


def countryinfo_rows(relations: Sequence[int] = COUNTRY_RELATIONS) -> list[dict[str, Any]]:
    """PopQA-schema rows (dicts over `COLUMNS`) for the countries' facts, by relation."""
    countries = [c for c in load_countries() if c.get("name")]
    by_code = {c.get("ISO", {}).get("alpha3"): c["name"] for c in countries}
    rows: list[dict[str, Any]] = []
    for c in countries:
        name, pop = c["name"], float(c.get("population") or 0)
        alias = _aliases(c.get("altSpellings", []), name)
        capital = c["capital"]
        facts: dict[int, tuple[str, str, list[str]]] = {}
        if capital:
            facts[422] = (name, capital, [capital])
            facts[97] = (capital, name, alias)
        region = c["region"]
        if region:
            facts[30] = (name, region, [region] + (["America"] if region == "Americas" else []))
        if c["subregion"]:
            facts[361] = (name, c["subregion"], [c["subregion"]])
        if c["demonym"]:
            facts[1549] = (name, c["demonym"], [c["demonym"]])
        neighbours = [by_code[b] for b in c.get("borders") or [] if b in by_code]
        if neighbours:
            facts[47] = (name, neighbours[0], neighbours)
        for prop in relations:
            if prop in facts:
                subj, obj, answers = facts[prop]
                rows.append(_row(len(rows), subj, prop, obj, answers, pop,
                                 s_aliases=alias if subj == name else [subj],
                                 o_pop=pop if prop == 97 else 0.0, source="countryinfo"))
    return rows


def fanoutqa_rows() -> list[dict[str, Any]]:
    """The answered single-hop sub-questions of FanOutQA's dev split, one verbatim row each."""
    path = _package_dir("fanoutqa") / "data" / "fanout-final-dev.json"
    if not path.is_file():
        raise ConfigError(f"facts: fanoutqa has no {path.name}")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()

    def walk(items: list[dict[str, Any]]) -> None:
        for q in items:
            walk(q.get("decomposition") or [])
            ans, text = q.get("answer"), " ".join(str(q.get("question", "")).split())
            if q.get("decomposition") or not isinstance(ans, str) or not ans.strip():
                continue
            if not text or text in seen:
                continue
            seen.add(text)
            title = (q.get("evidence") or {}).get("title") or text
            rows.append(_row(len(rows), title, 0, ans.strip(), [ans.strip()], 0.0,
                             question=text, source="fanoutqa"))

    walk(json.loads(path.read_text(encoding="utf-8")))
    return rows


def write_facts(rows: Sequence[dict[str, Any]], out: str | Path, source: str) -> Path:
    """Write `rows` as a PopQA TSV at `out` and its licence/source sidecar beside it."""
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([_clean(r[c]) for c in COLUMNS])
    try:
        version = importlib.metadata.version(source)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    counts = Counter(PROP_NAMES[int(r["prop_id"])] for r in rows)
    sidecar = {"source": source, "package": f"{source}=={version}", "licence": LICENCES[source],
               "n_rows": len(rows), "rows_per_relation": dict(sorted(counts.items())),
               "s_pop": "country population" if source == "countryinfo" else "none (0)",
               "schema": "PopQA (Mallen et al. 2023, arXiv 2212.10511) columns"}
    out.with_name(out.name + ".source.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return out


def as_popqa(rows: Sequence[dict[str, Any]]) -> list[PopQARow]:
    """The loader's `PopQARow`s of written-style dict rows (for facts made in memory)."""
    return [PopQARow(str(r["id"]), r["subj"], r["prop"], int(r["prop_id"]), r["obj"],
                     float(r["s_pop"]), r["question"], tuple(json.loads(r["possible_answers"])))
            for r in rows]


def _clean(value: Any) -> str:
    return " ".join(str(value).split())  # no tabs or newlines inside a TSV field


def build_facts(source: str, out: str | Path) -> Path:
    """`factlab facts SOURCE --out F`: write the TSV of one offline source."""
    if source not in SOURCES:
        raise ConfigError(f"facts: unknown source {source!r}; available: {', '.join(SOURCES)}")
    rows = countryinfo_rows() if source == "countryinfo" else fanoutqa_rows()
    return write_facts(rows, out, source)


# ------------------------------------------------------------------- fictional subjects

_SYLLABLES = ("bar", "dor", "kel", "mun", "tav", "zor", "quil", "ren", "sol", "vek", "lam",
              "pra", "hum", "nis", "tor", "gal", "bri", "oss", "yen", "ful", "cam", "dre")
FICTIONAL_RELATIONS = (422, 30, 361)


def fictional_name(gen: torch.Generator, n_syllables: int = 3) -> str:
    """A pronounceable made-up name ("Zorkelmun")."""
    idx = torch.randint(len(_SYLLABLES), (n_syllables,), generator=gen).tolist()
    return "".join(_SYLLABLES[i] for i in idx).capitalize()


def fictional_rows(n_subjects: int, gen: torch.Generator,
                   relations: Sequence[int] = FICTIONAL_RELATIONS) -> list[dict[str, Any]]:
    """Made-up countries, each given the capital/continent/subregion of a different real one.

    Answers are real values so tokenisation and the answer prior are realistic; the subject is
    new, so no base model can know the fact (the bioS design, arXiv 2309.14316).
    """
    countries = [c for c in load_countries()
                 if c.get("capital") and c.get("region") and c.get("subregion")]
    if n_subjects > len(countries):
        raise ConfigError(f"n_subjects: at most {len(countries)} fictional countries "
                          f"(one per real one), got {n_subjects}")
    order = torch.randperm(len(countries), generator=gen).tolist()[:n_subjects]
    real = {c["name"].lower() for c in countries}
    names: list[str] = []
    while len(names) < n_subjects:
        n = fictional_name(gen)
        if n.lower() not in real and n not in names:
            names.append(n)
    rows: list[dict[str, Any]] = []
    for name, k in zip(names, order):
        c = countries[k]
        values = {422: c["capital"], 30: c["region"], 361: c["subregion"]}
        for prop in relations:
            obj = values[prop]
            answers = [obj] + (["America"] if obj == "Americas" else [])
            rows.append(_row(len(rows), name, prop, obj, answers, 0.0, s_aliases=[name],
                             source="fictional"))
    return rows
