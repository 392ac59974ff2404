"""Custom Rasa components for Vietnamese (loaded by Rasa from the project folder as
`components.*`); the text rules they share with the hub are in nlu.text."""
