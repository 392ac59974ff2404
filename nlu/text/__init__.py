"""Vietnamese text as people type it, and the emergency words: the rules the hub and Rasa's
own pipeline both run, so a message reads the same on either side.

Plain standard-library Python, importing nothing else of the project: `ioc rasa prepare`
copies this package (with `nlu/__init__.py`) beside the Rasa project's `components/`, where
Rasa's Python 3.10 environment imports it by the same name, `nlu.text`."""
