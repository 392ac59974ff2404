"""Custom Rasa components for Vietnamese (loaded by Rasa from the project folder as
`components.*`; `vietnamese` is plain Python the hub shares)."""
