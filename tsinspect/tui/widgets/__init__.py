"""Reusable widgets: a lazily populated tree and a code pane with a blame gutter."""
