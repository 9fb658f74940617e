"""PopQA (Mallen et al., ACL 2023): loader, the 16 question templates, scoring and prompts.

The original file is one TSV (`test.tsv`, older copies `popQA.tsv`) with the columns listed in
`COLUMNS`; `possible_answers` is a JSON-encoded list of strings. Every row is validated, and the
first bad one is reported as a one-line `ConfigError` naming the file, the line and the column.

Scoring is the original rule (`AlexTMallen/adaptive-retrieval`): the prediction is the first
line of a greedy generation of at most 15 tokens, and it is correct when some gold answer g is
a substring of it as g, g.lower() or g.capitalize(). The prompt is ``Q: {question} A:`` after
15 demonstrations from the other relation types.

Beyond PopQA's 16 relation types the loader accepts `EXTRA_TEMPLATES`, our own relations for
facts files written from other offline sources (`factlab.tasks.real_facts`): continent,
subregion, demonym and shared border (numbered by their Wikidata property), and prop_id 0 for a
question stored verbatim (fanoutqa's single-hop sub-questions, which follow no template).
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from factlab.config import ConfigError

#: Every column of the original TSV, in order. Extra columns (a pandas index) are ignored.
COLUMNS = ("id", "subj", "prop", "obj", "subj_id", "prop_id", "obj_id", "s_aliases",
           "o_aliases", "s_uri", "o_uri", "s_wiki_title", "o_wiki_title", "s_pop", "o_pop",
           "question", "possible_answers")
#: The columns the loader needs; the others may be absent from hand-made files.
REQUIRED = ("id", "subj", "prop", "obj", "prop_id", "s_pop", "question", "possible_answers")

#: The 16 question templates by Wikidata `prop_id` (from the PopQA evaluation code).
TEMPLATES: dict[int, str] = {
    22: "What is {}'s occupation?", 218: "In what city was {} born?",
    91: "What genre is {}?", 257: "Who is the father of {}?",
    182: "In what country is {}?", 164: "Who was the producer of {}?",
    526: "Who was the director of {}?", 97: "What is {} the capital of?",
    533: "Who was the screenwriter for {}?", 639: "Who was the composer of {}?",
    472: "What color is {}?", 106: "What is the religion of {}?",
    560: "What sport does {} play?", 484: "Who is the author of {}?",
    292: "Who is the mother of {}?", 422: "What is the capital of {}?",
}
#: Our relations beyond PopQA's (Wikidata property numbers); 0 = the question is verbatim.
EXTRA_TEMPLATES: dict[int, str] = {
    30: "On what continent is {}?", 361: "In what part of the world is {}?",
    1549: "What is the demonym of {}?", 47: "Which country borders {}?", 0: "{}",
}
#: Every relation the loader accepts.
ALL_TEMPLATES: dict[int, str] = {**TEMPLATES, **EXTRA_TEMPLATES}
#: The `prop` name PopQA uses for each `prop_id`.
PROP_NAMES: dict[int, str] = {
    22: "occupation", 218: "place of birth", 91: "genre", 257: "father", 182: "country",
    164: "producer", 526: "director", 97: "capital of", 533: "screenwriter", 639: "composer",
    472: "color", 106: "religion", 560: "sport", 484: "author", 292: "mother", 422: "capital",
    30: "continent", 361: "subregion", 1549: "demonym", 47: "shares border with",
    0: "free-form",
}


@dataclasses.dataclass(frozen=True)
class PopQARow:
    """One PopQA question: subject, relation, object, popularity and the gold answers."""

    id: str
    subj: str
    prop: str
    prop_id: int
    obj: str
    s_pop: float
    question: str
    answers: tuple[str, ...]


def parse_answers(raw: str) -> list[str]:
    """`possible_answers` -> list of strings (JSON first, then a Python literal)."""
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ValueError("is not a JSON list of strings") from None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError("is not a non-empty JSON list of strings")
    return value


def load_popqa(path: str | Path, key: str = "data") -> list[PopQARow]:
    """Read and validate a PopQA TSV; any problem is one `ConfigError` line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}: no such file {str(path)!r}")
    name = path.name
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise ConfigError(f"{key}: {name} is empty; expected a PopQA TSV with a header row")
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ConfigError(f"{key}: {name} lacks the PopQA column(s) {', '.join(missing)}")
        col = {c: header.index(c) for c in REQUIRED}
        rows: list[PopQARow] = []
        for line, fields in enumerate(reader, start=2):
            if not fields or all(not f.strip() for f in fields):
                continue
            rows.append(_parse_row(fields, col, len(header), f"{key}: {name} line {line}"))
    if not rows:
        raise ConfigError(f"{key}: {name} has a header but no rows")
    return rows


