"""One parameterised training loop for every model, plus batch builders."""
