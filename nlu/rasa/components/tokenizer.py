"""`VietnameseTokenizer`: Rasa's whitespace tokenizer reads Vietnamese as loose syllables and
treats "cháy", "chay" and "CHÁY" as three words. This one

- spells out chat abbreviations and southern forms ("ko" -> "không", "dzậy" -> "vậy");
- sets each token's lemma to its folded form (no diacritics, đ -> d): featurizers that use
  lemmas (CountVectorsFeaturizer's default) then match text typed without diacritics, while
  the token text keeps the marks for featurizers that want them ("cháy" is not "chạy");
- with `segment: true`, joins syllables into words with pyvi (học_sinh), when the text has
  diacritics (pyvi was trained on marked text; on bare text it only guesses);
- keeps words in the case they were typed (capitals mark names for the entity extractor), a
  tracking code (PA-2026-000123) as one token, and offsets on what was typed, so entities
  come out as the citizen wrote them.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.tokenizers.tokenizer import Token, Tokenizer
from rasa.shared.nlu.training_data.message import Message

from nlu.text.vietnamese import fold, has_marks, words


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=False)
class VietnameseTokenizer(Tokenizer):
    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "intent_tokenization_flag": False,
            "intent_split_symbol": "_",
            "token_pattern": None,
            "prefix_separator_symbol": None,
            "segment": False,
        }

    @staticmethod
    def required_packages() -> list[str]:
        return ["pyvi"]

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.segment = bool(config.get("segment"))

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> VietnameseTokenizer:
        return cls(config)

    def tokenize(self, message: Message, attribute: str) -> list[Token]:
        text = message.get(attribute) or ""
        found = words(text, lower=False)
        if not found:
            return [Token(text, 0, len(text), lemma=fold(text))] if text else []
        if self.segment and has_marks(text):
            found = _joined(found)
        return [Token(w, s, e, lemma=fold(w)) for w, s, e in found]


def _joined(found: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Consecutive syllables pyvi reads as one word become one token (text joined by _)."""
    from pyvi import ViTokenizer

    segmented = ViTokenizer.tokenize(" ".join(w for w, _s, _e in found)).split()
    out: list[tuple[str, int, int]] = []
    i = 0
    for word in segmented:
        parts = len(word.split("_"))
        chunk = found[i : i + parts]
        # pyvi re-spaces punctuation and may split what we kept whole: then keep ours.
        if not chunk or "_".join(w for w, _s, _e in chunk) != word:
            return found
        out.append((word, chunk[0][1], chunk[-1][2]))
        i += parts
    return out if i == len(found) else found
