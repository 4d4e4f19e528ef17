"""One module per noun; each exposes ``app`` (a Typer) or plain command functions."""
