"""The prompt-injection guard shared by template and prompt-variable validation.

Tenant text (a template, a variable value) ends up inside the prompt the model reads, so
it must not carry instructions aimed at the model, markup aimed at the user's browser, or
links that smuggle the user's question out. No guard of this kind is complete:
``bench/injection_guard.py`` measures what it catches, what it misses and what it refuses
wrongly, on a held-out set written apart from the one it was tuned on. It is layered:

1. **Normalised views.** HTML entities and Unicode tag characters decoded, NFKC, accents
   and zero-width/format characters removed, lookalike letters mapped to Latin with the
   Unicode TR39 confusables table, case folded. The phrase rules then read several views:
   words only, punctuation inside words removed ("ig.nore"), letter-spacing re-joined,
   leetspeak, ROT13, other Caesar shifts and Atbash undone, reversed text and word order.
2. **Phrase rules**: instruction overrides, prompt-leak requests and mode switches in
   English, and override phrases in 18 other languages (verb and instruction noun close
   together, negation-aware).
3. **Role, markup and link rules**: role lines (``system:``, ``Human:``, a ``User:`` line
   that is not the template's own ``User: {query}``), ``[SYSTEM]`` headers, chat turn
   tokens, active HTML, markdown images, script/data URLs, links that embed a placeholder.
4. **Encodings**: base64 (also split by separators), base32, hex (glued, spaced,
   ``\\x``-escaped) and URL-encoding are decoded and checked again.
5. **Semantic layer** (:mod:`m11_tenant.intents`): each sentence is compared with labelled
   injection intents using the package's MiniLM embeddings, and the matched intent is
   named, for paraphrases no rule lists.

Config validation also runs the guard on the *composed* template (each variable's value in
its place), see :func:`m11_tenant.templates.validate_template`. Each rule is kept narrow
enough that ordinary tenant text passes: "never ignore the compliance team's instructions"
or "explain what a javascript: URL does" are fine.

Character policy (:func:`find_forbidden_character`) is separate and strict: control
characters other than ``\\n`` and ``\\t``, bidirectional controls, Unicode tag characters,
line/paragraph separators, unpaired surrogates and variation-selector runs are refused
outright, because they change what a reviewer sees without changing what the model reads.

Everything here is pure except that the semantic layer loads the embedding model once
(and logs an error if it cannot: the rule layers then stand alone); messages are built
only from the input.
"""

from __future__ import annotations

import base64
import binascii
import html
import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from m11_tenant.intents import IntentMatch, default_matcher, split_sentences
from m11_tenant.minilm import EmbeddingModelError

__all__ = ["Finding", "check_injection", "find_forbidden_character", "find_injection",
           "normalize", "semantic_candidate"]


@dataclass(frozen=True)
class Finding:
    """What the guard found: a rule id, a short reason, and what the author can do."""

    rule: str
    reason: str
    advice: str


def find_injection(text: str, *, template: bool = False) -> str | None:
    """Return a short reason if ``text`` looks like a prompt injection, else ``None``.

    ``template=True`` reads single-brace ``{name}`` as a live placeholder (see
    :func:`check_injection`).
    """
    finding = check_injection(text, template=template)
    return None if finding is None else finding.reason


# --------------------------------------------------------------------------- characters

_BIDI = frozenset(
    [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


def find_forbidden_character(text: str) -> str | None:
    """Return why ``text`` holds a character we refuse outright, or ``None``.

    Allowed controls are ``\\n`` and ``\\t`` only: a template or a variable may span lines,
    and role markers at line starts are caught by :func:`check_injection`.
    """
    vs_run = 0
    for pos, ch in enumerate(text):
        cp = ord(ch)
        where = f"U+{cp:04X} at position {pos}"
        if 0xFE00 <= cp <= 0xFE0F:
            vs_run += 1
            if vs_run > 1:
                return (f"a run of variation selectors ({where}), which can hide data "
                        "inside an emoji; remove them")
            continue
        vs_run = 0
        if ch in "\n\t":
            continue
        if ch == "\r":
            return f"a carriage return ({where}); use \\n line breaks"
        if cp < 0x20 or 0x7F <= cp <= 0x9F:
            return f"a control character ({where}); remove it"
        if cp in _BIDI:
            return (f"a bidirectional control character ({where}), which makes text "
                    "display differently from what is stored; remove it")
        if 0xE0000 <= cp <= 0xE007F:
            return f"a Unicode tag character ({where}), which is invisible text; remove it"
        if 0xE0100 <= cp <= 0xE01EF:
            return f"an invisible variation selector ({where}); remove it"
        if cp in (0x2028, 0x2029):
            return f"a line/paragraph separator ({where}); use \\n line breaks"
        if 0xD800 <= cp <= 0xDFFF:
            return f"an unpaired surrogate ({where}); send valid UTF-8 text"
    return None


# --------------------------------------------------------------------------- normalising

# Lookalikes: Unicode TR39's confusables table (the copy maintained in the
# confusable-homoglyphs package), applied after case folding. TR39 pairs characters by
# how they look in their own case, so a few lowercase forms of Latin-looking capitals
# and the Latin small capitals are not in it; _LOOKALIKE_EXTRAS adds those.
_LOOKALIKE_EXTRAS = {
    # Cyrillic and Greek lowercase forms that look like Latin small capitals or letters
    "в": "b", "ё": "e", "н": "h", "ї": "i", "к": "k", "м": "m", "т": "t", "һ": "h",
    "ԁ": "d", "ԛ": "q", "ԍ": "g", "п": "n", "β": "b", "ε": "e", "η": "n", "κ": "k",
    "τ": "t", "χ": "x", "ω": "w", "ȷ": "j",
    # Latin small capitals
    "ʀ": "r", "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h",
    "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ꜱ": "s",
    "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
}


@lru_cache(maxsize=1)
def _lookalikes() -> dict[int, str]:
    """Every non-ASCII character TR39 lists as confusable with one ASCII letter or digit,
    mapped to it (a lowercase letter preferred: the table is applied after case folding).

    Built on first use: the package's JSON takes about 40 ms to load.
    """
    from confusable_homoglyphs.confusables import confusables_data

    table: dict[int, str] = {}
    for char, lookalikes in confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        ascii_forms = [e["c"] for e in lookalikes if len(e["c"]) == 1 and e["c"].isascii()
                       and e["c"].isalnum()]
        ranked = sorted(ascii_forms, key=lambda c: (not c.islower(), not c.isalpha()))
        if ranked:
            table[ord(char)] = ranked[0].lower()
    table.update({ord(k): v for k, v in _LOOKALIKE_EXTRAS.items()})
    return table


# Blank "letters" (category Lo/So, so not caught as format characters) used to pad words.
_INVISIBLE = dict.fromkeys(map(ord, "\u115f\u1160\u3164\uffa0\u2800\u034f"))
# NFKC would turn the lunate sigma (looks like c) into a sigma (looks like o).
_BEFORE_NFKC = str.maketrans({"ϲ": "c", "Ϲ": "C"})
_LINE_BREAKS = str.maketrans({"\r": "\n", "\x0b": "\n", "\x0c": "\n", "\x85": "\n",
                              "\u2028": "\n", "\u2029": "\n"})
_LEET_I = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                         "@": "a", "$": "s", "!": "i", "|": "i", "+": "t"})
_LEET_L = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t",
                         "@": "a", "$": "s", "!": "i", "|": "l", "+": "t"})


