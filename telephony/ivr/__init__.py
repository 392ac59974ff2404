"""Voice menus (IVR): the menu as data, a pure state machine, prompts, and the ARI driver."""
