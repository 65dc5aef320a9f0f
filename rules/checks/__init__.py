"""The built-in rules, one module per dimension; ``rules.catalog`` composes them."""
