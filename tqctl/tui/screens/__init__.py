"""One module per screen; ``base`` holds what they share, ``dialogs`` the modal questions."""