_TAG_RUN = re.compile("[\U000e0020-\U000e007e]+")


def _decode_tags(text: str) -> str:
    """Unicode tag characters shadow ASCII one to one: make the hidden text visible, as
    words of its own (so it cannot glue onto the visible word before it)."""
    return _TAG_RUN.sub(lambda m: " " + "".join(chr(ord(c) - 0xE0000) for c in m.group())
                        + " ", text)


def _unescape(text: str) -> str:
    for _ in range(3):  # double-encoded entities (&amp;#58;) need a second pass
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text


def _fold(text: str) -> str:
    """NFKC, accents stripped, format characters removed; case kept."""
    text = _unescape(_decode_tags(text)).translate(_LINE_BREAKS).translate(_BEFORE_NFKC)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text
                   if unicodedata.category(c) not in ("Mn", "Cf") and ord(c) not in _INVISIBLE)
    return unicodedata.normalize("NFKC", text)


def normalize(text: str) -> str:
    """The view most rules match on: folded, lookalikes mapped to Latin, case-folded.

    Whitespace and punctuation are kept, so line starts and URLs are still visible.
    """
    return _fold(text).casefold().translate(_lookalikes())


def _words(text: str) -> str:
    """Letters and digits only, one space between runs: separators no longer matter."""
    return " ".join(re.findall(r"[a-z0-9]+", text))


def _rejoin_spaced(words: str) -> str:
    """Join runs of single letters ("i g n o r e" -> "ignore"); phrase rules allow a
    missing space between words, so the words after the join still line up."""
    out: list[str] = []
    run: list[str] = []
    for token in [*words.split(" "), ""]:
        if len(token) == 1:
            run.append(token)
            continue
        if len(run) >= 3:
            out.append("".join(run))
        else:
            out.extend(run)
        run = []
        if token:
            out.append(token)
    return " ".join(out)


_HYPHEN_BREAK = re.compile(r"(?<=[a-z])-[ \t]*\n[ \t]*(?=[a-z])")
# Punctuation between two letters with no space around it splits a word ("ig.nore",
# "dis-re-gard", "i|g|n"); an apostrophe is left alone ("team's").
_IN_WORD_SEPARATORS = re.compile(r"(?<=[a-z0-9])[.\-_*|/+~·•:^=]+(?=[a-z0-9])")

_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
# A shifted alphabet (Caesar) or a mirrored one (Atbash) is worth reading only if it
# turns up words an instruction to the model is made of.
_CIPHER_CUES = frozenset({"ignore", "disregard", "forget", "instructions", "previous",
                          "prompt", "system", "rules", "reveal", "override"})
_CIPHERS = [str.maketrans(_ALPHABET, _ALPHABET[k:] + _ALPHABET[:k]) for k in range(1, 26)
            ] + [str.maketrans(_ALPHABET, _ALPHABET[::-1])]


def _deciphered(words: str) -> Iterator[str]:
    """Caesar shifts (ROT13 among them), Atbash, reversed text and reversed word order, each
    only if it reads as at least two cue words (ordinary text then costs no extra scan)."""
    for view in (*(words.translate(table) for table in _CIPHERS), words[::-1],
                 " ".join(reversed(words.split(" ")))):
        if len(_CIPHER_CUES.intersection(view.split(" "))) >= 2:
            yield view


def _phrase_views(norm: str) -> Iterator[str]:
    """The phrase rules run on each view: the text as words, plain and with in-word
    separators removed, each with leetspeak undone (1 read as i, then as l) and with
    letter-spacing re-joined; then the plain words deciphered (:func:`_deciphered`).
    Views equal to one already read are skipped, so ordinary text costs one or two."""
    seen: set[str] = set()
    norm = _HYPHEN_BREAK.sub("", norm)
    joined = _IN_WORD_SEPARATORS.sub("", norm)
    plain = _words(norm)
    candidates = [plain]
    for source in (norm, joined):
        for leet in (None, _LEET_I, _LEET_L):
            words = _words(source.translate(leet) if leet else source)
            candidates += [words, _rejoin_spaced(words)]
    for view in [*candidates, *_deciphered(plain)]:
        if view not in seen:
            seen.add(view)
            yield view


# --------------------------------------------------------------------------- phrase rules

_J = " ?"  # between words: one space, or none once letter-spaced text was re-joined


def _alt(words: str) -> str:
    return "(?:" + "|".join(w.replace(" ", _J) for w in words.split("|")) + ")"


_NEG = r"(?<!\bnot )(?<!\bnever )(?<!\bdont )(?<!\bdon t )(?<!\bnor )(?<!\bno )"

