"""`EmergencyPrecheck`: the hub's emergency pre-check (nlu/text/emergency.py, the same word
list) inside Rasa's own pipeline, after the intent classifier. Where it sees an emergency
the model did not name, the intent becomes that emergency (confidence 1.0), so Rasa's own
dialogue (its channels, bots/rasa) runs the emergency rule instead of, say, a greeting. The
model's own answer stays in the parse as `model_intent`: the hub reads that (nlu/client.py),
so its figures and its `source` keep the model and the pre-check apart."""

from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import (
    INTENT,
    INTENT_NAME_KEY,
    INTENT_RANKING_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message

from nlu.text.emergency import INTENT_OF, emergency_number

MODEL_INTENT = "model_intent"


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class EmergencyPrecheck(GraphComponent, IntentClassifier):
    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> EmergencyPrecheck:
        return cls()

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            number = emergency_number(message.get(TEXT) or "")
            intent = message.get(INTENT) or {}
            if number is None or intent.get(INTENT_NAME_KEY) == INTENT_OF[number]:
                continue
            wanted = {INTENT_NAME_KEY: INTENT_OF[number], PREDICTED_CONFIDENCE_KEY: 1.0}
            ranking = [
                r
                for r in message.get(INTENT_RANKING_KEY) or []
                if r.get(INTENT_NAME_KEY) != wanted[INTENT_NAME_KEY]
            ]
            message.set(MODEL_INTENT, intent, add_to_output=True)
            message.set(INTENT, wanted, add_to_output=True)
            message.set(INTENT_RANKING_KEY, [wanted, *ranking], add_to_output=True)
        return messages
