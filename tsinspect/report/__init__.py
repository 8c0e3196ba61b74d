"""Reports: HTML, Markdown and JSON renderings of one ``model.Report`` (the lower layers' result objects)."""