_VERB = _alt(
    "ignore|ignoring|disregard|disregarding|forget|forgetting|override|overriding|overwrite"
    "|bypass|discard|dismiss|abandon|neglect|set aside|throw away|erase"
    "|stop following|no longer follow|do not follow|dont follow|don t follow|stop obeying"
    "|do not obey|don t obey"
)
_FILL = _alt(
    "all|any|every|each|the|your|my|these|those|this|that|of|everything|what|was|were|you"
    "|ve|have|been|told|said|given|instead|now|just|please|and|above|before"
)
_QUAL = _alt(
    "previous|previously|prior|above|earlier|preceding|foregoing|original|initial|given"
    "|system|developer|safety|aforementioned|preset|built in|hidden|moderation"
)
_NOUN = _alt(
    "instructions|instruction|rules|rule|prompts|prompt|directions|directives|directive"
    "|guidelines|guideline|commands|command|orders|constraints|restrictions|guardrails"
    "|policies|policy|context|messages|message|text|content|conversation|programming"
    "|training|settings|limitations|filters|safeguards|guidance|input|tasks|task|requests"
    "|everything|lines|words|sentences"
)
_STRICT_NOUN = _alt(
    "instructions|instruction|rules|prompts|prompt|directives|guidelines|guardrails"
    "|restrictions|constraints|programming|policies|safeguards|filters|limitations"
    "|system prompt"
)
_LEAK_VERB = _alt(
    "tell me|show me|what are|what were|what is|list|quote|summarize|summarise|translate"
    "|paste|dump|print|output|reveal|repeat|display|write out|copy|recite|spell out|echo"
    "|leak|disclose|expose|give me|show"
)
_LEAK_ADJ = _alt("full|entire|exact|complete|verbatim|whole|very|own|hidden|secret|initial"
                 "|original|system|setup|first")
_POS = _alt("above|before|so far|until now|previously|earlier|up to now|up to this point")

_ROM_VERB = _alt(
    "ignora|ignore|ignoren|ignorar|ignorez|ignorer|ignores|olvida|olvide|olviden|olvidar"
    "|descarta|descarte|omite|omita|desestima|desobedece|no sigas|no hagas caso a"
    "|no hagas caso de|oublie|oubliez|oublier|neglige|negligez|ne tiens pas compte de"
    "|ne tenez pas compte de|ne tiens pas compte des|ne tenez pas compte des"
    "|dimentica|dimenticate|esquece|esqueca|desconsidere|desconsidera"
)
_ROM_FILL = _alt(
    "todas|todos|todo|las|los|lo|tus|sus|mis|de|a|el|la|que|se|te|han|dado|dicho"
    "|toutes|tous|tout|les|tes|vos|ses|des|ce|qui|l|tutte|tutti|le|gli|tue|tuoi|as|os"
    "|suas|tuas|seus|teus|e|et|y|sistema"
)
_ROM_NOUN = _alt(
    "instrucciones|instruccion|reglas|indicaciones|ordenes|directrices|normas|consignas"
    "|instructions|instruction|regles|directives|ordres|indications|istruzioni|regole"
    "|indicazioni|instrucoes|instrucao|regras|ordens|diretrizes|prompt|mensajes|messages"
)
_ROM_QUAL = _alt(
    "anteriores|anterior|previas|previos|precedentes|de arriba|dadas|originales|iniciales"
    "|del sistema|precedentes|anterieures|anterieurs|ci dessus|d avant|initiales"
    "|du systeme|precedenti|sopra|iniziali|di sistema|acima|do sistema|originais"
)
_ROM_ALL = _alt("todas|toutes|tutte|tous|tutti|todos")

_DE_VERB = _alt(
    "ignoriere|ignorieren|ignorier|ignoriert|vergiss|vergesst|vergessen|missachte"
    "|missachten|uberspringe|verwirf|verwerfe|beachte nicht|negeer|vergeet"
)
_DE_FILL = _alt(
    "alle|alles|die|deine|ihre|sie|bitte|samtliche|jegliche|den|der|was|dir|bisher|gesagt"
    "|wurde|zuvor|de|je|jouw|eerdere"
)
_DE_QUAL = _alt(
    "vorherigen|vorherige|bisherigen|bisherige|obigen|obige|vorigen|vorangegangenen"
    "|vorangehenden|fruheren|ursprunglichen|vorhergehenden|vorige|eerdere|voorgaande"
)
_DE_NOUN = _alt(
    "anweisungen|anweisung|instruktionen|regeln|befehle|vorgaben|anordnungen|richtlinien"
    "|hinweise|systemprompt|prompt|instructies|regels|opdrachten"
)

