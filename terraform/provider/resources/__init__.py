"""One module per resource type; ``base.py`` holds the shared lifecycle."""
