"""Prompt texts of the voice menus, one JSON file per language (Vietnamese first)."""
