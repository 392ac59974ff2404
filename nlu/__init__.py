"""Understanding citizens' words: the Rasa project, its client and the emergency pre-check.

Where each part lives: docs/architecture.md."""
