"""Asterisk REST Interface: the client the Stasis app runs on."""
