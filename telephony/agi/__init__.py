"""FastAGI: quick look-ups that answer the dialplan (pyst2's protocol class, wrapped)."""
