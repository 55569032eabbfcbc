"""The IFEval instruction checks (Zhou et al. 2023, arXiv 2311.07911), one function per instruction id.

Each check takes the response and the instruction's kwargs (as in IFEval's input_data.jsonl) and returns True
when the response follows the instruction. The semantics follow the paper's reference implementation, quirks
included (for example `keywords:existence` treats a keyword as a regular expression, and an undetectable
language counts as followed), so that our scores are comparable with published IFEval figures. Text measures
and their offline deviations live in bestofn.judging.verifiers.text.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Callable

from bestofn.judging.verifiers.text import count_capital_words, count_sentences, count_words, detect_language

Check = Callable[..., bool]
RULES: dict[str, Check] = {}

RELATIONS = ("less than", "at least")


def rule(instruction_id: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        RULES[instruction_id] = fn
        return fn

    return register


def compare(value: int, relation: str, threshold: int) -> bool:
    """IFEval's two relations: 'less than' is strict, 'at least' is inclusive."""
    if relation == "less than":
        return value < threshold
    if relation == "at least":
        return value >= threshold
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")


# ---------------------------------------------------------------- keywords


@rule("keywords:existence")
def keywords_existence(text: str, *, keywords: list[str]) -> bool:
    return all(re.search(k, text, flags=re.IGNORECASE) for k in keywords)


@rule("keywords:frequency")
def keywords_frequency(text: str, *, keyword: str, frequency: int, relation: str) -> bool:
    return compare(len(re.findall(keyword, text, flags=re.IGNORECASE)), relation, frequency)


@rule("keywords:forbidden_words")
def keywords_forbidden_words(text: str, *, forbidden_words: list[str]) -> bool:
    return not any(re.search(r"\b" + w + r"\b", text, flags=re.IGNORECASE) for w in forbidden_words)


@rule("keywords:letter_frequency")
def keywords_letter_frequency(text: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    """Case-insensitive character count. IFEval's code swaps a `letter` that is not a-z (the data has "!" and
    "#") for a random letter; we count the character as given."""
    return compare(Counter(text.lower())[letter.lower()], let_relation, let_frequency)


# ---------------------------------------------------------------- language and case


@rule("language:response_language")
def response_language(text: str, *, language: str) -> bool:
    found = detect_language(text)
    return found is None or found == language  # undetectable counts as followed (as in IFEval)


@rule("change_case:english_lowercase")
def english_lowercase(text: str) -> bool:
    if not text.islower():
        return False
    found = detect_language(text)
    return found is None or found == "en"  # undetectable counts as followed (as in IFEval)


@rule("change_case:english_capital")
def english_capital(text: str) -> bool:
    if not text.isupper():
        return False
    found = detect_language(text)
    return found is None or found == "en"


@rule("change_case:capital_word_frequency")
def capital_word_frequency(text: str, *, capital_frequency: int, capital_relation: str) -> bool:
    return compare(count_capital_words(text), capital_relation, capital_frequency)


# ---------------------------------------------------------------- length


@rule("length_constraints:number_words")
def number_words(text: str, *, num_words: int, relation: str) -> bool:
    return compare(count_words(text), relation, num_words)


@rule("length_constraints:number_sentences")
def number_sentences(text: str, *, num_sentences: int, relation: str) -> bool:
    return compare(count_sentences(text), relation, num_sentences)


@rule("length_constraints:number_paragraphs")
def number_paragraphs(text: str, *, num_paragraphs: int) -> bool:
    """Paragraphs are separated by the markdown divider ***; an empty paragraph in the middle fails."""
    parts = re.split(r"\s?\*\*\*\s?", text)
    count = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if i in (0, len(parts) - 1):
                count -= 1
            else:
                return False
    return count == num_paragraphs


@rule("length_constraints:nth_paragraph_first_word")
def nth_paragraph_first_word(text: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    """Paragraphs are separated by a blank line (two newlines); the nth must start with `first_word`."""
    parts = re.split(r"\n\n", text)
    count = sum(1 for p in parts if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = parts[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for ch in word:
        if ch in {".", ",", "?", "!", "'", '"'}:
            break
        first += ch.lower()
    return count == num_paragraphs and first == first_word


# ---------------------------------------------------------------- content


@rule("detectable_content:number_placeholders")
def number_placeholders(text: str, *, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", text)) >= num_placeholders


@rule("detectable_content:postscript")
def postscript(text: str, *, postscript_marker: str) -> bool:
    if postscript_marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif postscript_marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + postscript_marker.lower() + r".*$"
    return bool(re.findall(pattern, text.lower(), flags=re.MULTILINE))


# ---------------------------------------------------------------- format


@rule("detectable_format:number_bullet_lists")
def number_bullet_lists(text: str, *, num_bullets: int) -> bool:
    """Exactly `num_bullets` markdown bullets (lines starting with `* ` or `-`)."""
    stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


@rule("detectable_format:constrained_response")
def constrained_response(text: str) -> bool:
    text = text.strip()
    return any(o in text for o in ("My answer is yes.", "My answer is no.", "My answer is maybe."))


@rule("detectable_format:number_highlighted_sections")
def number_highlighted_sections(text: str, *, num_highlights: int) -> bool:
    """Markdown highlights, *like this* or **like this** (IFEval's two regexes; a bold span counts once)."""
    single = [h for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", text) if h.removeprefix("**").removesuffix("**").strip()]
    return len(single) + len(double) >= num_highlights


@rule("detectable_format:multiple_sections")
def multiple_sections(text: str, *, section_spliter: str, num_sections: int) -> bool:
    """At least `num_sections` sections, each opened by the splitter and a number ("SECTION 1")."""
    return len(re.split(r"\s?" + section_spliter + r"\s?\d+\s?", text)) - 1 >= num_sections


@rule("detectable_format:json_format")
def json_format(text: str) -> bool:
    body = text.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        body = body.removeprefix(fence)
    body = body.removesuffix("```").strip()
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


@rule("detectable_format:title")
def title(text: str) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", text))


# ---------------------------------------------------------------- combination, start/end, punctuation


@rule("combination:two_responses")
def two_responses(text: str) -> bool:
    """Two different responses separated by six asterisks (******)."""
    parts = text.split("******")
    valid = []
    for i, part in enumerate(parts):
        if not part.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


@rule("combination:repeat_prompt")
def repeat_prompt(text: str, *, prompt_to_repeat: str) -> bool:
    return text.strip().lower().startswith(prompt_to_repeat.strip().lower())


@rule("startend:end_checker")
def end_checker(text: str, *, end_phrase: str) -> bool:
    return text.strip().strip('"').lower().endswith(end_phrase.strip().lower())


@rule("startend:quotation")
def quotation(text: str) -> bool:
    text = text.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


@rule("punctuation:no_comma")
def no_comma(text: str) -> bool:
    return "," not in text
