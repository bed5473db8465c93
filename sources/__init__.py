"""Where Godo's data comes from: upstream parsers and a synthetic world; imports nothing of ours."""
