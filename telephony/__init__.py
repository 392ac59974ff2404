"""The switchboard: Asterisk, its call router, voice menus, call records and speech.

Where each part lives: docs/architecture.md."""