_PHRASE_RULES: list[tuple[str, str]] = [
    ("instruction-override phrase",
     rf"\b{_NEG}{_VERB}(?:{_J}{_FILL}){{0,4}}{_J}{_QUAL}(?:{_J}{_QUAL}|{_J}{_FILL}){{0,2}}{_J}{_NOUN}\b"),
    ("instruction-override phrase",
     rf"\b{_NEG}{_VERB}(?:{_J}{_FILL}){{0,5}}{_J}{_POS}\b"),
    ("instruction-override phrase",
     rf"\b{_NEG}{_VERB}{_J}(?:all|any|every|your)(?:{_J}{_FILL}){{0,2}}(?:{_J}{_QUAL}){{0,2}}"
     rf"{_J}{_STRICT_NOUN}\b"),
    ("prompt-leak request",
     rf"\b{_NEG}(?:print|reveal|show|repeat|output|display|tell me|leak|dump|disclose|expose"
     rf"|recite|write out|give me|spell out|echo)(?:{_J}(?:me|back|out|all|of|us)){{0,2}}"
     rf"{_J}(?:your|the|its)(?:{_J}(?:full|entire|exact|complete|verbatim|whole)){{0,2}}"
     rf"{_J}(?:system|initial|original|hidden|secret|developer|previous|pre)"
     rf"{_J}(?:prompt|prompts|instructions|message|rules|configuration)\b"),
    ("prompt-leak request",
     rf"\b{_NEG}(?:repeat|print|output|reveal|copy|echo)(?:{_J}(?:everything|all|the|text"
     rf"|words|lines|content|instructions|of)){{1,3}}{_J}(?:above|before)\b"),
    ("prompt-leak request",
     rf"\b{_NEG}{_LEAK_VERB}(?:{_J}(?:me|us|back|out|all|of|everything|into{_J}\w+)){{0,2}}"
     rf"{_J}your(?:{_J}{_LEAK_ADJ}){{0,3}}{_J}(?:instructions|prompt|configuration|setup"
     rf"|rules|guidelines|directives|system{_J}prompt|initial{_J}prompt)\b"),
    ("prompt-leak request",
     rf"\b{_NEG}{_LEAK_VERB}(?:{_J}(?:me|us|back|out|all|of)){{0,2}}{_J}the"
     rf"(?:{_J}(?:full|entire|exact|complete|verbatim|whole|very)){{0,2}}{_J}(?:system|initial"
     rf"|hidden|original|secret|setup|first|opening){_J}(?:prompt|instructions|message|text)\b"),
    ("prompt-leak request",
     rf"\b{_NEG}(?:put|copy|repeat|print|output|quote|paste|translate|summari[sz]e|reveal"
     rf"|show|dump){_J}(?:everything|all(?:{_J}the{_J}text)?|the{_J}(?:text|words|lines))"
     rf"(?:{_J}(?:written|said|stated|given|that{_J}came|you{_J}were{_J}given)){{0,1}}"
     rf"{_J}(?:above|before{_J}(?:this|that)|earlier|at{_J}the{_J}start)\b"),
    ("prompt-leak request",
     rf"\b(?:text|words|message|prompt){_J}(?:that{_J})?(?:begins|starts|starting|beginning)"
     rf"{_J}with{_J}you{_J}are\b|\bwhat{_J}(?:was|is){_J}the{_J}(?:very{_J})?first{_J}message\b"),
    ("mode-switch phrase",
     rf"\b(?:safety|content|ethical|moderation){_J}(?:checks|filters|filter|policy|policies"
     rf"|guidelines|rules|restrictions){_J}(?:are|is){_J}(?:now{_J})?(?:off|disabled|lifted"
     rf"|removed|suspended|deactivated)\b"
     rf"|\bno{_J}(?:content|safety|ethical){_J}(?:policy|filters|rules|restrictions"
     rf"|guidelines){_J}(?:apply|applies)\b"),
    ("mode-switch phrase",
     rf"\b{_NEG}(?:answer|respond|reply|act|operate|behave|talk|speak)(?:{_J}\w+){{0,4}}"
     rf"{_J}without{_J}(?:any{_J})?(?:ethical{_J}|content{_J}|safety{_J}|moral{_J})?(?:filters"
     rf"|filter|restrictions|rules|guidelines|limits|limitations|censorship|constraints)\b"
     rf"|\b(?:ai|assistant|chatbot|model|persona){_J}(?:with|that{_J}has|having){_J}no"
     rf"(?:{_J}(?:ethical|moral|content|safety))?{_J}(?:filters|rules|restrictions|guidelines"
     rf"|limits|morals|boundaries)\b"),
    ("mode-switch phrase",
     rf"\bjailbreak(?:{_J}mode)?{_J}(?:is{_J})?(?:enabled|activated|engaged|on|successful)\b"
     rf"|\byou{_J}can{_J}now{_J}do{_J}anything\b"
     rf"|\byou{_J}are{_J}(?:now{_J})?[a-z]+{_J}which{_J}stands{_J}for\b"
     rf"|\b(?:unlocked|jailbreak|jailbroken|sudo|god|opposite|evil|chaos|unrestricted"
     rf"|unfiltered|uncensored){_J}mode{_J}(?:is{_J})?(?:now{_J})?(?:on|enabled|activated|engaged"
     rf"|unlocked)\b"
     rf"|\b(?:roleplay|role{_J}play|play|pretend{_J}to{_J}be|act){_J}(?:as{_J})?(?:your|an|a)"
     rf"{_J}(?:evil|unfiltered|uncensored|unrestricted|jailbroken|amoral|unethical|dark)"
     rf"{_J}(?:twin|version|ai|assistant|persona|self|alter{_J}ego|chatbot)\b"),
    ("mode-switch phrase",
     rf"\byou{_J}(?:are|re|r){_J}(?:now{_J})?(?:in{_J}|an?{_J})?(?:dan|developer|dev|god"
     rf"|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|debug|admin|root|sudo"
     rf"|evil|chaos|maintenance){_J}(?:mode|ai|model|assistant|version)\b"),
    ("mode-switch phrase",
     rf"\b(?:enter|enable|activate|switch to|entering|enabling){_J}(?:god|jailbreak|dan"
     rf"|unrestricted|unfiltered|uncensored|sudo|opposite|unlocked|evil|chaos){_J}mode\b"),
    ("mode-switch phrase", rf"\bdo{_J}anything{_J}now\b|\bact{_J}as{_J}(?:dan|an?{_J}"
     rf"(?:unrestricted|unfiltered|uncensored|jailbroken))\b"),
    ("mode-switch phrase",
     rf"\byou{_J}(?:are|re){_J}no{_J}longer{_J}(?:bound|restricted|limited|an{_J}ai|required)\b"
     rf"|\bpretend{_J}(?:that{_J})?you{_J}(?:have|had){_J}no{_J}(?:rules|restrictions"
     rf"|guidelines|limits|filters)\b"),
    ("instruction-override phrase",
     rf"\byour{_J}new{_J}(?:instructions|rules|task|role|purpose|objective){_J}(?:are|is)\b"
     rf"|\b(?:new|updated|real|true|actual){_J}system{_J}prompt\b"
     rf"|\bsystem{_J}(?:prompt{_J})?override\b"
     rf"|\b(?:admin|developer|sudo|root){_J}(?:override|mode|access){_J}(?:is{_J})?(?:now{_J})?"
     rf"(?:enabled|activated|granted|engaged)\b"),
    ("instruction-override phrase (es/fr/it/pt)",
     rf"\b{_ROM_VERB}(?:{_J}{_ROM_FILL}){{0,4}}{_J}{_ROM_NOUN}(?:{_J}{_ROM_FILL}){{0,1}}"
     rf"{_J}{_ROM_QUAL}\b"),
    ("instruction-override phrase (es/fr/it/pt)",
     rf"\b{_ROM_VERB}{_J}{_ROM_ALL}(?:{_J}{_ROM_FILL}){{0,2}}{_J}{_ROM_NOUN}\b"),
    ("instruction-override phrase (es/fr/it/pt)",
     rf"\b{_ROM_VERB}(?:{_J}(?:todo|tout|tutto|tudo)){{0,1}}{_J}(?:lo{_J}anterior|ce{_J}qui"
     rf"{_J}precede|lo{_J}de{_J}arriba|quanto{_J}sopra|cio{_J}che{_J}precede|o{_J}que{_J}foi{_J}dito"
     rf"|acima)\b"),
    ("instruction-override phrase (de/nl)",
     rf"\b{_DE_VERB}(?:{_J}{_DE_FILL}){{0,3}}{_J}{_DE_QUAL}{_J}{_DE_NOUN}\b"),
    ("instruction-override phrase (de/nl)",
     rf"\b{_DE_QUAL}{_J}{_DE_NOUN}(?:{_J}{_DE_FILL}){{0,2}}{_J}(?:ignorieren|vergessen"
     rf"|missachten|negeren|vergeten)\b"),
    ("instruction-override phrase (de/nl)",
     rf"\b{_DE_VERB}(?:{_J}{_DE_FILL}){{0,2}}{_J}alles{_J}(?:oben|vorherige|bisherige|zuvor"
     rf"|davor|bisher|vorher)\b"),
]
# One alternation, one scan per view: each rule is a named group, so a match still says
# which rule it was.
_PHRASES = re.compile("|".join(f"(?P<r{i}>{pattern})"
                               for i, (_, pattern) in enumerate(_PHRASE_RULES)))

