"""The terminal console (``tqctl``, ``tqctl console``, ``tqctl up``). Importing this package is cheap:
Textual is loaded only when a console actually opens."""
