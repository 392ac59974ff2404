"""Speech: offline speech-to-text engines behind one interface, and the models they use."""