# Other languages: an override verb and an instruction noun close together in one sentence,
# unless a negation sits just before the verb or inside the phrase ("N'ignore jamais les
# consignes", "Vergessen Sie nicht die Regeln"). Matched on the folded, case-folded text
# (accents stripped, scripts kept): the vocabulary below is folded the same way when the
# rules are built. Word languages allow up to four words between verb and noun; Chinese,
# Japanese and Korean (no spaces, particles glued on) up to eight characters.
_OVERRIDE_VOCAB: dict[str, tuple[str, str, str]] = {
    # language: (verbs, nouns, negation words), each "|"-separated, spelt as written
    "es": ("ignora|ignore|ignoren|ignorar|olvida|olvide|olviden|olvidar|olvídate|descarta"
           "|omite|desobedece|no hagas caso a|haz caso omiso de",
           "instrucciones|instrucción|indicaciones|reglas|normas|directrices|órdenes|consignas",
           "no|nunca|jamás|tampoco"),
    "fr": ("ignore|ignorez|ignorer|oublie|oubliez|oublier|ne tiens plus compte de"
           "|ne tenez plus compte de|néglige|négligez|fais abstraction de",
           "instructions|consignes|règles|directives|ordres|indications",
           "n|jamais|pas"),  # not "ne": "ne tiens plus compte" is itself an override
    "it": ("ignora|ignorate|ignorare|dimentica|dimenticate|dimenticare|trascura|tralascia",
           "istruzioni|regole|indicazioni|direttive|ordini", "non|mai"),
    "pt": ("ignore|ignora|ignorar|esqueça|esqueçam|esquecer|desconsidere|desconsidera",
           "instruções|instrução|regras|diretrizes|ordens|orientações", "não|nunca|jamais"),
    "de": ("ignoriere|ignorieren|ignorier|ignoriert|vergiss|vergesst|vergessen|missachte"
           "|missachten|verwirf",
           "anweisungen|anweisung|regeln|befehle|vorgaben|richtlinien|instruktionen"
           "|systemprompt", "nicht|nie|niemals|kein|keine"),
    "nl": ("negeer|negeren|vergeet|vergeten", "instructies|regels|opdrachten|richtlijnen",
           "niet|nooit"),
    "pl": ("zignoruj|ignoruj|zignorujcie|zapomnij|zapomnijcie|pomiń",
           "instrukcje|instrukcji|polecenia|poleceń|zasady|reguły|wytyczne", "nie|nigdy"),
    "tr": ("yok say|yok sayın|görmezden gel|görmezden gelin|unut|unutun",
           "talimatları|talimatlar|kuralları|komutları|yönergeleri|talimatlarını", "asla"),
    "ru": ("игнорируй|игнорируйте|проигнорируй|проигнорируйте|забудь|забудьте|отбрось"
           "|пренебреги", "инструкции|указания|правила|промпт|инструкциями", "не|никогда"),
    "uk": ("ігноруй|ігноруйте|проігноруй|забудь|забудьте", "інструкції|вказівки|правила",
           "не|ніколи"),
    "sv": ("ignorera|glöm|bortse från", "instruktioner|regler|anvisningar", "inte|aldrig"),
    "id": ("abaikan|lupakan", "instruksi|aturan|perintah|petunjuk", "jangan|tidak"),
    "vi": ("bỏ qua|phớt lờ|quên", "hướng dẫn|chỉ dẫn|quy tắc|lệnh", "không|đừng|chớ"),
    "ar": ("تجاهل|تجاهلي|تجاهلوا|انس|انسى", "التعليمات|تعليمات|الأوامر|القواعد|الإرشادات",
           "لا"),
    "hi": ("अनदेखा|नज़रअंदाज़|नजरअंदाज|भूल जाओ|भूल जाएं|भूलो", "निर्देशों|निर्देश|नियमों|नियम",
           "मत|न|नहीं"),
}
_CJK_VOCAB: dict[str, tuple[str, str, str, str]] = {
    # language: (verbs, nouns, negations just before the verb, negations just after it)
    "zh": ("忽略|无视|忘记|忘掉|忽视|不要理会|抛开|丢弃", "指令|指示|说明|规则|提示|设定",
           "不要|别|切勿|请勿|不得|不能|不可|勿", "$^"),
    "ja": ("無視|忘れ", "指示|命令|ルール|規則|プロンプト|指令", "$^",
           "しない|せず|するな|ない|ません"),
    "ko": ("무시|잊어|잊으", "지시|지침|명령|규칙|프롬프트", "$^",
           "하지 마|하지마|지 마|지마|말고|않"),
}


def _folded_alt(words: str) -> str:
    return "(?:" + "|".join(re.escape(_fold(w).casefold()) for w in words.split("|")) + ")"


