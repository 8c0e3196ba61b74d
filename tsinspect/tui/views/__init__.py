"""One module per view: archive, modules, IR, safety, diff."""
