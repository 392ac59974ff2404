"""Asterisk, installed and run by the project itself: a Debian sid chroot (Debian 12 has no
asterisk package) built into IOC_CACHE_DIR, and a process manager for it."""