# Short English sentences can look like another language's ("Do not ignore previous
# instructions" has only one English function word): English negations count everywhere.
_ENGLISH_NEGATIONS = frozenset({"not", "never", "dont", "don", "nor", "no"})
_WORD_OVERRIDES = [
    (lang, re.compile(rf"(?<!\w){verb}(?:\W+\w+){{0,4}}?\W+{noun}(?!\w)"
                      rf"|(?<!\w){noun}(?:\W+\w+){{0,4}}?\W+{verb}(?!\w)"),
     frozenset(_fold(word).casefold() for word in negations.split("|")) | _ENGLISH_NEGATIONS)
    for lang, (verb, noun, negations) in (
        (lang, (_folded_alt(verbs), _folded_alt(nouns), negations))
        for lang, (verbs, nouns, negations) in _OVERRIDE_VOCAB.items())
]
# Tokens for the negation check: split at spaces and punctuation only (\W would also
# split at the vowel signs of Indic scripts).
_TOKEN_BREAK = re.compile(r"[\s'’.,;:!?¿¡\"()«»]+")
_CJK_OVERRIDES = [
    (lang, re.compile(rf"{verb}[^。！？.!?\n]{{0,8}}?{noun}|{noun}[^。！？.!?\n]{{0,8}}?{verb}"),
     re.compile(rf"(?:{before})$"), re.compile(rf"^\s*(?:{after})"), re.compile(verb))
    for lang, (verb, noun, before, after) in (
        (lang, (_folded_alt(v), _folded_alt(n), _folded_alt(b) if b != "$^" else b,
                _folded_alt(a) if a != "$^" else a))
        for lang, (v, n, b, a) in _CJK_VOCAB.items())
]


# Some words are spelt the same in English ("ignore", "instructions"); an English sentence
# is left to the English rules, which are stricter about what counts as an override.
_ENGLISH_WORDS = frozenset(["the", "and", "to", "of", "you", "your", "is", "are", "that",
                            "with", "for", "in", "on", "this", "it", "be", "was", "were",
                            "all", "any", "from", "by", "as", "at", "or", "if", "please",
                            "never", "not", "dont", "team", "s"])
# Clauses, for the other-language rules: a verb and a noun on either side of a colon or a
# comma rarely belong together ("Olvida los tecnicismos: explica las reglas").
_SENTENCE = re.compile(r"[^.!?;:,\n]+")


def _is_english(sentence: str) -> bool:
    return len(_ENGLISH_WORDS.intersection(re.findall(r"\w+", sentence))) >= 2


def _other_language_override(lowered: str) -> tuple[str, str] | None:
    """(language, matched text) of an override phrase in another language, if any."""
    sentences = [m.group() for m in _SENTENCE.finditer(lowered)]
    for sentence in (s for s in sentences if not _is_english(s)):
        for lang, pattern, negations in _WORD_OVERRIDES:
            for match in pattern.finditer(sentence):
                before = _TOKEN_BREAK.split(sentence[: match.start()].strip())[-2:]
                after = _TOKEN_BREAK.split(sentence[match.end():].strip())[:2]
                if negations.isdisjoint([*before, *_TOKEN_BREAK.split(match.group()),
                                         *after]):
                    return lang, match.group()
    for lang, pattern, neg_before, neg_after, verb in _CJK_OVERRIDES:
        for match in pattern.finditer(lowered):
            verb_match = verb.search(match.group())
            assert verb_match is not None
            verb_start = match.start() + verb_match.start()
            verb_end = match.start() + verb_match.end()
            if not (neg_before.search(lowered[max(0, verb_start - 4): verb_start])
                    or neg_after.search(lowered[verb_end: verb_end + 6])):
                return lang, match.group()
    return None


# --------------------------------------------------------------------------- markup rules

_ROLE_PREFIX = r"^[ \t>#*_=|\-\[(]*"
_ROLE_SUFFIX = (r"(?:[ \t]+(?:prompt|message|note|notice|instructions?|override|update"
                r"|response|turn))?[ \t*_\])]*:")
_ROLE_LINE = re.compile(_ROLE_PREFIX + r"(system|assistant|developer|ai)" + _ROLE_SUFFIX,
                        re.MULTILINE)
# The user's turn is the template's own label for the question ("User: {query}"), so a
# user/human line is fake only when it says something else.
_USER_LINE = re.compile(_ROLE_PREFIX + r"(user|human)" + _ROLE_SUFFIX
                        + r"(?![ \t]*(?:\{query\}|$))", re.MULTILINE)
# "[SYSTEM]", "[system message]", "[admin override]" anywhere: a header no tenant text needs.
_BRACKET_ROLE = re.compile(
    r"\[[ \t]*(?:system|sys|assistant|developer|admin|administrator|root)"
    r"(?:[ \t_-]?(?:message|prompt|note|notice|override|instructions?|update|mode))?[ \t]*\]")
_ALPACA = re.compile(r"^[ \t]*#{2,}[ \t]*(instruction|response|system)[ \t]*:?[ \t]*$",
                     re.MULTILINE)
_TURN_TOKEN = re.compile(
    r"<\|[^|<>\n]{1,40}\|>|\[/?inst\]|<<\s*/?\s*sys\s*>>|</?(?:system|assistant|developer"
    r"|start_of_turn|end_of_turn|im_start|im_end)\b[^<>]*>")
_HTML_COMMENT = re.compile(r"<!--")
_ACTIVE_TAG = re.compile(
    r"</?(script|iframe|frame|frameset|object|embed|applet|img|image|svg|math|style"
    r"|link|meta|base|form|input|button|textarea|select|video|audio|source|track|a|body"
    r"|html|marquee|details|template|portal|noscript|xmp|bgsound|isindex|keygen|picture"
    r"|param|area|map)(?=[\s/>])")
_TAG_WITH_ATTRIBUTES = re.compile(r"<[a-z][\w:-]*(?:\s+|/)[^<>]*=[^<>]*>")


def _scheme(name: str) -> str:
    return r"(?<![a-z0-9])" + r"[\s\x00-\x1f]*".join(name) + r"[\s\x00-\x1f]*:"


# "javascript:" as a URL (something right after the colon), not a mention of the scheme
# followed by a space as in "what a javascript: URL does".
_SCRIPT_URL = re.compile(rf"(?:{_scheme('javascript')}|{_scheme('vbscript')}|"
                         rf"{_scheme('livescript')})(?=\t*[^\s'\"`)\].,;:!?])")
_DATA_URL = re.compile(_scheme("data") + r"(?:[a-z-]+/[\w.+-]+)?[;,]")
_LINK_TARGET_SCHEME = re.compile(
    r"\]\s*\(\s*<?\s*(?:" + "|".join(_scheme(s) for s in
                                      ("javascript", "vbscript", "data", "file")) + ")")
_MD_IMAGE = re.compile(r"!\s*\[[^\]\n]*\]\s*[(\[]")
_URL = re.compile(
    r"(?:[a-z][a-z0-9+.-]*:)?//[^\s<>\"'`]+|\bwww\.[^\s<>\"'`]+"
    r"|(?<![a-z0-9{}_.-])[a-z0-9{}_-]+(?:\.[a-z0-9{}_-]+)*\.[a-z]{2,}(?::\d+)?/[^\s<>\"'`]*")
