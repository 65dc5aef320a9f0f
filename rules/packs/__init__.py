"""Built-in rule packs (YAML data files): default, strict, relaxed."""
