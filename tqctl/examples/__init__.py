"""Example apps shipped with tqctl (the README's quick start uses ``shop``)."""