_LINK_TARGET = re.compile(r"\]\s*\(([^)\n]*)\)")
_BRACED = re.compile(r"(\{+)\s*([a-z_][a-z0-9_]*)\s*\}+")

_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_B32_RUN = re.compile(r"[A-Z2-7]{16,}=*")
# Hex pairs, glued or each followed by one separator ("69 67 6e", "69:67:6e", "\\x69\\x67").
_HEX_RUN = re.compile(r"(?:(?:\\x)?[0-9a-fA-F]{2}[\s:,.\-]?){12,}")
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_ENCODING_SEPARATORS = re.compile(r"[\s.,:;|]+")


def _snippet(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


_PHRASE_ADVICE = ("tenant text may describe how to answer, but not tell the model to drop "
                  "its instructions, change mode or reveal its prompt; rephrase it")
_MARKUP_ADVICE = "remove the markup: prompts are plain text"


# A defensive instruction quotes the attack it defends against: "if the user asks you to
# ignore your instructions, refuse". Only that reported-request frame is exempt; a bare
# imperative ("I want you to ignore ...") is not.
_DEFENSIVE_FRAME = re.compile(
    r"\b(?:if|when|whenever|should|in case)\b(?: [a-z0-9]+){0,6} (?:asks?|asked|tells?|told"
    r"|wants?|requests?|instructs?|urges?|demands?|tries|try|attempts?|pressures?)"
    r"(?: [a-z0-9]+){0,3} (?:you|the assistant|the model|the ai|it|me|us) ?to $")


# Words cut at arbitrary points ("ign ore prev ious instru ctions") survive none of the
# views; with every separator gone the core override and leak phrases still show, unless
# a negation or a reported request ("asks you to") runs straight into them.
_SQUASHED = re.compile(
    r"(?P<override>(?:ignore|disregard|forget|override|bypass)(?:all|any|every|the|your|of)"
    r"{0,3}(?:previous|prior|above|earlier|preceding|original|initial|system)(?:instructions?"
    r"|rules|prompts?|directions|directives|guidelines|commands))"
    r"|(?P<leak>(?:reveal|print|show|output|repeat|display|leak|dump|disclose)(?:me|us)?"
    r"(?:your|the)(?:full|entire|exact|complete|whole)?(?:system|initial|hidden|original"
    r"|secret|developer)(?:prompt|instructions))")
_SQUASHED_EXEMPT = re.compile(r"(?:not|never|dont|nor|no|(?:ask|tell|told|want|request|tries"
                              r"|try|attempt|urge)[a-z]{0,40}(?:you|it|me|us|model|assistant)"
                              r"to)$")


def _squashed_finding(norm: str) -> Finding | None:
    for source in (norm, norm.translate(_LEET_I), norm.translate(_LEET_L)):
        squashed = "".join(re.findall(r"[a-z]+", source))
        for match in _SQUASHED.finditer(squashed):
            if not _SQUASHED_EXEMPT.search(squashed[max(0, match.start() - 60):
                                                    match.start()]):
                label = ("instruction-override phrase" if match.lastgroup == "override"
                         else "prompt-leak request")
                return Finding("phrase", f"{label} (words split apart) "
                               f"{_snippet(match.group())}", _PHRASE_ADVICE)
    return None


def _phrase_finding(norm: str, folded: str) -> Finding | None:
    for view in _phrase_views(norm):
        for match in _PHRASES.finditer(view):
            before = view[max(0, match.start() - 80): match.start()]
            if not _DEFENSIVE_FRAME.search(before):
                label = _PHRASE_RULES[int(match.lastgroup[1:])][0]
                return Finding("phrase", f"{label} {_snippet(match.group())}",
                               _PHRASE_ADVICE)
    if finding := _squashed_finding(norm):
        return finding
    found = _other_language_override(folded.casefold())
    if found:
        return Finding("phrase", f"instruction-override phrase ({found[0]}) "
                       f"{_snippet(found[1])}", _PHRASE_ADVICE)
    return None


def _url_leak(url: str, template: bool) -> bool:
    """Does this URL carry per-request data? ``{query}``/``{context}`` in any brace form
    invite the model to fill them in; in a template any live ``{name}`` is substituted."""
    for match in _BRACED.finditer(url):
        if match.group(2) in ("query", "context"):
            return True
        if template and len(match.group(1)) % 2 == 1:
            return True
    return False


def _markup_finding(norm: str, template: bool) -> Finding | None:
    if match := _ROLE_LINE.search(norm) or _USER_LINE.search(norm) or _ALPACA.search(norm):
        return Finding("role_marker",
                       f"a role marker at a line start {_snippet(match.group().strip())}",
                       "tenant text cannot speak as the system or the assistant; use a "
                       "neutral label such as 'Answer:' or 'Note:'")
    if match := _BRACKET_ROLE.search(norm):
        return Finding("role_marker", f"a role header {_snippet(match.group())}",
                       "tenant text cannot speak as the system, an admin or the assistant; "
                       "remove the header")
    if match := _TURN_TOKEN.search(norm):
        return Finding("role_marker", f"a chat turn token {_snippet(match.group())}",
                       "remove chat-format tokens; the pipeline builds the turns itself")
    if match := _SCRIPT_URL.search(norm):
        return Finding("url_scheme", f"a script URL {_snippet(match.group() + '…')}",
                       "remove it: only http(s) links are allowed")
    if match := _DATA_URL.search(norm):
        return Finding("url_scheme", f"a data: URL {_snippet(match.group())}",
                       "remove it: only http(s) links are allowed")
    if match := _LINK_TARGET_SCHEME.search(norm):
        return Finding("url_scheme", f"a link to a non-http scheme {_snippet(match.group())}",
                       "remove it: only http(s) links are allowed")
    if match := _MD_IMAGE.search(norm):
        return Finding("markdown_image", f"a markdown image {_snippet(match.group() + '…')}",
                       "remove the image: a UI that renders markdown would load it "
                       "automatically (a zero-click exfiltration channel)")
    if match := (_HTML_COMMENT.search(norm) or _ACTIVE_TAG.search(norm)
                 or _TAG_WITH_ATTRIBUTES.search(norm)):
        return Finding("html", f"HTML markup {_snippet(match.group())}", _MARKUP_ADVICE
                       + "; plain section tags such as <context> without attributes are fine")
    for match in [*_URL.finditer(norm), *_LINK_TARGET.finditer(norm)]:
        url = match.group()
        if _url_leak(url, template):
            return Finding("url_placeholder",
                           f"a URL that embeds a placeholder {_snippet(url)}",
                           "a link must not carry the query, the context or any "
                           "{placeholder} (it would send them to that site); put a fixed "
                           "link in the text, or the whole link in one prompt variable")
    return None


def _decoded_runs(text: str) -> Iterator[str]:
    """Text hidden in base64, base32, hex or URL-encoding: runs are read as written and
    with separators stripped (split base64, spaced hex), each base64 alignment tried (so a
    run glued to a word still decodes)."""
    squeezed = re.sub(r"\s+", "", text)
    stripped = _ENCODING_SEPARATORS.sub("", text)
    sources = (text, squeezed, stripped)
    candidates = {m.group() for src in sources for m in _B64_RUN.finditer(src)}
    for run in sorted(candidates):
        body = run.rstrip("=")
        for offset in range(4):
            chunk = body[offset:]
            chunk = chunk[:-1] if len(chunk) % 4 == 1 else chunk + "=" * (-len(chunk) % 4)
            if len(chunk) < 16:
                continue
            try:
                raw = base64.b64decode(chunk, altchars=b"-_" if re.search("[-_]", chunk)
                                       else None, validate=True)
            except (binascii.Error, ValueError):
                continue
            yield raw.decode("utf-8", errors="replace")
    for run in sorted({m.group().rstrip("=") for src in sources
                       for m in _B32_RUN.finditer(src)}):
        try:
            raw = base64.b32decode(run + "=" * (-len(run) % 8))
        except (binascii.Error, ValueError):
            continue
        yield raw.decode("utf-8", errors="replace")
    for match in _HEX_RUN.finditer(text):
        digits = re.sub(r"\\x|[\s:,.\-]", "", match.group())
        yield bytes.fromhex(digits[: len(digits) // 2 * 2]).decode("utf-8",
                                                                   errors="replace")
    if len(_PERCENT_ESCAPE.findall(text)) >= 3:
        yield unquote(text)


def _looks_like_text(decoded: str) -> bool:
    """Most runs (ordinary words glued together, ids, hashes) decode to binary noise;
    only text is worth checking again: nearly all of it printable (an undecodable byte
    is not), and at least half letters and spaces."""
    if len(decoded) < 8 or decoded.count("\ufffd") > 0.1 * len(decoded):
        return False  # the common case, decided without a pass per character
    readable = sum((ch.isprintable() and ch != "\ufffd") or ch in "\n\t" for ch in decoded)
    wordlike = sum(ch.isalpha() or ch.isspace() for ch in decoded)
    return (len(decoded) >= 8 and readable >= 0.9 * len(decoded)
            and wordlike >= 0.5 * len(decoded))


_log = logging.getLogger(__name__)
_SEMANTIC_ADVICE = ("tenant text may describe how to answer, but not tell the model to drop "
                    "its instructions, reveal its prompt, change mode, trust a claimed role "
                    "or send data elsewhere; rephrase it (if this is a false alarm, say so "
                    "to the platform team: the semantic layer is statistical)")


def _semantic_view(folded: str, norm: str) -> str:
    """What the semantic layer embeds: the lookalike-mapped view for mostly-Latin text
    (undoes confusables), the folded one for other scripts (the map would garble them)."""
    letters = [c for c in folded if c.isalpha()]
    return norm if sum(c.isascii() for c in letters) >= 0.5 * len(letters) else folded


def semantic_candidate(text: str) -> IntentMatch | None:
    """The semantic layer's most suspicious sentence of ``text`` and its closest intent,
    flagged or not (for tuning and reports: :meth:`IntentMatch.flagged` says which)."""
    folded = _fold(text)
    return default_matcher().best(_semantic_view(folded, folded.casefold()
                                                 .translate(_lookalikes())))


def _semantic_finding(folded: str, norm: str) -> Finding | None:
    view = _semantic_view(folded, norm)
    if not split_sentences(view):
        return None  # nothing to embed: no need to load the model
    try:
        match = default_matcher().match(view)
    except EmbeddingModelError as exc:
        # The rule layers still stand; refusing every config write because the model file
        # is broken would take the management API down with it.
        _log.error("injection guard: semantic layer off, the embedding model failed: %s", exc)
        return None
    if match is None:
        return None
    return Finding("semantic", f"a sentence that reads as an injection (semantic layer, "
                   f"intent '{match.intent}') {_snippet(match.sentence, 60)}",
                   _SEMANTIC_ADVICE)


def check_injection(text: str, *, template: bool = False, semantic: bool = True,
                    _depth: int = 0) -> Finding | None:
    """Return the first :class:`Finding` for ``text``, or ``None`` when it looks clean.

    The layers, cheapest first: phrase rules (on every normalised view), role, markup and
    link rules, then the same on text decoded from base64/base32/hex/URL-encoding, then
    (``semantic=True``) the semantic layer. The character policy is
    :func:`find_forbidden_character`, which the validators apply first.

    Link policy: fixed http(s) links are fine. A link that embeds ``{query}`` or
    ``{context}`` is refused wherever it appears (it sends the user's question or the
    retrieved documents to that site); with ``template=True`` a link that embeds any live
    ``{placeholder}`` is refused too: without the variables' values the guard cannot see
    the link it makes (with them, :func:`~m11_tenant.templates.validate_template` checks
    the composed text instead). Markdown images are always refused.
    """
    folded = _fold(text)
    norm = folded.casefold().translate(_lookalikes())
    finding = _phrase_finding(norm, folded) or _markup_finding(norm, template)
    if finding is not None or _depth >= 2:
        return finding
    for decoded in _decoded_runs(unicodedata.normalize("NFKC", text)):
        if not _looks_like_text(decoded):
            continue
        inner = check_injection(decoded, semantic=semantic, _depth=_depth + 1)
        if inner is not None:
            return Finding("encoded", "encoded text (base64, base32, hex or URL-encoded) "
                           f"that hides {inner.reason}",
                           "remove the encoded text; " + inner.advice)
    return _semantic_finding(folded, norm) if semantic else None