def _parse_row(fields: list[str], col: dict[str, int], width: int, where: str) -> PopQARow:
    if len(fields) < width:
        raise ConfigError(f"{where}: has {len(fields)} fields, the header has {width}")
    get = {c: fields[i].strip() for c, i in col.items()}
    for c in ("subj", "obj", "question"):
        if not get[c]:
            raise ConfigError(f"{where}: column {c} is empty")
    try:
        prop_id = int(float(get["prop_id"]))
    except ValueError:
        raise ConfigError(f"{where}: prop_id {get['prop_id']!r} is not an integer") from None
    if prop_id not in ALL_TEMPLATES:
        raise ConfigError(f"{where}: prop_id {prop_id} is not one of the 16 PopQA relations "
                          f"({', '.join(map(str, sorted(TEMPLATES)))}) nor factlab's "
                          f"({', '.join(map(str, sorted(EXTRA_TEMPLATES)))})")
    try:
        s_pop = float(get["s_pop"])
    except ValueError:
        raise ConfigError(f"{where}: s_pop {get['s_pop']!r} is not a number") from None
    if not s_pop >= 0:
        raise ConfigError(f"{where}: s_pop must be >= 0, got {get['s_pop']!r}")
    try:
        answers = parse_answers(get["possible_answers"])
    except ValueError as err:
        shown = get["possible_answers"][:40]
        raise ConfigError(f"{where}: possible_answers {shown!r} {err}") from None
    return PopQARow(get["id"], get["subj"], get["prop"], prop_id, get["obj"], s_pop,
                    get["question"], tuple(answers))


def question_for(subj: str, prop_id: int) -> str:
    """The PopQA question for (subject, relation) from the 16 templates (or ours)."""
    return ALL_TEMPLATES[prop_id].format(subj)


def first_line(text: str) -> str:
    """The prediction: the generation's first non-empty line, stripped."""
    for line in text.strip().split("\n"):
        if line.strip():
            return line.strip()
    return ""


def is_correct(prediction: str, answers: Sequence[str]) -> bool:
    """The original PopQA rule: some g, g.lower() or g.capitalize() is a substring."""
    return any(g in prediction or g.lower() in prediction or g.capitalize() in prediction
               for g in answers)


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def is_correct_normalised(prediction: str, answers: Sequence[str]) -> bool:
    """A lenient variant reported alongside: lower-case, punctuation-free substring match."""
    pred = _normalise(prediction)
    return any(_normalise(g) and _normalise(g) in pred for g in answers)


def qa_prompt(question: str) -> str:
    """The zero-shot Q&A prompt ``Q: {question} A:``."""
    return f"Q: {question} A:"


def few_shot_prompt(target: PopQARow, pool: Sequence[PopQARow], k: int = 15,
                    gen: torch.Generator | None = None) -> str:
    """`k` demonstrations from relation types other than the target's, then its question."""
    others = [r for r in pool if r.prop_id != target.prop_id]
    if gen is None:
        picked = others[:k]
    else:
        order = torch.randperm(len(others), generator=gen)[:k].tolist()
        picked = [others[i] for i in order]
    demos = "".join(f"Q: {r.question} A: {r.obj}\n" for r in picked)
    return demos + qa_prompt(target.question)


def fixture_path() -> Path:
    """The PopQA-format fixture shipped with factlab (synthetic rows, real schema)."""
    return Path(str(resources.files("factlab") / "data" / "popqa_fixture.tsv"))
